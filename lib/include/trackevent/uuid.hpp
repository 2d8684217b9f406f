#pragma once
/// 128-bit identifiers: parsing, formatting and time-ordered UUIDv7 generation.

#include "trackevent/export.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace trackevent {

/// A UUID as 16 bytes in network order (the layout PostgreSQL's binary `uuid` uses).
struct Uuid {
  std::array<std::uint8_t, 16> bytes{};

  /// Canonical lowercase 8-4-4-4-12 text.
  [[nodiscard]] TRACKEVENT_API std::string to_string() const;
  /// Writes the 36 canonical characters to `out` (no terminator).
  TRACKEVENT_API void format_to(char* out) const noexcept;
  /// Accepts the canonical form in either case; nothing else (no braces, no urn:).
  [[nodiscard]] TRACKEVENT_API static std::optional<Uuid> parse(std::string_view text) noexcept;
  [[nodiscard]] int version() const noexcept { return bytes[6] >> 4; }

  friend bool operator==(const Uuid&, const Uuid&) = default;
  friend auto operator<=>(const Uuid&, const Uuid&) = default;
};

/// A new UUIDv7 (RFC 9562) for `unix_ms`: 48-bit millisecond timestamp, then a per-thread
/// monotonic counter in rand_a and random bits, so ids made by one thread sort in creation order.
[[nodiscard]] TRACKEVENT_API Uuid make_uuid_v7(std::int64_t unix_ms) noexcept;
/// As above, for the current system time.
[[nodiscard]] TRACKEVENT_API Uuid make_uuid_v7() noexcept;

}  // namespace trackevent
