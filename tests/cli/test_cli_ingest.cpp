// Black-box: `trackevent ingest` into the embedded SQLite store.

#include "cli/cli_support.hpp"

#include <csignal>

namespace trackevent::test {
namespace {

std::string many_lines(int n, const std::string& name = "user.signed_in") {
  std::string out;
  for (int i = 0; i < n; ++i) out += event_line(i, name) + "\n";
  return out;
}

long long rows(const std::string& db) {
  return sqlite_scalar(db, "SELECT count(*) FROM analytics_events");
}

void expect_every_line_is_a_log_object(const std::string& err) {
  for (const auto& j : log_lines(err)) {
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << j.dump();
  }
}

TEST(CliIngest, StdinIntoSqliteStoresEveryLine) {
  TempDir home;
  const std::string db = home.file("events.db");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "ingest"}, many_lines(250));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(rows(db), 250);
  expect_every_line_is_a_log_object(r.err);
  const auto s = summary_of(r);
  EXPECT_EQ(s["level"], "info");
  EXPECT_EQ(s["read"], 250);
  EXPECT_EQ(s["accepted"], 250);
  EXPECT_EQ(s["rejected"], 0);
  EXPECT_EQ(s["stored"], 250);
  EXPECT_EQ(s["duplicates"], 0);
  EXPECT_EQ(s["spooled"], 0);
  EXPECT_EQ(s["dropped"], 0);
}

TEST(CliIngest, DefaultStoreLivesUnderXdgDataHome) {
  TempDir home;
  const auto r = run_cli(home, {"ingest"}, many_lines(20));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(home.file("data") + "/trackevent/events.db"), 20);
}

TEST(CliIngest, DatabaseUrlFromTheEnvironment) {
  TempDir home;
  const std::string a = home.file("a.db");
  const std::string b = home.file("b.db");
  auto r = run_cli(home, {"ingest"}, many_lines(3), {{"DATABASE_URL", "sqlite:" + b}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(b), 3);
  // TRACKEVENT_DATABASE_URL wins over DATABASE_URL, and --db over both.
  r = run_cli(home, {"ingest"}, many_lines(4),
              {{"DATABASE_URL", "sqlite:" + b}, {"TRACKEVENT_DATABASE_URL", "sqlite:" + a}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(a), 4);
  r = run_cli(home, {"--db", "sqlite:" + b, "ingest"}, many_lines(5),
              {{"TRACKEVENT_DATABASE_URL", "sqlite:" + a}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(b), 8);
}

TEST(CliIngest, FilesAreReadInOrder) {
  TempDir home;
  const std::string db = home.file("events.db");
  write_file(home.file("a.jsonl"), many_lines(30));
  write_file(home.file("b.jsonl"), many_lines(12, "backup.completed"));
  const auto r =
      run_cli(home, {"--db", "sqlite:" + db, "ingest", home.file("a.jsonl"), home.file("b.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(db), 42);
  EXPECT_EQ(sqlite_scalar(db,
                          "SELECT count(*) FROM analytics_events WHERE event_name = "
                          "'backup.completed'"),
            12);
}

TEST(CliIngest, MissingInputFileFailsBeforeStoringAnything) {
  TempDir home;
  const std::string db = home.file("events.db");
  write_file(home.file("a.jsonl"), many_lines(3));
  const auto r = run_cli(
      home, {"--db", "sqlite:" + db, "ingest", home.file("a.jsonl"), home.file("missing.jsonl")});
  EXPECT_EQ(r.exit_code, 66);
  EXPECT_FALSE(std::filesystem::exists(db) && rows(db) > 0);
}

// Lines 1..9 of a file; bad ones at 3 (wrong type), 5 (not JSON), 7 (unknown key), 9 (no org_id).
const char* kMixed =
    R"({"org_id":1,"user_id":2,"event_name":"user.signed_in"}
{"org_id":1,"user_id":null,"event_name":"backup.completed","metadata":{"bytes":10}}
{"org_id":"one","event_name":"user.signed_in"}
{"org_id":2,"event_name":"dataset.uploaded","metadata":{"rows":1200}}
this is not json

{"org_id":3,"event_name":"user.signed_in","colour":"red"}
{"org_id":3,"event_name":"report.generated"}
{"event_name":"user.signed_in"}
)";

TEST(CliIngest, BadLinesAreLoggedOneEachAndTheRestStored) {
  TempDir home;
  const std::string db = home.file("events.db");
  const std::string file = home.file("mixed.jsonl");
  write_file(file, kMixed);
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "ingest", file});
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(rows(db), 4);
  const auto logs = log_lines(r.err);
  const auto rejected = lines_with_msg(logs, "rejected event");
  ASSERT_EQ(rejected.size(), 4u) << r.err;
  const int expected_lines[] = {3, 5, 7, 9};
  for (std::size_t i = 0; i < rejected.size(); ++i) {
    EXPECT_EQ(rejected[i]["level"], "error");
    EXPECT_EQ(rejected[i]["source"], file);
    EXPECT_EQ(rejected[i]["line"], expected_lines[i]);
    EXPECT_FALSE(rejected[i].value("err", "").empty()) << rejected[i].dump();
  }
  const auto s = summary_of(r);
  EXPECT_EQ(s["read"], 8);  // the blank line is skipped, not counted
  EXPECT_EQ(s["accepted"], 4);
  EXPECT_EQ(s["rejected"], 4);
  EXPECT_EQ(s["stored"], 4);
}

TEST(CliIngest, RejectionsFromStdinNameStdin) {
  TempDir home;
  const auto r = run_cli(home, {"--db", "sqlite:" + home.file("e.db"), "ingest", "-"},
                         event_line(1) + "\n{\"org_id\":0,\"event_name\":\"a.b\"}\n");
  EXPECT_EQ(r.exit_code, 65);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0]["source"], "stdin");
  EXPECT_EQ(rejected[0]["line"], 2);
}

TEST(CliIngest, TeeCopiesInputByteForByte) {
  TempDir home;
  // Good and bad lines, CRLF, a blank line, and no final newline.
  const std::string input = event_line(1) + "\r\n" + "garbage\n" + "\n" + event_line(2) + "\r\n" +
                            "{\"org_id\":1}\n" + event_line(3);
  const auto r = run_cli(home, {"--db", "sqlite:" + home.file("e.db"), "ingest", "--tee"}, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(r.out, input);
  EXPECT_EQ(rows(home.file("e.db")), 3);  // CRLF lines and the unterminated last line parse
  const auto s = summary_of(r);
  EXPECT_EQ(s["read"], 5);
  EXPECT_EQ(s["rejected"], 2);
}

TEST(CliIngest, TeeFromAFileToo) {
  TempDir home;
  const std::string file = home.file("in.jsonl");
  write_file(file, kMixed);
  const auto r = run_cli(home, {"ingest", "--check", "--tee", file});
  EXPECT_EQ(r.out, kMixed);
}

TEST(CliIngest, ClosedStdoutStopsTeeingNotDelivery) {
  TempDir home;
  const std::string db = home.file("e.db");
  RunOptions options = cli_options(home, {"--db", "sqlite:" + db, "ingest", "--tee"});
  options.input = many_lines(20000);
  options.close_stdout_after = 1;
  const auto r = run_program(TRACKEVENT_BIN, options);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(rows(db), 20000);
}

TEST(CliIngest, CheckValidatesAndStoresNothing) {
  TempDir home;
  const std::string db = home.file("e.db");
  const std::string file = home.file("mixed.jsonl");
  write_file(file, kMixed);
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "ingest", "--check", file});
  EXPECT_EQ(r.exit_code, 65);
  EXPECT_FALSE(std::filesystem::exists(db));
  EXPECT_FALSE(std::filesystem::exists(home.file("data")));
  EXPECT_EQ(lines_with_msg(log_lines(r.err), "rejected event").size(), 4u);
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 4);
  EXPECT_EQ(s["stored"], 0);

  const auto good = run_cli(home, {"ingest", "--check"}, many_lines(10));
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_FALSE(std::filesystem::exists(home.file("data")));
}

TEST(CliIngest, OverlongLinesAreSkippedAndRejected) {
  TempDir home;
  const std::string db = home.file("e.db");
  // A line much longer than the limit (and than the read buffer), between two good ones.
  std::string huge =
      R"({"org_id":1,"event_name":"a.b","metadata":{"x":")" + std::string(300000, 'x') + "\"}}";
  const std::string input = event_line(1) + "\n" + huge + "\n" + event_line(2) + "\n";
  const auto r =
      run_cli(home, {"--db", "sqlite:" + db, "ingest", "--tee", "--max-line-bytes", "1000"}, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(r.out, input);
  EXPECT_EQ(rows(db), 2);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0]["line"], 2);
  EXPECT_NE(rejected[0].value("err", "").find("line too long"), std::string::npos);
}

TEST(CliIngest, LinesSpanningManyReadBuffersAreReassembled) {
  TempDir home;
  const std::string db = home.file("e.db");
  // ~200 KB lines: each spans several 64 KiB reads, yet stays under the 1 MiB line limit.
  const std::string big = std::string(200000, 'y');
  std::string input;
  for (int i = 0; i < 3; ++i) {
    input += R"({"org_id":1,"event_name":"a.b","user_id":)" + std::to_string(i + 1) +
             R"(,"metadata":{"blob":")" + big + "\"}}\n";
  }
  const auto r =
      run_cli(home, {"--db", "sqlite:" + db, "ingest", "--max-metadata-bytes", "300000"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(db), 3);
  EXPECT_EQ(sqlite_scalar(db,
                          "SELECT min(length(json_extract(metadata, '$.blob'))) FROM "
                          "analytics_events"),
            200000);
}

TEST(CliIngest, LineExactlyAtTheLimitIsAccepted) {
  TempDir home;
  std::string line = event_line(1);
  const auto r =
      run_cli(home, {"ingest", "--check", "--max-line-bytes", std::to_string(line.size())},
              line + "\r\n" + line + "x\n");
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u) << r.err;
  EXPECT_EQ(rejected[0]["line"], 2);
  EXPECT_NE(rejected[0].value("err", "").find("line too long"), std::string::npos);
}

TEST(CliIngest, NulBytesRejectTheirLineOnly) {
  TempDir home;
  std::string bad = event_line(5);
  bad.insert(bad.size() - 1, std::string("\0", 1));
  const auto r = run_cli(home, {"ingest", "--check", "--tee"},
                         event_line(1) + "\n" + bad + "\n" + event_line(2) + "\n");
  EXPECT_EQ(r.exit_code, 65);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0]["line"], 2);
  EXPECT_EQ(r.out.size(), event_line(1).size() + bad.size() + event_line(2).size() + 3);
}

TEST(CliIngest, CatalogRejectsUnknownNames) {
  TempDir home;
  const std::string catalog = home.file("catalog.json");
  write_file(catalog, R"({"events":[{"name":"user.signed_in","description":"x"}]})");
  const auto r = run_cli(home, {"--catalog", catalog, "ingest", "--check"},
                         event_line(1) + "\n" + event_line(2, "user.signed_inn") + "\n");
  EXPECT_EQ(r.exit_code, 65);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0]["line"], 2);
}

TEST(CliIngest, SameEventIdTwiceIsStoredOnce) {
  TempDir home;
  const std::string db = home.file("e.db");
  const std::string line =
      R"({"event_id":"0190f5a4-8b3c-7def-8123-456789abcdef","org_id":1,"event_name":"a.b"})";
  auto r = run_cli(home, {"--db", "sqlite:" + db, "ingest"}, line + "\n" + line + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(home, {"--db", "sqlite:" + db, "ingest"}, line + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(db), 1);
  EXPECT_EQ(summary_of(r)["duplicates"], 1);
}

TEST(CliIngest, QuietLogsOnlyErrors) {
  TempDir home;
  const auto r = run_cli(home, {"-q", "ingest", "--check"}, event_line(1) + "\nbad\n");
  EXPECT_EQ(r.exit_code, 65);
  const auto logs = log_lines(r.err);
  ASSERT_EQ(logs.size(), 1u) << r.err;
  EXPECT_EQ(logs[0]["level"], "error");
}

TEST(CliIngest, SigtermStopsReadingAndStillDelivers) {
  TempDir home;
  const std::string db = home.file("e.db");
  RunOptions options = cli_options(home, {"--db", "sqlite:" + db, "ingest", "--tee"});
  options.input = many_lines(50);
  options.keep_stdin_open = true;  // the producer never ends; only the signal stops us
  options.timeout = std::chrono::milliseconds{20000};
  const std::string teed = options.input;
  bool signalled = false;
  // Once every line has been echoed, all were read: then ask the CLI to stop.
  options.on_output = [&](pid_t pid, const RunResult& so_far) {
    if (!signalled && so_far.out.size() >= teed.size()) {
      ::kill(pid, SIGTERM);
      signalled = true;
    }
    return false;
  };
  const auto r = run_program(TRACKEVENT_BIN, options);
  EXPECT_TRUE(signalled);
  // Delivered, then died of the signal: 143, as the shell expects of a stopped program.
  EXPECT_EQ(r.term_signal, SIGTERM) << r.err;
  EXPECT_EQ(r.exit_code, 143);
  EXPECT_EQ(rows(db), 50);
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 50);
  EXPECT_EQ(s.value("interrupted", false), true);
}

TEST(CliIngest, SecondSignalCutsTheFlushShortAndSpools) {
  TempDir home;
  // Nothing listens: delivery keeps failing, so only the second signal can end the long flush.
  const std::string down =
      "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/nothing";
  RunOptions options =
      cli_options(home, {"--db", down, "ingest", "--tee", "--flush-timeout", "120"});
  options.input = many_lines(40);
  options.keep_stdin_open = true;
  options.timeout = std::chrono::milliseconds{30000};
  const std::string teed = options.input;
  bool signalled = false;
  options.on_output = [&](pid_t pid, const RunResult& so_far) {
    if (!signalled && so_far.out.size() >= teed.size()) {
      ::kill(pid, SIGINT);
      ::kill(pid, SIGINT);
      signalled = true;
    }
    return false;
  };
  const auto started = std::chrono::steady_clock::now();
  const auto r = run_program(TRACKEVENT_BIN, options);
  EXPECT_TRUE(signalled);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds{20});
  EXPECT_EQ(r.term_signal, SIGINT) << r.err;
  EXPECT_EQ(r.exit_code, 130);
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 40);
  EXPECT_EQ(s["spooled"], 40);
  EXPECT_EQ(s["dropped"], 0);

  // Nothing was lost: the spool delivers all of it later.
  const std::string db = home.file("later.db");
  const auto flushed = run_cli(home, {"--db", "sqlite:" + db, "flush"});
  EXPECT_EQ(flushed.exit_code, 0) << flushed.err;
  EXPECT_EQ(rows(db), 40);
}

}  // namespace
}  // namespace trackevent::test
