#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iterator>

namespace trackevent::cli {
namespace {

std::string with_commas(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const std::size_t lead = digits.size() % 3;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (i + 3 - lead) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string human_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[unit]);
  return buf;
}

std::string clock_time(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  }
  return buf;
}

std::size_t terminal_width(int fd) {
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

}  // namespace

Progress::Progress(int fd, std::uint64_t total_bytes)
    : fd_(fd),
      total_bytes_(total_bytes),
      started_(std::chrono::steady_clock::now()),
      next_draw_(started_ + kInterval) {
  log::set_line_sink(this);
}

Progress::~Progress() { finish(); }

std::string Progress::format(std::uint64_t lines, std::uint64_t rejected, std::uint64_t bytes,
                             std::uint64_t total_bytes, double elapsed_s) {
  // "66%  512.0 KiB/770.0 KiB  3,886 lines  1,234 lines/s  ETA 0:02  2 rejected"
  std::string out;
  if (total_bytes > 0) {
    const double fraction =
        std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total_bytes));
    char pct[16];
    std::snprintf(pct, sizeof pct, "%.0f%%  ", fraction * 100);
    out += pct;
  }
  out += human_bytes(static_cast<double>(bytes));
  if (total_bytes > 0) {
    out += '/';  // appended piecewise: GCC 12 warns (-Wrestrict) on "/" + std::string&& at -O3
    out += human_bytes(static_cast<double>(total_bytes));
  }
  out += "  " + with_commas(lines) + " lines";
  if (elapsed_s > 0) {
    const double lines_per_s = static_cast<double>(lines) / elapsed_s;
    out += "  " + with_commas(static_cast<std::uint64_t>(lines_per_s)) + " lines/s";
    if (total_bytes > 0 && bytes > 0) {
      const double left = static_cast<double>(total_bytes > bytes ? total_bytes - bytes : 0);
      out += "  ETA " + clock_time(left / (static_cast<double>(bytes) / elapsed_s));
    }
  }
  if (rejected > 0) out += "  " + with_commas(rejected) + " rejected";
  return out;
}

void Progress::update(std::uint64_t lines, std::uint64_t rejected, std::uint64_t bytes) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_draw_) return;
  next_draw_ = now + kInterval;
  try {
    const double elapsed = std::chrono::duration<double>(now - started_).count();
    std::string text = format(lines, rejected, bytes, total_bytes_, elapsed);
    const std::size_t width = terminal_width(fd_);
    // Never wrap: a wrapped line cannot be redrawn in place with '\r'.
    if (text.size() >= width) text.resize(width > 1 ? width - 1 : 0);
    std::lock_guard lock(mutex_);
    if (active_) draw_locked(text);
  } catch (...) {
    // Progress is decoration; it never fails a run.
  }
}

void Progress::finish() noexcept {
  {
    std::lock_guard lock(mutex_);
    if (!active_) return;
    wipe_locked();
    active_ = false;
  }
  // Outside our mutex: the logger's sink calls line() while holding its own lock.
  log::set_line_sink(nullptr);
}

void Progress::line(std::string_view text) {
  std::lock_guard lock(mutex_);
  const std::string shown = shown_;
  wipe_locked();
  std::string out{text};
  out += '\n';
  write_all(out);
  if (active_ && !shown.empty()) draw_locked(shown);
}

void Progress::draw_locked(const std::string& text) noexcept {
  std::string out = "\r" + text;
  // Pad over the rest of a longer previous line, then return the cursor to the end of the text.
  if (shown_.size() > text.size()) {
    out.append(shown_.size() - text.size(), ' ');
    out.append(shown_.size() - text.size(), '\b');
  }
  write_all(out);
  shown_ = text;
}

void Progress::wipe_locked() noexcept {
  if (shown_.empty()) return;
  std::string out = "\r";
  out.append(shown_.size(), ' ');
  out += '\r';
  write_all(out);
  shown_.clear();
}

void Progress::write_all(std::string_view bytes) noexcept {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace trackevent::cli
