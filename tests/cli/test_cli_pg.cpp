// Black-box against the disposable PostgreSQL (scripts/pg-test-server run -- <this binary>).

#include "cli/cli_support.hpp"
#include "support/pg.hpp"

#include <pqxx/pqxx>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace trackevent::test {
namespace {

long long pg_count(const std::string& url, const std::string& where = "true") {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  return tx.exec1("SELECT count(*) FROM analytics_events WHERE " + where)[0].as<long long>();
}

/// A fresh, migrated database for one test.
std::string migrated_database(const TempDir& home, const std::string& name) {
  const std::string url = fresh_database(name);
  const auto r = run_cli(home, {"--db", url, "migrate"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return url;
}

/// Sends event_line(1) and event_line(2) while no database answers, so both wait in the spool.
void spool_two_events(const TempDir& home) {
  const std::string down = "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/x";
  const auto r =
      run_cli(home, {"--db", down, "send", "--timeout", "0.5", event_line(1), event_line(2)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(summary_of(r)["spooled"], 2) << r.err;
}

TEST(CliPg, MigrateIsIdempotentAndReportsStatus) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = fresh_database("cli_migrate");
  const auto before = run_cli(home, {"--db", url, "migrate", "--status"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_NE(before.out.find("pending"), std::string::npos) << before.out;

  const auto r = run_cli(home, {"--db", url, "migrate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(lines_with_msg(log_lines(r.err), "applied migration").empty()) << r.err;
  EXPECT_EQ(pg_count(url), 0);

  const auto again = run_cli(home, {"--db", url, "migrate"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(lines_with_msg(log_lines(again.err), "applied migration").empty());
  const auto status = run_cli(home, {"--db", url, "migrate", "--status"});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_EQ(status.out.find("pending"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("applied"), std::string::npos) << status.out;
}

TEST(CliPg, SendStoresOneRowWithItsMetadata) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_send");
  const auto r = run_cli(
      home, {"--db", url, "send", "--org", "3", "--user", "9", "--event", "dataset.uploaded",
             "--meta", R"({"rows":1200,"tags":["a","b"]})", "-m", "format=csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  const auto row = tx.exec1(
      "SELECT org_id, user_id, event_name, metadata = "
      "'{\"rows\":1200,\"tags\":[\"a\",\"b\"],\"format\":\"csv\"}'::jsonb FROM analytics_events");
  EXPECT_EQ(row[0].as<long long>(), 3);
  EXPECT_EQ(row[1].as<long long>(), 9);
  EXPECT_EQ(row[2].as<std::string>(), "dataset.uploaded");
  EXPECT_TRUE(row[3].as<bool>());
}

TEST(CliPg, IngestOneHundredThousandEvents) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_bulk");
  const std::string file = home.file("bulk.jsonl");
  {
    std::string content;
    content.reserve(100000 * 110);
    for (int i = 0; i < 100000; ++i) content += event_line(i) + "\n";
    write_file(file, content);
  }
  const auto r =
      run_cli(home, {"--db", url, "ingest", file}, {}, {}, std::chrono::milliseconds{300000});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg_count(url), 100000);
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 100000);
  EXPECT_EQ(s["stored"], 100000);
  EXPECT_EQ(s["spooled"], 0);  // a file is read with backpressure, never via the spool
}

TEST(CliPg, IngestOverARoleAllowedOneConnectionStoresEverythingOnIt) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_one_conn");
  const OneConnectionRole role(url);
  const std::string file = home.file("events.jsonl");
  {
    std::string content;
    for (int i = 0; i < 40000; ++i) content += event_line(i) + "\n";
    write_file(file, content);
  }
  // Default options: two connections, the second refused by the server (53300).
  const auto r = run_cli(home, {"--db", role.url(), "ingest", "--batch-size", "1000", file}, {}, {},
                         std::chrono::milliseconds{120000});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg_count(url), 40000);
  const auto s = summary_of(r);
  EXPECT_EQ(s["stored"], 40000);
  EXPECT_EQ(s["spooled"], 0) << r.err;
  EXPECT_EQ(s["retries"], 0) << r.err;
  const auto logs = log_lines(r.err);
  const auto aside = lines_with_msg(
      logs, "could not open a database connection while another works; writing on the others");
  ASSERT_EQ(aside.size(), 1U) << r.err;
  EXPECT_EQ(aside[0]["sqlstate"], "53300");
  EXPECT_EQ(aside[0]["connection"], 2);
}

TEST(CliPg, IngestFromAPipeStoresEverything) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_pipe");
  std::string input;
  for (int i = 0; i < 5000; ++i) input += event_line(i) + "\n";
  const auto r = run_cli(home, {"--db", url, "ingest", "--tee"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, input);
  const auto s = summary_of(r);
  // Whatever went through the spool on overflow was drained by the same run or is still there.
  EXPECT_EQ(s["stored"].get<long long>() + s["spooled"].get<long long>() >= 5000, true);
  EXPECT_EQ(s["dropped"], 0);
}

TEST(CliPg, SameEventIdTwiceIsOneRow) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_dup");
  const std::string line =
      R"({"event_id":"0190f5a4-8b3c-7def-8123-456789abcdef","org_id":1,"event_name":"a.b"})";
  auto r = run_cli(home, {"--db", url, "ingest"}, line + "\n" + line + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(home, {"--db", url, "send", line});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg_count(url), 1);
  EXPECT_EQ(summary_of(r)["duplicates"], 1);
}

TEST(CliPg, MetadataReadsBackEqualAsJsonb) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_meta");
  const std::vector<std::string> metas = {
      R"({})",
      R"({"a":1,"b":"two","c":[1,2,{"d":null}],"e":{"f":{"g":true}}})",
      R"({"unicode":"h\u00e9llo \u2603 \ud83d\ude00","quote":"\"","backslash":"\\"})",
      R"({"big":9007199254740993,"neg":-1.5e-7,"zero":0})",
  };
  std::string input;
  for (std::size_t i = 0; i < metas.size(); ++i) {
    input += R"({"org_id":1,"event_name":"meta.test","user_id":)" + std::to_string(i + 1) +
             R"(,"metadata":)" + metas[i] + "}\n";
  }
  const auto r = run_cli(home, {"--db", url, "ingest"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  for (std::size_t i = 0; i < metas.size(); ++i) {
    const auto row =
        tx.exec1("SELECT metadata = " + tx.quote(metas[i]) +
                 "::jsonb FROM analytics_events WHERE user_id = " + std::to_string(i + 1));
    EXPECT_TRUE(row[0].as<bool>()) << metas[i];
  }
}

TEST(CliPg, StrictSucceedsWhenTheDatabaseIsUp) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_strict");
  const auto r = run_cli(home, {"--db", url, "ingest", "--strict"}, event_line(1) + "\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg_count(url), 1);
}

TEST(CliPg, StrictWithoutTheTableExits69) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = fresh_database("cli_strict_nomigrate");
  const auto r = run_cli(home, {"--db", url, "ingest", "--strict"}, event_line(1) + "\n");
  EXPECT_EQ(r.exit_code, 69) << r.err;
}

TEST(CliPg, FlushDeliversWhatWasSpooled) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  ASSERT_NO_FATAL_FAILURE(spool_two_events(home));
  const std::string url = migrated_database(home, "cli_flush");
  const auto r = run_cli(home, {"--db", url, "flush"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg_count(url), 2);
}

/// Runs one statement on a SQLite file read-write (the spool, past its API); false on error.
bool sqlite_exec(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  bool ok = false;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 10000);
    ok = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    if (!ok) ADD_FAILURE() << "sqlite: " << sqlite3_errmsg(db) << " in " << sql;
  }
  sqlite3_close(db);
  return ok;
}

// A refused row leaves the spool only once its dead-letter line is on disk: while
// dead-letter.jsonl cannot be written, flush stores the rest, keeps that row (claimed, so no
// drain retries it before the lease runs out, this one included), logs it critically and exits 1.
void flush_keeps_a_refused_event_until_its_dead_letter_is_written(const std::string& db_name,
                                                                  bool exclusive) {
  TempDir home;
  std::vector<std::string> flush{"--db", "", "flush"};
  if (exclusive) flush.emplace_back("--exclusive");
  const std::string down = "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/x";
  auto r = run_cli(home, {"--db", down, "send", "--timeout", "0.5", event_line(1),
                          event_line(2, "test.refused"), event_line(3)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(summary_of(r)["spooled"], 3) << r.err;
  const std::string url = migrated_database(home, db_name);
  flush[1] = url;
  {
    pqxx::connection c{url};
    pqxx::nontransaction tx{c};
    tx.exec(
        "ALTER TABLE analytics_events ADD CONSTRAINT test_refuses "
        "CHECK (event_name <> 'test.refused')");  // 23514 for that one row
  }
  const std::string spool = home.file("spool");
  const std::string spool_db = spool + "/spool.db";
  const std::string dead = spool + "/dead-letter.jsonl";
  ASSERT_EQ(::mkdir(dead.c_str(), 0700), 0);  // a directory where the file should be

  const auto started = std::chrono::steady_clock::now();
  auto first_flush = flush;
  first_flush.insert(first_flush.end(), {"--timeout", "20"});
  r = run_cli(home, first_flush);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_LT(took, std::chrono::seconds(10)) << "the drain waited on the row it keeps back";
  const auto logs = log_lines(r.err);
  std::vector<nlohmann::json> critical;
  for (const auto& j : logs) {
    if (j.value("level", "") == "critical") critical.push_back(j);
  }
  ASSERT_FALSE(critical.empty()) << r.err;
  const auto& kept = critical.front();
  EXPECT_TRUE(kept.contains("event_id")) << kept;
  EXPECT_EQ(kept.value("spool", ""), spool_db) << kept;
  EXPECT_NE(kept.value("err", "").find("dead-letter.jsonl"), std::string::npos) << kept;
  const auto summary = summary_of(r);
  EXPECT_EQ(summary["stored"], 2);
  EXPECT_EQ(summary["dead_lettered"], 0);
  EXPECT_EQ(summary["dead_letter_failed"], 1);
  EXPECT_EQ(summary["remaining"], 1);
  EXPECT_EQ(pg_count(url), 2);
  EXPECT_EQ(sqlite_scalar(spool_db, "SELECT count(*) FROM spool"), 1);
  EXPECT_EQ(sqlite_text(spool_db, "SELECT event_name FROM spool"), "test.refused");
  // Not given back: still claimed under the drain's lease (2 minutes), a natural backoff.
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_GT(sqlite_scalar(spool_db, "SELECT claimed_until FROM spool"), now_ms + 60'000);

  // The lease runs out (two minutes, simulated) and the file can be written again.
  ASSERT_TRUE(sqlite_exec(spool_db, "UPDATE spool SET claimed_until = 0"));
  ASSERT_EQ(::rmdir(dead.c_str()), 0);
  r = run_cli(home, flush);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto after = summary_of(r);
  EXPECT_EQ(after["dead_lettered"], 1);
  EXPECT_EQ(after["dead_letter_failed"], 0);
  EXPECT_EQ(after["remaining"], 0);
  EXPECT_EQ(sqlite_scalar(spool_db, "SELECT count(*) FROM spool"), 0);
  EXPECT_EQ(pg_count(url), 2);
  const auto lines = split_lines(read_file(dead));
  ASSERT_EQ(lines.size(), 1U) << read_file(dead);
  const auto letter = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(letter["event_name"], "test.refused");
  EXPECT_EQ(letter["sqlstate"], "23514");
  EXPECT_EQ(letter["event_id"], kept["event_id"]);
}

TEST(CliPg, FlushKeepsARefusedEventSpooledUntilItsDeadLetterIsWritten) {
  TRACKEVENT_REQUIRE_PG();
  flush_keeps_a_refused_event_until_its_dead_letter_is_written("cli_flush_dead_letter", false);
}

TEST(CliPg, ExclusiveFlushKeepsARefusedEventSpooledUntilItsDeadLetterIsWritten) {
  TRACKEVENT_REQUIRE_PG();
  flush_keeps_a_refused_event_until_its_dead_letter_is_written("cli_flush_dead_letter_excl", true);
}

/// Polls `done` every 50 ms for up to 20 s.
template <typename Done>
bool eventually(Done&& done) {
  for (int i = 0; i < 400; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return done();
}

/// Whether some process holds the exclusive-flush lock of the spool in `dir`.
bool flush_lock_held(const std::string& dir) {
  const int fd = ::open((dir + "/flush.lock").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);
  return held;
}

TEST(CliPg, SendInTheBackgroundSpoolsReturnsAndADetachedFlushDelivers) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = migrated_database(home, "cli_send_bg");
  const auto r = run_cli(home, {"--db", url, "send", "--background", "--org", "5", "--event",
                                "backup.completed", "-m", "host=db1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 1);
  EXPECT_EQ(s["spooled"], 1);
  EXPECT_EQ(s["stored"], 0);
  const auto handed =
      lines_with_msg(log_lines(r.err), "events spooled; delivering them in the background");
  ASSERT_EQ(handed.size(), 1U) << r.err;
  EXPECT_EQ(handed[0]["deliverer"], "started");
  // The URL went to the deliverer through its environment: the row arrives.
  EXPECT_TRUE(eventually([&] { return pg_count(url, "metadata->>'host' = 'db1'") == 1; }));
  const std::string spool = home.file("spool");
  EXPECT_TRUE(eventually(
      [&] { return sqlite_scalar(spool + "/spool.db", "SELECT count(*) FROM spool") == 0; }));
  EXPECT_TRUE(eventually([&] { return !flush_lock_held(spool); }));
  const auto deliverer_log = log_lines(read_file(spool + "/flush.log"));
  EXPECT_FALSE(lines_with_msg(deliverer_log, "summary").empty()) << read_file(spool + "/flush.log");
}

TEST(CliPg, SendInTheBackgroundDoesNotWaitForAHungDatabase) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  BlackHole hole;  // accepts connections and never answers
  const std::string hung =
      "postgresql://nobody@127.0.0.1:" + std::to_string(hole.port()) + "/x?connect_timeout=1";
  const auto r = run_cli(home, {"--db", hung, "send", "--background", event_line(1)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // send has returned (with its stdout and stderr closed) while its deliverer still waits on the
  // database: it is detached, and holds the lock that makes a second one stand aside.
  const std::string spool = home.file("spool");
  ASSERT_TRUE(eventually([&] { return flush_lock_held(spool); }));
  const auto again = run_cli(home, {"--db", hung, "send", "--background", event_line(2)});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto handed =
      lines_with_msg(log_lines(again.err), "events spooled; delivering them in the background");
  ASSERT_EQ(handed.size(), 1U) << again.err;
  EXPECT_EQ(handed[0]["deliverer"], "already running");
  // The deliverer gives up on the connect timeout; both events wait in the spool.
  EXPECT_TRUE(eventually([&] { return !flush_lock_held(spool); }));
  EXPECT_EQ(sqlite_scalar(spool + "/spool.db", "SELECT count(*) FROM spool"), 2);
  const std::string url = migrated_database(home, "cli_send_bg_hung");
  const auto flushed = run_cli(home, {"--db", url, "flush"});
  EXPECT_EQ(flushed.exit_code, 0) << flushed.err;
  EXPECT_EQ(pg_count(url), 2);
}

TEST(CliPg, ExclusiveFlushStandsAsideWhileAnotherRuns) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  ASSERT_NO_FATAL_FAILURE(spool_two_events(home));
  const std::string url = migrated_database(home, "cli_flush_excl");
  const std::string spool = home.file("spool");
  const int fd = ::open((spool + "/flush.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto r = run_cli(home, {"--db", url, "flush", "--exclusive"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(
      lines_with_msg(log_lines(r.err),
                     "another exclusive flush of this spool is running; leaving the events to it")
          .empty())
      << r.err;
  EXPECT_EQ(pg_count(url), 0);
  ::close(fd);  // released: the next exclusive flush delivers
  r = run_cli(home, {"--db", url, "flush", "--exclusive"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(pg_count(url), 2);
  EXPECT_EQ(summary_of(r)["stored"], 2);
}

}  // namespace
}  // namespace trackevent::test
