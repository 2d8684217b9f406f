#include "log/log.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace trackevent::log {
namespace {

class Capture final : public LineSink {
 public:
  void line(std::string_view text) override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(text);
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    flush_suppressed();  // nothing left over from another test
    set_line_sink(&capture_);
    init(Format::json, Level::info);
  }
  void TearDown() override {
    set_line_sink(nullptr);
    init(Format::json, Level::info);
  }
  Capture capture_;
};

const std::regex kTs(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");

TEST_F(LogTest, JsonLineHasTsLevelMsgFirstThenFields) {
  error("rejected event", {{"source", "stdin"}, {"line", 12}, {"err", "org_id: \"bad\""}});
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  const auto doc = nlohmann::ordered_json::parse(lines[0]);
  auto it = doc.begin();
  ASSERT_EQ(doc.size(), 6u);
  EXPECT_EQ(it.key(), "ts");
  EXPECT_TRUE(std::regex_match(it.value().get<std::string>(), kTs)) << it.value();
  ++it;
  EXPECT_EQ(it.key(), "level");
  EXPECT_EQ(it.value(), "error");
  ++it;
  EXPECT_EQ(it.key(), "msg");
  EXPECT_EQ(it.value(), "rejected event");
  EXPECT_EQ(doc["source"], "stdin");
  EXPECT_EQ(doc["line"], 12);
  EXPECT_EQ(doc["err"], "org_id: \"bad\"");
}

TEST_F(LogTest, LevelNames) {
  init(Format::json, Level::trace);
  write(Level::trace, "a");
  debug("b");
  info("c");
  warn("d");
  error("e");
  write(Level::critical, "f");
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 6u);
  const char* names[] = {"trace", "debug", "info", "warn", "error", "critical"};
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(nlohmann::json::parse(lines[i])["level"], names[i]);
  }
}

TEST_F(LogTest, ReservedKeysInFieldsAreIgnored) {
  info("hello", {{"msg", "spoof"}, {"level", "x"}, {"ts", 1}, {"n", 1}});
  const auto doc = nlohmann::json::parse(capture_.lines().at(0));
  EXPECT_EQ(doc["msg"], "hello");
  EXPECT_EQ(doc["level"], "info");
  EXPECT_EQ(doc.size(), 4u);
}

TEST_F(LogTest, InvalidUtf8NeverThrowsAndStaysValidJson) {
  info(std::string("bad \xff byte"), {{"err", std::string("\xc3")}});
  ASSERT_EQ(capture_.lines().size(), 1u);
  EXPECT_TRUE(nlohmann::json::accept(capture_.lines()[0]));
}

TEST_F(LogTest, NothingBelowTheLevel) {
  init(Format::json, Level::error);
  info("quiet");
  warn("quiet");
  write_limited(Level::info, "k.quiet", "quiet");
  error("loud");
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["msg"], "loud");
  init(Format::json, Level::off);
  write(Level::critical, "silent");
  EXPECT_EQ(capture_.lines().size(), 1u);
}

TEST_F(LogTest, RateLimitHoldsBackAndReportsTheCount) {
  const auto before = suppressed_total();
  for (int i = 0; i < 15; ++i) write_limited(Level::error, "test.burst", "boom", {{"i", i}}, 10);
  EXPECT_EQ(capture_.lines().size(), 10u);
  EXPECT_EQ(suppressed_total() - before, 5u);

  // The window is one second of real time; the next line after it carries the count.
  std::this_thread::sleep_for(std::chrono::milliseconds{1100});
  write_limited(Level::error, "test.burst", "boom", {{"i", 15}}, 10);
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 11u);
  const auto doc = nlohmann::json::parse(lines.back());
  EXPECT_EQ(doc["suppressed"], 5);
  EXPECT_EQ(doc["i"], 15);
}

TEST_F(LogTest, FlushSuppressedReportsWhatIsStillHeldBack) {
  for (int i = 0; i < 4; ++i) write_limited(Level::warn, "test.flush", "again", {}, 1);
  ASSERT_EQ(capture_.lines().size(), 1u);
  flush_suppressed();
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 2u);
  const auto doc = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(doc["level"], "warn");
  EXPECT_EQ(doc["key"], "test.flush");
  EXPECT_EQ(doc["suppressed"], 3);
  flush_suppressed();  // nothing is reported twice
  EXPECT_EQ(capture_.lines().size(), 2u);
}

TEST_F(LogTest, KeysAreLimitedIndependently) {
  write_limited(Level::error, "test.a", "a", {}, 1);
  write_limited(Level::error, "test.b", "b", {}, 1);
  write_limited(Level::error, "test.a", "a", {}, 1);
  EXPECT_EQ(capture_.lines().size(), 2u);
  flush_suppressed();
}

TEST_F(LogTest, TextFormatShape) {
  init(Format::text, Level::info);
  error("rejected event", {{"source", "stdin"}, {"line", 12}, {"err", "a b"}});
  info("summary");
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 2u);
  const std::regex shape(
      R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z ERROR rejected event  source=stdin line=12 err="a b")");
  EXPECT_TRUE(std::regex_match(lines[0], shape)) << lines[0];
  EXPECT_TRUE(std::regex_match(lines[1], std::regex(R"(\S+ INFO  summary)"))) << lines[1];
}

TEST_F(LogTest, FieldsKeepTheOrderTheyWereGivenIn) {
  init(Format::json, Level::info);
  error("failed to record analytics event",
        {{"org_id", 1}, {"user_id", 2}, {"event_name", "dataset.uploaded"}, {"err", "x"}});
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  EXPECT_NE(line.find(R"("msg":"failed to record analytics event","org_id":1,"user_id":2,)"
                      R"("event_name":"dataset.uploaded","err":"x"})"),
            std::string::npos)
      << line;
}

TEST_F(LogTest, TextColorWrapsTheLevel) {
  init(Format::text, Level::info, true);
  error("x");
  const auto line = capture_.lines().at(0);
  EXPECT_NE(line.find("\x1b[31mERROR\x1b[0m"), std::string::npos) << line;
}

TEST_F(LogTest, ParseFormatAndLevel) {
  EXPECT_EQ(parse_format("json"), Format::json);
  EXPECT_EQ(parse_format("text"), Format::text);
  EXPECT_FALSE(parse_format("xml"));
  EXPECT_EQ(parse_level("warn"), Level::warn);
  EXPECT_EQ(parse_level("off"), Level::off);
  EXPECT_FALSE(parse_level("loud"));
}

TEST_F(LogTest, ConcurrentWritersProduceWholeLines) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) info("concurrent", {{"t", t}, {"i", i}});
    });
  }
  for (auto& th : threads) th.join();
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 800u);
  for (const auto& l : lines) EXPECT_TRUE(nlohmann::json::accept(l));
}

// --- Routing: an application's callback (TrackerOptions::log) ---------------------------------

struct Seen {
  LogLevel level;
  std::string key;
  std::string message;
  Fields fields;
};

class Recorder {
 public:
  LogCallback callback() {
    return [this](const LogRecord& r) {
      const std::lock_guard lock(mutex_);
      seen_.push_back({r.level, std::string(r.key), std::string(r.message), r.fields});
    };
  }
  std::vector<Seen> seen() {
    const std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  std::mutex mutex_;
  std::vector<Seen> seen_;
};

TEST_F(LogTest, ARoutingGetsTheLinesUnformattedInsteadOfTheSink) {
  Recorder recorder;
  {
    Routing routing(recorder.callback());
    write_limited(Level::warn, "test.route", "batch write failed; retrying",
                  {{"events", 5000}, {"err", "connection refused"}});
    info("database reachable again");
    debug("below the level");
  }
  EXPECT_TRUE(capture_.lines().empty());
  const auto seen = recorder.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].level, LogLevel::warn);
  EXPECT_EQ(seen[0].key, "test.route");
  EXPECT_EQ(seen[0].message, "batch write failed; retrying");
  EXPECT_EQ(seen[0].fields.dump(), R"({"events":5000,"err":"connection refused"})");
  EXPECT_EQ(seen[1].level, LogLevel::info);
  EXPECT_EQ(seen[1].key, "");
  EXPECT_EQ(seen[1].fields, Fields::object());
  // Closed: lines go to the sink again.
  info("after");
  EXPECT_EQ(capture_.lines().size(), 1u);
  EXPECT_EQ(recorder.seen().size(), 2u);
}

TEST_F(LogTest, TheNewestOpenRoutingWinsAndTheOneBeforeTakesOver) {
  Recorder older;
  Recorder newer;
  Routing first(older.callback());
  auto second = std::make_unique<Routing>(newer.callback());
  info("one");
  second->close();
  second->close();  // idempotent
  info("two");
  second.reset();
  first.close();
  info("three");
  ASSERT_EQ(newer.seen().size(), 1u);
  EXPECT_EQ(newer.seen()[0].message, "one");
  ASSERT_EQ(older.seen().size(), 1u);
  EXPECT_EQ(older.seen()[0].message, "two");
  ASSERT_EQ(capture_.lines().size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(capture_.lines()[0])["msg"], "three");
}

TEST_F(LogTest, ALineTheCallbackCausesGoesToTheSinkAndAThrowIsSwallowed) {
  int calls = 0;
  Routing routing([&](const LogRecord& r) {
    ++calls;
    error("from inside the callback", {{"outer", std::string(r.message)}});
    throw std::runtime_error("the application's logger failed");
  });
  warn("outer");
  warn("again");
  EXPECT_EQ(calls, 2);
  const auto lines = capture_.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["outer"], "outer");
}

TEST_F(LogTest, CloseWaitsForACallInProgressAndNoneStartsAfter) {
  std::mutex m;
  std::condition_variable cv;
  bool inside = false;
  bool release = false;
  std::atomic<int> calls{0};
  Routing routing([&](const LogRecord&) {
    calls.fetch_add(1);
    std::unique_lock lock(m);
    inside = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  std::thread writer([] { warn("slow"); });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return inside; });
  }
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    routing.close();
    closed.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds{100});
  EXPECT_FALSE(closed.load());  // still waiting for the call in progress
  {
    const std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  closer.join();
  writer.join();
  EXPECT_TRUE(closed.load());
  warn("after close");
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(capture_.lines().size(), 1u);
}

TEST_F(LogTest, ACallbackMayCloseItsOwnRouting) {
  std::unique_ptr<Routing> routing;
  int calls = 0;
  routing = std::make_unique<Routing>([&](const LogRecord&) {
    ++calls;
    routing->close();  // an application closing its Tracker from its logger
  });
  warn("closes");
  warn("after");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(capture_.lines().size(), 1u);
}

}  // namespace
}  // namespace trackevent::log
