#include "spool/dead_letter_file.hpp"

#include "trackevent/clock.hpp"

#include "log/log.hpp"
#include "runtime/delivery.hpp"
#include "spool/fs_util.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <span>
#include <thread>
#include <unordered_map>
#include <utility>

namespace trackevent::detail {
namespace {

constexpr const char* kLockFile = "dead-letter.lock";
constexpr const char* kEditLockFile = "dead-letter.edit.lock";
// A rewrite holds dead-letter.lock exclusively for a copy and a rename: appenders wait this long.
constexpr std::chrono::milliseconds kCommitWait{10000};

std::string errno_text(int err) { return std::strerror(err); }

Result<int> open_lock_file(const std::filesystem::path& dir, const char* name) {
  if (auto r = ensure_private_dir(dir, "dead-letter directory"); !r) return r.error();
  return open_private_file(dir / name, O_RDWR);
}

// flock with a deadline: polls a non-blocking flock (flock itself has no timeout).
bool flock_within(int fd, int op, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (::flock(fd, op | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

Result<std::string> read_from(const std::filesystem::path& path, std::uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT && offset == 0) return std::string{};
    return Error{"cannot open " + path.string() + ": " + errno_text(errno)};
  }
  std::string out;
  char buf[65536];
  off_t at = static_cast<off_t>(offset);
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Error{"cannot read " + path.string() + ": " + errno_text(err)};
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  ::close(fd);
  return out;
}

Result<> write_all(int fd, std::string_view text, const std::filesystem::path& path) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{"cannot write " + path.string() + ": " + errno_text(errno)};
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return ok();
}

Result<> sync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int rc = fd < 0 ? -1 : ::fsync(fd);
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (rc != 0) return Error{"cannot sync the directory " + dir.string() + ": " + errno_text(err)};
  return ok();
}

}  // namespace

std::uint64_t dead_letter_cap() noexcept {
  const char* v = std::getenv(kDeadLetterCapEnv);
  if (v == nullptr || *v == '\0') return kDefaultDeadLetterCap;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < 4096) return kDefaultDeadLetterCap;
  return n;
}

std::string format_dead_letter(const Event& event, std::string_view error,
                               std::string_view sqlstate, std::int64_t at_us, int replays) {
  nlohmann::json line;
  line["event_id"] = event.event_id.to_string();
  line["org_id"] = event.org_id;
  line["user_id"] = event.user_id ? nlohmann::json(*event.user_id) : nlohmann::json(nullptr);
  line["event_name"] = event.event_name;
  // Keep the metadata a JSON value so `jq` can read it; text that is not JSON stays a string.
  nlohmann::json meta = nlohmann::json::parse(event.metadata, nullptr, false);
  line["metadata"] = meta.is_discarded() ? nlohmann::json(event.metadata) : std::move(meta);
  line["occurred_at"] = format_rfc3339(event.occurred_at_us);
  line["error"] = std::string(error);
  line["sqlstate"] = sqlstate.empty() ? nlohmann::json(nullptr) : nlohmann::json(sqlstate);
  line["at"] = format_rfc3339(at_us);
  if (replays > 0) line["replays"] = replays;
  // Replace invalid UTF-8 instead of throwing: a dead letter must always be writable.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

DeadLetterLine parse_dead_letter(std::string text, std::size_t number) {
  DeadLetterLine line;
  line.number = number;
  line.text = std::move(text);
  const auto j = nlohmann::json::parse(line.text, nullptr, false);
  const auto bad = [&line](std::string why) {
    line.problem = std::move(why);
    return std::move(line);
  };
  if (j.is_discarded()) return bad("not JSON (a torn or edited line?)");
  if (!j.is_object()) return bad("not a JSON object");
  const auto id = j.find("event_id");
  if (id == j.end() || !id->is_string()) return bad("event_id: missing or not a string");
  const auto uuid = Uuid::parse(id->get_ref<const std::string&>());
  if (!uuid) return bad("event_id: not a UUID");
  line.event.event_id = *uuid;
  const auto org = j.find("org_id");
  if (org == j.end() || !org->is_number_integer()) return bad("org_id: missing or not an integer");
  line.event.org_id = org->get<std::int64_t>();
  if (const auto user = j.find("user_id"); user != j.end() && !user->is_null()) {
    if (!user->is_number_integer()) return bad("user_id: not an integer or null");
    line.event.user_id = user->get<std::int64_t>();
  }
  const auto name = j.find("event_name");
  if (name == j.end() || !name->is_string()) return bad("event_name: missing or not a string");
  line.event.event_name = name->get<std::string>();
  const auto meta = j.find("metadata");
  if (meta == j.end()) return bad("metadata: missing");
  line.event.metadata = meta->is_string() ? meta->get<std::string>() : meta->dump();
  const auto occurred = j.find("occurred_at");
  if (occurred == j.end() || !occurred->is_string()) return bad("occurred_at: missing");
  const auto occurred_us = parse_rfc3339(occurred->get_ref<const std::string&>());
  if (!occurred_us) return bad("occurred_at: not an RFC 3339 timestamp");
  line.event.occurred_at_us = *occurred_us;
  const auto at = j.find("at");
  if (at == j.end() || !at->is_string()) return bad("at: missing");
  const auto at_us = parse_rfc3339(at->get_ref<const std::string&>());
  if (!at_us) return bad("at: not an RFC 3339 timestamp");
  line.at_us = *at_us;
  if (const auto e = j.find("error"); e != j.end() && e->is_string())
    line.error = e->get<std::string>();
  if (const auto s = j.find("sqlstate"); s != j.end() && s->is_string()) {
    line.sqlstate = s->get<std::string>();
  }
  return line;
}

Result<DeadLetterSnapshot> read_dead_letters(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kDeadLetterFile;
  DeadLetterSnapshot snap;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return snap;
    return Error{"cannot stat " + path.string() + ": " + errno_text(errno)};
  }
  if (!S_ISREG(st.st_mode)) return Error{path.string() + " is not a regular file"};
  snap.exists = true;
  Result<std::string> text = read_from(path, 0);
  if (!text) return std::move(text).error();
  const std::size_t last_newline = text->rfind('\n');
  if (last_newline == std::string::npos) return snap;  // nothing complete yet
  snap.end = last_newline + 1;
  std::size_t start = 0;
  std::size_t number = 0;
  while (start < snap.end) {
    const std::size_t nl = text->find('\n', start);
    ++number;
    std::string line = text->substr(start, nl - start);
    start = nl + 1;
    if (line.empty()) continue;  // a blank line carries nothing; a rewrite leaves it out
    snap.lines.push_back(parse_dead_letter(std::move(line), number));
  }
  return snap;
}

EditLock::~EditLock() {
  if (fd_ >= 0) ::close(fd_);
}

Result<EditLock> EditLock::try_acquire(const std::filesystem::path& dir) {
  Result<int> fd = open_lock_file(dir, kEditLockFile);
  if (!fd) return std::move(fd).error();
  if (::flock(*fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(*fd);
    return Error{"busy: another `trackevent dead-letters replay` or `purge` of " +
                 (dir / kDeadLetterFile).string() + " is running"};
  }
  return EditLock(*fd);
}

AppendLock::~AppendLock() { release(); }

void AppendLock::release() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<AppendLock> AppendLock::acquire(const std::filesystem::path& dir,
                                       std::chrono::milliseconds wait) {
  Result<int> fd = open_lock_file(dir, kLockFile);
  if (!fd) return std::move(fd).error();
  if (!flock_within(*fd, LOCK_SH, wait)) {
    ::close(*fd);
    return Error{"cannot lock " + (dir / kLockFile).string() + " within " +
                 std::to_string(wait.count()) + " ms (a dead-letter rewrite is taking long)"};
  }
  return AppendLock(*fd);
}

Result<CommitResult> commit_dead_letters(const std::filesystem::path& dir,
                                         const DeadLetterSnapshot& snapshot,
                                         const std::vector<std::string>& head, std::uint64_t cap) {
  const std::filesystem::path path = dir / kDeadLetterFile;
  Result<int> lock_fd = open_lock_file(dir, kLockFile);
  if (!lock_fd) return std::move(lock_fd).error();
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{*lock_fd};
  // Appenders finish their line first; new ones wait until the rename.
  if (!flock_within(*lock_fd, LOCK_EX, kCommitWait)) {
    return Error{"cannot lock " + (dir / kLockFile).string() + " for a rewrite within " +
                 std::to_string(kCommitWait.count()) + " ms"};
  }
  Result<std::string> tail = read_from(path, snapshot.end);
  if (!tail) return std::move(tail).error();
  std::vector<std::string_view> lines(head.begin(), head.end());
  for (std::size_t start = 0; start < tail->size();) {
    std::size_t nl = tail->find('\n', start);
    if (nl == std::string::npos) nl = tail->size();  // a torn last line: kept, ended
    if (nl > start) lines.emplace_back(std::string_view(*tail).substr(start, nl - start));
    start = nl + 1;
  }
  CommitResult result;
  std::uint64_t total = 0;
  for (const auto& l : lines) total += l.size() + 1;
  std::size_t first = 0;
  if (total > cap) {
    // Keep the newest lines within half the cap, so the next rotations are far apart.
    std::uint64_t kept = 0;
    first = lines.size();
    while (first > 0 && kept + lines[first - 1].size() + 1 <= cap / 2) {
      kept += lines[first - 1].size() + 1;
      --first;
    }
    result.dropped = first;
  }
  std::string text;
  for (std::size_t i = first; i < lines.size(); ++i) {
    text.append(lines[i]);
    text.push_back('\n');
  }
  result.lines = lines.size() - first;
  const std::filesystem::path tmp = dir / (std::string(kDeadLetterFile) + ".tmp");
  ::unlink(tmp.c_str());  // a leftover of a rewrite that died; we hold the locks
  Result<int> fd = open_private_file(tmp, O_WRONLY | O_TRUNC);
  if (!fd) return std::move(fd).error();
  Result<> written = write_all(*fd, text, tmp);
  if (written && ::fsync(*fd) != 0)
    written = Error{"cannot sync " + tmp.string() + ": " + errno_text(errno)};
  ::close(*fd);
  if (!written) {
    ::unlink(tmp.c_str());
    return std::move(written).error();
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Error{"cannot rename " + tmp.string() + " to " + path.string() + ": " + errno_text(err)};
  }
  if (auto r = sync_dir(dir); !r) return std::move(r).error();
  return result;
}

void rotate_dead_letters_if_needed(const std::filesystem::path& dir, std::uint64_t cap) noexcept {
  try {
    const std::filesystem::path path = dir / kDeadLetterFile;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) <= cap) return;
    Result<EditLock> edit = EditLock::try_acquire(dir);
    if (!edit) return;  // a replay or purge is running; its commit applies the cap
    Result<DeadLetterSnapshot> snap = read_dead_letters(dir);
    Result<CommitResult> done = snap ? commit_dead_letters(
                                           dir, *snap,
                                           [&] {
                                             std::vector<std::string> head;
                                             for (auto& l : snap->lines) head.push_back(l.text);
                                             return head;
                                           }(),
                                           cap)
                                     : Result<CommitResult>(snap.error());
    if (!done) {
      log::write_limited(
          log::Level::critical, "dead_letter.rotate",
          "dead-letter file is past its size cap and cannot be rotated",
          {{"file", path.string()}, {"cap_bytes", cap}, {"err", done.error().message}});
      return;
    }
    log::write(log::Level::critical,
               "dead-letter file passed its size cap: dropped its oldest lines, kept the newest",
               {{"file", path.string()},
                {"cap_bytes", cap},
                {"dropped_lines", done->dropped},
                {"kept_lines", done->lines},
                {"hint",
                 "replay or purge dead letters (trackevent dead-letters), or raise "
                 "TRACKEVENT_DEAD_LETTER_MAX_BYTES"}});
  } catch (const std::exception&) {
    // Allocation failed: the file stays as it is, over its cap, until the next append.
  }
}

// ---- replay ------------------------------------------------------------------------------------

ReplayResult replay_dead_letters(const DbTarget& target, const std::filesystem::path& dir,
                                 const ReplayOptions& options) {
  ReplayResult result;
  try {
    Result<EditLock> edit = EditLock::try_acquire(dir);
    if (!edit) {
      result.outcome = edit.error().message.rfind("busy", 0) == 0
                           ? ReplayResult::Outcome::busy
                           : ReplayResult::Outcome::file_error;
      result.error = edit.error().message;
      return result;
    }
    Result<DeadLetterSnapshot> snap = read_dead_letters(dir);
    if (!snap) {
      result.outcome = ReplayResult::Outcome::file_error;
      result.error = snap.error().message;
      return result;
    }
    const std::filesystem::path path = dir / kDeadLetterFile;
    std::vector<Event> events;
    std::vector<std::size_t> line_of;  // index into snap->lines, per event
    for (std::size_t i = 0; i < snap->lines.size(); ++i) {
      const DeadLetterLine& l = snap->lines[i];
      if (!l.problem.empty()) {
        ++result.invalid;
        log::error("dead-letter line is not a dead letter; kept as it is",
                   {{"file", path.string()}, {"line", l.number}, {"reason", l.problem}});
        continue;
      }
      events.push_back(l.event);
      line_of.push_back(i);
    }
    if (events.empty()) return result;

    enum class Fate { untried, stored, refused };
    std::vector<Fate> fate(events.size(), Fate::untried);
    std::vector<Failure> refusal(events.size());
    auto sink = make_sink(target, options.pg_timeouts);
    auto clock = std::make_shared<SteadyClock>();
    const auto deadline = clock->now() + options.timeout;
    const auto index = [&events](const Event& e) {
      return static_cast<std::size_t>(&e - events.data());
    };
    DeliveryPolicy policy(
        DeliveryPolicy::Rules{.max_rows = std::max<std::size_t>(options.batch_size, 1)},
        DeliveryPolicy::Hooks{
            .write = [&sink](std::span<const Event> rows) { return sink->write(rows); },
            // The line stays in the file (rewritten with this error at the commit): durable.
            .dead_letter =
                [&](const Event& row, const Failure& why) {
                  fate[index(row)] = Fate::refused;
                  refusal[index(row)] = why;
                  return true;
                },
            .wait =
                [&](Clock::duration d) {
                  d = std::min<Clock::duration>(d, deadline - clock->now());
                  if (d > Clock::duration::zero()) std::this_thread::sleep_for(d);
                },
            .stop = [&] { return clock->now() >= deadline; },
            .before_write = {},
            .settled =
                [&](std::span<const Event> rows) {
                  for (const Event& e : rows) {
                    if (fate[index(e)] == Fate::untried) fate[index(e)] = Fate::stored;
                  }
                },
            .on_retry = {},
        },
        clock);
    const std::size_t step = std::max<std::size_t>(options.batch_size, 1);
    for (std::size_t at = 0; at < events.size(); at += step) {
      if (clock->now() >= deadline) {
        result.outcome = ReplayResult::Outcome::timed_out;
        break;
      }
      const auto batch =
          std::span<const Event>(events).subspan(at, std::min(step, events.size() - at));
      const DeliveryOutcome out = policy.deliver(batch);
      if (!out.unsent.empty()) {
        result.outcome =
            out.stopped ? ReplayResult::Outcome::timed_out : ReplayResult::Outcome::unreachable;
        result.error = out.failure->message;
        result.sqlstate = out.failure->sqlstate;
        break;
      }
    }
    // The new file: stored lines leave, refused ones get their new error, the rest stays.
    std::vector<bool> stored_line(snap->lines.size(), false);
    std::vector<std::string> head;
    std::vector<std::optional<std::string>> rewritten(snap->lines.size());
    const std::int64_t now = now_unix_us();
    for (std::size_t k = 0; k < events.size(); ++k) {
      const std::size_t i = line_of[k];
      if (fate[k] == Fate::stored) {
        stored_line[i] = true;
        ++result.stored;
      } else if (fate[k] == Fate::refused) {
        ++result.refused;
        const auto j = nlohmann::json::parse(snap->lines[i].text, nullptr, false);
        const int replays = j.is_object() ? j.value("replays", 0) : 0;
        rewritten[i] = format_dead_letter(events[k], refusal[k].message, refusal[k].sqlstate, now,
                                          replays + 1);
      } else {
        ++result.untried;
      }
    }
    if (result.stored == 0 && result.refused == 0) return result;  // nothing to change
    for (std::size_t i = 0; i < snap->lines.size(); ++i) {
      if (stored_line[i]) continue;
      head.push_back(rewritten[i] ? *rewritten[i] : snap->lines[i].text);
    }
    Result<CommitResult> committed = commit_dead_letters(dir, *snap, head, dead_letter_cap());
    if (!committed) {
      // The events are stored, their lines still in the file: a later replay finds them
      // duplicates and removes them then. Nothing is lost.
      result.outcome = ReplayResult::Outcome::file_error;
      result.error = committed.error().message;
      return result;
    }
    result.dropped = committed->dropped;
  } catch (const std::bad_alloc& e) {
    result.outcome = ReplayResult::Outcome::file_error;
    result.error = std::string("out of memory: ") + e.what();
  } catch (const std::exception& e) {
    // make_sink: an unusable SQLite path.
    result.outcome = ReplayResult::Outcome::unreachable;
    result.error = e.what();
  }
  return result;
}

}  // namespace trackevent::detail
