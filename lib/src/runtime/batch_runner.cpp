#include "runtime/batch_runner.hpp"

#include <utility>

namespace trackevent::detail {

void SyncRunner::submit(Batch batch) noexcept {
  WriteResult result = sink_->write(*batch);
  done_.emplace(Done{std::move(batch), std::move(result)});
}

std::optional<BatchRunner::Done> SyncRunner::next_done(
    std::chrono::steady_clock::duration /*timeout*/) noexcept {
  return std::exchange(done_, std::nullopt);
}

std::shared_ptr<BatchRunner> make_runner(const std::shared_ptr<Sink>& sink) {
  if (!sink) return nullptr;
  // A capability, asked once at start-up: a sink that can run batches itself does (also one a
  // caller passes in TrackerOptions::sink). The runner shares the sink's ownership.
  if (auto runner = std::dynamic_pointer_cast<BatchRunner>(sink)) return runner;
  return std::make_shared<SyncRunner>(sink);
}

}  // namespace trackevent::detail
