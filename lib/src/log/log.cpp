// Structured logging on spdlog. spdlog filters by level (the logger's level is the one --log-level
// sets) and writes through its sinks: its stderr sink (one fwrite and fflush per line, under its
// lock, so lines of different threads never interleave), or a LineSink in its place, behind a
// dist_sink that swaps them safely while other threads log. The line itself is built here, not by
// an spdlog pattern: a line is a JSON object whose fields come from the caller in order and must
// be escaped as JSON, and spdlog's log_msg carries only a text payload, no fields. For the same
// reason an application's callback (TrackerOptions::log) is called before spdlog, with the fields
// still structured, rather than as an spdlog sink that would get the formatted text.
#include "log/log.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

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

/// An application's callback, shared by its Routing and by the threads calling it.
struct Routing::Route {
  LogCallback callback;
  std::mutex calling;  // held while the callback runs, so close() can wait for a call to end
  bool open = true;    // guarded by `calling`
};

namespace {

/// Hands each formatted line, without its newline, to a LineSink. The dist_sink in front of it
/// already calls it one line at a time.
class LineSinkAdapter final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  explicit LineSinkAdapter(LineSink& target) : target_(target) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::string_view text(buf.data(), buf.size());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    target_.line(text);
  }
  void flush_() override {}

 private:
  LineSink& target_;
};

// The payload is the whole line, built below: spdlog adds only the newline.
std::unique_ptr<spdlog::formatter> line_formatter() {
  return std::make_unique<spdlog::pattern_formatter>("%v");
}

struct Limiter {
  std::chrono::steady_clock::time_point window_start{};
  int count = 0;
  std::uint64_t suppressed = 0;
  Level level = Level::error;
  std::string msg;
};

struct State {
  std::shared_ptr<spdlog::sinks::sink> stderr_sink =
      std::make_shared<spdlog::sinks::stderr_sink_mt>();
  std::shared_ptr<spdlog::sinks::dist_sink_mt> out =
      std::make_shared<spdlog::sinks::dist_sink_mt>(std::vector<spdlog::sink_ptr>{stderr_sink});
  std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>("trackevent", out);
  std::atomic<Format> format{Format::json};
  std::atomic<bool> color{false};
  std::mutex limit_mutex;
  std::unordered_map<std::string, Limiter> limiters;
  std::atomic<std::uint64_t> suppressed_total{0};
  // Applications' callbacks, newest last; `routed` says whether there is any, without the lock.
  std::mutex routes_mutex;
  std::vector<std::shared_ptr<Routing::Route>> routes;
  std::atomic<bool> routed{false};

  State() {
    stderr_sink->set_formatter(line_formatter());
    logger->set_level(spdlog::level::info);
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
  return level != Level::off && s.logger->should_log(to_spdlog(level));
}

// Set on a thread while it runs an application's callback: a line the callback causes on that
// thread (it called into the library) goes to the sinks instead of into the callback again.
thread_local const Routing::Route* t_calling = nullptr;

// The newest open route, or null when lines go to the sinks.
std::shared_ptr<Routing::Route> newest_route(State& s) {
  if (!s.routed.load(std::memory_order_acquire)) return nullptr;
  const std::lock_guard lock(s.routes_mutex);
  return s.routes.empty() ? nullptr : s.routes.back();
}

// Hands the line to the newest open callback; false when there is none to take it.
bool deliver(State& s, Level level, std::string_view key, std::string_view msg,
             const Fields& fields) {
  if (t_calling != nullptr) return false;
  // A route closed between being found and being called is skipped for the one before it.
  while (auto route = newest_route(s)) {
    const std::lock_guard calling(route->calling);
    if (!route->open) continue;
    static_assert(static_cast<int>(Level::critical) == static_cast<int>(LogLevel::critical));
    const LogRecord record{static_cast<LogLevel>(level), key, msg, fields};
    t_calling = route.get();
    try {
      route->callback(record);
    } catch (...) {
      // The callback must not throw (TrackerOptions::log); a line is not worth the caller.
    }
    t_calling = nullptr;
    return true;
  }
  return false;
}

// One line that passed the level (and rate) filter: to a callback, else formatted to the sinks.
void emit(State& s, Level level, std::string_view key, std::string_view msg, const Fields& fields) {
  if (deliver(s, level, key, msg, fields)) return;
  const std::string line = s.format.load() == Format::json
                               ? json_line(level, msg, fields)
                               : text_line(level, msg, fields, s.color.load());
  s.logger->log(to_spdlog(level), spdlog::string_view_t(line.data(), line.size()));
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
  s.color.store(color);
  s.logger->set_level(to_spdlog(level));
}

void write(Level level, std::string_view msg, const Fields& fields) noexcept {
  try {
    auto& s = state();
    if (enabled(s, level)) emit(s, level, {}, msg, fields);
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
      emit(s, level, key, msg, fields);
      return;
    }
    Fields with_count = fields.is_object() ? fields : Fields::object();
    with_count["suppressed"] = released;
    emit(s, level, key, msg, with_count);
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
      if (!enabled(s, p.limiter.level)) continue;
      emit(s, p.limiter.level, p.key, "suppressed repeated log lines",
           {{"key", p.key}, {"last_msg", p.limiter.msg}, {"suppressed", p.limiter.suppressed}});
    }
    s.logger->flush();
  } catch (...) {
  }
}

void set_line_sink(LineSink* sink) noexcept {
  try {
    auto& s = state();
    spdlog::sink_ptr target = s.stderr_sink;
    if (sink != nullptr) {
      target = std::make_shared<LineSinkAdapter>(*sink);
      target->set_formatter(line_formatter());
    }
    s.out->set_sinks({std::move(target)});
  } catch (...) {
  }
}

Routing::Routing(LogCallback callback) : route_(std::make_shared<Route>()) {
  route_->callback = std::move(callback);
  auto& s = state();
  const std::lock_guard lock(s.routes_mutex);
  s.routes.push_back(route_);
  s.routed.store(true, std::memory_order_release);
}

Routing::~Routing() { close(); }

void Routing::close() noexcept {
  try {
    auto& s = state();
    {
      const std::lock_guard lock(s.routes_mutex);
      std::erase(s.routes, route_);
      s.routed.store(!s.routes.empty(), std::memory_order_release);
    }
    // Called from within the callback (it closed its Tracker): that call is this thread's own.
    if (t_calling == route_.get()) {
      route_->open = false;
      return;
    }
    const std::lock_guard calling(route_->calling);
    route_->open = false;
  } catch (...) {
    // Only locking can throw, and only for a broken mutex.
  }
}

}  // namespace trackevent::log
