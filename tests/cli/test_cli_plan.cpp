// The tracking plan from the command line: --catalog-mode reject|warn|off on ingest and send,
// `send -m` typed by the schema, `events --show/--keys`, and `events lint`.
#include "cli_support.hpp"

#include <gtest/gtest.h>

using namespace trackevent::test;

namespace {

constexpr const char* kPlan = R"({"version": "7", "events": [
  {"name": "backup.completed", "description": "A backup finished.",
   "metadata": {"required": ["bytes"], "additionalProperties": false,
                "properties": {"bytes": {"type": "integer", "minimum": 0},
                               "duration_ms": {"type": "integer"},
                               "label": {"type": "string"}}}},
  {"name": "user.signed_in", "description": "No schema: any metadata."}
]})";

std::string line(int i, const std::string& metadata, const std::string& name = "backup.completed") {
  return R"({"org_id":1,"user_id":)" + std::to_string(i) + R"(,"event_name":")" + name +
         R"(","metadata":)" + metadata + "}\n";
}

// Two good lines, then one of each violation.
std::string mixed_input() {
  return line(1, R"({"bytes":10})") + line(2, R"({"anything":"goes"})", "user.signed_in") +
         line(3, R"({"bytes":"12"})") + line(4, R"({"bytes":1,"durationMs":5})") +
         line(5, R"({"duration_ms":5})") + line(6, R"({"bytes":"13"})");
}

long long rows(const std::string& db) {
  return sqlite_scalar(db, "SELECT count(*) FROM analytics_events");
}

}  // namespace

TEST(CliPlan, RejectIsTheDefaultAndNamesPathAndRule) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  const std::string db = home.file("e.db");
  write_file(catalog, kPlan);
  const auto r =
      run_cli(home, {"--catalog", catalog, "--db", "sqlite:" + db, "ingest"}, mixed_input());
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(rows(db), 2);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 4u) << r.err;
  EXPECT_EQ(rejected[0]["line"], 3);
  EXPECT_EQ(rejected[0]["err"], R"(metadata.bytes: expected integer, got string "12")");
  EXPECT_EQ(rejected[1]["err"], "metadata.durationMs: unknown key (did you mean duration_ms?)");
  EXPECT_EQ(rejected[2]["err"], R"(metadata: missing required key "bytes")");
  EXPECT_EQ(summary_of(r)["rejected"], 4);
}

TEST(CliPlan, WarnStoresCountsPerRuleAndWarnsOncePerRule) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  const std::string db = home.file("e.db");
  write_file(catalog, kPlan);
  const auto r = run_cli(
      home, {"--catalog", catalog, "--catalog-mode", "warn", "--db", "sqlite:" + db, "ingest"},
      mixed_input());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rows(db), 6);
  const auto logs = log_lines(r.err);
  const auto warnings = lines_with_msg(logs,
                                       "metadata breaks the catalog's schema (kept: "
                                       "--catalog-mode warn)");
  // Lines 3 and 6 break the same rule: one warning for both (rate-limited per event and rule).
  ASSERT_EQ(warnings.size(), 3u) << r.err;
  EXPECT_EQ(warnings[0]["rule"], "metadata.bytes: type");
  EXPECT_EQ(warnings[0]["line"], 3);
  const auto summary = summary_of(r);
  EXPECT_EQ(summary["rejected"], 0);
  const auto& counts = summary["catalog_warnings"]["backup.completed"];
  EXPECT_EQ(counts["metadata.bytes: type"], 2) << summary.dump();
  EXPECT_EQ(counts["metadata.durationMs: additionalProperties"], 1);
  EXPECT_EQ(counts["metadata: required"], 1);
}

TEST(CliPlan, OffChecksNamesButNotMetadata) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  const std::string db = home.file("e.db");
  write_file(catalog, kPlan);
  const auto r = run_cli(
      home, {"--catalog", catalog, "--catalog-mode", "off", "--db", "sqlite:" + db, "ingest"},
      mixed_input() + line(7, "{}", "backup.complete"));
  EXPECT_EQ(r.exit_code, 65) << r.err;
  EXPECT_EQ(rows(db), 6);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u) << r.err;
  EXPECT_EQ(rejected[0]["line"], 7);
  EXPECT_FALSE(summary_of(r).contains("catalog_warnings"));
}

TEST(CliPlan, BadModeIsAUsageError) {
  TempDir home;
  const auto r = run_cli(home, {"--catalog-mode", "loud", "ingest", "--check"}, "");
  EXPECT_EQ(r.exit_code, 64);
}

TEST(CliPlan, SendChecksAndTypesPairsByTheSchema) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  const std::string db = home.file("e.db");
  write_file(catalog, kPlan);
  // bytes=12 becomes an integer (the schema says so); label=12 stays a string.
  auto r = run_cli(home, {"--catalog", catalog, "--db", "sqlite:" + db, "send", "--org", "1",
                          "--event", "backup.completed", "-m", "bytes=12", "-m", "label=12"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto meta = nlohmann::json::parse(sqlite_text(db, "SELECT metadata FROM analytics_events"));
  EXPECT_EQ(meta["bytes"], 12);
  EXPECT_EQ(meta["label"], "12");
  // A value that is not of the declared type is refused with the rule.
  r = run_cli(home, {"--catalog", catalog, "--db", "sqlite:" + db, "send", "--org", "1", "--event",
                     "backup.completed", "-m", "bytes=lots"});
  EXPECT_EQ(r.exit_code, 65);
  const auto rejected = lines_with_msg(log_lines(r.err), "rejected event");
  ASSERT_EQ(rejected.size(), 1u) << r.err;
  EXPECT_EQ(rejected[0]["err"], R"(metadata.bytes: expected integer, got string "lots")");
  // ... and kept with a warning in warn mode.
  r = run_cli(home, {"--catalog", catalog, "--catalog-mode", "warn", "--db", "sqlite:" + db, "send",
                     R"({"org_id":1,"event_name":"backup.completed","metadata":{}})"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summary_of(r)["catalog_warnings"]["backup.completed"]["metadata: required"], 1);
  EXPECT_EQ(rows(db), 2);
}

TEST(CliPlan, EventsShowsVersionSchemaAndKeys) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  write_file(catalog, kPlan);
  auto r = run_cli(home, {"--catalog", catalog, "events"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("catalog version 7\n", 0), 0u) << r.out;
  r = run_cli(home, {"--catalog", catalog, "events", "--show", "backup.completed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto shown = nlohmann::json::parse(r.out);
  EXPECT_EQ(shown["name"], "backup.completed");
  EXPECT_EQ(shown["metadata"]["properties"]["bytes"]["type"], "integer");
  r = run_cli(home, {"--catalog", catalog, "events", "--keys", "backup.completed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "bytes\nduration_ms\nlabel\n");
  r = run_cli(home, {"--catalog", catalog, "events", "--show", "backup.complete"});
  EXPECT_EQ(r.exit_code, 65);
}

TEST(CliPlan, BadPlanNamesTheFileAndPointer) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  write_file(catalog, R"({"events":[{"name":"a.b","metadata":{"properties":
                          {"n":{"type":"integer","format":"int32"}}}}]})");
  const auto r = run_cli(home, {"--catalog", catalog, "ingest", "--check"}, "");
  EXPECT_EQ(r.exit_code, 66);
  EXPECT_NE(r.err.find(catalog + ": /events/0/metadata/properties/n/format: unsupported keyword"),
            std::string::npos)
      << r.err;
}

TEST(CliPlan, LintPrintsATableAndStoresNothing) {
  TempDir home;
  const std::string catalog = home.file("plan.json");
  const std::string input = home.file("old.jsonl");
  write_file(catalog, kPlan);
  write_file(input, mixed_input() + "not json\n");
  const auto r = run_cli(home, {"--catalog", catalog, "events", "lint", input});
  EXPECT_EQ(r.exit_code, 65) << r.err;
  const auto out = split_lines(r.out);
  ASSERT_EQ(out.size(), 5u) << r.out;  // header, 3 rules, 1 unparsable line
  EXPECT_EQ(out[0].rfind("EVENT", 0), 0u);
  EXPECT_NE(r.out.find("metadata.bytes: type"), std::string::npos);
  bool counted_twice = false;
  for (const auto& row : out) {
    if (row.find("metadata.bytes: type") != std::string::npos) {
      counted_twice = row.find("       2  " + input + ":3") != std::string::npos;
    }
  }
  EXPECT_TRUE(counted_twice) << r.out;
  const auto logs = log_lines(r.err);
  ASSERT_FALSE(logs.empty());
  EXPECT_EQ(logs.back()["lines"], 7);
  EXPECT_EQ(logs.back()["ok"], 2);
  EXPECT_FALSE(std::filesystem::exists(home.file("data/trackevent/events.db")));
  // Clean input: exit 0 and no table.
  write_file(input, line(1, R"({"bytes":1})"));
  const auto clean = run_cli(home, {"--catalog", catalog, "events", "lint", input});
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(clean.out, "");
}
