#pragma once
// The spool: a local SQLite file (WAL) holding events that could not be delivered yet.
// Several processes may share one spool; each claims rows under a lease before delivering them.

#include "trackevent/event.hpp"

#include "base/result.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// A spool that cannot be opened (unsafe directory permissions, unwritable, corrupt): thrown by
/// Spool::open() only (and by the public spool_directory(), for a missing home).
struct SpoolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// $TRACKEVENT_SPOOL_DIR, else $XDG_STATE_HOME/trackevent, else $HOME/.local/state/trackevent
/// (HOME from the password database when unset); an error when there is no home either.
Result<std::filesystem::path> default_spool_dir();

struct SpooledEvent {
  std::int64_t spool_id = 0;  ///< row id in the spool, for remove()/release()
  Event event;
};

/// How a spool is opened. The defaults suit the spool's role as a buffer in front of a database.
struct SpoolOptions {
  /// false: WAL + synchronous=NORMAL. A committed append survives the process crashing (kill -9),
  /// but the last transactions may be lost if the machine loses power.
  /// true: WAL + synchronous=FULL (fsync on every commit), for `--durable`; slower.
  bool full_sync = false;
  /// Upper bound on any wait for another connection's lock (other threads or processes).
  std::chrono::milliseconds busy_timeout{5000};
  /// false: closing does not checkpoint the WAL into the database file (SQLite does when the last
  /// connection closes), for a short-lived writer whose events a drain reads right after.
  bool checkpoint_on_close = true;
};

/// Fork: a child process must not use its parent's SQLite connection. Each Spool records the pid
/// that opened it and, when a call comes from another pid, closes the inherited handle and
/// reopens the file before doing anything. Forking while another thread is inside a Spool call is
/// not supported (the child would inherit a locked mutex).
///
/// Errors (docs/architecture.md, "Errors"): open() throws, as a spool it cannot open is no spool;
/// every other call returns a Result and never throws.
class Spool {
 public:
  /// The spool ids (first, last) of the events one append() wrote: consecutive, as an append is
  /// one transaction. {0, -1} for no events.
  using Ids = std::pair<std::int64_t, std::int64_t>;

  /// Opens (creating with mode 0700/0600 as needed) `dir`/spool.db. Throws SpoolError when the
  /// directory is writable by group or others, or the file cannot be opened. Every SQLite wait
  /// is bounded by a busy timeout.
  static std::unique_ptr<Spool> open(const std::filesystem::path& dir);
  static std::unique_ptr<Spool> open(const std::filesystem::path& dir, const SpoolOptions& options);
  /// As open(), for a caller that opens the spool while running (the Tracker's SpoolAccess): the
  /// reason instead of an exception. Throws only std::bad_alloc.
  static Result<std::unique_ptr<Spool>> try_open(const std::filesystem::path& dir,
                                                 const SpoolOptions& options);
  virtual ~Spool() = default;

  /// Appends in one transaction and gives the ids the events got. On failure (disk full, I/O
  /// error) nothing is written.
  virtual Result<Ids> append(std::span<const Event> events) noexcept = 0;
  /// Claims up to `max` unclaimed (or lease-expired) events, oldest first, for `lease`.
  /// Other processes will not claim them until the lease expires.
  virtual Result<std::vector<SpooledEvent>> claim(std::size_t max,
                                                  std::chrono::seconds lease) noexcept = 0;
  /// Deletes delivered events.
  virtual Result<> remove(std::span<const std::int64_t> spool_ids) noexcept = 0;
  /// Gives claimed events back (delivery failed) so any process may claim them again. Only rows
  /// this process still holds are released: once our lease has expired and another process has
  /// claimed a row, releasing it would break that process's lease, so it is left alone.
  virtual Result<> release(std::span<const std::int64_t> spool_ids) noexcept = 0;
  /// Renews the lease of claimed events: other processes will not claim them until `lease` from
  /// now. For a delivery that may outlast its claim's lease. Only rows this process still holds
  /// are renewed (the rule of release()); removed rows, and rows another process has claimed
  /// since our lease expired, are left alone.
  virtual Result<> extend(std::span<const std::int64_t> spool_ids,
                          std::chrono::seconds lease) noexcept = 0;
  /// Events currently in the spool (claimed or not).
  virtual Result<std::int64_t> count() noexcept = 0;
  /// Rows still in the spool with ids in [first, last].
  virtual Result<std::int64_t> count_between(std::int64_t first, std::int64_t last) noexcept = 0;
  [[nodiscard]] virtual const std::filesystem::path& path() const noexcept = 0;
};

/// Keeps a claim's lease alive while delivering it takes long (halving a large batch until each
/// bad row stands alone can outlast the lease, and then another process may claim the same rows):
/// due() once half the lease has passed since the claim or the last renewal; renew() then extends
/// the lease of the rows still held by a full lease. `now` is the clock (tests pass a fake one).
class LeaseRenewer {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  /// Renews through `extend` (Spool::extend, or the Tracker's SpoolAccess::extend).
  using Extend = std::function<Result<>(std::span<const std::int64_t>, std::chrono::seconds)>;
  LeaseRenewer(
      Extend extend, std::chrono::seconds lease,
      std::function<TimePoint()> now = [] { return std::chrono::steady_clock::now(); });
  LeaseRenewer(
      Spool& spool, std::chrono::seconds lease,
      std::function<TimePoint()> now = [] { return std::chrono::steady_clock::now(); });
  /// The lease a claim is taken with and renewed for.
  [[nodiscard]] std::chrono::seconds lease() const noexcept { return lease_; }
  /// The rows were claimed just now: the count starts again.
  void claimed() noexcept;
  /// Half the lease has passed since claimed() or the last successful renew().
  [[nodiscard]] bool due() const noexcept;
  /// Extends the lease of `ids`; on error the renewal stays due, to be tried again.
  Result<> renew(std::span<const std::int64_t> ids) noexcept;

 private:
  Extend extend_;
  std::chrono::seconds lease_;
  std::function<TimePoint()> now_;
  TimePoint since_;
};

/// Appends rejected rows to `dir`/dead-letter.jsonl (mode 0600), one JSON object per line:
/// the event's fields plus "error", "sqlstate" and "at". Safe across threads and processes
/// (O_APPEND), and against a concurrent `trackevent dead-letters replay`/`purge` (a shared flock,
/// spool/dead_letter_file.hpp). Past its size cap (TRACKEVENT_DEAD_LETTER_MAX_BYTES, 64 MiB) the
/// file keeps its newest lines, logged at level critical.
/// An append is durable when it succeeds: the line is written whole and fdatasync'd (and the
/// directory fsync'd when the append created the file), so the caller may then delete the spool
/// row, the event's only other copy. A failure after the write (the sync failed) may have left
/// the line in the file: a retry can then write it twice, never zero times.
class DeadLetters {
 public:
  explicit DeadLetters(std::filesystem::path dir);
  /// Writes the line for `event`, refused with `error` and `sqlstate`. Fails (never throws) when
  /// the line could not be written durably, saying why (e.g. "cannot open …: No space left on
  /// device").
  Result<> append(const Event& event, std::string_view error, std::string_view sqlstate) noexcept;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  std::uint64_t cap_;  // dead_letter_cap() when constructed
};

}  // namespace trackevent::detail
