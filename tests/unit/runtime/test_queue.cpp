#include "runtime/queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace trackevent::detail {
namespace {

using namespace std::chrono_literals;

struct Item {
  int value = 0;
  bool control = false;
  [[nodiscard]] bool is_control() const noexcept { return control; }
};
using Queue = BoundedQueue<Item>;

TEST(BoundedQueue, RefusesDataBeyondCapacityAndLeavesTheItem) {
  Queue q(2);
  Item a{1}, b{2}, c{3};
  EXPECT_EQ(q.try_push(a), Queue::Push::ok);
  EXPECT_EQ(q.try_push(b), Queue::Push::ok);
  EXPECT_EQ(q.try_push(c), Queue::Push::full);
  EXPECT_EQ(c.value, 3);
  EXPECT_EQ(q.size(), 2u);
}

TEST(BoundedQueue, ControlItemsIgnoreCapacityAndEndAPop) {
  Queue q(1);
  Item a{1};
  ASSERT_EQ(q.try_push(a), Queue::Push::ok);
  EXPECT_TRUE(q.push_control(Item{0, true}));
  std::vector<Item> out;
  EXPECT_EQ(q.pop(out, 10, 0ms), 2u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].value, 1);
  EXPECT_TRUE(out[1].control);
}

TEST(BoundedQueue, PopStopsAfterAControlItem) {
  Queue q(10);
  Item a{1}, b{2};
  q.try_push(a);
  q.push_control(Item{0, true});
  q.try_push(b);
  std::vector<Item> out;
  EXPECT_EQ(q.pop(out, 10, 0ms), 2u);
  out.clear();
  EXPECT_EQ(q.pop(out, 10, 0ms), 1u);
  EXPECT_EQ(out[0].value, 2);
}

TEST(BoundedQueue, PopTakesAtMostMaxData) {
  Queue q(10);
  for (int i = 0; i < 5; ++i) {
    Item it{i};
    q.try_push(it);
  }
  std::vector<Item> out;
  EXPECT_EQ(q.pop(out, 3, 0ms), 3u);
  EXPECT_EQ(q.size(), 2u);
}

TEST(BoundedQueue, PushWaitBlocksUntilRoomThenSucceeds) {
  Queue q(1);
  Item a{1};
  q.try_push(a);
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    Item b{2};
    EXPECT_EQ(q.push_wait(b), Queue::Push::ok);
    pushed = true;
  });
  EXPECT_FALSE(pushed.load());  // the queue is full, so the producer cannot be done
  std::vector<Item> out;
  while (out.size() < 2) q.pop(out, 1, 1s);
  producer.join();
  EXPECT_TRUE(pushed.load());
  EXPECT_EQ(out[1].value, 2);
}

TEST(BoundedQueue, CloseWakesBlockedProducersAndRefusesPushes) {
  Queue q(1);
  Item a{1};
  q.try_push(a);
  std::thread producer([&] {
    Item b{2};
    EXPECT_EQ(q.push_wait(b), Queue::Push::closed);
  });
  q.close();
  producer.join();
  Item c{3};
  EXPECT_EQ(q.try_push(c), Queue::Push::closed);
  EXPECT_FALSE(q.push_control(Item{0, true}));
  std::vector<Item> out;
  EXPECT_EQ(q.pop(out, 10, 1h), 1u);  // what was queued can still be taken, without waiting
}

TEST(BoundedQueue, FirstPushWakesAWaitingPop) {
  Queue q(10);
  std::thread producer([&] {
    std::this_thread::sleep_for(20ms);
    Item a{7};
    q.try_push(a);
  });
  std::vector<Item> out;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q.pop(out, 10, 10s), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  producer.join();
  EXPECT_EQ(out[0].value, 7);
}

TEST(BoundedQueue, WakeAtWaitsForThatManyItems) {
  Queue q(100);
  std::atomic<int> pushed{0};
  std::thread producer([&] {
    for (int i = 0; i < 5; ++i) {
      std::this_thread::sleep_for(5ms);
      Item a{i};
      q.try_push(a);
      pushed.fetch_add(1);
    }
  });
  std::vector<Item> out;
  // Returns once 5 items are queued (or 10 s pass), not at the first one.
  EXPECT_EQ(q.pop(out, 5, 10s, 5), 5u);
  producer.join();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)].value, i);
}

TEST(BoundedQueue, WakeAtTimesOutWithWhatIsThere) {
  Queue q(100);
  Item a{1};
  q.try_push(a);
  std::vector<Item> out;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q.pop(out, 10, 30ms, 10), 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
}

TEST(BoundedQueue, ControlItemEndsAWakeAtWait) {
  Queue q(100);
  std::thread producer([&] {
    std::this_thread::sleep_for(20ms);
    Item a{1};
    q.try_push(a);
    q.push_control(Item{0, true});
  });
  std::vector<Item> out;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q.pop(out, 100, 10s, 100), 2u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  producer.join();
  EXPECT_TRUE(out[1].control);
}

TEST(BoundedQueue, WakeAndCloseEndAWait) {
  Queue q(10);
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    q.wake();
  });
  std::vector<Item> out;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q.pop(out, 10, 10s), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  waker.join();
  std::thread closer([&] {
    std::this_thread::sleep_for(20ms);
    q.close();
  });
  EXPECT_EQ(q.pop(out, 10, 10s, 5), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  closer.join();
}

TEST(BoundedQueue, FifoAcrossRingGrowthAndWrapAround) {
  Queue q(100000);
  std::vector<Item> out;
  int next_in = 0, next_out = 0;
  // Interleave pushes and pops so the ring wraps, then grows while wrapped.
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < round + 3; ++i) {
      Item a{next_in++};
      ASSERT_EQ(q.try_push(a), Queue::Push::ok);
    }
    if (round % 7 == 0) q.push_control(Item{-1, true});
    out.clear();
    q.pop(out, 2 + static_cast<std::size_t>(round % 5), 0ms);
    for (const Item& it : out) {
      if (!it.control) {
        EXPECT_EQ(it.value, next_out++);
      }
    }
  }
  for (;;) {
    out.clear();
    if (q.pop(out, 1000, 0ms) == 0) break;
    for (const Item& it : out) {
      if (!it.control) {
        EXPECT_EQ(it.value, next_out++);
      }
    }
  }
  EXPECT_EQ(next_out, next_in);
  EXPECT_EQ(q.size(), 0u);
}

TEST(BoundedQueue, ManyProducersOneConsumerLoseNothing) {
  Queue q(64);
  constexpr int kPerProducer = 20000;
  std::vector<std::thread> producers;
  for (int p = 0; p < 3; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        Item a{p * kPerProducer + i};
        ASSERT_EQ(q.push_wait(a), Queue::Push::ok);
      }
    });
  }
  std::vector<int> last(3, -1);
  std::size_t received = 0;
  std::vector<Item> out;
  while (received < 3u * kPerProducer) {
    out.clear();
    received += q.pop(out, 16, 100ms, 16);
    for (const Item& it : out) {
      const int p = it.value / kPerProducer;
      EXPECT_GT(it.value, last[static_cast<std::size_t>(p)]);  // per-producer order kept
      last[static_cast<std::size_t>(p)] = it.value;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(q.size(), 0u);
}

TEST(BoundedQueue, SpillsPastTheRingInOrderWithControlItems) {
  // More data than the lock-free ring holds: the rest goes to the side list, and flush markers
  // queued in between come out exactly where they were queued.
  constexpr int kItems = static_cast<int>(Queue::kMaxRing) * 3 + 17;
  Queue q(static_cast<std::size_t>(kItems) + 10);
  for (int i = 0; i < kItems; ++i) {
    Item a{i};
    ASSERT_EQ(q.try_push(a), Queue::Push::ok) << i;
    if (i % 700 == 699) {
      ASSERT_TRUE(q.push_control(Item{-(i + 1), true}));
    }
  }
  EXPECT_EQ(q.size(), static_cast<std::size_t>(kItems));
  EXPECT_EQ(q.pushed(), static_cast<std::uint64_t>(kItems));
  std::vector<Item> out;
  int next = 0;
  int controls = 0;
  for (;;) {
    out.clear();
    if (q.pop(out, 333, 0ms) == 0) break;
    for (const Item& it : out) {
      if (it.control) {
        EXPECT_EQ(-it.value, next) << "marker after item " << next - 1;
        ++controls;
      } else {
        EXPECT_EQ(it.value, next++);
      }
    }
  }
  EXPECT_EQ(next, kItems);
  EXPECT_EQ(controls, kItems / 700);
  EXPECT_EQ(q.size(), 0u);
  // Spill mode ended with the last spilled item: the ring takes pushes again, in order.
  for (int i = 0; i < 10; ++i) {
    Item a{kItems + i};
    ASSERT_EQ(q.try_push(a), Queue::Push::ok);
  }
  out.clear();
  EXPECT_EQ(q.pop(out, 100, 0ms), 10u);
  EXPECT_EQ(out.front().value, kItems);
  EXPECT_EQ(out.back().value, kItems + 9);
}

TEST(BoundedQueue, CapacityHoldsAcrossRingAndSpill) {
  const std::size_t capacity = Queue::kMaxRing + 5;
  Queue q(capacity);
  for (std::size_t i = 0; i < capacity; ++i) {
    Item a{static_cast<int>(i)};
    ASSERT_EQ(q.try_push(a), Queue::Push::ok) << i;
  }
  Item extra{-1};
  EXPECT_EQ(q.try_push(extra), Queue::Push::full);
  EXPECT_EQ(extra.value, -1);
  q.close();
  EXPECT_EQ(q.try_push(extra), Queue::Push::closed);
  std::vector<Item> out;
  std::size_t total = 0;
  while (q.pop(out, 100, 0ms) > 0) total = out.size();
  EXPECT_EQ(total, capacity);
}

TEST(BoundedQueue, ProducersRacingASlowConsumerThroughSpillLoseNothing) {
  Queue q(100000);
  constexpr int kPerProducer = 30000;
  std::atomic<bool> go{false};
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kPerProducer; ++i) {
        Item a{p * kPerProducer + i};
        ASSERT_EQ(q.try_push(a), Queue::Push::ok);
        if (i % 5000 == 0) q.push_control(Item{-1, true});
      }
    });
  }
  go.store(true);
  std::vector<int> last(2, -1);
  std::size_t received = 0;
  std::vector<Item> out;
  int rounds = 0;
  while (received < 2u * kPerProducer) {
    out.clear();
    q.pop(out, 500, 50ms, 500);
    for (const Item& it : out) {
      if (it.control) continue;
      ++received;
      const auto p = static_cast<std::size_t>(it.value / kPerProducer);
      EXPECT_GT(it.value, last[p]);
      last[p] = it.value;
    }
    if (++rounds % 8 == 0) std::this_thread::sleep_for(1ms);  // fall behind: force spills
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.pushed(), 2u * kPerProducer);
}

TEST(BoundedQueue, NeverFullFarBelowCapacityWhileTheConsumerRaces) {
  // Regression: a producer's stale view of the tail behind the consumer's progress once read as
  // an (unsigned) enormous fill level, and try_push answered "full" with the queue nearly empty.
  Queue q(std::size_t{1} << 22);
  constexpr int kPerProducer = 250000;
  std::atomic<bool> go{false};
  std::atomic<int> refused{0};
  std::atomic<int> finished{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kPerProducer; ++i) {
        Item a{i};
        if (q.try_push(a) != Queue::Push::ok) refused.fetch_add(1);
      }
      finished.fetch_add(1);
    });
  }
  go.store(true);
  std::vector<Item> out;
  while (finished.load() < 4 || q.size() > 0) {
    out.clear();
    q.pop(out, 64, 0ms);  // small, frequent pops: the consumer's head moves all the time
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(q.pushed(), 4u * kPerProducer);
}

}  // namespace
}  // namespace trackevent::detail
