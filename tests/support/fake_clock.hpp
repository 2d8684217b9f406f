#pragma once
// FakeClock: a Clock that moves only when a test says so.

#include "trackevent/clock.hpp"

#include <atomic>

namespace trackevent::test {

class FakeClock final : public Clock {
 public:
  [[nodiscard]] time_point now() const noexcept override {
    return time_point{duration{now_.load()}};
  }
  void advance(duration d) noexcept { now_.fetch_add(d.count()); }

 private:
  // Starts well after the epoch so "now - interval" never goes below zero.
  std::atomic<duration::rep> now_{
      std::chrono::duration_cast<duration>(std::chrono::hours{1}).count()};
};

}  // namespace trackevent::test
