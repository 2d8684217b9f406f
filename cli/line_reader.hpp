#pragma once
// Splits a file descriptor into lines with one fixed-size read(2) buffer. A line is held in memory
// only up to `max_line_bytes` (plus one byte for a '\r'): a longer line is skipped to its newline
// and reported as too long, so one huge line cannot exhaust memory.
//
// A stop (Hooks::should_stop) never loses a complete line already read: the reader first hands
// out every complete line it holds in memory (the rest of the current chunk, and a line spanning
// chunks once its newline is there), then returns `stopped` without reading the descriptor again.
// An unterminated line held at that point is not handed out: it counts as unread (see
// bytes_handed_out()).

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace trackevent::cli {

class LineReader {
 public:
  struct Line {
    /// The content without its "\n" or "\r\n". Valid until the next call to next(). Empty when
    /// too_long.
    std::string_view text;
    /// 1-based physical line number, blank lines included (what an editor shows).
    std::uint64_t number = 0;
    /// The line exceeded max_line_bytes; its content was skipped, not buffered.
    bool too_long = false;
    /// Length of the content in bytes (known even when too_long).
    std::uint64_t length = 0;
  };

  enum class Status {
    line,     ///< `line` holds the next line
    end,      ///< end of input
    stopped,  ///< should_stop() returned true and every complete line read was handed out
    error,    ///< read(2) failed; see error()
  };

  struct Hooks {
    /// Polled before reading more input and while waiting for it; true stops reading (lines
    /// already in memory are still handed out first).
    std::function<bool()> should_stop;
    /// Receives every consumed input byte, unchanged and in order (for --tee). Called before the
    /// reader waits for more input, so a slow producer sees its lines echoed at once.
    std::function<void(std::string_view)> on_consumed;
  };

  LineReader(int fd, std::size_t max_line_bytes, Hooks hooks = {});

  /// Reads the next line. After `end`, `stopped` or `error`, further calls return the same.
  Status next(Line& line);

  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] std::uint64_t bytes_read() const noexcept { return bytes_read_; }
  /// Bytes of input handed out by next() as lines (newlines included; skipped too-long lines
  /// too), counted from where the reader started: the offset, from that start, where unread
  /// input begins. After `stopped` this excludes an unterminated line held at the stop.
  [[nodiscard]] std::uint64_t bytes_handed_out() const noexcept { return handed_out_; }

  /// Read size; also the most a short line costs beyond its own length.
  static constexpr std::size_t kChunkBytes = 64 * 1024;

 private:
  enum class Fill { data, end, stopped, error };
  Fill fill();
  void emit_consumed() noexcept;
  [[nodiscard]] bool stop_requested() const;
  Status stop() noexcept;
  Status finish_line(std::string_view tail, Line& line);

  int fd_;
  std::size_t max_line_bytes_;
  Hooks hooks_;
  bool wait_with_poll_ = true;  // pipes and terminals: poll so a signal is noticed while idle

  std::array<char, kChunkBytes> chunk_{};
  std::size_t pos_ = 0;            // next unconsumed byte in chunk_
  std::size_t end_ = 0;            // bytes valid in chunk_
  std::size_t consumed_from_ = 0;  // start of consumed bytes not yet given to on_consumed
  std::size_t line_start_ = 0;     // in chunk_: just past the last line handed out (or 0)

  std::string partial_;    // a line that spans chunks (at most max_line_bytes + 1 bytes)
  bool skipping_ = false;  // inside a too-long line: discard up to the newline
  std::uint64_t skipped_length_ = 0;
  bool in_line_ = false;  // bytes of an unfinished line have been consumed

  std::uint64_t line_number_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t handed_out_ = 0;
  Status final_ = Status::line;  // sticky terminal status
  std::string error_;
};

}  // namespace trackevent::cli
