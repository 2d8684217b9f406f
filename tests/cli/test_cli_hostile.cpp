// Black-box: the "hostile input and secrets" promises, end to end through the built binary.
// Limits and their options, escapes and bytes that jsonb or UTF-8 refuse, integer edge cases with
// their own reasons, line-ending and garbage handling, passwords never printed, SQL never built
// from input (against a real PostgreSQL), and the spool's file modes.

#include "cli/cli_support.hpp"
#include "support/pg.hpp"

#include <pqxx/pqxx>

#include <sys/stat.h>

#include <cstdint>
#include <random>
#include <set>

namespace trackevent::test {
namespace {

constexpr const char* kSecret = "Sup3rS3cretPw";

long long rows(const std::string& db) {
  return sqlite_scalar(db, "SELECT count(*) FROM analytics_events");
}

/// A valid line whose user_id identifies it in the store.
std::string good(int user_id) {
  return R"({"org_id":1,"user_id":)" + std::to_string(user_id) + R"(,"event_name":"a.b"})";
}

/// A line for user `user_id` with `metadata_json` spliced in verbatim.
std::string with_meta(int user_id, const std::string& metadata_json) {
  return R"({"org_id":1,"user_id":)" + std::to_string(user_id) +
         R"(,"event_name":"a.b","metadata":)" + metadata_json + "}";
}

std::set<long long> stored_users(const std::string& db) {
  std::set<long long> out;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db;
    sqlite3_close(h);
    return out;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(h, "SELECT user_id FROM analytics_events", -1, &stmt, nullptr) ==
      SQLITE_OK) {
    while (sqlite3_step(stmt) == SQLITE_ROW) out.insert(sqlite3_column_int64(stmt, 0));
  } else {
    ADD_FAILURE() << sqlite3_errmsg(h);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(h);
  return out;
}

nlohmann::json stored_metadata(const std::string& db, int user_id) {
  const std::string text = sqlite_text(
      db, "SELECT metadata FROM analytics_events WHERE user_id = " + std::to_string(user_id));
  auto j = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "metadata of user " << user_id << " is not JSON: " << text;
  return j;
}

/// The "rejected event" lines, checked to be well-formed; every stderr line must be JSON.
std::vector<nlohmann::json> rejections(const RunResult& r, const std::string& source) {
  auto out = lines_with_msg(log_lines(r.err), "rejected event");
  for (const auto& j : out) {
    EXPECT_EQ(j.value("level", ""), "error") << j.dump();
    EXPECT_EQ(j.value("source", ""), source) << j.dump();
    EXPECT_TRUE(j.contains("line") && j["line"].is_number_integer()) << j.dump();
    EXPECT_FALSE(j.value("err", "").empty()) << j.dump();
  }
  return out;
}

/// Asserts exactly one rejection per listed line (in order) and returns their reasons.
std::vector<std::string> expect_rejected_lines(const RunResult& r, const std::string& source,
                                               const std::vector<int>& lines) {
  const auto rejected = rejections(r, source);
  std::vector<std::string> reasons;
  EXPECT_EQ(rejected.size(), lines.size()) << r.err;
  for (std::size_t i = 0; i < rejected.size() && i < lines.size(); ++i) {
    EXPECT_EQ(rejected[i].value("line", -1), lines[i]) << rejected[i].dump();
    reasons.push_back(rejected[i].value("err", ""));
  }
  return reasons;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Ingests `input` from stdin into a fresh SQLite store in `home`; returns the run.
RunResult ingest(const TempDir& home, const std::string& input,
                 std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--db", "sqlite:" + home.file("e.db"), "ingest"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_cli(home, args, input);
}

// ---------------------------------------------------------------------------------------------
// Limits, each with its option.

TEST(CliHostileLimits, TwoMiBLineIsRejectedAndItsNeighboursStored) {
  TempDir home;
  // 2 MiB of JSON whitespace between two keys: a valid event whose metadata stays tiny, so only
  // the line length limit can refuse it.
  const std::string huge =
      R"({"org_id":1,"user_id":2,)" + std::string(2 * 1024 * 1024, ' ') + R"("event_name":"a.b"})";
  const std::string input = good(1) + "\n" + huge + "\n" + good(3) + "\n";
  const auto r = ingest(home, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 3}));
  const auto reasons = expect_rejected_lines(r, "stdin", {2});
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_TRUE(contains(reasons[0], "line too long")) << reasons[0];
  EXPECT_TRUE(contains(reasons[0], "--max-line-bytes")) << reasons[0];
  EXPECT_TRUE(contains(reasons[0], "1048576")) << reasons[0];
  const auto s = summary_of(r);
  EXPECT_EQ(s["read"], 3);
  EXPECT_EQ(s["rejected"], 1);
  EXPECT_EQ(s["stored"], 2);

  TempDir home2;
  const auto ok = ingest(home2, input, {"--max-line-bytes", "4194304"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(stored_users(home2.file("e.db")), (std::set<long long>{1, 2, 3}));
  EXPECT_TRUE(rejections(ok, "stdin").empty()) << ok.err;
}

TEST(CliHostileLimits, MetadataOver32KiBIsRejectedUnlessRaised) {
  TempDir home;
  // {"x":"…"} is 8 bytes plus the string: one byte over 32 KiB in total.
  const std::string blob(32 * 1024 - 8 + 1, 'm');
  const std::string over = with_meta(2, R"({"x":")" + blob + "\"}");
  const std::string at_limit = with_meta(4, R"({"x":")" + blob.substr(1) + "\"}");
  const std::string input = good(1) + "\n" + over + "\n" + good(3) + "\n" + at_limit + "\n";
  const auto r = ingest(home, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 3, 4}));
  const auto reasons = expect_rejected_lines(r, "stdin", {2});
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_TRUE(reasons[0].rfind("metadata: ", 0) == 0) << reasons[0];
  EXPECT_TRUE(contains(reasons[0], "32768")) << reasons[0];

  TempDir home2;
  const auto ok = ingest(home2, input, {"--max-metadata-bytes", "65536"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(stored_users(home2.file("e.db")), (std::set<long long>{1, 2, 3, 4}));
  EXPECT_EQ(stored_metadata(home2.file("e.db"), 2), (nlohmann::json{{"x", blob}}));
}

/// metadata {"a": [[...[1]...]]} making the whole line `depth` levels deep.
std::string nested_line(int user_id, int depth) {
  const int arrays = depth - 2;  // the line's object is 1, metadata's object is 2
  return with_meta(user_id, R"({"a":)" + std::string(static_cast<std::size_t>(arrays), '[') + "1" +
                                std::string(static_cast<std::size_t>(arrays), ']') + "}");
}

TEST(CliHostileLimits, Nesting65DeepIsRejectedUnlessRaised) {
  TempDir home;
  const std::string input =
      good(1) + "\n" + nested_line(2, 65) + "\n" + nested_line(3, 64) + "\n" + good(4) + "\n";
  const auto r = ingest(home, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 3, 4}));
  const auto reasons = expect_rejected_lines(r, "stdin", {2});
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_TRUE(contains(reasons[0], "64")) << reasons[0];
  EXPECT_TRUE(contains(reasons[0], "--max-depth") || contains(reasons[0], "nested")) << reasons[0];

  TempDir home2;
  const auto ok = ingest(home2, input + nested_line(5, 100) + "\n", {"--max-depth", "100"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(stored_users(home2.file("e.db")), (std::set<long long>{1, 2, 3, 4, 5}));
  // A very deep line (far past any limit) is refused without crashing the parser.
  TempDir home3;
  const auto deep = ingest(home3, nested_line(6, 100000) + "\n" + good(7) + "\n");
  EXPECT_EQ(deep.exit_code, 65) << deep.err;
  EXPECT_EQ(stored_users(home3.file("e.db")), (std::set<long long>{7}));
}

std::string keys_object(int top, int nested) {
  nlohmann::json m = nlohmann::json::object();
  for (int i = 0; i < top; ++i) m["k" + std::to_string(i)] = i;
  if (nested > 0) {
    nlohmann::json inner = nlohmann::json::object();
    for (int i = 0; i < nested; ++i) inner["n" + std::to_string(i)] = i;
    m["inner"] = inner;
  }
  return m.dump();
}

TEST(CliHostileLimits, TooManyKeysAreRejectedUnlessRaised) {
  TempDir home;
  // 1001 flat keys; 600 + 1 ("inner") + 400 nested = 1001 keys counted over nested objects;
  // exactly 1000 keys is fine.
  const std::string input = good(1) + "\n" + with_meta(2, keys_object(1001, 0)) + "\n" +
                            with_meta(3, keys_object(600, 400)) + "\n" +
                            with_meta(4, keys_object(1000, 0)) + "\n" + good(5) + "\n";
  const auto r = ingest(home, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 4, 5}));
  const auto reasons = expect_rejected_lines(r, "stdin", {2, 3});
  for (const auto& reason : reasons) {
    EXPECT_TRUE(contains(reason, "1000")) << reason;
    EXPECT_TRUE(contains(reason, "keys")) << reason;
  }

  TempDir home2;
  const auto ok = ingest(home2, input, {"--max-keys", "2000"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(stored_users(home2.file("e.db")), (std::set<long long>{1, 2, 3, 4, 5}));
  EXPECT_EQ(stored_metadata(home2.file("e.db"), 3), nlohmann::json::parse(keys_object(600, 400)));
}

// ---------------------------------------------------------------------------------------------
// Escapes and bytes refused per line; the neighbours stored.

TEST(CliHostileUnicode, RefusedEscapesAndBytesRejectOnlyTheirLine) {
  TempDir home;
  const std::vector<std::string> bad = {
      with_meta(2, R"({"s":"a\u0000b"})"),  // NUL escape: jsonb refuses it
      with_meta(4, R"({"s":"x\ud800y"})"),  // lone high surrogate
      with_meta(6, R"({"s":"x\udc00y"})"),  // lone low surrogate
      with_meta(8,
                "{\"s\":\"a\xff"
                "b\"}"),  // 0xff is never UTF-8
      with_meta(10,
                "{\"s\":\"a\xc0\x80"
                "b\"}"),                          // overlong NUL
      with_meta(12, "{\"s\":\"a\xe2\x82\"}"),     // truncated 3-byte sequence
      with_meta(14, R"({"s":"x\ud800\u0041"})"),  // high surrogate then a non-surrogate
  };
  std::string input;
  std::vector<int> bad_lines;
  int line = 0;
  for (std::size_t i = 0; i < bad.size(); ++i) {
    input += good(static_cast<int>(2 * i + 1)) + "\n";
    ++line;
    input += bad[i] + "\n";
    bad_lines.push_back(++line);
  }
  const std::string pair = with_meta(100, R"({"e":"\ud83d\ude00 ok","k\u00e9":"caf\u00e9"})");
  input += pair + "\n" + good(101) + "\n";
  const auto r = ingest(home, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_LT(r.exit_code, 128);

  std::set<long long> expected{100, 101};
  for (std::size_t i = 0; i < bad.size(); ++i) expected.insert(static_cast<long long>(2 * i + 1));
  EXPECT_EQ(stored_users(home.file("e.db")), expected);

  const auto reasons = expect_rejected_lines(r, "stdin", bad_lines);
  ASSERT_EQ(reasons.size(), bad.size());
  EXPECT_TRUE(contains(reasons[0], "\\u0000")) << reasons[0];
  EXPECT_TRUE(contains(reasons[1], "surrogate") && contains(reasons[1], "high")) << reasons[1];
  EXPECT_TRUE(contains(reasons[2], "surrogate") && contains(reasons[2], "low")) << reasons[2];
  for (std::size_t i = 3; i < 6; ++i) {
    EXPECT_TRUE(contains(reasons[i], "invalid UTF-8")) << reasons[i];
  }
  EXPECT_TRUE(contains(reasons[6], "surrogate")) << reasons[6];
  // log_lines() (via rejections()) already failed the test if a raw bad byte reached stderr
  // unescaped: nlohmann refuses invalid UTF-8.

  EXPECT_EQ(stored_metadata(home.file("e.db"), 100),
            (nlohmann::json{{"e", "\xF0\x9F\x98\x80 ok"}, {"k\xC3\xA9", "caf\xC3\xA9"}}));
}

// ---------------------------------------------------------------------------------------------
// Integers: each kind of wrong number has its own reason.

TEST(CliHostileIntegers, EachWrongIdHasItsOwnReason) {
  TempDir home;
  const std::vector<std::string> wrong = {
      "9223372036854775808",  // INT64_MAX + 1
      "-9223372036854775809", "1.5", "1e3", "\"42\"", "0", "-7", "1e400", "true", "{}",
  };
  std::string input = good(1) + "\n";
  std::vector<int> bad_lines;
  int line = 1;
  for (const auto& w : wrong) {
    input += R"({"org_id":)" + w + R"(,"user_id":5,"event_name":"a.b"})" + "\n";
    bad_lines.push_back(++line);
  }
  for (const auto& w : wrong) {
    input += R"({"org_id":1,"user_id":)" + w + R"(,"event_name":"a.b"})" + "\n";
    bad_lines.push_back(++line);
  }
  input += R"({"org_id":null,"event_name":"a.b"})"
           "\n";
  bad_lines.push_back(++line);
  // Edges that are fine: INT64_MAX for both ids, user_id null, a system event without user_id.
  input += R"({"org_id":9223372036854775807,"user_id":9223372036854775807,"event_name":"a.b"})"
           "\n";
  input += R"({"org_id":2,"user_id":null,"event_name":"a.b"})"
           "\n";
  input += R"({"org_id":3,"event_name":"a.b"})"
           "\n";
  const auto r = ingest(home, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  const std::string db = home.file("e.db");
  EXPECT_EQ(rows(db), 4);
  EXPECT_EQ(sqlite_scalar(db,
                          "SELECT count(*) FROM analytics_events WHERE org_id = "
                          "9223372036854775807 AND user_id = 9223372036854775807"),
            1);
  EXPECT_EQ(sqlite_scalar(db, "SELECT count(*) FROM analytics_events WHERE user_id IS NULL"), 2);

  const auto reasons = expect_rejected_lines(r, "stdin", bad_lines);
  ASSERT_EQ(reasons.size(), 2 * wrong.size() + 1);
  for (std::size_t f = 0; f < 2; ++f) {
    const std::string field = f == 0 ? "org_id: " : "user_id: ";
    const auto at = [&](std::size_t i) { return reasons[f * wrong.size() + i]; };
    for (std::size_t i = 0; i < wrong.size(); ++i) {
      EXPECT_EQ(at(i).rfind(field, 0), 0u) << at(i);
    }
    EXPECT_TRUE(contains(at(0), "out of range")) << at(0);
    EXPECT_TRUE(contains(at(1), "out of range")) << at(1);
    EXPECT_TRUE(contains(at(2), "fraction")) << at(2);
    EXPECT_TRUE(contains(at(3), "exponent") && contains(at(3), "1e3")) << at(3);
    EXPECT_TRUE(contains(at(4), "string")) << at(4);
    EXPECT_TRUE(contains(at(4), "without quotes")) << at(4);  // a hint for "42"
    EXPECT_TRUE(contains(at(5), ">= 1") && contains(at(5), "0")) << at(5);
    EXPECT_TRUE(contains(at(6), ">= 1") && contains(at(6), "-7")) << at(6);
    EXPECT_TRUE(contains(at(7), "huge exponent")) << at(7);
    EXPECT_TRUE(contains(at(8), "boolean") || contains(at(8), "bool")) << at(8);
    EXPECT_TRUE(contains(at(9), "object")) << at(9);
    // Distinct texts: no two different inputs explained the same way.
    std::set<std::string> distinct;
    for (std::size_t i = 0; i < wrong.size(); ++i) distinct.insert(at(i));
    EXPECT_EQ(distinct.size(), wrong.size());
  }
  EXPECT_TRUE(contains(reasons.back(), "org_id") && contains(reasons.back(), "null"))
      << reasons.back();
}

// ---------------------------------------------------------------------------------------------
// Defined behaviour for line endings, NUL bytes and binary garbage.

TEST(CliHostileLines, NoFinalNewlineStoresTheLastLine) {
  TempDir home;
  const auto r = ingest(home, good(1) + "\n" + good(2));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 2}));
  EXPECT_EQ(summary_of(r)["read"], 2);
}

TEST(CliHostileLines, CrlfIsStoredAndTeedByteForByte) {
  TempDir home;
  const std::string input = good(1) + "\r\n" + with_meta(2, R"({"s":"a\r\nb"})") + "\r\n" +
                            good(3) + "\r\n\r\n" + good(4);
  const auto r = ingest(home, input, {"--tee"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, input);
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 2, 3, 4}));
  EXPECT_EQ(stored_metadata(home.file("e.db"), 2), (nlohmann::json{{"s", "a\r\nb"}}));
}

TEST(CliHostileLines, NulByteRejectsItsLineOnly) {
  TempDir home;
  const std::string nul(1, '\0');
  const std::string input = good(1) + "\n" + R"({"org_id":1,"user_id":2,"event_name":"a.b")" + nul +
                            "}\n" + good(3) + "\n" + nul + "\n" + good(5) + "\n";
  const auto r = ingest(home, input, {"--tee"});
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(r.out, input);
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 3, 5}));
  const auto reasons = expect_rejected_lines(r, "stdin", {2, 4});
  for (const auto& reason : reasons) EXPECT_TRUE(contains(reason, "NUL")) << reason;
}

TEST(CliHostileLines, BinaryGarbageMixedWithGoodLinesNeverCrashes) {
  TempDir home;
  std::mt19937 rng{20261128};  // fixed seed: the same bytes every run
  std::uniform_int_distribution<int> byte{0, 255};
  std::uniform_int_distribution<int> length{1, 1500};
  std::string input;
  std::vector<int> garbage_lines;
  std::set<long long> good_users;
  int line = 0;
  std::size_t garbage_bytes = 0;
  int user = 1;
  while (garbage_bytes < 64 * 1024) {
    input += good(user) + "\n";
    good_users.insert(user++);
    ++line;
    std::string g(static_cast<std::size_t>(length(rng)), '\0');
    for (auto& c : g) {
      c = static_cast<char>(byte(rng));
      if (c == '\n') c = '\x01';
    }
    // Not blank (a whitespace-only line is skipped, not rejected), and not accidentally JSON.
    g[0] = static_cast<char>(0x80 | byte(rng));
    garbage_bytes += g.size();
    input += g + "\n";
    garbage_lines.push_back(++line);
  }
  input += good(user);  // and no final newline
  good_users.insert(user);

  const std::string file = home.file("garbage.jsonl");
  write_file(file, input);
  const std::string db = home.file("e.db");
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "ingest", file});
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_LT(r.exit_code, 128);
  EXPECT_EQ(r.exit_code, 65) << r.err.substr(0, 4000);
  EXPECT_EQ(stored_users(db), good_users);
  const auto rejected = rejections(r, file);
  ASSERT_EQ(rejected.size(), garbage_lines.size());
  for (std::size_t i = 0; i < rejected.size(); ++i) {
    EXPECT_EQ(rejected[i].value("line", -1), garbage_lines[i]) << rejected[i].dump();
  }
  const auto s = summary_of(r);
  EXPECT_EQ(s["rejected"], garbage_lines.size());
  EXPECT_EQ(s["stored"], good_users.size());

  // The same bytes through a pipe, with --tee: still no crash, and the copy is exact.
  TempDir home2;
  const auto piped = ingest(home2, input, {"--tee"});
  EXPECT_EQ(piped.exit_code, 65);
  EXPECT_EQ(piped.out, input);
  EXPECT_EQ(stored_users(home2.file("e.db")), good_users);
}

// ---------------------------------------------------------------------------------------------
// Secrets: a password given any way never reaches stdout or stderr.

void expect_no_secret(const RunResult& r, const std::string& what) {
  EXPECT_FALSE(contains(r.out, kSecret)) << what << " stdout:\n" << r.out;
  EXPECT_FALSE(contains(r.err, kSecret)) << what << " stderr:\n" << r.err;
  EXPECT_LT(r.exit_code, 128) << what;
  // The "database" field anywhere in the logs, the summary's included, is redacted.
  for (const auto& j : log_lines(r.err)) {
    if (j.contains("database")) {
      EXPECT_FALSE(contains(j["database"].dump(), kSecret)) << what << ": " << j.dump();
    }
  }
}

/// Runs every database-using command against `db_args` (a --db pair or nothing) and `env`.
void run_every_command(const std::vector<std::string>& db_args,
                       const std::map<std::string, std::optional<std::string>>& env,
                       const std::string& label) {
  TempDir home;
  const auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> all = db_args;
    all.insert(all.end(), args.begin(), args.end());
    return all;
  };
  const std::string events = good(1) + "\n" + good(2) + "\n" + good(3) + "\n";
  const auto spooled = run_cli(home, with({"ingest", "--flush-timeout", "1"}), events, env);
  expect_no_secret(spooled, label + " ingest");
  EXPECT_EQ(spooled.exit_code, 0) << spooled.err;
  const auto s = summary_of(spooled);
  EXPECT_EQ(s["spooled"], 3);
  if (s.contains("database")) {
    EXPECT_TRUE(contains(s["database"].get<std::string>(), "127.0.0.1")) << s.dump();
  }

  const auto send = run_cli(home, with({"send", "--timeout", "0.5", good(4)}), {}, env);
  expect_no_secret(send, label + " send");
  EXPECT_EQ(send.exit_code, 0) << send.err;
  const auto send_flags =
      run_cli(home, with({"send", "--timeout", "0.5", "--org", "1", "--event", "a.b"}), {}, env);
  expect_no_secret(send_flags, label + " send --org");

  const auto flush = run_cli(home, with({"flush", "--timeout", "2"}), {}, env);
  expect_no_secret(flush, label + " flush");
  EXPECT_EQ(flush.exit_code, 69) << flush.err;

  const auto migrate = run_cli(home, with({"migrate"}), {}, env);
  expect_no_secret(migrate, label + " migrate");
  EXPECT_EQ(migrate.exit_code, 69) << migrate.err;
  const auto status = run_cli(home, with({"migrate", "--status"}), {}, env);
  expect_no_secret(status, label + " migrate --status");
  EXPECT_EQ(status.exit_code, 69) << status.err;
  const auto dry = run_cli(home, with({"migrate", "--dry-run"}), {}, env);
  expect_no_secret(dry, label + " migrate --dry-run");

  const auto strict =
      run_cli(home, with({"ingest", "--strict", "--flush-timeout", "1"}), events, env);
  expect_no_secret(strict, label + " ingest --strict");
  EXPECT_EQ(strict.exit_code, 69) << strict.err;

  const auto text_log =
      run_cli(home, with({"--log-format", "text", "--log-level", "debug", "migrate"}), {}, env);
  EXPECT_FALSE(contains(text_log.out + text_log.err, kSecret)) << label << " text log";

  // Nor does the spool on disk keep it.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(home.path())) {
    if (entry.is_regular_file()) {
      EXPECT_FALSE(contains(read_file(entry.path().string()), kSecret)) << entry.path();
    }
  }
}

std::string secret_url() {
  return std::string("postgresql://alice:") + kSecret + "@127.0.0.1:1/db";
}

TEST(CliHostileSecrets, PasswordInDbUrlNeverPrinted) {
  run_every_command({"--db", secret_url()}, {}, "--db url");
}

TEST(CliHostileSecrets, PasswordInDatabaseUrlEnvNeverPrinted) {
  run_every_command({}, {{"DATABASE_URL", secret_url()}}, "DATABASE_URL");
}

TEST(CliHostileSecrets, PasswordInTrackeventDatabaseUrlEnvNeverPrinted) {
  run_every_command({}, {{"TRACKEVENT_DATABASE_URL", secret_url()}}, "TRACKEVENT_DATABASE_URL");
}

TEST(CliHostileSecrets, PasswordInKeyValueConninfoNeverPrinted) {
  const std::string conninfo =
      std::string("host=127.0.0.1 port=1 user=alice password=") + kSecret + " dbname=db";
  run_every_command({"--db", conninfo}, {}, "conninfo");
  run_every_command({}, {{"TRACKEVENT_DATABASE_URL", conninfo}}, "conninfo env");
  // Quoted, and with a percent-encoded / oddly spelt password in a URL.
  run_every_command(
      {"--db", std::string("host=127.0.0.1 port=1 password='") + kSecret + " x' dbname=db"}, {},
      "quoted conninfo");
  run_every_command({"--db", std::string("postgres://alice:") + kSecret + "%21@127.0.0.1:1/db"}, {},
                    "postgres:// url");
}

TEST(CliHostileSecrets, HelpNeverPrintsTheEnvironmentPassword) {
  TempDir home;
  const std::map<std::string, std::optional<std::string>> env{
      {"TRACKEVENT_DATABASE_URL", secret_url()}, {"DATABASE_URL", secret_url()}};
  const std::vector<std::vector<std::string>> helps = {
      {"--help"},
      {"migrate", "--help"},
      {"send", "--help"},
      {"ingest", "--help"},
      {"flush", "--help"},
      {"events", "--help"},
      {"completions", "--help"},
      {"completions", "bash"},
      {"events"},
  };
  for (const auto& args : helps) {
    const auto r = run_cli(home, args, {}, env);
    EXPECT_FALSE(contains(r.out, kSecret)) << args[0] << " stdout";
    EXPECT_FALSE(contains(r.err, kSecret)) << args[0] << " stderr";
  }
}

// ---------------------------------------------------------------------------------------------
// SQL is never built from input: hostile text round-trips exactly through PostgreSQL.

TEST(CliHostilePg, HostileMetadataIsStoredVerbatim) {
  TRACKEVENT_REQUIRE_PG();
  TempDir home;
  const std::string url = fresh_database("cli_hostile_sql");
  const auto m = run_cli(home, {"--db", url, "migrate"});
  ASSERT_EQ(m.exit_code, 0) << m.err;

  const std::vector<nlohmann::json> metas = {
      {{"q", "'; drop table analytics_events; --"}},
      {{"q", "\"quotes\" and 'single' and `back`"}},
      {{"q", "back\\slash \\\\ \\' \\\""}},
      {{"q", "tab\there"}},
      {{"q", "line\nbreak\r\nand\rcr"}},
      {{"q",
        "unicode \xC3\xA9\xE2\x82\xAC\xE4\xB8\xAD \xF0\x9F\x98\x80\xF0\x9F\x8F\xB3\xEF\xB8\x8F"}},
      {{"\"); DROP TABLE x; --", "key is hostile"}},
      {{"$1", "$$ dollar $$"}, {"nested", {{"a", {"'", "\"", "\\", nullptr, 1.5}}}}},
      {{"q", "%s %d %n {} {0}"}},
      {{"q", "\x01\x1f control"}},
  };
  std::string input;
  for (std::size_t i = 0; i < metas.size(); ++i) {
    input += with_meta(static_cast<int>(i + 1), metas[i].dump()) + "\n";
  }
  // The name grammar refuses hostile event names before anything else sees them.
  input += R"({"org_id":1,"user_id":999,"event_name":"'; drop table analytics_events; --"})"
           "\n";
  const auto r = run_cli(home, {"--db", url, "ingest"}, input);
  EXPECT_EQ(r.exit_code, 65) << r.err;
  const auto reasons = expect_rejected_lines(r, "stdin", {static_cast<int>(metas.size()) + 1});
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rfind("event_name: ", 0), 0u) << reasons[0];
  EXPECT_TRUE(contains(reasons[0], "not a valid event name")) << reasons[0];
  EXPECT_EQ(summary_of(r)["stored"], metas.size());

  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  for (std::size_t i = 0; i < metas.size(); ++i) {
    const auto res = tx.exec_params(
        "SELECT metadata = $1::jsonb, metadata::text FROM analytics_events WHERE user_id = $2",
        metas[i].dump(), static_cast<long long>(i + 1));
    ASSERT_EQ(res.size(), 1u) << "user " << i + 1;
    EXPECT_TRUE(res[0][0].as<bool>()) << metas[i].dump() << " stored as " << res[0][1].c_str();
  }
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM analytics_events")[0].as<long long>(),
            static_cast<long long>(metas.size()));
  EXPECT_EQ(tx.exec1("SELECT to_regclass('analytics_events') IS NOT NULL")[0].as<bool>(), true);

  // send takes the same path: -m KEY=VALUE with a hostile value and key.
  const auto s =
      run_cli(home, {"--db", url, "send", "--org", "1", "--user", "500", "--event", "a.b", "-m",
                     "k=';drop table analytics_events;--", "-m", "\"); DROP TABLE x; --=v"});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  const auto sent = tx.exec_params(
      "SELECT metadata = $1::jsonb, metadata::text FROM analytics_events WHERE user_id = 500",
      nlohmann::json{{"k", "';drop table analytics_events;--"}, {"\"); DROP TABLE x; --", "v"}}
          .dump());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_TRUE(sent[0][0].as<bool>()) << sent[0][1].c_str();
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM analytics_events")[0].as<long long>(),
            static_cast<long long>(metas.size()) + 1);
}

TEST(CliHostileNames, HostileEventNameIsRejectedByTheNameRule) {
  TempDir home;
  const auto r = ingest(
      home, good(1) + "\n" + R"({"org_id":1,"event_name":"'; drop table analytics_events; --"})" +
                "\n" + R"({"org_id":1,"event_name":"A.B"})" + "\n" + good(4) + "\n");
  EXPECT_EQ(r.exit_code, 65);
  const auto reasons = expect_rejected_lines(r, "stdin", {2, 3});
  for (const auto& reason : reasons) {
    EXPECT_EQ(reason.rfind("event_name: ", 0), 0u) << reason;
    EXPECT_TRUE(contains(reason, "not a valid event name")) << reason;
  }
  EXPECT_EQ(stored_users(home.file("e.db")), (std::set<long long>{1, 4}));
  const auto send = run_cli(home, {"--db", "sqlite:" + home.file("e.db"), "send", "--org", "1",
                                   "--event", "'; drop table analytics_events; --"});
  EXPECT_NE(send.exit_code, 0);
  EXPECT_LT(send.exit_code, 128);
  EXPECT_EQ(rows(home.file("e.db")), 2);
}

// ---------------------------------------------------------------------------------------------
// Files: the spool is private, and an unsafe spool directory is refused loudly.

unsigned mode_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0xFFFF;
  return st.st_mode & 07777U;
}

std::string closed_db() {
  return "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/nothing";
}

TEST(CliHostileFiles, SpoolIsPrivate) {
  TempDir home;
  const mode_t old = ::umask(0);  // the loosest umask: the modes must not depend on it
  const auto r = run_cli(home, {"--db", closed_db(), "ingest", "--flush-timeout", "1"},
                         good(1) + "\n" + good(2) + "\n");
  ::umask(old);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summary_of(r)["spooled"], 2);
  const std::string dir = home.file("spool");
  EXPECT_EQ(mode_of(dir), 0700U);
  ASSERT_TRUE(std::filesystem::exists(dir + "/spool.db"));
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    EXPECT_EQ(mode_of(entry.path().string()), 0600U) << entry.path();
  }
}

TEST(CliHostileFiles, WorldWritableSpoolDirIsRefusedAndLossIsLoud) {
  TempDir home;
  const std::string dir = home.file("openspool");
  std::filesystem::create_directory(dir);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  const auto r =
      run_cli(home, {"--db", closed_db(), "ingest", "--flush-timeout", "1"},
              good(1) + "\n" + good(2) + "\n" + good(3) + "\n", {{"TRACKEVENT_SPOOL_DIR", dir}});
  EXPECT_LT(r.exit_code, 128);
  EXPECT_EQ(r.exit_code, 74) << r.err;
  const auto s = summary_of(r);
  EXPECT_EQ(s["accepted"], 3);
  EXPECT_EQ(s["spooled"], 0);
  EXPECT_EQ(s["dropped"], 3);
  bool named = false;
  for (const auto& j : log_lines(r.err)) {
    const std::string level = j.value("level", "");
    if ((level == "error" || level == "critical") && contains(j.dump(), dir) &&
        contains(j.dump(), "writable by group or others")) {
      named = true;
    }
  }
  EXPECT_TRUE(named) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/spool.db"));
  EXPECT_EQ(mode_of(dir), 0777U);  // refused, not silently "fixed"

  // flush with that directory: an error naming it, not a silent success.
  const auto f = run_cli(home, {"--db", closed_db(), "flush"}, {}, {{"TRACKEVENT_SPOOL_DIR", dir}});
  EXPECT_LT(f.exit_code, 128);
  EXPECT_TRUE(f.exit_code == 0 || contains(f.err, dir)) << f.err;
}

TEST(CliHostileFiles, SpoolPathThatIsAFileOrSymlinkIsRefused) {
  TempDir home;
  const std::string file = home.file("not-a-dir");
  write_file(file, "x");
  const auto r = run_cli(home, {"--db", closed_db(), "ingest", "--flush-timeout", "1"},
                         good(1) + "\n", {{"TRACKEVENT_SPOOL_DIR", file}});
  EXPECT_EQ(r.exit_code, 74) << r.err;
  EXPECT_EQ(read_file(file), "x");

  // A spool.db planted as a symlink is not followed.
  const std::string dir = home.file("sp");
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0700);
  const std::string target = home.file("victim");
  write_file(target, "precious");
  std::filesystem::create_symlink(target, dir + "/spool.db");
  const auto s = run_cli(home, {"--db", closed_db(), "ingest", "--flush-timeout", "1"},
                         good(1) + "\n", {{"TRACKEVENT_SPOOL_DIR", dir}});
  EXPECT_LT(s.exit_code, 128);
  EXPECT_EQ(read_file(target), "precious");
  EXPECT_NE(s.exit_code, 0) << s.err;  // nothing could be spooled: loud, not "accepted"
}

}  // namespace
}  // namespace trackevent::test
