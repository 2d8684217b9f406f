#pragma once
// Reading and rewriting dead-letter.jsonl safely while other processes append to it
// (docs/operations.md, "Dead letters").
//
// Two flock(2) files beside it:
// - dead-letter.lock: appenders (DeadLetters::append) hold it shared while they open, write and
//   sync; a rewrite holds it exclusively only while it copies the lines appended since its
//   snapshot and renames the new file into place. So no append lands in a file being replaced.
// - dead-letter.edit.lock: held exclusively (never waited for) by whoever rewrites (replay,
//   purge, rotation) from a snapshot to its commit, so the snapshot's bytes stay what they were:
//   only appends happen meanwhile, and the commit keeps them.
// Every rewrite writes a temporary file, fsyncs it, renames it over the old one and fsyncs the
// directory. A line that is not a valid dead letter is reported and kept as it is.

#include "trackevent/event.hpp"

#include "base/result.hpp"
#include "config/database_url.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trackevent::detail {

inline constexpr const char* kDeadLetterFile = "dead-letter.jsonl";
/// The default size cap, and the environment variable that changes it (bytes, at least 4096).
inline constexpr std::uint64_t kDefaultDeadLetterCap = 64ULL << 20;
inline constexpr const char* kDeadLetterCapEnv = "TRACKEVENT_DEAD_LETTER_MAX_BYTES";

/// $TRACKEVENT_DEAD_LETTER_MAX_BYTES when it is a number >= 4096, else 64 MiB.
[[nodiscard]] std::uint64_t dead_letter_cap() noexcept;

/// One line of the file, as read.
struct DeadLetterLine {
  std::size_t number = 0;  ///< 1-based
  std::string text;        ///< without the newline
  /// Empty for a valid dead letter; else why not ("not JSON: ...", "event_id: not a UUID").
  std::string problem;
  Event event;             ///< valid lines only
  std::int64_t at_us = 0;  ///< "at": when it was dead-lettered (valid lines only)
  std::string error;       ///< "error"
  std::string sqlstate;    ///< "sqlstate", empty when null
};

/// The file's complete lines at one moment. `end` is the byte offset after the last newline:
/// what a later commit keeps from the file beyond it was appended meanwhile.
struct DeadLetterSnapshot {
  std::vector<DeadLetterLine> lines;
  std::uint64_t end = 0;
  bool exists = false;
};

/// Reads `dir`/dead-letter.jsonl (no lock needed: appends only add whole lines at the end; a
/// line being written, without its newline yet, is left out). No file: an empty snapshot.
[[nodiscard]] Result<DeadLetterSnapshot> read_dead_letters(const std::filesystem::path& dir);

/// Parses one line as a dead letter (the format DeadLetters::append writes).
[[nodiscard]] DeadLetterLine parse_dead_letter(std::string text, std::size_t number);

/// The line written for `event` refused with `error`/`sqlstate` at `at_us`; `replays`: how many
/// times a replay has tried it (0: not written).
[[nodiscard]] std::string format_dead_letter(const Event& event, std::string_view error,
                                             std::string_view sqlstate, std::int64_t at_us,
                                             int replays = 0);

/// dead-letter.edit.lock, held exclusively; never waits.
class EditLock {
 public:
  /// An error when another process holds it ("busy") or the file cannot be opened.
  static Result<EditLock> try_acquire(const std::filesystem::path& dir);
  EditLock(EditLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  EditLock& operator=(EditLock&&) = delete;
  EditLock(const EditLock&) = delete;
  ~EditLock();

 private:
  explicit EditLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

/// Shared hold on dead-letter.lock for one append, waiting at most `wait` for a rewrite.
class AppendLock {
 public:
  static Result<AppendLock> acquire(const std::filesystem::path& dir,
                                    std::chrono::milliseconds wait);
  AppendLock(AppendLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  AppendLock& operator=(AppendLock&&) = delete;
  AppendLock(const AppendLock&) = delete;
  ~AppendLock();
  void release() noexcept;

 private:
  explicit AppendLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

/// What a commit did.
struct CommitResult {
  std::size_t lines = 0;    ///< lines in the file after it
  std::size_t dropped = 0;  ///< oldest lines dropped to stay under the cap
};

/// Replaces the part of the file `snapshot` read by `head` (lines without newlines), keeping what
/// was appended after it, atomically. Past `cap` bytes, the oldest lines are dropped until the
/// file is at most half the cap (logged at level critical by the caller). Requires the
/// EditLock since the snapshot was read.
[[nodiscard]] Result<CommitResult> commit_dead_letters(const std::filesystem::path& dir,
                                                       const DeadLetterSnapshot& snapshot,
                                                       const std::vector<std::string>& head,
                                                       std::uint64_t cap);

/// After an append: when the file is past `cap`, keeps its newest lines (half the cap) and logs
/// loudly what it dropped. Does nothing while a replay or purge holds the EditLock (that
/// rewrite applies the cap when it commits).
void rotate_dead_letters_if_needed(const std::filesystem::path& dir, std::uint64_t cap) noexcept;

// ---- replay ----------------------------------------------------------------------------------

struct ReplayOptions {
  std::chrono::milliseconds timeout{30000};
  std::size_t batch_size = 1000;
  PgTimeouts pg_timeouts;
};

struct ReplayResult {
  enum class Outcome {
    done,         ///< every valid line was tried
    unreachable,  ///< the database could not take writes: what was not stored stays as it was
    timed_out,    ///< the deadline passed; the rest stays as it was
    busy,         ///< another replay or purge of this file is running
    file_error,   ///< the file could not be read or rewritten: nothing changed
  } outcome = Outcome::done;
  std::size_t stored = 0;   ///< stored, or already stored (duplicates): left the file
  std::size_t refused = 0;  ///< refused again: kept with the new error
  std::size_t invalid = 0;  ///< lines that are no dead letter: reported and kept
  std::size_t untried = 0;  ///< valid lines not tried (database down, deadline)
  std::size_t dropped = 0;  ///< oldest lines dropped by the size cap at the commit
  std::string error;        ///< why it stopped early
  std::string sqlstate;
};

/// Sends every valid dead letter in `dir` again, with its own event_id and occurred_at, through
/// the delivery policy (retries, bisection of refused rows); then rewrites the file once: stored
/// lines leave, refused ones stay with their new error, everything else stays as it was. Bad
/// lines are logged (file, line, why). Never throws.
[[nodiscard]] ReplayResult replay_dead_letters(const DbTarget& target,
                                               const std::filesystem::path& dir,
                                               const ReplayOptions& options);

}  // namespace trackevent::detail
