// TrackerOptions::catalog: Tracker::track() checks names and metadata against the tracking plan,
// in each CatalogMode, on both the serialising and the moving overload.
#include "trackevent/tracker.hpp"

#include "support/fake_sink.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

namespace trackevent {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPlan = R"({"events": [
  {"name": "backup.completed",
   "metadata": {"required": ["bytes"], "properties": {"bytes": {"type": "integer"}}}},
  {"name": "user.signed_in"}
]})";

class TrackerPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/trackevent-plan-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ / "plan.json") << kPlan;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  TrackerOptions options(CatalogMode mode) {
    TrackerOptions o;
    o.sink = sink_;
    o.spool_dir = dir_;
    o.flush_interval = 1h;
    o.shutdown_timeout = 5s;
    o.catalog = dir_ / "plan.json";
    o.catalog_mode = mode;
    return o;
  }

  // Tracks one good and three bad events through every overload; returns the final counters.
  Stats track_all(CatalogMode mode) {
    Tracker t(options(mode));
    t.track(1, 2, "backup.completed", nlohmann::json{{"bytes", 5}});    // good
    t.track(1, 2, "backup.completed", nlohmann::json{{"bytes", "5"}});  // wrong type
    const nlohmann::json missing = {{"other", 1}};
    t.track(1, 2, "backup.completed", missing);                           // missing "bytes"
    t.track(1, std::nullopt, "backup.completed");                         // {} lacks "bytes"
    t.track(1, 2, "user.signed_in", nlohmann::json{{"anything", true}});  // no schema
    return t.close(5s);
  }

  std::shared_ptr<test::FakeSink> sink_ = std::make_shared<test::FakeSink>();
  std::filesystem::path dir_;
};

TEST_F(TrackerPlanTest, RejectCountsViolationsAsRejected) {
  const Stats s = track_all(CatalogMode::reject);
  EXPECT_EQ(s.stored, 2u);
  EXPECT_EQ(s.rejected, 3u);
  EXPECT_EQ(sink_->stored_count(), 2u);
}

TEST_F(TrackerPlanTest, WarnAndOffKeepEverything) {
  EXPECT_EQ(track_all(CatalogMode::warn).stored, 5u);
  EXPECT_EQ(track_all(CatalogMode::off).stored, 5u);
  EXPECT_EQ(sink_->stored_count(), 10u);
}

TEST_F(TrackerPlanTest, NamesOutsideThePlanAreRejectedInEveryMode) {
  for (const CatalogMode mode : {CatalogMode::reject, CatalogMode::warn, CatalogMode::off}) {
    Tracker t(options(mode));
    t.track(1, 2, "backup.complete", nlohmann::json{{"bytes", 5}});
    t.track(1, 2, "user.signed_out");
    const Stats s = t.close(5s);
    EXPECT_EQ(s.rejected, 2u);
    EXPECT_EQ(s.stored, 0u);
  }
}

TEST_F(TrackerPlanTest, AnInvalidPlanFailsTheConstructorNamingThePointer) {
  std::ofstream(dir_ / "bad.json")
      << R"({"events":[{"name":"a.b","metadata":{"properties":{"n":{"minimum":3,"maximum":1}}}}]})";
  TrackerOptions o = options(CatalogMode::reject);
  o.catalog = dir_ / "bad.json";
  try {
    Tracker t(std::move(o));
    ADD_FAILURE() << "expected the constructor to throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/events/0/metadata/properties/n/minimum"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace trackevent
