// Migration 0002 against the disposable PostgreSQL: the partitioned layout on a fresh database
// (each interval), the recorded interval, idempotence, the conversion of a v1 table with rows
// while a writer keeps writing, and an interrupted conversion resumed.
#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "schema/partitions.hpp"
#include "support/fake_sink.hpp"
#include "support/pg.hpp"
#include "support/pg_schema.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace te = trackevent;
using namespace std::chrono_literals;

namespace {

te::DbTarget pg(const std::string& url) { return {te::DbTarget::Kind::postgres, url}; }

/// The v1 schema as a build before migration 0002 left it: 0001 applied and recorded, and `rows`
/// events generated server-side over the last ~400 days (org 1..100).
std::string v1_database(int rows) {
  const std::string url = te::test::fresh_test_database("te_part_");
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  const te::Migration& m0001 = te::builtin_migrations(te::DbTarget::Kind::postgres).at(0);
  tx.exec(m0001.sql);
  tx.exec(
      "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
      "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
  tx.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES (1, $1, $2)",
                 m0001.name, m0001.checksum);
  tx.exec(
      "INSERT INTO analytics_events (event_id, org_id, event_name, occurred_at) "
      "SELECT gen_random_uuid(), 1 + i % 100, 'bulk', now() - (i % 400) * interval '1 day' "
      "FROM generate_series(1, " +
      std::to_string(rows) + ") i");
  return url;
}

/// A writer that keeps writing batches of 500 new events (org 424242) through the library's
/// PostgreSQL sink until stopped, retrying a failed batch as the spool would.
class Writer {
 public:
  explicit Writer(std::string url) : url_(std::move(url)) {
    thread_ = std::thread([this] { run(); });
  }
  ~Writer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::uint32_t written() const { return next_; }
  int failures() const { return failures_; }

 private:
  void run() {
    te::PgTimeouts t;
    t.statement_timeout_ms = 60000;
    auto sink = te::make_postgres_sink(url_, t);
    const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    while (!stop_) {
      std::vector<te::Event> batch;
      for (std::uint32_t i = 0; i < 500; ++i) {
        te::Event e = te::test::numbered_event(next_ + i);
        e.org_id = 424242;
        e.occurred_at_us = now_us;
        batch.push_back(std::move(e));
      }
      const te::WriteResult r = sink->write(batch);
      if (!r.ok()) {
        ++failures_;
        std::this_thread::sleep_for(50ms);
        continue;  // the same batch again: retries must not duplicate
      }
      next_ += 500;
    }
  }

  std::string url_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint32_t> next_{0};
  std::atomic<int> failures_{0};
};

class Partitioning : public ::testing::Test {
 protected:
  void SetUp() override { TRACKEVENT_REQUIRE_PG(); }
};

TEST_F(Partitioning, AFreshDatabaseGetsTheLayoutForEachInterval) {
  for (const char* interval : {"day", "week", "month"}) {
    SCOPED_TRACE(interval);
    const std::string url = te::test::fresh_database(std::string("te_part_fresh_") + interval);
    te::MigrateOptions o;
    o.partition_interval = interval;
    const te::MigrateReport report = te::migrate(pg(url), o);
    EXPECT_EQ(report.applied, (std::vector<int>{1, 2}));
    ASSERT_TRUE(report.conversion);
    EXPECT_FALSE(report.conversion->old_table_kept);

    EXPECT_EQ(te::test::sql_text(
                  url, "SELECT relkind FROM pg_class WHERE oid = 'analytics_events'::regclass"),
              "p");
    EXPECT_EQ(
        te::test::sql_text(url,
                           "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = "
                           "'analytics_events_pkey'"),
        "PRIMARY KEY (org_id, occurred_at, event_id)");
    EXPECT_EQ(te::test::sql_int(url,
                                "SELECT count(*) FROM pg_index WHERE indrelid = "
                                "'analytics_events'::regclass"),
              1);  // the key serves org + time range queries: no second index
    EXPECT_EQ(te::test::sql_text(url,
                                 "SELECT partition_interval || '/' || managed_by FROM "
                                 "trackevent_partitioning WHERE parent_table = 'analytics_events'"),
              std::string(interval) + "/trackevent");
    for (const char* gone :
         {"analytics_events_v1", "analytics_events_v2", "trackevent_conversion"}) {
      EXPECT_EQ(te::test::sql_text(url, std::string("SELECT to_regclass('") + gone + "') IS NULL"),
                "t")
          << gone;
    }
    // The current partition and 3 ahead, named as pg_partman names them, plus DEFAULT.
    const auto iv = *te::parse_partition_interval(interval);
    const auto now =
        std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    std::set<std::string> expected = {"analytics_events_default"};
    for (int k = 0; k <= 3; ++k) {
      expected.insert(te::partition_name("analytics_events", iv,
                                         te::partition_add(iv, te::partition_start(iv, now), k)));
    }
    std::set<std::string> actual;
    pqxx::connection c{url};
    pqxx::nontransaction tx{c};
    for (const auto& row : tx.exec("SELECT inhrelid::regclass::text FROM pg_inherits WHERE "
                                   "inhparent = 'analytics_events'::regclass")) {
      actual.insert(row[0].c_str());
      // A partition's own key index is <partition>_pkey: PgSink's duplicate test relies on it.
      EXPECT_EQ(tx.exec1("SELECT count(*) FROM pg_class WHERE relname = " +
                         tx.quote(std::string(row[0].c_str()) + "_pkey"))[0]
                    .as<int>(),
                1)
          << row[0].c_str();
    }
    EXPECT_EQ(actual, expected);
  }
}

TEST_F(Partitioning, MigratingTwiceChangesNothingAndTheIntervalCannotChange) {
  const std::string url = te::test::fresh_test_database("te_part_");
  te::MigrateOptions week;
  week.partition_interval = "week";
  te::migrate(pg(url), week);
  const std::string before =
      te::test::sql_text(url,
                         "SELECT string_agg(relname, ',' ORDER BY relname) FROM "
                         "pg_class WHERE relkind IN ('r', 'p')");
  const te::MigrateReport again = te::migrate(pg(url));  // no interval: the recorded one
  EXPECT_TRUE(again.applied.empty());
  EXPECT_FALSE(again.conversion);
  EXPECT_TRUE(te::migrate(pg(url), week).applied.empty());
  EXPECT_EQ(
      te::test::sql_text(url,
                         "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE "
                         "relkind IN ('r', 'p')"),
      before);

  te::MigrateOptions month;
  month.partition_interval = "month";
  try {
    te::migrate(pg(url), month);
    FAIL() << "changing the interval was accepted";
  } catch (const te::MigrateError& e) {
    EXPECT_NE(std::string(e.what()).find("partitioned by week"), std::string::npos) << e.what();
  }
  te::MigrateOptions bogus;
  bogus.partition_interval = "year";
  EXPECT_THROW(te::migrate(pg(url), bogus), te::MigrateError);
  EXPECT_EQ(te::test::sql_text(url, "SELECT partition_interval FROM trackevent_partitioning"),
            "week");
}

TEST_F(Partitioning, ConvertsAMillionV1RowsWhileAWriterWrites) {
  constexpr int kRows = 1000000;
  const std::string url = v1_database(kRows);
  {
    pqxx::connection c{url};
    pqxx::nontransaction tx{c};
    tx.exec("DROP ROLE IF EXISTS te_part_reader");
    tx.exec("CREATE ROLE te_part_reader");
    tx.exec("GRANT SELECT ON analytics_events TO te_part_reader");
  }
  Writer writer(url);
  while (writer.written() < 2000) std::this_thread::sleep_for(10ms);  // it is writing
  te::MigrateOptions o;
  o.backfill_chunk_rows = 20000;
  const te::MigrateReport report = te::migrate(pg(url), o);
  const std::uint32_t at_swap = writer.written();
  while (writer.written() < at_swap + 2000) std::this_thread::sleep_for(10ms);  // and after it
  writer.stop();

  ASSERT_TRUE(report.conversion);
  EXPECT_TRUE(report.conversion->old_table_kept);
  EXPECT_EQ(report.conversion->interval, "month");
  std::printf(
      "conversion of %d rows: %lld copied by the backfill, writer-blocking lock held "
      "%.1f ms, writer batches retried %d\n",
      kRows, static_cast<long long>(report.conversion->rows_copied),
      report.conversion->lock_held_ms, writer.failures());
  const std::int64_t written = writer.written();
  EXPECT_EQ(te::test::sql_text(
                url, "SELECT relkind FROM pg_class WHERE oid = 'analytics_events'::regclass"),
            "p");
  // Every row exactly once: the bulk rows and every batch the writer had stored.
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events WHERE org_id <> 424242"),
            kRows);
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events WHERE org_id = 424242"),
            written);
  EXPECT_EQ(
      te::test::sql_int(url, "SELECT count(*) - count(DISTINCT event_id) FROM analytics_events"),
      0);
  // Nothing of the old table is missing, values included.
  EXPECT_EQ(
      te::test::sql_int(url,
                        "SELECT count(*) FROM analytics_events_v1 o WHERE NOT EXISTS (SELECT 1 "
                        "FROM analytics_events n WHERE n.org_id = o.org_id AND n.occurred_at = "
                        "o.occurred_at AND n.event_id = o.event_id AND n.recorded_at = "
                        "o.recorded_at AND n.event_name = o.event_name)"),
      0);
  // The writer wrote into v1 during the conversion and into the new table after it.
  EXPECT_GT(
      te::test::sql_int(url, "SELECT count(*) FROM analytics_events_v1 WHERE org_id = 424242"), 0);
  EXPECT_GT(written, te::test::sql_int(
                         url, "SELECT count(*) FROM analytics_events_v1 WHERE org_id = 424242"));
  // Grants carried over; the old key and index were renamed out of the way.
  EXPECT_EQ(te::test::sql_text(url,
                               "SELECT has_table_privilege('te_part_reader', 'analytics_events', "
                               "'SELECT')"),
            "t");
  EXPECT_EQ(te::test::sql_text(url, "SELECT to_regclass('analytics_events_v1_pkey') IS NOT NULL"),
            "t");
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events_default"), 0);
  EXPECT_EQ(te::test::sql_text(url, "SELECT to_regclass('trackevent_conversion') IS NULL"), "t");
  {
    pqxx::connection c{url};
    pqxx::nontransaction tx{c};
    tx.exec("DROP OWNED BY te_part_reader");
    tx.exec("DROP ROLE te_part_reader");
  }
}

TEST_F(Partitioning, AnInterruptedConversionContinuesWhereItStopped) {
  constexpr int kRows = 100000;
  const std::string url = v1_database(kRows);
  te::MigrateOptions o;
  o.backfill_chunk_rows = 500;  // many short transactions, so the kill lands mid-backfill
  auto first = std::async(std::launch::async, [&] { return te::migrate(pg(url), o); });
  bool killed = false;
  {
    pqxx::connection c{url};
    pqxx::nontransaction tx{c};
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!killed && std::chrono::steady_clock::now() < deadline) {
      if (tx.exec1("SELECT to_regclass('trackevent_conversion') IS NOT NULL")[0].as<bool>() &&
          tx.exec1("SELECT coalesce((SELECT rows_copied FROM trackevent_conversion), 0) > 5000")[0]
              .as<bool>()) {
        killed = tx.exec1(
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                       "application_name = 'trackevent migrate' AND datname = "
                       "current_database()")[0]
                     .as<int>() == 1;
      }
      std::this_thread::sleep_for(5ms);
    }
  }
  ASSERT_TRUE(killed) << "the conversion was not caught mid-backfill";
  EXPECT_THROW(first.get(), te::MigrateError);
  EXPECT_EQ(te::test::sql_text(
                url, "SELECT relkind FROM pg_class WHERE oid = 'analytics_events'::regclass"),
            "r");  // still v1, still written to (the trigger copies)
  const std::int64_t done = te::test::sql_int(url, "SELECT rows_copied FROM trackevent_conversion");
  EXPECT_GT(done, 0);
  EXPECT_LT(done, kRows);

  const te::MigrateReport second = te::migrate(pg(url));
  ASSERT_TRUE(second.conversion);
  EXPECT_EQ(second.applied, std::vector<int>{2});
  EXPECT_LE(second.conversion->rows_copied, kRows - done);  // continued, did not start over
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events"), kRows);
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(DISTINCT event_id) FROM analytics_events"), kRows);
  EXPECT_EQ(
      te::test::sql_int(url,
                        "SELECT count(*) FROM analytics_events_v1 o WHERE NOT EXISTS (SELECT 1 "
                        "FROM analytics_events n WHERE n.event_id = o.event_id AND n.org_id = "
                        "o.org_id AND n.occurred_at = o.occurred_at)"),
      0);
}

TEST_F(Partitioning, TheSinkRecognisesADuplicateByAPartitionsKeyName) {
  // A COPY that meets an existing row fails with 23505 naming the partition's own key index
  // (analytics_events_p2026_11_pkey, ...); the sink must take that for a duplicate, not a bad row.
  const std::string url = te::test::fresh_test_database("te_part_");
  te::migrate(pg(url));
  auto sink = te::make_postgres_sink(url);
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::vector<te::Event> batch;
  for (std::uint32_t i = 1; i <= 3; ++i) {
    batch.push_back(te::test::numbered_event(i));
    batch.back().occurred_at_us = now_us;
  }
  ASSERT_TRUE(sink->write(batch).ok());
  batch.push_back(te::test::numbered_event(4));
  batch.back().occurred_at_us = now_us;
  const te::WriteResult r = sink->write(batch);
  ASSERT_TRUE(r.ok()) << r.failure->message;
  EXPECT_EQ(r.stored, 1u);
  EXPECT_EQ(r.duplicates, 3u);
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events"), 4);
  // A row in DEFAULT (no partition for 1999) is recognised the same way.
  std::vector<te::Event> old = {te::test::numbered_event(9)};
  old[0].occurred_at_us = 915'148'800'000'000;  // 1999-01-01
  std::vector<te::Event> two = {old[0], te::test::numbered_event(10)};
  two[1].occurred_at_us = old[0].occurred_at_us;
  ASSERT_TRUE(sink->write(old).ok());
  const te::WriteResult d = sink->write(two);
  ASSERT_TRUE(d.ok()) << d.failure->message;
  EXPECT_EQ(d.stored, 1u);
  EXPECT_EQ(d.duplicates, 1u);
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events_default"), 2);
}

TEST_F(Partitioning, ACopyWaitingOnTheSwapLockLandsInTheNewTable) {
  // The swap's pattern by hand: a COPY that queues behind the ACCESS EXCLUSIVE lock resolves the
  // name again once it gets the lock, so it writes into the table renamed into place.
  const std::string url = te::test::fresh_test_database("te_part_");
  te::migrate(pg(url));
  pqxx::connection c{url};
  pqxx::nontransaction admin{c};
  admin.exec("CREATE TABLE staged (LIKE analytics_events INCLUDING ALL)");
  admin.exec("BEGIN");
  admin.exec("LOCK TABLE analytics_events IN ACCESS EXCLUSIVE MODE");
  auto sink = te::make_postgres_sink(url);
  auto write = std::async(std::launch::async, [&] {
    std::vector<te::Event> batch = {te::test::numbered_event(1), te::test::numbered_event(2)};
    for (auto& e : batch) e.occurred_at_us = 1'700'000'000'000'000;
    return sink->write(batch);
  });
  {  // wait until the COPY waits on the lock
    pqxx::connection w{url};
    pqxx::nontransaction tx{w};
    for (int i = 0; i < 1000; ++i) {
      if (tx.exec1("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                   "wait_event_type = 'Lock'")[0]
              .as<int>() > 0)
        break;
      std::this_thread::sleep_for(10ms);
    }
  }
  admin.exec("ALTER TABLE analytics_events RENAME TO old_events");
  admin.exec("ALTER TABLE staged RENAME TO analytics_events");
  admin.exec("COMMIT");
  const te::WriteResult r = write.get();
  ASSERT_TRUE(r.ok()) << r.failure->message;
  EXPECT_EQ(r.stored, 2u);
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM analytics_events"), 2);
  EXPECT_EQ(te::test::sql_int(url, "SELECT count(*) FROM old_events"), 0);
}

}  // namespace
