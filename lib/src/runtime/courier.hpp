#pragma once
// Courier: what the dispatcher thread's two modes (live and durable) share: delivering a batch
// under the DeliveryPolicy, replaying the spool, spooling, counting and reporting.

#include "trackevent/sink.hpp"

#include "log/log.hpp"
#include "runtime/batch_runner.hpp"
#include "runtime/batcher.hpp"
#include "runtime/delivery.hpp"
#include "runtime/tracker_state.hpp"
#include "spool/delivery_record.hpp"
#include "spool/spool.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace trackevent::detail {

class OwnRows;

/// Lives on the dispatcher thread. Every sink write it makes is parked (TrackerState::park()), so
/// close() may take over then; TakenOver is let through to Dispatcher::run().
class Courier {
 public:
  using Batch = BatchRunner::Batch;

  static constexpr std::chrono::seconds kSpoolLease{120};
  /// Durable mode's lease on its own spool rows: short, so that after a crash mid-write the next
  /// run (or `trackevent flush`) can claim them soon; a late double delivery is harmless.
  static constexpr std::chrono::seconds kDurableLease{10};

  explicit Courier(TrackerState& state);
  Courier(const Courier&) = delete;
  Courier& operator=(const Courier&) = delete;

  [[nodiscard]] TrackerState& state() noexcept { return s_; }
  [[nodiscard]] DeliveryPolicy& policy() noexcept { return policy_; }

  /// Delivers `batch` (retrying, splitting, spooling what cannot be written, as DeliveryPolicy
  /// says). `first`: the result of a pipelined write of it that failed, which counts as the first
  /// attempt; the batch is then still registered in flight.
  void deliver(const Batch& batch, std::optional<WriteResult> first = std::nullopt);
  /// Counts a pipelined write that succeeded (unless close() took its batch over meanwhile).
  void delivered(const BatchRunner::Done& done);

  /// Replays one claim from the spool (live events queued meanwhile go first on the next
  /// iteration). `own`: durable mode's rows, whose delivery is live, not a replay. `quiesce` runs
  /// before the sink is written (the live mode waits out its pipelined writes).
  void replay_spool_once(OwnRows* own, const std::function<void()>& quiesce = {});
  /// A write just succeeded: try the spool next.
  [[nodiscard]] bool replay_due() const noexcept { return replay_due_; }
  void set_replay_due() noexcept { replay_due_ = true; }

  /// Pops up to `most` queue items, waiting up to `wait` for the first and for `at_least` in all:
  /// events go to `pending` (stamped with their queue time into `batcher`), markers to
  /// `on_marker`. Returns the items popped.
  std::size_t pop(std::vector<Event>& pending, Batcher& batcher, std::size_t most,
                  Clock::duration wait, std::size_t at_least,
                  const std::function<void(std::shared_ptr<FlushMarker>)>& on_marker);
  /// Shutdown past its deadline: spools `pending` and everything queued, chunk by chunk.
  void spool_queue(std::vector<Event>& pending,
                   const std::function<void(std::shared_ptr<FlushMarker>)>& on_marker);

  void spool_events(std::span<const Event> events, std::string_view why);
  void settle(std::size_t events) noexcept;
  void report(log::Level level, std::string_view key, std::string_view msg, log::Fields fields,
              const ErrorInfo& info);

 private:
  WriteResult write_parked(std::span<const Event> rows);
  bool dead_letter(const Event& event, const Failure& failure);
  void count(const DeliveryOutcome& out);
  void sink_failed(const Failure& failure, std::size_t events);
  void sink_succeeded();

  TrackerState& s_;
  DeliveryPolicy policy_;
  /// The last success and failure, for `trackevent status` (spool/delivery_record.hpp).
  DeliveryRecord record_;
  std::vector<QueueItem> popped_;
  bool replay_due_ = false;              // a write just succeeded: try the spool next
  std::vector<std::int64_t> claim_ids_;  // spool rows being replayed, while they are written
  LeaseRenewer claim_lease_;             // their lease, renewed while bisection takes long
};

}  // namespace trackevent::detail
