// drain_spool(): `trackevent flush`. A loop of claim -> deliver -> remove, delivering each claim
// under the dispatcher's DeliveryPolicy (runtime/delivery.hpp), so replays stay idempotent and a
// failure means the same thing here as in a Tracker.

#include "spool/drain.hpp"

#include "trackevent/clock.hpp"

#include "base/result.hpp"
#include "log/log.hpp"
#include "pg/connection.hpp"
#include "runtime/delivery.hpp"
#include "spool/delivery_record.hpp"
#include "spool/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace trackevent {
namespace {

using TimePoint = Clock::time_point;

// A claim must outlive the write it covers; if we die, other processes reclaim after this.
constexpr std::chrono::seconds kLease{120};
// Another process holds leases on what is left: look again after this.
constexpr std::chrono::milliseconds kLeasePoll{200};

/// The drain's clock and how it waits (DrainOptions::clock, DrainOptions::sleep).
class Timer {
 public:
  explicit Timer(const DrainOptions& options)
      : clock_(options.clock ? options.clock : std::make_shared<SteadyClock>()),
        sleep_(options.sleep) {}
  [[nodiscard]] TimePoint now() const noexcept { return clock_->now(); }
  [[nodiscard]] const std::shared_ptr<const Clock>& clock() const noexcept { return clock_; }
  /// Waits `d`, but never past `deadline`.
  void wait(Clock::duration d, TimePoint deadline) const {
    d = std::min(d, deadline - now());
    if (d <= Clock::duration::zero()) return;
    if (sleep_) {
      sleep_(d);
    } else {
      std::this_thread::sleep_for(d);
    }
  }

 private:
  std::shared_ptr<const Clock> clock_;
  std::function<void(Clock::duration)> sleep_;
};

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

/// Delivers claims under the DeliveryPolicy: each row is removed from the spool as soon as it is
/// stored or dead-lettered, the claim's lease is renewed while bisection takes long, and retry
/// pauses end at the drain's deadline.
class Drainer {
 public:
  Drainer(Sink& sink, detail::Spool& spool, detail::DeadLetters& dead,
          detail::DeliveryRecord& record, DrainResult& result, const Timer& timer,
          TimePoint deadline, std::size_t batch_size)
      : spool_(spool),
        dead_(dead),
        record_(record),
        result_(result),
        lease_(spool, kLease, [&timer] { return timer.now(); }),
        policy_(detail::DeliveryPolicy::Rules{.max_rows = batch_size},
                detail::DeliveryPolicy::Hooks{
                    .write = [&sink](std::span<const Event> rows) { return sink.write(rows); },
                    .dead_letter = [this](const Event& row,
                                          const Failure& why) { return dead_letter(row, why); },
                    .wait = [&timer, deadline](Clock::duration d) { timer.wait(d, deadline); },
                    .stop = [&timer, deadline] { return timer.now() >= deadline; },
                    .before_write = [this] { keep_lease(); },
                    .settled = [this](std::span<const Event> rows) { remove(rows); },
                    .on_retry = {},
                },
                timer.clock()) {}
  // The policy's hooks point at this object.
  Drainer(const Drainer&) = delete;
  Drainer& operator=(const Drainer&) = delete;

  /// Delivers one claim. Fails when the database cannot take writes; what was not written is
  /// then given back to other processes, and the error says why.
  /// The lease each claim is taken with (and renewed for while it is delivered).
  [[nodiscard]] std::chrono::seconds lease() const noexcept { return lease_.lease(); }

  detail::Result<> deliver(std::vector<detail::SpooledEvent>& claimed) {
    lease_.claimed();
    events_.clear();
    ids_.clear();
    for (auto& s : claimed) {
      events_.push_back(std::move(s.event));
      ids_.push_back(s.spool_id);
    }
    held_ = ids_;
    const detail::DeliveryOutcome out = policy_.deliver(events_);
    result_.stored += out.stored;
    result_.duplicates += out.duplicates;
    result_.dead_lettered += out.dead_lettered;
    if (out.stored + out.duplicates > 0) record_.note_success(out.stored + out.duplicates);
    if (out.unsent.empty()) return detail::ok();
    record_.note_failure("unavailable", out.failure->sqlstate, out.failure->message,
                         out.unsent_rows());
    // Give back what was not written, but not the rows kept back: their lease is their backoff.
    std::vector<std::int64_t> back;
    for (const auto part : out.unsent) {
      const auto ids = ids_of(part);
      back.insert(back.end(), ids.begin(), ids.end());
    }
    (void)spool_.release(back);
    return detail::Error{out.failure->message, out.failure->sqlstate};
  }

 private:
  [[nodiscard]] std::span<const std::int64_t> ids_of(std::span<const Event> rows) const {
    const auto first = static_cast<std::size_t>(rows.data() - events_.data());
    return std::span<const std::int64_t>(ids_).subspan(first, rows.size());
  }

  // Half the lease has passed since the claim or the last renewal: renew it for the rows still
  // held, so that no other process claims them mid-bisection.
  void keep_lease() {
    if (!lease_.due() || lease_.renew(held_)) return;
    log::write_limited(log::Level::warn, "drain.lease",
                       "cannot renew the lease of claimed spool rows; another process may claim "
                       "them before this drain is done",
                       {{"spool", spool_.path().string()}});
  }

  // A refused row whose dead letter could not be written durably stays in the spool (the only
  // copy of the event), claimed under this drain's lease: not released, so no drain, this one
  // included, retries it before the lease runs out (a backoff), and this one does not spin on it.
  bool dead_letter(const Event& row, const Failure& failure) {
    const auto lettered = dead_.append(row, failure.message, failure.sqlstate);
    record_.note_failure("rejected", failure.sqlstate, failure.message, 1);
    if (lettered) return true;
    const std::string& why = lettered.error().message;
    ++result_.dead_letter_failed;
    std::erase(held_, ids_of(std::span<const Event>(&row, 1)).front());
    log::write_limited(log::Level::critical, "drain.dead_letter_failed",
                       "refused event could not be written to the dead-letter file; it stays in "
                       "the spool",
                       {{"event_id", row.event_id.to_string()},
                        {"sqlstate", failure.sqlstate},
                        {"reason", failure.message},
                        {"err", why},
                        {"spool", spool_.path().string()}});
    return false;
  }

  void remove(std::span<const Event> rows) { (void)spool_.remove(ids_of(rows)); }

  detail::Spool& spool_;
  detail::DeadLetters& dead_;
  detail::DeliveryRecord& record_;  // the last success and failure, for `trackevent status`
  DrainResult& result_;
  /// Renews the claim's lease while delivering it takes long (bisecting a large batch).
  detail::LeaseRenewer lease_;
  detail::DeliveryPolicy policy_;
  std::vector<Event> events_;      // the claim being delivered
  std::vector<std::int64_t> ids_;  // their spool ids, index for index
  /// The claim's rows still ours to renew: all but those kept back (removed rows stay listed;
  /// renewing them is a no-op).
  std::vector<std::int64_t> held_;
};

// `kept_back`: rows earlier rounds of this drain kept back (their dead letter failed), still
// leased to it.
DrainResult drain_once(const DbTarget& target, const DrainOptions& options,
                       const std::filesystem::path& dir, const Timer& timer, TimePoint deadline,
                       std::uint64_t kept_back = 0) {
  DrainResult result;
  try {
    auto spool = detail::Spool::open(dir, wal_keeping_options());
    const auto counted = spool->count();
    result.remaining = counted ? *counted : -1;
    if (result.remaining < 0) {
      result.outcome = DrainResult::Outcome::spool_error;
      result.error = "cannot count the spool at " + spool->path().string();
      return result;
    }
    if (result.remaining == 0) return result;

    auto sink = make_sink(target, options.pg_timeouts);
    detail::DeadLetters dead{dir};
    detail::DeliveryRecord record{dir};
    const std::size_t batch_size = std::max<std::size_t>(options.batch_size, 1);
    Drainer drainer{*sink, *spool, dead, record, result, timer, deadline, batch_size};
    const auto stop_requested = [&] { return options.should_stop && options.should_stop(); };

    for (;;) {
      // Asked to stop: between batches only, never while a write is under way.
      if (stop_requested()) {
        result.interrupted = true;
        break;
      }
      if (timer.now() >= deadline) {
        result.outcome = DrainResult::Outcome::timed_out;
        break;
      }
      auto claim = spool->claim(batch_size, drainer.lease());
      if (!claim || claim->empty()) {
        const auto counted_left = spool->count();
        const std::int64_t left = counted_left ? *counted_left : -1;
        if (left == 0) break;
        if (left < 0) {
          result.outcome = DrainResult::Outcome::spool_error;
          result.error = "cannot read the spool at " + spool->path().string();
          break;
        }
        // Only rows this drain keeps back are left, leased to it: nothing more to deliver now.
        if (static_cast<std::uint64_t>(left) <= kept_back + result.dead_letter_failed) break;
        timer.wait(kLeasePoll, deadline);  // leased by another process; wait it out
        continue;
      }
      auto claimed = std::move(claim).value();
      if (stop_requested()) {
        // Asked during the claim: give the batch back unwritten, for another drain at once.
        std::vector<std::int64_t> ids;
        for (const auto& s : claimed) ids.push_back(s.spool_id);
        (void)spool->release(ids);
        result.interrupted = true;
        break;
      }
      if (auto delivered = drainer.deliver(claimed); !delivered) {
        result.error = delivered.error().message;
        result.sqlstate = delivered.error().sqlstate;
        result.outcome = DrainResult::Outcome::unreachable;
        break;
      }
    }
    const auto counted_end = spool->count();
    result.remaining = counted_end ? *counted_end : -1;
    if (result.outcome == DrainResult::Outcome::empty &&
        (result.remaining < 0 ||
         static_cast<std::uint64_t>(result.remaining) > kept_back + result.dead_letter_failed)) {
      result.outcome = DrainResult::Outcome::timed_out;
    }
  } catch (const detail::SpoolError& e) {
    // Setup: the spool cannot be opened.
    result.outcome = DrainResult::Outcome::spool_error;
    result.error = e.what();
    result.remaining = -1;
  } catch (const std::exception& e) {
    // Setup: make_sink throws for an unusable SQLite path or when libpq cannot be loaded: either
    // way the store cannot take writes.
    result.outcome = DrainResult::Outcome::unreachable;
    result.error = e.what();
  }
  return result;
}

}  // namespace

std::filesystem::path spool_directory(const std::filesystem::path& configured) {
  if (!configured.empty()) return configured;
  auto dir = detail::default_spool_dir();
  if (!dir) throw detail::SpoolError(dir.error().message);
  return std::move(dir).value();
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
  const Timer timer(options);
  const TimePoint deadline = timer.now() + Clock::duration{options.timeout};
  if (!options.exclusive) return drain_once(target, options, dir, timer, deadline);

  DrainResult total;
  for (bool first = true;; first = false) {
    DrainLock lock(dir);
    if (!lock.held()) {
      // Another exclusive drain runs; it looks again after it lets go, so it takes ours too.
      if (first) total.outcome = DrainResult::Outcome::busy;
      return total;
    }
    const DrainResult r =
        drain_once(target, options, dir, timer, deadline, total.dead_letter_failed);
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
      const auto counted = detail::Spool::open(dir, wal_keeping_options())->count();
      left = counted ? *counted : -1;
    } catch (const std::exception&) {
      // Setup failed: reported below as a spool that cannot be counted.
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
    if (timer.now() >= deadline) {
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
    if (auto appended = spool->append(events); !appended) {
      out.error = appended.error().message;
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
  try {
    // A malformed conninfo: libpq's message may quote it, password included, so give none.
    const pg::Conninfo ci(target.conninfo);
    if (ci.parse_error()) return "malformed connection string";
    pg::Settings settings;
    settings.timeouts = timeouts;
    auto conn = pg::Connection::open(ci, settings);
    if (!conn) return conn.error().message;
    // Connected is not enough: without the table every event would be held in the spool.
    if (auto r = conn->exec("SELECT 1 FROM analytics_events LIMIT 0"); !r) return r.error().message;
    return {};
  } catch (const std::exception& e) {
    return e.what();  // out of memory
  }
}

}  // namespace trackevent
