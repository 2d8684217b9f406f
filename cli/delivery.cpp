#include "delivery.hpp"

#include "exit_codes.hpp"
#include "log/log.hpp"
#include "signals.hpp"

#include <algorithm>

namespace trackevent::cli {
namespace {

// Short enough that a second signal cuts the flush off promptly.
constexpr std::chrono::milliseconds kFlushSlice{100};

std::uint64_t spooled_total(const RunCounts& c) { return c.stats.spooled; }

}  // namespace

TrackerOptions cli_tracker_options(const GlobalOptions& global) {
  TrackerOptions options = TrackerOptions::from_env();
  options.database_url = tracker_database_url(global, options.database_url);
  // The command already waited its flush deadline; at destruction, spool what is left at once.
  options.shutdown_timeout = std::chrono::milliseconds{0};
  return options;
}

FlushResult finish_delivery(Tracker& tracker, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  FlushResult result = tracker.flush(std::chrono::milliseconds{0});
  while (!result.complete && stop_signals() < 2) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds{0}) break;
    result = tracker.flush(std::min(left, kFlushSlice));
  }
  return result;
}

void log_summary(const RunCounts& c) {
  log::Fields fields{
      {"read", c.read},
      {"accepted", c.accepted},
      {"rejected", c.rejected},
      {"stored", c.stats.stored},
      {"duplicates", c.stats.duplicates},
      {"spooled", spooled_total(c)},
      {"dropped", c.stats.dropped},
      {"rejected_by_db", c.stats.rejected_by_db},
      {"unspooled", c.stats.unspooled},
      {"retries", c.stats.retries},
      {"blank", c.blank},
      {"elapsed_ms", c.elapsed_ms},
  };
  if (c.interrupted) {
    fields["interrupted"] = true;
    if (c.unread) {
      if (!c.unread->source.empty()) {
        fields["unread_source"] = c.unread->source;
        fields["unread_offset"] = c.unread->offset;
      }
      if (c.unread->bytes) {
        fields["unread_bytes"] = *c.unread->bytes;
      } else {
        fields["unread_bytes"] = "unknown";
      }
      fields["unread_files"] = c.unread->files;
    }
  }
  if (!c.database.empty()) fields["database"] = c.database;
  if (!c.catalog_warnings.empty()) fields["catalog_warnings"] = c.catalog_warnings;
  // Report rate-limited lines now, so the summary is the last line a script has to look at.
  log::flush_suppressed();
  log::info("summary", fields);
}

void warn_on_violation(const Catalog& catalog, const Event& event, std::string_view source,
                       std::uint64_t line, RunCounts& counts) {
  const auto violation = catalog.check(event.event_name, event.metadata);
  if (!violation) return;
  ++counts.catalog_warnings[event.event_name][violation->rule];
  log::write_limited(log::Level::warn, "catalog." + event.event_name + " " + violation->rule,
                     "metadata breaks the catalog's schema (kept: --catalog-mode warn)",
                     {{"source", source},
                      {"line", line},
                      {"event_name", event.event_name},
                      {"rule", violation->rule},
                      {"err", violation->message}},
                     1);
}

int exit_status(const RunCounts& c) {
  if (c.stats.dropped > 0) return exit_code::data_lost;
  if (c.strict && spooled_total(c) > 0) return exit_code::unavailable;
  if (c.rejected > 0 || c.stats.rejected_by_db > 0) return exit_code::data_error;
  return exit_code::ok;
}

}  // namespace trackevent::cli
