#pragma once
/// Delivering the spool on purpose (`trackevent flush`), and a quick reachability probe
/// (`ingest --strict`). Both are bounded in time.

#include "config/database_url.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace trackevent {

class Clock;

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
  /// At most one exclusive drain per spool at a time (a lock file in the spool directory): when
  /// another holds it, return at once with Outcome::busy. Otherwise drain, release the lock, and
  /// look again: events spooled while the lock was held (by writers who saw it taken and so left
  /// them to this drain) are delivered before it returns.
  bool exclusive = false;
  /// Polled between batches (never during a write); true ends the drain early: what it claimed
  /// and did not write is released to others, and the result says `interrupted`. Empty: never.
  std::function<bool()> should_stop;
  /// For tests: the clock the drain's deadline, retry backoff and lease renewals are measured on.
  /// Null: the steady clock.
  std::shared_ptr<Clock> clock;
  /// For tests: how the drain waits (a retry pause, rows another process holds), never past its
  /// timeout. A test with a fake clock advances it here. Empty: the thread sleeps.
  std::function<void(std::chrono::steady_clock::duration)> sleep;
};

struct DrainResult {
  enum class Outcome {
    empty,        ///< nothing left to deliver: the spool is empty (everything delivered, or
                  ///< nothing was there), or holds only the dead_letter_failed rows
    unreachable,  ///< the database could not take writes (connection, auth, missing table...)
    timed_out,    ///< the deadline passed with events left (e.g. leased by another process)
    spool_error,  ///< the spool could not be opened or read
    busy,         ///< exclusive: another exclusive drain of this spool is running
  } outcome = Outcome::empty;
  std::uint64_t stored = 0;
  std::uint64_t duplicates = 0;
  /// Rows the database refused as bad data (22xxx/23xxx); moved to dead-letter.jsonl.
  std::uint64_t dead_lettered = 0;
  /// Rows the database refused whose line could not be written durably to dead-letter.jsonl
  /// (disk full, read-only, not a file...): each is logged critically and stays in the spool,
  /// the event's only copy, still claimed by this drain, so no drain retries it before the
  /// claim's lease (2 minutes) runs out. Counted in `remaining`; `trackevent flush` exits 1.
  std::uint64_t dead_letter_failed = 0;
  /// Events in the spool when the drain ended (claimed by others included); -1 if unknown.
  std::int64_t remaining = 0;
  std::string error;     ///< why it stopped early, password-free
  std::string sqlstate;  ///< when the database gave one
  /// DrainOptions::should_stop ended the drain early; what is left stays in the spool, free for
  /// another drain (the outcome is then timed_out when events are left, else empty).
  bool interrupted = false;
};

/// Delivers the spool in `options.spool_dir` to `target` in batches, removing what is stored,
/// isolating bad rows into the dead-letter file, and giving back (to other processes) what could
/// not be written. An empty spool does not touch the database. Never throws.
[[nodiscard]] DrainResult drain_spool(const DbTarget& target, const DrainOptions& options = {});

/// The spool directory: `configured` when not empty, else $TRACKEVENT_SPOOL_DIR, else
/// $XDG_STATE_HOME/trackevent, else ~/.local/state/trackevent. Throws std::runtime_error when none
/// of those can be determined (no HOME).
[[nodiscard]] std::filesystem::path spool_directory(const std::filesystem::path& configured = {});

/// What spool_for_delivery() did.
struct HandOff {
  /// Empty when the events are committed to the spool; else why not (nothing was written).
  std::string error;
  /// An exclusive drain of this spool is running and will deliver them before it returns; when
  /// false, the caller should start one (`trackevent flush --exclusive`).
  bool drain_running = false;
};

/// Commits `events` to the spool in one transaction (fsynced when `durable`), for an exclusive
/// drain to deliver: `trackevent send --background`. Never throws.
[[nodiscard]] HandOff spool_for_delivery(std::span<const Event> events,
                                         const std::filesystem::path& spool_dir = {},
                                         bool durable = false);

/// Checks, once and within the connect timeout, that `target` can take events now: PostgreSQL
/// accepts a connection and has the analytics_events table; a SQLite path can be opened.
/// Returns an empty string when it can, else the password-free reason. Never throws.
[[nodiscard]] std::string probe_database(const DbTarget& target, const PgTimeouts& timeouts = {});

}  // namespace trackevent
