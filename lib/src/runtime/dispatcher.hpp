#pragma once
// Dispatcher: the Tracker's one background thread.

#include "trackevent/sink.hpp"

#include "log/log.hpp"
#include "pg/parallel_sink.hpp"
#include "runtime/backoff.hpp"
#include "runtime/batcher.hpp"
#include "runtime/tracker_state.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent::detail {

/// Takes events off the queue, batches them (Batcher), writes batches to the sink, and decides
/// what a failure means: retry with backoff, hold in the spool, or split the batch to isolate the
/// bad rows. Between live batches it drains the spool. It never throws and never dies: each loop
/// iteration is wrapped, and errors go to the log and to options.on_error.
///
/// Retry bound: a batch is retried while it fails transiently for at most kMaxAttempts writes and
/// kMaxRetryTime; then it goes to the spool (so memory stays bounded) and the sink counts as
/// failing: later batches go straight to the spool until the next probe, which is the next batch
/// written after a backoff delay (retry) or kHoldProbe (hold).
///
/// Pipelining: over a ParallelSink (several PostgreSQL connections), while the sink is healthy,
/// each live batch goes whole to the next free connection and the dispatcher goes on forming the
/// next one; it waits only when every connection is busy. Results are taken as writes finish. A
/// failed batch stops the pipeline: once every outstanding write has returned, the failed batches
/// go through the synchronous path above (retry, split, spool), as does everything that is not a
/// live batch (spool drains, durable mode). Flush markers and shutdown wait for every outstanding
/// write first.
class Dispatcher {
 public:
  static constexpr unsigned kMaxAttempts = 3;
  static constexpr std::chrono::seconds kMaxRetryTime{10};
  static constexpr std::chrono::seconds kHoldProbe{30};
  static constexpr std::chrono::seconds kSpoolLease{120};
  /// Durable mode: a group commit holds at most this many events and waits at most this long.
  static constexpr std::size_t kGroupMax = 1000;
  static constexpr std::chrono::milliseconds kGroupInterval{20};
  /// Durable mode's lease on its own spool rows: short, so that after a crash mid-write the next
  /// run (or `trackevent flush`) can claim them soon; a late double delivery is harmless.
  static constexpr std::chrono::seconds kDurableLease{10};

  explicit Dispatcher(std::shared_ptr<TrackerState> state);

  /// The thread body: returns once shutdown has delivered or spooled everything.
  void run() noexcept;

 private:
  /// What writing a batch (and splitting it on bad rows) achieved.
  struct Outcome {
    std::size_t stored = 0;
    std::size_t duplicates = 0;
    std::size_t dead_lettered = 0;
    std::vector<std::span<const Event>> unsent;  // not written: the sink failed (retry/hold)
    std::optional<Failure> failure;              // why the unsent parts were not written
    std::vector<const Event*> dead;              // the dead-lettered rows
    // Refused rows whose dead-letter line could not be written: they must stay in the spool.
    std::vector<const Event*> dead_failed;
  };

  bool step();  // one loop iteration; false when the thread should end
  bool step_durable();
  [[nodiscard]] Clock::duration durable_wait(bool stopping) const;
  void commit_group();
  [[nodiscard]] bool backlog_settled() const;
  [[nodiscard]] Clock::duration idle_wait(bool stopping) const;
  using Batch = ParallelSink::Batch;
  void send_pending();
  /// Writes `batch` (retrying, splitting, spooling as the class comment says). `first`: the
  /// result of a pipelined write of it that failed, which counts as the first attempt; the batch
  /// is then still registered in flight.
  void deliver(const Batch& batch, std::optional<WriteResult> first = std::nullopt);
  void submit(Batch batch);
  /// Takes finished pipelined writes: every one that has finished, or with `wait`, at least one.
  void reap(bool wait);
  /// Waits for every outstanding pipelined write, then delivers the failed ones synchronously
  /// (or, past the shutdown deadline, spools them).
  void settle_lanes();
  /// One sink write, parked (see TrackerState::park()): throws TakenOver when close() took over.
  WriteResult write_once(std::span<const Event> batch);
  /// Writes `batch` in statements of at most row_cap_ rows, each isolating bad rows.
  void write_capped(std::span<const Event> batch, Outcome& out);
  void write_isolating(std::span<const Event> batch, Outcome& out);
  /// Halves row_cap_ from the second statement timeout (57014) in a row; doubles it back (up to
  /// batch_size) after a statement of row_cap_ rows succeeds.
  void note_timeouts(const WriteResult& result, std::size_t rows);
  void count(const Outcome& out);
  /// Spools the refused rows whose dead-letter line could not be written.
  void spool_undead(const Outcome& out);
  /// Renews the lease on the spool rows being replayed once half of it has passed.
  void renew_claim();
  /// Durable mode: drops from own_rows_ and durable_backlog the events another process delivered.
  void reconcile_backlog();
  [[nodiscard]] bool is_own(std::int64_t spool_id) const;
  /// After a take-over: waits (uncounted) for the pipelined writes still running.
  void wait_out_lanes() noexcept;
  /// What write_isolating does with the result of writing `batch`: count, split, or give up.
  void take_result(std::span<const Event> batch, WriteResult result, Outcome& out);
  /// Writes the refused row to the dead-letter file and reports it. False when the file could
  /// not take it (reported critically): the row must then stay in the spool.
  bool dead_letter(const Event& event, const Failure& failure);
  void drain_spool_once();
  void sink_failed(const Failure& failure, std::size_t events);
  void sink_succeeded();
  void spool_events(std::span<const Event> events, std::string_view why);
  void spool_everything_left();
  void complete_markers();
  void settle(std::size_t events) noexcept;
  void report(log::Level level, std::string_view key, std::string_view msg, log::Fields fields,
              const ErrorInfo& info);

  std::shared_ptr<TrackerState> state_;
  TrackerState& s_;
  ParallelSink* lanes_ = nullptr;  // the sink, when batches can be pipelined over its connections
  std::vector<ParallelSink::Done> lane_failed_;  // pipelined writes that failed: the slow path's
  Batcher batcher_;
  Backoff retry_backoff_;
  std::vector<Event> pending_;
  std::vector<QueueItem> popped_;
  std::vector<std::shared_ptr<FlushMarker>> markers_;
  // Durable mode: sync() markers, completed once pending_ is committed to the spool.
  std::vector<std::shared_ptr<FlushMarker>> sync_markers_;
  bool commit_failed_ = false;  // a group commit failed since the last sync marker completed
  // Durable mode: ids of our events in the spool, to tell our deliveries from older leftovers.
  // Durable mode: the spool ids our group commits got (one range per commit, increasing), to tell
  // our deliveries from older leftovers and to see what another process delivered.
  std::vector<std::pair<std::int64_t, std::int64_t>> own_rows_;
  Clock::time_point next_backlog_poll_{};
  bool flush_now_ = false;  // a flush marker is waiting on pending_
  bool drain_due_ = false;  // a write just succeeded: try the spool next
  bool failing_ = false;    // the sink failed; batches go to the spool until next_probe_
  Clock::time_point next_probe_{};
  std::size_t row_cap_;                  // most rows per statement (see note_timeouts)
  unsigned timeouts_in_a_row_ = 0;       // writes that ended in 57014, in a row
  std::vector<std::int64_t> claim_ids_;  // spool rows being replayed, while they are written
  LeaseRenewer claim_lease_;             // their lease, renewed while bisection takes long
};

}  // namespace trackevent::detail
