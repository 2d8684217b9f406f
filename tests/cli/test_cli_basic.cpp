// Black-box: usage errors, --help, --version, and the events command.

#include "cli/cli_support.hpp"

namespace trackevent::test {
namespace {

TEST(CliBasic, NoSubcommandIsAUsageError) {
  TempDir home;
  const auto r = run_cli(home, {});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_FALSE(r.err.empty());
}

TEST(CliBasic, UnknownOptionIsAUsageErrorOnStderr) {
  TempDir home;
  const auto r = run_cli(home, {"ingest", "--no-such-flag"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_NE(r.err.find("no-such-flag"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliBasic, UnknownSubcommandIsAUsageError) {
  TempDir home;
  EXPECT_EQ(run_cli(home, {"frobnicate"}).exit_code, 64);
}

TEST(CliBasic, BadOptionValuesAreUsageErrors) {
  TempDir home;
  EXPECT_EQ(run_cli(home, {"--log-format", "xml", "events"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"--log-level", "loud", "events"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"ingest", "--batch-size", "0"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"ingest", "--batch-size", "many"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"ingest", "--on-full", "panic"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"send", "--org", "x", "--event", "a.b"}).exit_code, 64);
  EXPECT_EQ(run_cli(home, {"ingest", "--flush-timeout"}).exit_code, 64);
}

TEST(CliBasic, HelpListsEveryCommand) {
  TempDir home;
  const auto r = run_cli(home, {"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"migrate", "send", "ingest", "flush", "events"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd << " missing from:\n" << r.out;
  }
  EXPECT_NE(r.out.find("--db"), std::string::npos);
}

TEST(CliBasic, SubcommandHelpShowsItsOptions) {
  TempDir home;
  const auto r = run_cli(home, {"ingest", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* opt : {"--tee", "--check", "--strict", "--on-full", "--max-line-bytes"}) {
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  }
}

TEST(CliBasic, VersionPrintsNameAndVersion) {
  TempDir home;
  const auto r = run_cli(home, {"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("trackevent ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find('.'), std::string::npos) << r.out;
}

TEST(CliEvents, WithoutACatalogListsNothingAndSaysSo) {
  TempDir home;
  const auto r = run_cli(home, {"events"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("catalog"), std::string::npos) << r.err;
  const auto j = run_cli(home, {"events", "--json"});
  EXPECT_EQ(j.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(j.out), nlohmann::json::array());
}

TEST(CliEvents, ListsTheCatalogAsATableAndAsJson) {
  TempDir home;
  const std::string catalog = home.file("catalog.json");
  write_file(catalog, R"({"events":[{"name":"user.signed_in","description":"A user signed in"},
                                    {"name":"backup.completed","description":"Nightly backup done"}]})");
  const auto table = run_cli(home, {"--catalog", catalog, "events"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("user.signed_in"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("Nightly backup done"), std::string::npos) << table.out;

  const auto json = run_cli(home, {"events", "--json"}, {}, {{"TRACKEVENT_CATALOG", catalog}});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto list = nlohmann::json::parse(json.out);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "user.signed_in");
  EXPECT_EQ(list[1]["description"], "Nightly backup done");
}

TEST(CliEvents, AMissingCatalogFileIsAnError) {
  TempDir home;
  const auto r = run_cli(home, {"--catalog", home.file("nope.json"), "events"});
  EXPECT_EQ(r.exit_code, 66);
  for (const auto& j : log_lines(r.err)) EXPECT_TRUE(j.contains("msg"));
}

}  // namespace
}  // namespace trackevent::test
