// Migrations against the disposable PostgreSQL (scripts/pg-test-server run -- ...): fresh schema,
// idempotence, concurrent migrators, checksum tampering, dry run, status, unreachable servers.
#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "schema/migrate_internal.hpp"
#include "support/pg.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <map>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace te = trackevent;
using namespace std::chrono_literals;
using te::test::fresh_database;

namespace {

te::DbTarget pg(const std::string& url) { return {te::DbTarget::Kind::postgres, url}; }

std::string scalar(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  const pqxx::row r = tx.exec1(sql);
  return r[0].is_null() ? "<null>" : r[0].c_str();
}

/// A TCP socket on 127.0.0.1; `listening` false closes it again so the port refuses connections.
struct LocalPort {
  explicit LocalPort(bool listening) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    if (listening) {
      ::listen(fd, 16);  // never accept(): the kernel completes handshakes, nobody answers
    } else {
      ::close(fd);
      fd = -1;
    }
  }
  ~LocalPort() {
    if (fd >= 0) ::close(fd);
  }
  LocalPort(const LocalPort&) = delete;
  LocalPort& operator=(const LocalPort&) = delete;
  int fd = -1;
  int port = 0;
};

const std::regex kRfc3339{R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$)"};

}  // namespace

// ---------------------------------------------------------------------------------------------
// No server needed

TEST(BuiltinMigrations, AreSortedNamedAndChecksummed) {
  for (const auto kind : {te::DbTarget::Kind::postgres, te::DbTarget::Kind::sqlite}) {
    const auto& ms = te::builtin_migrations(kind);
    ASSERT_FALSE(ms.empty());
    EXPECT_EQ(ms.front().version, 1);
    EXPECT_EQ(ms.front().name, "create_analytics_events");
    for (std::size_t i = 0; i < ms.size(); ++i) {
      if (i > 0) {
        EXPECT_LT(ms[i - 1].version, ms[i].version);
      }
      EXPECT_FALSE(ms[i].sql.empty());
      // The checksum is the SHA-256 of the SQL (unit/schema/test_migration_checksums.cpp).
      EXPECT_EQ(ms[i].checksum.size(), 64u);
    }
  }
  // The same object every time (a reference into a static list).
  EXPECT_EQ(&te::builtin_migrations(te::DbTarget::Kind::postgres),
            &te::builtin_migrations(te::DbTarget::Kind::postgres));
}

TEST(BuiltinMigrations, AdvisoryLockKeyNeverChanges) {
  // Changing the key would let migrators of different versions run at the same time. (Its
  // derivation from SHA-256 is checked in unit/schema/test_migration_checksums.cpp.)
  EXPECT_EQ(te::detail::migration_lock_key(), 1969454243556375699LL);
}

TEST(MigratePostgres, UnreachableServerIsReportedWithoutThePassword) {
  const LocalPort closed{false};
  const std::string port = std::to_string(closed.port);
  for (const std::string& url :
       {"postgresql://trackevent:S3cretPw!@127.0.0.1:" + port + "/analytics",
        "host=127.0.0.1 port=" + port + " user=trackevent password=S3cretPw! dbname=analytics"}) {
    for (const bool status : {false, true}) {
      try {
        if (status) {
          (void)te::migration_status(pg(url));
        } else {
          (void)te::migrate(pg(url));
        }
        ADD_FAILURE() << "expected MigrateError for " << port;
      } catch (const te::MigrateError& e) {
        EXPECT_TRUE(e.unreachable);
        const std::string what = e.what();
        EXPECT_EQ(what.find("S3cretPw"), std::string::npos) << what;
        EXPECT_NE(what.find("127.0.0.1"), std::string::npos) << what;
      }
    }
  }
}

TEST(MigratePostgres, SilentServerTimesOutAtConnectTimeout) {
  const LocalPort silent{true};
  te::MigrateOptions options;
  options.timeouts.connect_timeout_s = 2;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    (void)te::migrate(
        pg("postgresql://u:S3cretPw!@127.0.0.1:" + std::to_string(silent.port) + "/db"), options);
    ADD_FAILURE() << "expected MigrateError";
  } catch (const te::MigrateError& e) {
    EXPECT_TRUE(e.unreachable);
    EXPECT_EQ(std::string(e.what()).find("S3cretPw"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(MigratePostgres, MalformedUrlIsNotUnreachableAndHidesThePassword) {
  try {
    (void)te::migrate(pg("postgresql://u:S3cretPw%zz@127.0.0.1:1/db"));
    ADD_FAILURE() << "expected MigrateError";
  } catch (const te::MigrateError& e) {
    EXPECT_FALSE(e.unreachable);
    EXPECT_EQ(std::string(e.what()).find("S3cretPw"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Against the test server

TEST(MigratePostgres, FreshDatabaseGetsTheDocumentedSchema) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_fresh");
  const auto& builtin = te::builtin_migrations(te::DbTarget::Kind::postgres);

  const te::MigrateReport r = te::migrate(pg(url));
  ASSERT_EQ(r.applied.size(), builtin.size());
  EXPECT_EQ(r.applied.front(), 1);
  ASSERT_EQ(r.status.size(), builtin.size());
  for (const auto& s : r.status) {
    EXPECT_EQ(s.state, te::MigrationStatus::State::applied);
    EXPECT_TRUE(std::regex_match(s.applied_at, kRfc3339)) << s.applied_at;
  }

  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  std::map<std::string, std::pair<std::string, std::string>> columns;
  for (const auto& row : tx.exec("SELECT column_name, data_type, is_nullable FROM "
                                 "information_schema.columns WHERE table_schema = 'public' AND "
                                 "table_name = 'analytics_events'")) {
    columns[row[0].c_str()] = {row[1].c_str(), row[2].c_str()};
  }
  const std::map<std::string, std::pair<std::string, std::string>> expected{
      {"event_id", {"uuid", "NO"}},
      {"org_id", {"bigint", "NO"}},
      {"user_id", {"bigint", "YES"}},
      {"event_name", {"text", "NO"}},
      {"metadata", {"jsonb", "NO"}},
      {"occurred_at", {"timestamp with time zone", "NO"}},
      {"recorded_at", {"timestamp with time zone", "NO"}},
  };
  EXPECT_EQ(columns, expected);

  // The layout of migration 0002 (partitioned; docs in man/trackevent.1, "migrate").
  EXPECT_EQ(tx.exec1("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                     "'analytics_events'::regclass AND contype = 'p'")[0]
                .c_str(),
            std::string("PRIMARY KEY (org_id, occurred_at, event_id)"));
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM pg_index WHERE indrelid = "
                     "'analytics_events'::regclass")[0]
                .as<int>(),
            1);
  EXPECT_EQ(tx.exec1("SELECT pg_get_partkeydef('analytics_events'::regclass)")[0].c_str(),
            std::string("RANGE (occurred_at)"));
  const pqxx::result rows =
      tx.exec("SELECT version, name, checksum FROM schema_migrations ORDER BY version");
  ASSERT_EQ(rows.size(), builtin.size());
  for (std::size_t i = 0; i < builtin.size(); ++i) {
    EXPECT_EQ(rows[static_cast<int>(i)][0].as<int>(), builtin[i].version);
    EXPECT_EQ(rows[static_cast<int>(i)][1].c_str(), builtin[i].name);
    EXPECT_EQ(rows[static_cast<int>(i)][2].c_str(), builtin[i].checksum);
  }

  // The defaults work: a minimal insert gets '{}' metadata and a recorded_at.
  tx.exec(
      "INSERT INTO analytics_events (event_id, org_id, event_name, occurred_at) VALUES "
      "('0190d7a4-0000-7000-8000-000000000001', 1, 'user.signed_in', now())");
  EXPECT_EQ(tx.exec1("SELECT metadata::text FROM analytics_events")[0].c_str(), std::string("{}"));
}

TEST(MigratePostgres, SecondRunIsANoOp) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_twice");
  const te::MigrateReport first = te::migrate(pg(url));
  EXPECT_FALSE(first.applied.empty());
  const std::string applied_at = scalar(
      url, "SELECT string_agg(applied_at::text, ',' ORDER BY version) FROM schema_migrations");

  const te::MigrateReport second = te::migrate(pg(url));
  EXPECT_TRUE(second.applied.empty());
  ASSERT_EQ(second.status.size(), first.status.size());
  for (std::size_t i = 0; i < second.status.size(); ++i) {
    EXPECT_EQ(second.status[i].state, te::MigrationStatus::State::applied);
    EXPECT_EQ(second.status[i].applied_at, first.status[i].applied_at);
  }
  EXPECT_EQ(
      scalar(url,
             "SELECT string_agg(applied_at::text, ',' ORDER BY version) FROM schema_migrations"),
      applied_at);
}

TEST(MigratePostgres, ConcurrentMigratorsTakeTurns) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_concurrent");
  const auto& builtin = te::builtin_migrations(te::DbTarget::Kind::postgres);
  constexpr int kMigrators = 8;
  std::latch gate{kMigrators};
  std::mutex mu;
  std::vector<std::string> errors;
  std::atomic<std::size_t> applied_total{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kMigrators; ++i) {
    threads.emplace_back([&] {
      gate.arrive_and_wait();  // all start together
      try {
        applied_total += te::migrate(pg(url)).applied.size();
      } catch (const std::exception& e) {
        const std::lock_guard lock{mu};
        errors.emplace_back(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(applied_total.load(), builtin.size());  // each migration applied by exactly one
  EXPECT_EQ(scalar(url, "SELECT count(*) FROM schema_migrations"), std::to_string(builtin.size()));
  EXPECT_EQ(scalar(url, "SELECT count(DISTINCT version) FROM schema_migrations"),
            std::to_string(builtin.size()));
  EXPECT_EQ(scalar(url, "SELECT count(*) FROM pg_class WHERE relname = 'analytics_events'"), "1");
  // Every lock was released: no session still holds the migration lock.
  EXPECT_EQ(scalar(url,
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                   "(SELECT oid FROM pg_database WHERE datname = current_database())"),
            "0");
}

TEST(MigratePostgres, TamperedChecksumIsRefusedNamingTheMigration) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_tampered");
  (void)te::migrate(pg(url));
  scalar(url, "UPDATE schema_migrations SET checksum = 'x' WHERE version = 1 RETURNING 1");

  for (const bool dry_run : {false, true}) {
    te::MigrateOptions options;
    options.dry_run = dry_run;
    try {
      (void)te::migrate(pg(url), options);
      ADD_FAILURE() << "expected MigrateError (dry_run " << dry_run << ")";
    } catch (const te::MigrateError& e) {
      EXPECT_FALSE(e.unreachable);
      EXPECT_EQ(std::string(e.what()),
                "migration 0001_create_analytics_events: checksum mismatch: the applied "
                "migration differs from this build's");
    }
  }
  const te::MigrateReport st = te::migration_status(pg(url));
  ASSERT_FALSE(st.status.empty());
  EXPECT_EQ(st.status.front().state, te::MigrationStatus::State::checksum_mismatch);
}

TEST(MigratePostgres, DryRunAppliesNothing) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_dry");
  const auto& builtin = te::builtin_migrations(te::DbTarget::Kind::postgres);
  te::MigrateOptions options;
  options.dry_run = true;
  const te::MigrateReport r = te::migrate(pg(url), options);
  ASSERT_EQ(r.applied.size(), builtin.size());
  EXPECT_EQ(r.applied.front(), 1);
  EXPECT_EQ(scalar(url, "SELECT to_regclass('analytics_events')::text"), "<null>");
  EXPECT_EQ(scalar(url, "SELECT to_regclass('schema_migrations')::text"), "<null>");
  for (const auto& s : te::migration_status(pg(url)).status) {
    EXPECT_EQ(s.state, te::MigrationStatus::State::pending);
  }
}

TEST(MigratePostgres, StatusListsPendingThenApplied) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_status");
  const auto& builtin = te::builtin_migrations(te::DbTarget::Kind::postgres);

  te::MigrateReport st = te::migration_status(pg(url));
  EXPECT_TRUE(st.applied.empty());
  ASSERT_EQ(st.status.size(), builtin.size());
  for (std::size_t i = 0; i < builtin.size(); ++i) {
    EXPECT_EQ(st.status[i].version, builtin[i].version);
    EXPECT_EQ(st.status[i].name, builtin[i].name);
    EXPECT_EQ(st.status[i].state, te::MigrationStatus::State::pending);
    EXPECT_TRUE(st.status[i].applied_at.empty());
  }
  // Status changes nothing.
  EXPECT_EQ(scalar(url, "SELECT to_regclass('schema_migrations')::text"), "<null>");

  (void)te::migrate(pg(url));
  st = te::migration_status(pg(url));
  ASSERT_EQ(st.status.size(), builtin.size());
  for (const auto& s : st.status) {
    EXPECT_EQ(s.state, te::MigrationStatus::State::applied);
    EXPECT_TRUE(std::regex_match(s.applied_at, kRfc3339)) << s.applied_at;
  }
}

TEST(MigratePostgres, LockWaitIsBounded) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_lockwait");
  pqxx::connection holder{url};
  pqxx::nontransaction htx{holder};
  htx.exec("SELECT pg_advisory_lock(" + std::to_string(te::detail::migration_lock_key()) + ")");

  te::MigrateOptions options;
  options.lock_timeout_ms = 300;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    (void)te::migrate(pg(url), options);
    ADD_FAILURE() << "expected MigrateError";
  } catch (const te::MigrateError& e) {
    EXPECT_FALSE(e.unreachable);
    EXPECT_NE(std::string(e.what()).find("advisory lock"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);

  // A holder that lets go in time is waited for.
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    htx.exec("SELECT pg_advisory_unlock(" + std::to_string(te::detail::migration_lock_key()) + ")");
  });
  options.lock_timeout_ms = 10000;
  const te::MigrateReport r = te::migrate(pg(url), options);
  releaser.join();
  EXPECT_FALSE(r.applied.empty());
}

TEST(MigratePostgres, WrongPasswordIsUnreachableAndRedacted) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_auth");
  // The test server trusts everyone, so a role that does not exist stands in for bad credentials.
  const std::string bad =
      "postgresql://nosuchrole:S3cretPw!@" +
      url.substr(url.find('@') == std::string::npos ? url.find("//") + 2 : url.find('@') + 1);
  try {
    (void)te::migrate(pg(bad));
    ADD_FAILURE() << "expected MigrateError";
  } catch (const te::MigrateError& e) {
    EXPECT_TRUE(e.unreachable);
    EXPECT_EQ(std::string(e.what()).find("S3cretPw"), std::string::npos) << e.what();
  }
}

TEST(MigratePostgres, AConnectionLostMidRunIsReportedNotReopened) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = fresh_database("te_migrate_lost");
  pqxx::connection holder{url};
  pqxx::nontransaction htx{holder};
  htx.exec("SELECT pg_advisory_lock(" + std::to_string(te::detail::migration_lock_key()) + ")");

  // The migrator waits for the lock; its backend is terminated while it waits.
  std::thread killer([&] {
    for (int i = 0; i < 200; ++i) {
      std::this_thread::sleep_for(50ms);
      if (scalar(url,
                 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                 "application_name = 'trackevent migrate' AND wait_event_type = 'Lock' AND "
                 "datname = current_database()") != "0") {
        return;
      }
    }
  });
  te::MigrateOptions options;
  options.lock_timeout_ms = 20000;
  try {
    (void)te::migrate(pg(url), options);
    ADD_FAILURE() << "expected MigrateError";
  } catch (const te::MigrateError& e) {
    EXPECT_TRUE(e.unreachable) << e.what();
    EXPECT_NE(std::string(e.what()).find("lost"), std::string::npos) << e.what();
  }
  killer.join();
  // Not reconnected behind the lock's back: nothing was applied.
  EXPECT_EQ(scalar(url, "SELECT to_regclass('analytics_events') IS NULL"), "t");
}
