// The PostgreSQL half of the schema migrations (libpqxx, under an advisory lock), built as the
// module libtrackevent-pgmigrate.so and loaded by migrate.cpp only when a PostgreSQL database is
// migrated or inspected: see PgMigrateEntry in migrate_internal.hpp for why.
#include "schema/migrate.hpp"
#include "schema/migrate_internal.hpp"

#include <libpq-fe.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
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

/// A conninfo ready for pqxx::connection, and the password it carries (to scrub from messages).
struct PgConninfo {
  std::string conninfo;
  std::string password;
};

void append_option(std::string& out, std::string_view key, std::string_view value) {
  if (!out.empty()) out += ' ';
  out.append(key);
  out += "='";
  for (const char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
}

/// Replaces every occurrence of `secret` in `text` with "***".
std::string scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (std::size_t pos = text.find(secret); pos != std::string::npos;
       pos = text.find(secret, pos + 3)) {
    text.replace(pos, secret.size(), "***");
  }
  return text;
}

/// libpq messages span lines ("...failed: Connection refused\n\tIs the server running...");
/// one line reads better in a log field.
std::string trim(std::string_view s) {
  std::string out;
  bool space = false;
  for (const char c : s) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

/// libpq's parse error, with quoted fragments dropped: for a malformed URL they can hold the
/// password ("invalid percent-encoded token: \"pa%zz\"").
std::string without_quoted(std::string_view msg) {
  std::string out;
  bool quoted = false;
  for (const char c : msg) {
    if (c == '"') {
      if (!quoted) out += "\"…\"";
      quoted = !quoted;
    } else if (!quoted) {
      out += c;
    }
  }
  return trim(out);
}

/// Normalizes any libpq URL or key=value string into key=value form and adds the connection
/// defaults the user did not set (connect_timeout above all, so connecting never hangs).
PgConninfo prepare_conninfo(const std::string& conninfo, const PgTimeouts& t) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    const std::string reason = err ? without_quoted(err) : "out of memory";
    if (err) PQfreemem(err);
    throw MigrateError("invalid database URL " + redact_conninfo(conninfo) + ": " + reason, false);
  }
  PgConninfo out;
  bool has_connect_timeout = false, has_keepalives_idle = false, has_tcp_user_timeout = false,
       has_application_name = false;
  for (const PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const std::string_view key = o->keyword;
    append_option(out.conninfo, key, o->val);
    if (key == "password") out.password = o->val;
    has_connect_timeout |= key == "connect_timeout";
    has_keepalives_idle |= key == "keepalives_idle";
    has_tcp_user_timeout |= key == "tcp_user_timeout";
    has_application_name |= key == "application_name";
  }
  PQconninfoFree(opts);
  // The PG* environment variables still apply: libpq reads them for anything left unset here.
  if (!has_connect_timeout && std::getenv("PGCONNECT_TIMEOUT") == nullptr) {
    append_option(out.conninfo, "connect_timeout", std::to_string(t.connect_timeout_s));
  }
  if (!has_keepalives_idle) {
    append_option(out.conninfo, "keepalives_idle", std::to_string(t.keepalives_idle_s));
  }
  if (!has_tcp_user_timeout) {
    append_option(out.conninfo, "tcp_user_timeout", std::to_string(t.tcp_user_timeout_ms));
  }
  if (!has_application_name && std::getenv("PGAPPNAME") == nullptr) {
    append_option(out.conninfo, "application_name", "trackevent migrate");
  }
  return out;
}

/// Runs `body` on a fresh connection and turns every libpqxx exception into a MigrateError whose
/// text never holds the password. `context` names what was being done ("migration 0001_x").
template <typename Body>
MigrateReport with_pg(const DbTarget& target, const MigrateOptions& options, Body&& body) {
  const PgConninfo ci = prepare_conninfo(target.conninfo, options.timeouts);
  std::string context;
  try {
    std::optional<pqxx::connection> conn;
    try {
      conn.emplace(ci.conninfo);
    } catch (const pqxx::broken_connection& e) {
      throw MigrateError(
          scrub("cannot connect to " + redact_conninfo(target.conninfo) + ": " + trim(e.what()),
                ci.password),
          true);
    }
    return body(*conn, context);
  } catch (const MigrateError&) {
    throw;
  } catch (const pqxx::broken_connection& e) {
    throw MigrateError(scrub((context.empty() ? "" : context + ": ") + "connection to " +
                                 redact_conninfo(target.conninfo) + " lost: " + trim(e.what()),
                             ci.password),
                       true);
  } catch (const pqxx::in_doubt_error& e) {
    throw MigrateError(scrub(context +
                                 ": connection lost while committing; run migrate again "
                                 "to see whether it was applied: " +
                                 trim(e.what()),
                             ci.password),
                       true);
  } catch (const pqxx::sql_error& e) {
    std::string msg = (context.empty() ? "" : context + ": ") + trim(e.what());
    if (!e.sqlstate().empty()) msg += " (SQLSTATE " + e.sqlstate() + ")";
    throw MigrateError(scrub(std::move(msg), ci.password), false);
  } catch (const std::exception& e) {
    throw MigrateError(scrub((context.empty() ? "" : context + ": ") + trim(e.what()), ci.password),
                       false);
  }
}

/// Session settings: no NOTICE chatter ("relation already exists, skipping") on stderr, lock
/// waits bounded by lock_timeout, statements by the configured statement timeout.
void pg_session_setup(pqxx::connection& c, const MigrateOptions& o) {
  pqxx::nontransaction tx{c};
  tx.exec("SET client_min_messages = warning");
  tx.exec("SET lock_timeout = " + std::to_string(std::max(o.lock_timeout_ms, 1)));
  tx.exec("SET statement_timeout = " +
          std::to_string(std::max(o.timeouts.statement_timeout_ms, 0)));
}

/// Waits (at most lock_timeout_ms) for the migration advisory lock of this session.
void pg_take_lock(pqxx::connection& c, const MigrateOptions& o) {
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

AppliedRows pg_read_applied(pqxx::connection& c) {
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

MigrateReport pg_migrate(const DbTarget& target, const MigrateOptions& options) {
  const std::vector<Migration>& builtin = builtin_migrations(DbTarget::Kind::postgres);
  return with_pg(target, options, [&](pqxx::connection& c, std::string& context) {
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
  return with_pg(target, options, [&](pqxx::connection& c, std::string&) {
    pg_session_setup(c, options);
    MigrateReport report;
    report.status = status_of(builtin, pg_read_applied(c));
    return report;
  });
}

}  // namespace
}  // namespace trackevent

/// The module's one entry point (detail::PgMigrateEntry): C linkage so that migrate.cpp finds it
/// by name with dlsym(); exceptions (MigrateError) propagate to the caller, which shares its
/// C++ runtime with this module.
extern "C" __attribute__((visibility("default"))) void trackevent_pg_migrate_v1(
    const trackevent::DbTarget& target, const trackevent::MigrateOptions& options,
    trackevent::detail::PgMigrateAction action, trackevent::MigrateReport& report) {
  report = action == trackevent::detail::PgMigrateAction::migrate
               ? trackevent::pg_migrate(target, options)
               : trackevent::pg_status(target, options);
}
