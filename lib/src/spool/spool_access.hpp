#pragma once
// SpoolAccess: the Tracker's one handle on the spool and the dead-letter file.

#include "trackevent/event.hpp"

#include "base/result.hpp"
#include "spool/spool.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// Opens the spool lazily (most runs never need it) and serialises its use: track() callers spool
/// on overflow while the dispatcher spools failed batches and drains. Nothing here throws.
class SpoolAccess {
 public:
  /// `dir` empty: default_spool_dir(), resolved at first use.
  explicit SpoolAccess(std::filesystem::path dir, SpoolOptions options = {});

  /// Events per transaction in append_chunked(): a failed transaction loses at most this many.
  static constexpr std::size_t kChunk = 1000;

  /// What append_chunked() committed. Not a Result: part of the events may be kept while the
  /// rest fails.
  struct Chunked {
    std::size_t kept = 0;          ///< events committed
    std::optional<Error> failure;  ///< why the others were not (the last failure), if any
  };

  /// Appends in one transaction and gives the spool ids the events got. Fails when the spool
  /// cannot be opened or the append fails.
  Result<Spool::Ids> append(std::span<const Event> events) noexcept;
  /// Rows still in the spool with ids in [first, last]; an error when there is no spool.
  Result<std::int64_t> count_between(std::int64_t first, std::int64_t last) noexcept;
  /// Appends in transactions of at most `chunk` events, going on after a failed one (a full
  /// disk may still take a smaller chunk).
  Chunked append_chunked(std::span<const Event> events, std::size_t chunk = kChunk) noexcept;
  /// Claims from a spool that already exists (never creates one); none when there is none.
  Result<std::vector<SpooledEvent>> claim(std::size_t max, std::chrono::seconds lease) noexcept;
  /// Spool::remove(); an error when no spool is open.
  Result<> remove(std::span<const std::int64_t> ids) noexcept;
  /// Spool::release(); an error when no spool is open.
  Result<> release(std::span<const std::int64_t> ids) noexcept;
  /// Renews the lease of rows this process still holds (Spool::extend); an error when no spool
  /// is open.
  Result<> extend(std::span<const std::int64_t> ids, std::chrono::seconds lease) noexcept;
  /// Appends one rejected row to the dead-letter file.
  Result<> dead_letter(const Event& event, std::string_view err,
                       std::string_view sqlstate) noexcept;

 private:
  // Requires mutex_. The spool, or null when `create` is false and there is none; an error when
  // it cannot be opened (tried again at most once a second).
  Result<Spool*> open_locked(bool create) noexcept;
  // Requires mutex_. dir_, resolved from the environment on first use.
  Result<> resolve_dir_locked();

  std::mutex mutex_;
  std::filesystem::path dir_;
  SpoolOptions options_;
  std::unique_ptr<Spool> spool_;
  std::optional<std::chrono::steady_clock::time_point> last_failure_;
  std::string last_error_;
  std::unique_ptr<DeadLetters> dead_letters_;
};

}  // namespace trackevent::detail
