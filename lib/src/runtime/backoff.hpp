#pragma once
// Backoff: capped exponential delays with full jitter, for retrying and probing a failing sink.

#include "trackevent/clock.hpp"

#include <functional>

namespace trackevent::detail {

/// Delay n (from 0) is uniform in [0, min(cap, first * 2^n)) ("full jitter"), so many processes
/// that lost the same database do not come back in lockstep.
class Backoff {
 public:
  /// Returns a number in [0, 1). Injected by tests; the default draws from a per-thread PRNG.
  using Jitter = std::function<double()>;

  Backoff(Clock::duration first, Clock::duration cap, Jitter jitter = {});

  /// The delay before the next attempt; each call doubles the ceiling up to `cap`.
  [[nodiscard]] Clock::duration next();
  /// The ceiling next() will scale, without consuming an attempt.
  [[nodiscard]] Clock::duration ceiling() const noexcept;
  /// Back to the first delay (after a success).
  void reset() noexcept { attempt_ = 0; }
  [[nodiscard]] unsigned attempts() const noexcept { return attempt_; }

 private:
  Clock::duration first_;
  Clock::duration cap_;
  Jitter jitter_;
  unsigned attempt_ = 0;
};

}  // namespace trackevent::detail
