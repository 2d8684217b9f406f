#include "base/result.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace trackevent::detail {
namespace {

Result<int> half(int n) {
  if (n % 2 != 0) return Error{"odd: " + std::to_string(n), ""};
  return n / 2;
}

Result<> must_be_positive(int n) {
  if (n <= 0) return Error{"not positive", "22023"};
  return ok();
}

TEST(Result, CarriesTheValueOrTheError) {
  const auto good = half(8);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 4);
  const auto bad = half(7);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "odd: 7");
}

TEST(Result, VoidResultIsOkOrAnError) {
  EXPECT_TRUE(must_be_positive(1).ok());
  const auto r = must_be_positive(0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().sqlstate, "22023");
}

TEST(Result, MovesOutMoveOnlyValues) {
  Result<std::unique_ptr<int>> r{std::make_unique<int>(5)};
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
}

struct DetailedError {
  std::string message;
  std::string constraint;
};

TEST(Result, TakesALayersOwnErrorType) {
  Result<int, DetailedError> r{DetailedError{"duplicate", "analytics_events_pkey"}};
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().constraint, "analytics_events_pkey");
}

}  // namespace
}  // namespace trackevent::detail
