// Black-box: a run stopped by SIGINT or SIGTERM says so. It handles every complete line it already
// read, says in its summary what it left unread, and then dies of the signal (status 130 or 143),
// the way shells, timeout(1) and systemd expect. The tests hold the embedded store's write lock
// to keep the CLI mid-run while the signal arrives, so nothing depends on timing.

#include "cli/cli_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <thread>

namespace trackevent::test {
namespace {

using namespace std::chrono_literals;

std::string many_lines(int n, int first = 0) {
  std::string out;
  for (int i = first; i < first + n; ++i) out += event_line(i) + "\n";
  return out;
}

long long rows(const std::string& db) {
  return sqlite_scalar(db, "SELECT count(*) FROM analytics_events");
}

long long count_lines(std::string_view text) {
  return static_cast<long long>(std::count(text.begin(), text.end(), '\n'));
}

/// Waits until `done` is true (checked every 5 ms); false after `timeout`.
template <typename Done>
bool wait_until(Done&& done, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// The embedded store's write lock, held by the test: the CLI's writes wait for it (SQLite's
/// busy timeout is 5 s), so the CLI is mid-run for as long as the test needs.
class StoreLock {
 public:
  explicit StoreLock(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK ||
        sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot lock " << path << ": " << sqlite3_errmsg(db_);
    }
  }
  ~StoreLock() { release(); }
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;
  void release() {
    if (db_ == nullptr) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

/// The CLI started in the background (stdin from `stdin_fd`, else /dev/null; stdout and stderr
/// to files), for tests that act on it while it runs. Killed if the test ends without wait().
class Child {
 public:
  Child(const TempDir& home, std::vector<std::string> args, int stdin_fd = -1)
      : out_path_(home.file("child.out")), err_path_(home.file("child.err")) {
    const RunOptions options = cli_options(home, std::move(args));
    const int in = stdin_fd >= 0 ? stdin_fd : ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    pid_ = detail::spawn(TRACKEVENT_BIN, options.args, options.env, in, out, err);
    if (stdin_fd < 0) ::close(in);
    ::close(out);
    ::close(err);
    if (pid_ < 0) ADD_FAILURE() << "fork failed";
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }

  /// Waits for the child to end (killing it after `timeout`); the result as run_program gives it.
  RunResult wait(std::chrono::milliseconds timeout = 30s) {
    RunResult r;
    int status = 0;
    const bool ended = wait_until(
        [&] {
          const pid_t done = ::waitpid(pid_, &status, WNOHANG);
          return done == pid_;
        },
        timeout);
    if (!ended) {
      ADD_FAILURE() << "the CLI did not end within " << timeout.count() << " ms";
      r.timed_out = true;
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    if (WIFEXITED(status)) {
      r.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      r.term_signal = WTERMSIG(status);
      r.exit_code = 128 + r.term_signal;
    }
    r.out = read_file(out_path_);
    r.err = read_file(err_path_);
    return r;
  }

  /// The offset of the child's descriptor open on `path` (its read position), or -1.
  [[nodiscard]] long long read_position(const std::string& path) const {
    const std::string target = std::filesystem::canonical(path).string();
    std::error_code ec;
    const std::filesystem::path fds = "/proc/" + std::to_string(pid_) + "/fd";
    for (const auto& entry : std::filesystem::directory_iterator(fds, ec)) {
      std::error_code link_ec;
      if (std::filesystem::read_symlink(entry.path(), link_ec).string() != target) continue;
      const std::string info = read_file("/proc/" + std::to_string(pid_) + "/fdinfo/" +
                                         entry.path().filename().string());
      const auto at = info.find("pos:");
      if (at != std::string::npos) return std::stoll(info.substr(at + 4));
    }
    return -1;
  }

 private:
  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
};

/// Creates the embedded store at `db` (so the test can lock it before the CLI runs).
void create_store(const TempDir& home, const std::string& db) {
  const auto r = run_cli(home, {"--db", "sqlite:" + db, "migrate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

/// Spools `n` events (the database refuses connections, and --flush-timeout 0 spools at once).
void spool_events(const TempDir& home, int n) {
  const std::string down =
      "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/nothing";
  const auto r = run_cli(home, {"--db", down, "ingest", "--flush-timeout", "0"}, many_lines(n));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(summary_of(r)["spooled"], n) << r.err;
}

TEST(CliSignals, SigtermDuringAFileSaysWhereUnreadInputStarts) {
  TempDir home;
  const std::string db = home.file("e.db");
  ASSERT_NO_FATAL_FAILURE(create_store(home, db));
  constexpr int kLines = 3000;  // about 270 KB: several of the reader's 64 KiB chunks
  const std::string a = home.file("a.jsonl");
  const std::string b = home.file("b.jsonl");
  const std::string content = many_lines(kLines);
  write_file(a, content);
  write_file(b, many_lines(10, kLines));

  StoreLock lock{db};
  // A queue of one: the reader can take only a few lines before it waits for the locked store.
  Child child{home,
              {"--db", "sqlite:" + db, "ingest", "--queue-size", "1", "--batch-size", "1", a, b}};
  // Once the first chunk is read, the reader holds hundreds of complete lines it cannot finish
  // before the signal, since the store takes nothing until the lock is released.
  ASSERT_TRUE(wait_until([&] { return child.read_position(a) > 0; }));
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  lock.release();
  const auto r = child.wait();

  EXPECT_EQ(r.term_signal, SIGTERM) << r.err;
  EXPECT_EQ(r.exit_code, 143);
  const auto s = summary_of(r);
  EXPECT_EQ(s.value("interrupted", false), true) << s.dump();
  EXPECT_EQ(s.value("unread_source", ""), a) << s.dump();
  ASSERT_TRUE(s.contains("unread_offset") && s["unread_offset"].is_number()) << s.dump();
  const auto offset = s["unread_offset"].get<std::size_t>();
  ASSERT_GT(offset, 0u);
  ASSERT_LT(offset, content.size());
  EXPECT_EQ(content[offset - 1], '\n') << "unread input must start at a line";
  EXPECT_EQ(s["unread_bytes"], content.size() - offset + read_file(b).size()) << s.dump();
  EXPECT_EQ(s["unread_files"], 1);

  // Stored: exactly the lines before the offset; the rest of the file holds the others.
  const long long before = count_lines(std::string_view{content}.substr(0, offset));
  const std::string rest = content.substr(offset);
  EXPECT_EQ(s["read"], before);
  EXPECT_EQ(s["accepted"], before);
  EXPECT_EQ(s["stored"], before);
  EXPECT_EQ(s["spooled"], 0);
  EXPECT_EQ(rows(db), before);
  EXPECT_EQ(sqlite_scalar(db, "SELECT max(user_id) FROM analytics_events"), 100 + before - 1);
  EXPECT_EQ(before + count_lines(rest), kLines);
  EXPECT_EQ(rest.substr(0, rest.find('\n')), event_line(static_cast<int>(before)));
}

TEST(CliSignals, SigtermOnAPipeHandlesEveryCompleteLineAlreadyRead) {
  TempDir home;
  const std::string db = home.file("e.db");
  ASSERT_NO_FATAL_FAILURE(create_store(home, db));
  constexpr int kLines = 300;
  const std::string complete = many_lines(kLines);
  const std::string unfinished = R"({"org_id":1,"event_name":"user.sig)";  // no newline yet

  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  // All of it is in the pipe before the CLI starts, so its first read takes it all.
  const std::string input = complete + unfinished;
  ASSERT_EQ(::write(pipe_fds[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));

  StoreLock lock{db};
  Child child{home,
              {"--db", "sqlite:" + db, "ingest", "--tee", "--queue-size", "1", "--on-full", "block",
               "--batch-size", "1"},
              pipe_fds[0]};
  ::close(pipe_fds[0]);
  // The pipe is empty once the CLI read everything; the producer keeps it open (no end of input).
  ASSERT_TRUE(wait_until([&] {
    int queued = -1;
    return ::ioctl(pipe_fds[1], FIONREAD, &queued) == 0 && queued == 0;
  }));
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  lock.release();
  const auto r = child.wait();
  ::close(pipe_fds[1]);

  EXPECT_EQ(r.term_signal, SIGTERM) << r.err;
  EXPECT_EQ(r.exit_code, 143);
  // Every complete line was echoed, and the unfinished one was not.
  EXPECT_EQ(r.out, complete);
  const auto s = summary_of(r);
  EXPECT_EQ(s.value("interrupted", false), true) << s.dump();
  EXPECT_EQ(s["read"], kLines);
  EXPECT_EQ(s["accepted"], kLines);
  EXPECT_EQ(s["rejected"], 0);
  EXPECT_EQ(s["stored"].get<long long>() + s["spooled"].get<long long>(), kLines) << s.dump();
  EXPECT_EQ(rows(db), s["stored"].get<long long>());
  EXPECT_EQ(s.value("unread_source", ""), "stdin");
  EXPECT_EQ(s["unread_offset"], complete.size());
  EXPECT_EQ(s["unread_bytes"], "unknown");
  EXPECT_EQ(s["unread_files"], 0);
}

// --durable --tee echoes a line only once its event is durable. When events can be made durable
// nowhere (the spool unusable, the database down), their lines are not echoed while the run goes
// on: a consumer killed along with us must never hold a line whose event exists nowhere. At the
// end they are echoed, with exit 74 and `dropped` saying what was lost.
TEST(CliSignals, DurableTeeWithholdsLinesWhoseEventsWereLost) {
  TempDir home;
  {
    std::ofstream blocker(home.file("spool"));  // a file where the spool directory should be
    blocker << "not a directory\n";
  }
  const std::string down =
      "postgresql://nobody@127.0.0.1:" + std::to_string(closed_port()) + "/nothing";
  constexpr int kLines = 50;
  const std::string input = many_lines(kLines);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_EQ(::write(pipe_fds[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));

  Child child{home, {"--db", down, "ingest", "--durable", "--tee"}, pipe_fds[0]};
  ::close(pipe_fds[0]);
  // The producer keeps the pipe open: the run goes on after the events are lost.
  ASSERT_TRUE(wait_until(
      [&] { return read_file(home.file("child.err")).find("events lost") != std::string::npos; },
      30s))
      << read_file(home.file("child.err"));
  std::this_thread::sleep_for(500ms);  // the tee's hold looks every 10 ms
  EXPECT_EQ(read_file(home.file("child.out")), "") << "lines echoed for events that were lost";

  ::close(pipe_fds[1]);  // end of input
  const auto r = child.wait(60s);
  EXPECT_EQ(r.exit_code, 74) << r.err;
  EXPECT_EQ(r.out, input);  // at the end, with the loss in the exit status and the summary
  EXPECT_EQ(summary_of(r)["dropped"], kLines) << r.err;
}

TEST(CliSignals, SigintEndsWithStatus130) {
  TempDir home;
  const std::string db = home.file("e.db");
  RunOptions options = cli_options(home, {"--db", "sqlite:" + db, "ingest", "--tee"});
  options.input = many_lines(5);
  options.keep_stdin_open = true;  // only the signal ends the run
  options.timeout = 20s;
  const std::string teed = options.input;
  bool signalled = false;
  // Echoed means read and handled: the handlers are in place.
  options.on_output = [&](pid_t pid, const RunResult& so_far) {
    if (!signalled && so_far.out.size() >= teed.size()) {
      ::kill(pid, SIGINT);
      signalled = true;
    }
    return false;
  };
  const auto r = run_program(TRACKEVENT_BIN, options);
  ASSERT_TRUE(signalled);
  EXPECT_EQ(r.term_signal, SIGINT) << r.err;
  EXPECT_EQ(r.exit_code, 130);
  EXPECT_EQ(rows(db), 5);
  const auto s = summary_of(r);
  EXPECT_EQ(s.value("interrupted", false), true) << s.dump();
  EXPECT_EQ(s["stored"], 5);
  EXPECT_EQ(s["unread_offset"], teed.size());
  EXPECT_EQ(s["unread_bytes"], "unknown");
}

TEST(CliSignals, SendInterruptedSpoolsTheEventAndEndsWith143) {
  TempDir home;
  const BlackHole hung;
  const std::string url = "postgresql://nobody@127.0.0.1:" + std::to_string(hung.port()) + "/x";
  Child child{home,
              {"--db", url, "send", "--timeout", "1", "--org", "1", "--event", "backup.completed"}};
  // Connecting means the event is taken and the handlers are in place.
  ASSERT_TRUE(wait_until([&] { return hung.pending(); }));
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  const auto r = child.wait();

  EXPECT_EQ(r.term_signal, SIGTERM) << r.err;
  EXPECT_EQ(r.exit_code, 143);
  const auto s = summary_of(r);
  EXPECT_EQ(s.value("interrupted", false), true) << s.dump();
  EXPECT_EQ(s["accepted"], 1);
  EXPECT_EQ(s["spooled"], 1);
  EXPECT_EQ(s["dropped"], 0);

  const std::string db = home.file("later.db");
  const auto flushed = run_cli(home, {"--db", "sqlite:" + db, "flush"});
  EXPECT_EQ(flushed.exit_code, 0) << flushed.err;
  EXPECT_EQ(rows(db), 1);
}

TEST(CliSignals, FlushInterruptedGivesBackWhatItClaimedAndEndsWith143) {
  TempDir home;
  constexpr int kEvents = 50;
  ASSERT_NO_FATAL_FAILURE(spool_events(home, kEvents));
  const std::string db = home.file("e.db");
  ASSERT_NO_FATAL_FAILURE(create_store(home, db));
  const std::string spool = home.file("spool") + "/spool.db";

  StoreLock lock{db};
  Child child{home, {"--db", "sqlite:" + db, "flush", "--batch-size", "10", "--timeout", "60"}};
  // A claimed batch means the drain is writing it (and waiting for the lock).
  ASSERT_TRUE(wait_until([&] {
    return sqlite_scalar(spool, "SELECT count(*) FROM spool WHERE claimed_by IS NOT NULL") > 0;
  }));
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  lock.release();
  const auto r = child.wait();

  EXPECT_EQ(r.term_signal, SIGTERM) << r.err;
  EXPECT_EQ(r.exit_code, 143);
  const auto s = summary_of(r);
  EXPECT_EQ(s.value("interrupted", false), true) << s.dump();
  // The batch under way was finished; no other was started.
  EXPECT_EQ(s["stored"], 10) << s.dump();
  EXPECT_EQ(s["remaining"], kEvents - 10);
  EXPECT_EQ(rows(db), 10);
  EXPECT_EQ(sqlite_scalar(spool, "SELECT count(*) FROM spool"), kEvents - 10);

  // Nothing is left leased: another flush takes the rest at once (a lease would hold it 120 s).
  const auto again = run_cli(home, {"--db", "sqlite:" + db, "flush", "--timeout", "5"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(summary_of(again)["stored"], kEvents - 10);
  EXPECT_EQ(rows(db), kEvents);
}

}  // namespace
}  // namespace trackevent::test
