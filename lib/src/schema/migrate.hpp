#pragma once
/// Schema migrations, compiled into the library from schema/{postgres,sqlite}/NNNN_name.sql.

#include "config/database_url.hpp"

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
};

struct MigrateReport {
  std::vector<MigrationStatus> status;  ///< every known migration after the run (or as it would be)
  std::vector<int> applied;  ///< versions applied by this run (or that would be, on dry run)
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
