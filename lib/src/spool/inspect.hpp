#pragma once
// What `trackevent status` reads about a spool directory, without changing anything in it: the
// spool opened read-only under a short busy timeout (no claim, no write lock), the dead-letter
// file read as it is.

#include "base/result.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace trackevent::detail {

/// A process holding leased rows: the claimer identity is "<host>:<pid>:<random>".
struct ClaimHolder {
  std::string owner;
  std::int64_t events = 0;
  std::int64_t until_ms = 0;  ///< when its last lease runs out (Unix ms)
};

struct SpoolInspection {
  bool exists = false;  ///< spool.db is there
  std::int64_t events = 0;
  std::uint64_t bytes = 0;                ///< spool.db and its WAL on disk
  std::optional<std::int64_t> oldest_us;  ///< occurred_at of the oldest event held
  std::vector<ClaimHolder> claims;        ///< unexpired claims, by holder
};

/// Reads `dir`/spool.db read-only. Never creates the spool. A file that is not a SQLite database,
/// or a database without trackevent's spool table, is an error that says so; so is a spool locked
/// for longer than `busy_timeout`.
[[nodiscard]] Result<SpoolInspection> inspect_spool(const std::filesystem::path& dir,
                                                    std::chrono::milliseconds busy_timeout);

struct DeadLetterInspection {
  bool exists = false;
  std::size_t count = 0;    ///< lines that are dead letters
  std::size_t invalid = 0;  ///< lines that are not (torn, edited): kept, reported by replay
  std::uint64_t bytes = 0;
  std::optional<std::int64_t> newest_us;  ///< the newest "at"
  std::optional<std::int64_t> oldest_us;  ///< the oldest "at"
};

[[nodiscard]] Result<DeadLetterInspection> inspect_dead_letters(const std::filesystem::path& dir);

}  // namespace trackevent::detail
