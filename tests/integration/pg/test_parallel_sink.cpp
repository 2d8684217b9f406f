// ParallelSink: one batch over several PostgreSQL connections, and how part results combine.
#include "trackevent/event.hpp"

#include "config/database_url.hpp"
#include "pg/parallel_sink.hpp"
#include "support/fake_sink.hpp"
#include "support/net.hpp"
#include "support/pg.hpp"
#include "support/pg_schema.hpp"
#include "support/write_result.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using trackevent::Disposition;
using trackevent::Event;
using trackevent::Failure;
using trackevent::Sink;
using trackevent::WriteResult;
using trackevent::detail::ParallelSink;
using trackevent::test::closed_port;
using trackevent::test::describe;

Event make_event(std::uint64_t n) {
  Event e;
  e.event_id.bytes[0] = 0x01;
  e.event_id.bytes[6] = 0x70;  // version 7
  e.event_id.bytes[8] = 0x80;  // variant
  for (int i = 0; i < 7; ++i)
    e.event_id.bytes[9 + i] = static_cast<std::uint8_t>(n >> (48 - 8 * i));
  e.org_id = static_cast<std::int64_t>(1 + n % 11);
  if (n % 4 != 0) e.user_id = static_cast<std::int64_t>(1 + n % 1000);
  e.event_name = "dataset.uploaded";
  e.metadata = R"({"n":)" + std::to_string(n) + R"(,"tag":"parallel"})";
  e.occurred_at_us = 1'764'331'200'000'000 + static_cast<std::int64_t>(n);
  return e;
}

std::vector<Event> make_events(std::uint64_t first, std::size_t count) {
  std::vector<Event> v;
  v.reserve(count);
  for (std::size_t i = 0; i < count; ++i) v.push_back(make_event(first + i));
  return v;
}

/// What the dispatcher does with a rejected batch: halve until the bad rows stand alone.
struct Split {
  std::size_t stored = 0, duplicates = 0, bad = 0;
  void write(Sink& sink, std::span<const Event> batch) {
    if (batch.empty()) return;
    const WriteResult r = sink.write(batch);
    if (r.ok()) {
      stored += r.stored;
      duplicates += r.duplicates;
      return;
    }
    ASSERT_EQ(r.failure->disposition, Disposition::reject) << describe(r);
    if (batch.size() == 1) {
      ++bad;
      return;
    }
    write(sink, batch.first(batch.size() / 2));
    write(sink, batch.subspan(batch.size() / 2));
  }
};

// ---- against a real server ----

class ParallelPgSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (trackevent::test::pg_admin_url().empty()) return;  // each test skips itself
    url_ = trackevent::test::fresh_test_database("te_par_");
    trackevent::test::create_analytics_events(url_, trackevent::test::SchemaVia::schema_file);
  }

  std::int64_t count_rows(const std::string& where = "true") {
    pqxx::connection c{url_};
    pqxx::nontransaction tx{c};
    return tx.exec1("SELECT count(*) FROM analytics_events WHERE " + where)[0].as<std::int64_t>();
  }

  std::unique_ptr<Sink> sink(std::size_t connections = 2) {
    return trackevent::make_sink(trackevent::parse_database_url(url_), {}, connections);
  }

  std::string url_;
};

TEST_F(ParallelPgSinkTest, StoresEveryRowOnceThenCountsAllAsDuplicates) {
  TRACKEVENT_REQUIRE_PG();
  const auto events = make_events(0, 100'000);
  const auto s = sink(2);
  EXPECT_NE(s->describe().find("2 connections"), std::string::npos) << s->describe();
  const std::span<const Event> all(events);
  std::size_t stored = 0, duplicates = 0;
  for (std::size_t at = 0; at < all.size(); at += 5000) {
    const WriteResult r = s->write(all.subspan(at, 5000));
    ASSERT_TRUE(r.ok()) << describe(r);
    stored += r.stored;
    duplicates += r.duplicates;
  }
  EXPECT_EQ(stored, 100'000U);
  EXPECT_EQ(duplicates, 0U);
  EXPECT_EQ(count_rows(), 100'000);
  // Spot-check content: every org's rows arrived, and metadata round-trips.
  EXPECT_EQ(count_rows("metadata->>'tag' = 'parallel'"), 100'000);

  stored = duplicates = 0;
  for (std::size_t at = 0; at < all.size(); at += 5000) {
    const WriteResult r = s->write(all.subspan(at, 5000));
    ASSERT_TRUE(r.ok()) << describe(r);
    stored += r.stored;
    duplicates += r.duplicates;
  }
  EXPECT_EQ(stored, 0U);
  EXPECT_EQ(duplicates, 100'000U);
  EXPECT_EQ(count_rows(), 100'000);
}

TEST_F(ParallelPgSinkTest, ABadRowRejectsTheBatchAndSplittingStoresTheRest) {
  TRACKEVENT_REQUIRE_PG();
  auto events = make_events(1'000'000, 4000);
  events[3100].org_id = 0;  // bypasses validation; the table's CHECK refuses it (23514)
  const auto s = sink(2);
  const WriteResult first = s->write(events);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.failure->disposition, Disposition::reject) << describe(first);
  EXPECT_EQ(first.failure->sqlstate, "23514");
  EXPECT_EQ(first.stored, 0U);

  Split split;
  split.write(*s, events);
  EXPECT_EQ(split.bad, 1U);
  // The part without the bad row committed on the first write, so it comes back as duplicates.
  EXPECT_EQ(split.stored + split.duplicates, 3999U);
  EXPECT_EQ(count_rows(), 3999);
  EXPECT_EQ(count_rows("org_id = 0"), 0);
}

TEST_F(ParallelPgSinkTest, SmallBatchesUseOneConnection) {
  TRACKEVENT_REQUIRE_PG();
  const auto events = make_events(2'000'000, 700);
  const auto s = sink(2);
  const WriteResult r = s->write(events);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 700U);
  EXPECT_EQ(count_rows(), 700);
}

TEST_F(ParallelPgSinkTest, AConnectionTheServerRefusesIsSetAsideAndTheOthersWriteItsRows) {
  TRACKEVENT_REQUIRE_PG();
  const trackevent::test::OneConnectionRole role(url_);
  const auto s = trackevent::make_sink(trackevent::parse_database_url(role.url()), {}, 3);
  const auto events = make_events(4'000'000, 30'000);
  const std::span<const Event> all(events);
  std::size_t stored = 0;
  for (std::size_t at = 0; at < all.size(); at += 3000) {
    // Each batch is cut in three parts; two of them cannot get a connection (53300, too many
    // connections for the role) and are written on the one that works, in the same write.
    const WriteResult r = s->write(all.subspan(at, 3000));
    ASSERT_TRUE(r.ok()) << describe(r);
    stored += r.stored + r.duplicates;
  }
  EXPECT_EQ(stored, 30'000U);
  EXPECT_EQ(count_rows(), 30'000);
  const auto* parallel = dynamic_cast<const ParallelSink*>(s.get());
  ASSERT_NE(parallel, nullptr);
  EXPECT_EQ(parallel->set_aside_connections(), 2U);
  // Set aside, they no longer cut batches: one part, one connection.
  EXPECT_EQ(parallel->parts_for(3000), 1U);
}

TEST_F(ParallelPgSinkTest, PipelinedBatchesOfARefusedConnectionGoToTheOneThatWorks) {
  TRACKEVENT_REQUIRE_PG();
  const trackevent::test::OneConnectionRole role(url_);
  const auto s = trackevent::make_sink(trackevent::parse_database_url(role.url()), {}, 2);
  auto* parallel = dynamic_cast<ParallelSink*>(s.get());
  ASSERT_NE(parallel, nullptr);
  std::size_t stored = 0;
  std::size_t handed_back = 0;
  const auto take = [&] {
    auto done = parallel->next_done(30s);
    ASSERT_TRUE(done.has_value());
    ASSERT_TRUE(done->result.ok()) << describe(done->result);
    stored += done->result.stored;
    ++handed_back;
  };
  for (std::uint64_t b = 0; b < 10; ++b) {
    while (!parallel->has_free_lane()) take();
    parallel->submit(
        std::make_shared<const std::vector<Event>>(make_events(5'000'000 + b * 1000, 1000)));
  }
  while (parallel->outstanding() > 0) take();
  EXPECT_EQ(handed_back, 10U);
  EXPECT_EQ(stored, 10'000U);
  EXPECT_EQ(count_rows(), 10'000);
  EXPECT_EQ(parallel->set_aside_connections(), 1U);
}

TEST(ParallelPgSink, UnreachableServerIsARetryQuickly) {
  const std::string url =
      "postgresql://127.0.0.1:" + std::to_string(closed_port()) + "/none?connect_timeout=2";
  const auto s = trackevent::make_sink(trackevent::parse_database_url(url), {}, 2);
  const auto events = make_events(3'000'000, 5000);
  const auto t0 = std::chrono::steady_clock::now();
  const WriteResult r = s->write(events);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::retry) << describe(r);
  EXPECT_LT(took, 3s);
}

TEST(ParallelPgSink, SqliteIgnoresConnections) {
  const std::string path = ::testing::TempDir() + "te_parallel_sqlite.db";
  std::remove(path.c_str());
  const auto s = trackevent::make_sink(trackevent::parse_database_url("sqlite:" + path), {}, 4);
  EXPECT_EQ(s->describe().find("connections"), std::string::npos) << s->describe();
}

// ---- splitting and combining, with fake sinks ----

class FakeSink final : public Sink {
 public:
  explicit FakeSink(std::optional<Disposition> fail = std::nullopt,
                    std::chrono::microseconds per_row = {})
      : fail_(fail), per_row_(per_row) {}
  WriteResult write(std::span<const Event> batch) noexcept override {
    std::this_thread::sleep_for(per_row_ * static_cast<long>(batch.size()));
    {
      std::lock_guard lock(mutex_);
      for (const Event& e : batch) seen_.push_back(e.occurred_at_us);
      writer_ = std::this_thread::get_id();
    }
    WriteResult r;
    if (fail_) {
      r.failure = Failure{*fail_, "", "fake"};
    } else {
      r.stored = batch.size() - 1;
      r.duplicates = 1;
    }
    return r;
  }
  [[nodiscard]] std::string describe() const override { return "fake"; }
  std::vector<std::int64_t> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::thread::id writer() {
    std::lock_guard lock(mutex_);
    return writer_;
  }

 private:
  std::optional<Disposition> fail_;
  std::chrono::microseconds per_row_;
  std::mutex mutex_;
  std::vector<std::int64_t> seen_;
  std::thread::id writer_;
};

struct Fakes {
  std::vector<FakeSink*> raw;
  std::unique_ptr<ParallelSink> sink;
  explicit Fakes(std::vector<std::optional<Disposition>> fails,
                 std::vector<std::chrono::microseconds> per_row = {}) {
    std::vector<std::unique_ptr<Sink>> inner;
    for (std::size_t i = 0; i < fails.size(); ++i) {
      auto s = std::make_unique<FakeSink>(
          fails[i], i < per_row.size() ? per_row[i] : std::chrono::microseconds{});
      raw.push_back(s.get());
      inner.push_back(std::move(s));
    }
    sink = std::make_unique<ParallelSink>(std::move(inner));
  }
};

TEST(ParallelSinkSplit, ContiguousPartsOfAtLeastMinPartAndSummedCounts) {
  Fakes f({std::nullopt, std::nullopt, std::nullopt});
  EXPECT_EQ(f.sink->parts_for(0), 1U);
  EXPECT_EQ(f.sink->parts_for(999), 1U);
  EXPECT_EQ(f.sink->parts_for(1000), 2U);
  EXPECT_EQ(f.sink->parts_for(1499), 2U);
  EXPECT_EQ(f.sink->parts_for(1500), 3U);
  EXPECT_EQ(f.sink->parts_for(100000), 3U);

  const auto events = make_events(0, 5000);
  const WriteResult r = f.sink->write(events);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.stored, 5000U - 3U);
  EXPECT_EQ(r.duplicates, 3U);
  std::vector<std::int64_t> all;
  for (FakeSink* s : f.raw) {
    const auto seen = s->seen();
    EXPECT_GE(seen.size(), 1666U);
    EXPECT_LE(seen.size(), 1667U);
    all.insert(all.end(), seen.begin(), seen.end());
  }
  ASSERT_EQ(all.size(), events.size());
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], events[i].occurred_at_us);
  EXPECT_EQ(f.raw[0]->writer(), std::this_thread::get_id());
  EXPECT_NE(f.raw[1]->writer(), std::this_thread::get_id());
  EXPECT_NE(f.raw[1]->writer(), f.raw[2]->writer());
}

TEST(ParallelSinkSplit, PartSizesFollowEachConnectionsSpeed) {
  // Sink 0 takes four times as long per row as sink 1.
  Fakes f({std::nullopt, std::nullopt},
          {std::chrono::microseconds{40}, std::chrono::microseconds{10}});
  const auto events = make_events(0, 2000);
  const auto even = f.sink->part_sizes(2000, 2);
  EXPECT_EQ(even, (std::vector<std::size_t>{1000, 1000}));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(f.sink->write(events).ok());
  const auto sizes = f.sink->part_sizes(2000, 2);
  ASSERT_EQ(sizes.size(), 2U);
  EXPECT_EQ(sizes[0] + sizes[1], 2000U);
  EXPECT_LT(sizes[0], 800U) << sizes[0] << " + " << sizes[1];
  // Never below half the mean speed's share: the slow connection keeps being measured.
  EXPECT_GE(sizes[0], 2000U / 5);
  // Every row still goes to exactly one sink, in order within each part.
  const auto slow = f.raw[0]->seen();
  const auto fast = f.raw[1]->seen();
  EXPECT_EQ(slow.size() + fast.size(), 12U * 2000U);
}

TEST(ParallelSinkSplit, SmallBatchGoesWholeToTheFirstSink) {
  Fakes f({std::nullopt, std::nullopt});
  const WriteResult r = f.sink->write(make_events(0, 999));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(f.raw[0]->seen().size(), 999U);
  EXPECT_TRUE(f.raw[1]->seen().empty());
}

TEST(ParallelSinkSplit, WorstDispositionWinsAndCountsAreDropped) {
  const auto events = make_events(0, 3000);
  {
    Fakes f({std::nullopt, Disposition::retry, std::nullopt});
    const WriteResult r = f.sink->write(events);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.failure->disposition, Disposition::retry);
    EXPECT_EQ(r.stored + r.duplicates, 0U);
  }
  {
    Fakes f({Disposition::retry, Disposition::hold, std::nullopt});
    const WriteResult r = f.sink->write(events);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.failure->disposition, Disposition::hold);
  }
  {
    Fakes f({Disposition::hold, Disposition::retry, Disposition::reject});
    const WriteResult r = f.sink->write(events);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.failure->disposition, Disposition::reject);
  }
  // Many writes in a row reuse the same workers.
  Fakes f({std::nullopt, std::nullopt});
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(f.sink->write(events).ok());
  EXPECT_EQ(f.raw[0]->seen().size() + f.raw[1]->seen().size(), 200U * 3000U);
  // Shares follow the measured speeds, but never below a fifth of a batch with two sinks.
  EXPECT_GE(f.raw[1]->seen().size(), 200U * 600U);
}

// ---- a connection that cannot be opened while another works ----

/// Fails every write as a connect failure (nothing reached the server) until told otherwise.
class RefusingSink final : public Sink {
 public:
  WriteResult write(std::span<const Event> batch) noexcept override {
    ++attempts_;
    WriteResult r;
    if (refuse_) {
      r.failure = Failure{Disposition::retry, "53300", "too many connections", true};
    } else {
      r.stored = batch.size();
    }
    return r;
  }
  [[nodiscard]] std::string describe() const override { return "refusing"; }
  std::atomic<bool> refuse_{true};
  std::atomic<int> attempts_{0};
};

struct OneWorksOneRefuses {
  FakeSink* works = nullptr;
  RefusingSink* refuses = nullptr;
  std::unique_ptr<ParallelSink> sink;
  OneWorksOneRefuses() {
    std::vector<std::unique_ptr<Sink>> inner;
    auto w = std::make_unique<FakeSink>();
    auto r = std::make_unique<RefusingSink>();
    works = w.get();
    refuses = r.get();
    inner.push_back(std::move(w));
    inner.push_back(std::move(r));
    sink = std::make_unique<ParallelSink>(std::move(inner));
  }
};

TEST(ParallelSinkSetAside, ARefusedPartIsWrittenOnTheWorkingConnection) {
  OneWorksOneRefuses f;
  const auto events = make_events(0, 3000);
  const WriteResult r = f.sink->write(events);
  ASSERT_TRUE(r.ok()) << describe(r);
  // FakeSink counts one row of each write as a duplicate: its own part, then the refused one.
  EXPECT_EQ(r.stored + r.duplicates, 3000U);
  EXPECT_EQ(r.duplicates, 2U);
  EXPECT_EQ(f.works->seen().size(), 3000U);
  EXPECT_EQ(f.refuses->attempts_.load(), 1);
  EXPECT_EQ(f.sink->set_aside_connections(), 1U);
  // Set aside: the next batches go whole to the working connection, without trying the other.
  ASSERT_TRUE(f.sink->write(events).ok());
  EXPECT_EQ(f.works->seen().size(), 6000U);
  EXPECT_EQ(f.refuses->attempts_.load(), 1);
}

TEST(ParallelSinkSetAside, WhenNoConnectionWorksTheFailureIsTheBatchs) {
  std::vector<std::unique_ptr<Sink>> inner;
  inner.push_back(std::make_unique<RefusingSink>());
  inner.push_back(std::make_unique<RefusingSink>());
  ParallelSink sink(std::move(inner));
  const WriteResult r = sink.write(make_events(0, 3000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->sqlstate, "53300");
  EXPECT_TRUE(r.failure->at_connect);
  EXPECT_EQ(sink.set_aside_connections(), 0U);
}

TEST(ParallelSinkSetAside, OtherFailuresOfOneConnectionFailTheBatch) {
  // A failure after connecting (bad data, a lost connection) is not set aside: the dispatcher's
  // retry and split rules apply to it.
  Fakes f({std::nullopt, Disposition::retry});
  ASSERT_TRUE(f.sink->write(make_events(0, 999)).ok());  // one part: connection 0 works
  const WriteResult r = f.sink->write(make_events(0, 3000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(f.sink->set_aside_connections(), 0U);
}

TEST(ParallelSinkSetAside, PipelinedOneConnectionUntilAWriteSucceedsThenBouncedBatchesMove) {
  OneWorksOneRefuses f;
  using Batch = ParallelSink::Batch;
  const auto batch = [](std::uint64_t first) {
    return std::make_shared<const std::vector<Event>>(make_events(first, 100));
  };
  ASSERT_TRUE(f.sink->has_free_lane());
  f.sink->submit(batch(0));
  // No write has succeeded yet: a second batch waits rather than open a second connection.
  EXPECT_FALSE(f.sink->has_free_lane());
  auto done = f.sink->next_done(10s);
  ASSERT_TRUE(done && done->result.ok());
  EXPECT_EQ(f.refuses->attempts_.load(), 0);

  // Now both connections take batches; the refused one's batch comes back written by the other.
  std::vector<Batch> sent;
  while (f.sink->has_free_lane()) {
    sent.push_back(batch(1000 * (sent.size() + 1)));
    f.sink->submit(sent.back());
  }
  ASSERT_EQ(sent.size(), 2U);
  std::vector<Batch> back;
  while (f.sink->outstanding() > 0) {
    auto d = f.sink->next_done(10s);
    ASSERT_TRUE(d.has_value());
    ASSERT_TRUE(d->result.ok()) << describe(d->result);
    back.push_back(d->batch);
  }
  EXPECT_EQ(back.size(), 2U);
  EXPECT_EQ(f.refuses->attempts_.load(), 1);
  EXPECT_EQ(f.works->seen().size(), 300U);
  EXPECT_EQ(f.sink->set_aside_connections(), 1U);
}

/// Connection 0 has written once and is now held in a write; connection 1 then fails to connect.
/// Whether connection 1 is set aside waits for connection 0's write to show the server works.
struct RefusedWhileAnotherWrites {
  trackevent::test::FakeSink* gated = nullptr;  // connection 0: holds writers at its gate
  std::unique_ptr<ParallelSink> sink;
  RefusedWhileAnotherWrites() {
    std::vector<std::unique_ptr<Sink>> inner;
    auto g = std::make_unique<trackevent::test::FakeSink>();
    gated = g.get();
    inner.push_back(std::move(g));
    inner.push_back(std::make_unique<RefusingSink>());
    sink = std::make_unique<ParallelSink>(std::move(inner));
    const auto batch = [](std::uint64_t first) {
      return std::make_shared<const std::vector<Event>>(make_events(first, 100));
    };
    sink->submit(batch(0));
    auto first = sink->next_done(10s);
    EXPECT_TRUE(first && first->result.ok());
    gated->close_gate();
    sink->submit(batch(100));  // connection 0, held
    EXPECT_TRUE(sink->has_free_lane());
    sink->submit(batch(200));  // connection 1, refused
  }
};

TEST(ParallelSinkSetAside, ARefusedBatchWaitsForTheOtherWriteAndMovesWhenItSucceeds) {
  RefusedWhileAnotherWrites f;
  // Connection 1's refusal is known at once, but whether the server works is not.
  EXPECT_FALSE(f.sink->next_done(300ms).has_value());
  EXPECT_EQ(f.sink->set_aside_connections(), 0U);
  f.gated->open_gate();
  for (int i = 0; i < 2; ++i) {
    auto d = f.sink->next_done(10s);
    ASSERT_TRUE(d.has_value());
    EXPECT_TRUE(d->result.ok()) << describe(d->result);
  }
  EXPECT_EQ(f.sink->outstanding(), 0U);
  EXPECT_EQ(f.sink->set_aside_connections(), 1U);
}

TEST(ParallelSinkSetAside, WhenTheOtherWriteFailsTooTheRefusalIsTheBatchsFailure) {
  // A server that stopped answering: the held write times out, the new connection cannot be
  // opened. Neither is set aside; both batches fail, for the dispatcher's retry rules.
  RefusedWhileAnotherWrites f;
  EXPECT_FALSE(f.sink->next_done(300ms).has_value());
  // The held write fails after connecting (not at_connect).
  f.gated->fail_next(1, Failure{Disposition::retry, "57014", "canceling statement due to timeout"});
  f.gated->open_gate();
  std::vector<std::string> sqlstates;
  for (int i = 0; i < 2; ++i) {
    auto d = f.sink->next_done(10s);
    ASSERT_TRUE(d.has_value());
    ASSERT_FALSE(d->result.ok());
    sqlstates.push_back(d->result.failure->sqlstate);
  }
  EXPECT_EQ(sqlstates, (std::vector<std::string>{"57014", "53300"}));
  EXPECT_EQ(f.sink->outstanding(), 0U);
  EXPECT_EQ(f.sink->set_aside_connections(), 0U);
}

}  // namespace
