// Partition names and bounds (pg_partman 4.x's naming, so upkeep can be handed over to it) and
// the retention periods of `trackevent partitions --retain`.
#include "schema/partitions.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace te = trackevent;
using namespace std::chrono;
using te::PartitionInterval;

namespace {

te::SysSeconds at(int y, unsigned m, unsigned d, int hh = 0, int mm = 0) {
  return sys_days{year{y} / month{m} / day{d}} + hours{hh} + minutes{mm};
}

TEST(PartitionNames, MonthDayAndIsoWeekAsPgPartmanNamesThem) {
  const auto t = at(2026, 12, 6, 23, 59);  // a Sunday
  EXPECT_EQ(te::partition_name("analytics_events", PartitionInterval::month, t),
            "analytics_events_p2026_12");
  EXPECT_EQ(te::partition_name("analytics_events", PartitionInterval::day, t),
            "analytics_events_p2026_12_06");
  EXPECT_EQ(te::partition_name("analytics_events", PartitionInterval::week, t),
            "analytics_events_p2026w49");
  // ISO weeks belong to the year of their Thursday.
  EXPECT_EQ(te::partition_name("e", PartitionInterval::week, at(2027, 1, 1)), "e_p2026w53");
  EXPECT_EQ(te::partition_name("e", PartitionInterval::week, at(2024, 12, 30)), "e_p2025w01");
  EXPECT_EQ(te::partition_name("e", PartitionInterval::week, at(2021, 1, 3)), "e_p2020w53");
}

TEST(PartitionBounds, StartOnMidnightMondayOrTheFirstInUtc) {
  const auto t = at(2026, 12, 6, 13, 5);
  EXPECT_EQ(te::bound_literal(te::partition_start(PartitionInterval::month, t)),
            "2026-12-01 00:00:00+00");
  EXPECT_EQ(te::bound_literal(te::partition_start(PartitionInterval::week, t)),
            "2026-11-30 00:00:00+00");
  EXPECT_EQ(te::bound_literal(te::partition_start(PartitionInterval::day, t)),
            "2026-12-06 00:00:00+00");
  const auto dec = te::partition_start(PartitionInterval::month, t);
  EXPECT_EQ(te::bound_literal(te::partition_add(PartitionInterval::month, dec, 1)),
            "2027-01-01 00:00:00+00");
  EXPECT_EQ(te::bound_literal(te::partition_add(PartitionInterval::month, dec, -12)),
            "2025-12-01 00:00:00+00");
  EXPECT_EQ(te::bound_literal(te::partition_add(PartitionInterval::week, at(2026, 11, 30), 1)),
            "2026-12-07 00:00:00+00");
}

TEST(PartitionInterval, ParsesTheThreeNamesOnly) {
  EXPECT_EQ(te::parse_partition_interval("week"), PartitionInterval::week);
  EXPECT_EQ(te::to_string(PartitionInterval::day), "day");
  EXPECT_FALSE(te::parse_partition_interval("year"));
  EXPECT_FALSE(te::parse_partition_interval("Month"));
}

TEST(Retention, ParsesDaysWeeksMonthsYears) {
  ASSERT_TRUE(te::parse_retention("13mo"));
  EXPECT_EQ(te::parse_retention("13mo")->count, 13);
  EXPECT_EQ(te::parse_retention("13mo")->unit, te::Retention::Unit::month);
  EXPECT_EQ(te::parse_retention("90d")->unit, te::Retention::Unit::day);
  EXPECT_EQ(te::parse_retention("8w")->unit, te::Retention::Unit::week);
  EXPECT_EQ(te::parse_retention("2y")->unit, te::Retention::Unit::year);
  for (const char* bad : {"", "13", "mo", "0d", "-1d", "13m", "1.5y", "13mo "}) {
    EXPECT_FALSE(te::parse_retention(bad)) << bad;
  }
}

TEST(Retention, CutoffCountsCalendarMonthsAndClampsTheDay) {
  EXPECT_EQ(te::retention_cutoff(*te::parse_retention("13mo"), at(2026, 12, 6, 10)),
            at(2025, 11, 6, 10));
  EXPECT_EQ(te::retention_cutoff(*te::parse_retention("1mo"), at(2026, 3, 31)), at(2026, 2, 28));
  EXPECT_EQ(te::retention_cutoff(*te::parse_retention("90d"), at(2026, 12, 6)),
            at(2026, 12, 6) - days{90});
  EXPECT_EQ(te::retention_cutoff(*te::parse_retention("1y"), at(2028, 2, 29)), at(2027, 2, 28));
}

}  // namespace
