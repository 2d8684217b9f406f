#pragma once
/// Parsing and validation of one JSONL input line into an Event.

#include "trackevent/event.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace trackevent {

class Catalog;

/// Input limits. Each has a CLI option; a line over a limit is rejected with a reason naming it.
struct Limits {
  /// Longest input line in bytes. Longer lines are skipped without being buffered whole.
  std::size_t max_line_bytes = 1024 * 1024;
  /// Largest `metadata` object, serialised, in bytes. At least 2 (the default `{}`).
  std::size_t max_metadata_bytes = 32 * 1024;
  /// Deepest nesting of arrays/objects inside the line (the line's own object is depth 1, so
  /// metadata's object is depth 2; smaller values act as 2).
  std::size_t max_depth = 64;
  /// Most keys in `metadata`, counted over all nested objects.
  std::size_t max_keys = 1000;
};

struct ParseOptions {
  Limits limits;
  /// When set, event names outside the catalog are rejected ("did you mean ...?").
  const Catalog* catalog = nullptr;
};

/// Why a line was rejected: a specific, human-readable reason starting with the field it concerns,
/// e.g. "org_id: expected an integer >= 1, got 0".
struct Rejection {
  std::string reason;
};

/// Either the validated event (stamped with a new UUIDv7 and `now_us` where the line had none) or
/// the reason it was rejected.
using ParseResult = std::variant<Event, Rejection>;

/// Parses one line (without its trailing newline; a trailing '\r' is tolerated). Never throws.
/// `now_us` stamps `occurred_at` when the line does not give one.
[[nodiscard]] ParseResult parse_event_line(std::string_view line, std::int64_t now_us,
                                           const ParseOptions& options = {}) noexcept;

/// The checks of validate_event() that do not look at metadata: the name, org_id and user_id.
/// Returns an empty string when they pass, else the reason.
[[nodiscard]] std::string validate_event_identity(const Event& event);

/// Validates an event built in code (Tracker::track): name, ids, metadata being a JSON object.
/// Returns an empty string when valid, else the reason.
[[nodiscard]] std::string validate_event(const Event& event, const Limits& limits = {});

}  // namespace trackevent
