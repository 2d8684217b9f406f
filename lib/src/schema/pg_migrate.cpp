// The PostgreSQL half of the schema migrations: libpqxx, under an advisory lock, on a connection
// opened by pg::Connection (the one connect path: deadline, defaults, password scrubbing) and
// lent to libpqxx through a connection policy.
#include "pg/connection.hpp"
#include "schema/migrate.hpp"
#include "schema/migrate_internal.hpp"

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

constexpr const char* kPgCreateBookkeeping = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
))sql";

constexpr const char* kPgRfc3339 =
    R"(to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))";

/// libpqxx 6.4's hook for how a connection is made: here it is not made but handed over, once.
/// The PGconn stays owned by the pg::Connection that opened it: libpqxx's disconnect (on close,
/// or before a reset) only forgets it, so libpqxx never PQfinish-es it, and a reconnect, which
/// would silently drop the session's advisory lock, fails as a lost connection instead.
class LentPolicy final : public pqxx::connectionpolicy {
 public:
  explicit LentPolicy(PGconn* conn) : pqxx::connectionpolicy(std::string()), conn_(conn) {}

  handle do_startconnect(handle orig) override {
    if (orig != nullptr) return orig;
    if (conn_ == nullptr) throw pqxx::broken_connection("the connection was closed");
    return std::exchange(conn_, nullptr);
  }
  handle do_dropconnect(handle /*orig*/) noexcept override { return nullptr; }
  handle do_disconnect(handle orig) noexcept override { return do_dropconnect(orig); }

 private:
  PGconn* conn_;
};

/// A libpqxx connection over a PGconn lent by a pg::Connection, which must outlive it.
class LentConnection final : public pqxx::connection_base {
 public:
  explicit LentConnection(PGconn* conn) : pqxx::connection_base(policy_), policy_(conn) { init(); }
  ~LentConnection() noexcept { close(); }
  LentConnection(const LentConnection&) = delete;
  LentConnection& operator=(const LentConnection&) = delete;

 private:
  LentPolicy policy_;  // constructed after the base, which only stores a reference to it
};

/// Runs `body` on a fresh connection and turns every failure into a MigrateError whose text
/// never holds the password. `context` names what was being done ("migration 0001_x").
template <typename Body>
MigrateReport with_pg(const DbTarget& target, const MigrateOptions& options, Body&& body) {
  const pg::Conninfo ci(target.conninfo);
  if (const auto& reason = ci.parse_error()) {
    throw MigrateError("invalid database URL " + ci.described() + ": " + *reason, false);
  }
  pg::Settings settings;
  settings.timeouts = options.timeouts;
  settings.application_name = "trackevent migrate";
  auto conn = pg::Connection::open(ci, settings);
  if (!conn) {
    throw MigrateError(
        "cannot connect to " + ci.described() + ": " + pg::one_line(conn.error().message), true);
  }
  std::string context;
  const auto prefix = [&context] { return context.empty() ? std::string() : context + ": "; };
  try {
    LentConnection c(conn->lend_blocking());
    return body(c, context);
  } catch (const MigrateError&) {
    throw;
  } catch (const pqxx::broken_connection& e) {
    throw MigrateError(
        ci.scrub(prefix() + "connection to " + ci.described() + " lost: " + pg::one_line(e.what())),
        true);
  } catch (const pqxx::in_doubt_error& e) {
    throw MigrateError(ci.scrub(context +
                                ": connection lost while committing; run migrate again "
                                "to see whether it was applied: " +
                                pg::one_line(e.what())),
                       true);
  } catch (const pqxx::sql_error& e) {
    std::string msg = prefix() + pg::one_line(e.what());
    if (!e.sqlstate().empty()) msg += " (SQLSTATE " + e.sqlstate() + ")";
    throw MigrateError(ci.scrub(std::move(msg)), false);
  } catch (const std::exception& e) {
    throw MigrateError(ci.scrub(prefix() + pg::one_line(e.what())), false);
  }
}

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
  return with_pg(target, options, [&](pqxx::connection_base& c, std::string& context) {
    pg_session_setup(c, options);
    // The dry run waits its turn too, so what it reports is not a half-finished concurrent run.
    pg_take_lock(c, options);
    if (!options.dry_run) {
      pqxx::nontransaction tx{c};
      tx.exec(kPgCreateBookkeeping);
    }
    AppliedRows applied = pg_read_applied(c);
    throw_on_mismatch(builtin, applied);
    if (options.dry_run) return dry_run_report(builtin, applied);

    MigrateReport report;
    for (const Migration& m : builtin) {
      if (applied.contains(m.version)) continue;
      context = "migration " + label(m);
      pqxx::work tx{c, "migrate"};
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
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
  return with_pg(target, options, [&](pqxx::connection_base& c, std::string&) {
    pg_session_setup(c, options);
    MigrateReport report;
    report.status = status_of(builtin, pg_read_applied(c));
    return report;
  });
}

}  // namespace detail
}  // namespace trackevent
