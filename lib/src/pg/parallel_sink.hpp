#pragma once
// ParallelSink: batches written over several connections at once: one batch cut into parts
// (write), or whole batches pipelined, one per connection (submit / next_done).

#include "trackevent/sink.hpp"

#include "runtime/batch_runner.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

namespace trackevent::detail {

/// Smallest part a batch is cut into. Below this a part's round trip and commit cost more than the
/// second connection saves, so a small batch goes whole to one connection.
inline constexpr std::size_t kMinParallelPart = 500;

/// A Sink over N inner sinks (N PostgreSQL connections). write(batch) cuts the batch into up to N
/// contiguous parts (a batch of fewer than 2 * `min_part` rows is not cut), writes them
/// concurrently (each part its own transaction on its own connection) and waits for all of them.
/// The first cut is even; after that each part's size follows how many rows per second its
/// connection has managed (smoothed over batches, within half to twice the mean), so the
/// connections tend to finish together instead of the batch waiting for the slowest share.
///
/// Result: when every part succeeds, stored and duplicates are the sums. When any part fails, the
/// result is a Failure with the worst disposition (reject > hold > retry) and stored = duplicates =
/// 0, as for a failed single-connection write. Unlike a single write, the parts that did commit
/// stay committed: nothing is lost or doubled, because writes are idempotent on event_id and the
/// dispatcher's retry or split writes those rows again, where they come back as *duplicates*. So
/// after a partial failure the `duplicates` count over-counts (and `stored` under-counts) by the
/// committed parts; every row is still stored exactly once.
///
/// Why reject wins: a rejected part holds a bad row, and only a split (which the dispatcher does on
/// reject) isolates it; a hold or retry of the other parts then surfaces in the halves.
///
/// Waits are bounded by the inner sinks: write() joins its workers, and each worker returns within
/// its own sink's connect and statement deadlines. Part 0 runs on the calling thread, parts 1..N-1
/// on one long-lived worker thread each. Used from one thread at a time, like every Sink.
///
/// Pipelined use (the dispatcher's fast path): submit() hands a whole batch to a free connection
/// and returns at once; next_done() gives back each batch with its result as its write finishes.
/// No connection waits for another, and the caller forms the next batch while they write. While
/// any submitted batch is outstanding, write() must not be called. Each connection has its own
/// worker thread for this (connection 0's is idle under write()). Until a write has succeeded,
/// submit() uses one connection only, so a server that is down gets one connection attempt at a
/// time, not one per connection.
///
/// A connection that cannot be opened (Failure::at_connect) while another connection's latest
/// write succeeded is set aside: the server or the role limits connections (SQLSTATE 53300), or
/// a pooler is full. Its batch or part is written again on the other connections, and this is not
/// a failure of the batch; the connection is tried again after kSetAsideFirst, doubling up to
/// kSetAsideMax while it keeps failing. One warning is logged each time. When no other connection
/// works, the failure is the batch's, as with one connection.
///
/// The pipelined half is the BatchRunner interface (runtime/batch_runner.hpp), so the dispatcher
/// never needs to know this class.
class ParallelSink final : public Sink, public BatchRunner {
 public:
  /// `inner` must hold at least one sink. Starts inner.size() - 1 threads; throws std::system_error
  /// if a thread cannot be started.
  explicit ParallelSink(std::vector<std::unique_ptr<Sink>> inner,
                        std::size_t min_part = kMinParallelPart);
  ~ParallelSink() override;
  ParallelSink(const ParallelSink&) = delete;
  ParallelSink& operator=(const ParallelSink&) = delete;

  WriteResult write(std::span<const Event> batch) noexcept override;
  [[nodiscard]] std::string describe() const override;

  /// How many parts write() cuts a batch of `rows` into.
  [[nodiscard]] std::size_t parts_for(std::size_t rows) const noexcept;
  /// The sizes of those parts, in order, as the next write would cut them.
  [[nodiscard]] std::vector<std::size_t> part_sizes(std::size_t rows, std::size_t parts) const;

  /// How many connections this sink writes over.
  [[nodiscard]] std::size_t connections() const noexcept { return inner_.size(); }
  /// Submitted batches whose result next_done() has not handed back yet.
  [[nodiscard]] std::size_t outstanding() const noexcept override { return outstanding_; }
  /// True when submit() would find a connection with nothing to write.
  [[nodiscard]] bool has_free_lane() const noexcept override;
  /// Connections set aside now (see above).
  [[nodiscard]] std::size_t set_aside_connections() const noexcept;
  /// Starts writing `batch` (whole, one transaction) on a free connection and returns. Requires
  /// has_free_lane(). The sink keeps `batch` alive until next_done() hands it back.
  void submit(Batch batch) noexcept override;
  /// A submitted batch whose write has finished, with its result; waits up to `timeout` for one.
  /// Empty when none finished in time (or none is outstanding).
  [[nodiscard]] std::optional<Done> next_done(
      std::chrono::steady_clock::duration timeout) noexcept override;

 private:
  using Clock = std::chrono::steady_clock;
  /// Weight of the newest measurement in a connection's smoothed rate.
  static constexpr double kRateSmoothing = 0.25;
  static constexpr Clock::duration kSetAsideFirst = std::chrono::seconds{30};
  static constexpr Clock::duration kSetAsideMax = std::chrono::minutes{5};
  struct Worker;
  /// Fills `sizes` (one entry per part, part k on connection lanes[k]) with the cut of `rows`
  /// that part_sizes() describes.
  void cut(std::size_t rows, std::span<const std::size_t> lanes,
           std::span<std::size_t> sizes) const noexcept;
  void learn(std::span<const std::size_t> lanes, std::span<const std::size_t> sizes,
             std::span<const Clock::duration> took) noexcept;
  [[nodiscard]] bool set_aside_now(std::size_t lane, Clock::time_point now) const noexcept;
  /// Connections not set aside, in order (never empty).
  void usable_lanes(std::vector<std::size_t>& out) const;
  /// How many parts a batch of `rows` is cut into over `lanes` connections.
  [[nodiscard]] std::size_t parts_over(std::size_t rows, std::size_t lanes) const noexcept;
  /// Connection `lane` failed to connect and waits in undecided_ for another write's outcome.
  [[nodiscard]] bool parked(std::size_t lane) const noexcept;
  /// Whether a connection other than `lane`, in use, idle (or busy), had its latest write succeed.
  [[nodiscard]] bool works_elsewhere(std::size_t lane, bool busy) const noexcept;
  /// A free connection that is not set aside. For a new batch (`fresh`), only the first such
  /// connection until some connection has written successfully.
  [[nodiscard]] std::optional<std::size_t> free_lane(bool fresh) const noexcept;
  /// Records whether the latest write on `lane` succeeded.
  void record(std::size_t lane, const WriteResult& r) noexcept;
  /// Sets `lane` aside after it failed to connect while another connection worked; logs it.
  void set_aside(std::size_t lane, const Failure& f) noexcept;
  /// Decides the parked connections (a connect failure while another connection was writing):
  /// `witnessed` (a write just succeeded) or another idle connection works: set aside, batch
  /// bounced; another busy one may still work: wait; else the failure is the batch's.
  void decide_parked(bool witnessed) noexcept;
  /// Posts bounced batches to free connections in use.
  void post_bounced() noexcept;
  void post(std::size_t lane, Batch batch) noexcept;
  /// Finished pipelined writes, filled by the workers, emptied by next_done().
  struct Finished {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::pair<std::size_t, Done>> list;  // (connection, batch and result)
  };
  std::vector<std::unique_ptr<Sink>> inner_;
  Finished finished_;                                   // before workers_: they report into it
  std::vector<std::unique_ptr<Worker>> workers_;        // workers_[i] serves inner_[i]
  std::vector<bool> lane_busy_;                         // a submitted batch is on connection i
  std::vector<bool> lane_ok_;                           // connection i's latest write succeeded
  std::vector<Clock::time_point> aside_until_;          // connection i is set aside until then
  std::vector<Clock::duration> aside_for_;              // how long it was set aside last time
  std::deque<std::pair<std::size_t, Done>> undecided_;  // (parked connection, its failed write)
  std::deque<Batch> bounced_;    // submitted batches whose connection was set aside, to rewrite
  std::deque<Done> failed_;      // decided to be the batches' own failures: next_done() returns
  std::size_t outstanding_ = 0;  // submitted, not handed back: on a connection or queued here
  std::size_t min_part_;
  std::vector<double> rate_;  // rows per second of each inner sink, smoothed; 0: not measured
  std::vector<std::size_t> part_lanes_;  // the current batch's connections, its cut and each part's
  std::vector<std::size_t> sizes_;       // time and result, reused: no allocation per batch
  std::vector<Clock::duration> took_;    // (write() is used from one thread at a time)
  std::vector<WriteResult> results_;
};

/// Folds the result of one part into the batch's result as ParallelSink::write documents.
void merge_part_result(WriteResult& total, WriteResult&& part) noexcept;

/// `connections` PostgreSQL sinks on `conninfo` behind a ParallelSink (also for one connection: a
/// Tracker pipelines its batches over a ParallelSink, so its writes never wait for it to form the
/// next batch).
[[nodiscard]] std::unique_ptr<Sink> make_parallel_postgres_sink(const std::string& conninfo,
                                                                const PgTimeouts& timeouts,
                                                                std::size_t connections);

}  // namespace trackevent::detail
