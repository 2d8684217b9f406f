#pragma once
// What ingest and send share once events are parsed: the Tracker's options from the command
// line, the bounded end-of-run flush, and the one summary line with its exit status.

#include "trackevent/tracker.hpp"

#include "global_options.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace trackevent::cli {

/// Tracker options for a CLI run: the database from --db or the environment, and a zero
/// shutdown_timeout because the command flushes on its own deadline first (see finish_delivery).
[[nodiscard]] TrackerOptions cli_tracker_options(const GlobalOptions& global);

/// Flushes in short slices until everything is delivered or spooled, `timeout` passes, or a
/// second SIGINT/SIGTERM asks to stop at once. Returns the last flush's result.
FlushResult finish_delivery(Tracker& tracker, std::chrono::milliseconds timeout);

/// Where an interrupted ingest stopped reading, for the summary line.
struct UnreadInput {
  /// The input it stopped in (its path, or "stdin"); empty when every input was read.
  std::string source;
  /// Where unread input starts in `source`: the file offset for a regular file (so
  /// `tail -c +$((offset+1))` resumes), else the bytes of the stream taken before the stop.
  std::uint64_t offset = 0;
  /// Bytes not read: the rest of `source` and every input not started; nullopt when unknown (a
  /// pipe or terminal among them).
  std::optional<std::uint64_t> bytes = 0;
  /// Inputs after `source` not started.
  std::uint64_t files = 0;
};

/// What one run did, for the summary line and the exit status.
struct RunCounts {
  std::uint64_t read = 0;      ///< non-blank input lines (or events given on the command line)
  std::uint64_t accepted = 0;  ///< parsed and taken by the Tracker
  std::uint64_t rejected = 0;  ///< refused by the parser (or by track())
  std::uint64_t blank = 0;
  Stats stats;  ///< the Tracker's final counters (Tracker::close): spooled and dropped are exact
  /// --strict (without --durable, which spools by design): anything spooled means the database
  /// could not take it.
  bool strict = false;
  bool interrupted = false;  ///< a SIGINT or SIGTERM arrived
  /// ingest, when interrupted: what it left unread (the summary's unread_* fields).
  std::optional<UnreadInput> unread;
  std::int64_t elapsed_ms = 0;
  std::string database;  ///< password-free, empty for --check
  /// --catalog-mode warn: events kept although their metadata broke the schema, by event name
  /// and rule (the summary's catalog_warnings).
  std::map<std::string, std::map<std::string, std::uint64_t>> catalog_warnings;
};

/// --catalog-mode warn: checks an event the parser accepted against its schema. A violation is
/// counted in `counts` and logged, at most once a second per event name and rule; the event is
/// kept either way.
void warn_on_violation(const Catalog& catalog, const Event& event, std::string_view source,
                       std::uint64_t line, RunCounts& counts);

/// Logs the "summary" info line, as the run's last log line (suppressed-line reports go first).
void log_summary(const RunCounts& counts);
/// The exit status man/trackevent.1 (EXIT STATUS) gives these counts: 74 lost > 69 (--strict and
/// spooled) > 65 rejected > 0.
[[nodiscard]] int exit_status(const RunCounts& counts);

}  // namespace trackevent::cli
