// Fault injection against a PostgreSQL server each test owns: whatever happens to the database
// (or to the client process), every accepted event is stored exactly once, and no wait is
// unbounded. Library faults feed a Tracker from a producer thread while a fault thread breaks and
// heals the server; client faults run the built CLI on a pipe fed at a pace.
#include "trackevent/tracker.hpp"

#include "cli/cli_support.hpp"
#include "config/database_url.hpp"
#include "log/log.hpp"
#include "spool/drain.hpp"
#include "spool/spool.hpp"
#include "support/net.hpp"
#include "support/pg_schema.hpp"
#include "support/pg_server.hpp"
#include "support/subprocess.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using trackevent::test::BlackHole;
using trackevent::test::create_analytics_events;
using trackevent::test::PgServer;
using trackevent::test::SchemaVia;
using trackevent::test::TempDir;

constexpr int kEvents = 3000;
constexpr auto kFeedTime = 2400ms;
constexpr auto kShutdownTimeout = 3s;
// "Never ran past its deadline": the destructor may overrun shutdown_timeout by this much.
constexpr auto kDestructorMargin = 3s;
// A generous bound: track() is a queue push; tests never assert fine timings.
constexpr double kMaxTrackMs = 200;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

trackevent::PgTimeouts short_timeouts() {
  trackevent::PgTimeouts t;
  t.connect_timeout_s = 2;
  t.statement_timeout_ms = 1500;
  t.tcp_user_timeout_ms = 2000;
  t.keepalives_idle_s = 1;
  return t;
}

/// What the Tracker reported through on_error, shared with its dispatcher thread.
struct ErrorLog {
  std::mutex mu;
  std::set<std::string> sqlstates;
  std::size_t reports = 0;
  void add(const trackevent::ErrorInfo& e) {
    std::lock_guard lock(mu);
    ++reports;
    if (!e.sqlstate.empty()) sqlstates.insert(e.sqlstate);
  }
  bool saw(const std::string& sqlstate) {
    std::lock_guard lock(mu);
    return sqlstates.count(sqlstate) > 0;
  }
  std::string summary() {
    std::lock_guard lock(mu);
    std::string s = std::to_string(reports) + " reports, sqlstates:";
    for (const auto& st : sqlstates) s += " " + st;
    return s;
  }
};

/// A fault: `inject` runs at ~1/3 of the feed, `heal` at ~2/3, or `hold` after the injection if
/// that is later (a fault that outlasts the deadlines, and the feed).
struct Fault {
  std::function<void()> inject;
  std::function<void()> heal;
  std::chrono::milliseconds hold{0};
  /// The Tracker's PostgreSQL connections: above 1, batches are pipelined over several at once.
  std::size_t connections = 1;
};

/// Every log line of the process while a Tracker runs. Never destroyed: a dispatcher thread left
/// behind on a hung write may still log after its test ended.
class LogCapture final : public trackevent::log::LineSink {
 public:
  static LogCapture& instance() {
    static auto* capture = new LogCapture;
    return *capture;
  }
  void line(std::string_view text) override {
    std::lock_guard lock(mu_);
    lines_.emplace_back(text);
  }
  void start() {
    {
      std::lock_guard lock(mu_);
      lines_.clear();
    }
    trackevent::log::set_line_sink(this);
  }
  std::vector<nlohmann::json> stop() {
    trackevent::log::set_line_sink(nullptr);
    std::lock_guard lock(mu_);
    std::vector<nlohmann::json> out;
    for (const auto& l : lines_) {
      auto j = nlohmann::json::parse(l, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    lines_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

struct FeedResult {
  trackevent::Stats before_shutdown;  // the Tracker's counters when the producer finished
  double max_track_ms = 0;
  double destructor_ms = 0;
  std::shared_ptr<ErrorLog> errors = std::make_shared<ErrorLog>();
  std::vector<nlohmann::json> logs;  // every log line while the Tracker lived

  /// Log lines carrying `sqlstate` (retries, holds, spooling decisions).
  [[nodiscard]] std::size_t lines_with_sqlstate(const std::string& sqlstate) const {
    std::size_t n = 0;
    for (const auto& j : logs) n += j.value("sqlstate", "") == sqlstate ? 1 : 0;
    return n;
  }
  [[nodiscard]] std::size_t lines_with_msg(const std::string& msg) const {
    std::size_t n = 0;
    for (const auto& j : logs) n += j.value("msg", "") == msg ? 1 : 0;
    return n;
  }
};

/// Runs `step`, turning an exception into a test failure (it runs on a helper thread).
void guarded(const char* what, const std::function<void()>& step) {
  if (!step) return;
  try {
    step();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << " threw: " << e.what();
  }
}

/// Feeds kEvents numbered events through a Tracker with short deadlines while `fault` breaks and
/// heals the server, then destroys the Tracker (timed). The heal may still be running then: the
/// destructor must keep its deadline whatever the server is doing.
FeedResult feed_through_fault(const std::string& url, const fs::path& spool_dir,
                              const Fault& fault) {
  FeedResult result;
  trackevent::TrackerOptions options;
  options.database_url = url;
  options.pg_timeouts = short_timeouts();
  options.flush_interval = 50ms;
  options.batch_size = 200;
  options.connections = fault.connections;
  options.shutdown_timeout = kShutdownTimeout;
  options.spool_dir = spool_dir;
  options.on_error = [errors = result.errors](const trackevent::ErrorInfo& e) { errors->add(e); };
  LogCapture::instance().start();
  auto tracker = std::make_unique<trackevent::Tracker>(std::move(options));

  const auto start = Clock::now();
  std::atomic<long long> max_track_ns{0};
  std::thread producer([&] {
    for (int i = 0; i < kEvents; ++i) {
      std::this_thread::sleep_until(start + kFeedTime * i / kEvents);
      const nlohmann::json meta{{"n", i}};
      const auto t0 = Clock::now();
      tracker->track(1 + i % 5, 1000 + i, "fault.injected", meta);
      const long long ns = std::chrono::nanoseconds(Clock::now() - t0).count();
      if (ns > max_track_ns.load()) max_track_ns.store(ns);
    }
  });
  std::thread injector([&] {
    std::this_thread::sleep_until(start + kFeedTime / 3);
    const auto injected = Clock::now();
    guarded("fault injection", fault.inject);
    std::this_thread::sleep_until(std::max(start + kFeedTime * 2 / 3, injected + fault.hold));
    guarded("fault healing", fault.heal);
  });

  producer.join();
  result.before_shutdown = tracker->stats();
  const auto d0 = Clock::now();
  tracker.reset();
  result.destructor_ms = ms_between(d0, Clock::now());
  injector.join();
  result.logs = LogCapture::instance().stop();
  result.max_track_ms = static_cast<double>(max_track_ns.load()) / 1e6;
  return result;
}

struct DrainTotals {
  std::uint64_t stored = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t dead_lettered = 0;
  int rounds = 0;
  bool empty = false;
  std::string last_error;
};

/// Delivers the spool until drain_spool reports it empty (bounded: ~40 s in all).
DrainTotals drain_until_empty(const std::string& url, const fs::path& spool_dir) {
  DrainTotals totals;
  const auto deadline = Clock::now() + 40s;
  for (;;) {
    trackevent::DrainOptions options;
    options.timeout = 20s;
    options.spool_dir = spool_dir;
    options.pg_timeouts = short_timeouts();
    const auto r = trackevent::drain_spool(trackevent::parse_database_url(url), options);
    ++totals.rounds;
    totals.stored += r.stored;
    totals.duplicates += r.duplicates;
    totals.dead_lettered += r.dead_lettered;
    if (r.outcome == trackevent::DrainResult::Outcome::empty) {
      totals.empty = true;
      return totals;
    }
    totals.last_error = r.error + (r.sqlstate.empty() ? "" : " [" + r.sqlstate + "]") +
                        " remaining=" + std::to_string(r.remaining);
    if (Clock::now() >= deadline) return totals;
    std::this_thread::sleep_for(500ms);
  }
}

long long spool_rows(const fs::path& dir) {
  if (!fs::exists(dir / "spool.db")) return 0;
  try {
    const auto n = trackevent::detail::Spool::open(dir)->count();
    if (!n) ADD_FAILURE() << "cannot count the spool: " << n.error().message;
    return n ? *n : -1;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot open the spool: " << e.what();
    return -1;
  }
}

/// The promise: exactly `n` rows, one per event id and one per producer number 0..n-1 (the last
/// catches an event re-stamped with a new id on retry). Names what is missing when it fails.
void expect_exactly_once(const PgServer& server, long long n) {
  const long long rows = server.scalar("SELECT count(*) FROM analytics_events");
  const long long ids = server.scalar("SELECT count(DISTINCT event_id) FROM analytics_events");
  const long long numbers =
      server.scalar("SELECT count(DISTINCT metadata->>'n') FROM analytics_events");
  EXPECT_EQ(rows, n) << "rows stored";
  EXPECT_EQ(ids, n) << "distinct event ids";
  EXPECT_EQ(numbers, n) << "distinct producer numbers";
  if (n > 0) {
    EXPECT_EQ(server.scalar("SELECT min((metadata->>'n')::bigint) FROM analytics_events"), 0);
    EXPECT_EQ(server.scalar("SELECT max((metadata->>'n')::bigint) FROM analytics_events"), n - 1);
  }
  if (rows != n || numbers != n) {
    pqxx::connection c{server.admin_url()};
    pqxx::nontransaction tx{c};
    const auto missing = tx.exec1(
        "SELECT coalesce(string_agg(g::text, ',' ORDER BY g), '') FROM "
        "(SELECT g FROM generate_series(0, " +
        std::to_string(n - 1) +
        ") g WHERE NOT EXISTS (SELECT 1 FROM analytics_events WHERE (metadata->>'n')::bigint = g) "
        "LIMIT 50) m");
    const auto twice = tx.exec1(
        "SELECT coalesce(string_agg(n, ',' ORDER BY n), '') FROM (SELECT metadata->>'n' AS n "
        "FROM analytics_events GROUP BY 1 HAVING count(*) > 1 LIMIT 50) d");
    ADD_FAILURE() << "missing n (first 50): " << missing[0].c_str()
                  << "\nstored more than once (first 50): " << twice[0].c_str();
  }
}

class ServerFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      server_ = std::make_unique<PgServer>();
      create_analytics_events(server_->url(), SchemaVia::migrate);
    } catch (const std::exception& e) {
      server_.reset();
      if (std::getenv("TRACKEVENT_REQUIRE_PG") == nullptr) {
        GTEST_SKIP() << "cannot start a private PostgreSQL (scripts/pg-test-server): " << e.what();
      }
      FAIL() << "cannot start a private PostgreSQL (scripts/pg-test-server): " << e.what();
    }
  }

  /// Feeds through `fault`, checks the deadlines, drains the spool, checks exactly-once.
  FeedResult run_fault(const Fault& fault, const std::string& url) {
    FeedResult feed = feed_through_fault(url, spool_.path(), fault);
    const long long spooled = spool_rows(spool_.path());
    const DrainTotals drained = drain_until_empty(url, spool_.path());

    // TRACKEVENT_FAULT_LOGS=1 shows what the library logged, to see how it met the fault.
    if (std::getenv("TRACKEVENT_FAULT_LOGS") != nullptr) {
      for (const auto& j : feed.logs) std::cout << "  log " << j.dump() << '\n';
    }
    const auto& st = feed.before_shutdown;
    std::cout << "[fault] " << ::testing::UnitTest::GetInstance()->current_test_info()->name()
              << " fed=" << kEvents << " accepted=" << st.accepted << " stored_live=" << st.stored
              << " retries=" << st.retries << " spooled_live=" << st.spooled
              << " spool_rows_after_shutdown=" << spooled << " drained=" << drained.stored
              << " drain_duplicates=" << drained.duplicates << " drain_rounds=" << drained.rounds
              << " max_track_ms=" << feed.max_track_ms << " destructor_ms=" << feed.destructor_ms
              << " retry_lines=" << feed.lines_with_msg("batch write failed; retrying")
              << " on_error={" << feed.errors->summary() << "}" << std::endl;

    EXPECT_EQ(st.accepted, static_cast<std::uint64_t>(kEvents));
    EXPECT_EQ(st.dropped, 0U);
    EXPECT_EQ(st.rejected, 0U);
    EXPECT_LT(feed.max_track_ms, kMaxTrackMs) << "a track() call waited";
    const double destructor_limit_ms =
        std::chrono::duration<double, std::milli>(kShutdownTimeout + kDestructorMargin).count();
    EXPECT_LT(feed.destructor_ms, destructor_limit_ms) << "~Tracker ran past its deadline";
    EXPECT_TRUE(drained.empty) << "the spool did not drain: " << drained.last_error;
    EXPECT_EQ(drained.dead_lettered, 0U);
    EXPECT_EQ(spool_rows(spool_.path()), 0);
    expect_exactly_once(*server_, kEvents);
    return feed;
  }

  std::unique_ptr<PgServer> server_;
  TempDir spool_;
};

TEST_F(ServerFaults, StopThenStart) {
  run_fault({[&] { server_->stop(); }, [&] { server_->start(); }}, server_->url());
}

TEST_F(ServerFaults, KillNineThenStart) {
  run_fault({[&] { server_->kill9(); }, [&] { server_->start(); }}, server_->url());
}

class ServerFaultsOverConnections : public ServerFaults,
                                    public ::testing::WithParamInterface<std::size_t> {};

TEST_P(ServerFaultsOverConnections, TerminateBackendsInALoop) {
  // The sink connects with fallback_application_name=trackevent (pg_sink.cpp); our own
  // connections say fault_admin, so the loop only ever hits the Tracker's backends.
  std::atomic<bool> stop{false};
  std::atomic<long long> terminated{0};
  std::thread killer;
  Fault fault{[&] {
                killer = std::thread([&] {
                  guarded("terminate loop", [&] {
                    pqxx::connection c{server_->admin_url()};
                    pqxx::nontransaction tx{c};
                    while (!stop.load()) {
                      terminated += tx.exec1(
                                          "SELECT count(*) FILTER (WHERE "
                                          "pg_terminate_backend(pid)) FROM pg_stat_activity "
                                          "WHERE application_name = 'trackevent'")[0]
                                        .as<long long>();
                      std::this_thread::sleep_for(2ms);
                    }
                  });
                });
              },
              [&] {
                stop = true;
                killer.join();
              }};
  fault.connections = GetParam();
  run_fault(fault, server_->url());
  std::cout << "[fault] backends terminated: " << terminated.load() << std::endl;
  EXPECT_GT(terminated.load(), 0) << "the fault never hit a trackevent backend";
}

TEST_P(ServerFaultsOverConnections, Restart) {
  Fault fault{[&] { server_->restart(); }, nullptr};
  fault.connections = GetParam();
  run_fault(fault, server_->url());
}

TEST_P(ServerFaultsOverConnections, FrozenServerThenThaw) {
  // Frozen for 5 s: longer than the statement budget, and still frozen when the feed ends, so
  // both the write deadlines and the destructor's deadline must fire.
  Fault fault{[&] { server_->freeze(); }, [&] { server_->thaw(); }, 5000ms};
  fault.connections = GetParam();
  const FeedResult feed = run_fault(fault, server_->url());
  EXPECT_GT(feed.lines_with_msg("batch write failed; retrying") +
                feed.lines_with_msg("failed to record analytics events; spooling them"),
            0U)
      << "the freeze never made a write fail: the test did not test the deadlines";
}

// One connection, and three: writes pipelined over several connections meet the same faults.
INSTANTIATE_TEST_SUITE_P(Connections, ServerFaultsOverConnections, ::testing::Values(1U, 3U));

TEST_F(ServerFaults, RevokeInsertThenGrant) {
  // A non-superuser, so privileges apply. PUBLIC keeps CONNECT, USAGE on public and TEMP, which
  // the COPY fast path and the temp-table fallback need.
  server_->exec("CREATE ROLE te LOGIN");
  server_->exec("GRANT INSERT, SELECT ON analytics_events TO te");
  const FeedResult feed =
      run_fault({[&] { server_->exec("REVOKE INSERT ON analytics_events FROM te"); },
                 [&] { server_->exec("GRANT INSERT ON analytics_events TO te"); }},
                server_->url("te"));
  EXPECT_TRUE(feed.errors->saw("42501"))
      << "expected a 42501 hold while INSERT was revoked; got " << feed.errors->summary();
}

TEST_F(ServerFaults, TableLockedLongerThanStatementTimeout) {
  // The lock is held 4 s (statement timeout 1.5 s) from 1/3 of the feed, so it is still held
  // when the feed ends and the destructor starts: its deadline must fire.
  std::thread holder;
  std::promise<void> locked;
  const Fault fault{[&] {
                      holder = std::thread([&] {
                        guarded("lock holder", [&] {
                          pqxx::connection c{server_->admin_url()};
                          pqxx::work tx{c};
                          tx.exec("LOCK TABLE analytics_events IN ACCESS EXCLUSIVE MODE");
                          locked.set_value();
                          std::this_thread::sleep_for(4s);
                          tx.commit();
                        });
                      });
                      locked.get_future().wait_for(10s);
                    },
                    [&] { holder.join(); }};
  const FeedResult feed = run_fault(fault, server_->url());
  EXPECT_GT(feed.lines_with_sqlstate("57014"), 0U)
      << "expected statement timeouts (57014) while the table was locked";
}

// ---- client-side faults, through the CLI -------------------------------------------------------

/// The CLI run with pipes on all three streams; stdin is fed by the test at its own pace.
class CliChild {
 public:
  CliChild(const std::vector<std::string>& args,
           const std::map<std::string, std::optional<std::string>>& env) {
    int in[2];
    int out[2];
    int err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe failed");
    }
    pid_ = trackevent::test::detail::spawn(TRACKEVENT_BIN, args, env, in[0], out[1], err[1]);
    if (pid_ < 0) throw std::runtime_error("fork failed");
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_fd_ = in[1];
    out_reader_ = std::thread([this, fd = out[0]] { collect(fd, out_); });
    err_reader_ = std::thread([this, fd = err[0]] { collect(fd, err_); });
  }
  ~CliChild() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    close_stdin();
    if (out_reader_.joinable()) out_reader_.join();
    if (err_reader_.joinable()) err_reader_.join();
  }
  CliChild(const CliChild&) = delete;
  CliChild& operator=(const CliChild&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }

  /// Writes one line (blocking). False once the child no longer reads (EPIPE).
  bool write_line(const std::string& line) {
    std::lock_guard lock(in_mu_);
    if (in_fd_ < 0) return false;
    const std::string data = line + "\n";
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(in_fd_, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  void close_stdin() {
    std::lock_guard lock(in_mu_);
    if (in_fd_ >= 0) ::close(in_fd_);
    in_fd_ = -1;
  }

  /// Waits for the exit; nullopt (and the child killed) when `timeout` passes first.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    for (;;) {
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) break;
      if (Clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        reaped_ = true;
        finish_readers();
        return std::nullopt;
      }
      std::this_thread::sleep_for(5ms);
    }
    reaped_ = true;
    finish_readers();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  /// Complete after wait(): the pipes reach EOF once the child is gone.
  [[nodiscard]] std::string out() {
    std::lock_guard lock(mu_);
    return out_;
  }
  [[nodiscard]] std::string err() {
    std::lock_guard lock(mu_);
    return err_;
  }

 private:
  void collect(int fd, std::string& into) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::lock_guard lock(mu_);
      into.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
  }
  void finish_readers() {
    // A detached helper of the child could in theory keep a pipe open; the child is reaped, so
    // its own ends are closed and the readers see EOF.
    if (out_reader_.joinable()) out_reader_.join();
    if (err_reader_.joinable()) err_reader_.join();
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  std::mutex in_mu_;
  int in_fd_ = -1;
  std::mutex mu_;
  std::string out_;
  std::string err_;
  std::thread out_reader_;
  std::thread err_reader_;
};

std::string numbered_line(int n) {
  return nlohmann::json{{"org_id", 1 + n % 5},
                        {"user_id", 1000 + n},
                        {"event_name", "fault.cli"},
                        {"metadata", {{"n", n}}}}
      .dump();
}

/// Writes numbered lines at `per_second` from a thread until told to stop or the child stops
/// reading. `written` counts the lines fully written to the pipe.
class Feeder {
 public:
  Feeder(CliChild& child, int lines, int per_second) {
    thread_ = std::thread([this, &child, lines, per_second] {
      const auto start = Clock::now();
      for (int i = 0; i < lines && !stop_.load(); ++i) {
        std::this_thread::sleep_until(start +
                                      std::chrono::microseconds(1'000'000LL * i / per_second));
        if (!child.write_line(numbered_line(i))) break;
        written_ = i + 1;
      }
    });
  }
  ~Feeder() { stop(); }
  Feeder(const Feeder&) = delete;
  Feeder& operator=(const Feeder&) = delete;
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] int written() const { return written_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> written_{0};
  std::thread thread_;
};

std::map<std::string, std::optional<std::string>> cli_env(const TempDir& home,
                                                          const std::string& spool_dir) {
  return {{"XDG_DATA_HOME", home.file("data")},      {"XDG_STATE_HOME", home.file("state")},
          {"TRACKEVENT_SPOOL_DIR", spool_dir},       {"HOME", home.path().string()},
          {"TRACKEVENT_DATABASE_URL", std::nullopt}, {"DATABASE_URL", std::nullopt},
          {"TRACKEVENT_CATALOG", std::nullopt},      {"PGCONNECT_TIMEOUT", std::nullopt}};
}

/// The (last) "summary" line on stderr. Not necessarily the last line: the log's rate limiter
/// reports suppressed lines at process exit, after it.
nlohmann::json summary_from(const std::string& err) {
  std::istringstream in{err};
  nlohmann::json summary = nlohmann::json::object();
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("msg", "") == "summary") {
      summary = std::move(j);
      found = true;
    }
  }
  EXPECT_TRUE(found) << "no summary line on stderr:\n" << err.substr(0, 2000);
  return summary;
}

trackevent::test::RunResult run_flush(const TempDir& home, const std::string& spool_dir,
                                      const std::string& url) {
  trackevent::test::RunOptions options;
  options.args = {"--db", url, "flush", "--timeout", "20"};
  options.env = cli_env(home, spool_dir);
  options.timeout = 40s;
  return trackevent::test::run_program(TRACKEVENT_BIN, options);
}

class ClientFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    // Writing to a CLI that already exited must give EPIPE, not kill the test program.
    ::signal(SIGPIPE, SIG_IGN);
  }
  void start_server() {
    try {
      server_ = std::make_unique<PgServer>();
      create_analytics_events(server_->url(), SchemaVia::migrate);
    } catch (const std::exception& e) {
      server_.reset();
      if (std::getenv("TRACKEVENT_REQUIRE_PG") == nullptr) {
        GTEST_SKIP() << "cannot start a private PostgreSQL: " << e.what();
      }
      FAIL() << "cannot start a private PostgreSQL: " << e.what();
    }
  }

  /// SIGTERM mid-stream; with `hang_server`, the server is frozen just before the signal, so the
  /// final flush cannot deliver and must spool within its deadline.
  void sigterm_mid_stream(bool hang_server) {
    start_server();
    if (!server_) return;
    const std::string spool = home_.file("spool");
    constexpr int kFlushTimeoutS = 4;
    CliChild child{{"--db", server_->url(), "ingest", "--flush-interval", "50", "--batch-size",
                    "200", "--flush-timeout", std::to_string(kFlushTimeoutS)},
                   cli_env(home_, spool)};
    Feeder feeder{child, 6000, 2000};
    std::this_thread::sleep_for(1500ms);
    if (hang_server) server_->freeze();
    const auto signalled = Clock::now();
    ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
    const auto code = child.wait(std::chrono::seconds{kFlushTimeoutS} + 5s);
    const double exit_ms = ms_between(signalled, Clock::now());
    feeder.stop();
    if (hang_server) server_->thaw();
    ASSERT_TRUE(code.has_value()) << "ingest did not exit within the flush timeout + 5 s\n"
                                  << child.err();
    EXPECT_EQ(*code, 128 + SIGTERM) << child.err();  // flushed and spooled, then died of it
    EXPECT_LT(exit_ms, 1000.0 * (kFlushTimeoutS + 3)) << "exit took past flush timeout + margin";

    const nlohmann::json summary = summary_from(child.err());
    const long long accepted = summary.value("accepted", -1LL);
    EXPECT_GT(accepted, 0);
    EXPECT_LE(accepted, feeder.written()) << "accepted more lines than were written";
    EXPECT_EQ(summary.value("dropped", -1LL), 0);
    EXPECT_TRUE(summary.value("interrupted", false)) << summary.dump();

    const auto flushed = run_flush(home_, spool, server_->url());
    EXPECT_EQ(flushed.exit_code, 0) << flushed.err;
    std::cout << "[fault] " << ::testing::UnitTest::GetInstance()->current_test_info()->name()
              << " written=" << feeder.written() << " summary=" << summary.dump()
              << " exit_ms=" << exit_ms << " flush=" << flushed.err.substr(0, 400) << std::endl;
    // The CLI reads lines in order, so what it accepted is exactly lines 0..accepted-1.
    expect_exactly_once(*server_, accepted);
  }

  std::unique_ptr<PgServer> server_;
  TempDir home_;
};

TEST_F(ClientFaults, SigtermMidStream) { sigterm_mid_stream(false); }

TEST_F(ClientFaults, SigtermMidStreamWhileServerHung) { sigterm_mid_stream(true); }

TEST_F(ClientFaults, KillNineDurableTee) {
  // ingest --durable --tee echoes a line only once its event is committed to the spool, so a
  // kill -9 at any moment loses no echoed line.
  start_server();
  if (!server_) return;
  const std::string spool = home_.file("spool");
  CliChild child{{"--db", server_->url(), "ingest", "--durable", "--tee", "--flush-interval", "50",
                  "--batch-size", "200"},
                 cli_env(home_, spool)};
  Feeder feeder{child, 6000, 2000};
  std::this_thread::sleep_for(1500ms);
  ASSERT_EQ(::kill(child.pid(), SIGKILL), 0);
  const auto code = child.wait(10s);
  feeder.stop();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 128 + SIGKILL);

  // Only complete lines: a chunk may end mid-line, and that line was not accepted yet.
  std::set<long long> echoed;
  const std::string all = child.out();
  const std::size_t complete = all.rfind('\n') == std::string::npos ? 0 : all.rfind('\n') + 1;
  std::istringstream lines{all.substr(0, complete)};
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "tee output is not the input: " << line;
    echoed.insert(j["metadata"]["n"].get<long long>());
  }
  ASSERT_FALSE(echoed.empty()) << "nothing was echoed before the kill";

  const auto flushed = run_flush(home_, spool, server_->url());
  EXPECT_EQ(flushed.exit_code, 0) << flushed.err;
  pqxx::connection c{server_->admin_url()};
  pqxx::nontransaction tx{c};
  std::set<long long> stored;
  for (const auto& row : tx.exec("SELECT (metadata->>'n')::bigint FROM analytics_events")) {
    stored.insert(row[0].as<long long>());
  }
  std::vector<long long> lost;
  for (const long long n : echoed) {
    if (stored.count(n) == 0) lost.push_back(n);
  }
  std::cout << "[fault] KillNineDurableTee echoed=" << echoed.size() << " stored=" << stored.size()
            << " lost=" << lost.size() << std::endl;
  EXPECT_TRUE(lost.empty()) << lost.size() << " echoed lines not stored, first n="
                            << (lost.empty() ? -1 : lost.front());
  EXPECT_EQ(
      server_->scalar("SELECT count(*) - count(DISTINCT metadata->>'n') FROM analytics_events"), 0);
}

/// A tmpfs mounted for one test and unmounted (lazily, so nothing can keep it busy) after it.
class TinyFs {
 public:
  TinyFs(const std::string& dir, const char* options) : dir_(dir) {
    fs::create_directories(dir_);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options) != 0) {
      error_ = std::strerror(errno);
    } else {
      mounted_ = true;
    }
  }
  ~TinyFs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TinyFs(const TinyFs&) = delete;
  TinyFs& operator=(const TinyFs&) = delete;
  [[nodiscard]] bool mounted() const { return mounted_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

/// Rows in a spool file, read from a copy (the original sits on a full file system, where even a
/// reader's -shm file may not fit).
long long spool_file_rows(const std::string& spool_dir, const TempDir& scratch) {
  const fs::path copy = scratch.path() / "spool-copy";
  fs::create_directories(copy);
  for (const char* name : {"spool.db", "spool.db-wal"}) {
    const fs::path from = fs::path(spool_dir) / name;
    if (fs::exists(from)) fs::copy_file(from, copy / name, fs::copy_options::overwrite_existing);
  }
  if (!fs::exists(copy / "spool.db")) return 0;
  sqlite3* db = nullptr;
  long long rows = -1;
  if (sqlite3_open_v2((copy / "spool.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM spool", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      rows = sqlite3_column_int64(stmt, 0);
    } else {
      ADD_FAILURE() << "sqlite: " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return rows;
}

TEST_F(ClientFaults, SpoolOnAFullFileSystem) {
  const std::string spool = home_.file("tiny-spool");
  // mode=0700: the spool refuses a directory others can write to (tmpfs defaults to 1777).
  const TinyFs tiny{spool, "size=256k,mode=0700"};
  if (!tiny.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << tiny.error();

  constexpr int kLines = 20000;  // ~2.5 MB of events: ten times what the spool can hold
  std::string input;
  for (int i = 0; i < kLines; ++i) input += numbered_line(i) + "\n";
  trackevent::test::RunOptions options;
  // Small batches, so the spool fills part way (a failed append writes nothing of its batch).
  options.args = {
      "--db", "postgresql://127.0.0.1:1/x", "ingest", "--batch-size", "100", "--flush-timeout",
      "10"};
  options.env = cli_env(home_, spool);
  options.input = std::move(input);
  options.timeout = 60s;
  const auto r = trackevent::test::run_program(TRACKEVENT_BIN, options);

  EXPECT_EQ(r.exit_code, 74) << r.err.substr(0, 2000);
  const nlohmann::json summary = summary_from(r.err);
  const long long accepted = summary.value("accepted", -1LL);
  const long long spooled = summary.value("spooled", -1LL);
  const long long dropped = summary.value("dropped", -1LL);
  EXPECT_EQ(accepted, kLines);
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(dropped, accepted - spooled) << summary.dump();
  // Loud: at least one error (or worse) line says events were lost.
  bool loud = false;
  std::istringstream in{r.err};
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    const std::string level = j.value("level", "");
    const std::string msg = j.value("msg", "");
    loud = loud ||
           ((level == "error" || level == "critical") && msg.find("lost") != std::string::npos);
  }
  EXPECT_TRUE(loud) << "no error line about lost events:\n" << r.err.substr(0, 2000);
  const long long rows = spool_file_rows(spool, home_);
  std::cout << "[fault] SpoolOnAFullFileSystem summary=" << summary.dump() << " spool_rows=" << rows
            << std::endl;
  EXPECT_EQ(rows, spooled) << "the summary's spooled does not match the spool file";
}

TEST_F(ClientFaults, HungDatabaseAndFullSpool) {
  // The database hangs (connect never answers), so at the end of input the flush times out with
  // everything still in memory; the shutdown then spools it onto a file system that is too small.
  // That loss must still be counted: exit 74 and dropped == accepted - spooled.
  const std::string spool = home_.file("tiny-spool");
  const TinyFs tiny{spool, "size=256k,mode=0700"};
  if (!tiny.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << tiny.error();
  const BlackHole hole;

  constexpr int kLines = 5000;
  std::string input;
  for (int i = 0; i < kLines; ++i) input += numbered_line(i) + "\n";
  trackevent::test::RunOptions options;
  options.args = {"--db", "postgresql://127.0.0.1:" + std::to_string(hole.port()) + "/x", "ingest",
                  "--flush-timeout", "1"};
  options.env = cli_env(home_, spool);
  options.input = std::move(input);
  options.timeout = 30s;
  const auto started = Clock::now();
  const auto r = trackevent::test::run_program(TRACKEVENT_BIN, options);
  const double ms = ms_between(started, Clock::now());

  const nlohmann::json summary = summary_from(r.err);
  const long long accepted = summary.value("accepted", -1LL);
  const long long spooled = summary.value("spooled", -1LL);
  const long long dropped = summary.value("dropped", -1LL);
  const long long rows = spool_file_rows(spool, home_);
  std::cout << "[fault] HungDatabaseAndFullSpool exit=" << r.exit_code << " ms=" << ms
            << " summary=" << summary.dump() << " spool_rows=" << rows << std::endl;
  EXPECT_EQ(accepted, kLines);
  EXPECT_EQ(rows, spooled) << "the summary's spooled does not match the spool file";
  EXPECT_EQ(dropped, accepted - rows) << "events lost at shutdown are not counted as dropped";
  EXPECT_EQ(r.exit_code, 74) << "events were lost, so the exit status must say so; stderr:\n"
                             << r.err.substr(0, 3000);
}

}  // namespace
