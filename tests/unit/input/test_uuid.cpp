#include "trackevent/uuid.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

using trackevent::make_uuid_v7;
using trackevent::Uuid;

namespace {

std::uint64_t timestamp_ms(const Uuid& u) {
  std::uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = ms << 8 | u.bytes[i];
  return ms;
}

}  // namespace

TEST(Uuid, FormatsCanonicalLowercase) {
  Uuid u;
  for (int i = 0; i < 16; ++i) u.bytes[i] = static_cast<std::uint8_t>(i * 17);
  EXPECT_EQ(u.to_string(), "00112233-4455-6677-8899-aabbccddeeff");
  char buf[37] = {};
  u.format_to(buf);
  EXPECT_EQ(std::string(buf, 36), "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(Uuid{}.to_string(), "00000000-0000-0000-0000-000000000000");
}

TEST(Uuid, ParsesEitherCaseAndRoundTrips) {
  const auto a = Uuid::parse("01890A5D-AC96-774B-BCCE-B302099A8057");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->to_string(), "01890a5d-ac96-774b-bcce-b302099a8057");
  EXPECT_EQ(a->version(), 7);
  const auto b = Uuid::parse(a->to_string());
  ASSERT_TRUE(b);
  EXPECT_EQ(*a, *b);
  for (int i = 0; i < 100; ++i) {
    const Uuid u = make_uuid_v7();
    EXPECT_EQ(Uuid::parse(u.to_string()), u);
  }
}

TEST(Uuid, RejectsNonCanonicalText) {
  for (const char* bad :
       {"", "01890a5d-ac96-774b-bcce-b302099a805", "01890a5d-ac96-774b-bcce-b302099a80577",
        "{01890a5d-ac96-774b-bcce-b302099a8057}", "urn:uuid:01890a5d-ac96-774b-bcce-b302099a8057",
        "01890a5dac96774bbccee302099a805700000", "01890a5dac96774bbcceb302099a8057",
        "01890a5d-ac96-774b-bcce_b302099a8057", "01890a5d-ac96-774b-bcceb-302099a8057",
        "0189za5d-ac96-774b-bcce-b302099a8057", " 1890a5d-ac96-774b-bcce-b302099a8057"}) {
    EXPECT_FALSE(Uuid::parse(bad)) << bad;
  }
}

TEST(Uuid, V7HasVersionVariantAndTimestamp) {
  const std::int64_t ms = 1'764'331'200'123;  // 2025-11-28T12:00:00.123Z
  const Uuid u = make_uuid_v7(ms);
  EXPECT_EQ(u.version(), 7);
  EXPECT_EQ(u.bytes[8] & 0xC0, 0x80);  // RFC 9562 variant 10
  EXPECT_EQ(timestamp_ms(u), static_cast<std::uint64_t>(ms));
  EXPECT_EQ(u.to_string()[14], '7');
}

TEST(Uuid, OneThreadStrictlyIncreasingAndUnique) {
  std::vector<Uuid> ids;
  ids.reserve(10'000);
  for (int i = 0; i < 10'000; ++i) ids.push_back(make_uuid_v7());
  for (std::size_t i = 1; i < ids.size(); ++i) ASSERT_LT(ids[i - 1], ids[i]) << i;
  // Same millisecond throughout: the counter keeps order, overflowing into the next ms.
  std::vector<Uuid> same;
  for (int i = 0; i < 10'000; ++i) same.push_back(make_uuid_v7(1'700'000'000'000));
  for (std::size_t i = 1; i < same.size(); ++i) ASSERT_LT(same[i - 1], same[i]) << i;
  EXPECT_EQ(timestamp_ms(same.front()), 1'700'000'000'000U);
  EXPECT_LE(timestamp_ms(same.back()), 1'700'000'000'000U + 10);
}

TEST(Uuid, SmallClockStepBackKeepsOrder) {
  const Uuid a = make_uuid_v7(1'800'000'000'500);
  const Uuid b = make_uuid_v7(1'800'000'000'400);
  EXPECT_LT(a, b);
  // A jump far back is taken at face value (clock reset or an explicit old time).
  const Uuid c = make_uuid_v7(1'000'000'000'000);
  EXPECT_EQ(timestamp_ms(c), 1'000'000'000'000U);
}

TEST(Uuid, UniqueAcrossThreads) {
  constexpr int kThreads = 4, kPer = 20'000;
  std::vector<std::vector<Uuid>> per(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&per, t] {
      for (int i = 0; i < kPer; ++i) per[t].push_back(make_uuid_v7());
    });
  }
  for (auto& th : threads) th.join();
  std::set<Uuid> all;
  for (const auto& v : per) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPer));
}

TEST(Uuid, RandomBitsDiffer) {
  // Two ids in the same ms must differ in the 62 random bits, not only in the counter.
  const Uuid a = make_uuid_v7(1'900'000'000'000);
  const Uuid b = make_uuid_v7(1'900'000'000'000);
  EXPECT_NE(std::vector<std::uint8_t>(a.bytes.begin() + 8, a.bytes.end()),
            std::vector<std::uint8_t>(b.bytes.begin() + 8, b.bytes.end()));
}
