#pragma once
// The one PostgreSQL connection type (docs/architecture.md, "PostgreSQL"). It owns the PGconn and
// is the only code that speaks libpq's protocol: connecting under a deadline with the connection
// defaults, queries, COPY FROM STDIN, cancel, rollback. Every error comes back as a PgError whose
// message holds no password. The sink (pg_sink.cpp), the probe (spool/drain.cpp) and the
// migrations (schema/pg_migrate.cpp, which lend its PGconn to libpqxx) all connect through it.

#include "trackevent/sink.hpp"

#include "base/result.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace trackevent::pg {

/// Why a call on a Connection failed.
struct PgError {
  enum class Kind {
    server,   ///< the server refused (its SQLSTATE is in `sqlstate`)
    timeout,  ///< a deadline passed (connect, or a statement even after a cancel)
    broken,   ///< no connection: refused, lost, or never made
  };
  Kind kind = Kind::broken;
  std::string sqlstate;     ///< "" when there was none
  std::string message;      ///< libpq's or the server's, never holding the password
  std::string constraint;   ///< the constraint a 23xxx names, else ""
  bool own_cancel = false;  ///< a 57014 from our own cancel or statement_timeout
};

/// What to do about `e`: classify_sqlstate (sqlstate.cpp) for what the server said; retry for
/// timeouts and lost connections, except libpq's "no password supplied", which needs an operator
/// like 28P01.
[[nodiscard]] Disposition classify(const PgError& e) noexcept;

/// `s` on one line: libpq's messages span lines ("...failed: Connection refused\n\tIs the server
/// running..."), which read badly in a log field.
[[nodiscard]] std::string one_line(std::string_view s);

/// A conninfo (URL, key=value string or database name) as given, read once: how to show it, its
/// password (to scrub from messages), whether libpq parses it.
class Conninfo {
 public:
  explicit Conninfo(std::string conninfo);

  [[nodiscard]] const std::string& str() const noexcept { return conninfo_; }
  /// The conninfo with any password replaced by "***" (redact_conninfo).
  [[nodiscard]] const std::string& described() const noexcept { return described_; }
  /// Why libpq cannot parse it as a URL or key=value string (quoted fragments, which may hold
  /// the password, left out), or nullopt when it can.
  [[nodiscard]] const std::optional<std::string>& parse_error() const noexcept {
    return parse_error_;
  }
  /// Whether connecting can work: libpq parses it, or it is a plain database name (libpq expands
  /// dbname only when it holds '=' or starts like a URL).
  [[nodiscard]] bool usable() const noexcept { return usable_; }
  /// `text` with every occurrence of the password replaced by "***". Messages from libpq and the
  /// server do not echo passwords; this is the second line of defence, and the only one.
  [[nodiscard]] std::string scrub(std::string text) const;

 private:
  friend class Connection;  // keeps the password to scrub its own messages

  std::string conninfo_;
  std::string described_;
  std::string password_;
  std::optional<std::string> parse_error_;
  bool usable_ = true;
};

/// How to connect. The defaults are applied in Connection::open only.
struct Settings {
  /// Zero or negative values mean the defaults of PgTimeouts (never "wait forever").
  PgTimeouts timeouts;
  /// fallback_application_name: application_name in the conninfo or PGAPPNAME wins over it.
  std::string application_name = "trackevent";
};

/// A callable `bool()` by reference, without allocating (COPY's "encode the next piece").
class MoreFn {
 public:
  /// `f` must outlive the call it is passed to (a temporary does).
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, MoreFn>>>
  MoreFn(F&& f) noexcept  // NOLINT: implicit on purpose
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o) { return (*static_cast<std::remove_reference_t<F>*>(o))(); }) {}
  bool operator()() const { return call_(obj_); }

 private:
  void* obj_;
  bool (*call_)(void*);
};

/// One open connection to PostgreSQL, in non-blocking mode. Each call bounds its wait by a
/// deadline: the connect timeout, or statement_timeout plus a margin, past which it cancels once
/// and then gives up. After a failed call the connection is idle (a transaction left open was
/// rolled back) or closed (is_open() false): a caller never has to clean up.
class Connection {
 public:
  /// Connects to `ci` within the connect timeout (connect_timeout in the conninfo or
  /// PGCONNECT_TIMEOUT, else Settings), with keepalives, tcp_user_timeout, client_encoding UTF8,
  /// the fallback application name, and then `SET statement_timeout`.
  [[nodiscard]] static detail::Result<Connection, PgError> open(const Conninfo& ci,
                                                                const Settings& settings);

  Connection() = default;  ///< closed
  ~Connection() { close(); }
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] bool is_open() const noexcept;
  /// True when the connection is open, idle and not closed by the server in the meantime (a
  /// restart or pg_terminate_backend leaves a message and EOF waiting, read here without
  /// blocking). A false return closes it.
  [[nodiscard]] bool usable() noexcept;
  void close() noexcept;

  /// One simple-query round trip (several statements allowed). The value is the row count of the
  /// last command that reported one (0 if none did).
  detail::Result<std::size_t, PgError> exec(const char* sql);
  /// One parameterised statement (PQsendQueryParams; `formats` 1 for binary parameters).
  detail::Result<std::size_t, PgError> exec_params(const char* sql, int n, const Oid* types,
                                                   const char* const* values, const int* lengths,
                                                   const int* formats);
  /// Runs `sql`, which must end in a COPY ... FROM STDIN, and streams `data` into it. Each call of
  /// `more` appends the next piece to `data` and returns false once nothing is left (what it
  /// appended then is still sent); the first piece is encoded while the server starts the COPY,
  /// each later one while it parses the last. The value is as for exec().
  detail::Result<std::size_t, PgError> copy_in(const char* sql, const std::string& data,
                                               MoreFn more);

  /// The PGconn, switched to blocking mode, for libpqxx (schema/pg_migrate.cpp): the Connection
  /// still owns it and must outlive the user. Null when closed.
  [[nodiscard]] PGconn* lend_blocking() noexcept;

 private:
  using Clock = std::chrono::steady_clock;

  Connection(PGconn* conn, std::string password, const PgTimeouts& timeouts) noexcept;

  [[nodiscard]] std::chrono::milliseconds statement_budget() const;
  bool cancel_and_extend(Clock::time_point& deadline, bool& cancelled);
  [[nodiscard]] PgError broken(std::string what) const;
  bool flush_output(Clock::time_point& deadline, bool& cancelled, PgError& out);
  detail::Result<std::size_t, PgError> collect(Clock::time_point deadline, bool cancelled,
                                               bool* copy_started);
  detail::Result<std::size_t, PgError> run(const char* sql);
  detail::Result<std::size_t, PgError> after(detail::Result<std::size_t, PgError> r);
  PgError scrubbed(PgError e) const;

  PGconn* conn_ = nullptr;
  std::string password_;  // to scrub from messages
  PgTimeouts timeouts_;
};

}  // namespace trackevent::pg
