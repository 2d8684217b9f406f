#include "pg/connection.hpp"

#include "config/database_url.hpp"
#include "pg/pg_wait.hpp"
#include "pg/sqlstate.hpp"

#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>
#include <thread>
#include <vector>

namespace trackevent::pg {
namespace {

using Clock = std::chrono::steady_clock;
using detail::Result;
using std::chrono::milliseconds;

/// Bytes per PQputCopyData call.
constexpr std::size_t kCopyChunk = std::size_t{1} << 20;

struct PgResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

PgTimeouts normalized(PgTimeouts t) {
  // Zero or negative would mean "wait forever", which every caller's contract forbids.
  if (t.connect_timeout_s <= 0) t.connect_timeout_s = PgTimeouts{}.connect_timeout_s;
  if (t.statement_timeout_ms <= 0) t.statement_timeout_ms = PgTimeouts{}.statement_timeout_ms;
  if (t.tcp_user_timeout_ms < 0) t.tcp_user_timeout_ms = PgTimeouts{}.tcp_user_timeout_ms;
  if (t.keepalives_idle_s <= 0) t.keepalives_idle_s = PgTimeouts{}.keepalives_idle_s;
  return t;
}

std::string scrub_password(std::string text, const std::string& password) {
  // A password of one or two characters would mangle every message, and cannot be told apart
  // from the text around it anyway.
  if (password.size() < 3) return text;
  for (std::size_t at = text.find(password); at != std::string::npos;
       at = text.find(password, at + 3)) {
    text.replace(at, password.size(), "***");
  }
  return text;
}

std::string trim_message(std::string m) {
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

/// libpq's parse error, with quoted fragments dropped: for a malformed URL they can hold the
/// password ("invalid percent-encoded token: \"pa%zz\"").
std::string without_quoted(std::string_view msg) {
  std::string out;
  bool quoted = false;
  for (const char c : msg) {
    if (c == '"') {
      if (!quoted) out += "\"…\"";
      quoted = !quoted;
    } else if (!quoted) {
      out += c;
    }
  }
  return one_line(out);
}

/// libpq keeps no SQLSTATE for a failed connection, but in verbose mode it prints one:
/// "FATAL:  3D000: database "x" does not exist". Returns {sqlstate, message without it}.
std::pair<std::string, std::string> split_connect_error(std::string msg) {
  std::string sqlstate;
  std::string out;
  std::size_t pos = 0;
  while (pos < msg.size()) {
    std::size_t eol = msg.find('\n', pos);
    if (eol == std::string::npos) eol = msg.size();
    std::string line = msg.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.starts_with("LOCATION:")) continue;
    for (const std::string_view sev : {"FATAL:  ", "ERROR:  ", "PANIC:  "}) {
      const std::size_t at = line.find(sev);
      if (at == std::string::npos) continue;
      const std::size_t code = at + sev.size();
      if (line.size() >= code + 7 && line.compare(code + 5, 2, ": ") == 0) {
        bool valid = true;
        for (std::size_t i = code; i < code + 5; ++i) {
          const char c = line[i];
          valid = valid && ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'));
        }
        if (valid) {
          sqlstate = line.substr(code, 5);
          line.erase(code, 7);
        }
      }
      break;
    }
    if (!out.empty()) out.push_back(' ');
    out.append(line);
  }
  return {sqlstate, trim_message(out)};
}

void ignore_notice(void* /*arg*/, const char* /*message*/) noexcept {}

/// PQcancel connects to the server with a blocking connect() and no timeout in libpq 15, so it
/// runs on its own detached thread; we wait for its effect (the query's result), not for it.
void send_cancel_detached(PGconn* conn) noexcept {
  PGcancel* cancel = PQgetCancel(conn);
  if (cancel == nullptr) return;
  try {
    std::thread([cancel] {
      std::array<char, 256> err{};
      PQcancel(cancel, err.data(), static_cast<int>(err.size()));
      PQfreeCancel(cancel);
    }).detach();
  } catch (const std::exception&) {  // std::system_error, std::bad_alloc
    PQfreeCancel(cancel);  // no thread: give up on the cancel, the caller drops the connection
  }
}

PgError make_error(PgError::Kind kind, std::string message, std::string sqlstate = {}) {
  PgError e;
  e.kind = kind;
  e.sqlstate = std::move(sqlstate);
  e.message = std::move(message);
  return e;
}

}  // namespace

std::string one_line(std::string_view s) {
  std::string out;
  bool space = false;
  for (const char c : s) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

Disposition classify(const PgError& e) noexcept {
  switch (e.kind) {
    case PgError::Kind::server:
      return classify_sqlstate(e.sqlstate, e.own_cancel);
    case PgError::Kind::timeout:
      return Disposition::retry;
    case PgError::Kind::broken:
      break;
  }
  // libpq's own "no password supplied": an operator must act, like 28P01.
  if (e.message.find("no password supplied") != std::string::npos) {
    return classify_sqlstate("28P01");
  }
  return Disposition::retry;
}

// ---- Conninfo ---------------------------------------------------------------------------------

Conninfo::Conninfo(std::string conninfo)
    : conninfo_(std::move(conninfo)), described_(redact_conninfo(conninfo_)) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo_.c_str(), &err);
  if (opts == nullptr) {
    parse_error_ = err != nullptr ? without_quoted(err) : "out of memory";
    if (err != nullptr) PQfreemem(err);
  } else {
    for (const PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr) password_ = o->val;
    }
    PQconninfoFree(opts);
  }
  const bool expands = conninfo_.find('=') != std::string::npos ||
                       conninfo_.starts_with("postgresql://") ||
                       conninfo_.starts_with("postgres://");
  usable_ = !expands || !parse_error_;
}

std::string Conninfo::scrub(std::string text) const {
  return scrub_password(std::move(text), password_);
}

// ---- Connection: connecting -------------------------------------------------------------------

Connection::Connection(PGconn* conn, std::string password, const PgTimeouts& timeouts) noexcept
    : conn_(conn), password_(std::move(password)), timeouts_(timeouts) {}

Connection::Connection(Connection&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)),
      password_(std::move(other.password_)),
      timeouts_(other.timeouts_) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    conn_ = std::exchange(other.conn_, nullptr);
    password_ = std::move(other.password_);
    timeouts_ = other.timeouts_;
  }
  return *this;
}

Result<Connection, PgError> Connection::open(const Conninfo& ci, const Settings& settings) {
  const PgTimeouts t = normalized(settings.timeouts);
  const auto fail = [&ci](PgError e) {
    e.message = ci.scrub(std::move(e.message));
    return e;
  };

  const std::string connect_timeout = std::to_string(t.connect_timeout_s);
  const std::string idle = std::to_string(t.keepalives_idle_s);
  const std::string interval = std::to_string(std::max(1, t.keepalives_idle_s / 2));
  const std::string user_timeout = std::to_string(t.tcp_user_timeout_ms);

  // Our defaults come before dbname, so anything the conninfo sets (expanded in place of
  // dbname) overrides them; the PG* variables libpq reads for unset options are respected by
  // not setting the ones they cover. client_encoding comes last: COPY sends UTF-8 text.
  std::vector<const char*> keys;
  std::vector<const char*> values;
  auto add = [&](const char* k, const char* v) {
    keys.push_back(k);
    values.push_back(v);
  };
  if (std::getenv("PGCONNECT_TIMEOUT") == nullptr) add("connect_timeout", connect_timeout.c_str());
  add("keepalives", "1");
  add("keepalives_idle", idle.c_str());
  add("keepalives_interval", interval.c_str());
  add("keepalives_count", "3");
  add("tcp_user_timeout", user_timeout.c_str());
  add("fallback_application_name", settings.application_name.c_str());
  add("dbname", ci.str().c_str());
  add("client_encoding", "UTF8");
  keys.push_back(nullptr);
  values.push_back(nullptr);

  PGconn* conn = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) {
    return fail(make_error(PgError::Kind::broken, "out of memory creating connection"));
  }
  PQsetNoticeProcessor(conn, &ignore_notice, nullptr);
  PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);  // so connection errors carry their SQLSTATE

  // libpq enforces connect_timeout only in its blocking calls; we poll, so we enforce it.
  int timeout_s = t.connect_timeout_s;
  if (PQconninfoOption* used = PQconninfo(conn)) {
    for (PQconninfoOption* o = used; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "connect_timeout") == 0 && o->val != nullptr) {
        const int v = std::atoi(o->val);
        if (v > 0) timeout_s = std::max(2, v);  // libpq's own minimum
      }
    }
    PQconninfoFree(used);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);

  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  if (PQstatus(conn) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
  // Note: host name resolution inside PQconnectPoll is blocking (getaddrinfo).
  while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
    const int ready = detail::wait_socket(conn, st == PGRES_POLLING_WRITING, deadline);
    // Past the deadline, give up whatever the wait said: on -1 (no socket yet, poll failed)
    // the loop polls again at once and could otherwise spin past it.
    if (ready == 0 || Clock::now() >= deadline) {
      PQfinish(conn);
      return fail(make_error(PgError::Kind::timeout, "timeout expired connecting to " +
                                                         ci.described() + " after " +
                                                         std::to_string(timeout_s) + " s"));
    }
    st = PQconnectPoll(conn);
  }
  if (st == PGRES_POLLING_FAILED) {
    auto [sqlstate, msg] = split_connect_error(PQerrorMessage(conn));
    PQfinish(conn);
    const auto kind = sqlstate.empty() ? PgError::Kind::broken : PgError::Kind::server;
    return fail(
        make_error(kind, msg.empty() ? "connection failed" : std::move(msg), std::move(sqlstate)));
  }

  PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
  if (PQsetnonblocking(conn, 1) != 0) {
    PQfinish(conn);
    return fail(make_error(PgError::Kind::broken, "cannot make the connection non-blocking"));
  }
  Connection c(conn, ci.password_, t);
  // A constant integer we formatted ourselves; nothing from the caller goes into SQL text.
  const std::string set_timeout =
      "SET statement_timeout = " + std::to_string(t.statement_timeout_ms);
  if (auto r = c.exec(set_timeout.c_str()); !r) {
    c.close();
    return std::move(r).error();
  }
  return c;
}

bool Connection::is_open() const noexcept {
  return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK;
}

bool Connection::usable() noexcept {
  // An idle connection the server closed (restart, pg_terminate_backend) has data waiting:
  // reading it now lets the caller reconnect instead of failing its next call on a dead socket.
  // A FATAL message and the EOF after it may take two reads to see.
  for (int i = 0; i < 3 && is_open(); ++i) {
    pollfd p{PQsocket(conn_), POLLIN, 0};
    if (p.fd >= 0 && ::poll(&p, 1, 0) <= 0) break;
    if (p.fd < 0 || PQconsumeInput(conn_) == 0) close();
  }
  if (is_open() && PQtransactionStatus(conn_) == PQTRANS_IDLE) return true;
  close();  // broken or left mid-transaction
  return false;
}

void Connection::close() noexcept {
  if (conn_ == nullptr) return;
  // A borrower (libpqxx) may have installed a notice processor pointing into itself.
  PQsetNoticeProcessor(conn_, &ignore_notice, nullptr);
  PQfinish(conn_);
  conn_ = nullptr;
}

PGconn* Connection::lend_blocking() noexcept {
  if (conn_ != nullptr) PQsetnonblocking(conn_, 0);
  return conn_;
}

// ---- Connection: one round trip ---------------------------------------------------------------

std::chrono::milliseconds Connection::statement_budget() const {
  // The server's statement_timeout normally fires first; the margin covers the network.
  return milliseconds(timeouts_.statement_timeout_ms) +
         milliseconds(1000 + timeouts_.statement_timeout_ms / 10);
}

/// Deadline passed: ask the server to cancel, give it a short grace to answer with 57014.
bool Connection::cancel_and_extend(Clock::time_point& deadline, bool& cancelled) {
  if (cancelled) return false;  // the cancel did not help: the caller drops the connection
  cancelled = true;
  send_cancel_detached(conn_);
  deadline = Clock::now() + milliseconds(1000 + timeouts_.statement_timeout_ms / 10);
  return true;
}

PgError Connection::broken(std::string what) const {
  std::string msg = trim_message(PQerrorMessage(conn_));
  return make_error(PgError::Kind::broken,
                    msg.empty() ? std::move(what) : std::move(what) + ": " + msg);
}

/// Sends everything libpq has buffered, reading input meanwhile (as libpq's docs require).
bool Connection::flush_output(Clock::time_point& deadline, bool& cancelled, PgError& out) {
  while (true) {
    const int r = PQflush(conn_);
    if (r == 0) return true;
    if (r < 0) {
      out = broken("sending to the server failed");
      return false;
    }
    const int fd = PQsocket(conn_);
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      if (cancel_and_extend(deadline, cancelled)) continue;
      out = make_error(PgError::Kind::timeout, "timeout sending to the server");
      return false;
    }
    pollfd p{fd, POLLIN | POLLOUT, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
    if (n < 0 && errno != EINTR) {
      out = broken("poll failed");
      return false;
    }
    if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0 && PQconsumeInput(conn_) == 0) {
      out = broken("connection to the server lost");
      return false;
    }
  }
}

/// Reads results until the query string is done, or until COPY IN starts (then *copy_started is
/// set; with copy_started null a COPY is unexpected). Keeps the first error.
Result<std::size_t, PgError> Connection::collect(Clock::time_point deadline, bool cancelled,
                                                 bool* copy_started) {
  std::optional<PgError> error;
  std::size_t affected = 0;
  const auto started = Clock::now();
  while (true) {
    while (PQisBusy(conn_) != 0) {
      const int ready = detail::wait_socket(conn_, false, deadline);
      if (ready == 0) {
        if (cancel_and_extend(deadline, cancelled)) continue;
        return make_error(PgError::Kind::timeout,
                          "no answer from the server within " +
                              std::to_string(statement_budget().count()) +
                              " ms, even after a cancel; connection dropped");
      }
      if (ready < 0 || PQconsumeInput(conn_) == 0) return broken("connection to the server lost");
    }
    ResultPtr res{PQgetResult(conn_)};
    if (!res) {
      if (error) return std::move(*error);
      return affected;
    }
    switch (PQresultStatus(res.get())) {
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
        if (const char* n = PQcmdTuples(res.get()); n != nullptr && *n != '\0') {
          affected = static_cast<std::size_t>(std::strtoull(n, nullptr, 10));
        }
        break;
      case PGRES_COPY_IN:
        if (error) return std::move(*error);
        if (copy_started == nullptr) return broken("unexpected COPY from the server");
        *copy_started = true;
        return affected;
      case PGRES_FATAL_ERROR:
      default:
        if (!error) {
          const char* code = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
          const char* primary = PQresultErrorField(res.get(), PG_DIAG_MESSAGE_PRIMARY);
          const char* constraint = PQresultErrorField(res.get(), PG_DIAG_CONSTRAINT_NAME);
          PgError e = make_error(
              PgError::Kind::server,
              primary != nullptr ? primary : trim_message(PQresultErrorMessage(res.get())),
              code != nullptr ? code : "");
          e.constraint = constraint != nullptr ? constraint : "";
          // 57014 after our cancel, or from the statement_timeout we set: ours.
          e.own_cancel =
              e.sqlstate == "57014" &&
              (cancelled || Clock::now() - started >=
                                milliseconds(timeouts_.statement_timeout_ms) - milliseconds(50));
          error = std::move(e);
        }
        break;
    }
    if (PQstatus(conn_) == CONNECTION_BAD) {
      if (error) return std::move(*error);  // its SQLSTATE says more (57P01...)
      return broken("connection to the server lost");
    }
  }
}

Result<std::size_t, PgError> Connection::run(const char* sql) {
  auto deadline = Clock::now() + statement_budget();
  bool cancelled = false;
  if (PQsendQuery(conn_, sql) == 0) return broken("sending the query failed");
  PgError e;
  if (!flush_output(deadline, cancelled, e)) return e;
  return collect(deadline, cancelled, nullptr);
}

PgError Connection::scrubbed(PgError e) const {
  e.message = scrub_password(std::move(e.message), password_);
  return e;
}

/// After any call: on failure roll back what the server left open, or drop a dead or stuck
/// connection (a new one next time); the message is scrubbed.
Result<std::size_t, PgError> Connection::after(Result<std::size_t, PgError> r) {
  if (r) return r;
  PgError e = scrubbed(std::move(r).error());
  if (e.kind == PgError::Kind::server && is_open()) {
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE && !run("ROLLBACK")) close();
  } else {
    close();
  }
  return e;
}

// ---- Connection: the calls --------------------------------------------------------------------

Result<std::size_t, PgError> Connection::exec(const char* sql) {
  if (conn_ == nullptr) return make_error(PgError::Kind::broken, "not connected");
  return after(run(sql));
}

Result<std::size_t, PgError> Connection::exec_params(const char* sql, int n, const Oid* types,
                                                     const char* const* values, const int* lengths,
                                                     const int* formats) {
  if (conn_ == nullptr) return make_error(PgError::Kind::broken, "not connected");
  auto deadline = Clock::now() + statement_budget();
  bool cancelled = false;
  if (PQsendQueryParams(conn_, sql, n, types, values, lengths, formats, 0) == 0) {
    return after(broken("sending the query failed"));
  }
  PgError e;
  if (!flush_output(deadline, cancelled, e)) return after(std::move(e));
  return after(collect(deadline, cancelled, nullptr));
}

Result<std::size_t, PgError> Connection::copy_in(const char* sql, const std::string& data,
                                                 MoreFn more) {
  if (conn_ == nullptr) return make_error(PgError::Kind::broken, "not connected");
  auto deadline = Clock::now() + statement_budget();
  bool cancelled = false;
  if (PQsendQuery(conn_, sql) == 0) return after(broken("sending the query failed"));
  PgError e;
  if (!flush_output(deadline, cancelled, e)) return after(std::move(e));
  bool open = more();
  bool copying = false;
  if (auto r = collect(deadline, cancelled, &copying); !r || !copying) {
    return after(r ? Result<std::size_t, PgError>(
                         make_error(PgError::Kind::broken, "server did not start the COPY"))
                   : std::move(r));
  }
  std::size_t off = 0;
  bool server_ended = false;  // the server ended the COPY with an error: the result tells which
  while (!server_ended) {
    while (off < data.size()) {
      const std::size_t n = std::min(kCopyChunk, data.size() - off);
      const int r = PQputCopyData(conn_, data.data() + off, static_cast<int>(n));
      if (r < 0) {
        server_ended = true;
        break;
      }
      if (r == 0) {  // libpq's buffer is full: drain it and try again
        if (!flush_output(deadline, cancelled, e)) return after(std::move(e));
        continue;
      }
      off += n;
    }
    if (!open) break;
    open = more();
  }
  while (true) {
    const int r = PQputCopyEnd(conn_, nullptr);
    if (r < 0 || r == 1) break;
    if (!flush_output(deadline, cancelled, e)) return after(std::move(e));
  }
  if (!flush_output(deadline, cancelled, e)) return after(std::move(e));
  return after(collect(deadline, cancelled, nullptr));
}

}  // namespace trackevent::pg
