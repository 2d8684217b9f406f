#include "trackevent/event.hpp"

#include <gtest/gtest.h>

#include <string>

using trackevent::format_rfc3339;
using trackevent::is_valid_event_name;
using trackevent::parse_rfc3339;

TEST(EventName, AcceptsLowercaseDotted) {
  for (const char* ok : {"user.signed_in", "a.b", "dataset.uploaded", "a1.b2.c3", "x_.y__z",
                         "backup.completed.v2"}) {
    EXPECT_TRUE(is_valid_event_name(ok)) << ok;
  }
}

TEST(EventName, RejectsEverythingElse) {
  for (const char* bad :
       {"", "user", "User.signed_in", "user.Signed_in", "user..signed_in", ".user.signed_in",
        "user.signed_in.", "1user.signed_in", "user.1signed", "_user.x", "user._x",
        "user-signed.in", "user.signed in", "user.signed-in", "user.signéd", "user.", "."}) {
    EXPECT_FALSE(is_valid_event_name(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_event_name(std::string_view("a.b\0c", 5)));
}

TEST(EventName, LengthLimit200) {
  std::string name = "a." + std::string(198, 'b');
  EXPECT_EQ(name.size(), 200U);
  EXPECT_TRUE(is_valid_event_name(name));
  name += 'b';
  EXPECT_FALSE(is_valid_event_name(name));
}

TEST(Rfc3339, ParsesUtcAndFractions) {
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:00:00Z"), 1'795'867'200'000'000LL);
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:00:00.5Z"), 1'795'867'200'500'000LL);
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:00:00.123456Z"), 1'795'867'200'123'456LL);
  // More than microseconds is truncated, never rounded up.
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:00:00.1234569999Z"), 1'795'867'200'123'456LL);
  EXPECT_EQ(parse_rfc3339("2026-11-28t12:00:00z"), 1'795'867'200'000'000LL);
  EXPECT_EQ(parse_rfc3339("2026-11-28 12:00:00Z"), 1'795'867'200'000'000LL);
}

TEST(Rfc3339, ParsesOffsets) {
  EXPECT_EQ(parse_rfc3339("2026-11-28T13:30:00+01:30"), parse_rfc3339("2026-11-28T12:00:00Z"));
  EXPECT_EQ(parse_rfc3339("2026-11-28T07:00:00-05:00"), parse_rfc3339("2026-11-28T12:00:00Z"));
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:00:00+00:00"), parse_rfc3339("2026-11-28T12:00:00Z"));
  EXPECT_EQ(parse_rfc3339("2026-11-28T12:00:00-00:00"), parse_rfc3339("2026-11-28T12:00:00Z"));
  // Crossing midnight and the epoch.
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:30:00+01:00"), -1'800'000'000LL);
  EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59.999999Z"), -1);
}

TEST(Rfc3339, LeapYears) {
  EXPECT_TRUE(parse_rfc3339("2024-02-29T00:00:00Z"));
  EXPECT_TRUE(parse_rfc3339("2000-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("1900-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-02-29T00:00:00Z"));
  EXPECT_EQ(*parse_rfc3339("2024-03-01T00:00:00Z") - *parse_rfc3339("2024-02-28T00:00:00Z"),
            2LL * 86'400'000'000LL);
}

TEST(Rfc3339, RejectsBadInput) {
  for (const char* bad : {"",
                          "2026-11-28",
                          "2026-11-28T12:00:00",
                          "2026-11-28T12:00Z",
                          "2026-13-01T00:00:00Z",
                          "2026-00-01T00:00:00Z",
                          "2026-11-31T00:00:00Z",
                          "2026-11-00T00:00:00Z",
                          "2026-11-28T24:00:00Z",
                          "2026-11-28T12:60:00Z",
                          "2026-11-28T12:00:60Z",
                          "2026-11-28T12:00:00.Z",
                          "2026-11-28T12:00:00+0100",
                          "2026-11-28T12:00:00+01",
                          "2026-11-28T12:00:00+24:00",
                          "2026-11-28T12:00:00+01:60",
                          "2026-11-28X12:00:00Z",
                          "26-11-28T12:00:00Z",
                          "2026-1-28T12:00:00Z",
                          "2026-11-28T12:00:00ZZ",
                          " 2026-11-28T12:00:00Z",
                          "2026-11-28T12:00:00Z ",
                          "+2026-11-28T12:00:00Z",
                          "2026-11-28T12:00:00,5Z",
                          "2026-11-28T1a:00:00Z",
                          "1795867200"}) {
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  }
}

TEST(Rfc3339, FormatsUtcWithMicros) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_rfc3339(1'795'867'200'123'456LL), "2026-11-28T12:00:00.123456Z");
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_rfc3339(951'782'400'000'000LL), "2000-02-29T00:00:00.000000Z");
}

TEST(Rfc3339, RoundTrips) {
  for (std::int64_t us : {0LL, 1LL, -1LL, 1'795'867'200'123'456LL, 253'402'300'799'999'999LL,
                          -62'135'596'800'000'000LL, 951'868'799'999'999LL}) {
    EXPECT_EQ(parse_rfc3339(format_rfc3339(us)), us) << us;
  }
  // Every day over a few years, so month and leap handling agree in both directions.
  for (std::int64_t day = -800; day < 800; ++day) {
    const std::int64_t us = day * 86'400'000'000LL + 12'345'678;
    ASSERT_EQ(parse_rfc3339(format_rfc3339(us)), us) << format_rfc3339(us);
  }
}

TEST(Clock, NowIsPlausible) {
  const auto now = trackevent::now_unix_us();
  EXPECT_GT(now, 1'700'000'000'000'000LL);
  EXPECT_LT(now, 4'000'000'000'000'000LL);
}
