#pragma once
// --tee: copies input bytes to a file descriptor (stdout) unchanged. Teeing is best effort: when
// the reader downstream goes away (EPIPE) or the write fails, teeing stops and delivery goes on.
// With --durable, bytes are held until the events they carry are durable (see hold_until()).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace trackevent::cli {

class Tee {
 public:
  explicit Tee(int fd) : fd_(fd) {}
  ~Tee();
  Tee(const Tee&) = delete;
  Tee& operator=(const Tee&) = delete;

  /// Writes all of `bytes` (retrying short writes and EINTR) unless teeing has stopped. While
  /// holding, appends them to the held buffer instead.
  void write(std::string_view bytes) noexcept;

  /// From now on write() holds bytes back; a thread echoes them once `durable()` (called at most
  /// every kHoldInterval, after taking the bytes) returns true. The caller must give write()
  /// only bytes of lines it has already handed to the Tracker (LineReader's on_consumed does:
  /// it reports bytes before waiting for more input, i.e. after the lines were processed), so a
  /// true `durable()` covers every complete line taken. A partial last line is echoed without
  /// its newline; the line appears complete only once durable.
  void hold_until(std::function<bool()> durable);
  /// Stops the thread after one last `durable()` check for what is held (end of input).
  void stop_holding() noexcept;
  /// Echoes whatever is still held, durable or not (after the Tracker's close(): those events
  /// were delivered, or counted as dropped and the exit status says so).
  void release_held() noexcept;

  [[nodiscard]] bool active() const noexcept { return fd_ >= 0; }
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_; }

  static constexpr auto kHoldInterval = std::chrono::milliseconds{10};

 private:
  void write_now(std::string_view bytes) noexcept;
  void echo_durable() noexcept;

  int fd_;
  std::uint64_t written_ = 0;

  std::mutex mutex_;  // guards held_, holding_, stop_
  std::condition_variable cv_;
  std::string held_;
  bool holding_ = false;
  bool stop_ = false;
  std::function<bool()> durable_;
  std::thread thread_;
};

}  // namespace trackevent::cli
