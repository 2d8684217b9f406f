// Handing partition upkeep over to pg_partman (schema/pg_partman/handover.sql, docs/scale.md),
// against the disposable PostgreSQL with the postgresql-15-partman package that scripts/setup
// installs. The script is run exactly as the docs tell a user to: psql -f.

#include "cli/cli_support.hpp"
#include "support/pg.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <string>
#include <vector>

namespace trackevent::test {
namespace {

const std::string kHandover =
    std::string(TRACKEVENT_SOURCE_DIR) + "/schema/pg_partman/handover.sql";

/// The partitions attached to analytics_events, "name bound" one per element, in name order.
std::vector<std::string> children(const std::string& url) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  std::vector<std::string> out;
  for (const auto& row :
       tx.exec("SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
               "JOIN pg_class c ON c.oid = i.inhrelid "
               "WHERE i.inhparent = 'analytics_events'::regclass ORDER BY c.relname")) {
    out.emplace_back(row[0].c_str());
  }
  return out;
}

RunResult psql_file(const std::string& url, const std::string& file) {
  RunOptions options;
  options.args = {"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", file, url};
  return run_program("/usr/bin/env", options);
}

/// A migrated database (interval `interval`) with pg_partman installed in schema partman.
std::string partman_database(const TempDir& home, const std::string& name,
                             const std::string& interval) {
  const std::string url = fresh_database(name);
  const auto r = run_cli(home, {"--db", url, "migrate", "--partition-interval", interval});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  tx.exec("CREATE SCHEMA partman");
  try {
    tx.exec("CREATE EXTENSION pg_partman SCHEMA partman");
  } catch (const pqxx::sql_error& e) {
    ADD_FAILURE() << "pg_partman is not installed on the test server (scripts/setup installs "
                     "postgresql-15-partman): "
                  << e.what();
  }
  return url;
}

class PartmanHandover : public ::testing::TestWithParam<std::string> {};

TEST_P(PartmanHandover, KeepsEveryPartitionAndRowThenPgPartmanMaintains) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string interval = GetParam();
  const std::string url = partman_database(home, "partman_" + interval, interval);
  if (HasFailure()) return;

  std::string lines;
  for (int i = 0; i < 20; ++i) lines += event_line(i) + "\n";
  ASSERT_EQ(run_cli(home, {"--db", url, "ingest"}, lines).exit_code, 0);
  const auto upkeep = run_cli(home, {"--db", url, "partitions"});
  ASSERT_EQ(upkeep.exit_code, 0) << upkeep.err;
  const std::vector<std::string> before = children(url);
  ASSERT_GT(before.size(), 2U);

  const auto handover = psql_file(url, kHandover);
  ASSERT_EQ(handover.exit_code, 0) << handover.err;

  EXPECT_EQ(sql_text(url, "SELECT managed_by FROM trackevent_partitioning"), "pg_partman");
  EXPECT_EQ(sql_int(url,
                    "SELECT count(*) FROM partman.part_config "
                    "WHERE parent_table = 'public.analytics_events'"),
            1);
  // pg_partman adopted trackevent's partitions (same names, same bounds) and made its own DEFAULT.
  const std::vector<std::string> after = children(url);
  for (const auto& child : before) {
    EXPECT_NE(std::find(after.begin(), after.end(), child), after.end()) << child;
  }
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM analytics_events"), 20);
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM analytics_events_default"), 0);

  // trackevent no longer changes the partitions; pg_partman's maintenance runs cleanly.
  const std::vector<std::string> partman_made = children(url);
  const auto listed = run_cli(home, {"--db", url, "partitions", "--ahead", "12"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(children(url), partman_made);
  {
    pqxx::connection c{url};
    pqxx::nontransaction tx{c};
    tx.exec("CALL partman.run_maintenance_proc()");
  }
  std::string more;
  for (int i = 20; i < 30; ++i) more += event_line(i) + "\n";
  ASSERT_EQ(run_cli(home, {"--db", url, "ingest"}, more).exit_code, 0);
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM analytics_events"), 30);
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM analytics_events_default"), 0);

  // Running the handover again changes nothing.
  const std::vector<std::string> settled = children(url);
  ASSERT_EQ(psql_file(url, kHandover).exit_code, 0);
  EXPECT_EQ(children(url), settled);
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM partman.part_config"), 1);
}

INSTANTIATE_TEST_SUITE_P(Intervals, PartmanHandover, ::testing::Values("day", "week", "month"));

TEST(PartmanHandoverRefusals, RowsLeftInDefaultStopItAndChangeNothing) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = partman_database(home, "partman_refuse", "month");
  if (HasFailure()) return;
  // Far outside every partition the migration made: the row lands in DEFAULT.
  ASSERT_EQ(run_cli(home, {"--db", url, "send", "--event", "user.signed_in", "--org", "1", "--at",
                           "1999-01-02T03:04:05Z"})
                .exit_code,
            0);
  ASSERT_EQ(sql_int(url, "SELECT count(*) FROM analytics_events_default"), 1);
  const std::vector<std::string> before = children(url);

  const auto r = psql_file(url, kHandover);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("run trackevent partitions first"), std::string::npos) << r.err;
  EXPECT_EQ(sql_text(url, "SELECT managed_by FROM trackevent_partitioning"), "trackevent");
  EXPECT_EQ(children(url), before);
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM partman.part_config"), 0);
  EXPECT_EQ(sql_int(url, "SELECT count(*) FROM analytics_events"), 1);
}

}  // namespace
}  // namespace trackevent::test
