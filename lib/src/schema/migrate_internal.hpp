#pragma once
// Private parts of the migrations, shared with the SQLite sink, the PostgreSQL migration module
// (pgmigrate/) and the tests.

#include "schema/migrate.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

struct sqlite3;

namespace trackevent::detail {

/// The pg_advisory_lock key every `trackevent migrate` takes: the first 8 bytes (big-endian, as a
/// signed 64-bit integer) of SHA-256("trackevent.migrate"). It must never change, or migrators of
/// different versions would stop excluding each other. Visible in pg_locks as classid/objid.
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

// PostgreSQL migrations use libpqxx, which links libpq and its dependency closure (OpenSSL,
// Kerberos, LDAP...). Loading all of that costs every process that links libtrackevent ~10 ms
// at start, whether or not it migrates anything, so that half lives in a module of its own,
// dlopen()ed from <dir of libtrackevent.so>/trackevent/ the first time a PostgreSQL database is
// migrated or inspected. Its one entry point fills `report` or throws MigrateError.
enum class PgMigrateAction { migrate, status };
inline constexpr const char* kPgMigrateModule = "libtrackevent-pgmigrate.so";
inline constexpr const char* kPgMigrateEntry = "trackevent_pg_migrate_v1";
using PgMigrateEntry = void (*)(const DbTarget& target, const MigrateOptions& options,
                                PgMigrateAction action, MigrateReport& report);

}  // namespace trackevent::detail
