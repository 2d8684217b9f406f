// `trackevent partitions` against the disposable PostgreSQL and SQLite: partitions ahead, rows
// moved out of DEFAULT, retention by detach or drop (never DELETE), concurrent runs, the
// advisory lock's bounded wait, pg_partman-managed tables listed only, SQLite retention in chunks.
#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "schema/partitions.hpp"
#include "sqlite/sqlite_util.hpp"
#include "support/fake_sink.hpp"
#include "support/pg.hpp"
#include "support/pg_schema.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <set>
#include <string>
#include <vector>

namespace te = trackevent;
using namespace std::chrono;
using te::PartitionInterval;

namespace {

te::DbTarget pg(const std::string& url) { return {te::DbTarget::Kind::postgres, url}; }

void exec(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

te::SysSeconds at(int y, unsigned m, unsigned d) { return sys_days{year{y} / month{m} / day{d}}; }

/// `n` rows per day on each of the `days` days from `from` (land in DEFAULT when no partition).
void insert_days(const std::string& url, const std::string& from, int days, int n) {
  exec(url,
       "INSERT INTO analytics_events (event_id, org_id, event_name, occurred_at) "
       "SELECT gen_random_uuid(), 1, 'old', timestamptz '" +
           from + " 12:00:00+00' + d * interval '1 day' FROM generate_series(0, " +
           std::to_string(days - 1) + ") d, generate_series(1, " + std::to_string(n) + ") i");
}

std::set<std::string> attached(const std::string& url) {
  std::set<std::string> out;
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  for (const auto& row : tx.exec("SELECT inhrelid::regclass::text FROM pg_inherits WHERE "
                                 "inhparent = 'analytics_events'::regclass")) {
    out.insert(row[0].c_str());
  }
  return out;
}

class PartitionsUpkeep : public ::testing::Test {
 protected:
  void SetUp() override {
    TRACKEVENT_REQUIRE_PG();
    url_ = te::test::fresh_test_database("te_upk_");
    te::migrate(pg(url_));  // monthly
  }
  std::string url_;
};

TEST_F(PartitionsUpkeep, CreatesPartitionsAheadOnceOnly) {
  te::PartitionsOptions o;
  o.now = at(2031, 5, 17);
  o.ahead = 2;
  const te::PartitionsReport r = te::run_partitions(pg(url_), o);
  EXPECT_EQ(r.created,
            (std::vector<std::string>{"analytics_events_p2031_05", "analytics_events_p2031_06",
                                      "analytics_events_p2031_07"}));
  EXPECT_EQ(r.interval, "month");
  EXPECT_EQ(
      te::test::sql_text(url_,
                         "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = "
                         "'analytics_events_p2031_06'"),
      "FOR VALUES FROM ('2031-06-01 00:00:00+00') TO ('2031-07-01 00:00:00+00')");
  // The attach helper's CHECK is gone again; the key index is the partition's own.
  EXPECT_EQ(te::test::sql_int(url_,
                              "SELECT count(*) FROM pg_constraint WHERE conname = "
                              "'trackevent_attach_bounds'"),
            0);
  EXPECT_EQ(
      te::test::sql_text(url_, "SELECT to_regclass('analytics_events_p2031_06_pkey') IS NOT NULL"),
      "t");

  const te::PartitionsReport again = te::run_partitions(pg(url_), o);
  EXPECT_TRUE(again.created.empty());
  EXPECT_EQ(again.partitions.size(), r.partitions.size());
}

TEST_F(PartitionsUpkeep, MovesRowsOutOfDefaultIntoNewPartitions) {
  insert_days(url_, "2020-03-30", 5, 10);  // 2020-03-30 .. 2020-04-03: two months
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_default"), 50);
  te::PartitionsOptions dry;
  dry.dry_run = true;
  const te::PartitionsReport plan = te::run_partitions(pg(url_), dry);
  EXPECT_EQ(plan.rows_moved, 50);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_default"),
            50);  // dry: unchanged
  EXPECT_FALSE(attached(url_).contains("analytics_events_p2020_03"));

  const te::PartitionsReport r = te::run_partitions(pg(url_), {});
  EXPECT_EQ(r.rows_moved, 50);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_default"), 0);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_p2020_03"), 20);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_p2020_04"), 30);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events"), 50);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(DISTINCT event_id) FROM analytics_events"), 50);
}

TEST_F(PartitionsUpkeep, RetentionDetachesOrDropsWholePartitionsNeverDeletes) {
  insert_days(url_, "2020-01-01", 60, 2);  // 2020-01-01 .. 2020-02-29
  te::run_partitions(pg(url_), {});
  ASSERT_TRUE(attached(url_).contains("analytics_events_p2020_02"));
  const std::int64_t jan =
      te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_p2020_01");
  EXPECT_EQ(jan, 62);

  te::PartitionsOptions keep;
  keep.now = at(2021, 3, 15);
  keep.retain = te::parse_retention("13mo");  // cutoff 2020-02-15: only January is wholly older
  const te::PartitionsReport r = te::run_partitions(pg(url_), keep);
  EXPECT_EQ(r.detached, std::vector<std::string>{"analytics_events_p2020_01"});
  EXPECT_FALSE(attached(url_).contains("analytics_events_p2020_01"));
  EXPECT_TRUE(attached(url_).contains("analytics_events_p2020_02"));
  // Detached, not emptied: the table and its rows are still there.
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_p2020_01"), jan);
  EXPECT_EQ(te::test::sql_int(
                url_, "SELECT count(*) FROM analytics_events WHERE occurred_at < '2020-02-01'"),
            0);

  te::PartitionsOptions drop = keep;
  drop.now = at(2021, 4, 15);
  drop.drop = true;
  const te::PartitionsReport d = te::run_partitions(pg(url_), drop);
  EXPECT_EQ(d.dropped, std::vector<std::string>{"analytics_events_p2020_02"});
  EXPECT_EQ(te::test::sql_text(url_, "SELECT to_regclass('analytics_events_p2020_02') IS NULL"),
            "t");
}

TEST_F(PartitionsUpkeep, TwoRunsAtOnceBothSucceedAndCreateEachPartitionOnce) {
  insert_days(url_, "2019-01-01", 365, 1);  // twelve months of rows in DEFAULT
  auto run = [&] { return te::run_partitions(pg(url_), {}); };
  auto a = std::async(std::launch::async, run);
  auto b = std::async(std::launch::async, run);
  const te::PartitionsReport ra = a.get();
  const te::PartitionsReport rb = b.get();
  std::multiset<std::string> created(ra.created.begin(), ra.created.end());
  created.insert(rb.created.begin(), rb.created.end());
  for (int m = 1; m <= 12; ++m) {
    char name[40];
    std::snprintf(name, sizeof name, "analytics_events_p2019_%02d", m);
    EXPECT_EQ(created.count(name), 1u) << name;
  }
  EXPECT_EQ(ra.rows_moved + rb.rows_moved, 365);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_default"), 0);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events"), 365);
}

TEST_F(PartitionsUpkeep, WaitsForTheLockABoundedTime) {
  pqxx::connection holder{url_};
  pqxx::nontransaction tx{holder};
  tx.exec("SELECT pg_advisory_lock(" + std::to_string(te::partitions_lock_key()) + ")");
  te::PartitionsOptions o;
  o.lock_wait_ms = 300;
  EXPECT_THROW(te::run_partitions(pg(url_), o), te::PartitionsLockTimeout);
  o.list_only = true;  // listing takes no lock
  EXPECT_FALSE(te::run_partitions(pg(url_), o).partitions.empty());
  tx.exec("SELECT pg_advisory_unlock(" + std::to_string(te::partitions_lock_key()) + ")");
  o.list_only = false;
  EXPECT_NO_THROW(te::run_partitions(pg(url_), o));
}

TEST_F(PartitionsUpkeep, AnPgPartmanManagedTableIsOnlyListed) {
  exec(url_, "UPDATE trackevent_partitioning SET managed_by = 'pg_partman'");
  insert_days(url_, "2020-01-01", 1, 3);
  te::PartitionsOptions o;
  o.now = at(2031, 1, 1);
  o.retain = te::parse_retention("1mo");
  o.drop = true;
  const auto before = attached(url_);
  const te::PartitionsReport r = te::run_partitions(pg(url_), o);
  EXPECT_EQ(r.managed_by, "pg_partman");
  EXPECT_TRUE(r.created.empty());
  EXPECT_TRUE(r.dropped.empty());
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("pg_partman"), std::string::npos);
  EXPECT_EQ(attached(url_), before);
  EXPECT_EQ(te::test::sql_int(url_, "SELECT count(*) FROM analytics_events_default"), 3);
  EXPECT_EQ(r.partitions.size(), before.size());
}

TEST_F(PartitionsUpkeep, ListsBoundsEstimatesAndSizes) {
  te::PartitionsOptions o;
  o.list_only = true;
  const te::PartitionsReport r = te::run_partitions(pg(url_), o);
  ASSERT_GE(r.partitions.size(), 5u);  // current + 3 ahead + DEFAULT
  EXPECT_EQ(r.partitions.back().name, "analytics_events_default");
  EXPECT_EQ(r.partitions.back().bounds, "DEFAULT");
  EXPECT_EQ(r.partitions.front().bounds.rfind("FOR VALUES FROM ('", 0), 0u)
      << r.partitions.front().bounds;
  EXPECT_GT(r.partitions.front().bytes, 0);
}

TEST_F(PartitionsUpkeep, WithoutMigration0002ItSaysToMigrate) {
  const std::string url = te::test::fresh_database("te_upk_unmigrated");
  exec(url, te::builtin_migrations(te::DbTarget::Kind::postgres).at(0).sql);
  try {
    te::run_partitions(pg(url), {});
    FAIL() << "no error";
  } catch (const te::MigrateError& e) {
    EXPECT_NE(std::string(e.what()).find("trackevent migrate"), std::string::npos) << e.what();
  }
}

TEST(PartitionsSqlite, RetentionDeletesOldRowsInChunks) {
  const std::string path = ::testing::TempDir() + "te_upk_" + std::to_string(::getpid()) + ".db";
  std::filesystem::remove(path);
  {
    auto sink = te::make_sqlite_sink(path);
    std::vector<te::Event> batch;
    for (std::uint32_t i = 0; i < 100; ++i) {
      te::Event e = te::test::numbered_event(i);
      // 0..99 days before 2026-06-01
      e.occurred_at_us =
          duration_cast<microseconds>((at(2026, 6, 1) - days{i}).time_since_epoch()).count();
      batch.push_back(std::move(e));
    }
    ASSERT_TRUE(sink->write(batch).ok());
  }
  const te::DbTarget target{te::DbTarget::Kind::sqlite, path};
  te::PartitionsOptions o;
  o.now = at(2026, 6, 1);
  o.retain = te::parse_retention("30d");
  o.sqlite_chunk_rows = 7;
  o.dry_run = true;
  EXPECT_EQ(te::run_partitions(target, o).rows_deleted, 69);  // days 31..99
  o.dry_run = false;
  const te::PartitionsReport r = te::run_partitions(target, o);
  EXPECT_TRUE(r.sqlite);
  EXPECT_EQ(r.rows_deleted, 69);
  EXPECT_EQ(te::run_partitions(target, o).rows_deleted, 0);
  te::PartitionsOptions list;
  list.list_only = true;
  const te::PartitionsReport l = te::run_partitions(target, list);
  EXPECT_TRUE(l.partitions.empty());
  ASSERT_FALSE(l.notes.empty());
  EXPECT_NE(l.notes[0].find("no partitions"), std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
