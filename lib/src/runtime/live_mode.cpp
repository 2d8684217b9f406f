#include "runtime/live_mode.hpp"

#include <algorithm>
#include <utility>

namespace trackevent::detail {
namespace {

// With nothing to do the thread still wakes now and then; a push or close wakes it at once.
constexpr auto kIdleWait = std::chrono::seconds{60};
// How long the thread waits for queued events while writes are outstanding.
constexpr auto kReapInterval = std::chrono::milliseconds{10};
// One wait for a pipelined write; the write itself is bounded by the sink's own deadlines.
constexpr auto kLaneWait = std::chrono::milliseconds{100};

}  // namespace

LiveMode::LiveMode(Courier& courier, std::shared_ptr<BatchRunner> runner)
    : c_(courier),
      s_(courier.state()),
      runner_(std::move(runner)),
      batcher_(s_.options.batch_size, s_.options.flush_interval) {
  pending_.reserve(std::max<std::size_t>(s_.options.batch_size, 1));
}

Clock::duration LiveMode::idle_wait(bool stopping) const {
  if (stopping || c_.replay_due()) return Clock::duration::zero();
  Clock::duration wait = kIdleWait;
  if (const auto deadline = batcher_.next_deadline()) {
    wait = std::max(*deadline - s_.clock->now(), Clock::duration::zero());
  }
  // Outstanding writes are taken when the thread wakes: soon, so stats stay current.
  if (runner_ && runner_->outstanding() > 0) wait = std::min<Clock::duration>(wait, kReapInterval);
  return wait;
}

bool LiveMode::step() {
  if (runner_) reap(false);
  // A failed write stops the pipeline: retry, split or spool it now, not at the next batch.
  if (!lane_failed_.empty()) settle_lanes();
  const bool stopping = s_.is_stopping();
  if (stopping && s_.past_deadline()) {
    spool_everything_left();
    return false;
  }

  std::size_t popped = 0;
  const bool tried_pop = !flush_now_ && batcher_.room() > 0;
  if (tried_pop) {
    popped = c_.pop(pending_, batcher_, batcher_.room(), idle_wait(stopping),
                    pending_.empty() ? 1 : batcher_.room(), [&](std::shared_ptr<FlushMarker> m) {
                      markers_.push_back(std::move(m));
                      flush_now_ = true;
                    });
  }

  if (!pending_.empty() && (flush_now_ || stopping || batcher_.due(s_.clock->now()))) {
    send_pending();
  }
  if (!lane_failed_.empty()) settle_lanes();
  if (pending_.empty()) {
    flush_now_ = false;
    complete_markers();
    if (stopping && tried_pop && popped == 0) {  // closed and the queue is empty
      settle_lanes();
      return false;
    }
    // Not once shutdown has begun (settling writes above may have taken until then): a claim
    // cut short by close() would stay leased, out of every other drain's reach, for minutes.
    if (c_.replay_due() && !s_.is_stopping()) {
      c_.replay_spool_once(nullptr, [this] { settle_lanes(); });
    }
  }
  return true;
}

void LiveMode::send_pending() {
  auto batch = std::make_shared<const std::vector<Event>>(std::move(pending_));
  pending_ = {};
  pending_.reserve(std::max<std::size_t>(s_.options.batch_size, 1));
  batcher_.reset();
  if (runner_) {
    submit(std::move(batch));
    return;
  }
  c_.deliver(batch);  // no sink: held in the spool
}

void LiveMode::submit(Batch batch) {
  s_.add_in_flight(batch);  // while it waits for a lane, close() may take it over
  while (!runner_->has_free_lane() && lane_failed_.empty()) reap(true);
  // A batch over the rows-per-statement cap (DeliveryPolicy::row_cap) goes the synchronous way.
  auto& policy = c_.policy();
  if (lane_failed_.empty() && !policy.failing() && !s_.past_deadline() &&
      batch->size() <= policy.row_cap()) {
    s_.park();  // a runner may write within submit(); the batch is registered in flight
    runner_->submit(std::move(batch));  // in flight until reap() takes its result
    s_.unpark();
    reap(false);
    return;
  }
  settle_lanes();  // the slow path decides: retry, split, spool
  if (s_.release_in_flight(batch)) c_.deliver(batch);
}

void LiveMode::reap(bool wait) {
  for (;;) {
    if (runner_->outstanding() == 0) return;
    std::optional<BatchRunner::Done> done;
    if (wait) {
      s_.park();  // every batch a lane writes is registered in flight
      done = runner_->next_done(kLaneWait);
      s_.unpark();
    } else {
      done = runner_->next_done(Clock::duration::zero());
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
    c_.delivered(*done);
  }
}

void LiveMode::settle_lanes() {
  if (!runner_) return;
  while (runner_->outstanding() > 0) reap(true);
  auto failed = std::exchange(lane_failed_, {});
  for (auto& f : failed) c_.deliver(f.batch, std::move(f.result));
}

void LiveMode::spool_everything_left() {
  // What never reached the sink first: the pending batch and the queue. Only then are outstanding
  // writes waited for (each bounded by the sink's deadlines; close() takes them over if it stops
  // waiting first, which it does only while we hold nothing else); deliver() spools the failed
  // ones, as the deadline has passed.
  c_.spool_queue(pending_,
                 [&](std::shared_ptr<FlushMarker> m) { markers_.push_back(std::move(m)); });
  batcher_.reset();
  settle_lanes();
  complete_markers();
}

void LiveMode::complete_markers() {
  if (markers_.empty()) return;
  settle_lanes();  // a marker completes once everything before it is settled
  for (auto& marker : markers_) marker->complete();
  markers_.clear();
}

void LiveMode::abandon() noexcept {
  if (!runner_) return;
  while (runner_->outstanding() > 0) (void)runner_->next_done(kLaneWait);
}

}  // namespace trackevent::detail
