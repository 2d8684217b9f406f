#include "trackevent/tracker.hpp"

#include "config/database_url.hpp"
#include "log/log.hpp"
#include "pg/parallel_sink.hpp"
#include "spool/spool.hpp"
#include "support/fake_clock.hpp"
#include "support/fake_sink.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace trackevent {
namespace {

using namespace std::chrono_literals;
using test::FakeSink;

Event make_event(std::uint32_t n) {
  Event e = test::numbered_event(n);
  e.user_id = 2;
  e.occurred_at_us = 1'700'000'000'000'000;
  return e;
}

// Polls a condition the dispatcher reaches on its own (no event to wait on from outside).
template <class F>
bool eventually(F condition, std::chrono::seconds limit = 30s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class TrackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/trackevent-tracker-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);  // mode 0700, as the spool requires
    dir_ = tmpl;
  }
  void TearDown() override {
    sink_->open_gate();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  TrackerOptions options() {
    TrackerOptions o;
    o.sink = sink_;
    if (lanes_ > 0) {
      // What make_sink builds for PostgreSQL: a ParallelSink, over which the dispatcher pipelines
      // whole batches, one per connection. Every "connection" here writes to sink_.
      std::vector<std::unique_ptr<Sink>> inner;
      for (std::size_t i = 0; i < lanes_; ++i) inner.push_back(std::make_unique<Forward>(sink_));
      o.sink = std::make_shared<detail::ParallelSink>(std::move(inner));
    }
    o.spool_dir = dir_;
    o.flush_interval = 1h;  // tests send by size or by flush(), never by waiting
    o.shutdown_timeout = 5s;
    o.jitter = [] { return 0.0; };
    return o;
  }

  std::int64_t spool_count() {
    const auto n = detail::Spool::open(dir_)->count();
    return n ? *n : -1;
  }

  /// A connection of a ParallelSink that writes to the test's FakeSink (which is thread-safe).
  class Forward final : public Sink {
   public:
    explicit Forward(std::shared_ptr<FakeSink> to) : to_(std::move(to)) {}
    WriteResult write(std::span<const Event> batch) noexcept override { return to_->write(batch); }
    [[nodiscard]] std::string describe() const override { return to_->describe(); }

   private:
    std::shared_ptr<FakeSink> to_;
  };

  std::shared_ptr<FakeSink> sink_ = std::make_shared<FakeSink>();
  std::filesystem::path dir_;
  std::size_t lanes_ = 0;  // > 0: options() puts the FakeSink behind a ParallelSink of this many
};

/// The delivery tests, run three ways: on the sink directly (the synchronous path), and pipelined
/// over a ParallelSink of one and of two connections.
class TrackerSinkTest : public TrackerTest, public ::testing::WithParamInterface<std::size_t> {
 protected:
  void SetUp() override {
    lanes_ = GetParam();
    TrackerTest::SetUp();
  }
};

std::string direct_or_lanes(const ::testing::TestParamInfo<std::size_t>& param_info) {
  return param_info.param == 0 ? std::string("Direct")
                               : "Pipelined" + std::to_string(param_info.param);
}

INSTANTIATE_TEST_SUITE_P(DirectAndPipelined, TrackerSinkTest, ::testing::Values(0U, 1U, 2U),
                         direct_or_lanes);

TEST_P(TrackerSinkTest, DeliversTrackedEvents) {
  Tracker tracker(options());
  for (int i = 0; i < 100; ++i) tracker.track(7, 9, "user.signed_in", {{"n", i}});
  tracker.track(7, std::nullopt, "backup.completed");
  const auto result = tracker.flush(30s);
  EXPECT_TRUE(result.complete);
  EXPECT_EQ(result.remaining, 0u);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.accepted, 101u);
  EXPECT_EQ(stats.stored, 101u);
  const auto stored = sink_->stored();
  ASSERT_EQ(stored.size(), 101u);
  EXPECT_EQ(stored[0].org_id, 7);
  EXPECT_EQ(stored[0].user_id, 9);
  EXPECT_EQ(stored[0].metadata, R"({"n":0})");
  EXPECT_EQ(stored[100].metadata, "{}");
  EXPECT_FALSE(stored[100].user_id.has_value());
  EXPECT_GT(stored[0].occurred_at_us, 0);
  std::set<Uuid> ids;
  for (const auto& e : stored) ids.insert(e.event_id);
  EXPECT_EQ(ids.size(), 101u);
}

TEST_P(TrackerSinkTest, SendsFullBatchesWithoutWaitingForTheInterval) {
  auto o = options();
  o.batch_size = 10;
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 25; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(sink_->wait_completed(2));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(sink_->batch_sizes(), (std::vector<std::size_t>{10, 10, 5}));
}

TEST_F(TrackerTest, PipelinedBatchesAreWrittenOnEveryConnectionAtOnce) {
  lanes_ = 2;
  auto o = options();
  o.batch_size = 10;
  Tracker tracker(o);
  // Until one write has succeeded, one connection only (a server that is down gets one attempt).
  for (std::uint32_t i = 0; i < 10; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.flush(30s).complete);
  sink_->close_gate();
  for (std::uint32_t i = 10; i < 40; ++i) tracker.track(make_event(i));
  // Two whole batches in writing at once, neither finished: no connection waits for the other.
  ASSERT_TRUE(sink_->wait_entered(3));
  EXPECT_EQ(sink_->writes(), 1u);
  EXPECT_EQ(tracker.stats().stored, 10u);
  sink_->open_gate();
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().stored, 40u);
  EXPECT_EQ(sink_->batch_sizes(), (std::vector<std::size_t>{10, 10, 10, 10}));
}

TEST_F(TrackerTest, PipelinedUseOneConnectionUntilAWriteSucceeds) {
  lanes_ = 2;
  sink_->close_gate();
  auto o = options();
  o.batch_size = 10;
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 30; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(sink_->wait_entered(1));
  EXPECT_FALSE(sink_->wait_entered(2, 1s));
  sink_->open_gate();
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().stored, 30u);
}

TEST_P(TrackerSinkTest, SendsAPartialBatchOnceTheIntervalPasses) {
  auto o = options();
  o.flush_interval = 1ms;
  Tracker tracker(o);
  tracker.track(make_event(1));
  // Nothing calls flush(): only the interval can have sent it.
  EXPECT_TRUE(eventually([&] { return tracker.stats().stored == 1; }));
}

TEST_P(TrackerSinkTest, FlushIsBoundedWhileTheSinkIsBlocked) {
  sink_->close_gate();
  Tracker tracker(options());
  tracker.track(make_event(1));
  tracker.track(make_event(2));
  const auto started = std::chrono::steady_clock::now();
  const auto result = tracker.flush(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  EXPECT_FALSE(result.complete);
  EXPECT_EQ(result.remaining, 2u);
  sink_->open_gate();
  EXPECT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().stored, 2u);
}

TEST_F(TrackerTest, DropPolicyCountsExactlyWhatDidNotFit) {
  sink_->close_gate();
  auto o = options();
  o.queue_capacity = 8;
  o.batch_size = 1;
  o.on_full = OverflowPolicy::drop;
  Tracker tracker(o);
  tracker.track(make_event(0));
  ASSERT_TRUE(sink_->wait_entered(1));  // the dispatcher holds event 0 at the gate
  for (std::uint32_t i = 1; i <= 8; ++i) EXPECT_TRUE(tracker.track(make_event(i)));
  for (std::uint32_t i = 9; i < 14; ++i) EXPECT_FALSE(tracker.track(make_event(i)));
  EXPECT_EQ(tracker.stats().dropped, 5u);
  sink_->open_gate();
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.stored, 9u);
  EXPECT_EQ(stats.dropped, 5u);
  EXPECT_EQ(stats.accepted, 14u);
}

TEST_F(TrackerTest, BlockPolicyWaitsForRoom) {
  sink_->close_gate();
  auto o = options();
  o.queue_capacity = 2;
  o.batch_size = 1;
  o.on_full = OverflowPolicy::block;
  Tracker tracker(o);
  tracker.track(make_event(0));
  ASSERT_TRUE(sink_->wait_entered(1));
  tracker.track(make_event(1));
  tracker.track(make_event(2));
  std::atomic<bool> returned{false};
  std::thread producer([&] {
    EXPECT_TRUE(tracker.track(make_event(3)));
    returned = true;
  });
  EXPECT_FALSE(returned.load());  // the queue is full and the consumer is held
  sink_->open_gate();
  producer.join();
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.stored, 4u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.spooled, 0u);
}

TEST_F(TrackerTest, SpoolPolicySpoolsWhatDidNotFit) {
  sink_->close_gate();
  auto o = options();
  o.queue_capacity = 2;
  o.batch_size = 1;
  o.drain_spool = false;
  Tracker tracker(o);
  tracker.track(make_event(0));
  ASSERT_TRUE(sink_->wait_entered(1));
  for (std::uint32_t i = 1; i <= 5; ++i) EXPECT_TRUE(tracker.track(make_event(i)));
  EXPECT_EQ(tracker.stats().spooled, 3u);
  EXPECT_EQ(spool_count(), 3);
  sink_->open_gate();
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().stored, 3u);
}

TEST_P(TrackerSinkTest, BadRowsAreIsolatedAndDeadLettered) {
  auto o = options();
  o.batch_size = 20;
  Tracker tracker(o);
  sink_->reject_id(make_event(3).event_id);
  sink_->reject_id(make_event(17).event_id);
  for (std::uint32_t i = 0; i < 20; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.flush(30s).complete);

  const auto stats = tracker.stats();
  EXPECT_EQ(stats.stored, 18u);
  EXPECT_EQ(stats.rejected_by_db, 2u);
  std::set<Uuid> stored;
  for (const auto& e : sink_->stored()) stored.insert(e.event_id);
  std::set<Uuid> expected;
  for (std::uint32_t i = 0; i < 20; ++i) {
    if (i != 3 && i != 17) expected.insert(make_event(i).event_id);
  }
  EXPECT_EQ(stored, expected);

  std::ifstream dead(dir_ / "dead-letter.jsonl");
  std::set<std::string> dead_ids;
  for (std::string line; std::getline(dead, line);) {
    const auto doc = nlohmann::json::parse(line);
    dead_ids.insert(doc.at("event_id").get<std::string>());
    EXPECT_EQ(doc.at("sqlstate"), "22P02");
  }
  EXPECT_EQ(dead_ids, (std::set<std::string>{make_event(3).event_id.to_string(),
                                             make_event(17).event_id.to_string()}));
}

TEST_P(TrackerSinkTest, TransientFailuresAreRetriedAndCounted) {
  sink_->fail_next(2, Failure{Disposition::retry, "08006", "connection lost"});
  Tracker tracker(options());
  for (std::uint32_t i = 0; i < 5; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.stored, 5u);
  EXPECT_EQ(stats.spooled, 0u);
  EXPECT_EQ(sink_->writes(), 3u);
}

TEST_P(TrackerSinkTest, PersistentFailureSpoolsTheBatchAndLaterDrainsIt) {
  sink_->fail_next(3, Failure{Disposition::retry, "08006", "connection lost"});
  auto clock = std::make_shared<test::FakeClock>();
  auto o = options();
  o.clock = clock;
  // Retries come at once; the probe after giving up is scheduled a (fake) while later.
  auto draws = std::make_shared<std::atomic<int>>(0);
  o.jitter = [draws] { return ++*draws <= 2 ? 0.0 : 0.99; };
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 4; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().spooled, 4u);
  EXPECT_EQ(tracker.stats().retries, 2u);  // the third failure gave up instead of retrying

  // Until the next probe is due, new batches go straight to the spool.
  tracker.track(make_event(10));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().spooled, 5u);

  clock->advance(1min);
  tracker.track(make_event(11));
  ASSERT_TRUE(tracker.flush(30s).complete);
  ASSERT_TRUE(eventually([&] { return tracker.stats().unspooled == 5; }));
  EXPECT_EQ(tracker.stats().stored, 6u);
  EXPECT_EQ(sink_->stored_count(), 6u);
  EXPECT_EQ(spool_count(), 0);
}

TEST_P(TrackerSinkTest, HoldSpoolsAtOnce) {
  sink_->fail_next(1, Failure{Disposition::hold, "42501", "permission denied"});
  std::atomic<int> errors{0};
  auto o = options();
  o.on_error = [&](const ErrorInfo& info) {
    EXPECT_EQ(info.sqlstate, "42501");
    ++errors;
  };
  Tracker tracker(o);
  tracker.track(make_event(1));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().spooled, 1u);
  EXPECT_EQ(tracker.stats().retries, 0u);
  EXPECT_EQ(errors.load(), 1);
  EXPECT_EQ(spool_count(), 1);
}

TEST_F(TrackerTest, InvalidInputIsRejectedNotQueued) {
  Tracker tracker(options());
  tracker.track(0, 1, "user.signed_in");                                  // org_id < 1
  tracker.track(1, 1, "Not A Name");                                      // bad name
  tracker.track(1, 1, "user.signed_in", nlohmann::json::array());         // metadata not an object
  tracker.track(1, 1, "user.signed_in", {{"bad", std::string("\xff")}});  // invalid UTF-8
  const nlohmann::json bad_utf8 = {{"bad", std::string("\xff")}};
  tracker.track(1, 1, "user.signed_in", bad_utf8);  // the same, serialised in the call
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.rejected, 5u);
  EXPECT_EQ(stats.accepted, 0u);
  EXPECT_EQ(sink_->stored_count(), 0u);
}

// At the limits set in limits_options(), then one past each, and NULs; the last object is
// fine but its event is not (user_id 0).
std::vector<nlohmann::json> objects_at_and_past_the_limits() {
  using nlohmann::json;
  return {{{"a", {{"b", json::object()}}}, {"c", 1}, {"d", 2}, {"e", json::array({1, 2})}},
          {{"a", {{"b", {{"c", json::object()}}}}}},  // level 5
          {{"a", json::array({json::array({json::array()})})}},
          {{"k1", 1}, {"k2", 2}, {"k3", 3}, {"k4", 4}, {"k5", 5}, {"k6", 6}},  // 6 keys
          {{"s", std::string("a\0b", 3)}},                                     // NUL
          {{std::string("k\0", 2), 1}},                                        // NUL key
          {{"big", std::string(300, 'x')}},                                    // bytes
          {{"bad", std::string("\xff")}},                                      // invalid UTF-8
          {{"ok", true}}};
}

class TrackerLimitsTest : public TrackerTest, public ::testing::WithParamInterface<bool> {
 protected:
  TrackerOptions limits_options() {
    TrackerOptions o = options();
    o.limits.max_depth = 4;  // metadata is level 2, so two nested levels fit
    o.limits.max_keys = 5;
    o.limits.max_metadata_bytes = 200;
    return o;
  }
};

TEST_P(TrackerLimitsTest, MetadataLimitsHoldForJsonObjects) {
  // track(json) checks the limits on the DOM and leaves anything near them to the validator:
  // at the limits is accepted, one past each is rejected, and so is a NUL anywhere. The same
  // whether the object is serialised in the call (const&) or by the dispatcher (moved in).
  const bool moved = GetParam();
  Tracker tracker(limits_options());
  auto objects = objects_at_and_past_the_limits();
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const std::int64_t user = i + 1 == objects.size() ? 0 : 1;
    if (moved) {
      tracker.track(1, user, "user.signed_in", std::move(objects[i]));
    } else {
      const nlohmann::json& object = objects[i];
      tracker.track(1, user, "user.signed_in", object);
    }
  }
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.accepted, 1u);
  EXPECT_EQ(stats.rejected, 8u);
  EXPECT_EQ(stats.stored, 1u);
  ASSERT_EQ(sink_->stored_count(), 1u);
  EXPECT_EQ(sink_->stored()[0].metadata, R"({"a":{"b":{}},"c":1,"d":2,"e":[1,2]})");
  if (!moved) {
    EXPECT_EQ(objects[1].dump(), R"({"a":{"b":{"c":{}}}})");  // untouched
  }
}

std::string moved_or_not(const ::testing::TestParamInfo<bool>& param_info) {
  return param_info.param ? "Moved" : "ByReference";
}

INSTANTIATE_TEST_SUITE_P(ByReferenceAndMoved, TrackerLimitsTest, ::testing::Bool(), moved_or_not);

TEST_F(TrackerTest, MovedMetadataIsSerialisedBeforeAnOverflowSpoolsOrDropsIt) {
  // A moved-in object waits in the queue as a DOM; an event that does not fit is serialised (and
  // checked) on the caller's thread before it is spooled or dropped.
  sink_->close_gate();
  auto o = options();
  o.queue_capacity = 2;
  o.batch_size = 1;
  o.drain_spool = false;
  o.limits.max_keys = 3;
  Tracker tracker(o);
  tracker.track(1, 1, "user.signed_in", {{"n", 0}});
  ASSERT_TRUE(sink_->wait_entered(1));
  for (int i = 1; i <= 5; ++i) tracker.track(1, 1, "user.signed_in", {{"n", i}});
  tracker.track(1, 1, "user.signed_in", {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}});  // too many
  EXPECT_EQ(tracker.stats().spooled, 3u);
  EXPECT_EQ(tracker.stats().rejected, 1u);
  auto spool = detail::Spool::open(dir_);
  std::vector<std::string> spooled;
  const auto claim = spool->claim(10, std::chrono::seconds(60));
  ASSERT_TRUE(claim) << claim.error().message;
  for (const auto& claimed : *claim) {
    spooled.push_back(claimed.event.metadata);
  }
  EXPECT_EQ(spooled, (std::vector<std::string>{R"({"n":3})", R"({"n":4})", R"({"n":5})"}));
  sink_->open_gate();
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.accepted, 6u);
  EXPECT_EQ(stats.stored, 3u);
  EXPECT_EQ(stats.spooled, 3u);
  const auto stored = sink_->stored();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(stored[0].metadata, R"({"n":0})");
  EXPECT_EQ(stored[2].metadata, R"({"n":2})");
}

TEST_P(TrackerSinkTest, DestructorIsBoundedWithAHungSinkAndSpoolsTheRest) {
  sink_->close_gate();
  auto o = options();
  o.shutdown_timeout = 200ms;
  o.batch_size = 3;
  auto tracker = std::make_unique<Tracker>(o);
  for (std::uint32_t i = 0; i < 3; ++i) tracker->track(make_event(i));
  ASSERT_TRUE(sink_->wait_entered(1));  // this write never returns while the test runs
  tracker->track(make_event(3));
  tracker->track(make_event(4));
  const auto started = std::chrono::steady_clock::now();
  tracker.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(spool_count(), 5);  // the batch stuck in the sink and the two queued events
  sink_->open_gate();
  ASSERT_TRUE(sink_->wait_completed(1));
}

TEST_P(TrackerSinkTest, CloseReturnsFinalCountersWithAHungSink) {
  sink_->close_gate();
  auto o = options();
  o.batch_size = 3;
  auto tracker = std::make_unique<Tracker>(o);
  for (std::uint32_t i = 0; i < 3; ++i) tracker->track(make_event(i));
  ASSERT_TRUE(sink_->wait_entered(1));  // held at the gate past the close deadline
  tracker->track(make_event(3));
  tracker->track(make_event(4));
  const auto started = std::chrono::steady_clock::now();
  const Stats stats = tracker->close(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(stats.accepted, 5u);
  EXPECT_EQ(stats.spooled, 5u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(spool_count(), 5);
  EXPECT_EQ(tracker->close(1s).spooled, 5u);  // idempotent
  sink_->open_gate();
  ASSERT_TRUE(sink_->wait_completed(1));
  EXPECT_EQ(tracker->stats().spooled, 5u);  // the late write changes nothing after close()
  tracker.reset();
}

TEST_P(TrackerSinkTest, CloseCountsWhatCouldNotBeSpooledAsDropped) {
  sink_->close_gate();
  auto o = options();
  o.batch_size = 1;
  std::ofstream(dir_ / "blocker") << "a file, not a directory";
  o.spool_dir = dir_ / "blocker" / "spool";  // cannot be created: every spool write fails
  auto tracker = std::make_unique<Tracker>(o);
  tracker->track(make_event(0));
  ASSERT_TRUE(sink_->wait_entered(1));
  for (std::uint32_t i = 1; i < 4; ++i) tracker->track(make_event(i));
  const Stats stats = tracker->close(0ms);
  EXPECT_EQ(stats.accepted, 4u);
  EXPECT_EQ(stats.spooled, 0u);
  EXPECT_EQ(stats.dropped, 4u);
  sink_->open_gate();
  tracker.reset();
}

TEST_F(TrackerTest, DurableEventsAreSpooledBeforeSyncReturnsThenDeliveredAndRemoved) {
  sink_->close_gate();  // nothing can be delivered yet: sync() must not depend on the sink
  auto o = options();
  o.durable = true;
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 10; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.sync(30s));
  EXPECT_EQ(spool_count(), 10);
  EXPECT_EQ(sink_->stored_count(), 0u);

  sink_->open_gate();
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_TRUE(eventually([&] { return spool_count() == 0; }));
  const Stats stats = tracker.close(5s);
  EXPECT_EQ(stats.accepted, 10u);
  EXPECT_EQ(stats.stored, 10u);
  EXPECT_EQ(stats.unspooled, 0u);  // our own events, not replays of older leftovers
  EXPECT_EQ(stats.spooled, 0u);
  EXPECT_EQ(sink_->stored_count(), 10u);
}

TEST_F(TrackerTest, DurableCloseCountsWhatIsStillInTheSpool) {
  sink_->close_gate();
  auto o = options();
  o.durable = true;
  auto tracker = std::make_unique<Tracker>(o);
  for (std::uint32_t i = 0; i < 7; ++i) tracker->track(make_event(i));
  ASSERT_TRUE(tracker->sync(30s));
  ASSERT_TRUE(sink_->wait_entered(1));  // the drain is stuck in the sink
  const Stats stats = tracker->close(100ms);
  EXPECT_EQ(stats.accepted, 7u);
  EXPECT_EQ(stats.spooled, 7u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(spool_count(), 7);
  sink_->open_gate();
  ASSERT_TRUE(sink_->wait_completed(1));
  tracker.reset();
}

// Durable mode: our spooled events delivered by another process (a concurrent `trackevent flush`)
// are noticed: flush() does not wait for them, close() does not count them as spooled.
TEST_F(TrackerTest, DurableNoticesItsEventsDeliveredByAnotherProcess) {
  auto clock = std::make_shared<test::FakeClock>();
  auto o = options();
  o.durable = true;
  o.clock = clock;
  sink_->fail_next(1, Failure{Disposition::hold, "42501", "permission denied"});
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 5; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.sync(30s));
  ASSERT_TRUE(sink_->wait_completed(1));  // refused: held in the spool until the next probe
  // Another process claims and delivers them meanwhile.
  {
    auto other = detail::Spool::open(dir_);
    std::vector<detail::SpooledEvent> claimed;
    ASSERT_TRUE(eventually([&] {
      if (auto claim = other->claim(100, 60s)) claimed = std::move(claim).value();
      return !claimed.empty();
    }));
    ASSERT_EQ(claimed.size(), 5u);
    std::vector<std::int64_t> ids;
    for (const auto& c : claimed) ids.push_back(c.spool_id);
    ASSERT_TRUE(other->remove(ids));
  }
  clock->advance(std::chrono::seconds{31});  // past the hold probe
  const auto result = tracker.flush(5s);
  EXPECT_TRUE(result.complete);
  const Stats st = tracker.close(5s);
  EXPECT_EQ(st.accepted, 5u);
  EXPECT_EQ(st.spooled, 0u);
  EXPECT_EQ(st.stored, 5u);
  EXPECT_EQ(sink_->stored_count(), 0u);
}

#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitizer = true;
#else
constexpr bool kThreadSanitizer = false;
#endif

TEST_F(TrackerTest, ForkedChildRestartsWithItsOwnConnectionAndNoDeadlock) {
  // TSan refuses to start threads in a child forked from a multi-threaded process.
  if (kThreadSanitizer) GTEST_SKIP() << "ThreadSanitizer does not support threads after fork";
  // Not a SQLite store: SQLite's per-process lock bookkeeping for the file comes along into the
  // child with the parent's (leaked) connection, so a new connection there can wait on a lock
  // nobody will release. A PostgreSQL sink is reopened cleanly; here a lock-free sink stands in.
  auto sink = std::make_shared<test::CountingSink>();
  auto o = options();
  o.sink = sink;
  o.flush_interval = 5ms;
  o.queue_capacity = 256;
  o.on_full = OverflowPolicy::block;
  Tracker tracker(o);

  std::atomic<bool> stop{false};
  std::atomic<std::uint32_t> produced{0};
  std::thread producer([&] {
    while (!stop.load()) {
      tracker.track(make_event(produced.load()));
      produced.fetch_add(1);
    }
  });
  ASSERT_TRUE(eventually([&] { return produced.load() > 2000; }));

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: only this thread exists. Its events must be delivered by a new dispatcher.
    for (std::uint32_t i = 0; i < 100; ++i) tracker.track(make_event(10'000'000 + i));
    const bool delivered = tracker.flush(20s).complete && tracker.stats().stored == 100;
    ::_exit(delivered ? 0 : 1);
  }
  int status = -1;
  const bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 40s);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  stop = true;
  producer.join();
  ASSERT_TRUE(exited) << "the forked child deadlocked";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's events were not delivered";

  // The parent goes on as if nothing happened: its own events are all accounted for.
  ASSERT_TRUE(tracker.flush(30s).complete);
  const Stats stats = tracker.stats();
  EXPECT_EQ(stats.accepted, produced.load());
  EXPECT_EQ(stats.stored + stats.duplicates + stats.spooled, produced.load());
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(sink->stored(), stats.stored);  // the child's writes went to its own copy
}

TEST_P(TrackerSinkTest, DestructorDeliversWhatIsQueued) {
  {
    Tracker tracker(options());
    for (std::uint32_t i = 0; i < 50; ++i) tracker.track(make_event(i));
  }
  EXPECT_EQ(sink_->stored_count(), 50u);
}

TEST_P(TrackerSinkTest, DestructorWithZeroTimeoutSpoolsAtOnce) {
  sink_->close_gate();
  auto o = options();
  o.shutdown_timeout = 0ms;
  o.batch_size = 1;
  {
    Tracker tracker(o);
    tracker.track(make_event(0));
    ASSERT_TRUE(sink_->wait_entered(1));
    for (std::uint32_t i = 1; i < 10; ++i) tracker.track(make_event(i));
  }
  EXPECT_EQ(spool_count(), 10);
  sink_->open_gate();
  ASSERT_TRUE(sink_->wait_completed(1));
}

TEST_P(TrackerSinkTest, ThrowingErrorCallbackDoesNotKillTheWorker) {
  auto o = options();
  o.batch_size = 1;
  std::atomic<int> calls{0};
  o.on_error = [&](const ErrorInfo&) {
    ++calls;
    throw std::runtime_error("callback bug");
  };
  sink_->reject_id(make_event(0).event_id);
  Tracker tracker(o);
  tracker.track(make_event(0));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(calls.load(), 1);
  for (std::uint32_t i = 1; i <= 3; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().stored, 3u);
  EXPECT_EQ(tracker.stats().rejected_by_db, 1u);
}

TEST_F(TrackerTest, NoSinkHoldsEverythingInTheSpool) {
  auto o = options();
  o.sink = nullptr;
  o.database_url = "not-a-database://";
  Tracker tracker(o);
  tracker.track(make_event(1));
  ASSERT_TRUE(tracker.flush(30s).complete);
  EXPECT_EQ(tracker.stats().spooled, 1u);
  EXPECT_EQ(spool_count(), 1);
}

TEST_P(TrackerSinkTest, FourProducersAllAccountedFor) {
  auto o = options();
  o.queue_capacity = 1024;
  o.batch_size = 500;
  o.flush_interval = 5ms;
  o.drain_spool = false;  // so stored counts only live deliveries
  Tracker tracker(o);
  constexpr std::uint32_t kPerThread = 10000;
  std::vector<std::thread> producers;
  for (std::uint32_t t = 0; t < 4; ++t) {
    producers.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < kPerThread; ++i) tracker.track(make_event(t * kPerThread + i));
    });
  }
  for (auto& p : producers) p.join();
  ASSERT_TRUE(tracker.flush(60s).complete);
  const auto stats = tracker.stats();
  EXPECT_EQ(stats.accepted, 4 * kPerThread);
  EXPECT_EQ(stats.stored + stats.spooled, 4 * kPerThread);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(sink_->stored_count(), stats.stored);
  if (stats.spooled > 0) {
    EXPECT_EQ(spool_count(), static_cast<std::int64_t>(stats.spooled));
  }
}

// close() that gives up on a hung write still accounts for every accepted event exactly once,
// including those the dispatcher had already taken into its next batch (pipelined: while the
// connections were busy).
TEST_P(TrackerSinkTest, CloseAccountsForEveryEventWhenAWriteHangs) {
  auto o = options();
  o.batch_size = 10;
  sink_->close_gate();
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 10; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(sink_->wait_entered(1));
  for (std::uint32_t i = 10; i < 15; ++i) tracker.track(make_event(i));
  std::this_thread::sleep_for(100ms);  // pipelined: the dispatcher takes them into its next batch
  const Stats st = tracker.close(0ms);
  EXPECT_EQ(st.accepted, 15u);
  EXPECT_EQ(st.stored + st.duplicates + st.rejected_by_db + st.spooled + st.dropped, st.accepted);
  EXPECT_EQ(st.spooled, 15u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(spool_count(), 15);
}

// The same under a retry pause: the batch waiting to be written again is close()'s to spool.
TEST_F(TrackerTest, CloseDuringARetryPauseSpoolsTheBatchOnce) {
  auto o = options();
  o.batch_size = 4;
  o.jitter = [] { return 0.99; };  // a pause of ~0.5 s before the second attempt
  sink_->fail_next(1, Failure{Disposition::retry, "08006", "connection lost"});
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 4; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(sink_->wait_completed(1));
  sink_->close_gate();  // the second attempt, if any, hangs
  const Stats st = tracker.close(0ms);
  EXPECT_EQ(st.accepted, 4u);
  EXPECT_EQ(st.stored + st.spooled + st.dropped, 4u);
  EXPECT_EQ(spool_count(), static_cast<std::int64_t>(st.spooled));
}

// on_error must never run once close() has returned: what the callback captured may be gone.
TEST_F(TrackerTest, NoErrorCallbackRunsAfterCloseReturns) {
  auto o = options();
  o.batch_size = 2;
  struct Seen {
    std::atomic<bool> closed{false};
    std::atomic<int> late{0};
  };
  auto seen = std::make_shared<Seen>();
  o.on_error = [seen](const ErrorInfo&) {
    if (seen->closed) ++seen->late;
  };
  const Event bad = make_event(2);
  sink_->reject_id(bad.event_id);
  sink_->close_gate();
  Tracker tracker(o);
  tracker.track(make_event(1));
  tracker.track(bad);
  ASSERT_TRUE(sink_->wait_entered(1));
  (void)tracker.close(0ms);
  seen->closed = true;
  // The abandoned write returns now, refused: isolating the bad row would report it.
  sink_->open_gate();
  ASSERT_TRUE(sink_->wait_completed(1));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(seen->late.load(), 0);
  EXPECT_EQ(spool_count(), 2);
}

/// Statements of more than `most` rows always exceed the statement timeout (57014).
class SlowOverRows final : public Sink {
 public:
  explicit SlowOverRows(std::size_t most) : most_(most) {}
  WriteResult write(std::span<const Event> batch) noexcept override {
    std::lock_guard lock(mutex_);
    WriteResult result;
    if (batch.size() > most_) {
      result.failure =
          Failure{Disposition::retry, "57014", "canceling statement due to statement timeout"};
      return result;
    }
    for (const auto& e : batch)
      (stored_.insert(e.event_id).second ? result.stored : result.duplicates)++;
    return result;
  }
  [[nodiscard]] std::string describe() const override { return "slow"; }
  bool has(const Uuid& id) {
    std::lock_guard lock(mutex_);
    return stored_.contains(id);
  }

 private:
  std::mutex mutex_;
  std::size_t most_;
  std::set<Uuid> stored_;
};

// A batch that keeps exceeding statement_timeout is not retried and replayed at the same size
// forever: it is written in smaller statements until they fit.
TEST_F(TrackerTest, BatchesThatKeepTimingOutAreWrittenInSmallerStatements) {
  auto slow = std::make_shared<SlowOverRows>(3);
  auto o = options();
  o.sink = slow;
  o.batch_size = 16;
  Tracker tracker(o);
  for (std::uint32_t i = 0; i < 16; ++i) tracker.track(make_event(i));
  ASSERT_TRUE(tracker.flush(30s).complete);
  const auto all_stored = [&] {
    for (std::uint32_t i = 0; i < 16; ++i) {
      if (!slow->has(make_event(i).event_id)) return false;
    }
    return true;
  };
  // Spooled rows are replayed after each live write that succeeds: keep a trickle going.
  for (std::uint32_t i = 100; i < 200 && !all_stored(); ++i) {
    tracker.track(make_event(i));
    ASSERT_TRUE(tracker.flush(30s).complete);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(all_stored());
}

}  // namespace
}  // namespace trackevent
