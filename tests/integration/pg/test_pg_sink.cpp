// The PostgreSQL sink against a real server: exact values, idempotency, error classes, deadlines.
#include "trackevent/event.hpp"

#include "config/database_url.hpp"
#include "support/net.hpp"
#include "support/pg.hpp"
#include "support/pg_schema.hpp"
#include "support/write_result.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using trackevent::Disposition;
using trackevent::Event;
using trackevent::PgTimeouts;
using trackevent::Uuid;
using trackevent::WriteResult;
using trackevent::test::BlackHole;
using trackevent::test::closed_port;
using trackevent::test::describe;

using Clock = std::chrono::steady_clock;

/// Deterministic ids with explicit bytes (independent of the UUID parser/formatter).
Uuid make_id(std::uint32_t salt, std::uint64_t n) {
  Uuid u;
  for (int i = 0; i < 4; ++i) u.bytes[i] = static_cast<std::uint8_t>(salt >> (24 - 8 * i));
  u.bytes[6] = 0x70;  // version 7
  u.bytes[8] = 0x80;  // variant
  for (int i = 0; i < 7; ++i) u.bytes[9 + i] = static_cast<std::uint8_t>(n >> (48 - 8 * i));
  return u;
}

std::string uuid_text(const Uuid& u) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(kHex[u.bytes[i] >> 4]);
    s.push_back(kHex[u.bytes[i] & 0xF]);
  }
  return s;
}

Event make_event(std::uint32_t salt, std::uint64_t n) {
  Event e;
  e.event_id = make_id(salt, n);
  e.org_id = static_cast<std::int64_t>(1 + n % 7);
  if (n % 3 != 0) e.user_id = static_cast<std::int64_t>(1000 + n);
  e.event_name = "dataset.uploaded";
  e.metadata = R"({"n":)" + std::to_string(n) + "}";
  e.occurred_at_us = 1'764'331'200'123'456 + static_cast<std::int64_t>(n);
  return e;
}

std::vector<Event> make_batch(std::uint32_t salt, std::uint64_t first, std::size_t count) {
  std::vector<Event> v;
  v.reserve(count);
  for (std::size_t i = 0; i < count; ++i) v.push_back(make_event(salt, first + i));
  return v;
}

class PgSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (trackevent::test::pg_admin_url().empty()) return;  // each test skips itself
    url_ = trackevent::test::fresh_test_database("te_sink_");
  }

  /// Each test that needs the table makes it; MissingTableHolds relies on there being none.
  void create_schema() {
    trackevent::test::create_analytics_events(url_, trackevent::test::SchemaVia::schema_file);
  }

  std::int64_t count_rows() {
    pqxx::connection c{url_};
    pqxx::nontransaction tx{c};
    return tx.exec1("SELECT count(*) FROM analytics_events")[0].as<std::int64_t>();
  }

  /// Every field of every event, as stored, equals what was given.
  void expect_stored_exactly(const std::vector<Event>& events) {
    pqxx::connection c{url_};
    pqxx::nontransaction tx{c};
    for (const Event& e : events) {
      const std::string id = uuid_text(e.event_id);
      const pqxx::result r = tx.exec_params(
          "SELECT event_id::text, org_id, user_id, event_name, metadata = $2::jsonb, "
          "(extract(epoch FROM occurred_at) * 1000000)::bigint "
          "FROM analytics_events WHERE event_id = $1::uuid",
          id, e.metadata);
      ASSERT_EQ(r.size(), 1U) << id;
      EXPECT_EQ(r[0][0].as<std::string>(), id);
      EXPECT_EQ(r[0][1].as<std::int64_t>(), e.org_id) << id;
      if (e.user_id) {
        EXPECT_EQ(r[0][2].as<std::int64_t>(), *e.user_id) << id;
      } else {
        EXPECT_TRUE(r[0][2].is_null()) << id;
      }
      EXPECT_EQ(r[0][3].as<std::string>(), e.event_name) << id;
      EXPECT_TRUE(r[0][4].as<bool>()) << id << " metadata " << e.metadata;
      EXPECT_EQ(r[0][5].as<std::int64_t>(), e.occurred_at_us) << id;
    }
  }

  std::unique_ptr<trackevent::Sink> sink(const PgTimeouts& t = {}) {
    return trackevent::make_postgres_sink(url_, t);
  }

  std::string url_;
};

TEST_F(PgSinkTest, StoresExactValues) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  std::vector<Event> batch = make_batch(1, 0, 50);
  batch[0].org_id = std::numeric_limits<std::int64_t>::max();
  batch[0].user_id.reset();
  batch[1].user_id = std::numeric_limits<std::int64_t>::max();
  batch[2].occurred_at_us = 0;                        // the Unix epoch
  batch[3].occurred_at_us = 946'684'800'000'000 - 1;  // just before PostgreSQL's epoch
  batch[4].occurred_at_us = 253'402'300'799'999'999;  // 9999-12-31T23:59:59.999999Z
  batch[5].occurred_at_us = -1;                       // 1969, one microsecond before
  batch[6].metadata = "{}";
  batch[7].metadata = R"({"a":[1,2,{"b":null}],"c":true,"d":1.5e3})";
  batch[8].event_name = "backup.completed";

  const WriteResult r = sink()->write(batch);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, batch.size());
  EXPECT_EQ(r.duplicates, 0U);
  EXPECT_EQ(count_rows(), 50);
  expect_stored_exactly(batch);
}

TEST_F(PgSinkTest, EmptyBatchIsANoOpWithoutConnecting) {
  TRACKEVENT_REQUIRE_PG();
  auto s = trackevent::make_postgres_sink(
      "postgresql://127.0.0.1:" + std::to_string(closed_port()) + "/x");
  const WriteResult r = s->write({});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.stored, 0U);
}

TEST_F(PgSinkTest, SameBatchTwiceStoresOnce) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  const std::vector<Event> batch = make_batch(2, 0, 200);
  ASSERT_TRUE(sink()->write(batch).ok());

  // A new sink (new connection) and the same sink again: both count duplicates.
  for (int round = 0; round < 2; ++round) {
    auto s = sink();
    const WriteResult r = s->write(batch);
    ASSERT_TRUE(r.ok()) << describe(r);
    EXPECT_EQ(r.stored, 0U);
    EXPECT_EQ(r.duplicates, batch.size());
    const WriteResult again = s->write(batch);
    ASSERT_TRUE(again.ok()) << describe(again);
    EXPECT_EQ(again.stored, 0U);
    EXPECT_EQ(again.duplicates, batch.size());
  }
  EXPECT_EQ(count_rows(), 200);
  expect_stored_exactly(batch);
}

TEST_F(PgSinkTest, MixedNewAndExistingIds) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  auto s = sink();
  ASSERT_TRUE(s->write(make_batch(3, 0, 100)).ok());  // ids 0..99

  std::vector<Event> mixed = make_batch(3, 50, 100);  // ids 50..149: 50 old, 50 new
  WriteResult r = s->write(mixed);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 50U);
  EXPECT_EQ(r.duplicates, 50U);

  // Now on the conflict-tolerant path: a batch of only new ids, then mixed again.
  r = s->write(make_batch(3, 150, 30));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 30U);
  EXPECT_EQ(r.duplicates, 0U);
  r = s->write(make_batch(3, 180, 20));  // back on the fast path
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 20U);
  r = s->write(make_batch(3, 195, 10));  // 5 old, 5 new
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 5U);
  EXPECT_EQ(r.duplicates, 5U);

  EXPECT_EQ(count_rows(), 205);
  expect_stored_exactly(make_batch(3, 0, 205));
}

TEST_F(PgSinkTest, DuplicatesInsideOneBatch) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  auto s = sink();
  std::vector<Event> batch = make_batch(4, 0, 5);
  Event dup = batch[1];
  dup.metadata = R"({"copy":true})";  // the first occurrence wins
  batch.push_back(dup);
  batch.push_back(batch[3]);
  batch.push_back(batch[1]);
  WriteResult r = s->write(batch);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 5U);
  EXPECT_EQ(r.duplicates, 3U);
  EXPECT_EQ(count_rows(), 5);
  expect_stored_exactly(make_batch(4, 0, 5));

  // Inside-batch duplicates plus ids already stored plus new ones.
  std::vector<Event> more = make_batch(4, 3, 4);  // 3,4 stored; 5,6 new
  more.push_back(more[2]);
  more.push_back(more[0]);
  r = s->write(more);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 2U);
  EXPECT_EQ(r.duplicates, 4U);
  EXPECT_EQ(count_rows(), 7);
}

TEST_F(PgSinkTest, HostileAndUnicodeMetadataRoundTrips) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  const std::vector<std::string> values = {
      "'; drop table analytics_events; --",
      R"("double" 'single' `back`)",
      R"(back\slash \\ \n literal)",
      "tab\there",
      "line1\nline2\r\nline3",
      "Grüße, 日本語, Ελληνικά, עברית",
      "emoji 😀🎉👩‍👩‍👧",
      "\\.",  // COPY text format's end marker, harmless in binary
      "",
  };
  std::vector<Event> batch;
  for (std::size_t i = 0; i < values.size(); ++i) {
    Event e = make_event(5, i);
    // JSON-escape by hand: quotes, backslashes and control characters.
    std::string json = "{\"v\":\"";
    for (const char c : values[i]) {
      switch (c) {
        case '"':
          json += "\\\"";
          break;
        case '\\':
          json += "\\\\";
          break;
        case '\n':
          json += "\\n";
          break;
        case '\r':
          json += "\\r";
          break;
        case '\t':
          json += "\\t";
          break;
        default:
          json.push_back(c);
      }
    }
    json += "\",\"ключ 🔑\":\"'\"}";
    e.metadata = json;
    batch.push_back(e);
  }
  const WriteResult r = sink()->write(batch);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, values.size());
  expect_stored_exactly(batch);

  pqxx::connection c{url_};
  pqxx::nontransaction tx{c};
  for (std::size_t i = 0; i < values.size(); ++i) {
    const pqxx::row row = tx.exec_params1(
        "SELECT metadata->>'v', metadata->>'ключ 🔑' FROM analytics_events WHERE event_id = "
        "$1::uuid",
        uuid_text(batch[i].event_id));
    EXPECT_EQ(row[0].as<std::string>(), values[i]);
    EXPECT_EQ(row[1].as<std::string>(), "'");
  }
  EXPECT_EQ(
      tx.exec1("SELECT count(*) FROM pg_tables WHERE tablename = 'analytics_events'")[0].as<int>(),
      1);
}

TEST_F(PgSinkTest, CheckViolationRejectsAndStoresNothing) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  std::vector<Event> batch = make_batch(6, 0, 10);
  batch[7].org_id = 0;  // bypasses validation; the CHECK constraint catches it
  auto s = sink();
  WriteResult r = s->write(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::reject) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "23514");
  EXPECT_EQ(r.stored, 0U);
  EXPECT_EQ(count_rows(), 0);

  // The same check on the conflict-tolerant path (after a duplicate fallback).
  ASSERT_TRUE(s->write(make_batch(6, 100, 3)).ok());
  batch.push_back(make_event(6, 100));
  r = s->write(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::reject) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "23514");
  EXPECT_EQ(count_rows(), 3);

  // The connection is still good for the next batch.
  batch[7].org_id = 1;
  r = s->write(batch);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stored, 10U);
  EXPECT_EQ(r.duplicates, 1U);
}

TEST_F(PgSinkTest, InvalidJsonAndUtf8Reject) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  std::vector<Event> batch = make_batch(7, 0, 3);
  batch[1].metadata = "{not json";
  WriteResult r = sink()->write(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::reject) << describe(r);
  EXPECT_EQ(r.failure->sqlstate.substr(0, 2), "22");

  batch = make_batch(7, 0, 3);
  batch[2].event_name = std::string("bad\xff\xfe.name");
  r = sink()->write(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::reject) << describe(r);
  EXPECT_EQ(count_rows(), 0);
}

TEST_F(PgSinkTest, MissingTableHolds) {
  TRACKEVENT_REQUIRE_PG();
  const WriteResult r = sink()->write(make_batch(8, 0, 3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::hold) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "42P01");
}

TEST_F(PgSinkTest, WrongDatabaseHoldsAndHidesPassword) {
  TRACKEVENT_REQUIRE_PG();
  // The test server trusts everyone, so the password is ignored; it must not show up anywhere.
  std::string url = url_;
  url.replace(url.find("postgres@"), 9, "postgres:hunter2pw@");
  url = url.substr(0, url.rfind('/') + 1) + "te_sink_no_such_database";
  auto s = trackevent::make_postgres_sink(url);
  EXPECT_EQ(s->describe().find("hunter2pw"), std::string::npos) << s->describe();
  const WriteResult r = s->write(make_batch(9, 0, 3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::hold) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "3D000");
  EXPECT_EQ(r.failure->message.find("hunter2pw"), std::string::npos) << r.failure->message;
  EXPECT_NE(r.failure->message.find("te_sink_no_such_database"), std::string::npos)
      << r.failure->message;
}

TEST_F(PgSinkTest, UnreachablePortRetriesQuickly) {
  TRACKEVENT_REQUIRE_PG();
  PgTimeouts t;
  t.connect_timeout_s = 2;
  auto s = trackevent::make_postgres_sink(
      "host=127.0.0.1 port=" + std::to_string(closed_port()) + " dbname=x", t);
  const auto start = Clock::now();
  const WriteResult r = s->write(make_batch(10, 0, 3));
  EXPECT_LT(Clock::now() - start, 2500ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::retry) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "");
}

TEST_F(PgSinkTest, SilentServerTimesOutWithinConnectTimeout) {
  TRACKEVENT_REQUIRE_PG();
  BlackHole hole;
  PgTimeouts t;
  t.connect_timeout_s = 2;
  auto s = trackevent::make_postgres_sink(
      "postgresql://u:pw@127.0.0.1:" + std::to_string(hole.port()) + "/x?sslmode=disable", t);
  const auto start = Clock::now();
  const WriteResult r = s->write(make_batch(11, 0, 3));
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 1900ms);
  EXPECT_LT(elapsed, 3500ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::retry) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "");
}

TEST_F(PgSinkTest, HundredThousandEventsInBatches) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  auto s = sink();
  std::size_t stored = 0;
  for (std::uint64_t first = 0; first < 100'000; first += 5000) {
    const WriteResult r = s->write(make_batch(12, first, 5000));
    ASSERT_TRUE(r.ok()) << describe(r);
    stored += r.stored;
  }
  EXPECT_EQ(stored, 100'000U);
  EXPECT_EQ(count_rows(), 100'000);
  // One batch of 100k at once, all duplicates now.
  const WriteResult r = s->write(make_batch(12, 0, 100'000));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.duplicates, 100'000U);
  EXPECT_EQ(count_rows(), 100'000);
}

TEST_F(PgSinkTest, LockedTableRetriesWithinStatementTimeout) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  PgTimeouts t;
  t.statement_timeout_ms = 300;
  auto s = sink(t);
  ASSERT_TRUE(s->write(make_batch(13, 0, 1)).ok());  // connected, table known

  pqxx::connection locker{url_};
  pqxx::work tx{locker};
  tx.exec("LOCK TABLE analytics_events IN ACCESS EXCLUSIVE MODE");
  const auto start = Clock::now();
  const WriteResult r = s->write(make_batch(13, 1, 10));
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::retry) << describe(r);
  EXPECT_EQ(r.failure->sqlstate, "57014");
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 1500ms);
  tx.abort();

  const WriteResult after = s->write(make_batch(13, 1, 10));
  ASSERT_TRUE(after.ok()) << describe(after);
  EXPECT_EQ(after.stored, 10U);
}

TEST_F(PgSinkTest, StuckBackendIsCancelledThenDropped) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  PgTimeouts t;
  t.statement_timeout_ms = 300;
  auto s = sink(t);
  ASSERT_TRUE(s->write(make_batch(14, 0, 1)).ok());

  pqxx::connection admin{url_};
  pqxx::nontransaction q{admin};
  const pqxx::row pid_row = q.exec1(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'trackevent' "
      "AND datname = current_database()");
  const auto pid = static_cast<pid_t>(pid_row[0].as<int>());
  if (::kill(pid, SIGSTOP) != 0) GTEST_SKIP() << "cannot signal the server backend";

  // The server cannot time itself out while stopped: our own deadline and cancel must act.
  const auto start = Clock::now();
  const WriteResult r = s->write(make_batch(14, 1, 10));
  const auto elapsed = Clock::now() - start;
  ::kill(pid, SIGCONT);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::retry) << describe(r);
  EXPECT_LT(elapsed, 4s);

  const WriteResult after = s->write(make_batch(14, 1, 10));  // reconnects
  ASSERT_TRUE(after.ok()) << describe(after);
  EXPECT_EQ(count_rows(), 11);
}

TEST_F(PgSinkTest, TerminatedConnectionIsReplaced) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  auto s = sink();
  ASSERT_TRUE(s->write(make_batch(15, 0, 5)).ok());
  {
    pqxx::connection admin{url_};
    pqxx::nontransaction q{admin};
    q.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'trackevent' AND datname = current_database()");
  }
  std::this_thread::sleep_for(200ms);
  // The server's goodbye is waiting on the idle socket: the sink notices and reconnects.
  const WriteResult r = s->write(make_batch(15, 5, 5));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(count_rows(), 10);
}

TEST_F(PgSinkTest, KeywordValueConninfoAndApplicationName) {
  TRACKEVENT_REQUIRE_PG();
  create_schema();
  // key=value form; host/port/user come from the PG* variables the test server exports.
  const std::string db = url_.substr(url_.rfind('/') + 1);
  auto s = trackevent::make_postgres_sink("dbname=" + db + " application_name=te_custom");
  const WriteResult r = s->write(make_batch(16, 0, 2));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(count_rows(), 2);
}

TEST(PgSinkDescribe, RedactsPassword) {
  auto s = trackevent::make_postgres_sink("postgresql://u:secret@h/db");
  EXPECT_EQ(s->describe(), "postgresql://u:***@h/db");
  auto kv = trackevent::make_postgres_sink("host=h password='se cret' dbname=x");
  EXPECT_EQ(kv->describe(), "host=h password=*** dbname=x");
}

TEST(PgSinkConninfo, MalformedHoldsWithoutLeakingPassword) {
  auto s = trackevent::make_postgres_sink("postgresql://u:hunter2pw@[::1/db");
  const WriteResult r = s->write(make_batch(17, 0, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, Disposition::hold) << describe(r);
  EXPECT_EQ(r.failure->message.find("hunter2pw"), std::string::npos) << r.failure->message;
}

TEST(MakeSink, PostgresTargetGivesPostgresSink) {
  const trackevent::DbTarget t{trackevent::DbTarget::Kind::postgres, "postgresql://u:pw@h/db"};
  auto s = trackevent::make_sink(t);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->describe(), "postgresql://u:***@h/db");
}

}  // namespace
