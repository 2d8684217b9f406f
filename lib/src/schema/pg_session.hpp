#pragma once
// A libpqxx connection over a pg::Connection (the one connect path: deadline, defaults, password
// scrubbing), and the error mapping every libpqxx user of schema/ shares: the migrations
// (pg_migrate.cpp, pg_convert.cpp) and partition upkeep (partitions.cpp).
#include "pg/connection.hpp"
#include "schema/migrate.hpp"

#include <pqxx/pqxx>

#include <string>
#include <utility>

namespace trackevent::detail {

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

/// Runs `body` on a fresh connection and turns every failure into a MigrateError (the error type of
/// all schema work, partition upkeep included) whose text
/// never holds the password. `context` names what was being done ("migration 0001_x").
template <typename Body>
auto with_pg(const DbTarget& target, const PgTimeouts& timeouts, const char* application_name,
             Body&& body) {
  const pg::Conninfo ci(target.conninfo);
  if (const auto& reason = ci.parse_error()) {
    throw MigrateError("invalid database URL " + ci.described() + ": " + *reason, false);
  }
  pg::Settings settings;
  settings.timeouts = timeouts;
  settings.application_name = application_name;
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

}  // namespace trackevent::detail
