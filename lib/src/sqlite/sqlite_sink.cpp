// The embedded store: a SQLite file in WAL mode, migrated on open, written one batch per
// transaction. Also the SQLite helpers of sqlite_util.hpp.
#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "schema/migrate_internal.hpp"
#include "sqlite/sqlite_util.hpp"

#include <climits>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

namespace trackevent {
namespace detail {
namespace {

bool is_memory_path(const std::string& path) { return path.empty() || path == ":memory:"; }

/// Makes each missing ancestor of `path` with mode 0700 (the store holds user data).
Result<> make_parent_dirs(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::filesystem::path prefix;
  for (const auto& part : parent) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error{"cannot create directory " + prefix.string() + ": " + std::strerror(errno)};
    }
  }
  return ok();
}

/// Creates the file with mode 0600 exactly (whatever the umask); leaves an existing file alone.
Result<> create_private_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return ok();
    return Error{std::strerror(errno)};
  }
  const int rc = ::fchmod(fd, 0600);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) return Error{std::strerror(saved)};
  return ok();
}

Result<SqliteDb> open_db(const std::string& path, int flags,
                         std::chrono::milliseconds busy_timeout) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db(raw);  // closes even a handle that failed to open
  if (rc != SQLITE_OK) {
    return Error{"cannot open SQLite database " + path + ": " + sqlite_message(db.get(), rc)};
  }
  sqlite3_extended_result_codes(db.get(), 1);
  const auto ms = busy_timeout.count();
  sqlite3_busy_timeout(db.get(), ms > INT_MAX ? INT_MAX : static_cast<int>(ms));
  return db;
}

/// sqlite_exec() without the exception: the error's message is what SqliteError's would be.
Result<> run_sql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return ok();
  std::string message = "sqlite: ";
  message += sqlite3_errstr(rc);
  if (err != nullptr) {
    message += ": ";
    message += err;
    sqlite3_free(err);
  }
  return Error{std::move(message)};
}

/// sqlite_prepare() without the exception.
Result<SqliteStmt> prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  SqliteStmt stmt(raw);
  if (rc != SQLITE_OK) return Error{sqlite_message(db, rc)};
  return stmt;
}

// ---------------------------------------------------------------------------------------------

/// SQLite result code -> what the dispatcher should do with the batch.
Disposition classify_sqlite(int rc) noexcept {
  switch (rc & 0xff) {
    case SQLITE_BUSY:  // another writer held the lock for the whole busy timeout
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_INTERRUPT:
    case SQLITE_PROTOCOL:
    case SQLITE_SCHEMA:
    // Disk full is "insufficient resources", retried like PostgreSQL's 53100: space may be
    // freed, and the backoff is capped, so retrying costs little.
    case SQLITE_FULL:
      return Disposition::retry;
    case SQLITE_CONSTRAINT:  // a CHECK/NOT NULL (duplicates never get here: ON CONFLICT)
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return Disposition::reject;
    default:  // read-only, corrupt, not a database, no such table, permission: an operator's job
      return Disposition::hold;
  }
}

class SqliteSink final : public Sink {
 public:
  SqliteSink(std::string path, SqliteDb db)
      : path_(std::move(path)),
        db_(std::move(db)),
        begin_(sqlite_prepare(db_.get(), "BEGIN IMMEDIATE")),
        commit_(sqlite_prepare(db_.get(), "COMMIT")),
        insert_(sqlite_prepare(db_.get(),
                               "INSERT INTO analytics_events (event_id, org_id, user_id, "
                               "event_name, metadata, occurred_at) VALUES (?, ?, ?, ?, ?, ?) "
                               "ON CONFLICT (event_id) DO NOTHING")) {}

  WriteResult write(std::span<const Event> batch) noexcept override {
    if (batch.empty()) return {};
    try {
      return write_batch(batch);
    } catch (const std::exception& e) {  // bad_alloc and the like; nothing was committed
      rollback();
      return failed(Disposition::retry, std::string("sqlite: ") + e.what());
    } catch (...) {
      rollback();
      return failed(Disposition::retry, "sqlite: unknown error");
    }
  }

  [[nodiscard]] std::string describe() const override { return "sqlite:" + path_; }

 private:
  static WriteResult failed(Disposition d, std::string message) {
    WriteResult r;
    r.failure = Failure{d, "", std::move(message)};
    return r;
  }

  /// Classifies `rc`, reads the message before anything overwrites it, and undoes the batch.
  WriteResult failed_sqlite(int rc) {
    std::string message = sqlite_message(db_.get(), rc);
    sqlite3_reset(insert_.get());
    rollback();
    return failed(classify_sqlite(rc), std::move(message));
  }

  void rollback() noexcept {
    sqlite3_reset(begin_.get());
    sqlite3_reset(commit_.get());
    sqlite3_reset(insert_.get());
    // Some errors (FULL, IOERR, BUSY) already rolled the transaction back.
    if (sqlite3_get_autocommit(db_.get()) == 0) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  static int bind_text(sqlite3_stmt* s, int i, std::string_view text) {
    if (text.size() > static_cast<std::size_t>(INT_MAX)) return SQLITE_TOOBIG;
    return sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  }

  WriteResult write_batch(std::span<const Event> batch) {
    // BEGIN IMMEDIATE takes the write lock up front, so a busy store fails here (after the busy
    // timeout) rather than half way through the batch.
    int rc = sqlite3_step(begin_.get());
    sqlite3_reset(begin_.get());
    if (rc != SQLITE_DONE) return failed_sqlite(rc);

    WriteResult result;
    sqlite3_stmt* s = insert_.get();
    std::array<char, 36> id{};
    for (const Event& e : batch) {
      e.event_id.format_to(id.data());
      const std::string occurred = format_rfc3339(e.occurred_at_us);
      // Bound values are SQLITE_STATIC: `id`, `occurred` and the event outlive the step.
      rc = bind_text(s, 1, std::string_view(id.data(), id.size()));
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 2, e.org_id);
      if (rc == SQLITE_OK) {
        rc = e.user_id ? sqlite3_bind_int64(s, 3, *e.user_id) : sqlite3_bind_null(s, 3);
      }
      if (rc == SQLITE_OK) rc = bind_text(s, 4, e.event_name);
      if (rc == SQLITE_OK) rc = bind_text(s, 5, e.metadata);
      if (rc == SQLITE_OK) rc = bind_text(s, 6, occurred);
      if (rc != SQLITE_OK) return failed_sqlite(rc);
      rc = sqlite3_step(s);
      if (rc != SQLITE_DONE) return failed_sqlite(rc);
      // DO NOTHING on a conflict changes no row: that is how a duplicate is told apart.
      if (sqlite3_changes(db_.get()) > 0) {
        ++result.stored;
      } else {
        ++result.duplicates;
      }
      sqlite3_reset(s);
    }
    sqlite3_clear_bindings(s);

    rc = sqlite3_step(commit_.get());
    sqlite3_reset(commit_.get());
    if (rc != SQLITE_DONE) return failed_sqlite(rc);
    return result;
  }

  std::string path_;
  SqliteDb db_;  // declared first: destroyed after the statements below
  SqliteStmt begin_;
  SqliteStmt commit_;
  SqliteStmt insert_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// sqlite_util.hpp

Result<> set_wal_mode(sqlite3* db, bool in_memory, std::chrono::milliseconds busy_timeout) {
  const auto deadline = std::chrono::steady_clock::now() + busy_timeout;
  Result<SqliteStmt> stmt = prepare(db, "PRAGMA journal_mode = WAL");
  if (!stmt) return std::move(stmt).error();
  for (;;) {
    const int rc = sqlite3_step(stmt->get());
    if (rc == SQLITE_ROW) {
      const auto* mode = reinterpret_cast<const char*>(sqlite3_column_text(stmt->get(), 0));
      const std::string got = mode ? mode : "";
      if (got == "wal" || (in_memory && got == "memory")) return ok();
      return Error{"journal_mode is " + got + ", not wal"};
    }
    const int primary = rc & 0xff;
    if ((primary != SQLITE_BUSY && primary != SQLITE_LOCKED) ||
        std::chrono::steady_clock::now() >= deadline) {
      return Error{sqlite_message(db, rc)};
    }
    sqlite3_reset(stmt->get());
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

std::string sqlite_message(sqlite3* db, int rc) {
  std::string out = "sqlite: ";
  const char* str = sqlite3_errstr(rc);
  out += str ? str : "error";
  const char* msg = db ? sqlite3_errmsg(db) : nullptr;
  if (msg && *msg && (str == nullptr || std::strcmp(msg, str) != 0)) {
    out += ": ";
    out += msg;
  }
  return out;
}

void sqlite_exec(sqlite3* db, const char* sql) {
  if (Result<> r = run_sql(db, sql); !r) {
    throw SqliteError(sqlite3_extended_errcode(db), r.error().message);
  }
}

SqliteStmt sqlite_prepare(sqlite3* db, std::string_view sql) {
  Result<SqliteStmt> stmt = prepare(db, sql);
  if (!stmt) throw SqliteError(sqlite3_extended_errcode(db), stmt.error().message);
  return std::move(stmt).value();
}

SqliteDb open_sqlite_store(const std::string& path, std::chrono::milliseconds busy_timeout) {
  if (!is_memory_path(path)) {
    Result<> created = make_parent_dirs(path);
    if (created) created = create_private_file(path);
    if (!created) {
      throw std::runtime_error("cannot create SQLite database " + path + ": " +
                               created.error().message);
    }
  }
  Result<SqliteDb> db = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, busy_timeout);
  if (!db) throw std::runtime_error(db.error().message);
  // WAL: readers never block the writer; synchronous=NORMAL: durable across process crashes,
  // and a power loss can lose only the last commits, never corrupt the file.
  Result<> set = set_wal_mode(db->get(), is_memory_path(path), busy_timeout);
  if (set) set = run_sql(db->get(), "PRAGMA synchronous = NORMAL");
  if (!set) {
    throw std::runtime_error("cannot open SQLite database " + path + ": " + set.error().message);
  }
  return std::move(db).value();
}

SqliteDb open_existing_sqlite(const std::string& path, std::chrono::milliseconds busy_timeout) {
  if (!is_memory_path(path)) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return nullptr;
  }
  Result<SqliteDb> db = open_db(path, SQLITE_OPEN_READWRITE, busy_timeout);
  if (!db) throw std::runtime_error(db.error().message);
  return std::move(db).value();
}

std::unique_ptr<Sink> make_sqlite_sink(std::string path, std::chrono::milliseconds busy_timeout) {
  try {
    SqliteDb db = open_sqlite_store(path, busy_timeout);
    // The embedded store must work on a fresh machine: no separate migrate step.
    (void)apply_sqlite_migrations(db.get());
    return std::make_unique<SqliteSink>(path, std::move(db));
  } catch (const MigrateError& e) {
    throw std::runtime_error(std::string("cannot migrate ") + e.what());  // names the path
  } catch (const SqliteError& e) {
    throw std::runtime_error("cannot open SQLite database " + path + ": " + e.what());
  }
}

}  // namespace detail

std::unique_ptr<Sink> make_sqlite_sink(std::string path) {
  return detail::make_sqlite_sink(std::move(path), detail::kSqliteBusyTimeout);
}

}  // namespace trackevent
