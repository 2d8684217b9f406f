// Black-box: `trackevent partitions` (PostgreSQL when the test server runs, and SQLite), the
// migrate --partition-interval flag, and the event_id rule of "stored once" through `send`.

#include "cli/cli_support.hpp"
#include "support/pg.hpp"

#include <pqxx/pqxx>

namespace trackevent::test {
namespace {

std::string pg_scalar(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  return tx.exec1(sql)[0].c_str();
}

TEST(CliPartitions, PostgresUpkeepListAndIntervalFlag) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = fresh_database("cli_partitions");
  const auto bad = run_cli(home, {"--db", url, "migrate", "--partition-interval", "year"});
  EXPECT_EQ(bad.exit_code, 64) << bad.err;
  const auto m = run_cli(home, {"--db", url, "migrate", "--partition-interval", "week"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  const auto conv = lines_with_msg(log_lines(m.err), "analytics_events partitioned");
  ASSERT_EQ(conv.size(), 1u) << m.err;
  EXPECT_EQ(conv[0]["interval"], "week");
  const auto change = run_cli(home, {"--db", url, "migrate", "--partition-interval", "month"});
  EXPECT_EQ(change.exit_code, 1);
  EXPECT_NE(change.err.find("partitioned by week"), std::string::npos) << change.err;

  // A row with no partition goes to DEFAULT; the upkeep moves it.
  const auto s = run_cli(
      home, {"--db", url, "send", "--org", "1", "--event", "a.b", "--at", "2020-02-03T04:05:06Z"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(pg_scalar(url, "SELECT count(*) FROM analytics_events_default"), "1");
  const auto dry = run_cli(home, {"--db", url, "partitions", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(lines_with_msg(log_lines(dry.err), "would create partition").size(), 1u) << dry.err;
  const auto r = run_cli(home, {"--db", url, "partitions"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto created = lines_with_msg(log_lines(r.err), "created partition");
  ASSERT_EQ(created.size(), 1u) << r.err;
  EXPECT_EQ(created[0]["partition"], "analytics_events_p2020w06");
  EXPECT_EQ(pg_scalar(url, "SELECT count(*) FROM analytics_events_default"), "0");

  const auto list = run_cli(home, {"--db", url, "partitions", "--list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("ROWS (EST.)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("analytics_events_p2020w06"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("DEFAULT"), std::string::npos) << list.out;
  const auto json = run_cli(home, {"--db", url, "partitions", "--list", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto parsed = nlohmann::json::parse(json.out);
  ASSERT_TRUE(parsed.is_array());
  EXPECT_EQ(parsed.back()["name"], "analytics_events_default");

  const auto old = run_cli(home, {"--db", url, "partitions", "--retain", "52w", "--drop"});
  ASSERT_EQ(old.exit_code, 0) << old.err;
  EXPECT_EQ(lines_with_msg(log_lines(old.err), "dropped partition").size(), 1u) << old.err;
  EXPECT_EQ(pg_scalar(url, "SELECT to_regclass('analytics_events_p2020w06') IS NULL"), "t");
}

TEST(CliPartitions, SqliteRetentionDeletesOldRowsAndThereAreNoPartitions) {
  TempDir home;
  const std::string db = "sqlite:" + home.file("e.db");
  for (const char* at : {"2001-01-01T00:00:00Z", "2001-06-01T00:00:00Z", "2099-01-01T00:00:00Z"}) {
    const auto s = run_cli(home, {"--db", db, "send", "--org", "1", "--event", "a.b", "--at", at});
    ASSERT_EQ(s.exit_code, 0) << s.err;
  }
  const auto list = run_cli(home, {"--db", db, "partitions", "--list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.err.find("no partitions"), std::string::npos) << list.err;
  const auto r = run_cli(home, {"--db", db, "partitions", "--retain", "1y"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto done = lines_with_msg(log_lines(r.err), "partition upkeep done");
  ASSERT_EQ(done.size(), 1u) << r.err;
  EXPECT_EQ(done[0]["rows_deleted"], 2);
  EXPECT_EQ(sqlite_scalar(home.file("e.db"), "SELECT count(*) FROM analytics_events"), 1);
}

TEST(CliPartitions, UsageErrors) {
  TempDir home;
  const std::string db = "sqlite:" + home.file("e.db");
  EXPECT_EQ(run_cli(home, {"--db", db, "partitions", "--retain", "13"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"--db", db, "partitions", "--retain", "0d"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"--db", db, "partitions", "--drop"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"--db", db, "partitions", "--list", "--format", "xml"}).exit_code, 64);
  const auto m = run_cli(home, {"--db", db, "migrate", "--partition-interval", "day"});
  EXPECT_EQ(m.exit_code, 1);
  EXPECT_NE(m.err.find("PostgreSQL only"), std::string::npos) << m.err;
}

TEST(CliStoredOnce, AnEventIdWithoutOccurredAtMustBeAUuidV7) {
  TempDir home;
  const std::string path = home.file("e.db");
  const std::string db = "sqlite:" + path;
  const auto v4 = run_cli(home, {"--db", db, "send", "--org", "1", "--event", "a.b", "--id",
                                 "9b2e4c1a-3f5d-4e8b-9a7c-1d2e3f4a5b6c"});
  EXPECT_EQ(v4.exit_code, 65) << v4.err;
  EXPECT_NE(v4.err.find("event_id is not a UUIDv7; give occurred_at with it"), std::string::npos)
      << v4.err;
  // With --at, any UUID will do.
  const auto v4at =
      run_cli(home, {"--db", db, "send", "--org", "1", "--event", "a.b", "--id",
                     "9b2e4c1a-3f5d-4e8b-9a7c-1d2e3f4a5b6c", "--at", "2026-11-28T12:00:00Z"});
  EXPECT_EQ(v4at.exit_code, 0) << v4at.err;
  // A UUIDv7 alone: its time is the event's, so sending it twice stores it once.
  const std::string line =
      R"({"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","org_id":1,"event_name":"a.b"})";
  for (int i = 0; i < 2; ++i) {
    const auto r = run_cli(home, {"--db", db, "ingest"}, line + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(sqlite_scalar(path,
                          "SELECT count(*) FROM analytics_events WHERE event_id = "
                          "'01890a5d-ac96-774b-bcce-b302099a8057'"),
            1);
  EXPECT_EQ(sqlite_text(path,
                        "SELECT occurred_at FROM analytics_events WHERE event_id = "
                        "'01890a5d-ac96-774b-bcce-b302099a8057'"),
            "2023-06-30T03:34:18.518000Z");
}

}  // namespace
}  // namespace trackevent::test
