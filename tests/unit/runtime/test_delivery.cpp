// DeliveryPolicy: the one failure policy of the dispatcher and `trackevent flush`, on a fake clock
// and a fake sink, so no test sleeps.

#include "runtime/delivery.hpp"
#include "support/fake_clock.hpp"
#include "support/fake_sink.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <set>
#include <span>
#include <vector>

namespace trackevent::detail {
namespace {

using namespace std::chrono_literals;

Event make_event(std::uint32_t n) { return test::numbered_event(n); }

std::vector<Event> make_batch(std::uint32_t n) {
  std::vector<Event> batch;
  for (std::uint32_t i = 0; i < n; ++i) batch.push_back(make_event(i));
  return batch;
}

const Failure kLost{Disposition::retry, "08006", "connection lost"};
const Failure kDenied{Disposition::hold, "42501", "permission denied"};

/// A policy over a FakeSink and a FakeClock whose waits advance the clock and are recorded.
struct Harness {
  explicit Harness(
      DeliveryPolicy::Rules rules = {}, Backoff::Jitter jitter = [] { return 0.5; })
      : policy(rules, hooks(), clock, std::move(jitter)) {}

  DeliveryPolicy::Hooks hooks() {
    return DeliveryPolicy::Hooks{
        .write =
            [this](std::span<const Event> rows) {
              if (before_each_write) before_each_write(writes);
              ++writes;
              return sink.write(rows);
            },
        .dead_letter =
            [this](const Event& row, const Failure&) {
              dead_letter_calls.insert(row.event_id);
              return dead_letters_work;
            },
        .wait =
            [this](Clock::duration d) {
              waits.push_back(d);
              clock->advance(d);
            },
        .stop = [this] { return clock->now() >= deadline; },
        .before_write = {},
        .settled =
            [this](std::span<const Event> rows) {
              for (const auto& e : rows) settled.insert(e.event_id);
            },
        .on_retry = {},
    };
  }

  std::shared_ptr<test::FakeClock> clock = std::make_shared<test::FakeClock>();
  test::FakeSink sink;
  std::size_t writes = 0;
  std::function<void(std::size_t)> before_each_write;
  bool dead_letters_work = true;
  std::set<Uuid> dead_letter_calls;
  std::set<Uuid> settled;
  std::vector<Clock::duration> waits;
  Clock::time_point deadline = Clock::time_point::max();
  DeliveryPolicy policy;
};

TEST(DeliveryPolicy, RetriesTransientFailuresWithExponentialJitteredBackoff) {
  Harness h;  // jitter 0.5: half of each ceiling
  h.sink.fail_next(2, kLost);
  const auto batch = make_batch(5);
  const auto out = h.policy.deliver(batch);
  EXPECT_TRUE(out.unsent.empty());
  EXPECT_EQ(out.stored, 5u);
  EXPECT_EQ(out.retries, 2u);
  EXPECT_EQ(h.writes, 3u);
  EXPECT_EQ(h.waits, (std::vector<Clock::duration>{250ms, 500ms}));  // ceilings 0.5 s, 1 s
  EXPECT_EQ(h.settled.size(), 5u);
}

TEST(DeliveryPolicy, DelaysStayBelowTheirCeilings) {
  // The default jitter is random: every delay is drawn from [0, ceiling).
  for (int run = 0; run < 50; ++run) {
    Harness h({}, {});
    h.sink.fail_next(3, kLost);
    const auto batch = make_batch(1);
    (void)h.policy.deliver(batch);
    ASSERT_EQ(h.waits.size(), 2u);
    EXPECT_GE(h.waits[0], 0ms);
    EXPECT_LT(h.waits[0], 500ms);
    EXPECT_GE(h.waits[1], 0ms);
    EXPECT_LT(h.waits[1], 1s);
  }
}

TEST(DeliveryPolicy, GivesUpAfterTheAttemptBudget) {
  Harness h;
  h.sink.fail_next(10, kLost);
  const auto batch = make_batch(4);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(h.writes, 3u);  // Rules::max_attempts
  EXPECT_EQ(out.retries, 2u);
  ASSERT_EQ(out.unsent.size(), 1u);
  EXPECT_EQ(out.unsent_rows(), 4u);
  ASSERT_TRUE(out.failure);
  EXPECT_EQ(out.failure->sqlstate, "08006");
  EXPECT_FALSE(out.stopped);
  EXPECT_TRUE(h.settled.empty());
}

TEST(DeliveryPolicy, GivesUpOnceTheRetryTimeIsSpent) {
  Harness h({.max_attempts = 10, .max_retry_time = 10s, .first_retry = 11s}, [] { return 1.0; });
  h.sink.fail_next(10, kLost);
  const auto batch = make_batch(2);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(out.retries, 1u);  // the first pause took 11 s of the 10 s allowed
  EXPECT_EQ(h.writes, 2u);
  EXPECT_EQ(out.unsent_rows(), 2u);
}

TEST(DeliveryPolicy, BisectionIsolatesExactlyTheBadRows) {
  Harness h;
  h.sink.reject_id(make_event(3).event_id);
  h.sink.reject_id(make_event(17).event_id);
  const auto batch = make_batch(20);
  const auto out = h.policy.deliver(batch);
  EXPECT_TRUE(out.unsent.empty());
  EXPECT_EQ(out.stored, 18u);
  EXPECT_EQ(out.dead_lettered, 2u);
  std::set<Uuid> dead;
  for (const Event* e : out.dead) dead.insert(e->event_id);
  const std::set<Uuid> bad{make_event(3).event_id, make_event(17).event_id};
  EXPECT_EQ(dead, bad);
  EXPECT_EQ(h.dead_letter_calls, bad);
  EXPECT_EQ(h.settled.size(), 20u);  // stored and dead-lettered rows alike
  EXPECT_EQ(h.sink.stored_count(), 18u);
  EXPECT_TRUE(h.waits.empty());            // a refusal is not retried
  EXPECT_LE(h.writes, 2u * 2u * 5u + 1u);  // about 2k*log2(n)
}

TEST(DeliveryPolicy, ARowWhoseDeadLetterFailsIsLeftToTheCaller) {
  Harness h;
  h.dead_letters_work = false;
  h.sink.reject_id(make_event(1).event_id);
  const auto batch = make_batch(4);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(out.stored, 3u);
  EXPECT_EQ(out.dead_lettered, 0u);
  ASSERT_EQ(out.dead_failed.size(), 1u);
  EXPECT_EQ(out.dead_failed.front(), &batch[1]);
  EXPECT_TRUE(out.unsent.empty());
  EXPECT_FALSE(h.settled.contains(make_event(1).event_id));
  EXPECT_EQ(h.settled.size(), 3u);
}

TEST(DeliveryPolicy, HoldStopsAtOnce) {
  Harness h;
  h.sink.fail_next(1, kDenied);
  const auto batch = make_batch(6);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(h.writes, 1u);
  EXPECT_TRUE(h.waits.empty());
  EXPECT_EQ(out.retries, 0u);
  EXPECT_EQ(out.unsent_rows(), 6u);
  ASSERT_TRUE(out.failure);
  EXPECT_EQ(out.failure->disposition, Disposition::hold);

  // The sink then counts as failing until the hold probe.
  EXPECT_EQ(h.policy.failed(*out.failure), 30s);
  EXPECT_TRUE(h.policy.held_back());
  h.clock->advance(29s);
  EXPECT_TRUE(h.policy.held_back());
  h.clock->advance(1s);
  EXPECT_FALSE(h.policy.held_back());
  EXPECT_TRUE(h.policy.failing());
  EXPECT_TRUE(h.policy.succeeded());
  EXPECT_FALSE(h.policy.failing());
}

TEST(DeliveryPolicy, HoldDuringBisectionLeavesTheRestUnsent) {
  Harness h;
  h.sink.reject_id(make_event(0).event_id);
  // The first write is refused (bad row 0); the second, of the first half, meets a hold.
  h.before_each_write = [&](std::size_t n) {
    if (n == 1) h.sink.fail_next(1, kDenied);
  };
  const auto batch = make_batch(8);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(h.writes, 2u);
  EXPECT_EQ(out.unsent_rows(), 8u);  // the first half (the hold) and the second (never tried)
  ASSERT_EQ(out.unsent.size(), 2u);
  EXPECT_EQ(out.unsent[0].data(), batch.data());
  EXPECT_EQ(out.unsent[1].data(), batch.data() + 4);
  EXPECT_EQ(out.failure->disposition, Disposition::hold);
  EXPECT_TRUE(h.dead_letter_calls.empty());
}

TEST(DeliveryPolicy, AFailingSinkIsProbedWithOneAttempt) {
  Harness h;
  const auto delay = h.policy.failed(kLost);
  EXPECT_EQ(delay, 250ms);  // the first backoff delay, jitter 0.5
  EXPECT_TRUE(h.policy.held_back());
  h.clock->advance(delay);
  EXPECT_FALSE(h.policy.held_back());
  h.sink.fail_next(1, kLost);
  const auto batch = make_batch(2);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(h.writes, 1u);
  EXPECT_EQ(out.retries, 0u);
  EXPECT_EQ(out.unsent_rows(), 2u);
  // Probe delays keep growing until a delivery gets through.
  EXPECT_EQ(h.policy.failed(*out.failure), 500ms);
  EXPECT_TRUE(h.policy.succeeded());
  EXPECT_EQ(h.policy.failed(kLost), 250ms);
}

TEST(DeliveryPolicy, NoRetriesWhenTheCallerSaysSo) {
  Harness h;
  h.sink.fail_next(1, kLost);
  const auto batch = make_batch(2);
  const auto out = h.policy.deliver(batch, std::nullopt, /*retry=*/false);
  EXPECT_EQ(h.writes, 1u);
  EXPECT_EQ(out.unsent_rows(), 2u);
}

TEST(DeliveryPolicy, AStopCheckEndsRetriesAtTheDeadline) {
  Harness h({}, [] { return 0.99; });
  h.deadline = h.clock->now() + 300ms;  // the first pause (~495 ms) runs past it
  h.sink.fail_next(10, kLost);
  const auto batch = make_batch(3);
  const auto out = h.policy.deliver(batch);
  EXPECT_EQ(h.writes, 1u);
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.unsent_rows(), 3u);
  ASSERT_TRUE(out.failure);

  // Already past the deadline: no pause at all.
  Harness late;
  late.deadline = late.clock->now();
  late.sink.fail_next(10, kLost);
  const auto out2 = late.policy.deliver(batch);
  EXPECT_EQ(late.writes, 1u);
  EXPECT_TRUE(late.waits.empty());
  EXPECT_EQ(out2.unsent_rows(), 3u);
}

TEST(DeliveryPolicy, APipelinedResultCountsAsTheFirstAttempt) {
  Harness h;
  h.sink.fail_next(10, kLost);
  const auto batch = make_batch(3);
  const auto out = h.policy.deliver(batch, WriteResult{0, 0, kLost});
  EXPECT_EQ(h.writes, 2u);  // two more attempts, three in all
  EXPECT_EQ(out.unsent_rows(), 3u);
}

TEST(DeliveryPolicy, StatementTimeoutsShrinkTheRowsPerStatementAndSuccessGrowsThem) {
  const Failure timeout{Disposition::retry, "57014", "canceling statement due to timeout"};
  Harness h({.max_rows = 16}, [] { return 0.0; });
  EXPECT_EQ(h.policy.row_cap(), 16u);
  h.sink.fail_next(2, timeout);
  const auto batch = make_batch(16);
  const auto out = h.policy.deliver(batch);
  // The second timeout in a row halved the cap: the third attempt wrote two statements of 8.
  EXPECT_TRUE(out.unsent.empty());
  EXPECT_EQ(out.stored, 16u);
  EXPECT_EQ(h.sink.batch_sizes(), (std::vector<std::size_t>{8, 8}));
  // Statements of the full cap succeeded: it doubled back.
  EXPECT_EQ(h.policy.row_cap(), 16u);
}

}  // namespace
}  // namespace trackevent::detail
