// Every row of the SQLSTATE table in lib/src/pg/sqlstate.cpp.
#include "pg/sqlstate.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

using trackevent::classify_sqlstate;
using trackevent::Disposition;

namespace {

void expect_all(const std::vector<const char*>& codes, Disposition want) {
  for (const char* code : codes) {
    EXPECT_EQ(classify_sqlstate(code), want) << code;
    EXPECT_EQ(classify_sqlstate(code, true), want) << code << " (own cancel)";
  }
}

}  // namespace

TEST(Sqlstate, ToString) {
  EXPECT_EQ(trackevent::to_string(Disposition::retry), "retry");
  EXPECT_EQ(trackevent::to_string(Disposition::hold), "hold");
  EXPECT_EQ(trackevent::to_string(Disposition::reject), "reject");
}

TEST(Sqlstate, NoSqlstateMeansConnectionLostAndRetries) {
  EXPECT_EQ(classify_sqlstate(""), Disposition::retry);
}

TEST(Sqlstate, ConnectionExceptionsRetry) {
  expect_all({"08000", "08003", "08006", "08001", "08004", "08P01"}, Disposition::retry);
}

TEST(Sqlstate, ShutdownRetries) { expect_all({"57P01", "57P02", "57P03"}, Disposition::retry); }

TEST(Sqlstate, DatabaseDroppedHolds) { expect_all({"57P04"}, Disposition::hold); }

TEST(Sqlstate, SerializationAndDeadlockRetry) {
  expect_all({"40001", "40P01", "40000", "40003"}, Disposition::retry);
}

TEST(Sqlstate, LockNotAvailableRetries) { expect_all({"55P03"}, Disposition::retry); }

TEST(Sqlstate, InsufficientResourcesRetry) {
  expect_all({"53000", "53100", "53200", "53300", "53400"}, Disposition::retry);
}

TEST(Sqlstate, SystemErrorsRetry) { expect_all({"58000", "58030"}, Disposition::retry); }

TEST(Sqlstate, QueryCanceledRetriesOwnOrNot) {
  EXPECT_EQ(classify_sqlstate("57014", true), Disposition::retry);
  EXPECT_EQ(classify_sqlstate("57014", false), Disposition::retry);
}

TEST(Sqlstate, AuthorizationHolds) { expect_all({"28000", "28P01"}, Disposition::hold); }

TEST(Sqlstate, MissingDatabaseOrSchemaHolds) { expect_all({"3D000", "3F000"}, Disposition::hold); }

TEST(Sqlstate, PermissionAndMissingObjectsHold) {
  expect_all({"42501", "42P01", "42703", "42601", "42883", "42000"}, Disposition::hold);
}

TEST(Sqlstate, ReadOnlyTransactionHolds) { expect_all({"25006"}, Disposition::hold); }

TEST(Sqlstate, FeatureNotSupportedHolds) { expect_all({"0A000"}, Disposition::hold); }

TEST(Sqlstate, DataExceptionsReject) {
  expect_all({"22000", "22001", "22003", "22007", "22021", "22P02", "22P05"}, Disposition::reject);
}

TEST(Sqlstate, ConstraintViolationsReject) {
  expect_all({"23000", "23502", "23503", "23505", "23514"}, Disposition::reject);
}

TEST(Sqlstate, ProgramLimitRejects) { expect_all({"54000", "54001"}, Disposition::reject); }

TEST(Sqlstate, UnknownRetries) {
  expect_all({"XX000", "XX001", "P0001", "55000", "25P02", "99999"}, Disposition::retry);
}

TEST(Sqlstate, MalformedRetries) {
  expect_all({"2", "2350", "235050", "garbage"}, Disposition::retry);
}
