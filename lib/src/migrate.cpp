// Schema migrations: the built-in list, and applying it to PostgreSQL (libpqxx, under an advisory
// lock) or SQLite (BEGIN IMMEDIATE), with a schema_migrations bookkeeping table on both.
#include "trackevent/migrate.hpp"

#include "migrate_internal.hpp"
#include "schema_data.hpp"
#include "sha256.hpp"
#include "sqlite_util.hpp"

#include <libpq-fe.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent {
namespace {

// ---------------------------------------------------------------------------------------------
// The built-in list

/// "0001_create_analytics_events": how messages name a migration (its file name without .sql).
std::string label(const Migration& m) {
  char num[16];
  std::snprintf(num, sizeof num, "%04d", m.version);
  return std::string(num) + "_" + m.name;
}

/// Splits "NNNN_name.sql" (4 digits, version >= 1, name of [a-z0-9_]); nullopt when malformed.
std::optional<Migration> parse_file_name(std::string_view file) {
  constexpr std::string_view kExt = ".sql";
  if (file.size() < 4 + 1 + 1 + kExt.size() || !file.ends_with(kExt) || file[4] != '_') {
    return std::nullopt;
  }
  Migration m;
  for (std::size_t i = 0; i < 4; ++i) {
    if (file[i] < '0' || file[i] > '9') return std::nullopt;
    m.version = m.version * 10 + (file[i] - '0');
  }
  const std::string_view name = file.substr(5, file.size() - 5 - kExt.size());
  const bool name_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (m.version < 1 || !name_ok) return std::nullopt;
  m.name = std::string(name);
  return m;
}

/// Throws std::logic_error for a bad file name or a duplicate version: either is a packaging
/// bug, reported on first use with the offending file names rather than guessed around.
std::vector<Migration> load_builtin(std::string_view kind) {
  std::vector<Migration> out;
  std::map<int, std::string> files_by_version;
  for (const detail::SchemaFile& f : detail::schema_files()) {
    if (f.kind != kind) continue;
    const std::string where = "schema/" + std::string(kind) + "/" + std::string(f.file);
    std::optional<Migration> m = parse_file_name(f.file);
    if (!m) {
      throw std::logic_error(where +
                             ": a migration file name must be NNNN_name.sql (4 digits, version "
                             ">= 1, name of lowercase letters, digits and _)");
    }
    const auto [it, inserted] = files_by_version.emplace(m->version, std::string(f.file));
    if (!inserted) {
      throw std::logic_error("schema/" + std::string(kind) + ": two migrations have version " +
                             std::to_string(m->version) + ": " + it->second + " and " +
                             std::string(f.file));
    }
    m->sql = std::string(f.sql);
    m->checksum = detail::sha256_hex(m->sql);
    out.push_back(std::move(*m));
  }
  std::sort(out.begin(), out.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shared bookkeeping

struct AppliedRow {
  std::string name;
  std::string checksum;
  std::string applied_at;
};
using AppliedRows = std::map<int, AppliedRow>;

std::string mismatch_message(const Migration& m) {
  return "migration " + label(m) +
         ": checksum mismatch: the applied migration differs from this build's";
}

/// The state of every built-in migration given the rows of schema_migrations. Rows for versions
/// this build does not know (a newer build migrated the database) are left out.
std::vector<MigrationStatus> status_of(const std::vector<Migration>& builtin,
                                       const AppliedRows& applied) {
  std::vector<MigrationStatus> out;
  out.reserve(builtin.size());
  for (const Migration& m : builtin) {
    MigrationStatus s;
    s.version = m.version;
    s.name = m.name;
    if (const auto it = applied.find(m.version); it != applied.end()) {
      s.state = it->second.checksum == m.checksum ? MigrationStatus::State::applied
                                                  : MigrationStatus::State::checksum_mismatch;
      s.applied_at = it->second.applied_at;
    }
    out.push_back(std::move(s));
  }
  return out;
}

void throw_on_mismatch(const std::vector<Migration>& builtin, const AppliedRows& applied) {
  for (const Migration& m : builtin) {
    const auto it = applied.find(m.version);
    if (it != applied.end() && it->second.checksum != m.checksum) {
      throw MigrateError(mismatch_message(m), false);
    }
  }
}

/// A dry run's report: the status as it would be after the run, and what it would apply.
MigrateReport dry_run_report(const std::vector<Migration>& builtin, const AppliedRows& applied) {
  MigrateReport r;
  r.status = status_of(builtin, applied);
  for (MigrationStatus& s : r.status) {
    if (s.state == MigrationStatus::State::pending) {
      r.applied.push_back(s.version);
      s.state = MigrationStatus::State::applied;  // as it would be; applied_at stays empty
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

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

// ---------------------------------------------------------------------------------------------
// SQLite

constexpr const char* kSqliteCreateBookkeeping = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
))sql";

bool sqlite_has_bookkeeping(sqlite3* db) {
  detail::SqliteStmt s = detail::sqlite_prepare(
      db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  const int rc = sqlite3_step(s.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw detail::SqliteError(rc, detail::sqlite_message(db, rc));
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

AppliedRows sqlite_read_applied(sqlite3* db) {
  AppliedRows rows;
  if (!sqlite_has_bookkeeping(db)) return rows;
  detail::SqliteStmt s = detail::sqlite_prepare(
      db, "SELECT version, name, checksum, applied_at FROM schema_migrations");
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    rows[sqlite3_column_int(s.get(), 0)] =
        AppliedRow{column_text(s.get(), 1), column_text(s.get(), 2), column_text(s.get(), 3)};
  }
  if (rc != SQLITE_DONE) throw detail::SqliteError(rc, detail::sqlite_message(db, rc));
  return rows;
}

/// One pending migration and its row in one BEGIN IMMEDIATE transaction. Another process may
/// have applied it since we looked, so the row is checked again under the write lock.
/// Returns false when it was already applied.
bool sqlite_apply_one(sqlite3* db, const Migration& m) {
  detail::sqlite_exec(db, "BEGIN IMMEDIATE");
  try {
    detail::sqlite_exec(db, kSqliteCreateBookkeeping);
    const AppliedRows now = sqlite_read_applied(db);
    if (const auto it = now.find(m.version); it != now.end()) {
      if (it->second.checksum != m.checksum) throw MigrateError(mismatch_message(m), false);
      detail::sqlite_exec(db, "COMMIT");
      return false;
    }
    detail::sqlite_exec(db, m.sql.c_str());
    detail::SqliteStmt ins = detail::sqlite_prepare(
        db, "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)");
    sqlite3_bind_int(ins.get(), 1, m.version);
    sqlite3_bind_text(ins.get(), 2, m.name.data(), static_cast<int>(m.name.size()), SQLITE_STATIC);
    sqlite3_bind_text(ins.get(), 3, m.checksum.data(), static_cast<int>(m.checksum.size()),
                      SQLITE_STATIC);
    if (const int rc = sqlite3_step(ins.get()); rc != SQLITE_DONE) {
      throw detail::SqliteError(rc, detail::sqlite_message(db, rc));
    }
    detail::sqlite_exec(db, "COMMIT");
    return true;
  } catch (...) {
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

detail::SqliteDb sqlite_open_for_migrate(const std::string& path, bool create) {
  try {
    return create ? detail::open_sqlite_store(path) : detail::open_existing_sqlite(path);
  } catch (const std::exception& e) {
    throw MigrateError(e.what(), true);
  }
}

MigrateReport sqlite_migrate(const DbTarget& target, const MigrateOptions& options) {
  const std::vector<Migration>& builtin = builtin_migrations(DbTarget::Kind::sqlite);
  if (options.dry_run) {
    // A dry run creates nothing, not even the file.
    AppliedRows applied;
    if (detail::SqliteDb db = sqlite_open_for_migrate(target.conninfo, false)) {
      try {
        applied = sqlite_read_applied(db.get());
      } catch (const detail::SqliteError& e) {
        throw MigrateError(target.conninfo + ": " + e.what(), false);
      }
    }
    throw_on_mismatch(builtin, applied);
    return dry_run_report(builtin, applied);
  }
  detail::SqliteDb db = sqlite_open_for_migrate(target.conninfo, true);
  return detail::apply_sqlite_migrations(db.get());
}

MigrateReport sqlite_status(const DbTarget& target) {
  const std::vector<Migration>& builtin = builtin_migrations(DbTarget::Kind::sqlite);
  AppliedRows applied;
  if (detail::SqliteDb db = sqlite_open_for_migrate(target.conninfo, false)) {
    try {
      applied = sqlite_read_applied(db.get());
    } catch (const detail::SqliteError& e) {
      throw MigrateError(target.conninfo + ": " + e.what(), false);
    }
  }
  MigrateReport report;
  report.status = status_of(builtin, applied);
  return report;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public and private entry points

const std::vector<Migration>& builtin_migrations(DbTarget::Kind kind) {
  // Function-local statics: a bad file name throws on every call, never yields a partial list.
  if (kind == DbTarget::Kind::postgres) {
    static const std::vector<Migration> postgres = load_builtin("postgres");
    return postgres;
  }
  static const std::vector<Migration> sqlite = load_builtin("sqlite");
  return sqlite;
}

MigrateReport migrate(const DbTarget& target, const MigrateOptions& options) {
  return target.kind == DbTarget::Kind::postgres ? pg_migrate(target, options)
                                                 : sqlite_migrate(target, options);
}

MigrateReport migration_status(const DbTarget& target, const MigrateOptions& options) {
  return target.kind == DbTarget::Kind::postgres ? pg_status(target, options)
                                                 : sqlite_status(target);
}

namespace detail {

std::int64_t migration_lock_key() noexcept {
  const Sha256::Digest d = sha256("trackevent.migrate");
  std::uint64_t key = 0;
  for (std::size_t i = 0; i < 8; ++i) key = (key << 8) | d[i];
  return static_cast<std::int64_t>(key);  // two's complement (C++20), as bigint takes it
}

MigrateReport apply_sqlite_migrations(sqlite3* db) {
  const std::vector<Migration>& builtin = builtin_migrations(DbTarget::Kind::sqlite);
  const char* file = sqlite3_db_filename(db, "main");
  const std::string where = file && *file ? file : ":memory:";
  const Migration* current = nullptr;
  try {
    // Reading first means an up-to-date store (every open of the sink) takes no write lock.
    AppliedRows applied = sqlite_read_applied(db);
    throw_on_mismatch(builtin, applied);
    MigrateReport report;
    for (const Migration& m : builtin) {
      if (applied.contains(m.version)) continue;
      current = &m;
      if (sqlite_apply_one(db, m)) report.applied.push_back(m.version);
    }
    current = nullptr;
    if (!report.applied.empty()) applied = sqlite_read_applied(db);
    report.status = status_of(builtin, applied);
    return report;
  } catch (const SqliteError& e) {
    const int primary = e.code & 0xff;
    const bool unreachable = primary == SQLITE_BUSY || primary == SQLITE_LOCKED ||
                             primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR;
    throw MigrateError(
        where + ": " + (current ? "migration " + label(*current) + ": " : "") + e.what(),
        unreachable);
  }
}

}  // namespace detail
}  // namespace trackevent
