#pragma once
/// The event value type: one row of `analytics_events`.

#include "trackevent/export.h"
#include "trackevent/uuid.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace trackevent {

/// One accepted analytics event. Metadata is held as compact JSON text (an object), which is what
/// every sink writes, so the hot path never builds a DOM.
struct Event {
  Uuid event_id;
  std::int64_t org_id = 0;
  std::optional<std::int64_t> user_id;
  std::string event_name;
  std::string metadata = "{}";
  /// Microseconds since the Unix epoch, UTC. Fixed at acceptance, never re-stamped on retry.
  std::int64_t occurred_at_us = 0;
};

/// True for lowercase dotted names: ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$ (and at most 200 bytes).
[[nodiscard]] TRACKEVENT_API bool is_valid_event_name(std::string_view name) noexcept;

/// RFC 3339 timestamp -> microseconds since the epoch (UTC); nullopt when malformed.
[[nodiscard]] TRACKEVENT_API std::optional<std::int64_t> parse_rfc3339(
    std::string_view text) noexcept;
/// Microseconds since the epoch -> "2026-11-28T12:00:00.123456Z".
[[nodiscard]] TRACKEVENT_API std::string format_rfc3339(std::int64_t unix_us);

/// Microseconds since the Unix epoch, now, from the system clock.
[[nodiscard]] TRACKEVENT_API std::int64_t now_unix_us() noexcept;

}  // namespace trackevent
