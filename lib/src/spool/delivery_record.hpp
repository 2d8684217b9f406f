#pragma once
// The last successful and the last failed delivery, written beside the spool
// (`last-delivery.json`) for `trackevent status` to read (docs/operations.md).
//
// Writing it never slows delivery: note_*() only update memory and wake a writer thread of
// this object's own, which writes at most once a second (a temporary file renamed over the old
// one, no fsync: a crash may lose the last second of it, which only makes `status` older). Each
// process keeps its own newest values; the writer merges them with what the file holds, keeping
// the newer of each, so processes sharing a spool do not erase each other's news (a race between
// two writers can still keep the older of two values written in the same instant).

#include "base/result.hpp"

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace trackevent::detail {

struct DeliveryEntry {
  std::int64_t at_us = 0;  ///< when, microseconds since the epoch (system clock)
  std::uint64_t events = 0;
  std::string kind;      ///< "stored", or for a failure "unavailable" / "rejected"
  std::string sqlstate;  ///< failures: when the database gave one
  std::string error;     ///< failures: password-free
};

struct DeliveryState {
  std::optional<DeliveryEntry> success;
  std::optional<DeliveryEntry> failure;
};

/// The file name inside the spool directory.
inline constexpr const char* kDeliveryRecordFile = "last-delivery.json";

/// Reads `dir`/last-delivery.json: an empty state when there is none; an error when it exists but
/// cannot be read or is not what this version writes.
Result<DeliveryState> read_delivery_record(const std::filesystem::path& dir) noexcept;

class DeliveryRecord {
 public:
  /// `dir` empty: default_spool_dir(), resolved when first written.
  explicit DeliveryRecord(std::filesystem::path dir);
  /// Writes what is pending (if anything) and stops the writer.
  ~DeliveryRecord();
  DeliveryRecord(const DeliveryRecord&) = delete;
  DeliveryRecord& operator=(const DeliveryRecord&) = delete;

  /// `events` reached the database (stored or duplicates).
  void note_success(std::uint64_t events) noexcept;
  /// A delivery of `events` failed: the database was unavailable or held them back
  /// ("unavailable"), or refused rows as bad data ("rejected").
  void note_failure(std::string_view kind, std::string_view sqlstate, std::string_view error,
                    std::uint64_t events) noexcept;
  /// Writes what is pending now, on the calling thread (tests; the destructor).
  void flush() noexcept;

 private:
  void run() noexcept;
  void wake_locked() noexcept;
  void write(const DeliveryState& state) noexcept;

  std::filesystem::path dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  DeliveryState pending_;
  bool dirty_ = false;
  bool stop_ = false;
  bool failed_once_ = false;  // the writer's first failure is logged, later ones are not
  std::thread writer_;        // started at the first note
  std::mutex write_mu_;       // one write at a time (writer thread, flush())
};

}  // namespace trackevent::detail
