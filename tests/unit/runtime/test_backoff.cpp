#include "runtime/backoff.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace trackevent::detail {
namespace {

using namespace std::chrono_literals;

TEST(Backoff, CeilingDoublesUpToTheCap) {
  Backoff b(500ms, 30s, [] { return 1.0; });
  const Clock::duration expected[] = {500ms, 1s, 2s, 4s, 8s, 16s, 30s, 30s};
  for (const auto want : expected) EXPECT_EQ(b.next(), want);
}

TEST(Backoff, FullJitterScalesTheCeiling) {
  double fraction = 0.0;
  Backoff b(500ms, 30s, [&] { return fraction; });
  EXPECT_EQ(b.next(), 0ms);
  fraction = 0.5;
  EXPECT_EQ(b.next(), 500ms);  // half of the second ceiling, 1 s
}

TEST(Backoff, ResetReturnsToTheFirstDelay) {
  Backoff b(500ms, 30s, [] { return 1.0; });
  (void)b.next();
  (void)b.next();
  EXPECT_EQ(b.attempts(), 2u);
  b.reset();
  EXPECT_EQ(b.next(), 500ms);
}

TEST(Backoff, ManyAttemptsDoNotOverflow) {
  Backoff b(500ms, 30s, [] { return 1.0; });
  for (int i = 0; i < 200; ++i) (void)b.next();
  EXPECT_EQ(b.next(), 30s);
}

TEST(Backoff, DefaultJitterStaysUnderTheCeiling) {
  Backoff b(500ms, 30s);
  for (int i = 0; i < 100; ++i) {
    const auto ceiling = b.ceiling();
    const auto d = b.next();
    EXPECT_GE(d, Clock::duration::zero());
    EXPECT_LE(d, ceiling);
  }
}

}  // namespace
}  // namespace trackevent::detail
