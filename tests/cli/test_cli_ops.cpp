// Black-box tests of `trackevent status` and `trackevent dead-letters` (issue 17): real spool
// files, and a real PostgreSQL where a database is involved.

#include "cli/cli_support.hpp"
#include "support/pg.hpp"

#include <pqxx/pqxx>

#include <sys/stat.h>

#include <chrono>
#include <thread>

namespace trackevent::test {
namespace {

std::string down_db() {
  return "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/x";
}

/// Spools `lines` by sending them while no database answers.
void spool_lines(const TempDir& home, const std::vector<std::string>& lines) {
  std::vector<std::string> args{"--db", down_db(), "send", "--timeout", "0.3"};
  args.insert(args.end(), lines.begin(), lines.end());
  const auto r = run_cli(home, args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

std::string spool_dir(const TempDir& home) { return home.file("spool"); }
std::string dead_file(const TempDir& home) { return spool_dir(home) + "/dead-letter.jsonl"; }

std::string dead_line(const std::string& id, const std::string& name, const std::string& at,
                      int org = 1) {
  return nlohmann::json{{"event_id", id},
                        {"org_id", org},
                        {"user_id", nullptr},
                        {"event_name", name},
                        {"metadata", {{"k", "v"}}},
                        {"occurred_at", "2026-01-02T03:04:05.123456Z"},
                        {"error", "refused"},
                        {"sqlstate", "23514"},
                        {"at", at}}
      .dump();
}

void write_dead(const TempDir& home, const std::string& text) {
  std::filesystem::create_directories(spool_dir(home));
  ::chmod(spool_dir(home).c_str(), 0700);
  write_file(dead_file(home), text);
  ::chmod(dead_file(home).c_str(), 0600);
}

long long pg_scalar(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  return tx.exec1(sql)[0].as<long long>();
}

void pg_exec(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

// ---- status ----------------------------------------------------------------------------------

TEST(CliStatus, NoSpoolIsHealthyInEveryFormat) {
  TempDir home;
  const auto text = run_cli(home, {"status"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("health        healthy"), std::string::npos) << text.out;
  const auto js = run_cli(home, {"status", "--format", "json"});
  ASSERT_EQ(js.exit_code, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  EXPECT_EQ(j["health"], "healthy");
  EXPECT_EQ(j["spool"]["events"], 0);
  EXPECT_EQ(j["spool"]["exists"], false);
  EXPECT_TRUE(j["database"].is_null());
  // status never creates the spool.
  EXPECT_FALSE(std::filesystem::exists(spool_dir(home) + "/spool.db"));
  const auto prom = run_cli(home, {"status", "--format", "prometheus"});
  ASSERT_EQ(prom.exit_code, 0) << prom.err;
  for (const char* name :
       {"trackevent_up", "trackevent_healthy", "trackevent_spool_events",
        "trackevent_spool_oldest_event_age_seconds", "trackevent_dead_letters"}) {
    EXPECT_NE(prom.out.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    EXPECT_NE(prom.out.find(std::string("# TYPE ") + name + " gauge"), std::string::npos) << name;
  }
  EXPECT_NE(prom.out.find("trackevent_healthy{spool=\"" + spool_dir(home) + "\"} 1\n"),
            std::string::npos)
      << prom.out;
}

TEST(CliStatus, SpoolAndDeadLettersMakeItDegraded) {
  TempDir home;
  spool_lines(home, {event_line(1), event_line(2), event_line(3)});
  write_dead(home, dead_line("01938f3e-7c1a-7b2c-8d3e-4f5a6b7c8d9e", "user.signed_in",
                             "2026-12-01T10:00:01Z") +
                       "\n");
  // Fresh events, a generous --max-age: degraded only by the dead letter.
  const auto r = run_cli(home, {"status", "--format", "json", "--max-age", "86400"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["health"], "degraded");
  EXPECT_EQ(j["spool"]["events"], 3);
  EXPECT_GT(j["spool"]["bytes"].get<long long>(), 0);
  EXPECT_EQ(j["dead_letters"]["count"], 1);
  EXPECT_EQ(j["dead_letters"]["newest_at"], "2026-12-01T10:00:01.000000Z");
  ASSERT_EQ(j["problems"].size(), 1U) << j.dump();
  // The failed sends were recorded as the last failed delivery.
  ASSERT_TRUE(j["last_delivery"]["failure"].is_object()) << j.dump();
  EXPECT_EQ(j["last_delivery"]["failure"]["kind"], "unavailable");
  EXPECT_TRUE(j["last_delivery"]["success"].is_null());

  // Without the dead letter, a spool older than --max-age alone is degraded too.
  std::filesystem::remove(dead_file(home));
  const auto aged = run_cli(home, {"status", "--format", "json", "--max-age", "0"});
  EXPECT_EQ(aged.exit_code, 2) << aged.out;
  const auto ok = run_cli(home, {"status", "--max-age", "86400"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
}

TEST(CliStatus, PrometheusOutputFileIsReplacedAtomically) {
  TempDir home;
  spool_lines(home, {event_line(1)});
  const std::string out = home.file("metrics.prom");
  write_file(out, "old\n");
  const auto r = run_cli(home, {"status", "--format", "prometheus", "--output", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty());
  const std::string text = read_file(out);
  EXPECT_NE(text.find("trackevent_spool_events{spool=\"" + spool_dir(home) + "\"} 1\n"),
            std::string::npos)
      << text;
  // Every sample line is "name{labels} value"; no temporary file is left behind.
  for (const auto& line : split_lines(text)) {
    if (line.rfind('#', 0) == 0) continue;
    EXPECT_NE(line.find("} "), std::string::npos) << line;
  }
  for (const auto& e : std::filesystem::directory_iterator(home.path())) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
  // An unwritable destination is an error (1), not a crash.
  const auto bad =
      run_cli(home, {"status", "--format", "prometheus", "--output", home.file("no/such/dir/x")});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
}

TEST(CliStatus, CorruptOrForeignSpoolIsAClearError) {
  TempDir home;
  std::filesystem::create_directories(spool_dir(home));
  ::chmod(spool_dir(home).c_str(), 0700);
  write_file(spool_dir(home) + "/spool.db", std::string(8192, 'x'));
  const auto r = run_cli(home, {"status", "--format", "prometheus"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.out.find("trackevent_up{spool=\"" + spool_dir(home) + "\"} 0\n"), std::string::npos)
      << r.out;
  const auto logs = lines_with_msg(log_lines(r.err), "cannot read the spool");
  ASSERT_EQ(logs.size(), 1U) << r.err;
  EXPECT_NE(logs[0]["err"].get<std::string>().find("corrupt or not a trackevent spool"),
            std::string::npos)
      << r.err;

  // A SQLite database of something else.
  std::filesystem::remove(spool_dir(home) + "/spool.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((spool_dir(home) + "/spool.db").c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE other(x)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  const auto foreign = run_cli(home, {"status"});
  EXPECT_EQ(foreign.exit_code, 1);
  EXPECT_NE(foreign.err.find("not a trackevent spool"), std::string::npos) << foreign.err;
}

TEST(CliStatus, AnswersWhileAnotherProcessHoldsTheSpoolAndTakesNoClaim) {
  TempDir home;
  spool_lines(home, {event_line(1), event_line(2)});
  const std::string path = spool_dir(home) + "/spool.db";
  // Another connection holds the write lock (as a writer mid-transaction does).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const auto r = run_cli(home, {"status", "--format", "json", "--timeout", "1"}, {}, {},
                         std::chrono::milliseconds{20000});
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["spool"]["events"], 2);
  EXPECT_EQ(sqlite_scalar(path, "SELECT count(*) FROM spool WHERE claimed_by IS NOT NULL"), 0);
}

TEST(CliStatus, UnreachableDatabaseExits69) {
  TempDir home;
  const auto r = run_cli(home, {"--db", down_db(), "status", "--format", "json", "--timeout", "2"});
  EXPECT_EQ(r.exit_code, 69) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["health"], "unreachable");
  EXPECT_EQ(j["database"]["reachable"], false);
  // --no-db skips it.
  const auto skipped = run_cli(home, {"--db", down_db(), "status", "--no-db"});
  EXPECT_EQ(skipped.exit_code, 0) << skipped.err;
}

TEST(CliStatusPg, ReportsSchemaAndTheLastDelivery) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = fresh_database("cli_status");
  const auto before = run_cli(home, {"--db", url, "status", "--format", "json"});
  EXPECT_EQ(before.exit_code, 2) << before.err;  // pending migrations
  auto j = nlohmann::json::parse(before.out);
  EXPECT_EQ(j["database"]["reachable"], true);
  EXPECT_GT(j["database"]["pending_migrations"].get<int>(), 0);

  ASSERT_EQ(run_cli(home, {"--db", url, "migrate"}).exit_code, 0);
  ASSERT_EQ(run_cli(home, {"--db", url, "send", event_line(1), event_line(2)}).exit_code, 0);
  const auto after = run_cli(home, {"--db", url, "status", "--format", "json"});
  EXPECT_EQ(after.exit_code, 0) << after.out << after.err;
  j = nlohmann::json::parse(after.out);
  EXPECT_EQ(j["database"]["pending_migrations"], 0);
  EXPECT_GE(j["database"]["schema_version"].get<int>(), 1);
  ASSERT_TRUE(j["last_delivery"]["success"].is_object()) << j.dump();
  EXPECT_EQ(j["last_delivery"]["success"]["events"], 2);
  const auto prom = run_cli(home, {"--db", url, "status", "--format", "prometheus"});
  EXPECT_NE(prom.out.find("trackevent_database_up{"), std::string::npos) << prom.out;
  EXPECT_NE(prom.out.find("trackevent_last_delivery_success_timestamp_seconds{"), std::string::npos)
      << prom.out;
}

// ---- dead letters ------------------------------------------------------------------------------

TEST(CliDeadLetters, ListReportsBadLinesAndPurgeKeepsThem) {
  TempDir home;
  const std::string old_line =
      dead_line("01938f3e-7c1a-7b2c-8d3e-4f5a6b7c8d01", "user.signed_in", "2020-01-01T00:00:00Z");
  const std::string new_line =
      dead_line("01938f3e-7c1a-7b2c-8d3e-4f5a6b7c8d02", "user.signed_in", "2099-01-01T00:00:00Z");
  write_dead(home, old_line + "\n{\"event_id\": \"torn\n" + new_line + "\n");
  const auto list = run_cli(home, {"dead-letters", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(split_lines(list.out), (std::vector<std::string>{old_line, new_line}));
  const auto bad =
      lines_with_msg(log_lines(list.err), "dead-letter line is not a dead letter; kept as it is");
  ASSERT_EQ(bad.size(), 1U) << list.err;
  EXPECT_EQ(bad[0]["line"], 2);

  const auto table = run_cli(home, {"dead-letters", "list", "--format", "table"});
  EXPECT_NE(table.out.find("SQLSTATE"), std::string::npos);
  EXPECT_NE(table.out.find("01938f3e-7c1a-7b2c-8d3e-4f5a6b7c8d02"), std::string::npos);

  EXPECT_EQ(run_cli(home, {"dead-letters", "purge"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"dead-letters", "purge", "--older-than", "soon"}).exit_code, 64);
  const auto purge = run_cli(home, {"dead-letters", "purge", "--older-than", "30d"});
  EXPECT_EQ(purge.exit_code, 0) << purge.err;
  EXPECT_EQ(summary_of(purge)["purged"], 1);
  EXPECT_EQ(read_file(dead_file(home)), "{\"event_id\": \"torn\n" + new_line + "\n");
  struct stat st {};
  ASSERT_EQ(::stat(dead_file(home).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

TEST(CliDeadLetters, ReplayAgainstADatabaseThatIsDownMovesNothing) {
  TempDir home;
  const std::string text =
      dead_line("01938f3e-7c1a-7b2c-8d3e-4f5a6b7c8d03", "user.signed_in", "2026-12-01T00:00:00Z") +
      "\n";
  write_dead(home, text);
  const auto r = run_cli(home, {"--db", down_db(), "dead-letters", "replay", "--timeout", "2"});
  EXPECT_EQ(r.exit_code, 69) << r.err;
  EXPECT_EQ(summary_of(r)["stored"], 0);
  EXPECT_EQ(read_file(dead_file(home)), text);
}

TEST(CliDeadLettersPg, FlushDeadLettersThenReplayStoresWhatIsFixed) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = fresh_database("cli_dead_letters");
  ASSERT_EQ(run_cli(home, {"--db", url, "migrate"}).exit_code, 0);
  pg_exec(url,
          "ALTER TABLE analytics_events ADD CONSTRAINT te_fix_me CHECK (event_name <> 'fix.me')");
  pg_exec(url,
          "ALTER TABLE analytics_events ADD CONSTRAINT te_still_bad CHECK (event_name <> "
          "'still.bad')");
  spool_lines(home, {event_line(1), event_line(2, "fix.me"), event_line(3, "still.bad")});
  const auto flush = run_cli(home, {"--db", url, "flush"});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_EQ(summary_of(flush)["dead_lettered"], 2);

  auto st = run_cli(home, {"--db", url, "status", "--format", "json"});
  EXPECT_EQ(st.exit_code, 2) << st.out;
  auto j = nlohmann::json::parse(st.out);
  EXPECT_EQ(j["dead_letters"]["count"], 2);
  EXPECT_EQ(j["last_delivery"]["failure"]["kind"], "rejected");
  EXPECT_EQ(j["last_delivery"]["failure"]["sqlstate"], "23514");

  // What the dead letters say, before the fix: their ids and times must survive the replay.
  const auto before = split_lines(read_file(dead_file(home)));
  ASSERT_EQ(before.size(), 2U);
  nlohmann::json fix, still;
  for (const auto& l : before) {
    auto d = nlohmann::json::parse(l);
    (d["event_name"] == "fix.me" ? fix : still) = d;
  }
  // A torn line, as a disk that filled mid-write leaves it.
  write_file(dead_file(home), read_file(dead_file(home)) + "{\"event_id\":\"0193\n");

  pg_exec(url, "ALTER TABLE analytics_events DROP CONSTRAINT te_fix_me");
  const auto replay = run_cli(home, {"--db", url, "dead-letters", "replay"});
  EXPECT_EQ(replay.exit_code, 65) << replay.err;  // one still refused, one line invalid
  const auto s = summary_of(replay);
  EXPECT_EQ(s["stored"], 1);
  EXPECT_EQ(s["refused"], 1);
  EXPECT_EQ(s["invalid_lines"], 1);
  EXPECT_EQ(pg_scalar(url, "SELECT count(*) FROM analytics_events WHERE event_id = '" +
                               fix["event_id"].get<std::string>() + "' AND occurred_at = '" +
                               fix["occurred_at"].get<std::string>() + "'"),
            1);
  const auto after = split_lines(read_file(dead_file(home)));
  ASSERT_EQ(after.size(), 2U) << read_file(dead_file(home));
  const auto kept = nlohmann::json::parse(after[0]);
  EXPECT_EQ(kept["event_id"], still["event_id"]);
  EXPECT_EQ(kept["occurred_at"], still["occurred_at"]);
  EXPECT_EQ(kept["sqlstate"], "23514");
  EXPECT_NE(kept["error"].get<std::string>().find("te_still_bad"), std::string::npos) << kept;
  EXPECT_EQ(kept["replays"], 1);
  EXPECT_EQ(after[1], "{\"event_id\":\"0193");

  // A replay of what is already stored (a line left behind) removes it as a duplicate.
  write_file(dead_file(home), read_file(dead_file(home)) + fix.dump() + "\n");
  const auto again = run_cli(home, {"--db", url, "dead-letters", "replay"});
  EXPECT_EQ(summary_of(again)["stored"], 1) << again.err;
  EXPECT_EQ(pg_scalar(url, "SELECT count(*) FROM analytics_events WHERE event_name = 'fix.me'"), 1);
  EXPECT_EQ(split_lines(read_file(dead_file(home))).size(), 2U);
}

}  // namespace
}  // namespace trackevent::test
