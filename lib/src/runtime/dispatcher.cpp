#include "runtime/dispatcher.hpp"

#include <algorithm>
#include <exception>
#include <utility>

namespace trackevent::detail {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr auto kFirstRetry = milliseconds{500};
constexpr auto kMaxRetryDelay = std::chrono::seconds{30};
// With nothing to do the thread still wakes now and then; a push or close wakes it at once.
constexpr auto kIdleWait = std::chrono::seconds{60};
// How long the thread waits for queued events while pipelined writes are outstanding.
constexpr auto kReapInterval = milliseconds{10};
// One wait for a pipelined write; the write itself is bounded by the sink's own deadlines.
constexpr auto kLaneWait = milliseconds{100};

std::int64_t to_ms(Clock::duration d) { return duration_cast<milliseconds>(d).count(); }

nlohmann::json user_id_json(const Event& e) {
  return e.user_id ? nlohmann::json(*e.user_id) : nlohmann::json(nullptr);
}

}  // namespace

Dispatcher::Dispatcher(std::shared_ptr<TrackerState> state)
    : state_(std::move(state)),
      s_(*state_),
      // Durable mode batches group commits to the spool; delivery then goes by spool claims.
      batcher_(s_.options.durable ? kGroupMax : s_.options.batch_size,
               s_.options.durable
                   ? std::min<Clock::duration>(s_.options.flush_interval, kGroupInterval)
                   : Clock::duration{s_.options.flush_interval}),
      retry_backoff_(kFirstRetry, kMaxRetryDelay, s_.options.jitter),
      row_cap_(std::max<std::size_t>(s_.options.batch_size, 1)),
      claim_lease_([this](std::span<const std::int64_t> ids,
                          std::chrono::seconds lease) { return s_.spool.extend(ids, lease); },
                   s_.options.durable ? kDurableLease : kSpoolLease,
                   [this] { return s_.clock->now(); }) {
  pending_.reserve(std::max<std::size_t>(s_.options.batch_size, 1));
  if (!s_.options.durable) lanes_ = dynamic_cast<ParallelSink*>(s_.sink.get());
}

void Dispatcher::run() noexcept {
  for (;;) {
    try {
      if (!step()) break;
    } catch (const TakenOver&) {
      // close() took our events over and returned: count nothing, report nothing. The state
      // (and so the sink) stays alive through our reference until pipelined writes return.
      wait_out_lanes();
      break;
    } catch (const std::exception& e) {
      report(log::Level::error, "dispatcher.exception", "dispatcher error", {{"err", e.what()}},
             {"dispatcher error", e.what(), "", pending_.size()});
    } catch (...) {
      report(log::Level::error, "dispatcher.exception", "dispatcher error",
             {{"err", "unknown exception"}}, {"dispatcher error", "unknown exception", "", 0});
    }
  }
  s_.mark_finished();
}

Clock::duration Dispatcher::idle_wait(bool stopping) const {
  if (stopping || drain_due_) return Clock::duration::zero();
  Clock::duration wait = kIdleWait;
  if (const auto deadline = batcher_.next_deadline()) {
    wait = std::max(*deadline - s_.clock->now(), Clock::duration::zero());
  }
  // Outstanding pipelined writes are taken when the thread wakes: soon, so stats stay current.
  if (lanes_ != nullptr && lanes_->outstanding() > 0)
    wait = std::min<Clock::duration>(wait, kReapInterval);
  return wait;
}

bool Dispatcher::step() {
  if (s_.options.durable) return step_durable();
  const bool stopping = s_.is_stopping();
  if (stopping && s_.past_deadline()) {
    spool_everything_left();
    return false;
  }
  if (lanes_ != nullptr) reap(false);

  std::size_t popped = 0;
  const bool tried_pop = !flush_now_ && batcher_.room() > 0;
  if (tried_pop) {
    popped_.clear();
    popped = s_.queue.pop(popped_, batcher_.room(), idle_wait(stopping),
                          pending_.empty() ? 1 : batcher_.room());
    const auto popped_at = s_.clock->now();
    for (auto& item : popped_) {
      if (item.is_control()) {
        markers_.push_back(std::move(item.marker));
        flush_now_ = true;
      } else if (s_.take(item)) {
        pending_.push_back(std::move(item.event));
        batcher_.add(item.queued_at.value_or(popped_at));
      }
    }
  }

  if (!pending_.empty() && (flush_now_ || stopping || batcher_.due(s_.clock->now()))) {
    send_pending();
  }
  if (pending_.empty()) {
    flush_now_ = false;
    complete_markers();
    if (stopping && tried_pop && popped == 0) {  // closed and the queue is empty
      settle_lanes();
      return false;
    }
    if (drain_due_ && !stopping) drain_spool_once();
  }
  return true;
}

// Durable mode (write-ahead): events go from the queue to the spool in group commits, and are
// delivered from the spool (claim, write, remove). A crash at any point leaves every committed
// event in the spool for the next run or `trackevent flush`.
bool Dispatcher::step_durable() {
  const bool stopping = s_.is_stopping();
  if (stopping && s_.past_deadline()) {
    spool_everything_left();
    for (auto& m : sync_markers_) m->complete(false);
    sync_markers_.clear();
    reconcile_backlog();  // close() counts what is left as spooled: only what really is
    return false;
  }

  std::size_t popped = 0;
  bool commit_now = false;
  const bool tried_pop = batcher_.room() > 0;
  if (tried_pop) {
    popped_.clear();
    popped = s_.queue.pop(popped_, batcher_.room(), durable_wait(stopping),
                          pending_.empty() ? 1 : batcher_.room());
    const auto popped_at = s_.clock->now();
    for (auto& item : popped_) {
      if (item.is_control()) {
        (item.marker->sync_only() ? sync_markers_ : markers_).push_back(std::move(item.marker));
        commit_now = true;
      } else if (s_.take(item)) {
        pending_.push_back(std::move(item.event));
        batcher_.add(item.queued_at.value_or(popped_at));
      }
    }
  }
  const auto now = s_.clock->now();
  if (!pending_.empty() && (commit_now || stopping || batcher_.due(now))) commit_group();
  if (pending_.empty()) {
    for (auto& m : sync_markers_) m->complete(!commit_failed_);
    if (!sync_markers_.empty()) commit_failed_ = false;
    sync_markers_.clear();
  }

  // Deliver from the spool: right after a commit or a successful drain, and every so often
  // while our events wait there (the sink failing, or rows leased by another process).
  if (s_.durable_backlog.load() > 0 && now >= next_backlog_poll_) drain_due_ = true;
  if (drain_due_ && !(failing_ && now < next_probe_)) {
    next_backlog_poll_ = now + std::chrono::milliseconds{100};
    // Nothing uncommitted in our hands while we write (close() may take over then).
    if (!pending_.empty()) commit_group();
    drain_spool_once();
  }

  if (pending_.empty() && backlog_settled()) complete_markers();
  const bool done = stopping && tried_pop && popped == 0 && pending_.empty() && backlog_settled();
  if (done) reconcile_backlog();
  return !done;
}

// Our spooled events are delivered, or cannot be for now (they stay spooled, which is settled).
bool Dispatcher::backlog_settled() const {
  return s_.durable_backlog.load() <= 0 || failing_ || !s_.sink;
}

Clock::duration Dispatcher::durable_wait(bool stopping) const {
  if (stopping || drain_due_) return Clock::duration::zero();
  const auto now = s_.clock->now();
  Clock::duration wait = kIdleWait;
  if (const auto deadline = batcher_.next_deadline()) wait = *deadline - now;
  if (s_.durable_backlog.load() > 0) {
    wait = std::min(
        wait, (failing_ ? std::max(next_probe_, next_backlog_poll_) : next_backlog_poll_) - now);
  }
  return std::max(wait, Clock::duration::zero());
}

void Dispatcher::commit_group() {
  auto batch = std::make_shared<const std::vector<Event>>(std::move(pending_));
  pending_ = {};
  batcher_.reset();
  // One transaction per group (at most kGroupMax events): the fsync is shared by the group.
  const auto appended = s_.spool.append(*batch);
  if (appended) {
    own_rows_.push_back(*appended);
    s_.durable_backlog.fetch_add(static_cast<std::int64_t>(batch->size()));
    settle(batch->size());
    drain_due_ = true;
    return;
  }
  commit_failed_ = true;
  const std::string& error = appended.error().message;
  report(log::Level::error, "spool.durable_failed",
         "events not durable: could not write them to the spool; delivering them directly",
         {{"events", batch->size()}, {"err", error}},
         {"events not durable: could not write them to the spool", error, "", batch->size()});
  deliver(batch);  // best effort without the write-ahead: stored, spooled or counted as dropped
}

void Dispatcher::send_pending() {
  auto batch = std::make_shared<const std::vector<Event>>(std::move(pending_));
  pending_ = {};
  pending_.reserve(std::max<std::size_t>(s_.options.batch_size, 1));
  batcher_.reset();
  if (lanes_ != nullptr) {
    submit(std::move(batch));
    return;
  }
  deliver(batch);
}

void Dispatcher::submit(Batch batch) {
  s_.add_in_flight(batch);  // while it waits for a connection, close() may take it over
  while (!lanes_->has_free_lane() && lane_failed_.empty()) reap(true);
  // A batch over the rows-per-statement cap (see note_timeouts) goes the synchronous way.
  if (lane_failed_.empty() && !failing_ && !s_.past_deadline() && batch->size() <= row_cap_) {
    lanes_->submit(std::move(batch));  // in flight until reap() takes its result
    return;
  }
  settle_lanes();  // the slow path decides: retry, split, spool
  if (s_.release_in_flight(batch)) deliver(batch);
}

void Dispatcher::reap(bool wait) {
  for (;;) {
    if (lanes_->outstanding() == 0) return;
    std::optional<ParallelSink::Done> done;
    if (wait) {
      s_.park();  // every batch a connection writes is registered in flight
      done = lanes_->next_done(kLaneWait);
      s_.unpark();
    } else {
      done = lanes_->next_done(Clock::duration::zero());
    }
    if (!done) {
      if (wait) continue;
      return;
    }
    wait = false;
    if (!done->result.ok()) {
      // Stays in flight: deliver() takes it from here, with this write as its first attempt.
      lane_failed_.push_back(std::move(*done));
      continue;
    }
    // close() gave up on this write and spooled the batch itself; nothing left to count here.
    if (!s_.release_in_flight(done->batch)) continue;
    Counters::add(s_.counters.stored, done->result.stored);
    Counters::add(s_.counters.duplicates, done->result.duplicates);
    settle(done->batch->size());
    sink_succeeded();
  }
}

void Dispatcher::settle_lanes() {
  if (lanes_ == nullptr) return;
  while (lanes_->outstanding() > 0) reap(true);
  auto failed = std::exchange(lane_failed_, {});
  for (auto& f : failed) deliver(f.batch, std::move(f.result));
}

void Dispatcher::deliver(const Batch& batch, std::optional<WriteResult> first) {
  // Registered in flight for the whole delivery (a pipelined batch already is), retry pauses
  // included, so close() can take it over whenever we block.
  if (!first) s_.add_in_flight(batch);
  const std::span<const Event> all{*batch};
  const auto spool_unless_taken = [&](std::string_view why) {
    if (s_.release_in_flight(batch)) spool_events(all, why);
  };
  if (s_.past_deadline()) {
    spool_unless_taken("shutdown deadline passed");
    return;
  }
  if (failing_ && s_.clock->now() < next_probe_) {
    spool_unless_taken("sink failing");
    return;
  }
  const auto first_attempt = s_.clock->now();
  for (unsigned attempt = 1;; ++attempt) {
    Outcome out;
    if (first) {  // the pipelined write was this batch's first attempt
      note_timeouts(*first, all.size());
      take_result(all, *std::exchange(first, std::nullopt), out);
    } else {
      write_capped(all, out);
    }
    std::size_t unsent = 0;
    for (const auto part : out.unsent) unsent += part.size();
    const bool nothing_written = unsent == all.size();
    const bool retry = unsent > 0 && out.failure->disposition == Disposition::retry &&
                       nothing_written && !failing_ && attempt < kMaxAttempts &&
                       s_.clock->now() - first_attempt < kMaxRetryTime && !s_.past_deadline();
    if (retry) {
      const Failure& failure = *out.failure;
      Counters::add(s_.counters.retries);
      const auto delay = retry_backoff_.next();
      log::write_limited(log::Level::warn, "sink.retry", "batch write failed; retrying",
                         {{"events", all.size()},
                          {"attempt", attempt},
                          {"retry_in_ms", to_ms(delay)},
                          {"sqlstate", failure.sqlstate},
                          {"err", failure.message}});
      s_.pause(delay);
      if (s_.past_deadline()) {  // shutdown cut the pause short: no more attempts
        spool_unless_taken("shutdown deadline passed");
        return;
      }
      continue;
    }
    // close() took the batch over (and counted it) while we were not looking: nothing to count.
    if (!s_.release_in_flight(batch)) return;
    count(out);
    // Spool first: the events must not depend on the reporting (and its callback) succeeding.
    for (const auto part : out.unsent) spool_events(part, "sink failed");
    spool_undead(out);
    settle(all.size() - unsent - out.dead_failed.size());  // stored, duplicates, dead-lettered
    if (unsent == 0) {
      sink_succeeded();
      return;
    }
    sink_failed(*out.failure, unsent);
    return;
  }
}

void Dispatcher::count(const Outcome& out) {
  Counters::add(s_.counters.stored, out.stored);
  Counters::add(s_.counters.duplicates, out.duplicates);
  Counters::add(s_.counters.rejected_by_db, out.dead_lettered);
}

void Dispatcher::spool_undead(const Outcome& out) {
  for (const Event* e : out.dead_failed) {
    spool_events(std::span<const Event>(e, 1), "dead-letter file not writable");
  }
}

WriteResult Dispatcher::write_once(std::span<const Event> batch) {
  if (!s_.sink) {
    return WriteResult{0, 0, Failure{Disposition::hold, "", "no database sink could be opened"}};
  }
  renew_claim();
  WriteResult result;
  s_.park();  // what we hold is registered in flight (or in the spool): close() may take over
  try {
    result = s_.sink->write(batch);
  } catch (const std::exception& e) {
    // Sinks promise not to throw; if one does, treat it as a transient failure.
    result = WriteResult{0, 0, Failure{Disposition::retry, "", e.what()}};
  } catch (...) {
    result = WriteResult{0, 0, Failure{Disposition::retry, "", "sink threw an unknown exception"}};
  }
  s_.unpark();
  note_timeouts(result, batch.size());
  return result;
}

void Dispatcher::write_capped(std::span<const Event> batch, Outcome& out) {
  const std::size_t cap = std::max<std::size_t>(row_cap_, 1);
  while (!batch.empty()) {
    const auto part = batch.first(std::min(cap, batch.size()));
    write_isolating(part, out);
    batch = batch.subspan(part.size());
  }
}

void Dispatcher::note_timeouts(const WriteResult& result, std::size_t rows) {
  if (result.ok()) {
    // A statement as large as the cap went through: allow twice as many again. (A smaller one
    // proves nothing about the size that timed out.)
    if (rows >= row_cap_) {
      timeouts_in_a_row_ = 0;
      row_cap_ = std::min(std::max<std::size_t>(s_.options.batch_size, 1), row_cap_ * 2);
    }
    return;
  }
  if (result.failure->sqlstate != "57014") return;
  // A batch that keeps exceeding statement_timeout would be retried and replayed from the spool
  // forever at the same size: from the second timeout in a row, write fewer rows per statement.
  if (++timeouts_in_a_row_ < 2 || row_cap_ <= 1) return;
  row_cap_ = std::max<std::size_t>(std::min(row_cap_, rows) / 2, 1);
  log::write_limited(log::Level::warn, "sink.statement_timeout",
                     "batches keep exceeding the statement timeout; writing fewer rows per "
                     "statement",
                     {{"rows_per_statement", row_cap_}, {"err", result.failure->message}});
}

void Dispatcher::renew_claim() {
  // Isolating bad rows in a large claimed batch may outlast the lease: keep the rows ours.
  if (!claim_ids_.empty() && claim_lease_.due()) (void)claim_lease_.renew(claim_ids_);
}

bool Dispatcher::is_own(std::int64_t spool_id) const {
  // Ranges are appended in increasing order: the last one starting at or before the id.
  const auto after = std::upper_bound(
      own_rows_.begin(), own_rows_.end(), spool_id,
      [](std::int64_t id, const std::pair<std::int64_t, std::int64_t>& r) { return id < r.first; });
  return after != own_rows_.begin() && spool_id <= std::prev(after)->second;
}

// Nothing to claim, yet our events are not all delivered: others hold them under lease, or have
// delivered them (a concurrent `trackevent flush`, another durable process). Count what is left.
void Dispatcher::reconcile_backlog() {
  if (own_rows_.empty() || s_.durable_backlog.load() <= 0) {
    own_rows_.clear();
    return;
  }
  std::int64_t left = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> still;
  for (const auto& r : own_rows_) {
    const auto counted = s_.spool.count_between(r.first, r.second);
    if (!counted) return;  // cannot tell now; try again at the next poll
    const std::int64_t n = *counted;
    if (n > 0) still.push_back(r);
    left += n;
  }
  own_rows_ = std::move(still);
  // They left the spool, which only delivery or a dead-letter line makes them do.
  const std::int64_t gone = s_.durable_backlog.load() - left;
  if (gone > 0) Counters::add(s_.counters.stored, static_cast<std::uint64_t>(gone));
  s_.durable_backlog.store(left);
}

void Dispatcher::wait_out_lanes() noexcept {
  if (lanes_ == nullptr) return;
  try {
    while (lanes_->outstanding() > 0) (void)lanes_->next_done(kLaneWait);
  } catch (...) {
  }
}

// Bisects a rejected batch: each half is written on its own, so k bad rows in n cost about
// 2k*log2(n) writes and every good row is stored. A retry/hold failure stops the splitting; what
// was not written yet is returned as unsent.
void Dispatcher::write_isolating(std::span<const Event> batch, Outcome& out) {
  if (batch.empty()) return;
  if (out.failure) {
    out.unsent.push_back(batch);
    return;
  }
  take_result(batch, write_once(batch), out);
}

void Dispatcher::take_result(std::span<const Event> batch, WriteResult result, Outcome& out) {
  if (result.ok()) {
    out.stored += result.stored;
    out.duplicates += result.duplicates;
    return;
  }
  if (result.failure->disposition != Disposition::reject) {
    out.unsent.push_back(batch);
    out.failure = std::move(result.failure);
    return;
  }
  if (batch.size() == 1) {
    if (dead_letter(batch.front(), *result.failure)) {
      ++out.dead_lettered;
      out.dead.push_back(&batch.front());
    } else {
      out.dead_failed.push_back(&batch.front());  // its only copy stays with us, then the spool
    }
    return;
  }
  const std::size_t half = batch.size() / 2;
  write_isolating(batch.first(half), out);
  write_isolating(batch.subspan(half), out);
}

bool Dispatcher::dead_letter(const Event& event, const Failure& failure) {
  const auto written = s_.spool.dead_letter(event, failure.message, failure.sqlstate);
  const bool kept = written.ok();
  log::Fields fields{{"event_id", event.event_id.to_string()},
                     {"event_name", event.event_name},
                     {"org_id", event.org_id},
                     {"user_id", user_id_json(event)},
                     {"sqlstate", failure.sqlstate},
                     {"err", failure.message}};
  if (!kept) {
    fields["dead_letter_err"] = written.error().message;
    report(log::Level::critical, "sink.bad_row_kept",
           "database refused an event and the dead-letter file cannot take it; keeping it in "
           "the spool",
           std::move(fields),
           {"failed to record analytics event", failure.message, failure.sqlstate, 1});
    return false;
  }
  report(log::Level::error, "sink.bad_row", "failed to record analytics event", std::move(fields),
         {"failed to record analytics event", failure.message, failure.sqlstate, 1});
  return true;
}

void Dispatcher::sink_failed(const Failure& failure, std::size_t events) {
  const auto now = s_.clock->now();
  failing_ = true;
  if (failure.disposition == Disposition::hold) {
    next_probe_ = now + kHoldProbe;
    report(log::Level::error, "sink.hold",
           "database refused writes; holding events in the spool until an operator fixes it",
           {{"events", events},
            {"sink", s_.sink ? s_.sink->describe() : std::string("none")},
            {"sqlstate", failure.sqlstate},
            {"err", failure.message},
            {"retry_in_ms", to_ms(kHoldProbe)}},
           {"database refused writes", failure.message, failure.sqlstate, events});
    return;
  }
  const auto delay = retry_backoff_.next();
  next_probe_ = now + delay;
  report(log::Level::error, "sink.unavailable", "failed to record analytics events; spooling them",
         {{"events", events},
          {"sqlstate", failure.sqlstate},
          {"err", failure.message},
          {"retry_in_ms", to_ms(delay)}},
         {"failed to record analytics events", failure.message, failure.sqlstate, events});
}

void Dispatcher::sink_succeeded() {
  if (failing_) {
    log::info("database reachable again");
  }
  failing_ = false;
  retry_backoff_.reset();
  drain_due_ = s_.options.drain_spool;
}

// One spool batch per call, so live events queued meanwhile go first on the next iteration.
void Dispatcher::drain_spool_once() {
  drain_due_ = false;
  if (!s_.sink || (failing_ && s_.clock->now() < next_probe_)) return;
  const auto lease = s_.options.durable ? kDurableLease : kSpoolLease;
  const std::size_t most = std::min(std::max<std::size_t>(s_.options.batch_size, 1), row_cap_);
  auto claim = s_.spool.claim(most, lease);
  if (!claim || claim->empty()) {
    reconcile_backlog();
    return;
  }
  auto claimed = std::move(claim).value();
  settle_lanes();  // the sink is used synchronously below

  std::vector<Event> events;
  events.reserve(claimed.size());
  claim_ids_.clear();
  for (auto& c : claimed) {
    events.push_back(std::move(c.event));
    claim_ids_.push_back(c.spool_id);
  }
  claim_lease_.claimed();
  Outcome out;
  try {
    write_capped(events, out);
  } catch (...) {
    claim_ids_.clear();
    throw;
  }
  claim_ids_.clear();

  // Each claimed row: delivered (remove it), not written (give it back), or refused with no
  // dead-letter line to show for it (keep it claimed: nobody retries it before the lease ends).
  enum class Fate : unsigned char { done, back, keep };
  std::vector<Fate> fate(events.size(), Fate::done);
  for (const auto part : out.unsent) {
    const auto first = static_cast<std::size_t>(part.data() - events.data());
    std::fill_n(fate.begin() + static_cast<std::ptrdiff_t>(first), part.size(), Fate::back);
  }
  for (const Event* e : out.dead_failed) {
    fate[static_cast<std::size_t>(e - events.data())] = Fate::keep;
  }
  std::vector<std::int64_t> done;
  std::vector<std::int64_t> back;
  for (std::size_t i = 0; i < claimed.size(); ++i) {
    if (fate[i] == Fate::done) done.push_back(claimed[i].spool_id);
    if (fate[i] == Fate::back) back.push_back(claimed[i].spool_id);
  }
  if (!done.empty() && !s_.spool.remove(done)) {
    log::write_limited(log::Level::warn, "spool.remove",
                       "could not remove delivered events from the spool; they will be "
                       "delivered again (harmless: delivery is idempotent on event_id)",
                       {{"events", done.size()}});
  }
  // Our own durable events are live deliveries, not replays; older leftovers are unspooled.
  std::size_t own_dead = 0;
  for (const Event* e : out.dead) {
    own_dead += is_own(claimed[static_cast<std::size_t>(e - events.data())].spool_id) ? 1 : 0;
  }
  std::size_t own_done = 0;
  for (std::size_t i = 0; i < events.size() && !own_rows_.empty(); ++i) {
    if (fate[i] == Fate::done && is_own(claimed[i].spool_id)) ++own_done;
  }
  // Counted once the spool no longer holds them, so stats never show an event in both places.
  count(out);
  Counters::add(s_.counters.unspooled, out.stored + out.duplicates - (own_done - own_dead));
  s_.durable_backlog.fetch_sub(static_cast<std::int64_t>(own_done));
  if (!back.empty()) {
    (void)s_.spool.release(back);
    sink_failed(*out.failure, back.size());
    return;
  }
  sink_succeeded();
  log::debug("delivered events from the spool", {{"events", done.size()}});
  drain_due_ = true;
}

void Dispatcher::spool_events(std::span<const Event> events, std::string_view why) {
  if (events.empty()) return;
  // Chunked: one failed transaction (e.g. a disk filling up) loses only its own chunk, and the
  // counters say exactly how many events made it.
  const auto chunked = s_.spool.append_chunked(events);
  const std::size_t kept = chunked.kept;
  const std::string error = chunked.failure ? chunked.failure->message : std::string();
  Counters::add(s_.counters.spooled, kept);
  settle(events.size());
  if (kept > 0) {
    log::write_limited(log::Level::info, "spool.append", "events spooled for later delivery",
                       {{"events", kept}, {"reason", why}});
  }
  const std::size_t lost = events.size() - kept;
  if (lost == 0) return;
  Counters::add(s_.counters.dropped, lost);
  report(log::Level::critical, "spool.failed", "events lost: could not spool them",
         {{"events", lost}, {"reason", why}, {"err", error}},
         {"events lost: could not spool them", error, "", lost});
}

void Dispatcher::spool_everything_left() {
  // What never reached the sink first: the pending batch and the queue. Only then are outstanding
  // pipelined writes waited for (each bounded by the sink's deadlines; close() takes them over if
  // it stops waiting first, which it does only while we hold nothing else); deliver() spools the
  // failed ones, as the deadline has passed.
  spool_events(pending_, "shutdown deadline passed");
  pending_.clear();
  batcher_.reset();
  std::vector<Event> chunk;
  for (;;) {
    popped_.clear();
    if (s_.queue.pop(popped_, std::max<std::size_t>(s_.options.batch_size, 1),
                     Clock::duration::zero()) == 0) {
      break;
    }
    for (auto& item : popped_) {
      if (item.is_control()) {
        markers_.push_back(std::move(item.marker));
      } else if (s_.take(item)) {
        chunk.push_back(std::move(item.event));
      }
    }
    spool_events(chunk, "shutdown deadline passed");
    chunk.clear();
  }
  settle_lanes();
  complete_markers();
}

void Dispatcher::complete_markers() {
  if (markers_.empty()) return;
  settle_lanes();  // a marker completes once everything before it is settled
  for (auto& marker : markers_) marker->complete();
  markers_.clear();
}

void Dispatcher::settle(std::size_t events) noexcept {
  s_.settled.fetch_add(static_cast<std::int64_t>(events));
}

void Dispatcher::report(log::Level level, std::string_view key, std::string_view msg,
                        log::Fields fields, const ErrorInfo& info) {
  log::write_limited(level, key, msg, fields);
  if (!s_.options.on_error) return;
  // Never after close() has returned: the objects the callback captured may be gone.
  const std::lock_guard callback_lock(s_.callback_mutex);
  if (s_.is_taken_over()) return;
  try {
    s_.options.on_error(info);
  } catch (const std::exception& e) {
    log::write_limited(log::Level::error, "on_error.threw", "on_error callback threw",
                       {{"err", e.what()}});
  } catch (...) {
    log::write_limited(log::Level::error, "on_error.threw", "on_error callback threw",
                       {{"err", "unknown exception"}});
  }
}

}  // namespace trackevent::detail
