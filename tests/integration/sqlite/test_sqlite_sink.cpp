// The embedded store: a fresh file is created and migrated on open, batches are stored
// idempotently, SQLite errors become classified failures, and no wait is unbounded.
#include "trackevent/event.hpp"

#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "sqlite/sqlite_util.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace te = trackevent;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

te::Uuid uuid_for(std::uint64_t n) {
  te::Uuid u;
  for (int i = 0; i < 8; ++i) u.bytes[15 - i] = static_cast<std::uint8_t>(n >> (8 * i));
  u.bytes[0] = 0x01;
  u.bytes[6] = 0x70;  // version 7
  u.bytes[8] = 0x80;  // RFC 9562 variant
  return u;
}

te::Event make_event(std::uint64_t n) {
  te::Event e;
  e.event_id = uuid_for(n);
  e.org_id = static_cast<std::int64_t>(1 + n % 7);
  if (n % 3 != 0) e.user_id = static_cast<std::int64_t>(1000 + n);
  e.event_name = n % 2 ? "dataset.uploaded" : "user.signed_in";
  e.metadata = nlohmann::json{{"n", n},
                              {"nested", {{"ok", true}, {"list", {1, 2, 3}}}},
                              {"text", "héllo \"quoted\" \u2603"}}
                   .dump();
  e.occurred_at_us = 1'795'000'000'000'000 + static_cast<std::int64_t>(n) * 1'234'567;
  return e;
}

/// A raw connection for inspecting the store from the outside.
struct RawDb {
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path;
    }
    sqlite3_busy_timeout(db, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  /// Rows of text (NULL as "<null>").
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    std::vector<std::vector<std::string>> out;
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
    while (sqlite3_step(s) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
        row.emplace_back(t ? t : "<null>");
      }
      out.push_back(std::move(row));
    }
    sqlite3_finalize(s);
    return out;
  }
  std::string scalar(const std::string& sql) {
    const auto r = rows(sql);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }

  sqlite3* db = nullptr;
};

class SqliteSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "te-sqlite-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "events.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<te::Sink> open() {
    auto sink = te::make_sqlite_sink(path_);
    EXPECT_NE(sink, nullptr);
    return sink;
  }

  fs::path dir_;
  std::string path_;
};

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

}  // namespace

TEST_F(SqliteSinkTest, FreshFileIsCreatedPrivateMigratedAndInWalMode) {
  path_ = (dir_ / "a" / "b" / "events.db").string();
  auto sink = open();
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(sink->describe(), "sqlite:" + path_);

  EXPECT_EQ(mode_of(path_), 0600u);
  EXPECT_EQ(mode_of(dir_ / "a"), 0700u);
  EXPECT_EQ(mode_of(dir_ / "a" / "b"), 0700u);

  RawDb raw{path_};
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
  std::vector<std::string> columns;
  for (const auto& r : raw.rows("SELECT name FROM pragma_table_info('analytics_events')")) {
    columns.push_back(r[0]);
  }
  EXPECT_EQ(columns, (std::vector<std::string>{"event_id", "org_id", "user_id", "event_name",
                                               "metadata", "occurred_at", "recorded_at"}));
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = "
                       "'analytics_events_org_id_occurred_at_idx'"),
            "1");

  const auto& builtin = te::builtin_migrations(te::DbTarget::Kind::sqlite);
  const auto rows = raw.rows(
      "SELECT version, name, checksum, applied_at FROM schema_migrations "
      "ORDER BY version");
  ASSERT_EQ(rows.size(), builtin.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0], std::to_string(builtin[i].version));
    EXPECT_EQ(rows[i][1], builtin[i].name);
    EXPECT_EQ(rows[i][2], builtin[i].checksum);
    EXPECT_FALSE(rows[i][3].empty());
  }
}

TEST_F(SqliteSinkTest, WalAndShmFilesArePrivateToo) {
  auto sink = open();
  const te::Event e = make_event(1);
  ASSERT_TRUE(sink->write({&e, 1}).ok());
  for (const char* suffix : {"-wal", "-shm"}) {
    const fs::path p = path_ + suffix;
    if (fs::exists(p)) {
      EXPECT_EQ(mode_of(p) & 0077u, 0u) << p;
    }
  }
}

TEST_F(SqliteSinkTest, StoresEventsWithTheirValues) {
  auto sink = open();
  std::vector<te::Event> batch;
  for (std::uint64_t n = 1; n <= 50; ++n) batch.push_back(make_event(n));
  const te::WriteResult r = sink->write(batch);
  ASSERT_TRUE(r.ok()) << r.failure->message;
  EXPECT_EQ(r.stored, 50u);
  EXPECT_EQ(r.duplicates, 0u);

  RawDb raw{path_};
  std::map<std::string, std::vector<std::string>> by_id;
  for (auto& row : raw.rows("SELECT event_id, org_id, user_id, event_name, metadata, occurred_at, "
                            "recorded_at, typeof(org_id), typeof(user_id) FROM analytics_events")) {
    by_id[row[0]] = row;
  }
  ASSERT_EQ(by_id.size(), 50u);
  for (const te::Event& e : batch) {
    const auto it = by_id.find(e.event_id.to_string());
    ASSERT_NE(it, by_id.end()) << e.event_id.to_string();
    const auto& row = it->second;
    EXPECT_EQ(row[1], std::to_string(e.org_id));
    EXPECT_EQ(row[2], e.user_id ? std::to_string(*e.user_id) : "<null>");
    EXPECT_EQ(row[3], e.event_name);
    EXPECT_EQ(nlohmann::json::parse(row[4]), nlohmann::json::parse(e.metadata));
    EXPECT_EQ(row[5], te::format_rfc3339(e.occurred_at_us));
    EXPECT_FALSE(row[6].empty());  // recorded_at defaulted by the store
    EXPECT_EQ(row[7], "integer");
    EXPECT_EQ(row[8], e.user_id ? "integer" : "null");
  }
}

TEST_F(SqliteSinkTest, SameEventIdTwiceIsStoredOnceAndCountedAsDuplicate) {
  auto sink = open();
  const te::Event e = make_event(7);
  te::WriteResult first = sink->write({&e, 1});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.stored, 1u);

  te::Event again = make_event(8);
  again.event_id = e.event_id;  // a retried delivery
  const std::vector<te::Event> batch{again, make_event(9), make_event(9)};
  const te::WriteResult second = sink->write(batch);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.stored, 1u);
  EXPECT_EQ(second.duplicates, 2u);

  RawDb raw{path_};
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM analytics_events"), "2");
  // The first delivery wins; the duplicate changed nothing.
  EXPECT_EQ(raw.scalar("SELECT event_name FROM analytics_events WHERE event_id = '" +
                       e.event_id.to_string() + "'"),
            e.event_name);
}

TEST_F(SqliteSinkTest, HundredThousandEvents) {
  auto sink = open();
  std::size_t stored = 0;
  std::vector<te::Event> batch;
  for (std::uint64_t n = 0; n < 100'000; ++n) {
    te::Event e;
    e.event_id = uuid_for(n);
    e.org_id = 1;
    e.event_name = "backup.completed";
    e.metadata = "{\"n\":" + std::to_string(n) + "}";
    e.occurred_at_us = 1'795'000'000'000'000 + static_cast<std::int64_t>(n);
    batch.push_back(std::move(e));
    if (batch.size() == 1000) {
      const te::WriteResult r = sink->write(batch);
      ASSERT_TRUE(r.ok()) << r.failure->message;
      stored += r.stored;
      batch.clear();
    }
  }
  EXPECT_EQ(stored, 100'000u);
  RawDb raw{path_};
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM analytics_events"), "100000");
}

TEST_F(SqliteSinkTest, EmptyBatchIsOk) {
  auto sink = open();
  const te::WriteResult r = sink->write({});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.stored + r.duplicates, 0u);
}

TEST_F(SqliteSinkTest, BadRowRejectsTheWholeBatchAndWritesNothing) {
  auto sink = open();
  te::Event bad_org = make_event(2);
  bad_org.org_id = 0;
  te::Event bad_meta = make_event(3);
  bad_meta.metadata = "[1,2]";  // not an object
  for (const te::Event& bad : {bad_org, bad_meta}) {
    const std::vector<te::Event> batch{make_event(1), bad};
    const te::WriteResult r = sink->write(batch);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.failure->disposition, te::Disposition::reject);
    EXPECT_TRUE(r.failure->sqlstate.empty());
    EXPECT_EQ(r.failure->message.rfind("sqlite: ", 0), 0u) << r.failure->message;
    EXPECT_NE(r.failure->message.find("CHECK"), std::string::npos) << r.failure->message;
  }
  RawDb raw{path_};
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM analytics_events"), "0");

  // The sink is still usable after a failed batch.
  const te::Event good = make_event(1);
  EXPECT_TRUE(sink->write({&good, 1}).ok());
}

TEST_F(SqliteSinkTest, MissingTableIsHeld) {
  auto sink = open();
  {
    RawDb raw{path_};
    raw.exec("DROP TABLE analytics_events");
  }
  const te::Event e = make_event(1);
  const te::WriteResult r = sink->write({&e, 1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, te::Disposition::hold) << r.failure->message;
}

TEST_F(SqliteSinkTest, WaitsForABriefWriteLock) {
  auto sink = open();
  RawDb other{path_};
  other.exec("BEGIN IMMEDIATE");
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    other.exec("COMMIT");
  });
  const te::Event e = make_event(1);
  const auto t0 = std::chrono::steady_clock::now();
  const te::WriteResult r = sink->write({&e, 1});
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  releaser.join();
  ASSERT_TRUE(r.ok()) << r.failure->message;
  EXPECT_EQ(r.stored, 1u);
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 5s);
}

TEST_F(SqliteSinkTest, ALongWriteLockEndsInRetryNotAHang) {
  auto sink = te::detail::make_sqlite_sink(path_, 200ms);
  RawDb other{path_};
  other.exec("BEGIN IMMEDIATE");
  const te::Event e = make_event(1);
  const auto t0 = std::chrono::steady_clock::now();
  const te::WriteResult r = sink->write({&e, 1});
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  other.exec("COMMIT");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->disposition, te::Disposition::retry);
  EXPECT_NE(r.failure->message.find("locked"), std::string::npos) << r.failure->message;
  EXPECT_LT(elapsed, 2s);

  const te::WriteResult later = sink->write({&e, 1});  // the lock is gone: it goes through
  ASSERT_TRUE(later.ok()) << later.failure->message;
  EXPECT_EQ(later.stored, 1u);
}

TEST_F(SqliteSinkTest, ReopeningKeepsDataAndAppliesNothingAgain) {
  std::string applied_at;
  {
    auto sink = open();
    const te::Event e = make_event(1);
    ASSERT_TRUE(sink->write({&e, 1}).ok());
    applied_at = RawDb{path_}.scalar("SELECT applied_at FROM schema_migrations WHERE version = 1");
  }
  auto sink = open();
  RawDb raw{path_};
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM analytics_events"), "1");
  EXPECT_EQ(raw.scalar("SELECT applied_at FROM schema_migrations WHERE version = 1"), applied_at);
}

TEST_F(SqliteSinkTest, ConcurrentOpenersOfAFreshFileAllSucceed) {
  constexpr int kThreads = 8;
  std::latch gate{kThreads};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      gate.arrive_and_wait();
      try {
        auto sink = te::make_sqlite_sink(path_);
        const te::Event e = make_event(42);
        if (!sink->write({&e, 1}).ok()) ++failures;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  RawDb raw{path_};
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM schema_migrations"),
            std::to_string(te::builtin_migrations(te::DbTarget::Kind::sqlite).size()));
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM analytics_events"), "1");
}

TEST_F(SqliteSinkTest, UnusablePathThrowsNamingIt) {
  { std::ofstream{dir_ / "plain-file"} << "x"; }
  const std::string bad = (dir_ / "plain-file" / "events.db").string();
  try {
    (void)te::make_sqlite_sink(bad);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad.substr(0, bad.rfind('/'))), std::string::npos)
        << e.what();
  }

  { std::ofstream{dir_ / "not-a-db"} << std::string(4096, 'x'); }
  EXPECT_THROW((void)te::make_sqlite_sink((dir_ / "not-a-db").string()), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// migrate() and migration_status() on SQLite targets

TEST_F(SqliteSinkTest, MigrateAndStatusOnASqliteTarget) {
  const te::DbTarget target{te::DbTarget::Kind::sqlite, (dir_ / "m" / "events.db").string()};
  te::MigrateOptions dry_run;
  dry_run.dry_run = true;
  const auto& builtin = te::builtin_migrations(te::DbTarget::Kind::sqlite);

  // Status and dry run on a missing file report everything pending and create nothing.
  te::MigrateReport st = te::migration_status(target);
  ASSERT_EQ(st.status.size(), builtin.size());
  for (const auto& s : st.status) EXPECT_EQ(s.state, te::MigrationStatus::State::pending);
  te::MigrateReport dry = te::migrate(target, dry_run);
  EXPECT_EQ(dry.applied.size(), builtin.size());
  EXPECT_FALSE(fs::exists(target.conninfo));

  te::MigrateReport first = te::migrate(target);
  ASSERT_EQ(first.applied.size(), builtin.size());
  EXPECT_EQ(first.applied.front(), builtin.front().version);
  EXPECT_EQ(mode_of(target.conninfo), 0600u);
  EXPECT_EQ(mode_of(dir_ / "m"), 0700u);

  te::MigrateReport second = te::migrate(target);
  EXPECT_TRUE(second.applied.empty());
  st = te::migration_status(target);
  for (const auto& s : st.status) {
    EXPECT_EQ(s.state, te::MigrationStatus::State::applied);
    EXPECT_FALSE(s.applied_at.empty());
  }
  EXPECT_TRUE(te::migrate(target, dry_run).applied.empty());

  // A store made by migrate() is a good sink, and vice versa.
  auto sink = te::make_sqlite_sink(target.conninfo);
  const te::Event e = make_event(5);
  EXPECT_TRUE(sink->write({&e, 1}).ok());
}

TEST_F(SqliteSinkTest, TamperedChecksumIsReportedAndRefused) {
  const te::DbTarget target{te::DbTarget::Kind::sqlite, path_};
  (void)te::migrate(target);
  RawDb{path_}.exec("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1");

  try {
    (void)te::migrate(target);
    FAIL() << "expected MigrateError";
  } catch (const te::MigrateError& e) {
    EXPECT_NE(std::string(e.what()).find("migration 0001_create_analytics_events: checksum "
                                         "mismatch"),
              std::string::npos)
        << e.what();
    EXPECT_FALSE(e.unreachable);
  }
  const te::MigrateReport st = te::migration_status(target);
  ASSERT_FALSE(st.status.empty());
  EXPECT_EQ(st.status.front().state, te::MigrationStatus::State::checksum_mismatch);
  EXPECT_THROW((void)te::make_sqlite_sink(path_), std::runtime_error);
}
