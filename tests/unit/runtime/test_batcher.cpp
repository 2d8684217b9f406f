#include "runtime/batcher.hpp"
#include "support/fake_clock.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace trackevent::detail {
namespace {

using namespace std::chrono_literals;
using test::FakeClock;

TEST(Batcher, EmptyIsNeverDueAndHasNoDeadline) {
  FakeClock clock;
  Batcher b(3, 200ms);
  EXPECT_FALSE(b.due(clock.now()));
  clock.advance(1h);
  EXPECT_FALSE(b.due(clock.now()));
  EXPECT_FALSE(b.next_deadline().has_value());
  EXPECT_EQ(b.room(), 3u);
}

TEST(Batcher, DueBySize) {
  FakeClock clock;
  Batcher b(3, 200ms);
  b.add(clock.now());
  b.add(clock.now());
  EXPECT_FALSE(b.due(clock.now()));
  EXPECT_EQ(b.room(), 1u);
  b.add(clock.now());
  EXPECT_TRUE(b.full());
  EXPECT_TRUE(b.due(clock.now()));  // no time has passed
  EXPECT_EQ(b.room(), 0u);
}

TEST(Batcher, DueByIntervalOfTheOldestEvent) {
  FakeClock clock;
  Batcher b(100, 200ms);
  b.add(clock.now());
  clock.advance(150ms);
  b.add(clock.now());
  EXPECT_FALSE(b.due(clock.now()));
  clock.advance(49ms);
  EXPECT_FALSE(b.due(clock.now()));
  clock.advance(1ms);  // the first event has now waited exactly 200 ms
  EXPECT_TRUE(b.due(clock.now()));
}

TEST(Batcher, DeadlineIsOldestPlusInterval) {
  FakeClock clock;
  Batcher b(100, 200ms);
  const auto t0 = clock.now();
  b.add(t0 + 10ms);
  b.add(t0);  // queued earlier, seen later: the deadline follows the earliest
  b.add(t0 + 50ms);
  ASSERT_TRUE(b.next_deadline().has_value());
  EXPECT_EQ(*b.next_deadline(), t0 + 200ms);
}

TEST(Batcher, ResetStartsANewBatch) {
  FakeClock clock;
  Batcher b(2, 200ms);
  b.add(clock.now());
  b.add(clock.now());
  b.reset();
  EXPECT_EQ(b.size(), 0u);
  EXPECT_FALSE(b.next_deadline().has_value());
  clock.advance(1s);
  b.add(clock.now());
  EXPECT_EQ(*b.next_deadline(), clock.now() + 200ms);
  EXPECT_FALSE(b.due(clock.now()));
}

TEST(Batcher, ZeroBatchSizeMeansOne) {
  FakeClock clock;
  Batcher b(0, 200ms);
  b.add(clock.now());
  EXPECT_TRUE(b.due(clock.now()));
}

}  // namespace
}  // namespace trackevent::detail
