// TrackerOptions::log: an application's callback gets the library's log lines, structured, and
// nothing goes to stderr while its Tracker is open.
#include "trackevent/tracker.hpp"

#include "support/net.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

namespace trackevent {
namespace {

using namespace std::chrono_literals;

struct Line {
  LogLevel level;
  std::string key;
  std::string message;
  nlohmann::ordered_json fields;
};

class Lines {
 public:
  LogCallback callback() {
    return [this](const LogRecord& r) {
      const std::lock_guard lock(mutex_);
      lines_.push_back({r.level, std::string(r.key), std::string(r.message), r.fields});
    };
  }
  std::vector<Line> all() {
    const std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  std::mutex mutex_;
  std::vector<Line> lines_;
};

/// Points file descriptor 2 at a file for its lifetime; text() is what was written there.
class StderrCapture {
 public:
  explicit StderrCapture(std::filesystem::path file) : file_(std::move(file)) {
    saved_ = ::dup(2);
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~StderrCapture() { restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::string text() const {
    std::ifstream in(file_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  std::filesystem::path file_;
  int saved_ = -1;
};

class TrackerLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/trackevent-tracker-log-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);  // mode 0700, as the spool requires
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // A PostgreSQL database nobody answers for, retried at once (no jitter) then spooled.
  TrackerOptions unreachable(LogCallback log) const {
    TrackerOptions o;
    o.database_url = "postgresql://app@127.0.0.1:" + std::to_string(test::closed_port()) +
                     "/analytics?connect_timeout=2";
    o.spool_dir = dir_ / "spool";
    o.flush_interval = 10ms;
    o.jitter = [] { return 0.0; };
    o.log = std::move(log);
    return o;
  }
  std::filesystem::path dir_;
};

TEST_F(TrackerLogTest, UnreachableDatabaseIsLoggedToTheCallbackAndNotToStderr) {
  Lines lines;
  StderrCapture err(dir_ / "stderr");
  Stats stats;
  {
    Tracker tracker(unreachable(lines.callback()));
    tracker.track(1, 2, "user.signed_in", {{"method", "sso"}});
    tracker.track(0, 2, "user.signed_in");  // rejected: org_id < 1
    EXPECT_TRUE(tracker.flush(20s).complete);
    stats = tracker.close(5s);
  }
  err.restore();
  EXPECT_EQ(stats.spooled, 1u);
  EXPECT_EQ(stats.rejected, 1u);

  // The dispatcher's lines about the failed writes ("sink.retry", then "sink.unavailable" as the
  // batch is spooled) and the rejection from the caller's thread, each with its fields.
  bool write_failed = false;
  bool rejection = false;
  for (const auto& line : lines.all()) {
    EXPECT_TRUE(line.fields.is_object()) << line.message;
    if (line.key.starts_with("sink.") && line.fields.contains("err")) {
      write_failed = true;
      EXPECT_TRUE(line.level == LogLevel::warn || line.level == LogLevel::error) << line.key;
    }
    if (line.key == "sink.retry") {
      EXPECT_EQ(line.message, "batch write failed; retrying");
    }
    if (line.key == "track.rejected") {
      rejection = true;
      EXPECT_EQ(line.level, LogLevel::error);
      EXPECT_EQ(line.message, "rejected event");
      EXPECT_EQ(line.fields.value("org_id", -1), 0) << line.fields.dump();
      EXPECT_EQ(line.fields.value("event_name", ""), "user.signed_in");
    }
  }
  EXPECT_TRUE(write_failed);
  EXPECT_TRUE(rejection);
  EXPECT_EQ(err.text(), "");
}

TEST_F(TrackerLogTest, LinesGoBackToStderrOnceTheTrackerIsClosed) {
  Lines lines;
  StderrCapture err(dir_ / "stderr");
  {
    Tracker tracker(unreachable(lines.callback()));
    tracker.track(0, 2, "user.signed_in");
    tracker.close(5s);
    const auto before = lines.all().size();
    // Logged after close(): stderr gets it, the callback never again.
    tracker.track(-1, 2, "user.signed_in");
    EXPECT_EQ(lines.all().size(), before);
  }
  err.restore();
  EXPECT_NE(err.text().find(R"("msg":"rejected event")"), std::string::npos) << err.text();
}

// Rejections (from the caller's thread) counted by where they went.
std::size_t rejections(Lines& lines) {
  std::size_t n = 0;
  for (const auto& line : lines.all()) n += line.key == "track.rejected" ? 1 : 0;
  return n;
}

TEST_F(TrackerLogTest, TheNewestOpenTrackerWithACallbackGetsTheLines) {
  Lines first_lines;
  Lines second_lines;
  Tracker first(unreachable(first_lines.callback()));
  {
    Tracker second(unreachable(second_lines.callback()));
    first.track(0, 1, "user.signed_in");
    EXPECT_EQ(rejections(first_lines), 0u);
    EXPECT_EQ(rejections(second_lines), 1u);
  }
  first.track(0, 2, "user.signed_in");
  EXPECT_EQ(rejections(first_lines), 1u);
  EXPECT_EQ(rejections(second_lines), 1u);
}

}  // namespace
}  // namespace trackevent
