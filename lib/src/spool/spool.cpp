// The spool: a SQLite file in WAL mode shared by threads (one connection behind a mutex) and by
// processes (SQLite's file locks; every write transaction is BEGIN IMMEDIATE, so lock waits happen
// up front under the busy timeout and never end in a mid-transaction deadlock).

#include "spool/spool.hpp"

#include "spool/dead_letter_file.hpp"
#include "spool/fs_util.hpp"
#include "sqlite/sqlite_util.hpp"

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <utility>

namespace trackevent::detail {

namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS spool (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id BLOB NOT NULL,
  org_id INTEGER NOT NULL,
  user_id INTEGER,
  event_name TEXT NOT NULL,
  metadata TEXT NOT NULL,
  occurred_at_us INTEGER NOT NULL,
  claimed_by TEXT,
  claimed_until INTEGER
);
)sql";

std::int64_t wall_clock_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// "<hostname>:<pid>:<random>", made once per process (a fork child gets its own).
Result<std::string> claimer_identity() {
  static std::mutex mu;
  static pid_t pid = 0;
  static std::string identity;
  std::lock_guard lock(mu);
  if (pid != ::getpid()) {
    std::uint64_t r = 0;
    try {
      std::random_device rd;
      r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    } catch (const std::exception& e) {  // the standard says only "derived from std::exception"
      return Error{std::string("spool: no random source for the claimer identity: ") + e.what()};
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
    identity = std::string(host) + ":" + std::to_string(::getpid()) + ":" + buf;
    pid = ::getpid();
  }
  return identity;
}

// A prepared statement that is reset after every use, so no read transaction stays open.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }

  Result<> prepare(sqlite3* db, const char* sql) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
      return Error{std::string("spool: cannot prepare statement: ") + sqlite3_errmsg(db)};
    }
    return ok();
  }
  void finalize() noexcept {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
  sqlite3_stmt* get() const noexcept { return stmt_; }
  void reset() noexcept {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement on every exit path.
struct ResetGuard {
  Stmt& s;
  ~ResetGuard() { s.reset(); }
};

class SqliteSpool final : public Spool {
 public:
  // Not connected yet: open() connects.
  SqliteSpool(std::filesystem::path dir, SpoolOptions options)
      : dir_(std::move(dir)), path_(dir_ / "spool.db"), options_(options) {}
  ~SqliteSpool() override { disconnect(); }
  SqliteSpool(const SqliteSpool&) = delete;
  SqliteSpool& operator=(const SqliteSpool&) = delete;

  // Opens the file and prepares every statement; on failure nothing stays open.
  Result<> connect() {
    if (auto r = ensure_private_dir(dir_, "spool directory"); !r) return r;
    // SQLITE_OPEN_NOFOLLOW refuses a symlink anywhere in the name, but a state directory reached
    // through a symlink is legitimate: resolve the directory, then refuse only a linked file.
    std::error_code ec;
    const std::filesystem::path real_dir = std::filesystem::canonical(dir_, ec);
    if (ec) return Error{"spool: cannot resolve " + dir_.string() + ": " + ec.message()};
    const std::filesystem::path real_path = real_dir / path_.filename();
    // Create the file ourselves so it is 0600 whatever the umask; SQLite then gives the -wal and
    // -shm files the database file's mode.
    const Result<int> fd = open_private_file(real_path, O_RDWR);
    if (!fd) return Error{"spool: " + fd.error().message};
    ::close(*fd);

    const int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
    if (sqlite3_open_v2(real_path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      std::string msg = "spool: cannot open " + path_.string() + ": " +
                        (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory");
      disconnect();
      return Error{std::move(msg)};
    }
    // Closed again on every way out below but success, an exception included.
    struct CloseUnlessKept {
      SqliteSpool& spool;
      bool keep = false;
      ~CloseUnlessKept() {
        if (!keep) spool.disconnect();
      }
    } guard{*this};
    pid_ = ::getpid();
    sqlite3_busy_timeout(db_, static_cast<int>(std::clamp<std::int64_t>(
                                  options_.busy_timeout.count(), 0, 3'600'000)));
    if (!options_.checkpoint_on_close) {
      sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    }
    if (auto r = set_wal_mode(db_, /*in_memory=*/false, options_.busy_timeout); !r) {
      return Error{"spool " + path_.string() + ": PRAGMA journal_mode=WAL: " + r.error().message};
    }
    if (auto r = exec(options_.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        !r) {
      return r;
    }
    // Keep a drained spool small: truncate the WAL back to 4 MiB after checkpoints.
    if (auto r = exec("PRAGMA journal_size_limit=4194304"); !r) return r;
    if (auto r = migrate(); !r) return r;
    tighten_sidecar_modes();
    const std::pair<Stmt*, const char*> statements[] = {
        {&insert_,
         "INSERT INTO spool(event_id, org_id, user_id, event_name, metadata, occurred_at_us) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
        {&claim_select_,
         "SELECT id, event_id, org_id, user_id, event_name, metadata, occurred_at_us FROM spool "
         "WHERE claimed_until IS NULL OR claimed_until < ?1 ORDER BY id LIMIT ?2"},
        {&claim_update_, "UPDATE spool SET claimed_by = ?1, claimed_until = ?2 WHERE id = ?3"},
        {&remove_, "DELETE FROM spool WHERE id = ?1"},
        // Only our own claims: after our lease expired another process may hold the row.
        {&release_,
         "UPDATE spool SET claimed_by = NULL, claimed_until = NULL "
         "WHERE id = ?1 AND claimed_by = ?2"},
        // The same rule as release_: only our own claims (expired or not, as long as nobody took
        // the row since).
        {&extend_, "UPDATE spool SET claimed_until = ?3 WHERE id = ?1 AND claimed_by = ?2"},
        {&count_, "SELECT count(*) FROM spool"},
        {&count_between_, "SELECT count(*) FROM spool WHERE id BETWEEN ?1 AND ?2"},
        {&begin_, "BEGIN IMMEDIATE"},
        {&commit_, "COMMIT"},
        {&rollback_, "ROLLBACK"},
    };
    for (const auto& [stmt, sql] : statements) {
      if (auto r = stmt->prepare(db_, sql); !r) return r;
    }
    guard.keep = true;
    return ok();
  }

  Result<Ids> append(std::span<const Event> events) noexcept override {
    return locked<Ids>("append", [&]() -> Result<Ids> {
      if (events.empty()) return Ids{0, -1};
      if (auto r = begin(); !r) return std::move(r).error();
      std::int64_t first_appended = 0;
      for (const Event& e : events) {
        ResetGuard guard{insert_};
        sqlite3_stmt* s = insert_.get();
        sqlite3_bind_blob(s, 1, e.event_id.bytes.data(), static_cast<int>(e.event_id.bytes.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, e.org_id);
        if (e.user_id) {
          sqlite3_bind_int64(s, 3, *e.user_id);
        } else {
          sqlite3_bind_null(s, 3);
        }
        sqlite3_bind_text(s, 4, e.event_name.data(), static_cast<int>(e.event_name.size()),
                          SQLITE_STATIC);
        sqlite3_bind_text(s, 5, e.metadata.data(), static_cast<int>(e.metadata.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, e.occurred_at_us);
        if (sqlite3_step(s) != SQLITE_DONE) return fail("append");
        if (&e == &events.front()) first_appended = sqlite3_last_insert_rowid(db_);
      }
      if (auto r = commit("append"); !r) return std::move(r).error();
      return Ids{first_appended, sqlite3_last_insert_rowid(db_)};
    });
  }

  Result<std::vector<SpooledEvent>> claim(std::size_t max,
                                          std::chrono::seconds lease) noexcept override {
    using Rows = std::vector<SpooledEvent>;
    return locked<Rows>("claim", [&]() -> Result<Rows> {
      Rows out;
      if (max == 0) return out;
      const Result<std::string> owner = claimer_identity();
      if (!owner) return owner.error();
      if (auto r = begin(); !r) return std::move(r).error();
      const std::int64_t now = wall_clock_ms();
      const std::int64_t until =
          now + std::max<std::int64_t>(0, std::chrono::milliseconds(lease).count());
      {
        ResetGuard guard{claim_select_};
        sqlite3_stmt* s = claim_select_.get();
        sqlite3_bind_int64(s, 1, now);
        const auto limit = std::min<std::uint64_t>(max, std::numeric_limits<std::int64_t>::max());
        sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(limit));
        int rc = SQLITE_ROW;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(read_row(s));
        if (rc != SQLITE_DONE) return fail("claim");
      }
      for (const SpooledEvent& row : out) {
        ResetGuard guard{claim_update_};
        sqlite3_stmt* s = claim_update_.get();
        sqlite3_bind_text(s, 1, owner->data(), static_cast<int>(owner->size()), SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, until);
        sqlite3_bind_int64(s, 3, row.spool_id);
        if (sqlite3_step(s) != SQLITE_DONE) return fail("claim");
      }
      if (auto r = commit("claim"); !r) return std::move(r).error();
      return out;
    });
  }

  Result<> remove(std::span<const std::int64_t> spool_ids) noexcept override {
    return for_each_id("remove", spool_ids, remove_, false);
  }

  Result<> release(std::span<const std::int64_t> spool_ids) noexcept override {
    return for_each_id("release", spool_ids, release_, true);
  }

  Result<> extend(std::span<const std::int64_t> spool_ids,
                  std::chrono::seconds lease) noexcept override {
    return for_each_id("extend", spool_ids, extend_, true, lease);
  }

  Result<std::int64_t> count_between(std::int64_t first, std::int64_t last) noexcept override {
    return locked<std::int64_t>("count", [&]() -> Result<std::int64_t> {
      ResetGuard guard{count_between_};
      sqlite3_bind_int64(count_between_.get(), 1, first);
      sqlite3_bind_int64(count_between_.get(), 2, last);
      if (sqlite3_step(count_between_.get()) != SQLITE_ROW) return Error{describe("count")};
      return static_cast<std::int64_t>(sqlite3_column_int64(count_between_.get(), 0));
    });
  }

  Result<std::int64_t> count() noexcept override {
    return locked<std::int64_t>("count", [&]() -> Result<std::int64_t> {
      ResetGuard guard{count_};
      if (sqlite3_step(count_.get()) != SQLITE_ROW) return Error{describe("count")};
      return static_cast<std::int64_t>(sqlite3_column_int64(count_.get(), 0));
    });
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept override { return path_; }

 private:
  void disconnect() noexcept {
    for (Stmt* s : {&insert_, &claim_select_, &claim_update_, &remove_, &release_, &extend_,
                    &count_, &count_between_, &begin_, &commit_, &rollback_}) {
      s->finalize();
    }
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }

  Result<> exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return ok();
    Error error{"spool " + path_.string() + ": " + sql + ": " +
                (msg != nullptr ? msg : sqlite3_errmsg(db_))};
    sqlite3_free(msg);
    return error;
  }

  Result<int> user_version() {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &s, nullptr) != SQLITE_OK) {
      return Error{"spool " + path_.string() + ": " + sqlite3_errmsg(db_)};
    }
    const int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    if (v < 0) return Error{"spool " + path_.string() + ": " + sqlite3_errmsg(db_)};
    return v;
  }

  // Schema upgrades run under BEGIN IMMEDIATE so concurrent openers do them exactly once.
  Result<> migrate() {
    if (auto r = exec("BEGIN IMMEDIATE"); !r) return r;
    Result<> done = upgrade_schema();
    if (!done) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return done;
  }

  Result<> upgrade_schema() {
    const Result<int> v = user_version();
    if (!v) return v.error();
    if (*v > kSchemaVersion) {
      return Error{"spool " + path_.string() + " has schema version " + std::to_string(*v) +
                   ", newer than this trackevent understands (" + std::to_string(kSchemaVersion) +
                   "); upgrade trackevent"};
    }
    if (*v < 1) {
      if (auto r = exec(kSchemaV1); !r) return r;
      if (auto r = exec("PRAGMA user_version=1"); !r) return r;
    }
    return exec("COMMIT");
  }

  // SQLite already creates -wal/-shm with spool.db's mode; this repairs files left by others.
  void tighten_sidecar_modes() const noexcept {
    for (const char* suffix : {"-wal", "-shm"}) {
      const std::string p = path_.string() + suffix;
      struct stat st {};
      if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
        ::chmod(p.c_str(), 0600);
      }
    }
  }

  // Runs `op` under mu_ once the connection is ready: a fork child reconnects first (see
  // spool.hpp). SQLite's failures come back from `op`. Allocating (a row, a message) is all that
  // may throw in here; that undoes the transaction and comes back as an Error too.
  template <typename T, typename Op>
  Result<T> locked(const char* what, Op&& op) noexcept {
    std::lock_guard lock(mu_);
    try {
      if (db_ == nullptr || pid_ != ::getpid()) {
        disconnect();
        if (auto r = connect(); !r) return std::move(r).error();
      }
      return op();
    } catch (const std::bad_alloc& e) {
      rollback();
      return Error{std::string("spool ") + what + " failed: " + e.what()};
    }
  }

  Result<> begin() {
    ResetGuard guard{begin_};
    if (sqlite3_step(begin_.get()) == SQLITE_DONE) return ok();
    return Error{describe("begin")};
  }

  Result<> commit(const char* op) {
    ResetGuard guard{commit_};
    if (sqlite3_step(commit_.get()) == SQLITE_DONE) return ok();
    return fail(op);
  }

  void rollback() noexcept {
    if (db_ == nullptr || sqlite3_get_autocommit(db_) != 0) return;  // no transaction open
    ResetGuard guard{rollback_};
    sqlite3_step(rollback_.get());
  }

  std::string describe(const char* op) const {
    const int rc = sqlite3_extended_errcode(db_);
    std::string msg =
        std::string("spool ") + op + " failed (" + path_.string() + "): " + sqlite3_errmsg(db_);
    if ((rc & 0xff) == SQLITE_FULL) msg += " (disk full)";
    if ((rc & 0xff) == SQLITE_BUSY) msg += " (spool locked by another process for too long)";
    return msg;
  }

  // The reason of the failed step, read before the open transaction is undone.
  Error fail(const char* op) {
    Error error{describe(op)};
    rollback();
    return error;
  }

  // Runs `stmt` once per id in one transaction: ?1 the id, ?2 our identity (`bind_owner`), ?3 the
  // end of a lease of `lease` from now (when given).
  Result<> for_each_id(const char* what, std::span<const std::int64_t> ids, Stmt& stmt,
                       bool bind_owner,
                       std::optional<std::chrono::seconds> lease = std::nullopt) noexcept {
    return locked<void>(what, [&]() -> Result<> {
      if (ids.empty()) return ok();
      std::string owner;
      if (bind_owner) {
        Result<std::string> id = claimer_identity();
        if (!id) return std::move(id).error();
        owner = std::move(*id);
      }
      if (auto r = begin(); !r) return r;
      const std::int64_t until =
          lease ? wall_clock_ms() +
                      std::max<std::int64_t>(0, std::chrono::milliseconds(*lease).count())
                : 0;
      for (const std::int64_t id : ids) {
        ResetGuard guard{stmt};
        sqlite3_bind_int64(stmt.get(), 1, id);
        if (bind_owner) {
          sqlite3_bind_text(stmt.get(), 2, owner.data(), static_cast<int>(owner.size()),
                            SQLITE_STATIC);
        }
        if (lease) sqlite3_bind_int64(stmt.get(), 3, until);
        if (sqlite3_step(stmt.get()) != SQLITE_DONE) return fail("update");
      }
      return commit("commit");
    });
  }

  static SpooledEvent read_row(sqlite3_stmt* s) {
    SpooledEvent row;
    row.spool_id = sqlite3_column_int64(s, 0);
    const void* blob = sqlite3_column_blob(s, 1);
    const auto n = static_cast<std::size_t>(sqlite3_column_bytes(s, 1));
    if (blob != nullptr) {
      std::memcpy(row.event.event_id.bytes.data(), blob,
                  std::min(n, row.event.event_id.bytes.size()));
    }
    row.event.org_id = sqlite3_column_int64(s, 2);
    if (sqlite3_column_type(s, 3) != SQLITE_NULL) row.event.user_id = sqlite3_column_int64(s, 3);
    const auto text = [s](int col) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
      return p == nullptr ? std::string()
                          : std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
    };
    row.event.event_name = text(4);
    row.event.metadata = text(5);
    row.event.occurred_at_us = sqlite3_column_int64(s, 6);
    return row;
  }

  std::mutex mu_;
  std::filesystem::path dir_;
  std::filesystem::path path_;
  SpoolOptions options_;
  sqlite3* db_ = nullptr;
  pid_t pid_ = 0;
  Stmt insert_, claim_select_, claim_update_, remove_, release_, extend_, count_, count_between_,
      begin_, commit_, rollback_;
};

}  // namespace

Result<std::filesystem::path> default_spool_dir() {
  if (std::string v = env_or_empty("TRACKEVENT_SPOOL_DIR"); !v.empty()) {
    return std::filesystem::path(std::move(v));
  }
  // The XDG spec says to ignore a relative XDG_STATE_HOME.
  if (std::filesystem::path v = env_or_empty("XDG_STATE_HOME"); v.is_absolute()) {
    return std::filesystem::path(v / "trackevent");
  }
  std::string home = env_or_empty("HOME");
  if (home.empty()) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
        found->pw_dir != nullptr) {
      home = found->pw_dir;
    }
  }
  if (home.empty()) {
    return Error{
        "cannot find a spool directory: HOME is not set and the user has no home directory; "
        "set TRACKEVENT_SPOOL_DIR"};
  }
  return std::filesystem::path(home) / ".local" / "state" / "trackevent";
}

std::unique_ptr<Spool> Spool::open(const std::filesystem::path& dir) {
  return open(dir, SpoolOptions{});
}

std::unique_ptr<Spool> Spool::open(const std::filesystem::path& dir, const SpoolOptions& options) {
  Result<std::unique_ptr<Spool>> spool = try_open(dir, options);
  if (!spool) throw SpoolError(spool.error().message);
  return std::move(spool).value();
}

Result<std::unique_ptr<Spool>> Spool::try_open(const std::filesystem::path& dir,
                                               const SpoolOptions& options) {
  auto spool = std::make_unique<SqliteSpool>(dir, options);
  if (auto r = spool->connect(); !r) return std::move(r).error();
  return std::unique_ptr<Spool>(std::move(spool));
}

// ---- lease renewal ------------------------------------------------------------------------------

LeaseRenewer::LeaseRenewer(Extend extend, std::chrono::seconds lease,
                           std::function<TimePoint()> now)
    : extend_(std::move(extend)), lease_(lease), now_(std::move(now)), since_(now_()) {}

LeaseRenewer::LeaseRenewer(Spool& spool, std::chrono::seconds lease, std::function<TimePoint()> now)
    : LeaseRenewer([&spool](std::span<const std::int64_t> ids,
                            std::chrono::seconds l) { return spool.extend(ids, l); },
                   lease, std::move(now)) {}

void LeaseRenewer::claimed() noexcept { since_ = now_(); }

bool LeaseRenewer::due() const noexcept {
  return now_() - since_ >= std::chrono::milliseconds(lease_) / 2;
}

Result<> LeaseRenewer::renew(std::span<const std::int64_t> ids) noexcept {
  const TimePoint at = now_();
  if (Result<> extended = extend_(ids, lease_); !extended) return extended;
  since_ = at;
  return ok();
}

// ---- dead letters -------------------------------------------------------------------------------

DeadLetters::DeadLetters(std::filesystem::path dir)
    : path_(std::move(dir) / kDeadLetterFile), cap_(dead_letter_cap()) {}

Result<> DeadLetters::append(const Event& event, std::string_view error,
                             std::string_view sqlstate) noexcept {
  try {
    std::string text = format_dead_letter(event, error, sqlstate, now_unix_us());
    text += '\n';

    const std::filesystem::path dir = path_.has_parent_path() ? path_.parent_path() : ".";
    if (auto r = ensure_private_dir(dir, "dead-letter directory"); !r) return r;
    // Whether this append creates the file: then its directory entry must be made durable too.
    // (Two first writers may both think so; a second directory sync costs nothing.)
    // Shared with other appenders; a replay or purge renaming a new file into place waits.
    Result<AppendLock> lock = AppendLock::acquire(dir, std::chrono::seconds{10});
    if (!lock) return std::move(lock).error();
    struct stat before {};
    const bool creates = ::lstat(path_.c_str(), &before) != 0 && errno == ENOENT;
    const Result<int> opened = open_private_file(path_, O_APPEND | O_WRONLY);
    if (!opened) return opened.error();
    const int fd = *opened;
    // One write() on an O_APPEND fd: the line lands whole, after every other writer's line.
    ssize_t n = -1;
    do {
      n = ::write(fd, text.data(), text.size());
    } while (n < 0 && errno == EINTR);
    const int write_errno = errno;
    if (n > 0 && static_cast<std::size_t>(n) < text.size()) {
      // Disk full mid-line: end the torn line so the lines after it still parse.
      (void)!::write(fd, "\n", 1);
    }
    if (n != static_cast<ssize_t>(text.size())) {
      ::close(fd);
      return Error{"cannot write " + path_.string() + ": " +
                   (n < 0 ? std::strerror(write_errno) : "short write (disk full?)")};
    }
    // The caller deletes the only other copy of the event (the spool row) once this succeeds, so
    // the line must be on disk first.
    const int sync_rc = ::fdatasync(fd);
    const int sync_errno = errno;
    ::close(fd);
    if (sync_rc != 0) {
      return Error{"cannot sync " + path_.string() + ": " + std::strerror(sync_errno)};
    }
    if (creates) {
      const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      const int dir_rc = dir_fd < 0 ? -1 : ::fsync(dir_fd);
      const int dir_errno = errno;
      if (dir_fd >= 0) ::close(dir_fd);
      if (dir_rc != 0) {
        return Error{"cannot sync the directory " + dir.string() + " of the new " + path_.string() +
                     ": " + std::strerror(dir_errno)};
      }
    }
    if (static_cast<std::uint64_t>(before.st_size) + text.size() > cap_) {
      // Past the cap: keep the newest lines (logged loudly). Not under our shared lock: the
      // rotation takes it exclusively.
      lock->release();
      rotate_dead_letters_if_needed(dir, cap_);
    }
    return ok();
  } catch (const std::bad_alloc& ex) {  // building the line or a message
    return Error{std::string("dead-letter write failed: ") + ex.what()};
  } catch (const nlohmann::json::exception& ex) {  // dump() replaces bad UTF-8; none expected
    return Error{std::string("dead-letter write failed: ") + ex.what()};
  }
}

}  // namespace trackevent::detail
