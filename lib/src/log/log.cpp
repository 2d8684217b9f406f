// Structured logging on spdlog. Each line is built here (field order, JSON escaping) and handed to
// spdlog as a preformatted payload; spdlog provides the thread-safe sink, level and flush policy.
#include "trackevent/log.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>

#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace trackevent::log {
namespace {

/// Writes each complete line to stderr with one fwrite under the sink's mutex (so lines from
/// different threads never interleave), or to the test LineSink when one is set.
class LineRouterSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void set_test_sink(LineSink* test_sink) {
    std::lock_guard lock(mutex_);
    test_sink_ = test_sink;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    if (test_sink_ != nullptr) {
      std::string_view text(buf.data(), buf.size());
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
      test_sink_->line(text);
      return;
    }
    std::fwrite(buf.data(), 1, buf.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  LineSink* test_sink_ = nullptr;
};

struct Limiter {
  std::chrono::steady_clock::time_point window_start{};
  int count = 0;
  std::uint64_t suppressed = 0;
  Level level = Level::error;
  std::string msg;
};

struct State {
  std::shared_ptr<LineRouterSink> sink = std::make_shared<LineRouterSink>();
  std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>("trackevent", sink);
  std::atomic<Level> level{Level::info};
  std::atomic<Format> format{Format::json};
  std::atomic<bool> color{false};
  std::mutex limit_mutex;
  std::unordered_map<std::string, Limiter> limiters;
  std::atomic<std::uint64_t> suppressed_total{0};

  State() {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>("%v"));
    logger->set_level(spdlog::level::trace);  // filtering happens in write(), before formatting
    // stderr is unbuffered, so flushing every line costs nothing and a crash loses no line.
    logger->flush_on(spdlog::level::trace);
  }
};

// Never destroyed: threads and static destructors may still log while the process exits.
State& state() {
  static State* s = [] {
    auto* created = new State();
    std::atexit([] { flush_suppressed(); });
    return created;
  }();
  return *s;
}

constexpr std::array<std::string_view, 6> kJsonNames = {"trace", "debug", "info",
                                                        "warn",  "error", "critical"};
constexpr std::array<std::string_view, 6> kTextNames = {"TRACE", "DEBUG", "INFO ",
                                                        "WARN ", "ERROR", "CRIT "};
constexpr std::array<std::string_view, 6> kColors = {"\x1b[90m", "\x1b[36m", "\x1b[32m",
                                                     "\x1b[33m", "\x1b[31m", "\x1b[1;31m"};

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::trace:
      return spdlog::level::trace;
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
    case Level::critical:
      return spdlog::level::critical;
    case Level::off:
      break;
  }
  return spdlog::level::off;
}

void append_timestamp(std::string& out) {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  std::array<char, 32> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, static_cast<int>(ms % 1000));
  if (n > 0) out.append(buf.data(), static_cast<std::size_t>(n));
}

// dump() that never throws on invalid UTF-8 (it substitutes U+FFFD).
std::string dump(const Fields& value) {
  return value.dump(-1, ' ', false, Fields::error_handler_t::replace);
}

bool reserved_key(std::string_view key) { return key == "ts" || key == "level" || key == "msg"; }

// Bare when unambiguous (source=stdin), JSON-quoted otherwise (err="bad \"x\"").
void append_text_value(std::string& out, const Fields& value) {
  if (!value.is_string()) {
    out += dump(value);
    return;
  }
  const auto& s = value.get_ref<const std::string&>();
  bool bare = !s.empty();
  for (const char c : s) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '"' || c == '=' || c == '\x7f') {
      bare = false;
      break;
    }
  }
  out += bare ? s : dump(value);
}

std::string json_line(Level level, std::string_view msg, const Fields& fields) {
  std::string line;
  line.reserve(160);
  line += R"({"ts":")";
  append_timestamp(line);
  line += R"(","level":")";
  line += kJsonNames[static_cast<std::size_t>(level)];
  line += R"(","msg":)";
  line += dump(Fields(std::string(msg)));
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) {
      if (reserved_key(key)) continue;
      line += ',';
      line += dump(Fields(key));
      line += ':';
      line += dump(value);
    }
  }
  line += '}';
  return line;
}

std::string text_line(Level level, std::string_view msg, const Fields& fields, bool color) {
  const auto index = static_cast<std::size_t>(level);
  std::string line;
  line.reserve(160);
  append_timestamp(line);
  line += ' ';
  if (color) line += kColors[index];
  line += kTextNames[index];
  if (color) line += "\x1b[0m";
  line += ' ';
  line += msg;
  if (fields.is_object() && !fields.empty()) {
    line += ' ';
    for (const auto& [key, value] : fields.items()) {
      if (reserved_key(key)) continue;
      line += ' ';
      if (color) line += "\x1b[2m";
      line += key;
      line += '=';
      if (color) line += "\x1b[0m";
      append_text_value(line, value);
    }
  }
  return line;
}

bool enabled(const State& s, Level level) {
  return level != Level::off && static_cast<int>(level) >= static_cast<int>(s.level.load());
}

}  // namespace

std::optional<Format> parse_format(std::string_view s) noexcept {
  if (s == "json") return Format::json;
  if (s == "text") return Format::text;
  return std::nullopt;
}

std::optional<Level> parse_level(std::string_view s) noexcept {
  if (s == "trace") return Level::trace;
  if (s == "debug") return Level::debug;
  if (s == "info") return Level::info;
  if (s == "warn" || s == "warning") return Level::warn;
  if (s == "error") return Level::error;
  if (s == "critical") return Level::critical;
  if (s == "off") return Level::off;
  return std::nullopt;
}

void init(Format format, Level level, bool color) {
  auto& s = state();
  s.format.store(format);
  s.level.store(level);
  s.color.store(color);
}

void write(Level level, std::string_view msg, const Fields& fields) noexcept {
  try {
    auto& s = state();
    if (!enabled(s, level)) return;
    const std::string line = s.format.load() == Format::json
                                 ? json_line(level, msg, fields)
                                 : text_line(level, msg, fields, s.color.load());
    s.logger->log(to_spdlog(level), spdlog::string_view_t(line.data(), line.size()));
  } catch (...) {
    // Logging must never take the caller down; there is nowhere better to report this.
  }
}

void write_limited(Level level, std::string_view key, std::string_view msg, const Fields& fields,
                   int burst) noexcept {
  try {
    auto& s = state();
    if (!enabled(s, level)) return;
    std::uint64_t released = 0;
    {
      std::lock_guard lock(s.limit_mutex);
      auto& limiter = s.limiters[std::string(key)];
      const auto now = std::chrono::steady_clock::now();
      if (now - limiter.window_start >= std::chrono::seconds{1}) {
        limiter.window_start = now;
        limiter.count = 0;
      }
      if (limiter.count >= std::max(burst, 1)) {
        ++limiter.suppressed;
        s.suppressed_total.fetch_add(1, std::memory_order_relaxed);
        limiter.level = level;
        limiter.msg = msg;
        return;
      }
      ++limiter.count;
      released = std::exchange(limiter.suppressed, 0);
    }
    if (released == 0) {
      write(level, msg, fields);
      return;
    }
    Fields with_count = fields.is_object() ? fields : Fields::object();
    with_count["suppressed"] = released;
    write(level, msg, with_count);
  } catch (...) {
  }
}

std::uint64_t suppressed_total() noexcept {
  return state().suppressed_total.load(std::memory_order_relaxed);
}

void flush_suppressed() noexcept {
  try {
    auto& s = state();
    struct Pending {
      std::string key;
      Limiter limiter;
    };
    std::vector<Pending> pending;
    {
      std::lock_guard lock(s.limit_mutex);
      for (auto& [key, limiter] : s.limiters) {
        if (limiter.suppressed == 0) continue;
        pending.push_back({key, limiter});
        limiter.suppressed = 0;
      }
    }
    for (const auto& p : pending) {
      write(p.limiter.level, "suppressed repeated log lines",
            {{"key", p.key}, {"last_msg", p.limiter.msg}, {"suppressed", p.limiter.suppressed}});
    }
    s.logger->flush();
  } catch (...) {
  }
}

void set_line_sink(LineSink* sink) noexcept {
  try {
    state().sink->set_test_sink(sink);
  } catch (...) {
  }
}

void set_line_sink_for_testing(LineSink* sink) noexcept { set_line_sink(sink); }

// ABI: binaries built against log.hpp before Fields (ordered_json) call these signatures.
// Declared here only, at the end, so no caller sees two overloads a braced list could match.
void write(Level level, std::string_view msg, const nlohmann::json& fields) noexcept;
void write_limited(Level level, std::string_view key, std::string_view msg,
                   const nlohmann::json& fields, int burst) noexcept;

void write(Level level, std::string_view msg, const nlohmann::json& fields) noexcept {
  try {
    write(level, msg, Fields(fields));
  } catch (...) {
  }
}

void write_limited(Level level, std::string_view key, std::string_view msg,
                   const nlohmann::json& fields, int burst) noexcept {
  try {
    write_limited(level, key, msg, Fields(fields), burst);
  } catch (...) {
  }
}

}  // namespace trackevent::log
