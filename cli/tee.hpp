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

  /// What the hold asks about the bytes it took: their events are durable, not yet, or some of
  /// them never will be (lost: counted as dropped by the Tracker).
  enum class Durability { durable, pending, lost };

  /// From now on write() holds bytes back; a thread echoes them once `durable()` (called at most
  /// every kHoldInterval, after taking the bytes) returns `durable`. Bytes it calls `lost` are
  /// not echoed while the run goes on (a consumer killed with us must never hold a line whose
  /// event exists nowhere); release_held() echoes them at the end, when the exit status and the
  /// summary's `dropped` say what was lost. The caller must give write()
  /// only bytes of lines it has already handed to the Tracker (LineReader's on_consumed does:
  /// it reports bytes before waiting for more input, i.e. after the lines were processed), so a
  /// true `durable()` covers every complete line taken. A partial last line is echoed without
  /// its newline; the line appears complete only once durable.
  void hold_until(std::function<Durability()> durable);
  /// Stops the thread after one last `durable()` check for what is held (end of input).
  void stop_holding() noexcept;
  /// Echoes whatever is still held, durable or not, the lost bytes first (after the Tracker's
  /// close(): those events were delivered, or counted as dropped and the exit status says so).
  void release_held() noexcept;

  [[nodiscard]] bool active() const noexcept { return fd_ >= 0; }
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_; }

  static constexpr auto kHoldInterval = std::chrono::milliseconds{10};
  /// Most lost bytes kept for release_held(); past it they are dropped from the echo (logged).
  static constexpr std::size_t kLostMax = std::size_t{64} << 20;

 private:
  void write_now(std::string_view bytes) noexcept;
  void echo_durable() noexcept;

  int fd_;
  std::uint64_t written_ = 0;

  std::mutex mutex_;  // guards held_, holding_, stop_
  std::condition_variable cv_;
  std::string held_;
  std::string lost_;                 // bytes whose events were lost, withheld until release_held()
  std::uint64_t lost_withheld_ = 0;  // lost bytes beyond kLostMax, never echoed
  bool holding_ = false;
  bool stop_ = false;
  std::function<Durability()> durable_;
  std::thread thread_;
};

}  // namespace trackevent::cli
