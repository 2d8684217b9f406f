#pragma once
// BoundedQueue: the hand-off between track() callers and the dispatcher thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// A FIFO behind one mutex and two condition variables (spdlog's mpmc_blocking_q is the model).
/// Only data items count against `capacity`; control items (`T::is_control()`, e.g. flush markers)
/// always fit, so a flush can be queued behind the data it waits for even when the queue is full.
/// A mutex is enough here: the database round trip dominates, and a push holds the lock for a move.
template <class T>
class BoundedQueue {
 public:
  enum class Push { ok, full, closed };

  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  /// Moves `item` in if there is room; leaves it untouched otherwise, so the caller can spool it.
  Push try_push(T& item) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return Push::closed;
      if (data_count_ >= capacity_) return Push::full;
      push_locked(item);
    }
    not_empty_.notify_one();
    return Push::ok;
  }

  /// Waits for room (backpressure). Bounded only by close(): it returns Push::closed then.
  Push push_wait(T& item) {
    {
      std::unique_lock lock(mutex_);
      not_full_.wait(lock, [&] { return closed_ || data_count_ < capacity_; });
      if (closed_) return Push::closed;
      push_locked(item);
    }
    not_empty_.notify_one();
    return Push::ok;
  }

  /// Queues a control item regardless of capacity. False when closed.
  bool push_control(T item) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    return true;
  }

  /// Moves up to `max_data` data items into `out`, stopping right after a control item, so the
  /// consumer sees a control item only once everything queued before it is in hand. Waits up to
  /// `wait` for the first item (not at all once closed). Returns the number of items moved.
  std::size_t pop(std::vector<T>& out, std::size_t max_data, std::chrono::nanoseconds wait) {
    std::size_t moved = 0;
    std::size_t data_moved = 0;
    {
      std::unique_lock lock(mutex_);
      if (items_.empty() && !closed_ && wait > std::chrono::nanoseconds::zero()) {
        not_empty_.wait_for(lock, wait, [&] { return closed_ || !items_.empty() || woken_; });
      }
      woken_ = false;
      while (!items_.empty()) {
        const bool control = items_.front().is_control();
        if (!control && data_moved == max_data) break;
        out.push_back(std::move(items_.front()));
        items_.pop_front();
        ++moved;
        if (control) break;
        ++data_moved;
      }
      data_count_ -= data_moved;
    }
    if (data_moved > 0) not_full_.notify_all();
    return moved;
  }

  /// Ends a pending pop() wait early (e.g. a shutdown deadline changed).
  void wake() {
    {
      std::lock_guard lock(mutex_);
      woken_ = true;
    }
    not_empty_.notify_all();
  }

  /// Refuses further pushes and wakes every waiter; what is queued can still be popped.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  [[nodiscard]] bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }
  /// Data items queued (control items excluded).
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return data_count_;
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  void push_locked(T& item) {
    items_.push_back(std::move(item));
    ++data_count_;
  }

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<T> items_;
  std::size_t data_count_ = 0;
  bool closed_ = false;
  bool woken_ = false;
};

}  // namespace trackevent::detail
