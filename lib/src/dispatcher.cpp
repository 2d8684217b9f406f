#include "dispatcher.hpp"

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
      retry_backoff_(kFirstRetry, kMaxRetryDelay, s_.options.jitter) {
  pending_.reserve(std::max<std::size_t>(s_.options.batch_size, 1));
  if (!s_.options.durable) lanes_ = dynamic_cast<ParallelSink*>(s_.sink.get());
}

void Dispatcher::run() noexcept {
  for (;;) {
    try {
      if (!step()) break;
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
    drain_spool_once();
  }

  if (pending_.empty() && backlog_settled()) complete_markers();
  return !(stopping && tried_pop && popped == 0 && pending_.empty() && backlog_settled());
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
  std::string error;
  // One transaction per group (at most kGroupMax events): the fsync is shared by the group.
  if (s_.spool.append(*batch, error)) {
    for (const auto& e : *batch) own_.insert(e.event_id);
    s_.durable_backlog.fetch_add(static_cast<std::int64_t>(batch->size()));
    settle(batch->size());
    drain_due_ = true;
    return;
  }
  commit_failed_ = true;
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
  if (lane_failed_.empty() && !failing_ && !s_.past_deadline()) {
    lanes_->submit(std::move(batch));  // in flight until reap() takes its result
    return;
  }
  settle_lanes();  // the slow path decides: retry, split, spool
  if (s_.release_in_flight(batch)) deliver(batch);
}

void Dispatcher::reap(bool wait) {
  for (;;) {
    if (lanes_->outstanding() == 0) return;
    auto done = lanes_->next_done(wait ? kLaneWait : Clock::duration::zero());
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
  // A pipelined batch comes here still registered in flight, with its failed write's result.
  const bool registered = first.has_value();
  const std::span<const Event> all{*batch};
  const auto spool_unless_taken = [&](std::string_view why) {
    if (!registered || s_.release_in_flight(batch)) spool_events(all, why);
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
      take_result(all, *std::exchange(first, std::nullopt), out);
    } else {
      s_.add_in_flight(batch);
      write_isolating(all, out);
    }
    // close() gave up on this write and spooled the batch itself; nothing left to count here.
    if (!s_.release_in_flight(batch)) return;
    Counters::add(s_.counters.stored, out.stored);
    Counters::add(s_.counters.duplicates, out.duplicates);
    std::size_t unsent = 0;
    for (const auto part : out.unsent) unsent += part.size();
    settle(all.size() - unsent);  // stored, duplicates and dead-lettered rows
    if (unsent == 0) {
      sink_succeeded();
      return;
    }

    const Failure& failure = *out.failure;
    const bool nothing_written = out.unsent.size() == 1 && out.unsent[0].size() == all.size();
    const bool retry = failure.disposition == Disposition::retry && nothing_written && !failing_ &&
                       attempt < kMaxAttempts && s_.clock->now() - first_attempt < kMaxRetryTime &&
                       !s_.past_deadline();
    if (retry) {
      Counters::add(s_.counters.retries);
      const auto delay = retry_backoff_.next();
      log::write_limited(log::Level::warn, "sink.retry", "batch write failed; retrying",
                         {{"events", all.size()},
                          {"attempt", attempt},
                          {"retry_in_ms", to_ms(delay)},
                          {"sqlstate", failure.sqlstate},
                          {"err", failure.message}});
      s_.pause(delay);
      continue;
    }

    // Spool first: the events must not depend on the reporting (and its callback) succeeding.
    for (const auto part : out.unsent) spool_events(part, "sink failed");
    sink_failed(failure, unsent);
    return;
  }
}

WriteResult Dispatcher::write_once(std::span<const Event> batch) {
  if (!s_.sink) {
    return WriteResult{0, 0, Failure{Disposition::hold, "", "no database sink could be opened"}};
  }
  try {
    return s_.sink->write(batch);
  } catch (const std::exception& e) {
    // Sinks promise not to throw; if one does, treat it as a transient failure.
    return WriteResult{0, 0, Failure{Disposition::retry, "", e.what()}};
  } catch (...) {
    return WriteResult{0, 0, Failure{Disposition::retry, "", "sink threw an unknown exception"}};
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
    dead_letter(batch.front(), *result.failure);
    ++out.dead_lettered;
    out.dead.push_back(&batch.front());
    return;
  }
  const std::size_t half = batch.size() / 2;
  write_isolating(batch.first(half), out);
  write_isolating(batch.subspan(half), out);
}

void Dispatcher::dead_letter(const Event& event, const Failure& failure) {
  std::string error;
  const bool kept = s_.spool.dead_letter(event, failure.message, failure.sqlstate, error);
  Counters::add(s_.counters.rejected_by_db);
  log::Fields fields{{"event_id", event.event_id.to_string()},
                     {"event_name", event.event_name},
                     {"org_id", event.org_id},
                     {"user_id", user_id_json(event)},
                     {"sqlstate", failure.sqlstate},
                     {"err", failure.message}};
  if (!kept) fields["dead_letter_err"] = error;
  report(log::Level::error, "sink.bad_row", "failed to record analytics event", std::move(fields),
         {"failed to record analytics event", failure.message, failure.sqlstate, 1});
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
  auto claimed = s_.spool.claim(std::max<std::size_t>(s_.options.batch_size, 1), lease);
  if (claimed.empty()) return;
  settle_lanes();  // the sink is used synchronously below

  std::vector<Event> events;
  events.reserve(claimed.size());
  for (auto& c : claimed) events.push_back(std::move(c.event));
  Outcome out;
  write_isolating(events, out);

  std::vector<bool> unsent(events.size(), false);
  for (const auto part : out.unsent) {
    const auto first = static_cast<std::size_t>(part.data() - events.data());
    std::fill_n(unsent.begin() + static_cast<std::ptrdiff_t>(first), part.size(), true);
  }
  std::vector<std::int64_t> done;
  std::vector<std::int64_t> back;
  for (std::size_t i = 0; i < claimed.size(); ++i) {
    (unsent[i] ? back : done).push_back(claimed[i].spool_id);
  }
  if (!done.empty() && !s_.spool.remove(done)) {
    log::write_limited(log::Level::warn, "spool.remove",
                       "could not remove delivered events from the spool; they will be "
                       "delivered again (harmless: delivery is idempotent on event_id)",
                       {{"events", done.size()}});
  }
  // Our own durable events are live deliveries, not replays; older leftovers are unspooled.
  std::size_t own_dead = 0;
  for (const Event* e : out.dead) own_dead += own_.contains(e->event_id) ? 1 : 0;
  std::size_t own_done = 0;
  for (std::size_t i = 0; i < events.size() && !own_.empty(); ++i) {
    if (unsent[i]) continue;
    if (const auto it = own_.find(events[i].event_id); it != own_.end()) {
      own_.erase(it);
      ++own_done;
    }
  }
  // Counted once the spool no longer holds them, so stats never show an event in both places.
  Counters::add(s_.counters.stored, out.stored);
  Counters::add(s_.counters.duplicates, out.duplicates);
  Counters::add(s_.counters.unspooled, out.stored + out.duplicates - (own_done - own_dead));
  s_.durable_backlog.fetch_sub(static_cast<std::int64_t>(own_done));
  if (!back.empty()) {
    s_.spool.release(back);
    sink_failed(*out.failure, back.size());
    return;
  }
  sink_succeeded();
  log::debug("delivered events from the spool", {{"events", done.size()}});
  drain_due_ = true;
}

void Dispatcher::spool_events(std::span<const Event> events, std::string_view why) {
  if (events.empty()) return;
  std::string error;
  // Chunked: one failed transaction (e.g. a disk filling up) loses only its own chunk, and the
  // counters say exactly how many events made it.
  const std::size_t kept = s_.spool.append_chunked(events, error);
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
  // Outstanding pipelined writes are waited for (each is bounded by the sink's deadlines; close()
  // takes them over if it stops waiting first); deliver() spools the failed ones, as the deadline
  // has passed. The in-flight batch is settled by deliver(); here only what never reached the sink.
  settle_lanes();
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
