#pragma once
/// TrackerOptions: every knob of the Tracker, each with its default and the trade-off it makes.

#include "trackevent/export.h"
#include "trackevent/log.hpp"
#include "trackevent/sink.hpp"

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace trackevent {

class Clock;

/// Limits on the events given to track() (and on the CLI's input lines). An event over a limit is
/// rejected with a reason naming it.
struct Limits {
  /// Longest input line in bytes. Longer lines are skipped without being buffered whole.
  std::size_t max_line_bytes = 1024 * 1024;
  /// Largest `metadata` object, serialised, in bytes. At least 2 (the default `{}`).
  std::size_t max_metadata_bytes = 32 * 1024;
  /// Deepest nesting of arrays/objects inside the line (the line's own object is depth 1, so
  /// metadata's object is depth 2; smaller values act as 2).
  std::size_t max_depth = 64;
  /// Most keys in `metadata`, counted over all nested objects.
  std::size_t max_keys = 1000;
};

/// What track() does when the in-memory queue is full.
enum class OverflowPolicy {
  spool,  ///< default: write the event to the local spool (a disk write on the caller's thread)
  drop,   ///< count it as dropped and log (rate-limited); the caller never waits
  block,  ///< wait for room: backpressure, right for bulk loads from files, wrong for request paths
};

/// What a catalog's metadata schemas do to an event whose metadata breaks them
/// (TrackerOptions::catalog_mode, `--catalog-mode`). A name outside the catalog is rejected in
/// every mode.
enum class CatalogMode {
  reject,  ///< default: the event is rejected with the path and the rule it breaks
  warn,    ///< the event is kept; a warning is logged, at most once a second per event and rule
  off,     ///< metadata is not checked against the schemas
};

/// One error reported to TrackerOptions::on_error, in addition to the log.
struct ErrorInfo {
  std::string message;     ///< what happened, e.g. "failed to record analytics event"
  std::string detail;      ///< the underlying error (driver message, reason), password-free
  std::string sqlstate;    ///< when the database gave one
  std::size_t events = 0;  ///< how many events it concerns
};

struct TrackerOptions {
  /// Where events go: a PostgreSQL URL/conninfo or "sqlite:PATH". Empty: the embedded store at
  /// $XDG_DATA_HOME/trackevent/events.db. from_env() reads TRACKEVENT_DATABASE_URL, DATABASE_URL.
  std::string database_url;

  /// Events held in memory before the overflow policy applies. Bounds memory: at ~300 bytes an
  /// event, the default costs at most ~20 MiB.
  std::size_t queue_capacity = 65536;

  /// Largest batch sent in one round trip. Larger batches amortise the round trip; smaller ones
  /// bound the work redone when a batch must be split or retried.
  std::size_t batch_size = 5000;

  /// A partial batch is sent once its oldest event has waited this long (counted from when the
  /// dispatcher took it from the queue: at once when idle, within ~1 ms when busy). Lower:
  /// fresher data and more round trips.
  std::chrono::milliseconds flush_interval{200};

  /// What track() does when the queue is full; see OverflowPolicy.
  OverflowPolicy on_full = OverflowPolicy::spool;

  /// How long the destructor keeps delivering before it spools what is left.
  std::chrono::milliseconds shutdown_timeout{5000};

  /// Parallel connections (PostgreSQL only), each with its own writer thread. The dispatcher hands
  /// each batch whole to the next free connection (one transaction per batch) and forms the next
  /// batch meanwhile, so up to connections + 1 batches are held besides the queue. More
  /// connections use more server backends; past the first, they open only when there is more to
  /// write than one takes. One the server refuses while another works is set aside for a while.
  /// (`trackevent ingest` uses 2.)
  std::size_t connections = 1;

  /// Directory of the spool and dead-letter files. Empty: $TRACKEVENT_SPOOL_DIR, else
  /// $XDG_STATE_HOME/trackevent, else ~/.local/state/trackevent.
  std::filesystem::path spool_dir;

  /// When true, track() writes each event to the spool (group commit) before it counts as accepted,
  /// so a crash loses nothing that was accepted. Costs a disk write per group.
  bool durable = false;

  /// Whether a run that reaches the database drains the spool in the background.
  bool drain_spool = true;

  /// Connection deadlines for PostgreSQL.
  PgTimeouts pg_timeouts;

  /// Limits applied to events given to track().
  Limits limits;

  /// A tracking plan: a catalog file (JSON; man trackevent(1), TRACKING PLAN). When set, track()
  /// and the C ABI reject event names outside it and check metadata against the entry's schema
  /// as catalog_mode says. The Tracker's constructor throws std::runtime_error (naming the file
  /// and the JSON pointer) when it cannot be loaded. Empty: no catalog. track(Event) is not
  /// checked: it takes events already validated (the CLI's parser checks them).
  std::filesystem::path catalog;
  /// What a metadata schema violation does; see CatalogMode.
  CatalogMode catalog_mode = CatalogMode::reject;

  /// Called from the dispatcher thread for each error (after logging). Must not throw; if it does,
  /// the exception is caught and logged. Never called once close() or the destructor has
  /// returned, even when they left a hung database write behind; a call in progress then is
  /// waited for, so the callback must return.
  std::function<void(const ErrorInfo&)> on_error;

  /// Where the library's log lines go while this Tracker is open: to this callback instead of
  /// stderr (where they are one JSON object per line), so an application can hand them to its own
  /// logger with their level and fields. The library's log is one per process: every line from
  /// any of its threads (this Tracker's, its connections', another Tracker's) goes to the newest
  /// open Tracker that set a callback; when that one closes, to the one before, then to stderr.
  /// Lines below info are not logged. Called from any thread, one line at a time; must not throw
  /// (an exception is swallowed). A line the callback itself causes (it calls into the library
  /// on the same thread) goes to stderr. Never called once close() or the destructor has
  /// returned; a call in progress then is waited for, so the callback must return.
  /// (A callback, not an spdlog sink: spdlog is the library's private dependency, so its types
  /// and version stay out of the application's build and of the ABI.)
  LogCallback log;

  /// For tests and embedding: a sink to use instead of opening database_url.
  std::shared_ptr<Sink> sink;
  /// For tests: the clock used for batching and backoff. Null: the steady clock.
  std::shared_ptr<Clock> clock;
  /// For tests: returns a number in [0, 1) that scales each retry delay (full jitter). Null: a
  /// random source. Returning 0 makes retries immediate.
  std::function<double()> jitter;

  /// Defaults, with database_url from TRACKEVENT_DATABASE_URL or DATABASE_URL and the spool
  /// directory from TRACKEVENT_SPOOL_DIR when set.
  [[nodiscard]] TRACKEVENT_API static TrackerOptions from_env();
};

}  // namespace trackevent
