// The PostgreSQL half of the schema migrations: libpqxx, under an advisory lock, on a connection
// opened by pg::Connection (the one connect path: deadline, defaults, password scrubbing) and
// lent to libpqxx through a connection policy.
#include "pg/connection.hpp"
#include "schema/migrate.hpp"
#include "schema/migrate_internal.hpp"
#include "schema/pg_convert.hpp"
#include "schema/pg_session.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace trackevent {
namespace {

using detail::AppliedRow;
using detail::AppliedRows;
using detail::dry_run_report;
using detail::label;
using detail::status_of;
using detail::throw_on_mismatch;
using detail::with_pg;

constexpr const char* kPgCreateBookkeeping = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
))sql";

constexpr const char* kPgRfc3339 =
    R"(to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))";

/// Session settings: no NOTICE chatter ("relation already exists, skipping") on stderr, lock
/// waits bounded by lock_timeout, statements by the configured statement timeout.
void pg_session_setup(pqxx::connection_base& c, const MigrateOptions& o) {
  pqxx::nontransaction tx{c};
  tx.exec("SET client_min_messages = warning");
  tx.exec("SET lock_timeout = " + std::to_string(std::max(o.lock_timeout_ms, 1)));
  tx.exec("SET statement_timeout = " +
          std::to_string(std::max(o.timeouts.statement_timeout_ms, 0)));
}

/// Waits (at most lock_timeout_ms) for the migration advisory lock of this session.
void pg_take_lock(pqxx::connection_base& c, const MigrateOptions& o) {
  pqxx::nontransaction tx{c};
  // The statement timeout must not cut the lock wait short; lock_timeout is what bounds it.
  const int wait_ms = std::max(o.lock_timeout_ms, 1);
  tx.exec("SET statement_timeout = " + std::to_string(wait_ms + 5000));
  try {
    tx.exec("SELECT pg_advisory_lock(" + std::to_string(detail::migration_lock_key()) + ")");
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "55P03" || e.sqlstate() == "57014") {
      throw MigrateError(
          "timed out after " + std::to_string(wait_ms) +
              " ms waiting for another trackevent migrate to finish (advisory lock " +
              std::to_string(detail::migration_lock_key()) + ")",
          false);
    }
    throw;
  }
  tx.exec("SET statement_timeout = " +
          std::to_string(std::max(o.timeouts.statement_timeout_ms, 0)));
}

AppliedRows pg_read_applied(pqxx::connection_base& c) {
  pqxx::read_transaction tx{c};
  AppliedRows rows;
  if (tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>()) {
    const pqxx::result r = tx.exec(std::string("SELECT version, name, checksum, ") + kPgRfc3339 +
                                   " FROM schema_migrations");
    for (const auto& row : r) {
      rows[row[0].as<int>()] =
          AppliedRow{row[1].c_str(), row[2].c_str(), row[3].is_null() ? "" : row[3].c_str()};
    }
  }
  return rows;
}

}  // namespace

namespace detail {

MigrateReport pg_migrate(const DbTarget& target, const MigrateOptions& options) {
  const std::vector<Migration>& builtin = builtin_migrations(DbTarget::Kind::postgres);
  return with_pg(
      target, options.timeouts, "trackevent migrate",
      [&](pqxx::connection_base& c, std::string& context) {
        pg_session_setup(c, options);
        // The dry run waits its turn too, so what it reports is not a half-finished concurrent run.
        pg_take_lock(c, options);
        if (!options.dry_run) {
          pqxx::nontransaction tx{c};
          tx.exec(kPgCreateBookkeeping);
        }
        AppliedRows applied = pg_read_applied(c);
        throw_on_mismatch(builtin, applied);
        detail::pg_check_partition_interval(c, options);
        if (options.dry_run) return dry_run_report(builtin, applied);

        MigrateReport report;
        for (const Migration& m : builtin) {
          if (applied.contains(m.version)) continue;
          if (detail::is_partitioning_migration(m)) {
            report.conversion = detail::pg_convert_to_partitioned(c, m, options, context);
            report.applied.push_back(m.version);
            continue;
          }
          context = "migration " + label(m);
          pqxx::work tx{c, "migrate"};
          tx.exec(m.sql);
          tx.exec_params(
              "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
              m.version, m.name, m.checksum);
          tx.commit();
          report.applied.push_back(m.version);
          context.clear();
        }
        applied = pg_read_applied(c);
        report.status = status_of(builtin, applied);
        pqxx::nontransaction tx{c};
        tx.exec("SELECT pg_advisory_unlock(" + std::to_string(detail::migration_lock_key()) + ")");
        return report;
      });
}

MigrateReport pg_status(const DbTarget& target, const MigrateOptions& options) {
  const std::vector<Migration>& builtin = builtin_migrations(DbTarget::Kind::postgres);
  return with_pg(target, options.timeouts, "trackevent migrate",
                 [&](pqxx::connection_base& c, std::string&) {
                   pg_session_setup(c, options);
                   MigrateReport report;
                   report.status = status_of(builtin, pg_read_applied(c));
                   return report;
                 });
}

}  // namespace detail
}  // namespace trackevent
