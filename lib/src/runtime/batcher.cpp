#include "runtime/batcher.hpp"

#include <algorithm>

namespace trackevent::detail {

Batcher::Batcher(std::size_t batch_size, Clock::duration interval) noexcept
    : batch_size_(std::max<std::size_t>(batch_size, 1)),
      interval_(std::max(interval, Clock::duration::zero())) {}

void Batcher::add(Clock::time_point queued_at) noexcept {
  // Events can reach the dispatcher slightly out of queueing order (stamps are taken before the
  // queue lock), so keep the earliest rather than the first.
  if (count_ == 0 || queued_at < oldest_) oldest_ = queued_at;
  ++count_;
}

bool Batcher::due(Clock::time_point now) const noexcept {
  if (count_ == 0) return false;
  return full() || now >= oldest_ + interval_;
}

std::optional<Clock::time_point> Batcher::next_deadline() const noexcept {
  if (count_ == 0) return std::nullopt;
  return oldest_ + interval_;
}

void Batcher::reset() noexcept {
  count_ = 0;
  oldest_ = {};
}

}  // namespace trackevent::detail
