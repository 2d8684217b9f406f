#pragma once
// SpoolAccess: the Tracker's one handle on the spool and the dead-letter file.

#include "trackevent/event.hpp"

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

  /// Appends in one transaction. False, with the reason in `error`, when the spool cannot be
  /// opened or the append fails.
  bool append(std::span<const Event> events, std::string& error) noexcept;
  /// As above; on success puts the spool ids (first, last) the events were given in `rows`.
  bool append(std::span<const Event> events, std::string& error,
              std::pair<std::int64_t, std::int64_t>& rows) noexcept;
  /// Rows still in the spool with ids in [first, last]; -1 on error or when there is no spool.
  std::int64_t count_between(std::int64_t first, std::int64_t last) noexcept;
  /// Appends in transactions of at most `chunk` events, going on after a failed one (a full
  /// disk may still take a smaller chunk). Returns how many events were committed; the reason
  /// of the last failure is in `error`.
  std::size_t append_chunked(std::span<const Event> events, std::string& error,
                             std::size_t chunk = kChunk) noexcept;
  /// Claims from a spool that already exists (never creates one); empty when there is none.
  std::vector<SpooledEvent> claim(std::size_t max, std::chrono::seconds lease) noexcept;
  bool remove(std::span<const std::int64_t> ids) noexcept;
  bool release(std::span<const std::int64_t> ids) noexcept;
  /// Renews the lease of rows this process still holds (Spool::extend); false on error or when
  /// no spool is open.
  bool extend(std::span<const std::int64_t> ids, std::chrono::seconds lease) noexcept;
  /// Appends one rejected row to the dead-letter file; false (with `error`) when that failed.
  bool dead_letter(const Event& event, std::string_view err, std::string_view sqlstate,
                   std::string& error) noexcept;

 private:
  // Requires mutex_. Null (with `error`) when it cannot be opened; retries at most once a second.
  Spool* open_locked(bool create, std::string& error) noexcept;

  std::mutex mutex_;
  std::filesystem::path dir_;
  SpoolOptions options_;
  std::unique_ptr<Spool> spool_;
  std::optional<std::chrono::steady_clock::time_point> last_failure_;
  std::string last_error_;
  std::unique_ptr<DeadLetters> dead_letters_;
};

}  // namespace trackevent::detail
