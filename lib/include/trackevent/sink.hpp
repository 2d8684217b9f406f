#pragma once
/// Where batches of events are written. The library's own sinks are PostgreSQL and SQLite, chosen
/// by TrackerOptions::database_url; an application may give its own Sink (TrackerOptions::sink).

#include "trackevent/event.hpp"
#include "trackevent/export.h"

#include <cstddef>
#include <optional>
#include <span>
#include <string>

namespace trackevent {

/// What to do about a failed write. The library's sinks decide it from the SQLSTATE, in one place.
enum class Disposition {
  retry,   ///< transient (connection lost, shutdown, serialization, resources): back off, retry
  hold,    ///< needs an operator (auth, missing table, permission, read-only): spool, retry slowly
  reject,  ///< the data is bad (22xxx, 23xxx, 54000): split the batch to find the bad row(s)
};

struct Failure {
  Disposition disposition = Disposition::retry;
  std::string sqlstate;  ///< empty when there was none (e.g. connection refused)
  std::string message;   ///< driver/server message, never containing a password
  /// True when no connection could be opened for the write (nothing of the batch reached the
  /// server). Over several connections (TrackerOptions::connections), a connection that fails so
  /// while another works is set aside for a while and its batches go to the others.
  bool at_connect = false;
};

/// The result of writing one batch. A batch is all-or-nothing: either `failure` is empty and every
/// row is accounted for as stored or duplicate, or nothing from the batch was written.
struct WriteResult {
  std::size_t stored = 0;
  std::size_t duplicates = 0;
  std::optional<Failure> failure;
  [[nodiscard]] bool ok() const noexcept { return !failure.has_value(); }
};

/// A destination for batches. Implementations are used from one thread at a time.
class TRACKEVENT_API Sink {
 public:
  virtual ~Sink() = default;
  /// Writes the batch idempotently on event_id (a duplicate id is counted, not an error).
  /// Never throws: every failure is returned as a classified Failure.
  virtual WriteResult write(std::span<const Event> batch) noexcept = 0;
  /// A short description for logs, with any password redacted ("postgresql://u@h/db").
  [[nodiscard]] virtual std::string describe() const = 0;
};

/// Connection defaults added to a PostgreSQL conninfo unless it sets them: connect_timeout,
/// keepalives, tcp_user_timeout, application_name. Statement timeout is set per session.
struct PgTimeouts {
  int connect_timeout_s = 5;
  int statement_timeout_ms = 30000;
  int tcp_user_timeout_ms = 10000;
  int keepalives_idle_s = 10;
};

}  // namespace trackevent
