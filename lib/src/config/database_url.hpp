#pragma once
// Which database a URL designates (--db, the environment, or the embedded store), the URL shown
// without its password, and the sink that writes to it. The URL half is config/database_url.cpp;
// the sinks are made in pg/ and sqlite/.

#include "trackevent/sink.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace trackevent {

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

/// Opens a sink for `target`. Does not connect yet for PostgreSQL (connects lazily on first
/// write, so construction never blocks). Throws std::runtime_error only for an unusable SQLite
/// path.
[[nodiscard]] std::unique_ptr<Sink> make_sink(const DbTarget& target,
                                              const PgTimeouts& timeouts = {});
/// As above, over `connections` PostgreSQL connections (at least 1). Used as a plain Sink, each
/// batch of at least 1000 rows is cut into contiguous parts written concurrently, one transaction
/// per part; a Tracker instead writes each batch whole on the next free connection without
/// waiting for the others (see pg/parallel_sink.hpp). Each connection has a worker thread.
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
