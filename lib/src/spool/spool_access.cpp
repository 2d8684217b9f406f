#include "spool/spool_access.hpp"

#include <algorithm>
#include <exception>
#include <system_error>
#include <utility>

namespace trackevent::detail {

SpoolAccess::SpoolAccess(std::filesystem::path dir, SpoolOptions options)
    : dir_(std::move(dir)), options_(options) {}

Spool* SpoolAccess::open_locked(bool create, std::string& error) noexcept {
  if (spool_) return spool_.get();
  const auto now = std::chrono::steady_clock::now();
  // Overflow can call this per event; do not hammer the file system while it keeps failing.
  if (last_failure_ && now - *last_failure_ < std::chrono::seconds{1}) {
    error = last_error_;
    return nullptr;
  }
  try {
    if (dir_.empty()) dir_ = default_spool_dir();
    if (!create) {
      std::error_code ec;
      if (!std::filesystem::exists(dir_ / "spool.db", ec)) return nullptr;
    }
    spool_ = Spool::open(dir_, options_);
    if (!spool_) throw SpoolError("spool could not be opened");
    last_failure_.reset();
    return spool_.get();
  } catch (const std::exception& e) {
    last_error_ = std::string("spool ") + dir_.string() + ": " + e.what();
  } catch (...) {
    last_error_ = "spool: unknown error";
  }
  last_failure_ = now;
  error = last_error_;
  return nullptr;
}

bool SpoolAccess::append(std::span<const Event> events, std::string& error) noexcept {
  std::lock_guard lock(mutex_);
  Spool* spool = open_locked(true, error);
  return spool != nullptr && spool->append(events, error);
}

bool SpoolAccess::append(std::span<const Event> events, std::string& error,
                         std::pair<std::int64_t, std::int64_t>& rows) noexcept {
  std::lock_guard lock(mutex_);
  Spool* spool = open_locked(true, error);
  if (spool == nullptr || !spool->append(events, error)) return false;
  rows = spool->last_appended();
  return true;
}

std::int64_t SpoolAccess::count_between(std::int64_t first, std::int64_t last) noexcept {
  std::lock_guard lock(mutex_);
  return spool_ ? spool_->count_between(first, last) : -1;
}

std::size_t SpoolAccess::append_chunked(std::span<const Event> events, std::string& error,
                                        std::size_t chunk) noexcept {
  chunk = std::max<std::size_t>(chunk, 1);
  std::size_t kept = 0;
  while (!events.empty()) {
    const auto part = events.first(std::min(chunk, events.size()));
    if (append(part, error)) kept += part.size();
    events = events.subspan(part.size());
  }
  return kept;
}

std::vector<SpooledEvent> SpoolAccess::claim(std::size_t max, std::chrono::seconds lease) noexcept {
  std::lock_guard lock(mutex_);
  std::string error;
  Spool* spool = open_locked(false, error);
  if (spool == nullptr) return {};
  return spool->claim(max, lease);
}

bool SpoolAccess::remove(std::span<const std::int64_t> ids) noexcept {
  std::lock_guard lock(mutex_);
  return spool_ && spool_->remove(ids);
}

bool SpoolAccess::release(std::span<const std::int64_t> ids) noexcept {
  std::lock_guard lock(mutex_);
  return spool_ && spool_->release(ids);
}

bool SpoolAccess::extend(std::span<const std::int64_t> ids, std::chrono::seconds lease) noexcept {
  std::lock_guard lock(mutex_);
  return spool_ && spool_->extend(ids, lease);
}

bool SpoolAccess::dead_letter(const Event& event, std::string_view err, std::string_view sqlstate,
                              std::string& error) noexcept {
  std::lock_guard lock(mutex_);
  try {
    if (!dead_letters_) {
      if (dir_.empty()) dir_ = default_spool_dir();
      dead_letters_ = std::make_unique<DeadLetters>(dir_);
    }
    std::string why;
    if (dead_letters_->append(event, err, sqlstate, why)) return true;
    error = why.empty() ? "could not append to " + dead_letters_->path().string() : why;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "dead letters: unknown error";
  }
  return false;
}

}  // namespace trackevent::detail
