#pragma once
// The library's log: one JSON object per line on stderr (or aligned text for people), or an
// application's callback (TrackerOptions::log). One per process.

#include "trackevent/log.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

namespace trackevent::log {

enum class Format { json, text };

/// Context fields of a log line. Ordered: keys come out in the order they were given, so a line
/// reads as written (org_id, user_id, event_name, ..., err) rather than alphabetically. A plain
/// nlohmann::json converts implicitly (its keys are already sorted).
using Fields = nlohmann::ordered_json;
enum class Level { trace, debug, info, warn, error, critical, off };

/// Parses "json"/"text" and "trace|debug|info|warn|error|critical|off"; nullopt when unknown.
[[nodiscard]] std::optional<Format> parse_format(std::string_view s) noexcept;
[[nodiscard]] std::optional<Level> parse_level(std::string_view s) noexcept;

/// Configures the process-wide logger (thread-safe, idempotent). Until called, JSON at info.
/// `color`: text format only; the caller decides (TTY and no NO_COLOR).
void init(Format format, Level level, bool color = false);

/// Logs `msg` with `fields` (a JSON object) merged after "ts", "level", "msg":
/// {"ts":"2026-11-28T12:00:00.123Z","level":"error","msg":"rejected event","source":"stdin",...}
/// Never throws. Keys in `fields` that collide with ts/level/msg are ignored.
void write(Level level, std::string_view msg, const Fields& fields = Fields::object()) noexcept;

inline void debug(std::string_view msg, const Fields& f = Fields::object()) noexcept {
  write(Level::debug, msg, f);
}
inline void info(std::string_view msg, const Fields& f = Fields::object()) noexcept {
  write(Level::info, msg, f);
}
inline void warn(std::string_view msg, const Fields& f = Fields::object()) noexcept {
  write(Level::warn, msg, f);
}
inline void error(std::string_view msg, const Fields& f = Fields::object()) noexcept {
  write(Level::error, msg, f);
}

/// Like write(), but at most `burst` lines per `key` per second; the next line that gets through
/// carries "suppressed": N for the ones held back. For errors that can repeat per event.
void write_limited(Level level, std::string_view key, std::string_view msg,
                   const Fields& fields = Fields::object(), int burst = 10) noexcept;

/// Lines held back by write_limited() since the process started (emitted or not yet reported).
[[nodiscard]] std::uint64_t suppressed_total() noexcept;

/// Logs one "suppressed repeated log lines" line per key that still has lines held back, so none
/// is lost silently. Runs automatically at process exit; call it before redirecting the log.
void flush_suppressed() noexcept;

/// Where formatted lines go instead of stderr: the CLI's progress line uses one to keep its
/// terminal line intact, tests use one to capture lines.
class LineSink {
 public:
  virtual ~LineSink() = default;
  virtual void line(std::string_view text) = 0;
};
/// Sends every formatted log line to `sink` instead of stderr; nullptr restores stderr. The sink
/// must outlive its installation and may be called from any thread (one line at a time).
void set_line_sink(LineSink* sink) noexcept;

/// While it is open, every log line goes, unformatted, to `callback` instead of stderr or the
/// LineSink: TrackerOptions::log, whose comment gives the rules (the newest open Routing wins).
/// close() (and the destructor) waits for a call in progress, so none starts or runs after it.
class Routing {
 public:
  explicit Routing(LogCallback callback);
  ~Routing();
  Routing(const Routing&) = delete;
  Routing& operator=(const Routing&) = delete;
  /// Idempotent and thread-safe. From within the callback, returns without waiting for itself.
  void close() noexcept;

  struct Route;

 private:
  std::shared_ptr<Route> route_;
};

}  // namespace trackevent::log
