#pragma once
/// An injectable clock, so batching intervals and backoff can be tested without sleeping.

#include "trackevent/export.h"

#include <chrono>

namespace trackevent {

class TRACKEVENT_API Clock {
 public:
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  [[nodiscard]] virtual time_point now() const noexcept = 0;
};

/// The real monotonic clock.
class TRACKEVENT_API SteadyClock final : public Clock {
 public:
  [[nodiscard]] time_point now() const noexcept override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace trackevent
