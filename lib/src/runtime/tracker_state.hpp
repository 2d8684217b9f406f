#pragma once
// TrackerState: what track() callers, flush() and the dispatcher thread share.

#include "trackevent/clock.hpp"
#include "trackevent/event.hpp"
#include "trackevent/options.hpp"
#include "trackevent/sink.hpp"
#include "trackevent/stats.hpp"

#include "input/parse.hpp"
#include "runtime/queue.hpp"
#include "spool/spool_access.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// A flush() waiting for everything queued before it. Completed by the dispatcher once those
/// events are delivered or spooled; abandoned (never completed) when flush() times out.
class FlushMarker {
 public:
  FlushMarker() = default;
  /// `sync_only`: durable mode's sync(), done once the events before it are in the spool
  /// (not necessarily delivered).
  explicit FlushMarker(bool sync_only) : sync_only_(sync_only) {}

  void complete(bool ok = true) {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
      ok_ = ok;
    }
    cv_.notify_all();
  }
  /// True when completed in time and successfully.
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return done_; }) && ok_;
  }
  [[nodiscard]] bool sync_only() const noexcept { return sync_only_; }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  bool ok_ = false;
  const bool sync_only_ = false;
};

/// One queue slot: an event, or a flush marker (a control item that FIFO order puts after the
/// events queued before it).
struct QueueItem {
  Event event;
  /// track(…, json&&): the caller's metadata object, moved in as it is. Whoever takes the item
  /// from the queue serialises it into `event.metadata` and checks the limits (finish_metadata),
  /// so the caller's thread pays for neither. Null for every other item.
  nlohmann::json metadata_dom;
  /// Set by track() only with an injected clock (tests); otherwise the dispatcher stamps items
  /// when it takes them, which spares every track() a clock read.
  std::optional<Clock::time_point> queued_at;
  std::shared_ptr<FlushMarker> marker;
  [[nodiscard]] bool is_control() const noexcept { return marker != nullptr; }
};

/// Serialises an item's `metadata_dom` (if any) into its event and checks the metadata limits,
/// and the tracking plan when there is one. Returns why the event is invalid, or an empty string
/// (valid, or nothing to do). Never throws.
std::string finish_metadata(QueueItem& item, const Limits& limits, const Plan* plan) noexcept;

/// Stats as relaxed atomics: cheap to bump from any thread, a snapshot is good enough to read.
struct Counters {
  std::atomic<std::uint64_t> accepted{0}, stored{0}, duplicates{0}, rejected{0}, rejected_by_db{0},
      dropped{0}, spooled{0}, unspooled{0}, retries{0};
  /// Events that went through the queue and were then rejected by finish_metadata(): the queue's
  /// ticket count includes them, `accepted` must not.
  std::atomic<std::uint64_t> withdrawn{0};

  static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) noexcept {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] Stats snapshot() const noexcept {
    const auto get = [](const std::atomic<std::uint64_t>& c) {
      return c.load(std::memory_order_relaxed);
    };
    return Stats{get(accepted), get(stored),  get(duplicates), get(rejected), get(rejected_by_db),
                 get(dropped),  get(spooled), get(unspooled),  get(retries)};
  }
};

/// Thrown inside the dispatcher thread when close() has taken its events over (see
/// TrackerState::park()); caught only by Dispatcher::run().
struct TakenOver {};

/// Shared by the Tracker and its dispatcher thread through a shared_ptr, so a dispatcher stuck in
/// a hung sink can be left behind at shutdown without anything it uses being freed.
struct TrackerState {
  TrackerState(TrackerOptions opts, std::shared_ptr<Sink> chosen_sink)
      : options(std::move(opts)),
        plan(load_plan(options.catalog, options.catalog_mode)),
        clock(options.clock ? options.clock : std::make_shared<SteadyClock>()),
        stamp_on_push(options.clock != nullptr),
        sink(std::move(chosen_sink)),
        queue(options.queue_capacity),
        // --durable: every group commit is fsynced (synchronous=FULL).
        spool(options.spool_dir, SpoolOptions{.full_sync = options.durable}) {}

  const TrackerOptions options;
  /// TrackerOptions::catalog, loaded (null: none). Loading throws, failing the constructor.
  const std::shared_ptr<const Plan> plan;
  const std::shared_ptr<Clock> clock;
  const bool stamp_on_push;  // an injected clock: stamp queued_at in track(), deterministically
  const std::shared_ptr<Sink> sink;  // null: no usable database; everything is held in the spool
  BoundedQueue<QueueItem> queue;
  SpoolAccess spool;
  Counters counters;
  /// Events the dispatcher took from the queue and settled: stored, dead-lettered, spooled or
  /// dropped (durable mode: committed to the spool).
  std::atomic<std::int64_t> settled{0};

  /// Events accepted into the queue and not settled yet. Derived from the queue's ticket count,
  /// so track() bumps no counter of its own.
  [[nodiscard]] std::int64_t in_memory() const noexcept {
    // Settled first: a settle between the two loads can only make the result larger.
    const std::int64_t done = settled.load();
    return static_cast<std::int64_t>(queue.pushed()) - done;
  }

  /// The counters, with `accepted` completed by the events that went through the queue.
  [[nodiscard]] Stats snapshot() const noexcept {
    Stats st = counters.snapshot();
    // Withdrawn first (seq_cst, like its increments): each one happens after the push it takes
    // back, so the pushes it counts are all visible to the load below.
    const std::uint64_t withdrawn = counters.withdrawn.load();
    st.accepted += queue.pushed() - withdrawn;
    return st;
  }

  /// For whoever takes a data item from the queue: finishes its metadata (finish_metadata). False
  /// when the event turns out invalid; it is then logged, counted as rejected instead of
  /// accepted, and settled, and the caller must drop it. Defined in tracker.cpp.
  bool take(QueueItem& item) noexcept;
  /// Durable mode: this Tracker's events committed to the spool and not delivered yet. close()
  /// counts what is left as spooled.
  std::atomic<std::int64_t> durable_backlog{0};

  /// Starts shutdown: no more pushes; deliver until `deadline` (Clock time), then spool.
  void begin_shutdown(Clock::time_point deadline) {
    {
      std::lock_guard lock(stop_mutex);
      shutdown_deadline = deadline;
      stopping = true;
    }
    queue.close();
    stop_cv.notify_all();
  }
  [[nodiscard]] bool is_stopping() {
    std::lock_guard lock(stop_mutex);
    return stopping;
  }
  [[nodiscard]] bool past_deadline() {
    std::lock_guard lock(stop_mutex);
    return stopping && clock->now() >= shutdown_deadline;
  }

  /// Sleeps `d` of real time, or less: it returns when shutdown starts, and while shutting down
  /// it never sleeps past the shutdown deadline. The dispatcher is parked meanwhile (see park()):
  /// throws TakenOver when close() took its events over.
  void pause(Clock::duration d) {
    std::unique_lock lock(stop_mutex);
    if (stopping) d = std::min(d, shutdown_deadline - clock->now());
    if (d <= Clock::duration::zero()) return;
    const bool was_stopping = stopping;
    parked = true;
    stop_cv.notify_all();
    stop_cv.wait_for(lock, d, [&] { return stopping != was_stopping || taken_over; });
    parked = false;
    if (taken_over) throw TakenOver{};
  }

  // ---- Custody: close() taking over from a dispatcher that does not finish in time ----------
  //
  // Every accepted event is, at any moment, in exactly one of: the queue, a batch registered in
  // flight, the dispatcher's hands (its pending batch, a chunk it is spooling), or settled and
  // counted. close() can see the first two only. So it takes over only while the dispatcher is
  // parked: blocked in a sink write, a wait for a pipelined write or a retry pause, holding
  // nothing unregistered. From then on the dispatcher counts nothing and calls no callback; it
  // leaves at its next park()/unpark() by throwing TakenOver. (docs/architecture.md, "Nothing
  // accepted is lost")

  /// The dispatcher is about to block holding no event outside the queue and the in-flight
  /// batches. Throws TakenOver when close() has taken over already.
  void park() {
    std::lock_guard lock(stop_mutex);
    if (taken_over) throw TakenOver{};
    parked = true;
    stop_cv.notify_all();
  }
  /// Back from the blocking call. Throws TakenOver when close() took over meanwhile: the result
  /// of that call must then be ignored.
  void unpark() {
    std::lock_guard lock(stop_mutex);
    parked = false;
    if (taken_over) throw TakenOver{};
  }
  [[nodiscard]] bool is_taken_over() {
    std::lock_guard lock(stop_mutex);
    return taken_over;
  }

  enum class Custody {
    finished,  ///< the dispatcher finished on its own: join it
    parked,    ///< taken over while parked: the in-flight batches and the queue are all it held
    busy,      ///< taken over while it was still working (spooling, past `until`): it may hold
               ///< events close() cannot see
  };
  /// close(), once it stops waiting for the dispatcher to finish: waits until `until` for it to
  /// finish or park, then takes custody of what it holds.
  Custody take_over(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(stop_mutex);
    stop_cv.wait_until(lock, until, [&] { return finished || parked; });
    if (finished) return Custody::finished;
    taken_over = true;
    stop_cv.notify_all();  // a retry pause ends at once
    return parked ? Custody::parked : Custody::busy;
  }
  /// Held while options.on_error runs, so close() can wait out a callback in progress: none
  /// starts once close() has taken over, and none runs after close() returns.
  std::mutex callback_mutex;

  /// The batches the dispatcher is writing right now (more than one when it pipelines them over
  /// several connections), so a destructor that gives up on a hung sink can still spool them
  /// (delivery is idempotent on event_id, so a late success is harmless).
  void add_in_flight(std::shared_ptr<const std::vector<Event>> batch) {
    std::lock_guard lock(stop_mutex);
    in_flight.push_back(std::move(batch));
  }
  /// Called by the dispatcher when a write of `batch` returns. False when close() took the batch
  /// meanwhile (and already counted it as spooled or dropped): the dispatcher must not count it
  /// again.
  bool release_in_flight(const std::shared_ptr<const std::vector<Event>>& batch) {
    std::lock_guard lock(stop_mutex);
    const auto it = std::find(in_flight.begin(), in_flight.end(), batch);
    if (it == in_flight.end()) return false;
    in_flight.erase(it);
    return true;
  }
  std::vector<std::shared_ptr<const std::vector<Event>>> take_in_flight() {
    std::lock_guard lock(stop_mutex);
    return std::exchange(in_flight, {});
  }

  /// Set by the dispatcher as its last act; the destructor waits on it with a deadline.
  void mark_finished() {
    {
      std::lock_guard lock(stop_mutex);
      finished = true;
    }
    stop_cv.notify_all();
  }
  bool wait_finished_until(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(stop_mutex);
    return stop_cv.wait_until(lock, until, [&] { return finished; });
  }

 private:
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopping = false;
  bool finished = false;
  bool parked = false;      // the dispatcher is blocked holding nothing unregistered
  bool taken_over = false;  // close() took custody; the dispatcher must stop at once
  Clock::time_point shutdown_deadline{};
  std::vector<std::shared_ptr<const std::vector<Event>>> in_flight;
};

}  // namespace trackevent::detail
