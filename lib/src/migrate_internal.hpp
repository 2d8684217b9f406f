#pragma once
// Private parts of the migrations, shared with the SQLite sink and the tests.

#include "trackevent/migrate.hpp"

#include <cstdint>

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

}  // namespace trackevent::detail
