// dead-letter.jsonl as a file several processes share: parsing, the rewrite protocol, the size
// cap, and the last-delivery record beside the spool (lib/src/spool/dead_letter_file.*,
// delivery_record.*).

#include "spool/dead_letter_file.hpp"
#include "spool/delivery_record.hpp"
#include "spool/spool.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace trackevent;
using namespace trackevent::detail;

namespace {

class Dir {
 public:
  Dir() {
    char tmpl[] = "/tmp/trackevent-dlf.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

Event event(int i, const std::string& name = "user.signed_in") {
  Event e;
  e.event_id = make_uuid_v7();
  e.org_id = 1 + i;
  e.event_name = name;
  e.metadata = R"({"i":)" + std::to_string(i) + "}";
  e.occurred_at_us = 1'700'000'000'000'000 + i;
  return e;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::istringstream in(slurp(p));
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(DeadLetterFile, AnAppendedLineParsesBackToTheSameEvent) {
  Dir dir;
  const Event e = event(7);
  ASSERT_TRUE(DeadLetters(dir.path()).append(e, "refused", "23514"));
  auto snap = read_dead_letters(dir.path());
  ASSERT_TRUE(snap);
  ASSERT_EQ(snap->lines.size(), 1U);
  const DeadLetterLine& l = snap->lines[0];
  EXPECT_TRUE(l.problem.empty()) << l.problem;
  EXPECT_EQ(l.event.event_id, e.event_id);
  EXPECT_EQ(l.event.org_id, e.org_id);
  EXPECT_EQ(l.event.occurred_at_us, e.occurred_at_us);
  EXPECT_EQ(nlohmann::json::parse(l.event.metadata), nlohmann::json::parse(e.metadata));
  EXPECT_EQ(l.sqlstate, "23514");
  EXPECT_GT(l.at_us, 0);
}

TEST(DeadLetterFile, EachBadLineSaysWhy) {
  EXPECT_EQ(parse_dead_letter("{\"event_id\":", 1).problem, "not JSON (a torn or edited line?)");
  EXPECT_EQ(parse_dead_letter("[]", 1).problem, "not a JSON object");
  EXPECT_EQ(parse_dead_letter(R"({"event_id":"nope"})", 1).problem, "event_id: not a UUID");
  const std::string id = make_uuid_v7().to_string();
  EXPECT_EQ(parse_dead_letter(R"({"event_id":")" + id + R"(","org_id":"x"})", 3).problem,
            "org_id: missing or not an integer");
  EXPECT_EQ(parse_dead_letter(R"({"event_id":")" + id +
                                  R"(","org_id":1,"event_name":"a.b","metadata":{},)"
                                  R"("occurred_at":"yesterday","at":"2026-01-01T00:00:00Z"})",
                              4)
                .problem,
            "occurred_at: not an RFC 3339 timestamp");
}

TEST(DeadLetterFile, ACommitKeepsWhatWasAppendedAfterItsSnapshot) {
  Dir dir;
  DeadLetters dead(dir.path());
  ASSERT_TRUE(dead.append(event(1), "a", "23514"));
  ASSERT_TRUE(dead.append(event(2), "b", "23514"));
  auto edit = EditLock::try_acquire(dir.path());
  ASSERT_TRUE(edit);
  // A second rewriter is turned away while the first holds the edit lock.
  EXPECT_FALSE(EditLock::try_acquire(dir.path()));
  auto snap = read_dead_letters(dir.path());
  ASSERT_TRUE(snap);
  // Appended while the rewriter works from its snapshot (e.g. a flush during a replay).
  ASSERT_TRUE(dead.append(event(3), "c", "23514"));
  // The rewrite keeps only the second of the snapshot's lines.
  auto done = commit_dead_letters(dir.path(), *snap, {snap->lines[1].text}, 1 << 20);
  ASSERT_TRUE(done) << done.error().message;
  const auto lines = lines_of(dir.path() / kDeadLetterFile);
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0], snap->lines[1].text);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["error"], "c");
  EXPECT_FALSE(fs::exists(dir.path() / "dead-letter.jsonl.tmp"));
}

TEST(DeadLetterFile, AnAppendWaitsForARewriteInProgress) {
  Dir dir;
  DeadLetters dead(dir.path());
  ASSERT_TRUE(dead.append(event(1), "first", ""));
  // Hold the lock as a commit does while it renames the new file into place.
  const int fd = ::open((dir.path() / "dead-letter.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  bool appended = false;
  std::thread writer([&] { appended = dead.append(event(2), "second", "").ok(); });
  std::this_thread::sleep_for(std::chrono::milliseconds{200});
  EXPECT_EQ(lines_of(dir.path() / kDeadLetterFile).size(), 1U) << "appended under a rewrite";
  ::close(fd);
  writer.join();
  EXPECT_TRUE(appended);
  EXPECT_EQ(lines_of(dir.path() / kDeadLetterFile).size(), 2U);
}

TEST(DeadLetterFile, PastTheCapTheNewestLinesAreKept) {
  Dir dir;
  ::setenv(kDeadLetterCapEnv, "8192", 1);
  DeadLetters dead(dir.path());
  ::unsetenv(kDeadLetterCapEnv);
  std::vector<Event> events;
  for (int i = 0; i < 80; ++i) {
    events.push_back(event(i));
    ASSERT_TRUE(dead.append(events.back(), std::string(60, 'x'), "23514"));
    EXPECT_LE(fs::file_size(dir.path() / kDeadLetterFile), 8192U + 400U);
  }
  const auto lines = lines_of(dir.path() / kDeadLetterFile);
  ASSERT_FALSE(lines.empty());
  ASSERT_LT(lines.size(), events.size());
  // The last lines are the last events, in order.
  for (std::size_t k = 0; k < lines.size(); ++k) {
    const auto& expected = events[events.size() - lines.size() + k];
    EXPECT_EQ(nlohmann::json::parse(lines[k])["event_id"], expected.event_id.to_string());
  }
}

TEST(DeadLetterFile, TheCapIgnoresNonsense) {
  ::setenv(kDeadLetterCapEnv, "12", 1);
  EXPECT_EQ(dead_letter_cap(), kDefaultDeadLetterCap);
  ::setenv(kDeadLetterCapEnv, "1MiB", 1);
  EXPECT_EQ(dead_letter_cap(), kDefaultDeadLetterCap);
  ::setenv(kDeadLetterCapEnv, "100000", 1);
  EXPECT_EQ(dead_letter_cap(), 100000U);
  ::unsetenv(kDeadLetterCapEnv);
}

TEST(DeliveryRecordFile, KeepsTheNewerOfEachAcrossWriters) {
  Dir dir;
  {
    DeliveryRecord a(dir.path());
    a.note_failure("unavailable", "08006", "connection lost", 5);
    a.flush();
  }
  auto first = read_delivery_record(dir.path());
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->failure);
  EXPECT_EQ(first->failure->sqlstate, "08006");
  EXPECT_FALSE(first->success);
  {
    // Another process: a success only. The failure on disk stays.
    DeliveryRecord b(dir.path());
    b.note_success(3);
  }  // the destructor writes what is pending
  auto second = read_delivery_record(dir.path());
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->success);
  EXPECT_EQ(second->success->events, 3U);
  ASSERT_TRUE(second->failure);
  EXPECT_EQ(second->failure->error, "connection lost");
  EXPECT_FALSE(fs::exists(
      dir.path() / (std::string(kDeliveryRecordFile) + ".tmp." + std::to_string(::getpid()))));
}

TEST(DeliveryRecordFile, AForeignFileIsAnError) {
  Dir dir;
  std::ofstream(dir.path() / kDeliveryRecordFile) << "not json";
  EXPECT_FALSE(read_delivery_record(dir.path()));
}

}  // namespace
