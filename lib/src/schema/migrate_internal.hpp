#pragma once
// Private parts of the migrations, shared by migrate.cpp, pg_migrate.cpp, the SQLite sink and
// the tests.

#include "schema/migrate.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

struct sqlite3;

namespace trackevent::detail {

/// The pg_advisory_lock key every `trackevent migrate` takes: the first 8 bytes (big-endian, as a
/// signed 64-bit integer) of SHA-256("trackevent.migrate"), 0x1b54e8332c903c93. It must never
/// change, or migrators of different versions would stop excluding each other. Visible in
/// pg_locks as classid/objid.
[[nodiscard]] std::int64_t migration_lock_key() noexcept;

/// Applies the pending built-in SQLite migrations to an open database, each with its
/// schema_migrations row in one BEGIN IMMEDIATE transaction (which serializes concurrent
/// migrators, as the advisory lock does on PostgreSQL). Throws MigrateError.
MigrateReport apply_sqlite_migrations(sqlite3* db);

/// A row of schema_migrations.
struct AppliedRow {
  std::string name;
  std::string checksum;
  std::string applied_at;  ///< RFC 3339
};
using AppliedRows = std::map<int, AppliedRow>;

/// "0001_create_analytics_events": how messages name a migration (its file name without .sql).
[[nodiscard]] std::string label(const Migration& m);
/// The state of every built-in migration given the rows of schema_migrations. Rows for versions
/// this build does not know (a newer build migrated the database) are left out.
[[nodiscard]] std::vector<MigrationStatus> status_of(const std::vector<Migration>& builtin,
                                                     const AppliedRows& applied);
/// Throws MigrateError naming the first applied migration whose checksum differs from ours.
void throw_on_mismatch(const std::vector<Migration>& builtin, const AppliedRows& applied);
/// A dry run's report: the status as it would be after the run, and what it would apply.
[[nodiscard]] MigrateReport dry_run_report(const std::vector<Migration>& builtin,
                                           const AppliedRows& applied);

/// PostgreSQL (pg_migrate.cpp): apply the pending migrations under the advisory lock, or only
/// read their state. Both throw MigrateError.
MigrateReport pg_migrate(const DbTarget& target, const MigrateOptions& options);
MigrateReport pg_status(const DbTarget& target, const MigrateOptions& options);

}  // namespace trackevent::detail
