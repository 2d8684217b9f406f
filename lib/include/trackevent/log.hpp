#pragma once
/// The library's log lines, as an application's own logger receives them (TrackerOptions::log).

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <string_view>

namespace trackevent {

enum class LogLevel { trace, debug, info, warn, error, critical };

/// One log line of the library. The views and `fields` are valid only during the call.
struct LogRecord {
  LogLevel level = LogLevel::info;
  /// What kind of line this is, stable across releases ("sink.retry", "track.rejected"), for
  /// lines that can repeat: at most 10 such lines per key and second are passed on, and the next
  /// one carries "suppressed": N for those held back. Empty for one-off lines.
  std::string_view key;
  /// What happened, for people: "batch write failed; retrying".
  std::string_view message;
  /// The context, a JSON object in a stable order: {"events":5000,"err":"...","sqlstate":"08006"}.
  /// Never contains a password.
  const nlohmann::ordered_json& fields;
};

/// Receives the library's log lines instead of stderr; see TrackerOptions::log.
using LogCallback = std::function<void(const LogRecord&)>;

}  // namespace trackevent
