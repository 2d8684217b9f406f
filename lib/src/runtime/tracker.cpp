#include "trackevent/tracker.hpp"

#include "trackevent/uuid.hpp"

#include "config/database_url.hpp"
#include "input/parse.hpp"
#include "log/log.hpp"
#include "runtime/dispatcher.hpp"
#include "runtime/tracker_state.hpp"

#include <nlohmann/json.hpp>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace trackevent {
namespace {

using detail::Counters;
using detail::QueueItem;
using detail::TrackerState;
using Push = detail::BoundedQueue<QueueItem>::Push;

// Real time the destructor allows past shutdown_timeout for the dispatcher to spool what is left.
constexpr auto kShutdownMargin = std::chrono::milliseconds{500};
// Then, for a dispatcher that is still working (spooling: bounded by the spool's busy timeout)
// rather than blocked in a write, how long close() waits for it to hand over what it holds.
constexpr auto kCustodyWait = std::chrono::seconds{6};

/// Whether a json value serialised by nlohmann keeps clear of every metadata limit the
/// validator checks on text: nesting (the metadata object is level 2), the key count, and NUL
/// characters (jsonb cannot store them). Conservative: true only when no limit is even reached.
bool dom_within_limits(const nlohmann::json& j, std::size_t depth, const Limits& limits,
                       std::size_t& keys) {
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      if (depth >= limits.max_depth) return false;
      for (const auto& [key, value] : j.items()) {
        if (++keys >= limits.max_keys || key.find('\0') != std::string::npos) return false;
        if (!dom_within_limits(value, depth + 1, limits, keys)) return false;
      }
      return true;
    case nlohmann::json::value_t::array:
      if (depth >= limits.max_depth) return false;
      for (const auto& value : j) {
        if (!dom_within_limits(value, depth + 1, limits, keys)) return false;
      }
      return true;
    case nlohmann::json::value_t::string:
      return j.get_ref<const std::string&>().find('\0') == std::string::npos;
    default:
      return true;
  }
}

/// Serialises `metadata` into `event.metadata` and checks the event against `limits`. Returns the
/// reason it is invalid, or an empty string. Throws only std::bad_alloc.
std::string serialise_metadata(Event& event, const nlohmann::json& metadata, const Limits& limits) {
  if (!metadata.is_object()) return "metadata: expected a JSON object";
  try {
    // Strict: invalid UTF-8 is the caller's bug, not ours to mangle.
    event.metadata = metadata.dump();
  } catch (const nlohmann::json::exception& e) {
    return std::string("metadata: ") + e.what();
  }
  std::size_t keys = 0;
  // dump() wrote valid JSON and UTF-8, so only the limits are left to check, on the DOM. When
  // that check is in doubt, the full validator decides and words the reason.
  const bool plainly_valid = validate_event_identity(event).empty() &&
                             event.metadata.size() <= limits.max_metadata_bytes &&
                             dom_within_limits(metadata, 2, limits, keys);
  return plainly_valid ? std::string() : validate_event(event, limits);
}

/// Counts and logs an event refused by validation.
void log_rejected(Counters& counters, const Event& event, std::string_view reason) noexcept {
  Counters::add(counters.rejected);
  log::write_limited(log::Level::error, "track.rejected", "rejected event",
                     {{"source", "track"},
                      {"event_name", event.event_name},
                      {"org_id", event.org_id},
                      {"err", reason}});
}

/// Acceptance time and a fresh UUIDv7 from the same clock reading.
void stamp_now(Event& e) noexcept {
  e.occurred_at_us = now_unix_us();
  e.event_id = make_uuid_v7(e.occurred_at_us / 1000);
}

std::shared_ptr<Sink> open_sink(const TrackerOptions& options) {
  if (options.sink) return options.sink;
  try {
    const DbTarget target = options.database_url.empty() ? resolve_database(std::nullopt)
                                                         : parse_database_url(options.database_url);
    std::shared_ptr<Sink> sink = make_sink(target, options.pg_timeouts, options.connections);
    if (!sink) {
      log::error("no database sink available; events will be held in the spool",
                 {{"db", redact_conninfo(target.conninfo)}});
    }
    return sink;
  } catch (const std::exception& e) {
    log::error("could not open the database; events will be held in the spool",
               {{"err", e.what()}});
  } catch (...) {
    log::error("could not open the database; events will be held in the spool");
  }
  return nullptr;
}

// Used by close() once it gave up waiting on a hung sink: spools the batches being written and
// everything still queued, from the closing thread, counting exactly what could not be spooled.
void spool_leftovers(TrackerState& s) {
  std::vector<Event> events;
  for (const auto& batch : s.take_in_flight())
    events.insert(events.end(), batch->begin(), batch->end());
  std::vector<QueueItem> items;
  while (s.queue.pop(items, s.queue.capacity(), std::chrono::nanoseconds::zero()) > 0) {
  }
  for (auto& item : items) {
    if (item.is_control()) {
      item.marker->complete();
    } else if (s.take(item)) {
      events.push_back(std::move(item.event));
    }
  }
  if (events.empty()) return;
  const auto chunked = s.spool.append_chunked(events);
  const std::size_t kept = chunked.kept;
  const std::string error = chunked.failure ? chunked.failure->message : std::string();
  Counters::add(s.counters.spooled, kept);
  if (kept == events.size()) return;
  Counters::add(s.counters.dropped, events.size() - kept);
  log::write(log::Level::critical, "events lost: could not spool them at shutdown",
             {{"events", events.size() - kept}, {"spooled", kept}, {"err", error}});
}

// After a take-over from a dispatcher that never parked: the events it still holds are not in the
// spool, and nothing says they will be. Count them as dropped, loudly, so the totals add up.
void account_unseen(TrackerState& s) {
  const Stats st = s.snapshot();
  const std::uint64_t ended =
      st.stored - st.unspooled + st.duplicates + st.rejected_by_db + st.spooled + st.dropped +
      static_cast<std::uint64_t>(std::max<std::int64_t>(s.durable_backlog.load(), 0));
  if (st.accepted <= ended) return;
  const std::uint64_t unseen = st.accepted - ended;
  Counters::add(s.counters.dropped, unseen);
  log::write(log::Level::critical, "events lost: the dispatcher did not hand them over at shutdown",
             {{"events", unseen}});
}

}  // namespace

namespace detail {

std::string finish_metadata(QueueItem& item, const Limits& limits, const Plan* plan) noexcept {
  if (item.metadata_dom.is_null()) return {};
  std::string reason;
  try {
    reason = serialise_metadata(item.event, item.metadata_dom, limits);
    if (reason.empty() && plan != nullptr) reason = check_plan(item.event, *plan);
  } catch (...) {
    reason = "out of memory";
  }
  item.metadata_dom = nullptr;  // freed here, on the consumer's thread
  return reason;
}

bool TrackerState::take(QueueItem& item) noexcept {
  std::string reason = finish_metadata(item, options.limits, plan.get());
  if (reason.empty()) return true;
  counters.withdrawn.fetch_add(1);
  log_rejected(counters, item.event, reason);
  settled.fetch_add(1);
  return false;
}

}  // namespace detail

class Tracker::Impl {
 public:
  explicit Impl(TrackerOptions options) {
    // First, so the application's logger gets even the lines about opening the database.
    if (options.log) routing_.emplace(options.log);
    auto sink = open_sink(options);
    state_ = std::make_shared<TrackerState>(std::move(options), std::move(sink));
    // Fork handling is in place before the thread exists, so no fork() finds a Tracker with a
    // dispatcher thread that its child does not know to replace.
    static std::once_flag once;
    std::call_once(once, [] { ::pthread_atfork(&atfork_prepare, &atfork_parent, &atfork_child); });
    {
      const std::lock_guard lock(registry().mutex);
      registry().live.push_back(this);
    }
    // A fork between the registration above and here marks us forked: the child restarts.
    const std::lock_guard fork_lock(fork_mutex_);
    // The thread owns a reference too: if a hung sink outlives the destructor, so does the state.
    thread_ = std::thread([state = state_] { detail::Dispatcher(state).run(); });
  }

  ~Impl() {
    {
      const std::lock_guard lock(registry().mutex);
      auto& live = registry().live;
      live.erase(std::remove(live.begin(), live.end(), this), live.end());
    }
    close(state_->options.shutdown_timeout);
  }

  Stats close(std::chrono::milliseconds timeout) noexcept {
    std::lock_guard lock(close_mutex_);
    if (closed_) return final_;
    {
      const std::lock_guard fork_lock(fork_mutex_);
      if (forked_.load()) {
        // A forked child that never used the Tracker: the parent's state is not ours to touch.
        replace_parent_state(false);
        closed_ = true;
        final_ = Stats{};
        return final_;
      }
    }
    auto& s = *state_;
    try {
      if (!thread_.joinable()) {
        // Only after a failed restart in a forked child: nobody drains the queue but us.
        s.begin_shutdown(s.clock->now());
        spool_leftovers(s);
      } else {
        timeout = std::max(timeout, std::chrono::milliseconds::zero());
        s.begin_shutdown(s.clock->now() + timeout);
        const auto waited_until = std::chrono::steady_clock::now() + timeout + kShutdownMargin;
        const auto custody = s.wait_finished_until(waited_until)
                                 ? TrackerState::Custody::finished
                                 : s.take_over(waited_until + kCustodyWait);
        if (custody == TrackerState::Custody::finished) {
          thread_.join();
        } else {
          // The dispatcher is stuck in a sink write past its deadline. Do not wait on the sink:
          // spool what it holds and leave the thread to finish (or not) on its own.
          log::warn("database write still running at the shutdown deadline; spooling and moving on",
                    {{"shutdown_timeout_ms", timeout.count()}});
          spool_leftovers(s);
          thread_.detach();
          // A callback that started before the take-over ends before we return.
          const std::lock_guard callback_lock(s.callback_mutex);
          if (custody == TrackerState::Custody::busy) account_unseen(s);
        }
      }
    } catch (...) {
      // Only thread join/detach can throw here (never for a joinable thread we own).
    }
    closed_ = true;
    final_ = s.snapshot();
    // Durable mode: our events still in the spool (committed, not delivered) are spooled.
    final_.spooled += static_cast<std::uint64_t>(std::max<std::int64_t>(s.durable_backlog, 0));
    return final_;
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // After close(), outside its lock: a log callback running meanwhile may call stats().
  void end_log_routing() noexcept {
    if (routing_) routing_->close();
  }

  bool enqueue(Event&& event, nlohmann::json&& metadata_dom = nullptr) noexcept {
    auto& s = state();
    try {
      QueueItem item{std::move(event), std::move(metadata_dom), std::nullopt, nullptr};
      if (s.stamp_on_push) item.queued_at = s.clock->now();
      // A pushed event counts as accepted and in memory through the queue's ticket count.
      const Push pushed = s.options.on_full == OverflowPolicy::block ? s.queue.push_wait(item)
                                                                     : s.queue.try_push(item);
      if (pushed == Push::ok) return true;
      if (std::string reason = detail::finish_metadata(item, s.options.limits, s.plan.get());
          !reason.empty()) {
        log_rejected(s.counters, item.event, reason);
        return false;
      }
      Counters::add(s.counters.accepted);
      return overflow(item.event, pushed);
    } catch (const std::exception& e) {
      Counters::add(s.counters.dropped);
      log::write_limited(log::Level::error, "track.exception", "event lost: track() failed",
                         {{"err", e.what()}});
    } catch (...) {
      Counters::add(s.counters.dropped);
    }
    return false;
  }

  // The tracking plan's verdict on an event whose metadata is serialised; empty without a plan.
  [[nodiscard]] std::string check_plan(const Event& event) const {
    const auto& plan = state_->plan;
    return plan ? trackevent::check_plan(event, *plan) : std::string();
  }

  void reject(const Event& event, std::string_view reason) noexcept {
    log_rejected(state().counters, event, reason);
  }

  FlushResult flush(std::chrono::milliseconds timeout) noexcept {
    auto& s = state();
    try {
      if (s.in_memory() <= 0 && s.durable_backlog.load() <= 0) return {true, 0};
      auto marker = std::make_shared<detail::FlushMarker>();
      QueueItem item;
      item.marker = marker;
      if (s.queue.push_control(std::move(item)) &&
          marker->wait_for(std::max(timeout, std::chrono::milliseconds::zero()))) {
        return {true, 0};
      }
    } catch (...) {
    }
    return {false, static_cast<std::uint64_t>(std::max<std::int64_t>(s.in_memory(), 0))};
  }

  bool sync(std::chrono::milliseconds timeout) noexcept {
    auto& s = state();
    if (!s.options.durable) return flush(timeout).complete;
    try {
      if (s.in_memory() <= 0) return true;
      auto marker = std::make_shared<detail::FlushMarker>(/*sync_only=*/true);
      QueueItem item;
      item.marker = marker;
      if (s.queue.push_control(std::move(item))) {
        return marker->wait_for(std::max(timeout, std::chrono::milliseconds::zero()));
      }
    } catch (...) {
    }
    return s.in_memory() <= 0;
  }

  [[nodiscard]] Stats stats() const noexcept {
    std::lock_guard lock(close_mutex_);
    // After close() a detached dispatcher may still bump counters; the final ones stay final.
    return closed_ ? final_ : state_->snapshot();
  }
  [[nodiscard]] const Limits& limits() const noexcept { return state_->options.limits; }

 private:
  // The queue is full (or shut): drop, or spool on this thread, as the policy says.
  bool overflow(const Event& event, Push pushed) {
    auto& s = *state_;
    if (pushed == Push::full && s.options.on_full == OverflowPolicy::drop) {
      Counters::add(s.counters.dropped);
      log::write_limited(log::Level::error, "track.dropped", "event dropped: queue full",
                         {{"event_name", event.event_name},
                          {"org_id", event.org_id},
                          {"queue_capacity", s.queue.capacity()}});
      return false;
    }
    const auto spooled = s.spool.append(std::span<const Event>(&event, 1));
    if (spooled) {
      Counters::add(s.counters.spooled);
      return true;
    }
    Counters::add(s.counters.dropped);
    log::write_limited(log::Level::critical, "track.spool_failed",
                       "event lost: queue full and the spool failed",
                       {{"event_name", event.event_name},
                        {"org_id", event.org_id},
                        {"err", spooled.error().message}});
    return false;
  }

  // Fork safety. A child process inherits this Tracker without its dispatcher thread, and with
  // whatever locks other parent threads held at fork() time (the queue's among them). So the
  // child never touches the parent's state: pthread_atfork marks every live Tracker as forked,
  // and the child's first track()/flush()/sync() starts over with a fresh state (queue, spool
  // handle, counters), a new dispatcher and a NEW sink connection. The parent's state, and with
  // it the parent's libpq connection, is leaked in the child on purpose: PQfinish() there would
  // send a Terminate message on the socket the parent still uses. The events the parent had
  // queued are dropped in the child: the parent still holds them and delivers them (copying
  // them would be harmless, as delivery is idempotent on event_id, but needs the parent's queue
  // lock across fork). A sink given in TrackerOptions::sink is the caller's object and is
  // shared with the child as is. Not restarted: the child's stats start from zero.
  struct Registry {
    std::mutex mutex;
    std::vector<Impl*> live;
  };
  static Registry& registry() {
    static auto* r = new Registry;  // never destroyed: fork handlers may run during exit
    return *r;
  }
  // Lock order: the registry, then each Tracker's fork_mutex_ in registration order.
  static void atfork_prepare() noexcept {
    registry().mutex.lock();
    for (Impl* impl : registry().live) impl->fork_mutex_.lock();
  }
  static void atfork_parent() noexcept {
    for (Impl* impl : registry().live) impl->fork_mutex_.unlock();
    registry().mutex.unlock();
  }
  static void atfork_child() noexcept {
    for (Impl* impl : registry().live) {
      impl->forked_.store(true, std::memory_order_release);
      impl->fork_mutex_.unlock();
    }
    registry().mutex.unlock();
  }

  TrackerState& state() noexcept {
    if (forked_.load(std::memory_order_acquire)) restart_after_fork();
    return *state_;
  }

  // Requires fork_mutex_. Leaks the parent's state and thread handle (see above; a std::thread
  // for a thread that does not exist here can be neither joined nor destroyed) and puts a fresh
  // state in their place: with a new sink and dispatcher when `start`, else an idle one whose
  // queue close() spools.
  void replace_parent_state(bool start) noexcept {
    TrackerOptions options = state_->options;
    new std::shared_ptr<TrackerState>(std::move(state_));  // NOLINT: deliberate leak
    new std::thread(std::move(thread_));                   // NOLINT: deliberate leak
    std::shared_ptr<Sink> sink;
    if (start) sink = options.sink ? options.sink : open_sink(options);
    state_ = std::make_shared<TrackerState>(std::move(options), std::move(sink));
    forked_.store(false, std::memory_order_release);
    if (!start) return;
    try {
      thread_ = std::thread([state = state_] { detail::Dispatcher(state).run(); });
    } catch (const std::exception& e) {
      log::error("could not restart the tracker after fork; events will be spooled at close",
                 {{"err", e.what()}});
    }
  }

  void restart_after_fork() noexcept {
    const std::lock_guard lock(fork_mutex_);
    if (forked_.load()) replace_parent_state(true);
  }

  std::optional<log::Routing> routing_;  // TrackerOptions::log; destroyed last, after close()
  std::shared_ptr<TrackerState> state_;
  std::thread thread_;
  std::atomic<bool> forked_{false};
  std::mutex fork_mutex_;  // taken by atfork_prepare; guards the child's restart
  mutable std::mutex close_mutex_;
  bool closed_ = false;
  Stats final_;
};

Tracker::Tracker(TrackerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Tracker::~Tracker() = default;

void Tracker::track(std::int64_t org_id, std::optional<std::int64_t> user_id,
                    std::string_view event_name, const nlohmann::json& metadata) noexcept {
  Event event;
  try {
    event.org_id = org_id;
    event.user_id = user_id;
    event.event_name = event_name;
    // Serialised here, on the caller's thread, so the queue holds no DOM and the caller may
    // change its json afterwards.
    std::string reason = serialise_metadata(event, metadata, impl_->limits());
    if (reason.empty()) reason = impl_->check_plan(event);
    if (!reason.empty()) {
      impl_->reject(event, reason);
      return;
    }
    stamp_now(event);
  } catch (...) {
    // Only allocating (the name, a rejection reason) can throw here; counted like any failure.
    impl_->reject(event, "out of memory");
    return;
  }
  impl_->enqueue(std::move(event));
}

void Tracker::track(std::int64_t org_id, std::optional<std::int64_t> user_id,
                    std::string_view event_name, nlohmann::json&& metadata) noexcept {
  Event event;
  try {
    event.org_id = org_id;
    event.user_id = user_id;
    event.event_name = event_name;
    std::string reason = metadata.is_object() ? validate_event_identity(event)
                                              : std::string("metadata: expected a JSON object");
    if (!reason.empty()) {
      impl_->reject(event, reason);
      return;
    }
    stamp_now(event);
  } catch (...) {
    impl_->reject(event, "out of memory");
    return;
  }
  // The object is ours now: whoever takes it from the queue serialises and checks it.
  impl_->enqueue(std::move(event), std::move(metadata));
}

void Tracker::track(std::int64_t org_id, std::optional<std::int64_t> user_id,
                    std::string_view event_name) noexcept {
  Event event;  // metadata "{}" by default
  try {
    event.org_id = org_id;
    event.user_id = user_id;
    event.event_name = event_name;
    std::string reason = validate_event_identity(event);
    if (reason.empty()) reason = impl_->check_plan(event);
    if (!reason.empty()) {
      impl_->reject(event, reason);
      return;
    }
    stamp_now(event);
  } catch (...) {
    // Only allocating (the name, a rejection reason) can throw here; counted like any failure.
    impl_->reject(event, "out of memory");
    return;
  }
  impl_->enqueue(std::move(event));
}

bool Tracker::track(Event event) noexcept { return impl_->enqueue(std::move(event)); }

FlushResult Tracker::flush(std::chrono::milliseconds timeout) noexcept {
  return impl_->flush(timeout);
}

Stats Tracker::stats() const noexcept { return impl_->stats(); }

Stats Tracker::close(std::chrono::milliseconds timeout) noexcept {
  Stats final_stats = impl_->close(timeout);
  impl_->end_log_routing();
  return final_stats;
}

bool Tracker::sync(std::chrono::milliseconds timeout) noexcept { return impl_->sync(timeout); }

}  // namespace trackevent
