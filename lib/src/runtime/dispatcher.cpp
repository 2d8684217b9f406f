#include "runtime/dispatcher.hpp"

#include "runtime/batch_runner.hpp"
#include "runtime/durable_mode.hpp"
#include "runtime/live_mode.hpp"

#include <exception>
#include <utility>

namespace trackevent::detail {

Dispatcher::Dispatcher(std::shared_ptr<TrackerState> state)
    : state_(std::move(state)), courier_(*state_) {
  if (state_->options.durable) {
    mode_ = std::make_unique<DurableMode>(courier_);
  } else {
    mode_ = std::make_unique<LiveMode>(courier_, make_runner(state_->sink));
  }
}

Dispatcher::~Dispatcher() = default;

void Dispatcher::run() noexcept {
  for (;;) {
    try {
      if (!mode_->step()) break;
    } catch (const TakenOver&) {
      // close() took our events over and returned: count nothing, report nothing. The state
      // (and so the sink) stays alive through our reference until pipelined writes return.
      mode_->abandon();
      break;
    } catch (const std::exception& e) {
      courier_.report(log::Level::error, "dispatcher.exception", "dispatcher error",
                      {{"err", e.what()}}, {"dispatcher error", e.what(), "", mode_->holding()});
    } catch (...) {
      courier_.report(log::Level::error, "dispatcher.exception", "dispatcher error",
                      {{"err", "unknown exception"}},
                      {"dispatcher error", "unknown exception", "", 0});
    }
  }
  state_->mark_finished();
}

}  // namespace trackevent::detail
