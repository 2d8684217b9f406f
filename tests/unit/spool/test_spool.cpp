// The spool (SQLite WAL shared by threads and processes) and the dead-letter file.

#include "config/database_url.hpp"
#include "spool/drain.hpp"
#include "spool/spool.hpp"
#include "support/fake_clock.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using trackevent::Event;
using trackevent::Uuid;
using trackevent::detail::DeadLetters;
using trackevent::detail::LeaseRenewer;
using trackevent::detail::Result;
using trackevent::detail::Spool;
using trackevent::detail::SpooledEvent;
using trackevent::detail::SpoolError;
using trackevent::detail::SpoolOptions;

// ---- fsync and fdatasync, watched ---------------------------------------------------------------
// This program's own fsync() and fdatasync() take the place of libc's for libtrackevent (and
// SQLite): the dynamic linker looks in the executable first. Both pass every call on to the kernel;
// they count the calls on a file named dead-letter.jsonl and on directories, and can make the ones
// on dead-letter.jsonl fail.

namespace {

std::atomic<int> g_dead_letter_syncs{0};
std::atomic<int> g_directory_syncs{0};
std::atomic<bool> g_fail_dead_letter_sync{false};

enum class Watched { dead_letter, directory, other };

Watched watched(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Watched::other;
  if (S_ISDIR(st.st_mode)) return Watched::directory;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096];
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return Watched::other;
  const std::string_view path(target, static_cast<std::size_t>(n));
  return path.ends_with("/dead-letter.jsonl") ? Watched::dead_letter : Watched::other;
}

int watched_sync(long call, int fd) noexcept {
  const Watched w = watched(fd);
  if (w == Watched::directory) ++g_directory_syncs;
  if (w == Watched::dead_letter) {
    ++g_dead_letter_syncs;
    if (g_fail_dead_letter_sync.load()) {
      errno = EIO;
      return -1;
    }
  }
  return static_cast<int>(::syscall(call, fd));
}

}  // namespace

extern "C" int fsync(int fd) { return watched_sync(SYS_fsync, fd); }
extern "C" int fdatasync(int fd) { return watched_sync(SYS_fdatasync, fd); }

namespace {

// A fresh directory under /tmp, removed (and unmounted, if a test mounted it) at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/trackevent-spool-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  void set_mounted() { mounted_ = true; }

 private:
  fs::path path_;
  bool mounted_ = false;
};

Uuid uuid_for(std::uint64_t hi, std::uint64_t lo) {
  Uuid u;
  for (int i = 0; i < 8; ++i) {
    u.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(hi >> (56 - 8 * i));
    u.bytes[static_cast<std::size_t>(8 + i)] = static_cast<std::uint8_t>(lo >> (56 - 8 * i));
  }
  return u;
}

Event make_event(std::int64_t org, std::int64_t user, std::string meta = "{}") {
  Event e;
  e.event_id = uuid_for(static_cast<std::uint64_t>(org), static_cast<std::uint64_t>(user));
  e.org_id = org;
  e.user_id = user;
  e.event_name = "test.spooled";
  e.metadata = std::move(meta);
  e.occurred_at_us = 1'700'000'000'000'000 + user;
  return e;
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0xFFFF;
  return st.st_mode & 07777;
}

bool append_one(Spool& s, const Event& e) { return s.append(std::span<const Event>(&e, 1)).ok(); }

/// The value of `r`; when it holds an error, a failure of the test and T{}.
template <class T>
T value_of(Result<T> r) {
  if (!r) {
    ADD_FAILURE() << r.error().message;
    return T{};
  }
  return std::move(r).value();
}

/// Why `r` failed; empty when it did not.
template <class T>
std::string why_of(const Result<T>& r) {
  return r ? std::string() : r.error().message;
}

std::vector<std::int64_t> ids_of(const std::vector<SpooledEvent>& rows) {
  std::vector<std::int64_t> ids;
  for (const auto& r : rows) ids.push_back(r.spool_id);
  return ids;
}

int wait_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `body` in a forked child; its return value is the exit code. Children never return into
// GoogleTest, and a hung child dies by alarm instead of hanging the suite.
template <class F>
pid_t spawn(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(120);
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "child %d: %s\n", ::getpid(), ex.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

// ---- hand-off to an exclusive drain (send --background, flush --exclusive) ----

/// Holds the spool's exclusive-drain lock, as a running `flush --exclusive` would.
class HeldDrainLock {
 public:
  explicit HeldDrainLock(const fs::path& dir)
      : fd_(::open((dir / "flush.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ < 0 || ::flock(fd_, LOCK_EX | LOCK_NB) != 0) throw std::runtime_error("cannot lock");
  }
  ~HeldDrainLock() { ::close(fd_); }
  HeldDrainLock(const HeldDrainLock&) = delete;
  HeldDrainLock& operator=(const HeldDrainLock&) = delete;

 private:
  int fd_;
};

long long stored_rows(const fs::path& db) {
  sqlite3* h = nullptr;
  long long n = -1;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, "SELECT count(*) FROM analytics_events", -1, &st, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return n;
}

TEST(HandOff, CommitsAndSaysWhetherAnExclusiveDrainIsRunning) {
  TempDir tmp;
  const std::vector<Event> events{make_event(1, 1), make_event(1, 2), make_event(2, 3)};
  const trackevent::HandOff first = trackevent::spool_for_delivery(events, tmp.path());
  EXPECT_TRUE(first.error.empty()) << first.error;
  EXPECT_FALSE(first.drain_running);
  {
    const HeldDrainLock running(tmp.path());
    const trackevent::HandOff second =
        trackevent::spool_for_delivery(std::span<const Event>(events).first(1), tmp.path());
    EXPECT_TRUE(second.error.empty()) << second.error;
    EXPECT_TRUE(second.drain_running);
  }
  EXPECT_EQ(value_of(Spool::open(tmp.path())->count()), 4);
}

TEST(HandOff, ExclusiveDrainStandsAsideWhileAnotherRunsThenDeliversAll) {
  TempDir tmp;
  const fs::path spool_dir = tmp.path() / "spool";
  const fs::path store = tmp.path() / "store.db";
  std::vector<Event> events;
  for (std::int64_t i = 1; i <= 50; ++i) events.push_back(make_event(3, i));
  ASSERT_TRUE(trackevent::spool_for_delivery(events, spool_dir).error.empty());

  trackevent::DrainOptions options;
  options.spool_dir = spool_dir;
  options.exclusive = true;
  const auto target = trackevent::parse_database_url("sqlite:" + store.string());
  {
    const HeldDrainLock running(spool_dir);
    const trackevent::DrainResult busy = trackevent::drain_spool(target, options);
    EXPECT_EQ(busy.outcome, trackevent::DrainResult::Outcome::busy);
    EXPECT_EQ(busy.stored, 0U);
  }
  EXPECT_EQ(value_of(Spool::open(spool_dir)->count()), 50);
  const trackevent::DrainResult done = trackevent::drain_spool(target, options);
  EXPECT_EQ(done.outcome, trackevent::DrainResult::Outcome::empty) << done.error;
  EXPECT_EQ(done.stored, 50U);
  EXPECT_EQ(done.remaining, 0);
  EXPECT_EQ(stored_rows(store), 50);
  // The lock is free again: the next hand-off has to start a drain of its own.
  EXPECT_FALSE(trackevent::spool_for_delivery(std::span<const Event>(events).first(1), spool_dir)
                   .drain_running);
}

// `flush` waits on its clock, never past its timeout: with a fake clock it sleeps not at all.
TEST(Drain, WaitsOnItsClockForRowsAnotherProcessHoldsUntilItsTimeout) {
  TempDir tmp;
  const fs::path spool_dir = tmp.path() / "spool";
  const fs::path store = tmp.path() / "store.db";
  std::vector<Event> events;
  for (std::int64_t i = 1; i <= 5; ++i) events.push_back(make_event(4, i));
  ASSERT_TRUE(trackevent::spool_for_delivery(events, spool_dir).error.empty());
  auto other = Spool::open(spool_dir);
  ASSERT_EQ(value_of(other->claim(100, std::chrono::seconds{120})).size(), 5U);  // elsewhere

  auto clock = std::make_shared<trackevent::test::FakeClock>();
  std::vector<trackevent::Clock::duration> sleeps;
  trackevent::DrainOptions options;
  options.spool_dir = spool_dir;
  options.timeout = std::chrono::seconds{30};
  options.clock = clock;
  options.sleep = [&](trackevent::Clock::duration d) {
    sleeps.push_back(d);
    clock->advance(d);
  };
  const auto started = std::chrono::steady_clock::now();
  const trackevent::DrainResult r =
      trackevent::drain_spool(trackevent::parse_database_url("sqlite:" + store.string()), options);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds{10});
  EXPECT_EQ(r.outcome, trackevent::DrainResult::Outcome::timed_out);
  EXPECT_EQ(r.remaining, 5);
  ASSERT_FALSE(sleeps.empty());
  trackevent::Clock::duration slept{};
  for (const auto d : sleeps) {
    EXPECT_LE(d, std::chrono::milliseconds{200});
    slept += d;
  }
  EXPECT_EQ(slept, std::chrono::seconds{30});  // the last wait ends at the deadline exactly
}

}  // namespace

TEST(Spool, RoundTripsEveryField) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path());
  std::vector<Event> in;
  Event a = make_event(7, 42, R"({"rows":1200,"name":"Zoë ✓","nested":{"a":[1,2,null]}})");
  a.event_name = "dataset.uploaded";
  a.occurred_at_us = -123'456;  // before 1970 still round-trips
  in.push_back(a);
  Event b = make_event(std::numeric_limits<std::int64_t>::max(), 1);
  b.user_id.reset();  // system event: NULL user_id
  b.event_name = "backup.completed";
  b.metadata = "{}";
  b.occurred_at_us = 1'764'331'200'123'456;
  b.event_id.bytes.fill(0xff);
  in.push_back(b);

  const auto appended = spool->append(in);
  ASSERT_TRUE(appended) << why_of(appended);
  EXPECT_EQ(value_of(spool->count()), 2);
  const auto out = value_of(spool->claim(10, std::chrono::seconds(60)));
  ASSERT_EQ(out.size(), 2U);
  EXPECT_LT(out[0].spool_id, out[1].spool_id);
  EXPECT_EQ(*appended, std::make_pair(out[0].spool_id, out[1].spool_id)) << "the ids it gave";
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(out[i].event.event_id, in[i].event_id);
    EXPECT_EQ(out[i].event.org_id, in[i].org_id);
    EXPECT_EQ(out[i].event.user_id, in[i].user_id);
    EXPECT_EQ(out[i].event.event_name, in[i].event_name);
    EXPECT_EQ(out[i].event.metadata, in[i].metadata);
    EXPECT_EQ(out[i].event.occurred_at_us, in[i].occurred_at_us);
  }
  EXPECT_EQ(spool->path(), tmp.path() / "spool.db");
}

TEST(Spool, ClaimRemoveRelease) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path());
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(append_one(*spool, make_event(1, i)));

  const auto first = value_of(spool->claim(2, std::chrono::seconds(60)));  // oldest first
  ASSERT_EQ(first.size(), 2U);
  EXPECT_EQ(first[0].event.user_id, 1);
  EXPECT_EQ(first[1].event.user_id, 2);
  const auto rest = value_of(spool->claim(10, std::chrono::seconds(60)));
  ASSERT_EQ(rest.size(), 3U);
  EXPECT_EQ(rest[0].event.user_id, 3);
  EXPECT_TRUE(value_of(spool->claim(10, std::chrono::seconds(60))).empty())
      << "all rows are leased";
  EXPECT_TRUE(value_of(spool->claim(0, std::chrono::seconds(60))).empty());
  EXPECT_EQ(value_of(spool->count()), 5) << "claimed rows still count";

  ASSERT_TRUE(spool->release(ids_of(first)));
  const auto again = value_of(spool->claim(10, std::chrono::seconds(60)));
  ASSERT_EQ(again.size(), 2U);
  EXPECT_EQ(ids_of(again), ids_of(first));

  ASSERT_TRUE(spool->remove(ids_of(again)));
  ASSERT_TRUE(spool->remove(ids_of(rest)));
  EXPECT_EQ(value_of(spool->count()), 0);
  EXPECT_TRUE(spool->remove({}));
  EXPECT_TRUE(spool->release({}));
  EXPECT_TRUE(spool->append({}));
}

TEST(Spool, LeaseHidesRowsFromAnotherSpoolUntilItExpires) {
  TempDir tmp;
  auto a = Spool::open(tmp.path());
  auto b = Spool::open(tmp.path());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(append_one(*a, make_event(1, i)));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(value_of(a->claim(10, std::chrono::seconds(1))).size(), 3U);
  EXPECT_TRUE(value_of(b->claim(10, std::chrono::seconds(60))).empty());
  EXPECT_EQ(value_of(b->count()), 3);
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(1100));
  const auto taken = value_of(b->claim(10, std::chrono::seconds(60)));
  ASSERT_EQ(taken.size(), 3U) << "an expired lease makes rows claimable again";
  EXPECT_TRUE(value_of(a->claim(10, std::chrono::seconds(60))).empty());
}

TEST(Spool, ExtendKeepsRowsFromAnotherSpoolPastTheFirstLease) {
  TempDir tmp;
  auto a = Spool::open(tmp.path());
  auto b = Spool::open(tmp.path());  // another process's view, as for claims
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(append_one(*a, make_event(1, i)));
  const auto t0 = std::chrono::steady_clock::now();
  const auto claimed = value_of(a->claim(10, std::chrono::seconds(1)));
  ASSERT_EQ(claimed.size(), 3U);
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(500));
  ASSERT_TRUE(a->extend(ids_of(claimed), std::chrono::seconds(2)));  // until t0 + 2.5 s
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(1300));
  EXPECT_TRUE(value_of(b->claim(10, std::chrono::seconds(60))).empty())
      << "the first lease has run out, but it was renewed";
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(3200));
  EXPECT_EQ(value_of(b->claim(10, std::chrono::seconds(60))).size(), 3U)
      << "the renewed lease ran out";
  EXPECT_TRUE(a->extend({}, std::chrono::seconds(2)));
}

TEST(Spool, ExtendLeavesRowsItNoLongerHoldsAlone) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path());
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(append_one(*spool, make_event(1, i)));
  const auto first = value_of(spool->claim(2, std::chrono::seconds(60)));
  ASSERT_EQ(first.size(), 2U);
  const std::int64_t released = first[0].spool_id;
  const std::int64_t removed = first[1].spool_id;
  ASSERT_TRUE(spool->release(std::span<const std::int64_t>(&released, 1)));
  ASSERT_TRUE(spool->remove(std::span<const std::int64_t>(&removed, 1)));
  // A row given back is no longer ours: renewing does not claim it again.
  ASSERT_TRUE(spool->extend(std::span<const std::int64_t>(&released, 1), std::chrono::seconds(60)));
  const auto again = value_of(spool->claim(1, std::chrono::seconds(60)));
  ASSERT_EQ(again.size(), 1U);
  EXPECT_EQ(again[0].spool_id, released);
  ASSERT_TRUE(spool->remove(ids_of(again)));

  // Another process claims the other two for 2 s; our renewal must not lengthen its lease.
  const pid_t child = spawn([&] {
    auto theirs = Spool::open(tmp.path());
    return value_of(theirs->claim(10, std::chrono::seconds(2))).size() == 2 ? 0 : 1;
  });
  ASSERT_EQ(wait_child(child), 0);
  const auto claimed_by_then = std::chrono::steady_clock::now();
  std::vector<std::int64_t> all{released, removed};
  for (std::int64_t id = removed + 1; id <= removed + 2; ++id) all.push_back(id);
  EXPECT_TRUE(spool->extend(all, std::chrono::seconds(60)));
  EXPECT_TRUE(value_of(spool->claim(10, std::chrono::seconds(60))).empty())
      << "the other process's lease";
  std::this_thread::sleep_until(claimed_by_then + std::chrono::milliseconds(2300));
  EXPECT_EQ(value_of(spool->claim(10, std::chrono::seconds(60))).size(), 2U)
      << "their lease ran out when theirs did, not when a renewal of ours would";
  EXPECT_EQ(value_of(spool->count()), 2);
}

/// claimed_until (ms since 1970) of the spool row `id`, read past the Spool API.
long long claimed_until(const fs::path& dir, std::int64_t id) {
  sqlite3* h = nullptr;
  long long until = -1;
  if (sqlite3_open_v2((dir / "spool.db").c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, "SELECT claimed_until FROM spool WHERE id = ?1", -1, &st, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      if (sqlite3_step(st) == SQLITE_ROW) until = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return until;
}

TEST(LeaseRenewer, RenewsOnceHalfTheLeaseHasPassed) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path());
  for (int i = 1; i <= 2; ++i) ASSERT_TRUE(append_one(*spool, make_event(1, i)));
  trackevent::test::FakeClock clock;
  LeaseRenewer renewer(*spool, std::chrono::seconds(10), [&clock] { return clock.now(); });
  const auto rows = value_of(spool->claim(10, std::chrono::seconds(10)));
  ASSERT_EQ(rows.size(), 2U);
  renewer.claimed();
  const long long first = claimed_until(tmp.path(), rows[0].spool_id);
  ASSERT_GT(first, 0);

  clock.advance(std::chrono::milliseconds(4999));
  EXPECT_FALSE(renewer.due());
  clock.advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(renewer.due());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // real time, for claimed_until
  ASSERT_TRUE(renewer.renew(ids_of(rows)));
  EXPECT_GE(claimed_until(tmp.path(), rows[0].spool_id), first + 50);
  EXPECT_GE(claimed_until(tmp.path(), rows[1].spool_id), first + 50);
  EXPECT_FALSE(renewer.due()) << "a renewal starts the count again";
  clock.advance(std::chrono::seconds(5));
  EXPECT_TRUE(renewer.due());
  renewer.claimed();  // a new claim starts it again too
  EXPECT_FALSE(renewer.due());
}

TEST(LeaseRenewer, AFailedRenewalStaysDue) {
  trackevent::test::FakeClock clock;
  int calls = 0;
  LeaseRenewer renewer(
      [&calls](std::span<const std::int64_t>, std::chrono::seconds) -> Result<> {
        ++calls;
        return trackevent::detail::Error{"disk I/O error"};
      },
      std::chrono::seconds(10), [&clock] { return clock.now(); });
  clock.advance(std::chrono::seconds(5));
  ASSERT_TRUE(renewer.due());
  const std::int64_t id = 1;
  const auto renewed = renewer.renew(std::span<const std::int64_t>(&id, 1));
  EXPECT_FALSE(renewed);
  EXPECT_EQ(why_of(renewed), "disk I/O error");
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(renewer.due()) << "tried again at the next chance";
}

TEST(Spool, ThreadsShareOneSpool) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path());
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 500;
  std::atomic<int> writers_left{kWriters};
  std::mutex mu;
  std::multiset<std::pair<std::int64_t, std::int64_t>> removed;
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) EXPECT_TRUE(append_one(*spool, make_event(w + 1, i)));
      --writers_left;
    });
  }
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      for (;;) {
        const bool done = writers_left.load() == 0;
        const auto rows = value_of(spool->claim(37, std::chrono::seconds(60)));
        if (rows.empty()) {
          if (done) return;
          std::this_thread::yield();
          continue;
        }
        EXPECT_TRUE(spool->remove(ids_of(rows)));
        std::lock_guard lock(mu);
        for (const auto& r : rows) removed.emplace(r.event.org_id, *r.event.user_id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(removed.size(), static_cast<std::size_t>(kWriters * kPerWriter));
  EXPECT_EQ(std::set(removed.begin(), removed.end()).size(), removed.size()) << "claimed twice";
  EXPECT_EQ(value_of(spool->count()), 0);
}

// Four processes append while two claim and remove; every event ends up removed exactly once or
// still in the spool, and no row is claimed by two processes while its lease is live.
TEST(Spool, ProcessesShareOneSpool) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "spool";
  const fs::path done_flag = tmp.path() / "appenders-done";
  constexpr int kAppenders = 4;
  constexpr int kPerAppender = 5000;
  constexpr int kClaimers = 2;

  std::vector<pid_t> appenders;
  for (int a = 0; a < kAppenders; ++a) {
    appenders.push_back(spawn([&, a] {
      auto spool = Spool::open(dir);  // several processes create the spool at once
      for (int i = 0; i < kPerAppender;) {
        // Mix single-event and small-batch transactions.
        const int n = std::min(kPerAppender - i, 1 + i % 4);
        std::vector<Event> batch;
        for (int k = 0; k < n; ++k) batch.push_back(make_event(a + 1, i + k));
        if (const auto appended = spool->append(batch); !appended) {
          std::fprintf(stderr, "append failed: %s\n", appended.error().message.c_str());
          return 2;
        }
        i += n;
      }
      return 0;
    }));
  }
  std::vector<pid_t> claimers;
  for (int c = 0; c < kClaimers; ++c) {
    claimers.push_back(spawn([&, c] {
      auto spool = Spool::open(dir);
      std::FILE* out = std::fopen((tmp.path() / ("removed-" + std::to_string(c))).c_str(), "w");
      if (out == nullptr) return 3;
      for (;;) {
        // Read the flag before claiming: an empty claim after it means the spool is drained.
        const bool done = fs::exists(done_flag);
        const auto rows = value_of(spool->claim(50, std::chrono::seconds(60)));
        if (rows.empty()) {
          if (done) break;
          ::usleep(500);
          continue;
        }
        if (!spool->remove(ids_of(rows))) return 4;
        for (const auto& r : rows) {
          std::fprintf(out, "%lld %lld\n", static_cast<long long>(r.event.org_id),
                       static_cast<long long>(r.event.user_id.value_or(-1)));
        }
      }
      return std::fclose(out) == 0 ? 0 : 5;
    }));
  }
  for (const pid_t p : appenders) EXPECT_EQ(wait_child(p), 0) << "appender " << p;
  std::ofstream(done_flag).put('1');
  for (const pid_t p : claimers) EXPECT_EQ(wait_child(p), 0) << "claimer " << p;

  std::map<std::pair<std::int64_t, std::int64_t>, int> seen;
  std::size_t removed = 0;
  for (int c = 0; c < kClaimers; ++c) {
    std::ifstream in(tmp.path() / ("removed-" + std::to_string(c)));
    long long org = 0;
    long long user = 0;
    while (in >> org >> user) {
      ++seen[{org, user}];
      ++removed;
    }
  }
  auto spool = Spool::open(dir);
  for (const auto& r : value_of(spool->claim(1'000'000, std::chrono::seconds(60)))) {
    ++seen[{r.event.org_id, r.event.user_id.value_or(-1)}];
  }
  int duplicates = 0;
  for (const auto& [key, n] : seen) duplicates += n > 1 ? 1 : 0;
  EXPECT_EQ(duplicates, 0) << "an event was claimed and removed twice";
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kAppenders * kPerAppender)) << "events lost";
  for (int a = 1; a <= kAppenders; ++a) {
    EXPECT_TRUE(seen.contains({a, 0}));
    EXPECT_TRUE(seen.contains({a, kPerAppender - 1}));
  }
  EXPECT_GT(removed, 0U);
  EXPECT_EQ(value_of(spool->count()), static_cast<std::int64_t>(seen.size() - removed));
}

TEST(Spool, ForkChildReopensItsOwnConnection) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path());
  ASSERT_TRUE(append_one(*spool, make_event(1, 1)));
  const pid_t child = spawn([&] {
    // Same object, new process: the spool must reconnect instead of sharing the parent's handle.
    if (!append_one(*spool, make_event(1, 2))) return 1;
    if (value_of(spool->count()) != 2) return 2;
    const auto rows = value_of(spool->claim(10, std::chrono::seconds(60)));
    if (rows.size() != 2) return 3;
    if (!spool->release(ids_of(rows))) return 4;
    return 0;
  });
  ASSERT_EQ(wait_child(child), 0);
  // The parent's connection is unharmed by the child's.
  EXPECT_EQ(value_of(spool->count()), 2);
  EXPECT_TRUE(append_one(*spool, make_event(1, 3)));
  EXPECT_EQ(value_of(spool->claim(10, std::chrono::seconds(60))).size(), 3U);
}

TEST(Spool, FilesAndDirectoriesArePrivate) {
  TempDir tmp;
  const mode_t old_umask = ::umask(0);  // the modes must not depend on the umask
  const fs::path dir = tmp.path() / "a" / "b" / "spool";
  std::unique_ptr<Spool> spool;
  try {
    spool = Spool::open(dir);
  } catch (...) {
    ::umask(old_umask);
    throw;
  }
  ASSERT_TRUE(append_one(*spool, make_event(1, 1)));
  ::umask(old_umask);
  EXPECT_EQ(mode_of(tmp.path() / "a"), 0700U);
  EXPECT_EQ(mode_of(tmp.path() / "a" / "b"), 0700U);
  EXPECT_EQ(mode_of(dir), 0700U);
  EXPECT_EQ(mode_of(dir / "spool.db"), 0600U);
  EXPECT_EQ(mode_of(dir / "spool.db-wal"), 0600U);
  EXPECT_EQ(mode_of(dir / "spool.db-shm"), 0600U);
}

TEST(Spool, LooseFileModeIsTightened) {
  TempDir tmp;
  { auto spool = Spool::open(tmp.path()); }
  ASSERT_EQ(::chmod((tmp.path() / "spool.db").c_str(), 0644), 0);
  auto spool = Spool::open(tmp.path());
  EXPECT_EQ(mode_of(tmp.path() / "spool.db"), 0600U);
}

TEST(Spool, RefusesWorldWritableDirectory) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "open";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  try {
    (void)Spool::open(dir);
    FAIL() << "a world-writable spool directory was accepted";
  } catch (const SpoolError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("0777"), std::string::npos) << msg;
    EXPECT_NE(msg.find("chmod 700"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir / "spool.db"));
  ASSERT_EQ(::chmod(dir.c_str(), 0720), 0);  // group-writable is refused too
  EXPECT_THROW((void)Spool::open(dir), SpoolError);
  const auto tried = Spool::try_open(dir, SpoolOptions{});  // the same, as a Result
  EXPECT_FALSE(tried);
  EXPECT_NE(why_of(tried).find("chmod 700"), std::string::npos) << why_of(tried);
}

TEST(Spool, SymlinkedDirectoryWorksButSymlinkedFileIsRefused) {
  TempDir tmp;
  const fs::path real = tmp.path() / "real";
  ASSERT_EQ(::mkdir(real.c_str(), 0700), 0);
  fs::create_directory_symlink(real, tmp.path() / "link");
  {
    auto spool = Spool::open(tmp.path() / "link");  // e.g. a state dir moved to another disk
    EXPECT_TRUE(append_one(*spool, make_event(1, 1)));
    EXPECT_EQ(value_of(spool->count()), 1);
  }
  const fs::path other = tmp.path() / "other";
  ASSERT_EQ(::mkdir(other.c_str(), 0700), 0);
  std::ofstream(tmp.path() / "victim").put('x');
  fs::create_symlink(tmp.path() / "victim", other / "spool.db");
  EXPECT_THROW((void)Spool::open(other), SpoolError);
}

TEST(Spool, RefusesDirectoryOwnedByAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a directory to another user";
  TempDir tmp;
  const fs::path dir = tmp.path() / "theirs";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);
  try {
    (void)Spool::open(dir);
    FAIL() << "a directory owned by another user was accepted";
  } catch (const SpoolError& e) {
    EXPECT_NE(std::string(e.what()).find("owned by uid 65534"), std::string::npos) << e.what();
  }
}

TEST(Spool, RefusesNewerSchema) {
  TempDir tmp;
  { auto spool = Spool::open(tmp.path()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((tmp.path() / "spool.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  try {
    (void)Spool::open(tmp.path());
    FAIL() << "a newer schema was accepted";
  } catch (const SpoolError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
  }
}

TEST(Spool, FullSyncOptionOpens) {
  TempDir tmp;
  auto spool = Spool::open(tmp.path(), SpoolOptions{.full_sync = true});
  EXPECT_TRUE(append_one(*spool, make_event(1, 1)));
  EXPECT_EQ(value_of(spool->count()), 1);
}

TEST(Spool, DiskFullFailsCleanly) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tiny tmpfs needs root";
  TempDir tmp;
  if (::mount("tmpfs", tmp.path().c_str(), "tmpfs", 0, "size=256k") != 0) {
    GTEST_SKIP() << "mount -t tmpfs not permitted here: " << std::strerror(errno);
  }
  tmp.set_mounted();
  const fs::path dir = tmp.path() / "spool";  // the tmpfs root itself is mode 1777
  auto spool = Spool::open(dir);
  const std::string meta = R"({"pad":")" + std::string(1000, 'x') + R"("})";
  std::int64_t ok = 0;
  std::string err;
  bool failed = false;
  for (int i = 0; i < 10'000 && !failed; ++i) {
    const Event e = make_event(1, i, meta);
    err.clear();
    bool appended = false;
    EXPECT_NO_THROW({
      const auto r = spool->append(std::span<const Event>(&e, 1));
      appended = r.ok();
      err = why_of(r);
    });
    if (appended) {
      ++ok;
    } else {
      failed = true;
    }
  }
  ASSERT_TRUE(failed) << "256 KiB never filled up";
  std::printf("appended %lld events before: %s\n", static_cast<long long>(ok), err.c_str());
  EXPECT_GT(ok, 0);
  EXPECT_TRUE(err.find("full") != std::string::npos || err.find("disk") != std::string::npos)
      << err;
  EXPECT_EQ(value_of(spool->count()), ok);
  const Event more = make_event(2, 1, meta);
  EXPECT_FALSE(spool->append(std::span<const Event>(&more, 1)));
  EXPECT_EQ(value_of(spool->count()), ok);
}

TEST(Spool, DefaultDirectoryFollowsEnvironment) {
  const auto saved = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v == nullptr ? std::nullopt : std::optional<std::string>(v);
  };
  const auto spool_dir = saved("TRACKEVENT_SPOOL_DIR");
  const auto state = saved("XDG_STATE_HOME");
  const auto home = saved("HOME");
  ::setenv("TRACKEVENT_SPOOL_DIR", "/x/spool", 1);
  ::setenv("XDG_STATE_HOME", "/x/state", 1);
  ::setenv("HOME", "/x/home", 1);
  EXPECT_EQ(value_of(trackevent::detail::default_spool_dir()), fs::path("/x/spool"));
  ::unsetenv("TRACKEVENT_SPOOL_DIR");
  EXPECT_EQ(value_of(trackevent::detail::default_spool_dir()), fs::path("/x/state/trackevent"));
  ::setenv("XDG_STATE_HOME", "relative", 1);  // ignored, per the XDG spec
  EXPECT_EQ(value_of(trackevent::detail::default_spool_dir()),
            fs::path("/x/home/.local/state/trackevent"));
  ::unsetenv("XDG_STATE_HOME");
  ::unsetenv("HOME");
  EXPECT_FALSE(
      value_of(trackevent::detail::default_spool_dir()).empty());  // from the password database
  const auto restore = [](const char* name, const std::optional<std::string>& v) {
    if (v) {
      ::setenv(name, v->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  };
  restore("TRACKEVENT_SPOOL_DIR", spool_dir);
  restore("XDG_STATE_HOME", state);
  restore("HOME", home);
}

TEST(DeadLetters, WritesOneJsonObjectPerLine) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "dl";
  DeadLetters dl(dir);
  EXPECT_EQ(dl.path(), dir / "dead-letter.jsonl");
  Event e = make_event(3, 4, R"({"rows":12,"ok":true})");
  Event sys = make_event(5, 6, "not json {");
  sys.user_id.reset();
  ASSERT_TRUE(dl.append(e, "value too long for type", "22001"));
  ASSERT_TRUE(dl.append(sys, "bad metadata", ""));

  EXPECT_EQ(mode_of(dir), 0700U);
  EXPECT_EQ(mode_of(dl.path()), 0600U);
  std::ifstream in(dl.path());
  std::string line;
  std::vector<nlohmann::json> lines;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2U);
  const auto& j = lines[0];
  EXPECT_EQ(j.at("event_id"), e.event_id.to_string());
  EXPECT_EQ(j.at("org_id"), 3);
  EXPECT_EQ(j.at("user_id"), 4);
  EXPECT_EQ(j.at("event_name"), "test.spooled");
  EXPECT_EQ(j.at("metadata"), nlohmann::json::parse(e.metadata)) << "metadata stays a JSON value";
  EXPECT_EQ(j.at("occurred_at"), trackevent::format_rfc3339(e.occurred_at_us));
  EXPECT_EQ(j.at("error"), "value too long for type");
  EXPECT_EQ(j.at("sqlstate"), "22001");
  EXPECT_TRUE(j.at("at").is_string());
  EXPECT_TRUE(lines[1].at("user_id").is_null());
  EXPECT_EQ(lines[1].at("metadata"), "not json {") << "unparsable metadata is kept as a string";
  EXPECT_TRUE(lines[1].at("sqlstate").is_null());
}

TEST(DeadLetters, ConcurrentWritersNeverInterleave) {
  TempDir tmp;
  DeadLetters dl(tmp.path());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  // Big lines make interleaving likely if writes were not whole.
  const std::string meta = R"({"pad":")" + std::string(3000, 'y') + R"("})";
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_TRUE(dl.append(make_event(t + 1, i, meta), "rejected", "23514"));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::ifstream in(dl.path());
  std::string line;
  std::set<std::pair<std::int64_t, std::int64_t>> seen;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "torn line " << n;
    seen.emplace(j.at("org_id").get<std::int64_t>(), j.at("user_id").get<std::int64_t>());
  }
  EXPECT_EQ(n, static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(seen.size(), n);
}

TEST(DeadLetters, UnwritableDirectoryReturnsFalse) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "open";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  DeadLetters dl(dir);
  EXPECT_FALSE(dl.append(make_event(1, 1), "x", "22000"));
  const auto again = dl.append(make_event(1, 1), "x", "22000");
  EXPECT_FALSE(again);
  const std::string why = why_of(again);
  EXPECT_NE(why.find("writable by group or others"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(dl.path()));
}

TEST(DeadLetters, AFileThatCannotBeWrittenFailsWithAReasonThenWorksOnceItCan) {
  TempDir tmp;
  DeadLetters dl(tmp.path());
  ASSERT_EQ(::mkdir(dl.path().c_str(), 0700), 0);  // a directory where the file should be
  const Event e = make_event(8, 9);
  const auto refused = dl.append(e, "refused", "23514");
  EXPECT_FALSE(refused);
  const std::string why = why_of(refused);
  EXPECT_NE(why.find(dl.path().string()), std::string::npos) << why;
  EXPECT_NE(why.find(std::strerror(EISDIR)), std::string::npos) << why;

  ASSERT_EQ(::rmdir(dl.path().c_str()), 0);
  const auto written = dl.append(e, "refused", "23514");
  ASSERT_TRUE(written) << why_of(written);
  std::ifstream in(dl.path());
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j.at("event_id"), e.event_id.to_string());
  EXPECT_EQ(j.at("sqlstate"), "23514");
  EXPECT_FALSE(std::getline(in, line)) << "one line";
}

TEST(DeadLetters, SyncsEveryLineAndTheDirectoryOfANewFile) {
  TempDir tmp;
  DeadLetters dl(tmp.path());
  const int file_syncs = g_dead_letter_syncs.load();
  const int dir_syncs = g_directory_syncs.load();
  ASSERT_TRUE(dl.append(make_event(1, 1), "refused", "23514"));
  EXPECT_EQ(g_dead_letter_syncs.load(), file_syncs + 1) << "the line is synced";
  EXPECT_EQ(g_directory_syncs.load(), dir_syncs + 1) << "so is the new file's directory entry";
  ASSERT_TRUE(dl.append(make_event(1, 2), "refused", "23514"));
  EXPECT_EQ(g_dead_letter_syncs.load(), file_syncs + 2);
  EXPECT_EQ(g_directory_syncs.load(), dir_syncs + 1) << "the file was there already";
}

TEST(DeadLetters, AFailedSyncFailsTheAppend) {
  TempDir tmp;
  DeadLetters dl(tmp.path());
  ASSERT_TRUE(dl.append(make_event(1, 1), "refused", "23514"));
  g_fail_dead_letter_sync = true;
  const auto appended = dl.append(make_event(1, 2), "refused", "23514");
  g_fail_dead_letter_sync = false;
  EXPECT_FALSE(appended) << "written but not durable is not written";
  const std::string why = why_of(appended);
  EXPECT_NE(why.find(dl.path().string()), std::string::npos) << why;
  EXPECT_NE(why.find(std::strerror(EIO)), std::string::npos) << why;
}
