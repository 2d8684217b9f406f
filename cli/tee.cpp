#include "tee.hpp"

#include "log/log.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace trackevent::cli {

Tee::~Tee() {
  // Only stops the thread: the Tracker behind durable_ may be gone by now.
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Tee::write(std::string_view bytes) noexcept {
  {
    std::lock_guard lock(mutex_);
    if (holding_) {
      try {
        held_.append(bytes);
        return;
      } catch (...) {
        // Out of memory: echo at once rather than lose the bytes (durability of the echo lost).
      }
    }
  }
  write_now(bytes);
}

void Tee::write_now(std::string_view bytes) noexcept {
  while (fd_ >= 0 && !bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      written_ += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // stdout was handed to us non-blocking: wait for room rather than spin.
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    const int err = n < 0 ? errno : EIO;
    if (err == EPIPE) {
      log::info("stdout closed; no longer teeing", {{"tee_bytes", written_}});
    } else {
      log::warn("tee write failed; no longer teeing", {{"err", std::strerror(err)}});
    }
    fd_ = -1;
  }
}

// Takes what is held, asks whether it is durable, and echoes it or puts it back in front.
void Tee::echo_durable() noexcept {
  std::string chunk;
  {
    std::lock_guard lock(mutex_);
    chunk.swap(held_);
  }
  if (chunk.empty()) return;
  Durability verdict = Durability::pending;
  try {
    verdict = durable_();
  } catch (...) {
  }
  if (verdict == Durability::durable) {
    write_now(chunk);
    return;
  }
  std::lock_guard lock(mutex_);
  if (verdict == Durability::lost) {
    log::write_limited(log::Level::critical, "tee.lost",
                       "tee: lines withheld: some of their events could not be made durable",
                       {{"bytes", chunk.size()}});
    if (lost_.size() + chunk.size() <= kLostMax) {
      try {
        lost_.append(chunk);
        return;
      } catch (...) {
      }
    }
    lost_withheld_ += chunk.size();
    return;
  }
  try {
    chunk.append(held_);
    held_.swap(chunk);
  } catch (...) {
    write_now(chunk);  // out of memory: echo rather than lose input
  }
}

void Tee::hold_until(std::function<Durability()> durable) {
  std::lock_guard guard(mutex_);
  if (holding_) return;
  durable_ = std::move(durable);
  holding_ = true;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      cv_.wait_for(lock, kHoldInterval, [&] { return stop_; });
      if (stop_) break;
      lock.unlock();
      echo_durable();
      lock.lock();
    }
  });
}

void Tee::stop_holding() noexcept {
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  try {
    thread_.join();
  } catch (...) {
  }
  echo_durable();  // end of input: one last sync covers every line read
}

void Tee::release_held() noexcept {
  std::string lost;
  std::string chunk;
  std::uint64_t withheld = 0;
  {
    std::lock_guard lock(mutex_);
    holding_ = false;
    lost.swap(lost_);
    chunk.swap(held_);
    withheld = std::exchange(lost_withheld_, 0);
  }
  if (withheld > 0) {
    log::write(log::Level::critical,
               "tee: lines never echoed: their events were lost and there were too many to keep",
               {{"bytes", withheld}});
  }
  write_now(lost);
  write_now(chunk);
}

}  // namespace trackevent::cli
