#pragma once
// LiveMode: the dispatcher's usual mode: batch what the queue holds, write it, drain the spool.

#include "runtime/batch_runner.hpp"
#include "runtime/batcher.hpp"
#include "runtime/courier.hpp"
#include "runtime/dispatcher.hpp"

#include <memory>
#include <vector>

namespace trackevent::detail {

/// Takes events off the queue, batches them (Batcher) and hands each batch whole to the
/// BatchRunner; it waits only when the runner has no free lane (a ParallelSink has one per
/// PostgreSQL connection; a plain Sink's SyncRunner writes within submit()). Results are taken
/// as writes finish. A failed write stops the pipeline: once every outstanding write has
/// returned, the failed batches go through the Courier's synchronous delivery (retry, split,
/// spool), as do batches while the sink is failing and batches over the rows-per-statement cap.
/// Flush markers and shutdown wait for every outstanding write first. Between batches, after a
/// success, it replays the spool.
class LiveMode final : public DispatchMode {
 public:
  /// `runner`: null when there is no sink (everything goes to the spool).
  LiveMode(Courier& courier, std::shared_ptr<BatchRunner> runner);

  bool step() override;
  [[nodiscard]] std::size_t holding() const noexcept override { return pending_.size(); }
  void abandon() noexcept override;

 private:
  using Batch = BatchRunner::Batch;
  [[nodiscard]] Clock::duration idle_wait(bool stopping) const;
  void send_pending();
  void submit(Batch batch);
  /// Takes finished writes: every one that has finished, or with `wait`, at least one.
  void reap(bool wait);
  /// Waits for every outstanding write, then delivers the failed ones synchronously (or, past
  /// the shutdown deadline, spools them).
  void settle_lanes();
  void spool_everything_left();
  void complete_markers();

  Courier& c_;
  TrackerState& s_;
  std::shared_ptr<BatchRunner> runner_;
  std::vector<BatchRunner::Done> lane_failed_;  // failed writes, still registered in flight
  Batcher batcher_;
  std::vector<Event> pending_;
  std::vector<std::shared_ptr<FlushMarker>> markers_;
  bool flush_now_ = false;  // a flush marker is waiting on pending_
};

}  // namespace trackevent::detail
