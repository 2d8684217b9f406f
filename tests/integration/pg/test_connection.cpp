// pg::Connection, the one PostgreSQL connection type: errors as {kind, sqlstate, message,
// constraint}, the state a failed call leaves, deadlines, COPY, and password scrubbing.
#include "pg/connection.hpp"
#include "support/net.hpp"
#include "support/pg.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <unistd.h>

#include <chrono>
#include <string>

namespace pg = trackevent::pg;
using trackevent::Disposition;
using trackevent::test::fresh_database;

namespace {

/// A port on 127.0.0.1 that refuses connections.
int refusing_port() { return trackevent::test::closed_port(); }

pg::Connection open_or_fail(const std::string& url, pg::Settings settings = {}) {
  const pg::Conninfo ci(url);
  auto c = pg::Connection::open(ci, settings);
  if (!c) {
    ADD_FAILURE() << "cannot connect: " << c.error().message;
    return {};
  }
  return std::move(*c);
}

TEST(PgConninfo, ScrubsThePasswordAndShowsItRedacted) {
  const pg::Conninfo ci("postgresql://u:hunter2pw@h/db");
  EXPECT_EQ(ci.described(), "postgresql://u:***@h/db");
  EXPECT_EQ(ci.scrub("a hunter2pw b hunter2pw"), "a *** b ***");
  EXPECT_TRUE(ci.usable());
  EXPECT_FALSE(ci.parse_error());
  const pg::Conninfo kv("host=h password='hunter2pw' dbname=db");
  EXPECT_EQ(kv.scrub("x hunter2pw"), "x ***");
}

TEST(PgConninfo, AParseErrorNeverQuotesThePassword) {
  const pg::Conninfo ci("postgresql://u:S3cretPw%zz@127.0.0.1:1/db");
  ASSERT_TRUE(ci.parse_error());
  EXPECT_EQ(ci.parse_error()->find("S3cretPw"), std::string::npos) << *ci.parse_error();
  EXPECT_FALSE(ci.usable());
  // A plain name is a database name to libpq, not something to parse.
  const pg::Conninfo name("analytics");
  EXPECT_TRUE(name.parse_error());
  EXPECT_TRUE(name.usable());
}

TEST(PgConnection, RefusedIsBrokenRetryableAndPasswordFree) {
  const pg::Conninfo ci("postgresql://u:S3cretPw@127.0.0.1:" + std::to_string(refusing_port()) +
                        "/db");
  const auto c = pg::Connection::open(ci, {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, pg::PgError::Kind::broken);
  EXPECT_EQ(c.error().sqlstate, "");
  EXPECT_EQ(pg::classify(c.error()), Disposition::retry);
  EXPECT_EQ(c.error().message.find("S3cretPw"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("127.0.0.1"), std::string::npos) << c.error().message;
}

TEST(PgConnection, AMissingDatabaseIsAServerErrorWithItsSqlstate) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_conn_missing_db");
  const pg::Conninfo ci(url.substr(0, url.rfind('/') + 1) + "te_conn_no_such_db");
  const auto c = pg::Connection::open(ci, {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, pg::PgError::Kind::server);
  EXPECT_EQ(c.error().sqlstate, "3D000");
  EXPECT_EQ(pg::classify(c.error()), Disposition::hold);
  EXPECT_NE(c.error().message.find("te_conn_no_such_db"), std::string::npos);
}

TEST(PgConnection, AServerErrorCarriesSqlstateAndConstraintAndLeavesItIdle) {
  TRACKEVENT_REQUIRE_PG();
  pg::Connection c = open_or_fail(fresh_database("te_conn_errors"));
  ASSERT_TRUE(c.is_open());
  ASSERT_TRUE(c.exec("CREATE TABLE t (id int CONSTRAINT t_pk PRIMARY KEY)"));
  ASSERT_TRUE(c.exec("INSERT INTO t VALUES (1)"));

  // Inside a transaction: the failed call rolls it back, so the connection is idle again.
  const auto dup = c.exec("BEGIN; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().kind, pg::PgError::Kind::server);
  EXPECT_EQ(dup.error().sqlstate, "23505");
  EXPECT_EQ(dup.error().constraint, "t_pk");
  EXPECT_EQ(pg::classify(dup.error()), Disposition::reject);
  EXPECT_TRUE(c.usable());
  const auto count = c.exec("SELECT 1 FROM t");
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, 1u) << "the transaction's first INSERT was rolled back";
}

TEST(PgConnection, ExecParamsAndCopyInCountRows) {
  TRACKEVENT_REQUIRE_PG();
  pg::Connection c = open_or_fail(fresh_database("te_conn_copy"));
  ASSERT_TRUE(c.exec("CREATE TABLE t (id int, s text)"));
  const char* values[2] = {"7", "seven"};
  const auto one =
      c.exec_params("INSERT INTO t VALUES ($1::int, $2)", 2, nullptr, values, nullptr, nullptr);
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(*one, 1u);

  // Three pieces of text-format COPY data, each appended when asked for.
  std::string data;
  int piece = 0;
  auto more = [&] {
    if (piece == 3) return false;
    for (int i = 0; i < 100; ++i) data += std::to_string(piece * 100 + i) + "\tx\n";
    ++piece;
    return true;
  };
  const auto copied = c.copy_in("COPY t FROM STDIN", data, more);
  ASSERT_TRUE(copied) << copied.error().message;
  EXPECT_EQ(*copied, 300u);
  const auto rows = c.exec("SELECT * FROM t");
  ASSERT_TRUE(rows);
  EXPECT_EQ(*rows, 301u);

  // Bad data ends the COPY with the server's error; the connection stays usable.
  std::string bad = "not a number\tx\n";
  const auto failed = c.copy_in("COPY t FROM STDIN", bad, [] { return false; });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().sqlstate, "22P02");
  EXPECT_TRUE(c.usable());
}

TEST(PgConnection, StatementTimeoutIsOurOwnCancel) {
  TRACKEVENT_REQUIRE_PG();
  pg::Settings settings;
  settings.timeouts.statement_timeout_ms = 200;
  pg::Connection c = open_or_fail(fresh_database("te_conn_timeout"), settings);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = c.exec("SELECT pg_sleep(5)");
  ASSERT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ(r.error().sqlstate, "57014");
  EXPECT_TRUE(r.error().own_cancel);
  EXPECT_TRUE(c.usable());
}

TEST(PgConnection, AConnectionTheServerEndedIsNotUsable) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_conn_terminated");
  pg::Settings settings;
  settings.application_name = "te_conn_victim";
  pg::Connection c = open_or_fail(url, settings);
  ASSERT_TRUE(c.usable());
  pqxx::connection admin{url};
  pqxx::nontransaction tx{admin};
  tx.exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE application_name = 'te_conn_victim'");
  bool usable = true;
  for (int i = 0; i < 50 && usable; ++i) {
    usable = c.usable();
    if (usable) ::usleep(20'000);
  }
  EXPECT_FALSE(usable);
  EXPECT_FALSE(c.is_open());
  const auto r = c.exec("SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, pg::PgError::Kind::broken);
}

}  // namespace
