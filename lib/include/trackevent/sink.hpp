#pragma once
/// Where batches of events are written: PostgreSQL in production, SQLite as the embedded default.

#include "trackevent/event.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace trackevent {

/// What to do about a failed write, decided from the SQLSTATE in one place (classify_sqlstate).
enum class Disposition {
  retry,   ///< transient (connection lost, shutdown, serialization, resources): back off, retry
  hold,    ///< needs an operator (auth, missing table, permission, read-only): spool, retry slowly
  reject,  ///< the data is bad (22xxx, 23xxx, 54000): split the batch to find the bad row(s)
};

[[nodiscard]] std::string_view to_string(Disposition d) noexcept;

/// Classifies a SQLSTATE (empty when the connection was lost without one). `own_cancel` is true
/// when a 57014 (query_canceled) came from our own statement timeout or cancel.
[[nodiscard]] Disposition classify_sqlstate(std::string_view sqlstate,
                                            bool own_cancel = false) noexcept;

struct Failure {
  Disposition disposition = Disposition::retry;
  std::string sqlstate;  ///< empty when there was none (e.g. connection refused)
  std::string message;   ///< driver/server message, never containing a password
  /// True when no connection could be opened for the write (nothing of the batch reached the
  /// server). Over several connections, a connection that fails so while another works is set
  /// aside for a while and its batches go to the others (see make_sink with `connections`).
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
class Sink {
 public:
  virtual ~Sink() = default;
  /// Writes the batch idempotently on event_id (a duplicate id is counted, not an error).
  /// Never throws: every failure is returned as a classified Failure.
  virtual WriteResult write(std::span<const Event> batch) noexcept = 0;
  /// A short description for logs, with any password redacted ("postgresql://u@h/db").
  [[nodiscard]] virtual std::string describe() const = 0;
};

/// Which store a database URL designates.
struct DbTarget {
  enum class Kind { postgres, sqlite } kind = Kind::sqlite;
  std::string conninfo;  ///< libpq URL or key=value string (postgres) or file path (sqlite)
};

/// How closely a PostgreSQL URL is checked before it is used.
enum class UrlCheck {
  /// libpq parses it as well: unknown keywords, bad quoting and malformed URLs are errors.
  full,
  /// Its scheme or key=value shape only, without libpq's parser: what libpq would reject is
  /// reported when a connection is made (`send --background` hands the URL to its deliverer).
  form,
};

/// Picks the database (README, "Using the CLI"): `cli_value`, else TRACKEVENT_DATABASE_URL, else
/// DATABASE_URL, else the embedded store at $XDG_DATA_HOME/trackevent/events.db.
[[nodiscard]] DbTarget resolve_database(const std::optional<std::string>& cli_value);
[[nodiscard]] DbTarget resolve_database(const std::optional<std::string>& cli_value,
                                        UrlCheck check);
/// Interprets one URL: postgres://, postgresql://, key=value -> postgres; sqlite:PATH -> sqlite.
/// Throws std::invalid_argument (password redacted) for a URL it rejects.
[[nodiscard]] DbTarget parse_database_url(std::string_view url);
[[nodiscard]] DbTarget parse_database_url(std::string_view url, UrlCheck check);
/// The URL or conninfo with any password replaced by "***".
[[nodiscard]] std::string redact_conninfo(std::string_view conninfo);

/// Connection defaults added to a PostgreSQL conninfo unless it sets them: connect_timeout,
/// keepalives, tcp_user_timeout, application_name. Statement timeout is set per session.
struct PgTimeouts {
  int connect_timeout_s = 5;
  int statement_timeout_ms = 30000;
  int tcp_user_timeout_ms = 10000;
  int keepalives_idle_s = 10;
};

/// Opens a sink for `target`. Does not connect yet for PostgreSQL (connects lazily on first
/// write, so construction never blocks). Throws std::runtime_error only for an unusable SQLite
/// path.
[[nodiscard]] std::unique_ptr<Sink> make_sink(const DbTarget& target,
                                              const PgTimeouts& timeouts = {});
/// As above, over `connections` PostgreSQL connections (at least 1). Used as a plain Sink, each
/// batch of at least 1000 rows is cut into contiguous parts written concurrently, one transaction
/// per part; a Tracker instead writes each batch whole on the next free connection without
/// waiting for the others (see lib/src/pg/parallel_sink.hpp). Each connection has a worker thread.
/// A connection that cannot be opened while another works (the server or the role allows fewer
/// connections, SQLSTATE 53300) is set aside for 30 s, then longer up to 5 min while it keeps
/// failing, with one warning each time; the others write its rows, and no batch fails for it.
/// Ignored for SQLite (one connection). Connects lazily too.
[[nodiscard]] std::unique_ptr<Sink> make_sink(const DbTarget& target, const PgTimeouts& timeouts,
                                              std::size_t connections);
[[nodiscard]] std::unique_ptr<Sink> make_postgres_sink(std::string conninfo,
                                                       const PgTimeouts& timeouts = {});
[[nodiscard]] std::unique_ptr<Sink> make_sqlite_sink(std::string path);

}  // namespace trackevent
