#include "runtime/durable_mode.hpp"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

namespace trackevent::detail {
namespace {

// With nothing to do the thread still wakes now and then; a push or close wakes it at once.
constexpr auto kIdleWait = std::chrono::seconds{60};
// How often the spool is looked at while our events wait there.
constexpr auto kBacklogPoll = std::chrono::milliseconds{100};

}  // namespace

bool OwnRows::contains(std::int64_t spool_id) const noexcept {
  // Ranges are appended in increasing order: the last one starting at or before the id.
  const auto after = std::upper_bound(
      ranges_.begin(), ranges_.end(), spool_id,
      [](std::int64_t id, const std::pair<std::int64_t, std::int64_t>& r) { return id < r.first; });
  return after != ranges_.begin() && spool_id <= std::prev(after)->second;
}

void OwnRows::reconcile(TrackerState& s) {
  if (ranges_.empty() || s.durable_backlog.load() <= 0) {
    ranges_.clear();
    return;
  }
  std::int64_t left = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> still;
  for (const auto& r : ranges_) {
    const auto counted = s.spool.count_between(r.first, r.second);
    if (!counted) return;  // cannot tell now; try again at the next poll
    const std::int64_t n = *counted;
    if (n > 0) still.push_back(r);
    left += n;
  }
  ranges_ = std::move(still);
  // They left the spool, which only delivery or a dead-letter line makes them do.
  const std::int64_t gone = s.durable_backlog.load() - left;
  if (gone > 0) Counters::add(s.counters.stored, static_cast<std::uint64_t>(gone));
  s.durable_backlog.store(left);
}

DurableMode::DurableMode(Courier& courier)
    : c_(courier),
      s_(courier.state()),
      batcher_(kGroupMax, std::min<Clock::duration>(s_.options.flush_interval, kGroupInterval)) {}

bool DurableMode::step() {
  const bool stopping = s_.is_stopping();
  if (stopping && s_.past_deadline()) {
    c_.spool_queue(pending_,
                   [&](std::shared_ptr<FlushMarker> m) { markers_.push_back(std::move(m)); });
    batcher_.reset();
    complete_markers();
    for (auto& m : sync_markers_) m->complete(false);
    sync_markers_.clear();
    own_rows_.reconcile(s_);  // close() counts what is left as spooled: only what really is
    return false;
  }

  std::size_t popped = 0;
  bool commit_now = false;
  const bool tried_pop = batcher_.room() > 0;
  if (tried_pop) {
    popped = c_.pop(pending_, batcher_, batcher_.room(), wait_for_queue(stopping),
                    pending_.empty() ? 1 : batcher_.room(), [&](std::shared_ptr<FlushMarker> m) {
                      (m->sync_only() ? sync_markers_ : markers_).push_back(std::move(m));
                      commit_now = true;
                    });
  }
  const auto now = s_.clock->now();
  if (!pending_.empty() && (commit_now || stopping || batcher_.due(now))) commit_group();
  if (pending_.empty()) {
    for (auto& m : sync_markers_) m->complete(!commit_failed_);
    if (!sync_markers_.empty()) commit_failed_ = false;
    sync_markers_.clear();
  }

  // Deliver from the spool: right after a commit or a successful replay, and every so often
  // while our events wait there (the sink failing, or rows leased by another process).
  if (s_.durable_backlog.load() > 0 && now >= next_backlog_poll_) c_.set_replay_due();
  if (c_.replay_due() && !c_.policy().held_back()) {
    next_backlog_poll_ = now + kBacklogPoll;
    // Nothing uncommitted in our hands while we write (close() may take over then).
    if (!pending_.empty()) commit_group();
    c_.replay_spool_once(&own_rows_);
  }

  if (pending_.empty() && backlog_settled()) complete_markers();
  const bool done = stopping && tried_pop && popped == 0 && pending_.empty() && backlog_settled();
  if (done) own_rows_.reconcile(s_);
  return !done;
}

bool DurableMode::backlog_settled() const {
  return s_.durable_backlog.load() <= 0 || c_.policy().failing() || !s_.sink;
}

Clock::duration DurableMode::wait_for_queue(bool stopping) const {
  if (stopping || c_.replay_due()) return Clock::duration::zero();
  const auto now = s_.clock->now();
  Clock::duration wait = kIdleWait;
  if (const auto deadline = batcher_.next_deadline()) wait = *deadline - now;
  if (s_.durable_backlog.load() > 0) {
    const auto& policy = c_.policy();
    const auto poll =
        policy.failing() ? std::max(policy.next_probe(), next_backlog_poll_) : next_backlog_poll_;
    wait = std::min(wait, poll - now);
  }
  return std::max(wait, Clock::duration::zero());
}

void DurableMode::commit_group() {
  auto batch = std::make_shared<const std::vector<Event>>(std::move(pending_));
  pending_ = {};
  batcher_.reset();
  // One transaction per group (at most kGroupMax events): the fsync is shared by the group.
  const auto appended = s_.spool.append(*batch);
  if (appended) {
    own_rows_.add(*appended);
    s_.durable_backlog.fetch_add(static_cast<std::int64_t>(batch->size()));
    c_.settle(batch->size());
    c_.set_replay_due();
    return;
  }
  commit_failed_ = true;
  const std::string& error = appended.error().message;
  c_.report(log::Level::error, "spool.durable_failed",
            "events not durable: could not write them to the spool; delivering them directly",
            {{"events", batch->size()}, {"err", error}},
            {"events not durable: could not write them to the spool", error, "", batch->size()});
  c_.deliver(batch);  // best effort without the write-ahead: stored, spooled or counted as dropped
}

void DurableMode::complete_markers() {
  for (auto& marker : markers_) marker->complete();
  markers_.clear();
}

}  // namespace trackevent::detail
