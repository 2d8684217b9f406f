#pragma once
// FakeSink: a scriptable Sink for Tracker tests. It records what it stores, can fail the next N
// writes, can hold writers at a gate until released, and rejects batches holding given ids.

#include "trackevent/sink.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace trackevent::test {

/// A valid event whose id (a UUIDv7 shape) ends in `n`, so tests can tell events apart and reject
/// chosen ones by id: org 1, no user, event "test.event".
inline Event numbered_event(std::uint32_t n) {
  Event e;
  e.event_id.bytes[0] = 0x01;
  e.event_id.bytes[6] = 0x70;
  e.event_id.bytes[12] = static_cast<std::uint8_t>(n >> 24);
  e.event_id.bytes[13] = static_cast<std::uint8_t>(n >> 16);
  e.event_id.bytes[14] = static_cast<std::uint8_t>(n >> 8);
  e.event_id.bytes[15] = static_cast<std::uint8_t>(n);
  e.org_id = 1;
  e.event_name = "test.event";
  return e;
}

class FakeSink final : public Sink {
 public:
  WriteResult write(std::span<const Event> batch) noexcept override {
    std::unique_lock lock(mutex_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return gate_open_; });
    WriteResult result;
    if (!failures_.empty()) {
      result.failure = failures_.front();
      failures_.pop_front();
    } else {
      for (const auto& e : batch) {
        if (bad_ids_.contains(e.event_id)) {
          result.failure = Failure{Disposition::reject, "22P02", "invalid input syntax"};
          break;
        }
      }
    }
    if (!result.failure) {
      for (const auto& e : batch) {
        if (stored_ids_.insert(e.event_id).second) {
          ++result.stored;
          stored_.push_back(e);
        } else {
          ++result.duplicates;
        }
      }
      batch_sizes_.push_back(batch.size());
    }
    ++completed_;
    cv_.notify_all();
    return result;
  }
  [[nodiscard]] std::string describe() const override { return "fake"; }

  /// The next `n` writes fail with `failure`, whatever the batch holds.
  void fail_next(std::size_t n, const Failure& failure) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < n; ++i) failures_.push_back(failure);
  }
  /// Any batch holding `id` is refused as bad data (Disposition::reject).
  void reject_id(const Uuid& id) {
    std::lock_guard lock(mutex_);
    bad_ids_.insert(id);
  }
  /// Writers wait inside write() until open_gate().
  void close_gate() {
    std::lock_guard lock(mutex_);
    gate_open_ = false;
  }
  void open_gate() {
    {
      std::lock_guard lock(mutex_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }
  /// Waits until `n` writes have started (a writer may be held at the gate).
  bool wait_entered(std::size_t n, std::chrono::seconds timeout = std::chrono::seconds{30}) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return entered_ >= n; });
  }
  /// Waits until `n` writes have returned.
  bool wait_completed(std::size_t n, std::chrono::seconds timeout = std::chrono::seconds{30}) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return completed_ >= n; });
  }

  [[nodiscard]] std::vector<Event> stored() const {
    std::lock_guard lock(mutex_);
    return stored_;
  }
  [[nodiscard]] std::size_t stored_count() const {
    std::lock_guard lock(mutex_);
    return stored_.size();
  }
  [[nodiscard]] std::vector<std::size_t> batch_sizes() const {
    std::lock_guard lock(mutex_);
    return batch_sizes_;
  }
  [[nodiscard]] std::size_t writes() const {
    std::lock_guard lock(mutex_);
    return completed_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool gate_open_ = true;
  std::size_t entered_ = 0;
  std::size_t completed_ = 0;
  std::deque<Failure> failures_;
  std::set<Uuid> bad_ids_;
  std::set<Uuid> stored_ids_;
  std::vector<Event> stored_;
  std::vector<std::size_t> batch_sizes_;
};

/// A sink that only counts, with no lock at all: safe to use from a forked child even when a
/// parent thread was inside write() at fork time (FakeSink's mutex would then stay locked).
class CountingSink final : public Sink {
 public:
  WriteResult write(std::span<const Event> batch) noexcept override {
    stored_.fetch_add(batch.size());
    WriteResult result;
    result.stored = batch.size();
    return result;
  }
  [[nodiscard]] std::string describe() const override { return "counting"; }
  [[nodiscard]] std::size_t stored() const { return stored_.load(); }

 private:
  std::atomic<std::size_t> stored_{0};
};

}  // namespace trackevent::test
