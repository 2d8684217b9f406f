#pragma once
// Parsing and validation of one JSONL input line into an Event (the CLI's input, and the checks
// Tracker::track() and the C ABI apply to events built in code).

#include "trackevent/event.hpp"
#include "trackevent/options.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace trackevent {

class Catalog;

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
