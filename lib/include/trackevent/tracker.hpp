#pragma once
/// Tracker: fire-and-forget recording of analytics events.

#include "trackevent/event.hpp"
#include "trackevent/export.h"
#include "trackevent/options.hpp"
#include "trackevent/stats.hpp"

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

namespace trackevent {

/// What flush() achieved before its deadline.
struct FlushResult {
  bool complete = false;        ///< every event queued before the call was delivered or spooled
  std::uint64_t remaining = 0;  ///< events still in memory when the deadline passed
};

/// Records events in the background. track() never blocks (unless OverflowPolicy::block), never
/// throws and never touches the network or the disk on the caller's thread (except to spool
/// on overflow). One dispatcher thread batches events and writes them to the sink.
class Tracker {
 public:
  TRACKEVENT_API explicit Tracker(TrackerOptions options = TrackerOptions::from_env());
  /// close(shutdown_timeout) unless close() was called already.
  TRACKEVENT_API ~Tracker();
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  /// Records one event, stamped now with a new UUIDv7. Invalid input (bad name, org_id < 1,
  /// metadata not an object or over a limit) is counted as rejected and logged. `metadata` must
  /// be a JSON object; it is serialised before the call returns, so the caller may change it.
  TRACKEVENT_API void track(std::int64_t org_id, std::optional<std::int64_t> user_id,
                            std::string_view event_name, const nlohmann::json& metadata) noexcept;
  /// As above, taking the object over (a temporary, e.g. `{{"rows", n}}`, or std::move): the
  /// call only moves it into the queue, and the dispatcher serialises it. An object over a
  /// metadata limit is then rejected by the dispatcher, not in the call: logged, and counted as
  /// rejected and no longer as accepted.
  TRACKEVENT_API void track(std::int64_t org_id, std::optional<std::int64_t> user_id,
                            std::string_view event_name, nlohmann::json&& metadata) noexcept;
  /// As above, with empty metadata.
  TRACKEVENT_API void track(std::int64_t org_id, std::optional<std::int64_t> user_id,
                            std::string_view event_name) noexcept;
  /// Records an already validated and stamped event (what the CLI's parser produces).
  /// Returns false when the event was dropped (queue full under OverflowPolicy::drop).
  TRACKEVENT_API bool track(Event event) noexcept;

  /// Waits until everything queued before the call is delivered or spooled, or `timeout` passes.
  TRACKEVENT_API FlushResult flush(std::chrono::milliseconds timeout) noexcept;

  /// TrackerOptions::durable: waits until every event tracked before the call is committed to
  /// the spool (fsynced), so a crash from then on loses none of them. False when `timeout`
  /// passed first or a group commit failed (those events are then delivered without the
  /// write-ahead). Without durable, the same as flush(timeout).complete.
  TRACKEVENT_API bool sync(std::chrono::milliseconds timeout) noexcept;

  [[nodiscard]] TRACKEVENT_API Stats stats() const noexcept;

  /// Stops accepting (later track() calls spool on the caller's thread), delivers for up to
  /// `timeout`, spools the rest in chunks, and stops the dispatcher thread (or, if a sink write
  /// hangs past the deadline, spools that batch too and leaves the thread behind). Returns the
  /// final counters: everything accepted is stored, duplicate, rejected_by_db, spooled or
  /// dropped, exactly. Idempotent: later calls (and stats()) return the same counters.
  TRACKEVENT_API Stats close(std::chrono::milliseconds timeout) noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace trackevent
