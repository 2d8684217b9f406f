#pragma once
// Private SQLite helpers shared by the SQLite sink and the SQLite migrations.

#include "base/result.hpp"
#include "config/database_url.hpp"

#include <sqlite3.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace trackevent::detail {

struct SqliteCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using SqliteDb = std::unique_ptr<sqlite3, SqliteCloser>;

struct SqliteFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using SqliteStmt = std::unique_ptr<sqlite3_stmt, SqliteFinalizer>;

/// An SQLite call failed while a store was being opened or migrated (setup: the helpers below that
/// say so throw it); `code` is the extended result code, what() is sqlite_message().
struct SqliteError : std::runtime_error {
  SqliteError(int code_, const std::string& what) : std::runtime_error(what), code(code_) {}
  int code = SQLITE_ERROR;
};

/// How long any SQLite call waits for another connection's lock before giving up with
/// SQLITE_BUSY, so no wait on the embedded store is unbounded.
inline constexpr std::chrono::milliseconds kSqliteBusyTimeout{5000};

/// "sqlite: <errstr of rc>: <errmsg of db>" (the second part omitted when it says the same).
[[nodiscard]] std::string sqlite_message(sqlite3* db, int rc);
/// Runs SQL (possibly several statements) that returns no rows; throws SqliteError. For setup
/// code (the migrations).
void sqlite_exec(sqlite3* db, const char* sql);
/// Prepares one statement; throws SqliteError. For setup code (the migrations, constructors).
[[nodiscard]] SqliteStmt sqlite_prepare(sqlite3* db, std::string_view sql);

/// Switches `db` to WAL (`in_memory`: "memory" is accepted too). Converting a fresh file needs an
/// exclusive lock, and SQLite reports BUSY at once instead of calling the busy handler when
/// another opener holds a lock, so this retries for up to `busy_timeout`. Fails with
/// sqlite_message(), or "journal_mode is X, not wal" when SQLite keeps another journal mode.
[[nodiscard]] Result<> set_wal_mode(sqlite3* db, bool in_memory,
                                    std::chrono::milliseconds busy_timeout);

/// Opens (creating it if needed) the store at `path`: missing parent directories are made with
/// mode 0700 and a new file with mode 0600; then busy timeout, WAL and synchronous=NORMAL.
/// Throws std::runtime_error naming the path and the reason.
[[nodiscard]] SqliteDb open_sqlite_store(
    const std::string& path, std::chrono::milliseconds busy_timeout = kSqliteBusyTimeout);
/// Opens an existing database read-write without creating anything (no directories, no file,
/// no journal-mode change); nullptr when the file does not exist. Throws like open_sqlite_store.
[[nodiscard]] SqliteDb open_existing_sqlite(
    const std::string& path, std::chrono::milliseconds busy_timeout = kSqliteBusyTimeout);

/// make_sqlite_sink with a chosen busy timeout (tests use a short one).
[[nodiscard]] std::unique_ptr<Sink> make_sqlite_sink(std::string path,
                                                     std::chrono::milliseconds busy_timeout);

}  // namespace trackevent::detail
