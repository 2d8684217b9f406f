#pragma once
// DurableMode (TrackerOptions::durable): write-ahead through the spool.

#include "runtime/batcher.hpp"
#include "runtime/courier.hpp"
#include "runtime/dispatcher.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// The spool ids this Tracker's group commits got (one range per commit, increasing): to tell
/// its own deliveries from older leftovers, and to see what another process delivered.
class OwnRows {
 public:
  void add(std::pair<std::int64_t, std::int64_t> rows) { ranges_.push_back(rows); }
  [[nodiscard]] bool contains(std::int64_t spool_id) const noexcept;
  [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
  void clear() noexcept { ranges_.clear(); }
  /// Nothing to claim, yet our events are not all delivered: others hold them under lease, or
  /// have delivered them (a concurrent `trackevent flush`, another durable process). Counts what
  /// left the spool as stored and sets the backlog to what is still there.
  void reconcile(TrackerState& s);

 private:
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges_;
};

/// Events go from the queue to the spool in group commits (one fsync per group), and are
/// delivered from the spool (claim, write, remove) through the Courier. A crash at any point
/// leaves every committed event in the spool for the next run or `trackevent flush`. sync()
/// markers complete once what precedes them is committed; flush markers once it is delivered
/// (or cannot be for now).
class DurableMode final : public DispatchMode {
 public:
  /// A group commit holds at most this many events and waits at most this long.
  static constexpr std::size_t kGroupMax = 1000;
  static constexpr std::chrono::milliseconds kGroupInterval{20};

  explicit DurableMode(Courier& courier);

  bool step() override;
  [[nodiscard]] std::size_t holding() const noexcept override { return pending_.size(); }

 private:
  [[nodiscard]] Clock::duration wait_for_queue(bool stopping) const;
  void commit_group();
  /// Our spooled events are delivered, or cannot be for now (they stay spooled: settled).
  [[nodiscard]] bool backlog_settled() const;
  void complete_markers();

  Courier& c_;
  TrackerState& s_;
  Batcher batcher_;
  std::vector<Event> pending_;
  std::vector<std::shared_ptr<FlushMarker>> markers_;
  std::vector<std::shared_ptr<FlushMarker>> sync_markers_;  // done once pending_ is committed
  bool commit_failed_ = false;  // a group commit failed since the last sync marker completed
  OwnRows own_rows_;
  Clock::time_point next_backlog_poll_{};
};

}  // namespace trackevent::detail
