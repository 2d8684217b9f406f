#pragma once
// Batcher: when a batch is due. Pure bookkeeping, so it is tested with a fake clock, no sleeping.

#include "trackevent/clock.hpp"

#include <cstddef>
#include <optional>

namespace trackevent::detail {

/// Decides when the dispatcher sends: once the batch holds `batch_size` events, or once its
/// oldest event has waited `interval` since it was queued, whichever comes first.
class Batcher {
 public:
  Batcher(std::size_t batch_size, Clock::duration interval) noexcept;

  /// One more event in the batch, queued at `queued_at`.
  void add(Clock::time_point queued_at) noexcept;
  /// True when the batch should be sent at `now`.
  [[nodiscard]] bool due(Clock::time_point now) const noexcept;
  /// When the batch becomes due by age; nullopt when it is empty.
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const noexcept;
  /// The batch was taken (sent or spooled); start a new one.
  void reset() noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool full() const noexcept { return count_ >= batch_size_; }
  /// Events that still fit before the batch is full.
  [[nodiscard]] std::size_t room() const noexcept { return full() ? 0 : batch_size_ - count_; }

 private:
  std::size_t batch_size_;
  Clock::duration interval_;
  std::size_t count_ = 0;
  Clock::time_point oldest_{};
};

}  // namespace trackevent::detail
