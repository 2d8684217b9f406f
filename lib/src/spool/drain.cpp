// drain_spool(): `trackevent flush`. A loop of claim -> write -> remove, with the same per-batch
// contract the dispatcher relies on (a batch is all-or-nothing), so replays stay idempotent.

#include "spool/drain.hpp"

#include "log/log.hpp"
#include "pg/libpq.hpp"
#include "spool/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

namespace trackevent {
namespace {

using Clock = std::chrono::steady_clock;

// A claim must outlive the write it covers; if we die, other processes reclaim after this.
constexpr std::chrono::seconds kLease{120};
// Transient failures are retried this often before the database counts as unreachable.
constexpr int kAttempts = 3;
constexpr std::chrono::milliseconds kBackoff{250};
// Another process holds leases on what is left: look again after this.
constexpr std::chrono::milliseconds kLeasePoll{200};

/// The spool directory's lock file for exclusive drains (flock: released if the holder dies).
class DrainLock {
 public:
  explicit DrainLock(const std::filesystem::path& dir) {
    fd_ = ::open((dir / "flush.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~DrainLock() { release(); }
  DrainLock(const DrainLock&) = delete;
  DrainLock& operator=(const DrainLock&) = delete;
  /// False when another process holds it (or the file cannot be opened).
  [[nodiscard]] bool held() const noexcept { return fd_ >= 0; }
  void release() noexcept {
    if (fd_ >= 0) ::close(fd_);  // closing the only descriptor drops the flock
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// Drains and hand-offs leave the WAL as it is when they close (SQLite checkpoints on the last
/// close by default, which deletes the WAL): the next writer, often a `send --background`, then
/// appends to it instead of creating it again and syncing its header and the directory, and the
/// drain reads what a hand-off wrote from the WAL. SQLite still checkpoints on its own once the
/// WAL passes 1000 pages.
detail::SpoolOptions wal_keeping_options(bool full_sync = false) {
  detail::SpoolOptions options;
  options.full_sync = full_sync;
  options.checkpoint_on_close = false;
  return options;
}

struct Drainer {
  Sink& sink;
  detail::Spool& spool;
  detail::DeadLetters& dead;
  DrainResult& result;
  Clock::time_point deadline;
  /// Renews the claim's lease while delivering it takes long (bisecting a large batch).
  detail::LeaseRenewer lease{spool, kLease};
  /// The claim's rows still ours to renew or give back: all but those kept back (removed rows
  /// stay listed; renewing or releasing them is a no-op).
  std::vector<std::int64_t> held{};

  // Delivers one claim (see bisect), renewing its lease while that takes long.
  // Returns false when the database cannot take writes (the failure is in `result`).
  bool deliver(std::span<const detail::SpooledEvent> claimed) {
    lease.claimed();
    held.clear();
    for (const auto& s : claimed) held.push_back(s.spool_id);
    return bisect(claimed);
  }

  // Writes `batch`; on bad data, halves it until the bad rows stand alone, then dead-letters them.
  // Returns false when the database cannot take writes (the failure is in `result`).
  bool bisect(std::span<const detail::SpooledEvent> batch) {
    std::vector<Event> events;
    events.reserve(batch.size());
    for (const auto& s : batch) events.push_back(s.event);

    WriteResult written;
    for (int attempt = 1;; ++attempt) {
      keep_lease();
      written = sink.write(events);
      if (written.ok() || written.failure->disposition != Disposition::retry) break;
      if (attempt == kAttempts || Clock::now() + kBackoff >= deadline) break;
      std::this_thread::sleep_for(kBackoff * attempt);
    }
    if (written.ok()) {
      result.stored += written.stored;
      result.duplicates += written.duplicates;
      remove(batch);
      return true;
    }
    const Failure& failure = *written.failure;
    if (failure.disposition != Disposition::reject) {
      result.error = failure.message;
      result.sqlstate = failure.sqlstate;
      return false;
    }
    if (batch.size() == 1) {
      std::string why;
      if (!dead.append(batch.front().event, failure.message, failure.sqlstate, why)) {
        keep_back(batch.front(), failure, why);
        return true;  // on with the other rows
      }
      ++result.dead_lettered;
      remove(batch);
      return true;
    }
    const std::size_t half = batch.size() / 2;
    return bisect(batch.first(half)) && bisect(batch.subspan(half));
  }

  // Half the lease has passed since the claim or the last renewal: renew it for the rows still
  // held, so that no other process claims them mid-bisection.
  void keep_lease() {
    if (!lease.due() || lease.renew(held)) return;
    log::write_limited(log::Level::warn, "drain.lease",
                       "cannot renew the lease of claimed spool rows; another process may claim "
                       "them before this drain is done",
                       {{"spool", spool.path().string()}});
  }

  // A refused row whose dead letter could not be written durably stays in the spool (the only
  // copy of the event), claimed under this drain's lease: not released, so no drain, this one
  // included, retries it before the lease runs out (a backoff), and this one does not spin on it.
  void keep_back(const detail::SpooledEvent& row, const Failure& failure, const std::string& why) {
    ++result.dead_letter_failed;
    std::erase(held, row.spool_id);
    log::write_limited(log::Level::critical, "drain.dead_letter_failed",
                       "refused event could not be written to the dead-letter file; it stays in "
                       "the spool",
                       {{"event_id", row.event.event_id.to_string()},
                        {"sqlstate", failure.sqlstate},
                        {"reason", failure.message},
                        {"err", why},
                        {"spool", spool.path().string()}});
  }

  void remove(std::span<const detail::SpooledEvent> batch) {
    std::vector<std::int64_t> ids;
    ids.reserve(batch.size());
    for (const auto& s : batch) ids.push_back(s.spool_id);
    spool.remove(ids);
  }
};

// `kept_back`: rows earlier rounds of this drain kept back (their dead letter failed), still
// leased to it.
DrainResult drain_once(const DbTarget& target, const DrainOptions& options,
                       const std::filesystem::path& dir, Clock::duration timeout,
                       std::uint64_t kept_back = 0) {
  DrainResult result;
  try {
    auto spool = detail::Spool::open(dir, wal_keeping_options());
    result.remaining = spool->count();
    if (result.remaining < 0) {
      result.outcome = DrainResult::Outcome::spool_error;
      result.error = "cannot count the spool at " + spool->path().string();
      return result;
    }
    if (result.remaining == 0) return result;

    auto sink = make_sink(target, options.pg_timeouts);
    detail::DeadLetters dead{dir};
    Drainer drainer{*sink, *spool, dead, result, Clock::now() + timeout};
    const std::size_t batch_size = std::max<std::size_t>(options.batch_size, 1);
    const auto stop_requested = [&] { return options.should_stop && options.should_stop(); };

    for (;;) {
      // Asked to stop: between batches only, never while a write is under way.
      if (stop_requested()) {
        result.interrupted = true;
        break;
      }
      if (Clock::now() >= drainer.deadline) {
        result.outcome = DrainResult::Outcome::timed_out;
        break;
      }
      auto claimed = spool->claim(batch_size, kLease);
      if (claimed.empty()) {
        const auto left = spool->count();
        if (left == 0) break;
        if (left < 0) {
          result.outcome = DrainResult::Outcome::spool_error;
          result.error = "cannot read the spool at " + spool->path().string();
          break;
        }
        // Only rows this drain keeps back are left, leased to it: nothing more to deliver now.
        if (static_cast<std::uint64_t>(left) <= kept_back + result.dead_letter_failed) break;
        std::this_thread::sleep_for(kLeasePoll);  // leased by another process; wait it out
        continue;
      }
      if (stop_requested()) {
        // Asked during the claim: give the batch back unwritten, for another drain at once.
        std::vector<std::int64_t> ids;
        for (const auto& s : claimed) ids.push_back(s.spool_id);
        spool->release(ids);
        result.interrupted = true;
        break;
      }
      if (!drainer.deliver(claimed)) {
        // Give back whatever is still ours (removed rows are gone; release ignores them), but
        // not the rows kept back: their lease is their backoff.
        spool->release(drainer.held);
        result.outcome = DrainResult::Outcome::unreachable;
        break;
      }
    }
    result.remaining = spool->count();
    if (result.outcome == DrainResult::Outcome::empty &&
        (result.remaining < 0 ||
         static_cast<std::uint64_t>(result.remaining) > kept_back + result.dead_letter_failed)) {
      result.outcome = DrainResult::Outcome::timed_out;
    }
  } catch (const detail::SpoolError& e) {
    result.outcome = DrainResult::Outcome::spool_error;
    result.error = e.what();
    result.remaining = -1;
  } catch (const std::exception& e) {
    // make_sink throws for an unusable SQLite path or when libpq cannot be loaded: either way
    // the store cannot take writes.
    result.outcome = DrainResult::Outcome::unreachable;
    result.error = e.what();
  }
  return result;
}

}  // namespace

std::filesystem::path spool_directory(const std::filesystem::path& configured) {
  return configured.empty() ? detail::default_spool_dir() : configured;
}

DrainResult drain_spool(const DbTarget& target, const DrainOptions& options) {
  std::filesystem::path dir;
  try {
    dir = spool_directory(options.spool_dir);
  } catch (const std::exception& e) {
    DrainResult r;
    r.outcome = DrainResult::Outcome::spool_error;
    r.error = e.what();
    r.remaining = -1;
    return r;
  }
  const Clock::duration timeout = options.timeout;
  if (!options.exclusive) return drain_once(target, options, dir, timeout);

  const auto deadline = Clock::now() + timeout;
  DrainResult total;
  for (bool first = true;; first = false) {
    DrainLock lock(dir);
    if (!lock.held()) {
      // Another exclusive drain runs; it looks again after it lets go, so it takes ours too.
      if (first) total.outcome = DrainResult::Outcome::busy;
      return total;
    }
    const DrainResult r =
        drain_once(target, options, dir, std::max(deadline - Clock::now(), Clock::duration{}),
                   total.dead_letter_failed);
    lock.release();
    total.stored += r.stored;
    total.duplicates += r.duplicates;
    total.dead_lettered += r.dead_lettered;
    total.dead_letter_failed += r.dead_letter_failed;
    total.remaining = r.remaining;
    total.outcome = r.outcome;
    total.error = r.error;
    total.sqlstate = r.sqlstate;
    total.interrupted = r.interrupted;
    if (r.interrupted || r.outcome != DrainResult::Outcome::empty) return total;
    // Writers that found the lock taken left their events to us: look once more, unlocked.
    std::int64_t left = -1;
    try {
      left = detail::Spool::open(dir, wal_keeping_options())->count();
    } catch (const std::exception&) {
    }
    if (left == 0) return total;
    if (left < 0) {
      total.outcome = DrainResult::Outcome::spool_error;
      total.error = "cannot count the spool in " + dir.string();
      total.remaining = -1;
      return total;
    }
    total.remaining = left;
    // Only rows this drain keeps back are left (leased to it): nothing more to deliver.
    if (static_cast<std::uint64_t>(left) <= total.dead_letter_failed) return total;
    if (Clock::now() >= deadline) {
      total.outcome = DrainResult::Outcome::timed_out;
      return total;
    }
    if (options.should_stop && options.should_stop()) {
      total.outcome = DrainResult::Outcome::timed_out;  // events left, none of them claimed
      total.interrupted = true;
      return total;
    }
  }
}

HandOff spool_for_delivery(std::span<const Event> events, const std::filesystem::path& spool_dir,
                           bool durable) {
  HandOff out;
  try {
    const auto dir = spool_directory(spool_dir);
    auto spool = detail::Spool::open(dir, wal_keeping_options(durable));
    if (!spool->append(events, out.error)) {
      if (out.error.empty()) out.error = "cannot write to the spool at " + spool->path().string();
      return out;
    }
    // Committed before we look at the lock: a drain holding it now counts the spool only after
    // releasing it, so it sees these events.
    DrainLock probe(dir);
    out.drain_running = !probe.held();
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

std::string probe_database(const DbTarget& target, const PgTimeouts& timeouts) {
  if (target.kind == DbTarget::Kind::sqlite) {
    try {
      auto sink = make_sqlite_sink(target.conninfo);
      return sink ? std::string{} : "cannot open " + target.conninfo;
    } catch (const std::exception& e) {
      return e.what();
    }
  }
  const detail::Libpq* pq = nullptr;
  try {
    pq = &detail::pq();
  } catch (const std::exception& e) {
    return e.what();
  }
  // A malformed conninfo: libpq's message may quote it, password included, so give none.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = pq->PQconninfoParse(target.conninfo.c_str(), &parse_error);
  if (parsed == nullptr) {
    pq->PQfreemem(parse_error);
    return "malformed connection string";
  }
  std::string password;
  for (auto* opt = parsed; opt->keyword != nullptr; ++opt) {
    if (std::string_view{opt->keyword} == "password" && opt->val != nullptr) password = opt->val;
  }
  pq->PQconninfoFree(parsed);

  // Our connect_timeout goes first so a value in the user's conninfo overrides it.
  const std::string timeout = std::to_string(std::max(timeouts.connect_timeout_s, 1));
  const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {timeout.c_str(), "trackevent", target.conninfo.c_str(), nullptr};
  PGconn* conn = pq->PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  std::string reason;
  if (conn == nullptr) {
    reason = "out of memory";
  } else if (pq->PQstatus(conn) != CONNECTION_OK) {
    reason = pq->PQerrorMessage(conn);
  } else {
    // Connected is not enough: without the table every event would be held in the spool.
    PGresult* res = pq->PQexec(conn, "SELECT 1 FROM analytics_events LIMIT 0");
    if (pq->PQresultStatus(res) != PGRES_TUPLES_OK) reason = pq->PQresultErrorMessage(res);
    pq->PQclear(res);
  }
  pq->PQfinish(conn);
  while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
  // Belt and braces: no server message should echo the password, but never let one through.
  for (std::size_t at; !password.empty() && (at = reason.find(password)) != std::string::npos;) {
    reason.replace(at, password.size(), "***");
  }
  return reason;
}

}  // namespace trackevent
