#pragma once
// BoundedQueue: the hand-off between track() callers and the dispatcher thread.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// A FIFO behind one mutex (spdlog's mpmc_blocking_q was the model). Only data items count against
/// `capacity`; control items (`T::is_control()`, e.g. flush markers) always fit, so a flush can be
/// queued behind the data it waits for even when the queue is full.
///
/// Cheap pushes: a push holds the lock for a move into a ring buffer (which only grows, so a push
/// allocates only while the queue reaches a new high-water mark) and signals the consumer only when
/// the consumer is asleep in pop() *and* what it waits for has arrived (`wake_at` data items, a
/// control item, close() or wake()). A producer never makes a system call while the consumer is
/// busy, and a consumer that waits for a whole batch is woken once per batch, not once per push.
/// One thread at a time is expected to wait in pop() (the dispatcher); others may pop without
/// waiting.
template <class T>
class BoundedQueue {
 public:
  enum class Push { ok, full, closed };

  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  /// Moves `item` in if there is room; leaves it untouched otherwise, so the caller can spool it.
  Push try_push(T& item) {
    bool notify = false;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return Push::closed;
      if (data_count_ >= capacity_) return Push::full;
      push_locked(std::move(item));
      ++data_count_;
      notify = should_wake_locked();
    }
    if (notify) not_empty_.notify_all();
    return Push::ok;
  }

  /// Waits for room (backpressure). Bounded only by close(): it returns Push::closed then.
  Push push_wait(T& item) {
    bool notify = false;
    {
      std::unique_lock lock(mutex_);
      if (!closed_ && data_count_ >= capacity_) {
        ++full_waiters_;
        not_full_.wait(lock, [&] { return closed_ || data_count_ < capacity_; });
        --full_waiters_;
      }
      if (closed_) return Push::closed;
      push_locked(std::move(item));
      ++data_count_;
      notify = should_wake_locked();
    }
    if (notify) not_empty_.notify_all();
    return Push::ok;
  }

  /// Queues a control item regardless of capacity. False when closed.
  bool push_control(T item) {
    bool notify = false;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      push_locked(std::move(item));
      ++control_count_;
      notify = should_wake_locked();
    }
    if (notify) not_empty_.notify_all();
    return true;
  }

  /// Moves up to `max_data` data items into `out`, stopping right after a control item, so the
  /// consumer sees a control item only once everything queued before it is in hand. Returns the
  /// number of items moved.
  ///
  /// Waits up to `wait` (not at all once closed) until the queue holds a control item or at least
  /// `wake_at` data items (clamped to 1..max_data; 1: the first item ends the wait), or close() or
  /// wake() is called; then takes whatever is there. A consumer that already holds part of a batch
  /// passes the room left as `wake_at`, so producers wake it once per batch.
  std::size_t pop(std::vector<T>& out, std::size_t max_data, std::chrono::nanoseconds wait,
                  std::size_t wake_at = 1) {
    std::size_t moved = 0;
    std::size_t data_moved = 0;
    bool notify_full = false;
    {
      std::unique_lock lock(mutex_);
      wake_at_ = std::clamp<std::size_t>(wake_at, 1, std::max<std::size_t>(max_data, 1));
      if (!ready_locked() && wait > std::chrono::nanoseconds::zero()) {
        const auto deadline = std::chrono::steady_clock::now() + wait;
        while (!ready_locked()) {
          sleeping_ = true;
          const auto status = not_empty_.wait_until(lock, deadline);
          sleeping_ = false;
          if (status == std::cv_status::timeout) break;
        }
      }
      woken_ = false;
      while (count_ > 0) {
        T& front = ring_[head_];
        const bool control = front.is_control();
        if (!control && data_moved == max_data) break;
        out.push_back(std::move(front));
        front = T{};  // release what the moved-from slot may still own
        head_ = (head_ + 1) & (ring_.size() - 1);
        --count_;
        ++moved;
        if (control) {
          --control_count_;
          break;
        }
        ++data_moved;
      }
      data_count_ -= data_moved;
      notify_full = data_moved > 0 && full_waiters_ > 0;
    }
    if (notify_full) not_full_.notify_all();
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
  /// Whether a waiting pop() may return: something it asked for is there, or it must stop waiting.
  [[nodiscard]] bool ready_locked() const noexcept {
    return closed_ || woken_ || control_count_ > 0 || data_count_ >= wake_at_;
  }

  /// After a push: signal only a consumer that sleeps and now has what it waits for. Clearing
  /// `sleeping_` makes that one signal per sleep; the woken pop() sets it again if it sleeps again.
  [[nodiscard]] bool should_wake_locked() noexcept {
    if (!sleeping_ || !ready_locked()) return false;
    sleeping_ = false;
    return true;
  }

  void push_locked(T&& item) {
    if (count_ == ring_.size()) grow_locked();
    ring_[(head_ + count_) & (ring_.size() - 1)] = std::move(item);
    ++count_;
  }

  /// Doubles the ring (a power of two), unrolling it so the oldest item is at index 0.
  void grow_locked() {
    std::vector<T> bigger(ring_.empty() ? 16 : ring_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) {
      bigger[i] = std::move(ring_[(head_ + i) & (ring_.size() - 1)]);
    }
    ring_ = std::move(bigger);
    head_ = 0;
  }

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::vector<T> ring_;  // size 0 or a power of two; items at head_ .. head_ + count_ (wrapping)
  std::size_t head_ = 0;
  std::size_t count_ = 0;          // items in the ring, data and control
  std::size_t data_count_ = 0;     // data items only: what capacity bounds
  std::size_t control_count_ = 0;  // control items in the ring
  std::size_t wake_at_ = 1;        // data items the sleeping pop() waits for
  std::size_t full_waiters_ = 0;   // producers blocked in push_wait()
  bool sleeping_ = false;          // a pop() is in not_empty_.wait and not yet signalled
  bool closed_ = false;
  bool woken_ = false;
};

}  // namespace trackevent::detail
