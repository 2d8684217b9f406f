#include "spool/delivery_record.hpp"

#include "trackevent/event.hpp"

#include "log/log.hpp"
#include "spool/fs_util.hpp"
#include "spool/spool.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <system_error>
#include <utility>

namespace trackevent::detail {
namespace {

constexpr std::chrono::seconds kMinInterval{1};

nlohmann::json to_json(const DeliveryEntry& e) {
  nlohmann::json j{
      {"at", format_rfc3339(e.at_us)}, {"at_us", e.at_us}, {"events", e.events}, {"kind", e.kind}};
  if (!e.sqlstate.empty()) j["sqlstate"] = e.sqlstate;
  if (!e.error.empty()) j["error"] = e.error;
  return j;
}

std::optional<DeliveryEntry> from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("at_us") || !j["at_us"].is_number_integer()) {
    return std::nullopt;
  }
  DeliveryEntry e;
  e.at_us = j["at_us"].get<std::int64_t>();
  e.events = j.value("events", std::uint64_t{0});
  e.kind = j.value("kind", std::string{});
  e.sqlstate = j.value("sqlstate", std::string{});
  e.error = j.value("error", std::string{});
  return e;
}

void keep_newer(std::optional<DeliveryEntry>& mine, const std::optional<DeliveryEntry>& theirs) {
  if (theirs && (!mine || theirs->at_us > mine->at_us)) mine = theirs;
}

}  // namespace

Result<DeliveryState> read_delivery_record(const std::filesystem::path& dir) noexcept {
  try {
    const std::filesystem::path path = dir / kDeliveryRecordFile;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      if (errno == ENOENT) return DeliveryState{};
      return Error{"cannot read " + path.string() + ": " + std::strerror(errno)};
    }
    std::stringstream text;
    text << in.rdbuf();
    const auto j = nlohmann::json::parse(text.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Error{path.string() + " is not a JSON object (not written by trackevent?)"};
    }
    DeliveryState state;
    if (j.contains("success")) state.success = from_json(j["success"]);
    if (j.contains("failure")) state.failure = from_json(j["failure"]);
    return state;
  } catch (const std::exception& e) {  // bad_alloc, json type errors on a foreign file
    return Error{std::string("cannot read the delivery record: ") + e.what()};
  }
}

DeliveryRecord::DeliveryRecord(std::filesystem::path dir) : dir_(std::move(dir)) {}

DeliveryRecord::~DeliveryRecord() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  flush();
}

void DeliveryRecord::note_success(std::uint64_t events) noexcept {
  std::lock_guard lock(mu_);
  try {
    pending_.success = DeliveryEntry{now_unix_us(), events, "stored", {}, {}};
  } catch (const std::bad_alloc&) {
    return;  // the record is best effort; delivery goes on
  }
  wake_locked();
}

void DeliveryRecord::note_failure(std::string_view kind, std::string_view sqlstate,
                                  std::string_view error, std::uint64_t events) noexcept {
  std::lock_guard lock(mu_);
  try {
    pending_.failure = DeliveryEntry{now_unix_us(), events, std::string(kind),
                                     std::string(sqlstate), std::string(error)};
  } catch (const std::bad_alloc&) {
    return;
  }
  wake_locked();
}

void DeliveryRecord::wake_locked() noexcept {
  dirty_ = true;
  if (!writer_.joinable() && !stop_) {
    // The library's threads never take SIGINT/SIGTERM (docs/architecture.md, "Threads"): start
    // the writer with every signal blocked; it inherits this thread's mask.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      writer_ = std::thread([this] { run(); });
    } catch (const std::system_error&) {
      // No thread: the destructor's flush() still writes the last state.
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  cv_.notify_all();
}

void DeliveryRecord::run() noexcept {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait(lock, [this] { return stop_ || dirty_; });
    if (stop_) break;
    DeliveryState state = pending_;
    dirty_ = false;
    lock.unlock();
    write(state);
    lock.lock();
    // At most one write a second: what comes meanwhile waits (the destructor writes the rest).
    cv_.wait_for(lock, kMinInterval, [this] { return stop_; });
  }
}

void DeliveryRecord::flush() noexcept {
  DeliveryState state;
  {
    std::lock_guard lock(mu_);
    if (!dirty_) return;
    state = pending_;
    dirty_ = false;
  }
  write(state);
}

void DeliveryRecord::write(const DeliveryState& state) noexcept {
  std::lock_guard lock(write_mu_);
  try {
    if (dir_.empty()) {
      auto dir = default_spool_dir();
      if (!dir) return;
      dir_ = std::move(dir).value();
    }
    Result<> made = ensure_private_dir(dir_, "spool directory");
    std::string error;
    if (made) {
      DeliveryState merged = state;
      if (auto on_disk = read_delivery_record(dir_); on_disk) {
        keep_newer(merged.success, on_disk->success);
        keep_newer(merged.failure, on_disk->failure);
      }
      nlohmann::json j = nlohmann::json::object();
      if (merged.success) j["success"] = to_json(*merged.success);
      if (merged.failure) j["failure"] = to_json(*merged.failure);
      const std::string text =
          j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      const std::filesystem::path tmp =
          dir_ / (std::string(kDeliveryRecordFile) + ".tmp." + std::to_string(::getpid()));
      Result<int> fd = open_private_file(tmp, O_WRONLY | O_TRUNC);
      if (!fd) {
        error = fd.error().message;
      } else {
        const ssize_t n = ::write(*fd, text.data(), text.size());
        ::close(*fd);
        if (n != static_cast<ssize_t>(text.size())) {
          error = "cannot write " + tmp.string();
          ::unlink(tmp.c_str());
        } else if (::rename(tmp.c_str(), (dir_ / kDeliveryRecordFile).c_str()) != 0) {
          error = "cannot rename " + tmp.string() + ": " + std::strerror(errno);
          ::unlink(tmp.c_str());
        }
      }
    } else {
      error = made.error().message;
    }
    if (!error.empty() && !failed_once_) {
      failed_once_ = true;
      log::warn("cannot record the last delivery for `trackevent status`", {{"err", error}});
    }
  } catch (const std::exception&) {
    // bad_alloc or a filesystem error while building a path: the record is best effort.
  }
}

}  // namespace trackevent::detail
