#include "input/catalog.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using trackevent::Catalog;

namespace {

const char* kSmall = R"({"events": [
  {"name": "user.signed_in", "description": "signed in"},
  {"name": "user.signed_out", "description": "signed out"},
  {"name": "dataset.uploaded"}
]})";

std::string error_of(std::string_view json) {
  try {
    (void)Catalog::from_json(json);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Catalog, ParsesEntriesInOrder) {
  const Catalog c = Catalog::from_json(kSmall);
  ASSERT_EQ(c.entries().size(), 3U);
  EXPECT_EQ(c.entries()[0].name, "user.signed_in");
  EXPECT_EQ(c.entries()[0].description, "signed in");
  EXPECT_EQ(c.entries()[2].name, "dataset.uploaded");
  EXPECT_EQ(c.entries()[2].description, "");
  EXPECT_TRUE(c.contains("user.signed_out"));
  EXPECT_TRUE(c.contains("dataset.uploaded"));
  EXPECT_FALSE(c.contains("dataset.upload"));
  EXPECT_FALSE(c.contains(""));
}

TEST(Catalog, ClosestWithinThreeEdits) {
  const Catalog c = Catalog::from_json(kSmall);
  EXPECT_EQ(c.closest("user.signed_im"), "user.signed_in");
  EXPECT_EQ(c.closest("user.signedin"), "user.signed_in");
  EXPECT_EQ(c.closest("dataset.upload"), "dataset.uploaded");
  EXPECT_EQ(c.closest("user.signed_in"), "user.signed_in");
  EXPECT_EQ(c.closest("user.sign_out"), "user.signed_out");
  EXPECT_FALSE(c.closest("backup.completed"));
  EXPECT_FALSE(c.closest("dataset.up"));  // 6 edits away
  EXPECT_FALSE(Catalog{}.closest("user.signed_in"));
}

TEST(Catalog, RejectsBadCatalogs) {
  EXPECT_NE(error_of("not json").find("invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("[]").find("\"events\""), std::string::npos);
  EXPECT_NE(error_of(R"({"events": {}})").find("\"events\" array"), std::string::npos);
  EXPECT_NE(error_of(R"({"events": [1]})").find("/events/0: expected an object"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"events": [{"description": "x"}]})").find("/events/0/name: \"name\""),
            std::string::npos);
  EXPECT_NE(error_of(R"({"events": [{"name": "a.b"}, {"name": "Bad.Name"}]})")
                .find("/events/1/name: 'Bad.Name' is not a valid event name"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"events": [{"name": "a.b", "description": 3}]})").find("description"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"events": [{"name": "a.b"}, {"name": "a.b"}]})")
                .find("/events/1/name: event 'a.b' is listed twice (first at /events/0)"),
            std::string::npos);
  EXPECT_EQ(error_of(R"({"events": []})"), "");
}

TEST(Catalog, LoadNamesTheFile) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("trackevent-catalog-test-" +
                    std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  std::filesystem::create_directories(dir);
  const auto good = dir / "good.json";
  const auto bad = dir / "bad.json";
  std::ofstream(good) << kSmall;
  std::ofstream(bad) << R"({"events": [{"name": "nodot"}]})";
  EXPECT_EQ(Catalog::load(good).entries().size(), 3U);
  try {
    (void)Catalog::load(bad);
    ADD_FAILURE() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nodot"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)Catalog::load(dir / "missing.json"), std::runtime_error);
  std::filesystem::remove_all(dir);
}

TEST(Catalog, ShippedCatalogIsValid) {
  const Catalog c =
      Catalog::load(std::filesystem::path(TRACKEVENT_SOURCE_DIR) / "schema/events.json");
  EXPECT_GE(c.entries().size(), 20U);
  for (const char* name :
       {"user.signed_in", "user.signed_out", "user.signed_up", "dataset.uploaded",
        "dataset.deleted", "backup.completed", "backup.failed", "report.generated",
        "export.started", "export.completed", "invoice.paid"}) {
    EXPECT_TRUE(c.contains(name)) << name;
  }
  for (const auto& e : c.entries()) EXPECT_FALSE(e.description.empty()) << e.name;
}
