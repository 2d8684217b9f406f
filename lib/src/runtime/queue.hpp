#pragma once
// BoundedQueue: the hand-off between track() callers and the dispatcher thread.

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace trackevent::detail {

/// A bounded multi-producer queue with one consumer at a time. Only data items count against
/// `capacity`; control items (`T::is_control()`, e.g. flush markers) always fit, so a flush can be
/// queued behind the data it waits for even when the queue is full.
///
/// Two parts, one FIFO order:
/// - a small lock-free ring (at most kMaxRing cells, allocated zeroed, so cache-warm and cheap) for
///   the common case where the consumer keeps up: a push is one compare-and-swap that takes a
///   ticket, a move into the cell and a release store that publishes it;
/// - a side list under a mutex for control items (rare: one per flush()) and, while the ring is
///   full, for data ("spill mode", e.g. a bulk load ahead of the database). Each side entry is
///   tagged with the ring's ticket count when it was queued, and pop() takes it once every ring
///   item before it is taken. While spilling, the ring takes no tickets, so nothing overtakes the
///   spilled items; the consumer ends spill mode when it has taken the last of them.
///
/// Producers signal the consumer only when it sleeps deeply *and* what it waits for has arrived
/// (`wake_at` data items, or a half-full ring, whichever comes first). While items have been
/// flowing recently a waiting consumer polls in short slices instead, so a steady stream of pushes
/// never pays for a system call; after `kQuietPolls` slices without a push it sleeps until
/// signalled or its deadline. Control items, close() and wake() always signal.
///
/// Consumers are serialised by a mutex (the dispatcher, or the thread spooling leftovers after
/// it). A pop() that finds a ticket taken but its item not yet published waits for the producer
/// to finish (a few instructions, unless the producer is preempted), so it never skips an item.
template <class T>
class BoundedQueue {
 public:
  enum class Push { ok, full, closed };

  static constexpr std::size_t kMaxRing = 4096;
  /// Slice of a waiting pop() while recently busy, and how many quiet slices end that phase.
  static constexpr std::chrono::milliseconds kPollSlice{1};
  static constexpr int kQuietPolls = 50;

  explicit BoundedQueue(std::size_t capacity)
      : capacity_(capacity == 0 ? 1 : capacity),
        size_(std::bit_ceil(std::clamp<std::size_t>(capacity_, 2, kMaxRing))),
        shift_(static_cast<unsigned>(std::countr_zero(size_))) {
    // calloc: zero state means "free for lap 0".
    cells_ = static_cast<Cell*>(std::calloc(size_, sizeof(Cell)));
    if (cells_ == nullptr) throw std::bad_alloc();
  }

  ~BoundedQueue() {
    const std::uint64_t tail = tail_.load() & kTicket;
    for (std::uint64_t t = head_; t < tail; ++t) {
      Cell& c = cell(t);
      if (state(c).load(std::memory_order_acquire) == published(t)) item(c)->~T();
    }
    std::free(cells_);
  }

  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  /// Moves `item` in if there is room; leaves it untouched otherwise, so the caller can spool it.
  Push try_push(T& item) {
    std::uint64_t t = tail_.load(std::memory_order_relaxed);
    for (;;) {
      if ((t & kClosed) != 0) return Push::closed;
      if ((t & kSpill) != 0) {
        const auto r = push_side(item);
        if (r) return *r;
        t = tail_.load();
        continue;  // spill mode just ended: back to the ring
      }
      const std::uint64_t head = head_seen_.load(std::memory_order_acquire);
      if (head > (t & kTicket)) {  // `t` is older than the consumer's progress: look again
        t = tail_.load();
        continue;
      }
      const std::uint64_t in_ring = (t & kTicket) - head;
      if (in_ring >= capacity_) return Push::full;
      if (in_ring >= size_) {
        // Ring full: data goes to the side list until the consumer has taken all of it.
        if (tail_.compare_exchange_weak(t, t | kSpill)) t |= kSpill;
        continue;
      }
      if (tail_.compare_exchange_weak(t, t + 1)) break;
    }
    publish(std::move(item), t & kTicket);
    return Push::ok;
  }

  /// Waits for room (backpressure). Bounded only by close(): it returns Push::closed then.
  Push push_wait(T& item) {
    for (;;) {
      const Push r = try_push(item);
      if (r != Push::full) return r;
      std::unique_lock lock(full_mutex_);
      full_waiters_.fetch_add(1);
      not_full_.wait(lock, [&] { return closed() || size() < capacity_; });
      full_waiters_.fetch_sub(1);
    }
  }

  /// Queues a control item regardless of capacity. False when closed.
  bool push_control(T item) {
    {
      std::lock_guard lock(side_mutex_);
      const std::uint64_t t = tail_.load();
      if ((t & kClosed) != 0) return false;
      side_.push_back(SideEntry{t & kTicket, std::move(item)});
      side_controls_.fetch_add(1);
    }
    signal_consumer();
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
    std::unique_lock lock(mutex_);
    wake_at_.store(std::clamp<std::size_t>(wake_at, 1, std::max<std::size_t>(max_data, 1)));
    if (!ready() && wait > std::chrono::nanoseconds::zero()) wait_locked(lock, wait);
    woken_.store(false);

    std::size_t moved = 0;
    std::size_t data_moved = 0;
    bool control_seen = false;
    for (;;) {
      if (side_data_.load() + side_controls_.load() > 0 &&
          take_side(out, max_data, data_moved, moved, control_seen)) {
        if (control_seen || data_moved == max_data) break;
      }
      if (data_moved == max_data) break;
      Cell& c = cell(head_);
      if (state(c).load(std::memory_order_acquire) != published(head_)) {
        if (head_ >= (tail_.load() & kTicket)) break;  // nothing more is on its way
        std::this_thread::yield();  // a producer holds this ticket: let it finish
        continue;
      }
      T* p = item(c);
      out.push_back(std::move(*p));
      p->~T();
      state(c).store(published(head_) + 1, std::memory_order_release);  // free for the next lap
      ++head_;
      ++moved;
      ++data_moved;
    }
    if (data_moved > 0) {
      head_seen_.store(head_);
      quiet_polls_ = kQuietPolls;
    }
    lock.unlock();
    if (data_moved > 0 && full_waiters_.load() > 0) {
      { std::lock_guard full(full_mutex_); }
      not_full_.notify_all();
    }
    return moved;
  }

  /// Ends a pending pop() wait early (e.g. a shutdown deadline changed).
  void wake() {
    {
      // Under the lock, so a pop() in progress cannot clear it before its next wait.
      std::lock_guard lock(mutex_);
      woken_.store(true);
    }
    signal_consumer();
  }

  /// Refuses further pushes and wakes every waiter; what is queued can still be popped.
  void close() {
    {
      std::lock_guard lock(side_mutex_);  // a side push sees the bit or comes before it
      tail_.fetch_or(kClosed);
    }
    signal_consumer();
    { std::lock_guard full(full_mutex_); }
    not_full_.notify_all();
  }

  [[nodiscard]] bool closed() const { return (tail_.load() & kClosed) != 0; }
  /// Data items queued (control items excluded).
  [[nodiscard]] std::size_t size() const {
    const std::uint64_t tail = tail_.load() & kTicket;
    const std::uint64_t head = head_seen_.load();
    return static_cast<std::size_t>((tail > head ? tail - head : 0) + side_data_.load());
  }
  /// Data items ever pushed.
  [[nodiscard]] std::uint64_t pushed() const noexcept {
    return (tail_.load() & kTicket) + side_pushed_.load();
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  /// A ring slot. `state` is 2*lap while the slot is free for that lap's producer and 2*lap+1
  /// once it holds that lap's item (lap = ticket / ring size). Zeroed memory is a valid start.
  struct Cell {
    std::uint64_t state;
    alignas(T) unsigned char storage[sizeof(T)];
  };
  static_assert(alignof(Cell) <= alignof(std::max_align_t), "calloc must align the cells");
  struct SideEntry {
    std::uint64_t position;  // ring tickets taken before it
    T item;
  };
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kSpill = std::uint64_t{1} << 61;
  static constexpr std::uint64_t kTicket = kSpill - 1;

  static std::atomic_ref<std::uint64_t> state(Cell& c) noexcept {
    return std::atomic_ref<std::uint64_t>(c.state);
  }
  static T* item(Cell& c) noexcept { return std::launder(reinterpret_cast<T*>(c.storage)); }
  Cell& cell(std::uint64_t ticket) noexcept { return cells_[ticket & (size_ - 1)]; }
  [[nodiscard]] std::uint64_t published(std::uint64_t ticket) const noexcept {
    return 2 * (ticket >> shift_) + 1;
  }

  /// Fills the ticket's cell (free: the ring-full check came first) and wakes a deeply sleeping
  /// consumer once what it waits for is there.
  void publish(T&& value, std::uint64_t ticket) {
    Cell& c = cell(ticket);
    const std::uint64_t free_state = published(ticket) - 1;
    while (state(c).load(std::memory_order_acquire) != free_state) std::this_thread::yield();
    ::new (static_cast<void*>(c.storage)) T(std::move(value));
    state(c).store(free_state + 1, std::memory_order_release);
    // The ticket's compare-and-swap came before this load; the consumer stores `sleeping_`
    // before it reads the tail: one of the two sees the other (all sequentially consistent).
    const std::uint64_t head = head_seen_.load();  // may already be past this ticket
    const std::uint64_t in_ring = head > ticket ? 0 : ticket + 1 - head;
    if (sleeping_.load()) {
      if (in_ring >= wake_at_.load() || in_ring >= size_ / 2) wake_if_ready();
    } else if (in_ring == size_ / 2) {
      // A polling consumer would see this within a slice; at a high push rate the ring could
      // fill (and spill) before that. A hint, lock-free: no system call unless it is waiting.
      not_empty_.notify_one();
    }
  }

  /// A data push in spill mode. Empty when spill mode has ended (push to the ring instead).
  std::optional<Push> push_side(T& value) {
    {
      std::lock_guard lock(side_mutex_);
      const std::uint64_t t = tail_.load();
      if ((t & kClosed) != 0) return Push::closed;
      if ((t & kSpill) == 0) return std::nullopt;
      if (size() >= capacity_) return Push::full;
      side_.push_back(SideEntry{t & kTicket, std::move(value)});
      side_pushed_.fetch_add(1);
      side_data_.fetch_add(1);
    }
    if (sleeping_.load() && size() >= wake_at_.load()) wake_if_ready();
    return Push::ok;
  }

  /// Moves side entries that are due (every ring item before them taken) into `out`. True when
  /// it moved any. Ends spill mode once the last spilled data item is taken.
  bool take_side(std::vector<T>& out, std::size_t max_data, std::size_t& data_moved,
                 std::size_t& moved, bool& control_seen) {
    std::lock_guard lock(side_mutex_);
    bool any = false;
    while (!side_.empty() && side_.front().position <= head_) {
      const bool control = side_.front().item.is_control();
      if (!control && data_moved == max_data) break;
      out.push_back(std::move(side_.front().item));
      side_.pop_front();
      any = true;
      ++moved;
      if (control) {
        side_controls_.fetch_sub(1);
        control_seen = true;
        break;
      }
      ++data_moved;
      if (side_data_.fetch_sub(1) == 1 && (tail_.load() & kSpill) != 0) {
        tail_.fetch_and(~kSpill);  // the ring is empty and frozen: it may take tickets again
      }
    }
    return any;
  }

  void wake_if_ready() {
    bool notify = false;
    {
      std::lock_guard lock(mutex_);
      if (sleeping_.load() && ready()) {
        sleeping_.store(false);
        notify = true;
      }
    }
    if (notify) not_empty_.notify_one();
  }

  void signal_consumer() {
    {
      std::lock_guard lock(mutex_);
      sleeping_.store(false);
    }
    not_empty_.notify_all();
  }

  /// Waits (with mutex_ held by `lock`) until ready() or `wait` has passed: polls while recently
  /// busy, then sleeps until a producer signals.
  void wait_locked(std::unique_lock<std::mutex>& lock, std::chrono::nanoseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::uint64_t seen = pushed();
    while (quiet_polls_ > 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return;
      not_empty_.wait_until(
          lock, std::min<std::chrono::steady_clock::time_point>(deadline, now + kPollSlice));
      if (ready()) return;
      const std::uint64_t p = pushed();
      if (p != seen) {
        seen = p;
        quiet_polls_ = kQuietPolls;  // still busy, just not enough yet
      } else {
        --quiet_polls_;
      }
    }
    for (;;) {
      // Announce the sleep, then look again (see publish()).
      sleeping_.store(true);
      if (ready()) break;
      const auto status = not_empty_.wait_until(lock, deadline);
      if (ready() || status == std::cv_status::timeout) break;
    }
    sleeping_.store(false);
  }

  /// Whether a waiting pop() may return: something it asked for is there, or it must stop waiting.
  /// Called with mutex_ held.
  [[nodiscard]] bool ready() const noexcept {
    const std::uint64_t t = tail_.load();
    const std::uint64_t in_ring = (t & kTicket) - head_;
    return (t & kClosed) != 0 || woken_.load() || side_controls_.load() > 0 ||
           in_ring >= size_ / 2 ||  // half full: take what is there, to keep room in the ring
           in_ring + side_data_.load() >= wake_at_.load();
  }

  const std::size_t capacity_;
  const std::size_t size_;  // ring cells: a power of two, at most kMaxRing
  const unsigned shift_;    // log2(size_)
  Cell* cells_ = nullptr;

  alignas(64) std::atomic<std::uint64_t> tail_{0};  // next ticket | kSpill | kClosed

  // Read by producers, written by the consumer.
  alignas(64) std::atomic<std::uint64_t> head_seen_{0};  // head_ as of the last pop()
  std::atomic<bool> sleeping_{false};    // a pop() sleeps deeply and has not been signalled
  std::atomic<std::size_t> wake_at_{1};  // data items the sleeping pop() waits for
  std::atomic<bool> woken_{false};

  // The consumer's side.
  alignas(64) std::mutex mutex_;  // one pop() at a time; also guards the sleep
  std::condition_variable not_empty_;
  std::uint64_t head_ = 0;  // next ticket to take (under mutex_)
  int quiet_polls_ = 0;     // poll slices left before a deep sleep (under mutex_)

  alignas(64) std::mutex side_mutex_;
  std::deque<SideEntry> side_;  // FIFO
  std::atomic<std::size_t> side_data_{0};
  std::atomic<std::size_t> side_controls_{0};
  std::atomic<std::uint64_t> side_pushed_{0};  // spilled data items ever

  std::mutex full_mutex_;
  std::condition_variable not_full_;
  std::atomic<std::size_t> full_waiters_{0};  // producers blocked in push_wait()
};

}  // namespace trackevent::detail
