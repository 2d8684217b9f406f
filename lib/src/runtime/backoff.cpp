#include "runtime/backoff.hpp"

#include <algorithm>
#include <random>
#include <utility>

namespace trackevent::detail {
namespace {

double random_fraction() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return std::uniform_real_distribution<double>{0.0, 1.0}(engine);
}

}  // namespace

Backoff::Backoff(Clock::duration first, Clock::duration cap, Jitter jitter)
    : first_(std::max(first, Clock::duration{1})),
      cap_(std::max(cap, first_)),
      jitter_(jitter ? std::move(jitter) : Jitter{random_fraction}) {}

Clock::duration Backoff::ceiling() const noexcept {
  Clock::duration ceiling = first_;
  // Doubling stops at the cap, so this cannot overflow however many attempts were made.
  for (unsigned i = 0; i < attempt_ && ceiling < cap_; ++i) ceiling *= 2;
  return std::min(ceiling, cap_);
}

Clock::duration Backoff::next() {
  const Clock::duration ceiling_now = ceiling();
  ++attempt_;
  const double fraction = std::clamp(jitter_(), 0.0, 1.0);
  return std::chrono::duration_cast<Clock::duration>(ceiling_now * fraction);
}

}  // namespace trackevent::detail
