#pragma once
// A one-line progress display on stderr for `ingest` (lines, bytes, rate, ETA), redrawn in place
// with '\r' at most four times a second. While it is shown, log lines are routed through it: the
// progress line is wiped, the log line written whole, and the progress line drawn again below
// it, so neither the JSON nor the text log format ever gets a line broken by progress output.

#include "log/log.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace trackevent::cli {

class Progress final : public log::LineSink {
 public:
  /// Draws on `fd`. `total_bytes` is the size of all input (0: unknown, no percentage or ETA).
  Progress(int fd, std::uint64_t total_bytes);
  ~Progress() override;
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Called per input line; redraws when the last draw is at least kInterval old.
  void update(std::uint64_t lines, std::uint64_t rejected, std::uint64_t bytes) noexcept;
  /// Wipes the line and hands logging back to stderr. Idempotent; the destructor calls it.
  void finish() noexcept;

  /// log::LineSink: one complete log line (without its newline).
  void line(std::string_view text) override;

  static constexpr std::chrono::milliseconds kInterval{250};

  /// The text of one progress line (exposed for tests).
  [[nodiscard]] static std::string format(std::uint64_t lines, std::uint64_t rejected,
                                          std::uint64_t bytes, std::uint64_t total_bytes,
                                          double elapsed_s);

 private:
  void draw_locked(const std::string& text) noexcept;
  void wipe_locked() noexcept;
  void write_all(std::string_view bytes) noexcept;

  int fd_;
  std::uint64_t total_bytes_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point next_draw_;
  std::mutex mutex_;
  std::string shown_;  // what is on the line now ("" when wiped)
  bool active_ = true;
};

}  // namespace trackevent::cli
