// The spool: a SQLite file in WAL mode shared by threads (one connection behind a mutex) and by
// processes (SQLite's file locks; every write transaction is BEGIN IMMEDIATE, so lock waits happen
// up front under the busy timeout and never end in a mid-transaction deadlock).

#include "spool/spool.hpp"

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
#include <limits>
#include <mutex>
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
std::string claimer_identity() {
  static std::mutex mu;
  static pid_t pid = 0;
  static std::string identity;
  std::lock_guard lock(mu);
  if (pid != ::getpid()) {
    pid = ::getpid();
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");
    std::random_device rd;
    const std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
    identity = std::string(host) + ":" + std::to_string(pid) + ":" + buf;
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

  void prepare(sqlite3* db, const char* sql) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
      throw SpoolError(std::string("spool: cannot prepare statement: ") + sqlite3_errmsg(db));
    }
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
  SqliteSpool(std::filesystem::path dir, SpoolOptions options)
      : dir_(std::move(dir)), path_(dir_ / "spool.db"), options_(options) {
    connect();
  }
  ~SqliteSpool() override { disconnect(); }
  SqliteSpool(const SqliteSpool&) = delete;
  SqliteSpool& operator=(const SqliteSpool&) = delete;

  bool append(std::span<const Event> events, std::string& error) noexcept override {
    std::unique_lock lock(mu_, std::defer_lock);
    try {
      lock.lock();
      if (!ready(error)) return false;
      if (events.empty()) return true;
      if (!begin(error)) return false;
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
        if (sqlite3_step(s) != SQLITE_DONE) return fail("append", error);
        if (&e == &events.front()) first_appended = sqlite3_last_insert_rowid(db_);
      }
      if (!commit()) return fail("append", error);
      last_appended_ = {first_appended, sqlite3_last_insert_rowid(db_)};
      return true;
    } catch (const std::exception& ex) {
      error = std::string("spool append failed: ") + ex.what();
    } catch (...) {
      error = "spool append failed";
    }
    if (lock.owns_lock()) rollback();
    return false;
  }

  std::vector<SpooledEvent> claim(std::size_t max, std::chrono::seconds lease) noexcept override {
    std::vector<SpooledEvent> out;
    std::unique_lock lock(mu_, std::defer_lock);
    try {
      lock.lock();
      std::string error;
      if (max == 0 || !ready(error) || !begin(error)) return out;
      const std::int64_t now = wall_clock_ms();
      const std::int64_t until =
          now + std::max<std::int64_t>(0, std::chrono::milliseconds(lease).count());
      const std::string owner = claimer_identity();
      {
        ResetGuard guard{claim_select_};
        sqlite3_stmt* s = claim_select_.get();
        sqlite3_bind_int64(s, 1, now);
        const auto limit = std::min<std::uint64_t>(max, std::numeric_limits<std::int64_t>::max());
        sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(limit));
        int rc = SQLITE_ROW;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(read_row(s));
        if (rc != SQLITE_DONE) {
          fail("claim", error);
          return {};
        }
      }
      for (const SpooledEvent& row : out) {
        ResetGuard guard{claim_update_};
        sqlite3_stmt* s = claim_update_.get();
        sqlite3_bind_text(s, 1, owner.data(), static_cast<int>(owner.size()), SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, until);
        sqlite3_bind_int64(s, 3, row.spool_id);
        if (sqlite3_step(s) != SQLITE_DONE) {
          fail("claim", error);
          return {};
        }
      }
      if (!commit()) {
        fail("claim", error);
        return {};
      }
      return out;
    } catch (...) {
      if (lock.owns_lock()) rollback();
    }
    return {};
  }

  bool remove(std::span<const std::int64_t> spool_ids) noexcept override {
    return for_each_id(spool_ids, remove_, false);
  }

  bool release(std::span<const std::int64_t> spool_ids) noexcept override {
    return for_each_id(spool_ids, release_, true);
  }

  bool extend(std::span<const std::int64_t> spool_ids,
              std::chrono::seconds lease) noexcept override {
    return for_each_id(spool_ids, extend_, true, lease);
  }

  [[nodiscard]] std::pair<std::int64_t, std::int64_t> last_appended() const noexcept override {
    return last_appended_;
  }

  std::int64_t count_between(std::int64_t first, std::int64_t last) noexcept override {
    std::lock_guard lock(mu_);
    try {
      std::string error;
      if (!ready(error)) return -1;
      ResetGuard guard{count_between_};
      sqlite3_bind_int64(count_between_.get(), 1, first);
      sqlite3_bind_int64(count_between_.get(), 2, last);
      if (sqlite3_step(count_between_.get()) != SQLITE_ROW) return -1;
      return sqlite3_column_int64(count_between_.get(), 0);
    } catch (...) {
      return -1;
    }
  }

  std::int64_t count() noexcept override {
    try {
      std::lock_guard lock(mu_);
      std::string error;
      if (!ready(error)) return -1;
      ResetGuard guard{count_};
      if (sqlite3_step(count_.get()) != SQLITE_ROW) return -1;
      return sqlite3_column_int64(count_.get(), 0);
    } catch (...) {
      return -1;
    }
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept override { return path_; }

 private:
  void connect() {
    if (const std::string err = ensure_private_dir(dir_, "spool directory"); !err.empty()) {
      throw SpoolError(err);
    }
    // SQLITE_OPEN_NOFOLLOW refuses a symlink anywhere in the name, but a state directory reached
    // through a symlink is legitimate: resolve the directory, then refuse only a linked file.
    std::error_code ec;
    const std::filesystem::path real_dir = std::filesystem::canonical(dir_, ec);
    if (ec) throw SpoolError("spool: cannot resolve " + dir_.string() + ": " + ec.message());
    const std::filesystem::path real_path = real_dir / path_.filename();
    // Create the file ourselves so it is 0600 whatever the umask; SQLite then gives the -wal and
    // -shm files the database file's mode.
    std::string err;
    const int fd = open_private_file(real_path, O_RDWR, err);
    if (fd < 0) throw SpoolError("spool: " + err);
    ::close(fd);

    const int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
    if (sqlite3_open_v2(real_path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      std::string msg = "spool: cannot open " + path_.string() + ": " +
                        (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory");
      disconnect();
      throw SpoolError(msg);
    }
    pid_ = ::getpid();
    try {
      sqlite3_busy_timeout(db_, static_cast<int>(std::clamp<std::int64_t>(
                                    options_.busy_timeout.count(), 0, 3'600'000)));
      if (!options_.checkpoint_on_close) {
        sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
      }
      try {
        set_wal_mode(db_, /*in_memory=*/false, options_.busy_timeout);
      } catch (const std::exception& e) {
        throw SpoolError("spool " + path_.string() + ": PRAGMA journal_mode=WAL: " + e.what());
      }
      exec(options_.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
      // Keep a drained spool small: truncate the WAL back to 4 MiB after checkpoints.
      exec("PRAGMA journal_size_limit=4194304");
      migrate();
      tighten_sidecar_modes();
      insert_.prepare(db_,
                      "INSERT INTO spool(event_id, org_id, user_id, event_name, metadata, "
                      "occurred_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
      claim_select_.prepare(db_,
                            "SELECT id, event_id, org_id, user_id, event_name, metadata, "
                            "occurred_at_us FROM spool WHERE claimed_until IS NULL OR "
                            "claimed_until < ?1 ORDER BY id LIMIT ?2");
      claim_update_.prepare(db_,
                            "UPDATE spool SET claimed_by = ?1, claimed_until = ?2 WHERE id = ?3");
      remove_.prepare(db_, "DELETE FROM spool WHERE id = ?1");
      // Only our own claims: after our lease expired another process may hold the row.
      release_.prepare(db_,
                       "UPDATE spool SET claimed_by = NULL, claimed_until = NULL "
                       "WHERE id = ?1 AND claimed_by = ?2");
      // The same rule as release_: only our own claims (expired or not, as long as nobody took
      // the row since).
      extend_.prepare(db_, "UPDATE spool SET claimed_until = ?3 WHERE id = ?1 AND claimed_by = ?2");
      count_.prepare(db_, "SELECT count(*) FROM spool");
      count_between_.prepare(db_, "SELECT count(*) FROM spool WHERE id BETWEEN ?1 AND ?2");
      begin_.prepare(db_, "BEGIN IMMEDIATE");
      commit_.prepare(db_, "COMMIT");
      rollback_.prepare(db_, "ROLLBACK");
    } catch (...) {
      disconnect();
      throw;
    }
  }

  void disconnect() noexcept {
    for (Stmt* s : {&insert_, &claim_select_, &claim_update_, &remove_, &release_, &extend_,
                    &count_, &count_between_, &begin_, &commit_, &rollback_}) {
      s->finalize();
    }
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }

  void exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string text = "spool " + path_.string() + ": " + sql + ": " +
                         (msg != nullptr ? msg : sqlite3_errmsg(db_));
      sqlite3_free(msg);
      throw SpoolError(text);
    }
  }

  int user_version() {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &s, nullptr) != SQLITE_OK) {
      throw SpoolError("spool " + path_.string() + ": " + sqlite3_errmsg(db_));
    }
    const int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    if (v < 0) throw SpoolError("spool " + path_.string() + ": " + sqlite3_errmsg(db_));
    return v;
  }

  // Schema upgrades run under BEGIN IMMEDIATE so concurrent openers do them exactly once.
  void migrate() {
    exec("BEGIN IMMEDIATE");
    try {
      const int v = user_version();
      if (v > kSchemaVersion) {
        throw SpoolError("spool " + path_.string() + " has schema version " + std::to_string(v) +
                         ", newer than this trackevent understands (" +
                         std::to_string(kSchemaVersion) + "); upgrade trackevent");
      }
      if (v < 1) {
        exec(kSchemaV1);
        exec("PRAGMA user_version=1");
      }
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
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

  // Called under mu_ at the top of every operation: a fork child reconnects (see spool.hpp).
  bool ready(std::string& error) noexcept {
    if (db_ != nullptr && pid_ == ::getpid()) return true;
    try {
      disconnect();
      connect();
      return true;
    } catch (const std::exception& ex) {
      error = ex.what();
    } catch (...) {
      error = "spool: cannot reopen " + path_.string();
    }
    return false;
  }

  bool begin(std::string& error) noexcept {
    ResetGuard guard{begin_};
    if (sqlite3_step(begin_.get()) == SQLITE_DONE) return true;
    error = describe("begin");
    return false;
  }

  bool commit() noexcept {
    ResetGuard guard{commit_};
    return sqlite3_step(commit_.get()) == SQLITE_DONE;
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

  // Records the reason and undoes the open transaction; always returns false.
  bool fail(const char* op, std::string& error) noexcept {
    try {
      error = describe(op);
    } catch (...) {
      error.clear();
    }
    rollback();
    return false;
  }

  // Runs `stmt` once per id in one transaction: ?1 the id, ?2 our identity (`bind_owner`), ?3 the
  // end of a lease of `lease` from now (when given).
  bool for_each_id(std::span<const std::int64_t> ids, Stmt& stmt, bool bind_owner,
                   std::optional<std::chrono::seconds> lease = std::nullopt) noexcept {
    std::unique_lock lock(mu_, std::defer_lock);
    try {
      lock.lock();
      std::string error;
      if (!ready(error)) return false;
      if (ids.empty()) return true;
      if (!begin(error)) return false;
      const std::string owner = bind_owner ? claimer_identity() : std::string();
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
        if (sqlite3_step(stmt.get()) != SQLITE_DONE) return fail("update", error);
      }
      if (!commit()) return fail("commit", error);
      return true;
    } catch (...) {
      if (lock.owns_lock()) rollback();
      return false;
    }
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
  std::pair<std::int64_t, std::int64_t> last_appended_{0, -1};
};

}  // namespace

std::filesystem::path default_spool_dir() {
  if (std::string v = env_or_empty("TRACKEVENT_SPOOL_DIR"); !v.empty()) return v;
  // The XDG spec says to ignore a relative XDG_STATE_HOME.
  if (std::filesystem::path v = env_or_empty("XDG_STATE_HOME"); v.is_absolute()) {
    return v / "trackevent";
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
    throw SpoolError(
        "cannot find a spool directory: HOME is not set and the user has no home directory; "
        "set TRACKEVENT_SPOOL_DIR");
  }
  return std::filesystem::path(home) / ".local" / "state" / "trackevent";
}

std::unique_ptr<Spool> Spool::open(const std::filesystem::path& dir) {
  return open(dir, SpoolOptions{});
}

std::unique_ptr<Spool> Spool::open(const std::filesystem::path& dir, const SpoolOptions& options) {
  return std::make_unique<SqliteSpool>(dir, options);
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

bool LeaseRenewer::renew(std::span<const std::int64_t> ids) noexcept {
  const TimePoint at = now_();
  if (!extend_(ids, lease_)) return false;
  since_ = at;
  return true;
}

// ---- dead letters -------------------------------------------------------------------------------

DeadLetters::DeadLetters(std::filesystem::path dir) : path_(std::move(dir) / "dead-letter.jsonl") {}

bool DeadLetters::append(const Event& event, std::string_view error,
                         std::string_view sqlstate) noexcept {
  std::string why;
  return append(event, error, sqlstate, why);
}

bool DeadLetters::append(const Event& event, std::string_view error, std::string_view sqlstate,
                         std::string& why) noexcept {
  try {
    nlohmann::json line;
    line["event_id"] = event.event_id.to_string();
    line["org_id"] = event.org_id;
    line["user_id"] = event.user_id ? nlohmann::json(*event.user_id) : nlohmann::json(nullptr);
    line["event_name"] = event.event_name;
    // Keep the metadata a JSON value so `jq` can read it; text that is not JSON stays a string.
    nlohmann::json meta = nlohmann::json::parse(event.metadata, nullptr, false);
    line["metadata"] = meta.is_discarded() ? nlohmann::json(event.metadata) : std::move(meta);
    line["occurred_at"] = format_rfc3339(event.occurred_at_us);
    line["error"] = std::string(error);
    line["sqlstate"] = sqlstate.empty() ? nlohmann::json(nullptr) : nlohmann::json(sqlstate);
    const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    line["at"] = format_rfc3339(now_us);
    // Replace invalid UTF-8 instead of throwing: a dead letter must always be writable.
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';

    const std::filesystem::path dir = path_.has_parent_path() ? path_.parent_path() : ".";
    if (std::string err = ensure_private_dir(dir, "dead-letter directory"); !err.empty()) {
      why = std::move(err);
      return false;
    }
    // Whether this append creates the file: then its directory entry must be made durable too.
    // (Two first writers may both think so; a second directory sync costs nothing.)
    struct stat before {};
    const bool creates = ::lstat(path_.c_str(), &before) != 0 && errno == ENOENT;
    const int fd = open_private_file(path_, O_APPEND | O_WRONLY, why);
    if (fd < 0) return false;
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
      why = "cannot write " + path_.string() + ": " +
            (n < 0 ? std::strerror(write_errno) : "short write (disk full?)");
      return false;
    }
    // The caller deletes the only other copy of the event (the spool row) once this returns
    // true, so the line must be on disk first.
    const int sync_rc = ::fdatasync(fd);
    const int sync_errno = errno;
    ::close(fd);
    if (sync_rc != 0) {
      why = "cannot sync " + path_.string() + ": " + std::strerror(sync_errno);
      return false;
    }
    if (creates) {
      const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      const int dir_rc = dir_fd < 0 ? -1 : ::fsync(dir_fd);
      const int dir_errno = errno;
      if (dir_fd >= 0) ::close(dir_fd);
      if (dir_rc != 0) {
        why = "cannot sync the directory " + dir.string() + " of the new " + path_.string() + ": " +
              std::strerror(dir_errno);
        return false;
      }
    }
    return true;
  } catch (const std::exception& ex) {
    why = std::string("dead-letter write failed: ") + ex.what();
  } catch (...) {
    why = "dead-letter write failed";
  }
  return false;
}

}  // namespace trackevent::detail
