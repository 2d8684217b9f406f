#pragma once
// --tee: copies input bytes to a file descriptor (stdout) unchanged. Teeing is best effort: when
// the reader downstream goes away (EPIPE) or the write fails, teeing stops and delivery goes on.

#include <cstdint>
#include <string_view>

namespace trackevent::cli {

class Tee {
 public:
  explicit Tee(int fd) : fd_(fd) {}
  /// Writes all of `bytes` (retrying short writes and EINTR) unless teeing has stopped.
  void write(std::string_view bytes) noexcept;
  [[nodiscard]] bool active() const noexcept { return fd_ >= 0; }
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_; }

 private:
  int fd_;
  std::uint64_t written_ = 0;
};

}  // namespace trackevent::cli
