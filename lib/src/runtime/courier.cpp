#include "runtime/courier.hpp"

#include "runtime/durable_mode.hpp"

#include <algorithm>
#include <exception>
#include <utility>

namespace trackevent::detail {
namespace {

std::int64_t to_ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

nlohmann::json user_id_json(const Event& e) {
  return e.user_id ? nlohmann::json(*e.user_id) : nlohmann::json(nullptr);
}

/// Clears the list of rows being replayed when the replay ends, however it ends.
struct ClearOnExit {
  std::vector<std::int64_t>& ids;
  ~ClearOnExit() { ids.clear(); }
};

}  // namespace

Courier::Courier(TrackerState& state)
    : s_(state),
      policy_(
          DeliveryPolicy::Rules{.max_rows = std::max<std::size_t>(s_.options.batch_size, 1)},
          DeliveryPolicy::Hooks{
              .write = [this](std::span<const Event> rows) { return write_parked(rows); },
              .dead_letter = [this](const Event& row,
                                    const Failure& why) { return dead_letter(row, why); },
              // Parked meanwhile; ends early when shutdown starts, throws TakenOver.
              .wait = [this](Clock::duration delay) { s_.pause(delay); },
              .stop = [this] { return s_.past_deadline(); },
              // Isolating bad rows in a large claimed batch may outlast the lease: keep the rows.
              .before_write =
                  [this] {
                    if (!claim_ids_.empty() && claim_lease_.due())
                      (void)claim_lease_.renew(claim_ids_);
                  },
              .settled = {},
              .on_retry =
                  [this](std::span<const Event> rows, unsigned attempt, Clock::duration delay,
                         const Failure& failure) {
                    Counters::add(s_.counters.retries);
                    log::write_limited(log::Level::warn, "sink.retry",
                                       "batch write failed; retrying",
                                       {{"events", rows.size()},
                                        {"attempt", attempt},
                                        {"retry_in_ms", to_ms(delay)},
                                        {"sqlstate", failure.sqlstate},
                                        {"err", failure.message}});
                  },
          },
          s_.clock, s_.options.jitter),
      record_(s_.options.spool_dir),
      claim_lease_([this](std::span<const std::int64_t> ids,
                          std::chrono::seconds lease) { return s_.spool.extend(ids, lease); },
                   s_.options.durable ? kDurableLease : kSpoolLease,
                   [this] { return s_.clock->now(); }) {}

WriteResult Courier::write_parked(std::span<const Event> rows) {
  if (!s_.sink) {
    return WriteResult{0, 0, Failure{Disposition::hold, "", "no database sink could be opened"}};
  }
  s_.park();  // what we hold is registered in flight (or in the spool): close() may take over
  WriteResult result = s_.sink->write(rows);  // noexcept: failures come back classified
  s_.unpark();
  return result;
}

void Courier::deliver(const Batch& batch, std::optional<WriteResult> first) {
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
  if (policy_.held_back()) {
    spool_unless_taken("sink failing");
    return;
  }
  const DeliveryOutcome out = policy_.deliver(all, std::move(first));
  // close() took the batch over (and counted it) while we were not looking: nothing to count.
  if (!s_.release_in_flight(batch)) return;
  count(out);
  const std::size_t unsent = out.unsent_rows();
  // Spool first: the events must not depend on the reporting (and its callback) succeeding.
  const std::string_view why = out.stopped ? "shutdown deadline passed" : "sink failed";
  for (const auto part : out.unsent) spool_events(part, why);
  for (const Event* e : out.dead_failed) {
    spool_events(std::span<const Event>(e, 1), "dead-letter file not writable");
  }
  settle(all.size() - unsent - out.dead_failed.size());  // stored, duplicates, dead-lettered
  if (out.stopped) {
    // Shutdown cut a retry short: that says nothing more about the sink, but the write failed.
    if (unsent > 0 && out.failure) {
      record_.note_failure("unavailable", out.failure->sqlstate, out.failure->message, unsent);
    }
    return;
  }
  if (unsent == 0) {
    sink_succeeded();
    return;
  }
  sink_failed(*out.failure, unsent);
}

void Courier::delivered(const BatchRunner::Done& done) {
  // close() gave up on this write and spooled the batch itself; nothing left to count here.
  if (!s_.release_in_flight(done.batch)) return;
  Counters::add(s_.counters.stored, done.result.stored);
  Counters::add(s_.counters.duplicates, done.result.duplicates);
  settle(done.batch->size());
  policy_.note_write(done.result, done.batch->size());
  record_.note_success(done.result.stored + done.result.duplicates);
  sink_succeeded();
}

void Courier::count(const DeliveryOutcome& out) {
  Counters::add(s_.counters.stored, out.stored);
  Counters::add(s_.counters.duplicates, out.duplicates);
  Counters::add(s_.counters.rejected_by_db, out.dead_lettered);
  if (out.stored + out.duplicates > 0) record_.note_success(out.stored + out.duplicates);
}

bool Courier::dead_letter(const Event& event, const Failure& failure) {
  const auto written = s_.spool.dead_letter(event, failure.message, failure.sqlstate);
  record_.note_failure("rejected", failure.sqlstate, failure.message, 1);
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

void Courier::sink_failed(const Failure& failure, std::size_t events) {
  const Clock::duration delay = policy_.failed(failure);
  record_.note_failure("unavailable", failure.sqlstate, failure.message, events);
  if (failure.disposition == Disposition::hold) {
    report(log::Level::error, "sink.hold",
           "database refused writes; holding events in the spool until an operator fixes it",
           {{"events", events},
            {"sink", s_.sink ? s_.sink->describe() : std::string("none")},
            {"sqlstate", failure.sqlstate},
            {"err", failure.message},
            {"retry_in_ms", to_ms(delay)}},
           {"database refused writes", failure.message, failure.sqlstate, events});
    return;
  }
  report(log::Level::error, "sink.unavailable", "failed to record analytics events; spooling them",
         {{"events", events},
          {"sqlstate", failure.sqlstate},
          {"err", failure.message},
          {"retry_in_ms", to_ms(delay)}},
         {"failed to record analytics events", failure.message, failure.sqlstate, events});
}

void Courier::sink_succeeded() {
  if (policy_.succeeded()) log::info("database reachable again");
  replay_due_ = s_.options.drain_spool;
}

void Courier::replay_spool_once(OwnRows* own, const std::function<void()>& quiesce) {
  replay_due_ = false;
  if (!s_.sink || policy_.held_back()) return;
  const std::size_t most =
      std::min(std::max<std::size_t>(s_.options.batch_size, 1), policy_.row_cap());
  auto claim = s_.spool.claim(most, claim_lease_.lease());
  if (!claim || claim->empty()) {
    if (own != nullptr) own->reconcile(s_);
    return;
  }
  auto claimed = std::move(claim).value();
  if (quiesce) quiesce();

  std::vector<Event> events;
  events.reserve(claimed.size());
  claim_ids_.clear();
  for (auto& c : claimed) {
    events.push_back(std::move(c.event));
    claim_ids_.push_back(c.spool_id);
  }
  claim_lease_.claimed();
  DeliveryOutcome out;
  {
    const ClearOnExit clear{claim_ids_};
    // No retries: the rows are safe in the spool, and live events wait behind this replay.
    out = policy_.deliver(events, std::nullopt, /*retry=*/false);
  }

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
  std::size_t own_done = 0;
  if (own != nullptr && !own->empty()) {
    for (const Event* e : out.dead) {
      own_dead += own->contains(claimed[static_cast<std::size_t>(e - events.data())].spool_id);
    }
    for (std::size_t i = 0; i < events.size(); ++i) {
      own_done += fate[i] == Fate::done && own->contains(claimed[i].spool_id);
    }
  }
  // Counted once the spool no longer holds them, so stats never show an event in both places.
  count(out);
  Counters::add(s_.counters.unspooled, out.stored + out.duplicates - (own_done - own_dead));
  s_.durable_backlog.fetch_sub(static_cast<std::int64_t>(own_done));
  if (!back.empty()) {
    (void)s_.spool.release(back);  // unreleased rows come back when their lease ends
    sink_failed(*out.failure, back.size());
    return;
  }
  sink_succeeded();
  log::debug("delivered events from the spool", {{"events", done.size()}});
  replay_due_ = true;
}

std::size_t Courier::pop(std::vector<Event>& pending, Batcher& batcher, std::size_t most,
                         Clock::duration wait, std::size_t at_least,
                         const std::function<void(std::shared_ptr<FlushMarker>)>& on_marker) {
  popped_.clear();
  const std::size_t popped = s_.queue.pop(popped_, most, wait, at_least);
  const auto popped_at = s_.clock->now();
  for (auto& item : popped_) {
    if (item.is_control()) {
      on_marker(std::move(item.marker));
    } else if (s_.take(item)) {
      pending.push_back(std::move(item.event));
      batcher.add(item.queued_at.value_or(popped_at));
    }
  }
  return popped;
}

void Courier::spool_queue(std::vector<Event>& pending,
                          const std::function<void(std::shared_ptr<FlushMarker>)>& on_marker) {
  spool_events(pending, "shutdown deadline passed");
  pending.clear();
  std::vector<Event> chunk;
  for (;;) {
    popped_.clear();
    if (s_.queue.pop(popped_, std::max<std::size_t>(s_.options.batch_size, 1),
                     Clock::duration::zero()) == 0) {
      break;
    }
    for (auto& item : popped_) {
      if (item.is_control()) {
        on_marker(std::move(item.marker));
      } else if (s_.take(item)) {
        chunk.push_back(std::move(item.event));
      }
    }
    spool_events(chunk, "shutdown deadline passed");
    chunk.clear();
  }
}

void Courier::spool_events(std::span<const Event> events, std::string_view why) {
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

void Courier::settle(std::size_t events) noexcept {
  s_.settled.fetch_add(static_cast<std::int64_t>(events));
}

void Courier::report(log::Level level, std::string_view key, std::string_view msg,
                     log::Fields fields, const ErrorInfo& info) {
  log::write_limited(level, key, msg, fields);
  if (!s_.options.on_error) return;
  // Never after close() has returned: the objects the callback captured may be gone.
  const std::lock_guard callback_lock(s_.callback_mutex);
  if (s_.is_taken_over()) return;
  // The application's callback must not throw (TrackerOptions::on_error); if it does, that is
  // logged here rather than counted as a failure of the delivery that reported.
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
