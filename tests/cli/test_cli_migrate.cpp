// Black-box: `migrate` and `flush` on SQLite, and the "database unreachable" exits (69) against a
// closed port (no server needed).

#include "cli/cli_support.hpp"

namespace trackevent::test {
namespace {

std::string closed_url() {
  return "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/nothing";
}

TEST(CliMigrate, SqliteMigrateThenStatus) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto before = run_cli(home, {"--db", "sqlite:" + db, "migrate", "--status"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_NE(before.out.find("pending"), std::string::npos) << before.out;

  const auto dry = run_cli(home, {"--db", "sqlite:" + db, "migrate", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(run_cli(home, {"--db", "sqlite:" + db, "migrate", "--status"}).out.find("pending"),
            std::string::npos);

  const auto r = run_cli(home, {"--db", "sqlite:" + db, "migrate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto applied = lines_with_msg(log_lines(r.err), "applied migration");
  ASSERT_GE(applied.size(), 1u) << r.err;
  EXPECT_EQ(applied[0]["version"], 1);
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 0);

  const auto again = run_cli(home, {"--db", "sqlite:" + db, "migrate"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(lines_with_msg(log_lines(again.err), "applied migration").empty());

  const auto status = run_cli(home, {"--db", "sqlite:" + db, "migrate", "--status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("VERSION"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("create_analytics_events"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("applied"), std::string::npos) << status.out;
  EXPECT_EQ(status.out.find("pending"), std::string::npos) << status.out;
}

TEST(CliMigrate, UnreachableDatabaseExits69) {
  TempDir home;
  const auto r =
      run_cli(home, {"--db", closed_url(), "migrate"}, {}, {}, std::chrono::milliseconds{30000});
  EXPECT_EQ(r.exit_code, 69) << r.err;
  const auto logs = log_lines(r.err);
  ASSERT_FALSE(logs.empty());
  EXPECT_EQ(logs.back()["level"], "error");
  EXPECT_EQ(run_cli(home, {"--db", closed_url(), "migrate", "--status"}).exit_code, 69);
}

TEST(CliMigrate, PasswordsNeverReachTheLog) {
  TempDir home;
  const std::string url =
      "postgresql://app:s3cretpw@127.0.0.1:" + std::to_string(closed_port()) + "/db";
  const auto r = run_cli(home, {"--db", url, "migrate"});
  EXPECT_EQ(r.exit_code, 69);
  EXPECT_EQ(r.err.find("s3cretpw"), std::string::npos) << r.err;
  const auto s = run_cli(home, {"--db", url, "ingest", "--strict"}, event_line(1) + "\n");
  EXPECT_EQ(s.exit_code, 69);
  EXPECT_EQ(s.err.find("s3cretpw"), std::string::npos) << s.err;
  // A malformed key=value string (libpq would quote it back, password and all): a usage error.
  const std::string malformed = "host=127.0.0.1 password=s3cretpw port";
  for (const char* cmd : {"migrate", "flush"}) {
    const auto m = run_cli(home, {"--db", malformed, cmd});
    EXPECT_EQ(m.exit_code, 64) << m.err;
    EXPECT_EQ(m.err.find("s3cretpw"), std::string::npos) << m.err;
  }
  const auto m = run_cli(home, {"--db", malformed, "ingest", "--strict"}, event_line(1) + "\n");
  EXPECT_EQ(m.exit_code, 64);
  EXPECT_EQ(m.err.find("s3cretpw"), std::string::npos) << m.err;
}

TEST(CliIngestStrict, UnreachableDatabaseExits69) {
  TempDir home;
  const auto r =
      run_cli(home, {"--db", closed_url(), "ingest", "--strict"},
              event_line(1) + "\n" + event_line(2) + "\n", {}, std::chrono::milliseconds{30000});
  EXPECT_EQ(r.exit_code, 69) << r.err;
}

TEST(CliIngest, UnreachableDatabaseWithoutStrictSpoolsAndExits0) {
  TempDir home;
  const auto r =
      run_cli(home, {"--db", closed_url(), "ingest", "--flush-timeout", "1"},
              event_line(1) + "\n" + event_line(2) + "\n", {}, std::chrono::milliseconds{30000});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 2);
  EXPECT_EQ(s["stored"], 0);
  EXPECT_EQ(s["spooled"], 2);
  EXPECT_EQ(s["dropped"], 0);
}

TEST(CliFlush, EmptySpoolIsSuccessWithoutTouchingTheDatabase) {
  TempDir home;
  const auto r = run_cli(home, {"--db", closed_url(), "flush"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliFlush, SpooledEventsReachTheDatabaseLater) {
  TempDir home;
  // Spool two events against a dead server, then flush them into SQLite.
  auto r = run_cli(
      home, {"--db", closed_url(), "send", "--timeout", "0.5", event_line(1), event_line(2)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(summary_of(r)["spooled"], 2);

  const auto down = run_cli(home, {"--db", closed_url(), "flush", "--timeout", "5"});
  EXPECT_EQ(down.exit_code, 69) << down.err;

  const std::string db = home.file("e.db");
  const auto up = run_cli(home, {"--db", "sqlite:" + db, "flush"});
  EXPECT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 2);
  EXPECT_EQ(run_cli(home, {"--db", "sqlite:" + db, "flush"}).exit_code, 0);
}

}  // namespace
}  // namespace trackevent::test
