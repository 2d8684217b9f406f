// The C ABI (trackevent.h) over trackevent::Tracker. Every entry point catches everything: a C++
// exception must never unwind into C (or ctypes) frames.
#include "trackevent/event.hpp"
#include "trackevent/options.hpp"
#include "trackevent/tracker.hpp"
#include "trackevent/trackevent.h"
#include "trackevent/uuid.hpp"

#include "input/parse.hpp"
#include "log/log.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

struct trackevent_options {
  trackevent::TrackerOptions options;
};

struct trackevent_tracker {
  explicit trackevent_tracker(trackevent::TrackerOptions options)
      : limits(options.limits),
        plan(trackevent::load_plan(options.catalog, options.catalog_mode)),
        tracker(without_catalog(std::move(options))) {}

  // The catalog is checked here, before track(Event), so the Tracker need not load it too.
  static trackevent::TrackerOptions without_catalog(trackevent::TrackerOptions options) {
    options.catalog.clear();
    return options;
  }

  trackevent::Limits limits;  // declared before `tracker`: initialised before options are moved
  std::shared_ptr<const trackevent::Plan> plan;  // the tracking plan; null without a catalog
  trackevent::Tracker tracker;
  // Calls refused here never reach the Tracker's own counter; stats() adds them back.
  std::atomic<std::uint64_t> rejected{0};
};

namespace {

thread_local std::string t_last_error;

int fail(int code, std::string_view why) noexcept {
  try {
    t_last_error.assign(why);
  } catch (...) {
    t_last_error.clear();  // out of memory for the message: the code still says what happened
  }
  return code;
}

// Runs `body`, turning any escaping exception into an error code.
template <typename F>
int guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(TRACKEVENT_ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    return fail(TRACKEVENT_EINTERNAL, e.what());
  } catch (...) {
    return fail(TRACKEVENT_EINTERNAL, "unknown exception");
  }
}

// True when `text` has no whitespace outside strings, i.e. is already in the compact form
// Event::metadata holds. Says nothing about validity; validate_event() checks that.
bool is_compact(std::string_view text) noexcept {
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character, which may be a quote
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      return false;
    }
  }
  return true;
}

// Puts the caller's metadata text into `out` in compact form. Compact text (the usual case from
// C) is taken as is and left to validate_event()'s single simdjson pass; anything else is
// compacted through nlohmann first. Returns the reason when the text cannot be used.
std::string take_metadata(const char* text, const trackevent::Limits& limits, std::string& out) {
  // Bounded scan: a huge or unterminated buffer is refused before any parsing work.
  const std::size_t len = strnlen(text, limits.max_line_bytes + 1);
  if (len > limits.max_line_bytes) {
    return "metadata: longer than " + std::to_string(limits.max_line_bytes) + " bytes";
  }
  const std::string_view view(text, len);
  if (is_compact(view)) {
    out.assign(view);
    return {};
  }
  auto json = nlohmann::json::parse(view, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return "metadata: not valid JSON";
  if (!json.is_object()) return "metadata: expected a JSON object";
  try {
    out = json.dump();
  } catch (const nlohmann::json::exception&) {
    return "metadata: invalid UTF-8";
  }
  return {};
}

int reject(trackevent_tracker* t, std::int64_t org_id, std::int64_t user_id, const char* name,
           const std::string& reason) noexcept {
  t->rejected.fetch_add(1, std::memory_order_relaxed);
  try {
    nlohmann::json fields{{"source", "c_api"}, {"org_id", org_id}, {"err", reason}};
    if (user_id != 0) fields["user_id"] = user_id;
    if (name != nullptr) fields["event_name"] = name;
    trackevent::log::write_limited(trackevent::log::Level::error, "c_api.rejected",
                                   "rejected event", fields);
  } catch (...) {
    // Logging is best effort; the caller still gets EINVAL and the reason.
  }
  return fail(TRACKEVENT_EINVAL, reason);
}

}  // namespace

extern "C" {

int trackevent_options_create(trackevent_options** out) {
  if (out == nullptr) return fail(TRACKEVENT_EINVAL, "out: NULL");
  *out = nullptr;
  return guarded([&]() -> int {
    *out = new trackevent_options{trackevent::TrackerOptions::from_env()};
    return TRACKEVENT_OK;
  });
}

void trackevent_options_destroy(trackevent_options* options) { delete options; }

int trackevent_options_set_database_url(trackevent_options* options, const char* url) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  return guarded([&]() -> int {
    options->options.database_url = url != nullptr ? url : "";
    return TRACKEVENT_OK;
  });
}

int trackevent_options_set_queue_capacity(trackevent_options* options, size_t capacity) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  if (capacity < 1) return fail(TRACKEVENT_EINVAL, "queue_capacity: expected >= 1");
  options->options.queue_capacity = capacity;
  return TRACKEVENT_OK;
}

int trackevent_options_set_batch_size(trackevent_options* options, size_t size) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  if (size < 1) return fail(TRACKEVENT_EINVAL, "batch_size: expected >= 1");
  options->options.batch_size = size;
  return TRACKEVENT_OK;
}

int trackevent_options_set_flush_interval_ms(trackevent_options* options, int64_t ms) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  if (ms < 1) return fail(TRACKEVENT_EINVAL, "flush_interval_ms: expected >= 1");
  options->options.flush_interval = std::chrono::milliseconds{ms};
  return TRACKEVENT_OK;
}

int trackevent_options_set_shutdown_timeout_ms(trackevent_options* options, int64_t ms) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  if (ms < 0) return fail(TRACKEVENT_EINVAL, "shutdown_timeout_ms: expected >= 0");
  options->options.shutdown_timeout = std::chrono::milliseconds{ms};
  return TRACKEVENT_OK;
}

int trackevent_options_set_on_full(trackevent_options* options, int policy) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  switch (policy) {
    case TRACKEVENT_ON_FULL_SPOOL:
      options->options.on_full = trackevent::OverflowPolicy::spool;
      return TRACKEVENT_OK;
    case TRACKEVENT_ON_FULL_DROP:
      options->options.on_full = trackevent::OverflowPolicy::drop;
      return TRACKEVENT_OK;
    case TRACKEVENT_ON_FULL_BLOCK:
      options->options.on_full = trackevent::OverflowPolicy::block;
      return TRACKEVENT_OK;
    default:
      return fail(TRACKEVENT_EINVAL, "on_full: expected TRACKEVENT_ON_FULL_SPOOL, _DROP or _BLOCK");
  }
}

int trackevent_options_set_spool_dir(trackevent_options* options, const char* dir) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  return guarded([&]() -> int {
    options->options.spool_dir = dir != nullptr ? dir : "";
    return TRACKEVENT_OK;
  });
}

int trackevent_options_set_catalog(trackevent_options* options, const char* path, int mode) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  if (mode < TRACKEVENT_CATALOG_REJECT || mode > TRACKEVENT_CATALOG_OFF) {
    return fail(TRACKEVENT_EINVAL, "mode: expected a trackevent_catalog_mode");
  }
  return guarded([&]() -> int {
    options->options.catalog = path != nullptr ? path : "";
    options->options.catalog_mode = static_cast<trackevent::CatalogMode>(mode);
    return TRACKEVENT_OK;
  });
}

int trackevent_options_set_log_callback(trackevent_options* options, trackevent_log_fn fn,
                                        void* user) {
  if (options == nullptr) return fail(TRACKEVENT_EINVAL, "options: NULL");
  return guarded([&]() -> int {
    if (fn == nullptr) {
      options->options.log = nullptr;
      return TRACKEVENT_OK;
    }
    options->options.log = [fn, user](const trackevent::LogRecord& record) {
      const std::string key(record.key);
      const std::string message(record.message);
      const std::string fields =
          record.fields.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
      fn(user, static_cast<int>(record.level), key.c_str(), message.c_str(), fields.c_str());
    };
    return TRACKEVENT_OK;
  });
}

int trackevent_create(const trackevent_options* options, trackevent_tracker** out) {
  if (out == nullptr) return fail(TRACKEVENT_EINVAL, "out: NULL");
  *out = nullptr;
  return guarded([&]() -> int {
    trackevent::TrackerOptions opts =
        options != nullptr ? options->options : trackevent::TrackerOptions::from_env();
    try {
      *out = new trackevent_tracker(std::move(opts));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      // Setting up failed (e.g. no thread); an unreachable database is not an error here.
      return fail(TRACKEVENT_EOPEN, e.what());
    }
    return TRACKEVENT_OK;
  });
}

int trackevent_track(trackevent_tracker* tracker, int64_t org_id, int64_t user_id,
                     const char* event_name, const char* metadata_json) {
  if (tracker == nullptr) return fail(TRACKEVENT_EINVAL, "tracker: NULL");
  return guarded([&]() -> int {
    if (event_name == nullptr) return reject(tracker, org_id, user_id, nullptr, "event_name: NULL");
    if (user_id < 0) {
      return reject(tracker, org_id, user_id, event_name,
                    "user_id: expected an integer >= 1, or 0 for none");
    }
    trackevent::Event event;
    event.org_id = org_id;
    if (user_id != 0) event.user_id = user_id;
    event.event_name = event_name;
    if (metadata_json != nullptr) {
      std::string reason = take_metadata(metadata_json, tracker->limits, event.metadata);
      if (!reason.empty()) return reject(tracker, org_id, user_id, event_name, reason);
    }
    // Stamped as Tracker::track(org, user, name, json) would, then checked by the library's
    // validator (name, ids, metadata: JSON object, limits, UTF-8). Going through track(Event)
    // is what lets us report a drop to the caller.
    event.occurred_at_us = trackevent::now_unix_us();
    event.event_id = trackevent::make_uuid_v7(event.occurred_at_us / 1000);
    std::string reason = trackevent::validate_event(event, tracker->limits);
    if (reason.empty() && tracker->plan) reason = trackevent::check_plan(event, *tracker->plan);
    if (!reason.empty()) return reject(tracker, org_id, user_id, event_name, reason);
    if (!tracker->tracker.track(std::move(event))) {
      return fail(TRACKEVENT_EDROPPED, "queue full: event dropped (on_full = drop)");
    }
    return TRACKEVENT_OK;
  });
}

int trackevent_flush(trackevent_tracker* tracker, int timeout_ms) {
  if (tracker == nullptr) return fail(TRACKEVENT_EINVAL, "tracker: NULL");
  if (timeout_ms < 0) return fail(TRACKEVENT_EINVAL, "timeout_ms: expected >= 0");
  return guarded([&]() -> int {
    const trackevent::FlushResult r = tracker->tracker.flush(std::chrono::milliseconds{timeout_ms});
    if (r.complete) return TRACKEVENT_OK;
    return fail(TRACKEVENT_ETIMEDOUT,
                std::to_string(r.remaining) + " events still in memory at the deadline");
  });
}

int trackevent_get_stats(const trackevent_tracker* tracker, trackevent_stats* out) {
  if (tracker == nullptr || out == nullptr) return fail(TRACKEVENT_EINVAL, "tracker or out: NULL");
  const trackevent::Stats s = tracker->tracker.stats();
  std::memset(out, 0, sizeof *out);
  out->accepted = s.accepted;
  out->stored = s.stored;
  out->duplicates = s.duplicates;
  out->rejected = s.rejected + tracker->rejected.load(std::memory_order_relaxed);
  out->rejected_by_db = s.rejected_by_db;
  out->dropped = s.dropped;
  out->spooled = s.spooled;
  out->unspooled = s.unspooled;
  out->retries = s.retries;
  return TRACKEVENT_OK;
}

void trackevent_destroy(trackevent_tracker* tracker) {
  // ~Tracker is noexcept (implicitly); it drains within shutdown_timeout and spools the rest.
  delete tracker;
}

const char* trackevent_strerror(int code) {
  switch (code) {
    case TRACKEVENT_OK:
      return "success";
    case TRACKEVENT_EINVAL:
      return "invalid argument";
    case TRACKEVENT_ENOMEM:
      return "out of memory";
    case TRACKEVENT_ETIMEDOUT:
      return "timed out with events still in memory";
    case TRACKEVENT_EDROPPED:
      return "queue full: event dropped";
    case TRACKEVENT_EOPEN:
      return "cannot set up the tracker";
    case TRACKEVENT_EINTERNAL:
      return "internal error";
    default:
      return "unknown error";
  }
}

const char* trackevent_last_error(void) { return t_last_error.c_str(); }

}  // extern "C"
