#pragma once
/// Delivering the spool on purpose (`trackevent flush`), and a quick reachability probe
/// (`ingest --strict`). Both are bounded in time.

#include "trackevent/sink.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace trackevent {

struct DrainOptions {
  /// The whole drain stops after this long; what is left stays in the spool for the next run.
  std::chrono::milliseconds timeout{30000};
  /// Events claimed and written per round trip.
  std::size_t batch_size = 5000;
  /// Where the spool lives. Empty: $TRACKEVENT_SPOOL_DIR, else $XDG_STATE_HOME/trackevent, else
  /// ~/.local/state/trackevent (the Tracker's default).
  std::filesystem::path spool_dir;
  /// Connection deadlines for PostgreSQL.
  PgTimeouts pg_timeouts;
};

struct DrainResult {
  enum class Outcome {
    empty,        ///< the spool is empty (everything delivered, or nothing was there)
    unreachable,  ///< the database could not take writes (connection, auth, missing table...)
    timed_out,    ///< the deadline passed with events left (e.g. leased by another process)
    spool_error,  ///< the spool could not be opened or read
  } outcome = Outcome::empty;
  std::uint64_t stored = 0;
  std::uint64_t duplicates = 0;
  /// Rows the database refused as bad data (22xxx/23xxx); moved to dead-letter.jsonl.
  std::uint64_t dead_lettered = 0;
  /// Events in the spool when the drain ended (claimed by others included); -1 if unknown.
  std::int64_t remaining = 0;
  std::string error;     ///< why it stopped early, password-free
  std::string sqlstate;  ///< when the database gave one
};

/// Delivers the spool in `options.spool_dir` to `target` in batches, removing what is stored,
/// isolating bad rows into the dead-letter file, and giving back (to other processes) what could
/// not be written. An empty spool does not touch the database. Never throws.
[[nodiscard]] DrainResult drain_spool(const DbTarget& target, const DrainOptions& options = {});

/// Checks, once and within the connect timeout, that `target` can take events now: PostgreSQL
/// accepts a connection and has the analytics_events table; a SQLite path can be opened.
/// Returns an empty string when it can, else the password-free reason. Never throws.
[[nodiscard]] std::string probe_database(const DbTarget& target, const PgTimeouts& timeouts = {});

}  // namespace trackevent
