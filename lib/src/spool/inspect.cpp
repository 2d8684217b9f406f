#include "spool/inspect.hpp"

#include "spool/dead_letter_file.hpp"

#include <sqlite3.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace trackevent::detail {
namespace {

std::uint64_t regular_file_size(const std::filesystem::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(st.st_size)
                                                            : 0;
}

/// A read-only connection, closed on every way out.
class ReadOnly {
 public:
  ~ReadOnly() { sqlite3_close_v2(db_); }
  sqlite3* db_ = nullptr;
};

/// A statement, finalized on every way out.
struct Query {
  sqlite3_stmt* s = nullptr;
  ~Query() { sqlite3_finalize(s); }
};

}  // namespace

Result<SpoolInspection> inspect_spool(const std::filesystem::path& dir,
                                      std::chrono::milliseconds busy_timeout) {
  SpoolInspection out;
  const std::filesystem::path path = dir / "spool.db";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return out;  // no spool yet: nothing held
    return Error{"cannot stat " + path.string() + ": " + std::strerror(errno)};
  }
  if (!S_ISREG(st.st_mode)) return Error{path.string() + " is not a regular file"};
  out.exists = true;
  out.bytes = regular_file_size(path) + regular_file_size(path.string() + "-wal");

  ReadOnly conn;
  const std::string prefix = "spool " + path.string() + ": ";
  if (sqlite3_open_v2(path.c_str(), &conn.db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return Error{prefix + "cannot open read-only: " +
                 (conn.db_ != nullptr ? sqlite3_errmsg(conn.db_) : "out of memory")};
  }
  sqlite3_busy_timeout(conn.db_,
                       static_cast<int>(std::clamp<std::int64_t>(busy_timeout.count(), 0, 60'000)));
  const auto fail = [&](const char* what) -> Error {
    const int rc = sqlite3_extended_errcode(conn.db_) & 0xff;
    std::string msg = prefix + what + ": " + sqlite3_errmsg(conn.db_);
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
      msg +=
          " (the file is corrupt or not a trackevent spool; move it aside and the next run "
          "starts a new one)";
    }
    if (rc == SQLITE_BUSY) msg += " (locked by another process for too long)";
    return Error{std::move(msg)};
  };
  {
    Query q;
    if (sqlite3_prepare_v2(conn.db_, "PRAGMA user_version", -1, &q.s, nullptr) != SQLITE_OK ||
        sqlite3_step(q.s) != SQLITE_ROW) {
      return fail("cannot read");
    }
    if (sqlite3_column_int(q.s, 0) > 1) {
      return Error{prefix + "schema version " + std::to_string(sqlite3_column_int(q.s, 0)) +
                   " is newer than this trackevent understands; upgrade trackevent"};
    }
  }
  {
    Query q;
    if (sqlite3_prepare_v2(conn.db_,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                           "'spool'",
                           -1, &q.s, nullptr) != SQLITE_OK ||
        sqlite3_step(q.s) != SQLITE_ROW) {
      return fail("cannot read");
    }
    if (sqlite3_column_int(q.s, 0) != 1) {
      return Error{prefix + "no spool table: a SQLite file, but not a trackevent spool"};
    }
  }
  {
    Query q;
    if (sqlite3_prepare_v2(conn.db_, "SELECT count(*), min(occurred_at_us) FROM spool", -1, &q.s,
                           nullptr) != SQLITE_OK ||
        sqlite3_step(q.s) != SQLITE_ROW) {
      return fail("cannot count");
    }
    out.events = sqlite3_column_int64(q.s, 0);
    if (sqlite3_column_type(q.s, 1) != SQLITE_NULL) out.oldest_us = sqlite3_column_int64(q.s, 1);
  }
  {
    Query q;
    if (sqlite3_prepare_v2(conn.db_,
                           "SELECT claimed_by, count(*), max(claimed_until) FROM spool WHERE "
                           "claimed_until >= ?1 GROUP BY claimed_by ORDER BY claimed_by",
                           -1, &q.s, nullptr) != SQLITE_OK) {
      return fail("cannot read claims");
    }
    using namespace std::chrono;
    sqlite3_bind_int64(q.s, 1,
                       duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
      const auto* owner = reinterpret_cast<const char*>(sqlite3_column_text(q.s, 0));
      out.claims.push_back(ClaimHolder{owner != nullptr ? owner : "", sqlite3_column_int64(q.s, 1),
                                       sqlite3_column_int64(q.s, 2)});
    }
    if (rc != SQLITE_DONE) return fail("cannot read claims");
  }
  return out;
}

Result<DeadLetterInspection> inspect_dead_letters(const std::filesystem::path& dir) {
  DeadLetterInspection out;
  Result<DeadLetterSnapshot> snap = read_dead_letters(dir);
  if (!snap) return std::move(snap).error();
  out.exists = snap->exists;
  out.bytes = regular_file_size(dir / kDeadLetterFile);
  for (const DeadLetterLine& l : snap->lines) {
    if (!l.problem.empty()) {
      ++out.invalid;
      continue;
    }
    ++out.count;
    if (!out.newest_us || l.at_us > *out.newest_us) out.newest_us = l.at_us;
    if (!out.oldest_us || l.at_us < *out.oldest_us) out.oldest_us = l.at_us;
  }
  return out;
}

}  // namespace trackevent::detail
