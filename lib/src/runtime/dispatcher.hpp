#pragma once
// Dispatcher: the Tracker's one background thread, and the modes it runs in.

#include "runtime/courier.hpp"
#include "runtime/tracker_state.hpp"

#include <cstddef>
#include <memory>

namespace trackevent::detail {

/// How the dispatcher thread moves events from the queue to the sink, one loop iteration at a
/// time: LiveMode (runtime/live_mode.hpp) batches and writes, pipelined through a BatchRunner;
/// DurableMode (runtime/durable_mode.hpp, TrackerOptions::durable) commits groups to the spool
/// first and delivers from there. Both deliver through the Courier, under one DeliveryPolicy.
class DispatchMode {
 public:
  virtual ~DispatchMode() = default;
  /// One loop iteration; false once shutdown has delivered or spooled everything.
  virtual bool step() = 0;
  /// Events in the mode's hands, for an error report.
  [[nodiscard]] virtual std::size_t holding() const noexcept = 0;
  /// After close() took over (TakenOver): waits, counting nothing, for writes still running on
  /// other threads, which use the sink this thread keeps alive.
  virtual void abandon() noexcept {}
};

/// Runs a mode until it is done. It never throws and never dies: each iteration is wrapped, and
/// errors go to the log and to options.on_error. TakenOver (close() took custody of the events,
/// runtime/tracker_state.hpp) ends it at once, silently.
class Dispatcher {
 public:
  explicit Dispatcher(std::shared_ptr<TrackerState> state);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  /// The thread body: returns once shutdown has delivered or spooled everything.
  void run() noexcept;

 private:
  std::shared_ptr<TrackerState> state_;
  Courier courier_;
  std::unique_ptr<DispatchMode> mode_;
};

}  // namespace trackevent::detail
