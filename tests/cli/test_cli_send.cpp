// Black-box: `trackevent send` into the embedded SQLite store.

#include "cli/cli_support.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace trackevent::test {
namespace {

TEST(CliSend, FromFlags) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto r = run_cli(home, {"--db",
                                "sqlite:" + db,
                                "send",
                                "--org",
                                "7",
                                "--user",
                                "42",
                                "--event",
                                "backup.completed",
                                "--meta",
                                R"({"host":"db1","n":1})",
                                "-m",
                                "bytes=123456",
                                "-m",
                                "host=db2",
                                "-m",
                                "ok=true",
                                "-m",
                                "label=\"42\"",
                                "--at",
                                "2026-11-28T12:00:00Z",
                                "--id",
                                "0190f5a4-8b3c-7def-8123-456789abcdef"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 1);
  EXPECT_EQ(sqlite_text(db, "SELECT event_id FROM analytics_events"),
            "0190f5a4-8b3c-7def-8123-456789abcdef");
  EXPECT_EQ(sqlite_scalar(db, "SELECT org_id * 1000 + user_id FROM analytics_events"), 7042);
  EXPECT_EQ(sqlite_text(db, "SELECT event_name FROM analytics_events"), "backup.completed");
  const auto meta = nlohmann::json::parse(sqlite_text(db, "SELECT metadata FROM analytics_events"));
  // -m values: JSON scalars stay typed, anything else is a string; -m wins over --meta.
  EXPECT_EQ(meta,
            (nlohmann::json{
                {"host", "db2"}, {"n", 1}, {"bytes", 123456}, {"ok", true}, {"label", "42"}}));
  EXPECT_EQ(sqlite_text(db, "SELECT substr(occurred_at, 1, 19) FROM analytics_events"),
            "2026-11-28T12:00:00");
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 1);
  EXPECT_EQ(s["stored"], 1);
}

TEST(CliSend, DurableWritesAheadToTheSpoolThenDelivers) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "send", "--durable", "--org", "3",
                                "--event", "backup.completed", "-m", "n=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 1);
  // The write-ahead copy went through the spool and was removed once delivered.
  const std::string spool = home.file("spool") + "/spool.db";
  ASSERT_TRUE(std::filesystem::exists(spool));
  EXPECT_EQ(sqlite_scalar(spool, "SELECT count(*) FROM spool"), 0);
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 1);
  EXPECT_EQ(s["dropped"], 0);
}

TEST(CliSend, BackgroundDeliversToTheEmbeddedStoreToo) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "send", "--background", "--org", "3",
                                "--event", "backup.completed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summary_of(r)["spooled"], 1);
  bool stored = false;
  for (int i = 0; i < 400 && !stored; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
    // The deliverer creates the store: its file can exist a moment before its table does.
    stored = std::filesystem::exists(db) &&
             sqlite_scalar(db,
                           "SELECT count(*) FROM sqlite_master WHERE name = "
                           "'analytics_events'") == 1 &&
             sqlite_scalar(db, "SELECT count(*) FROM analytics_events") == 1;
  }
  EXPECT_TRUE(stored) << read_file(home.file("spool") + "/flush.log");
}

TEST(CliSend, BackgroundWithoutAUsableSpoolDeliversInTheForeground) {
  TempDir home;
  const std::string db = home.file("e.db");
  // The spool directory is a regular file: nothing can be spooled there.
  write_file(home.file("spool"), "not a directory\n");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "send", "--background", "--org", "3",
                                "--event", "backup.completed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(
      lines_with_msg(log_lines(r.err), "cannot spool for background delivery; delivering now")
          .empty())
      << r.err;
  EXPECT_EQ(summary_of(r)["stored"], 1);
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 1);
}

TEST(CliSend, BackgroundRotatesTheDeliverersLogPastOneMebibyte) {
  TempDir home;
  const std::string db = home.file("e.db");
  std::filesystem::create_directories(home.file("spool"));
  std::filesystem::permissions(home.file("spool"), std::filesystem::perms::owner_all);
  const std::string log = home.file("spool") + "/flush.log";
  write_file(log, std::string(std::size_t{1} << 20, 'x') + "\n");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "send", "--background", "--org", "3",
                                "--event", "backup.completed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(log + ".1"));
  EXPECT_LT(std::filesystem::file_size(log), std::uintmax_t{1} << 20);
}

TEST(CliSend, BackgroundChecksOnlyTheUrlsFormAndTheDelivererReportsTheRest) {
  TempDir home;
  // libpq rejects the unknown parameter; the form (a postgresql:// URL) is fine.
  const std::string url = "postgresql://localhost/x?no_such_parameter=1";
  const auto r =
      run_cli(home, {"--db", url, "send", "--background", "--org", "3", "--event", "a.b"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summary_of(r)["spooled"], 1);
  const std::string flush_log = home.file("spool") + "/flush.log";
  bool reported = false;
  for (int i = 0; i < 400 && !reported; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
    reported = read_file(flush_log).find("invalid database URL") != std::string::npos;
  }
  EXPECT_TRUE(reported) << read_file(flush_log);
  // The event waits in the spool for a deliverer with a usable URL.
  EXPECT_EQ(sqlite_scalar(home.file("spool") + "/spool.db", "SELECT count(*) FROM spool"), 1);
  // Without --background the same URL is a usage error before anything is accepted.
  const auto fg = run_cli(home, {"--db", url, "send", "--org", "3", "--event", "a.b"});
  EXPECT_EQ(fg.exit_code, 64) << fg.err;
  EXPECT_FALSE(lines_with_msg(log_lines(fg.err), "invalid database URL").empty()) << fg.err;
}

TEST(CliSend, SystemEventHasNoUser) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto r =
      run_cli(home, {"--db", "sqlite:" + db, "send", "--org", "1", "--event", "backup.completed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events WHERE user_id IS NULL"), 1);
  EXPECT_EQ(sqlite_text(db, "SELECT metadata FROM analytics_events"), "{}");
}

TEST(CliSend, FromJsonArguments) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "send", event_line(1), event_line(2),
                                event_line(3, "report.generated")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 3);
}

TEST(CliSend, InvalidEventsExit65AndNameTheirArgument) {
  TempDir home;
  const std::string db = home.file("e.db");
  const auto r = run_cli(
      home, {"--db", "sqlite:" + db, "send", event_line(1), R"({"org_id":0,"event_name":"a.b"})"});
  EXPECT_EQ(r.exit_code, 65) << r.err;
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u) << r.err;
  EXPECT_EQ(rejected[0]["source"], "argv");
  EXPECT_EQ(rejected[0]["line"], 2);
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events"), 1);

  EXPECT_EQ(run_cli(home, {"send", "--org", "0", "--event", "a.b"}).exit_code, 65);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1", "--event", "Not A Name"}).exit_code, 65);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1", "--event", "a.b", "--at", "yesterday"}).exit_code,
            65);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1", "--event", "a.b", "--id", "nope"}).exit_code, 65);
}

TEST(CliSend, UsageErrorsExit64) {
  TempDir home;
  EXPECT_EQ(run_cli(home, {"send"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"send", "--event", "a.b"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1", "--event", "a.b", "-m", "novalue"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1", "--event", "a.b", "--meta", "[1]"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"send", "--org", "1", "--event", "a.b", event_line(1)}).exit_code, 64);
}

}  // namespace
}  // namespace trackevent::test
