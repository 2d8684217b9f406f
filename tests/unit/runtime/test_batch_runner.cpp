// BatchRunner: the dispatcher's one way to hand batches to a sink; SyncRunner for a plain Sink.

#include "runtime/batch_runner.hpp"
#include "support/fake_sink.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

namespace trackevent::detail {
namespace {

using namespace std::chrono_literals;

BatchRunner::Batch make_batch(std::uint8_t first, std::size_t n) {
  std::vector<Event> events(n);
  for (std::size_t i = 0; i < n; ++i) {
    events[i].event_id.bytes[15] = static_cast<std::uint8_t>(first + i);
    events[i].org_id = 1;
    events[i].event_name = "test.event";
  }
  return std::make_shared<const std::vector<Event>>(std::move(events));
}

TEST(SyncRunner, WritesWithinSubmitAndHandsTheResultBack) {
  auto sink = std::make_shared<test::FakeSink>();
  SyncRunner runner(sink);
  EXPECT_TRUE(runner.has_free_lane());
  EXPECT_EQ(runner.outstanding(), 0u);
  EXPECT_FALSE(runner.next_done(0ms).has_value());

  const auto batch = make_batch(0, 3);
  runner.submit(batch);
  EXPECT_EQ(sink->writes(), 1u);  // written already
  EXPECT_FALSE(runner.has_free_lane());
  EXPECT_EQ(runner.outstanding(), 1u);

  auto done = runner.next_done(0ms);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->batch, batch);
  EXPECT_TRUE(done->result.ok());
  EXPECT_EQ(done->result.stored, 3u);
  EXPECT_TRUE(runner.has_free_lane());
  EXPECT_EQ(runner.outstanding(), 0u);
}

TEST(SyncRunner, HandsFailuresBackAsTheyCame) {
  auto sink = std::make_shared<test::FakeSink>();
  sink->fail_next(1, Failure{Disposition::hold, "42501", "permission denied"});
  SyncRunner runner(sink);
  runner.submit(make_batch(0, 2));
  auto done = runner.next_done(0ms);
  ASSERT_TRUE(done.has_value());
  ASSERT_FALSE(done->result.ok());
  EXPECT_EQ(done->result.failure->sqlstate, "42501");
}

/// A sink that runs batches itself (as ParallelSink does).
class RunningSink final : public Sink, public BatchRunner {
 public:
  WriteResult write(std::span<const Event>) noexcept override { return {}; }
  [[nodiscard]] std::string describe() const override { return "running"; }
  [[nodiscard]] bool has_free_lane() const noexcept override { return true; }
  void submit(Batch) noexcept override {}
  [[nodiscard]] std::optional<Done> next_done(
      std::chrono::steady_clock::duration) noexcept override {
    return std::nullopt;
  }
  [[nodiscard]] std::size_t outstanding() const noexcept override { return 0; }
};

TEST(MakeRunner, ASinkThatRunsBatchesIsItsOwnRunnerAnyOtherGetsASyncRunner) {
  EXPECT_EQ(make_runner(nullptr), nullptr);
  auto running = std::make_shared<RunningSink>();
  EXPECT_EQ(make_runner(running).get(), static_cast<BatchRunner*>(running.get()));
  auto plain = std::make_shared<test::FakeSink>();
  auto runner = make_runner(plain);
  ASSERT_NE(runner, nullptr);
  EXPECT_NE(dynamic_cast<SyncRunner*>(runner.get()), nullptr);
}

}  // namespace
}  // namespace trackevent::detail
