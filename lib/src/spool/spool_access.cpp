#include "spool/spool_access.hpp"

#include <algorithm>
#include <new>
#include <system_error>
#include <utility>

namespace trackevent::detail {

namespace {

// Short enough for the small-string buffer: returning it allocates nothing.
const Error kNoSpool{"no spool open"};

}  // namespace

SpoolAccess::SpoolAccess(std::filesystem::path dir, SpoolOptions options)
    : dir_(std::move(dir)), options_(options) {}

Result<> SpoolAccess::resolve_dir_locked() {
  if (!dir_.empty()) return ok();
  Result<std::filesystem::path> dir = default_spool_dir();
  if (!dir) return std::move(dir).error();
  dir_ = std::move(dir).value();
  return ok();
}

Result<Spool*> SpoolAccess::open_locked(bool create) noexcept {
  if (spool_) return spool_.get();
  const auto now = std::chrono::steady_clock::now();
  // Overflow can call this per event; do not hammer the file system while it keeps failing.
  if (last_failure_ && now - *last_failure_ < std::chrono::seconds{1}) return Error{last_error_};
  try {
    if (Result<> resolved = resolve_dir_locked(); !resolved) {
      last_error_ = "spool " + dir_.string() + ": " + resolved.error().message;
    } else {
      std::error_code ec;
      if (!create && !std::filesystem::exists(dir_ / "spool.db", ec)) return nullptr;  // none
      Result<std::unique_ptr<Spool>> opened = Spool::try_open(dir_, options_);
      if (opened) {
        spool_ = std::move(opened).value();
        last_failure_.reset();
        return spool_.get();
      }
      last_error_ = "spool " + dir_.string() + ": " + opened.error().message;
    }
  } catch (const std::bad_alloc& e) {
    last_error_ = "spool " + dir_.string() + ": " + e.what();
  }
  last_failure_ = now;
  return Error{last_error_};
}

Result<Spool::Ids> SpoolAccess::append(std::span<const Event> events) noexcept {
  std::lock_guard lock(mutex_);
  Result<Spool*> spool = open_locked(true);
  if (!spool) return std::move(spool).error();
  return (*spool)->append(events);
}

Result<std::int64_t> SpoolAccess::count_between(std::int64_t first, std::int64_t last) noexcept {
  std::lock_guard lock(mutex_);
  if (!spool_) return kNoSpool;
  return spool_->count_between(first, last);
}

SpoolAccess::Chunked SpoolAccess::append_chunked(std::span<const Event> events,
                                                 std::size_t chunk) noexcept {
  chunk = std::max<std::size_t>(chunk, 1);
  Chunked out;
  while (!events.empty()) {
    const auto part = events.first(std::min(chunk, events.size()));
    if (Result<Spool::Ids> appended = append(part); appended) {
      out.kept += part.size();
    } else {
      out.failure = std::move(appended).error();
    }
    events = events.subspan(part.size());
  }
  return out;
}

Result<std::vector<SpooledEvent>> SpoolAccess::claim(std::size_t max,
                                                     std::chrono::seconds lease) noexcept {
  std::lock_guard lock(mutex_);
  Result<Spool*> spool = open_locked(false);
  if (!spool) return std::move(spool).error();
  if (*spool == nullptr) return std::vector<SpooledEvent>{};
  return (*spool)->claim(max, lease);
}

Result<> SpoolAccess::remove(std::span<const std::int64_t> ids) noexcept {
  std::lock_guard lock(mutex_);
  if (!spool_) return kNoSpool;
  return spool_->remove(ids);
}

Result<> SpoolAccess::release(std::span<const std::int64_t> ids) noexcept {
  std::lock_guard lock(mutex_);
  if (!spool_) return kNoSpool;
  return spool_->release(ids);
}

Result<> SpoolAccess::extend(std::span<const std::int64_t> ids,
                             std::chrono::seconds lease) noexcept {
  std::lock_guard lock(mutex_);
  if (!spool_) return kNoSpool;
  return spool_->extend(ids, lease);
}

Result<> SpoolAccess::dead_letter(const Event& event, std::string_view err,
                                  std::string_view sqlstate) noexcept {
  std::lock_guard lock(mutex_);
  try {
    if (!dead_letters_) {
      if (Result<> resolved = resolve_dir_locked(); !resolved) return resolved;
      dead_letters_ = std::make_unique<DeadLetters>(dir_);
    }
  } catch (const std::bad_alloc& e) {
    return Error{e.what()};
  }
  return dead_letters_->append(event, err, sqlstate);
}

}  // namespace trackevent::detail
