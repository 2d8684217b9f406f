// Schema migrations: the built-in list, the bookkeeping shared by both kinds of database, and
// applying them to SQLite (BEGIN IMMEDIATE). PostgreSQL's half (libpqxx, under an advisory lock)
// is pg_migrate.cpp.
#include "schema/migrate.hpp"

#include "schema/migrate_internal.hpp"
#include "schema/schema_data.hpp"
#include "sqlite/sqlite_util.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent {
// ---------------------------------------------------------------------------------------------
// Shared bookkeeping (declared in migrate_internal.hpp)

namespace detail {

std::string label(const Migration& m) {
  char num[16];
  std::snprintf(num, sizeof num, "%04d", m.version);
  return std::string(num) + "_" + m.name;
}

namespace {
std::string mismatch_message(const Migration& m) {
  return "migration " + label(m) +
         ": checksum mismatch: the applied migration differs from this build's";
}
}  // namespace

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

}  // namespace detail

namespace {

using detail::AppliedRow;
using detail::AppliedRows;
using detail::dry_run_report;
using detail::label;
using detail::mismatch_message;
using detail::status_of;
using detail::throw_on_mismatch;

// ---------------------------------------------------------------------------------------------
// The built-in list

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
    m->checksum = std::string(f.sha256);  // computed by cmake/EmbedSchema.cmake
    out.push_back(std::move(*m));
  }
  std::sort(out.begin(), out.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  return out;
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
  // Whatever ends this function early (a failed statement throws) leaves no transaction open.
  struct RollbackUnlessDone {
    sqlite3* db;
    ~RollbackUnlessDone() {
      if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  } rollback{db};
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
}

detail::SqliteDb sqlite_open_for_migrate(const std::string& path, bool create) {
  try {
    return create ? detail::open_sqlite_store(path) : detail::open_existing_sqlite(path);
  } catch (const std::exception& e) {
    throw MigrateError(e.what(), true);
  }
}

MigrateReport sqlite_migrate(const DbTarget& target, const MigrateOptions& options) {
  if (options.partition_interval) {
    // Said, not ignored: the option would otherwise seem to have taken effect.
    throw MigrateError("--partition-interval applies to PostgreSQL only: the SQLite store at " +
                           target.conninfo + " is not partitioned",
                       false);
  }
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
  return target.kind == DbTarget::Kind::postgres ? detail::pg_migrate(target, options)
                                                 : sqlite_migrate(target, options);
}

MigrateReport migration_status(const DbTarget& target, const MigrateOptions& options) {
  return target.kind == DbTarget::Kind::postgres ? detail::pg_status(target, options)
                                                 : sqlite_status(target);
}

namespace detail {

std::int64_t migration_lock_key() noexcept {
  // A constant, not computed: it must never change (migrate_internal.hpp).
  return 0x1b54e8332c903c93;
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
