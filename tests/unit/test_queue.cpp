#include "queue.hpp"

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

}  // namespace
}  // namespace trackevent::detail
