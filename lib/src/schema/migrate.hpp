#pragma once
/// Schema migrations, compiled into the library from schema/{postgres,sqlite}/NNNN_name.sql.

#include "config/database_url.hpp"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace trackevent {

struct Migration {
  int version = 0;
  std::string name;  ///< file name without the number and .sql, e.g. "create_analytics_events"
  std::string sql;
  std::string checksum;  ///< hex SHA-256 of `sql`
};

/// The migrations built into this binary for a database kind, in version order.
[[nodiscard]] const std::vector<Migration>& builtin_migrations(DbTarget::Kind kind);

struct MigrationStatus {
  int version = 0;
  std::string name;
  enum class State { applied, pending, checksum_mismatch } state = State::pending;
  std::string applied_at;  ///< RFC 3339 when applied
};

struct MigrateOptions {
  bool dry_run = false;  ///< report what would be applied, change nothing
  PgTimeouts timeouts;
  /// PostgreSQL: the longest wait for a lock (the migration advisory lock while another migrator
  /// runs, or a table lock a migration needs) before giving up with a MigrateError.
  int lock_timeout_ms = 60000;
  /// PostgreSQL, migration 0002: "day", "week" or "month". Unset: the recorded interval, or
  /// "month" on first use. Set to another interval than the recorded one: a MigrateError (the
  /// interval of a partitioned table cannot be changed by migrate).
  std::optional<std::string> partition_interval;
  /// Migration 0002's conversion of a v1 table: rows copied per transaction.
  int backfill_chunk_rows = 50000;
  /// Migration 0002: lock_timeout of each attempt at the locks that block writers (creating the
  /// copy trigger, the final rename), and the number of attempts. Writers queue behind a waiting
  /// attempt, so this bounds how long they wait for it.
  int swap_lock_timeout_ms = 2000;
  int swap_attempts = 15;
};

/// What migration 0002 did to an existing analytics_events table.
struct ConversionReport {
  std::int64_t rows_copied = 0;  ///< by the chunked backfill (new rows were copied by a trigger)
  double lock_held_ms = 0;       ///< how long the final rename held the writer-blocking lock
  bool old_table_kept = false;   ///< the v1 table had rows and is kept as analytics_events_v1
  std::string interval;          ///< the partition interval recorded
};

struct MigrateReport {
  std::vector<MigrationStatus> status;  ///< every known migration after the run (or as it would be)
  std::vector<int> applied;  ///< versions applied by this run (or that would be, on dry run)
  std::optional<ConversionReport> conversion;  ///< set when this run applied migration 0002
};

/// Thrown for a migration problem: unreachable database (`unreachable` true), a changed checksum of
/// an applied migration (message names it), or an SQL error in a migration.
struct MigrateError : std::runtime_error {
  MigrateError(const std::string& what, bool unreachable_)
      : std::runtime_error(what), unreachable(unreachable_) {}
  bool unreachable = false;
};

/// Applies pending migrations, each with its schema_migrations row in one transaction, under a
/// PostgreSQL advisory lock (concurrent migrators wait their turn). Idempotent.
MigrateReport migrate(const DbTarget& target, const MigrateOptions& options = {});
/// Reads the state of every migration without changing anything.
MigrateReport migration_status(const DbTarget& target, const MigrateOptions& options = {});

}  // namespace trackevent
