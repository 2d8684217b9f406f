// The PostgreSQL sink: one binary COPY per batch over a lazily opened libpq connection.
//
// It uses libpq directly rather than libpqxx: libpqxx 6.4 (Debian 12) has no binary COPY
// (its stream_to writes text format) and gives no access to the raw PGconn, which we need for
// non-blocking I/O with our own deadlines, PQcancel, and error fields during connection.
//
// Per batch, on the fast path: one COPY (its own transaction; the query and then the data, two
// round trips), its rows encoded and sent a few hundred at a time so the server is parsing the
// first ones while the client encodes the rest. When the batch holds an id the table already has
// (23505 on analytics_events_pkey), two statements more: COPY into a session temp table inside
// BEGIN, then INSERT ... ON CONFLICT DO NOTHING; COMMIT. After such a fallback the next batches go
// straight to the conflict-tolerant path while duplicates keep turning up (spool replays tend to
// come in runs), so we don't pay the wasted COPY each time. A batch of one event (`trackevent
// send`) is a single parameterised INSERT ... ON CONFLICT DO NOTHING instead: one round trip.
#include "config/database_url.hpp"
#include "pg/libpq.hpp"
#include "pg/pg_wait.hpp"
#include "pg/sqlstate.hpp"

#include <poll.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace trackevent {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kCopyDirect =
    "COPY analytics_events (event_id, org_id, user_id, event_name, metadata, occurred_at) "
    "FROM STDIN (FORMAT binary)";
constexpr const char* kCopyToTemp =
    "BEGIN; "
    "CREATE TEMP TABLE IF NOT EXISTS trackevent_batch (LIKE analytics_events INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS; "
    "COPY trackevent_batch (event_id, org_id, user_id, event_name, metadata, occurred_at) "
    "FROM STDIN (FORMAT binary)";
constexpr const char* kInsertFromTemp =
    "INSERT INTO analytics_events (event_id, org_id, user_id, event_name, metadata, occurred_at) "
    "SELECT event_id, org_id, user_id, event_name, metadata, occurred_at FROM trackevent_batch "
    "ON CONFLICT (event_id) DO NOTHING; "
    "COMMIT";
constexpr const char* kInsertOne =
    "INSERT INTO analytics_events (event_id, org_id, user_id, event_name, metadata, occurred_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING";
constexpr std::string_view kPrimaryKey = "analytics_events_pkey";

/// Batches after a duplicate-id fallback that skip the fast path (reset by a clean batch).
constexpr int kConflictModeBatches = 16;
/// COPY buffer capacity kept between batches (a larger one is freed after its batch).
constexpr std::size_t kKeepCopyBytes = std::size_t{16} << 20;
/// Largest field the binary COPY format (and a libpq parameter) can carry.
constexpr std::size_t kMaxField = std::numeric_limits<std::int32_t>::max();
/// Bytes per PQputCopyData call.
constexpr std::size_t kCopyChunk = std::size_t{1} << 20;
/// Rows encoded and sent at a time, so the server parses one piece while the next is encoded.
constexpr std::size_t kStreamRows = 256;
/// Seconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch.
constexpr std::int64_t kPgEpochOffsetUs = 946'684'800'000'000;

// ---- binary encoding (COPY rows and INSERT parameters) ----------------------------------------

/// `v` in network byte order, as PostgreSQL's binary formats want it.
template <typename U>
std::array<char, sizeof(U)> big_endian(U v) {
  std::array<char, sizeof(U)> out{};
  for (std::size_t i = sizeof(U); i-- > 0;) {
    out[i] = static_cast<char>(v & 0xFF);
    v = static_cast<U>(v >> 8);
  }
  return out;
}

/// Microseconds since 1970 -> PostgreSQL's timestamptz (microseconds since 2000), binary.
std::array<char, 8> pg_timestamp(std::int64_t unix_us) {
  return big_endian(static_cast<std::uint64_t>(unix_us - kPgEpochOffsetUs));
}

/// What write_batch checks before encoding: every field fits the formats' int32 lengths.
bool fits_binary_format(const Event& e) noexcept {
  return e.event_name.size() <= kMaxField && e.metadata.size() + 1 <= kMaxField;
}

/// Writes binary COPY data into a caller-owned buffer, so its capacity is kept across batches
/// (no large allocation, and no fresh pages to fault in, per batch).
class CopyEncoder {
 public:
  explicit CopyEncoder(std::string& buf) : buf_(buf) {
    static constexpr char kSignature[] = "PGCOPY\n\377\r\n";  // + the implicit '\0': 11 bytes
    buf_.clear();
    buf_.append(kSignature, sizeof kSignature);
    put32(0);  // flags: no OIDs
    put32(0);  // header extension length
  }

  /// Appends one row; fits_binary_format(e) must hold.
  void add(const Event& e) {
    put16(6);
    put32(16);
    buf_.append(reinterpret_cast<const char*>(e.event_id.bytes.data()), e.event_id.bytes.size());
    put32(8);
    put64(static_cast<std::uint64_t>(e.org_id));
    if (e.user_id) {
      put32(8);
      put64(static_cast<std::uint64_t>(*e.user_id));
    } else {
      put32(static_cast<std::uint32_t>(-1));  // NULL
    }
    put32(static_cast<std::uint32_t>(e.event_name.size()));
    buf_.append(e.event_name);
    put32(static_cast<std::uint32_t>(e.metadata.size() + 1));
    buf_.push_back('\1');  // jsonb binary format version
    buf_.append(e.metadata);
    put32(8);
    append(pg_timestamp(e.occurred_at_us));
  }

  void finish() { put16(static_cast<std::uint16_t>(-1)); }  // trailer

 private:
  template <std::size_t N>
  void append(const std::array<char, N>& bytes) {
    buf_.append(bytes.data(), N);
  }
  void put16(std::uint16_t v) { append(big_endian(v)); }
  void put32(std::uint32_t v) { append(big_endian(v)); }
  void put64(std::uint64_t v) { append(big_endian(v)); }

  std::string& buf_;
};

struct UuidHash {
  std::size_t operator()(const Uuid& u) const noexcept {
    // UUIDv7 leads with a timestamp; the tail is random, so hash that half.
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    std::memcpy(&a, u.bytes.data(), 8);
    std::memcpy(&b, u.bytes.data() + 8, 8);
    return static_cast<std::size_t>(b ^ (a * 0x9E3779B97F4A7C15ULL));
  }
};

// ---- libpq plumbing ---------------------------------------------------------------------------

struct PgResultDeleter {
  void operator()(PGresult* r) const noexcept { detail::pq().PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

/// The outcome of one round trip (one simple-query string, or one COPY's data).
struct Step {
  enum class Kind { ok, copy_in, error, timeout, broken } kind = Kind::ok;
  std::string sqlstate;
  std::string message;
  std::string constraint;
  bool own_cancel = false;
  std::size_t affected = 0;  ///< row count of the last command that reported one
};

std::string trim_message(std::string m) {
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
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
  PGcancel* cancel = detail::pq().PQgetCancel(conn);
  if (cancel == nullptr) return;
  try {
    std::thread([cancel] {
      std::array<char, 256> err{};
      detail::pq().PQcancel(cancel, err.data(), static_cast<int>(err.size()));
      detail::pq().PQfreeCancel(cancel);
    }).detach();
  } catch (...) {
    detail::pq().PQfreeCancel(
        cancel);  // no thread: give up on the cancel, the caller drops the connection
  }
}

class PgSink final : public Sink {
 public:
  /// Loads libpq (password_of is its first use), so that a missing libpq throws here and the
  /// noexcept methods below never load it.
  PgSink(std::string conninfo, const PgTimeouts& timeouts)
      : conninfo_(std::move(conninfo)),
        described_(redact_conninfo(conninfo_)),
        timeouts_(normalized(timeouts)),
        password_(password_of(conninfo_)),
        conninfo_valid_(conninfo_is_valid(conninfo_)) {}

  ~PgSink() override { disconnect(); }
  PgSink(const PgSink&) = delete;
  PgSink& operator=(const PgSink&) = delete;

  WriteResult write(std::span<const Event> batch) noexcept override {
    const char* what = "internal error";
    try {
      return write_batch(batch);
    } catch (const std::bad_alloc&) {
      what = "out of memory while writing a batch";
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    disconnect();  // we may have left it mid-protocol
    // Building the message can itself run out of memory; an empty Failure cannot.
    WriteResult r;
    try {
      r.failure = Failure{Disposition::retry, "", std::string("internal error: ") + what};
    } catch (...) {
      r.failure.emplace();
    }
    return r;
  }

  [[nodiscard]] std::string describe() const override { return described_; }

 private:
  static PgTimeouts normalized(PgTimeouts t) {
    // Zero or negative would mean "wait forever", which the contract forbids.
    if (t.connect_timeout_s <= 0) t.connect_timeout_s = PgTimeouts{}.connect_timeout_s;
    if (t.statement_timeout_ms <= 0) t.statement_timeout_ms = PgTimeouts{}.statement_timeout_ms;
    if (t.tcp_user_timeout_ms < 0) t.tcp_user_timeout_ms = PgTimeouts{}.tcp_user_timeout_ms;
    if (t.keepalives_idle_s <= 0) t.keepalives_idle_s = PgTimeouts{}.keepalives_idle_s;
    return t;
  }

  /// libpq expands dbname only when it holds '=' or a URL prefix; a plain name is always fine.
  static bool conninfo_is_valid(const std::string& conninfo) {
    const bool expands = conninfo.find('=') != std::string::npos ||
                         conninfo.starts_with("postgresql://") ||
                         conninfo.starts_with("postgres://");
    if (!expands) return true;
    PQconninfoOption* opts = detail::pq().PQconninfoParse(conninfo.c_str(), nullptr);
    if (opts == nullptr) return false;
    detail::pq().PQconninfoFree(opts);
    return true;
  }

  static std::string password_of(const std::string& conninfo) {
    std::string password;
    PQconninfoOption* opts = detail::pq().PQconninfoParse(conninfo.c_str(), nullptr);
    if (opts == nullptr) return password;
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr) password = o->val;
    }
    detail::pq().PQconninfoFree(opts);
    return password;
  }

  /// Messages come from libpq and the server, which don't echo passwords; this is a second line.
  [[nodiscard]] std::string scrub(std::string msg) const {
    if (password_.size() >= 3) {
      for (std::size_t at = msg.find(password_); at != std::string::npos;
           at = msg.find(password_, at + 3)) {
        msg.replace(at, password_.size(), "***");
      }
    }
    return msg;
  }

  WriteResult failure(Disposition d, std::string sqlstate, std::string message) const {
    WriteResult r;
    r.failure = Failure{d, std::move(sqlstate), scrub(std::move(message))};
    return r;
  }

  WriteResult failure_from(const Step& s) {
    switch (s.kind) {
      case Step::Kind::error:
        return failure(classify_sqlstate(s.sqlstate, s.own_cancel), s.sqlstate, s.message);
      case Step::Kind::timeout:
        return failure(Disposition::retry, "", s.message);
      case Step::Kind::broken:
      case Step::Kind::ok:
      case Step::Kind::copy_in:
        break;
    }
    return failure(Disposition::retry, s.sqlstate,
                   s.message.empty() ? "connection to the database lost" : s.message);
  }

  // ---- connection ----

  void disconnect() noexcept {
    if (conn_ != nullptr) detail::pq().PQfinish(conn_);
    conn_ = nullptr;
  }

  /// Connects if needed; on failure returns the Failure to report.
  std::optional<WriteResult> ensure_connected() {
    // An idle connection the server closed (restart, pg_terminate_backend) has data waiting:
    // reading it now lets us reconnect instead of failing this batch on a dead socket.
    // A FATAL message and the EOF after it may take two reads to see.
    for (int i = 0; i < 3 && conn_ != nullptr && detail::pq().PQstatus(conn_) == CONNECTION_OK;
         ++i) {
      pollfd p{detail::pq().PQsocket(conn_), POLLIN, 0};
      if (p.fd >= 0 && ::poll(&p, 1, 0) <= 0) break;
      if (p.fd < 0 || detail::pq().PQconsumeInput(conn_) == 0) disconnect();
    }
    if (conn_ != nullptr && detail::pq().PQstatus(conn_) == CONNECTION_OK &&
        detail::pq().PQtransactionStatus(conn_) == PQTRANS_IDLE) {
      return std::nullopt;
    }
    disconnect();  // broken or left mid-transaction: start over

    const std::string connect_timeout = std::to_string(timeouts_.connect_timeout_s);
    const std::string idle = std::to_string(timeouts_.keepalives_idle_s);
    const std::string interval = std::to_string(std::max(1, timeouts_.keepalives_idle_s / 2));
    const std::string user_timeout = std::to_string(timeouts_.tcp_user_timeout_ms);

    // Our defaults come before dbname, so anything the conninfo sets (expanded in place of
    // dbname) overrides them; the PG* variables libpq reads for unset options are respected by
    // not setting the ones they cover. client_encoding comes last: COPY sends UTF-8 text.
    std::vector<const char*> keys;
    std::vector<const char*> values;
    auto add = [&](const char* k, const char* v) {
      keys.push_back(k);
      values.push_back(v);
    };
    if (std::getenv("PGCONNECT_TIMEOUT") == nullptr)
      add("connect_timeout", connect_timeout.c_str());
    add("keepalives", "1");
    add("keepalives_idle", idle.c_str());
    add("keepalives_interval", interval.c_str());
    add("keepalives_count", "3");
    add("tcp_user_timeout", user_timeout.c_str());
    // fallback_: application_name in the conninfo or PGAPPNAME wins over it.
    add("fallback_application_name", "trackevent");
    add("dbname", conninfo_.c_str());
    add("client_encoding", "UTF8");
    keys.push_back(nullptr);
    values.push_back(nullptr);

    PGconn* conn =
        detail::pq().PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
    if (conn == nullptr)
      return failure(Disposition::retry, "", "out of memory creating connection");
    detail::pq().PQsetNoticeProcessor(conn, &ignore_notice, nullptr);
    detail::pq().PQsetErrorVerbosity(
        conn, PQERRORS_VERBOSE);  // so connection errors carry their SQLSTATE

    // libpq enforces connect_timeout only in its blocking calls; we poll, so we enforce it.
    int timeout_s = timeouts_.connect_timeout_s;
    if (PQconninfoOption* used = detail::pq().PQconninfo(conn)) {
      for (PQconninfoOption* o = used; o->keyword != nullptr; ++o) {
        if (std::strcmp(o->keyword, "connect_timeout") == 0 && o->val != nullptr) {
          const int v = std::atoi(o->val);
          if (v > 0) timeout_s = std::max(2, v);  // libpq's own minimum
        }
      }
      detail::pq().PQconninfoFree(used);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);

    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (detail::pq().PQstatus(conn) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    // Note: host name resolution inside PQconnectPoll is blocking (getaddrinfo).
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
      const int ready = detail::wait_socket(conn, st == PGRES_POLLING_WRITING, deadline);
      // Past the deadline, give up whatever the wait said: on -1 (no socket yet, poll failed)
      // the loop polls again at once and could otherwise spin past it.
      if (ready == 0 || Clock::now() >= deadline) {
        detail::pq().PQfinish(conn);
        return failure(Disposition::retry, "",
                       "timeout expired connecting to " + described_ + " after " +
                           std::to_string(timeout_s) + " s");
      }
      st = detail::pq().PQconnectPoll(conn);
    }
    if (st == PGRES_POLLING_FAILED) {
      auto [sqlstate, msg] = split_connect_error(detail::pq().PQerrorMessage(conn));
      detail::pq().PQfinish(conn);
      Disposition d = classify_sqlstate(sqlstate);
      // libpq's own "no password supplied": an operator must act, like 28P01.
      if (sqlstate.empty() && msg.find("no password supplied") != std::string::npos) {
        d = classify_sqlstate("28P01");
      }
      return failure(d, sqlstate, msg.empty() ? "connection failed" : msg);
    }

    detail::pq().PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
    if (detail::pq().PQsetnonblocking(conn, 1) != 0) {
      detail::pq().PQfinish(conn);
      return failure(Disposition::retry, "", "cannot make the connection non-blocking");
    }
    conn_ = conn;

    // A constant integer we formatted ourselves; nothing from the caller goes into SQL text.
    const std::string set_timeout =
        "SET statement_timeout = " + std::to_string(timeouts_.statement_timeout_ms);
    const Step s = run(set_timeout.c_str());
    if (s.kind != Step::Kind::ok) {
      WriteResult r = failure_from(s);
      disconnect();
      return r;
    }
    return std::nullopt;
  }

  [[nodiscard]] milliseconds statement_budget() const {
    // The server's statement_timeout normally fires first; the margin covers the network.
    return milliseconds(timeouts_.statement_timeout_ms) +
           milliseconds(1000 + timeouts_.statement_timeout_ms / 10);
  }

  /// Deadline passed: ask the server to cancel, give it a short grace to answer with 57014.
  bool cancel_and_extend(Clock::time_point& deadline, bool& cancelled) {
    if (cancelled) return false;  // the cancel did not help: caller drops the connection
    cancelled = true;
    send_cancel_detached(conn_);
    deadline = Clock::now() + milliseconds(1000 + timeouts_.statement_timeout_ms / 10);
    return true;
  }

  Step broken(std::string what) const {
    Step s;
    s.kind = Step::Kind::broken;
    std::string msg = trim_message(detail::pq().PQerrorMessage(conn_));
    s.message = msg.empty() ? std::move(what) : std::move(what) + ": " + msg;
    return s;
  }

  /// Sends everything libpq has buffered, reading input meanwhile (as libpq's docs require).
  bool flush_output(Clock::time_point& deadline, bool& cancelled, Step& out) {
    while (true) {
      const int r = detail::pq().PQflush(conn_);
      if (r == 0) return true;
      if (r < 0) {
        out = broken("sending to the server failed");
        return false;
      }
      const int fd = detail::pq().PQsocket(conn_);
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        if (cancel_and_extend(deadline, cancelled)) continue;
        out.kind = Step::Kind::timeout;
        out.message = "timeout sending to the server";
        return false;
      }
      pollfd p{fd, POLLIN | POLLOUT, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
      if (n < 0 && errno != EINTR) {
        out = broken("poll failed");
        return false;
      }
      if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0 &&
          detail::pq().PQconsumeInput(conn_) == 0) {
        out = broken("connection to the server lost");
        return false;
      }
    }
  }

  /// Reads results until the query string is done (or COPY IN starts). Keeps the first error.
  Step collect(Clock::time_point deadline, bool cancelled) {
    Step step;
    const auto started = Clock::now();
    while (true) {
      while (detail::pq().PQisBusy(conn_) != 0) {
        const int ready = detail::wait_socket(conn_, false, deadline);
        if (ready == 0) {
          if (cancel_and_extend(deadline, cancelled)) continue;
          step.kind = Step::Kind::timeout;
          step.message = "no answer from the server within " +
                         std::to_string(statement_budget().count()) +
                         " ms, even after a cancel; connection dropped";
          return step;
        }
        if (ready < 0 || detail::pq().PQconsumeInput(conn_) == 0)
          return broken("connection to the server lost");
      }
      ResultPtr res{detail::pq().PQgetResult(conn_)};
      if (!res) return step;
      switch (detail::pq().PQresultStatus(res.get())) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
          if (const char* n = detail::pq().PQcmdTuples(res.get()); n != nullptr && *n != '\0') {
            step.affected = static_cast<std::size_t>(std::strtoull(n, nullptr, 10));
          }
          break;
        case PGRES_COPY_IN:
          if (step.kind == Step::Kind::ok) step.kind = Step::Kind::copy_in;
          return step;
        case PGRES_FATAL_ERROR:
        default:
          if (step.kind != Step::Kind::error) {
            const char* code = detail::pq().PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
            const char* primary =
                detail::pq().PQresultErrorField(res.get(), PG_DIAG_MESSAGE_PRIMARY);
            const char* constraint =
                detail::pq().PQresultErrorField(res.get(), PG_DIAG_CONSTRAINT_NAME);
            step.kind = Step::Kind::error;
            step.sqlstate = code != nullptr ? code : "";
            step.message = primary != nullptr
                               ? primary
                               : trim_message(detail::pq().PQresultErrorMessage(res.get()));
            step.constraint = constraint != nullptr ? constraint : "";
            // 57014 after our cancel, or from the statement_timeout we set: ours.
            step.own_cancel =
                step.sqlstate == "57014" &&
                (cancelled || Clock::now() - started >=
                                  milliseconds(timeouts_.statement_timeout_ms) - milliseconds(50));
          }
          break;
      }
      if (detail::pq().PQstatus(conn_) == CONNECTION_BAD) {
        Step b = broken("connection to the server lost");
        if (step.kind == Step::Kind::error) return step;  // its SQLSTATE says more (57P01...)
        return b;
      }
    }
  }

  /// One simple-query round trip (several statements allowed).
  Step run(const char* sql) {
    auto deadline = Clock::now() + statement_budget();
    bool cancelled = false;
    if (detail::pq().PQsendQuery(conn_, sql) == 0) return broken("sending the query failed");
    Step s;
    if (!flush_output(deadline, cancelled, s)) return s;
    return collect(deadline, cancelled);
  }

  /// Runs `sql`, which must end in a COPY FROM STDIN, and streams copy_buf_ into it. Each call of
  /// `more` appends the next piece to copy_buf_ and returns false once nothing is left; the first
  /// piece is encoded while the server starts the COPY, each later one while it parses the last.
  template <typename More>
  Step copy(const char* sql, More&& more) {
    auto deadline = Clock::now() + statement_budget();
    bool cancelled = false;
    if (detail::pq().PQsendQuery(conn_, sql) == 0) return broken("sending the query failed");
    Step s;
    if (!flush_output(deadline, cancelled, s)) return s;
    bool open = more();
    s = collect(deadline, cancelled);
    if (s.kind != Step::Kind::copy_in) {
      if (s.kind == Step::Kind::ok) {
        s.kind = Step::Kind::broken;
        s.message = "server did not start the COPY";
      }
      return s;
    }
    std::size_t off = 0;
    bool server_ended = false;  // the server ended the COPY with an error: the result tells which
    while (!server_ended) {
      while (off < copy_buf_.size()) {
        const std::size_t n = std::min(kCopyChunk, copy_buf_.size() - off);
        const int r =
            detail::pq().PQputCopyData(conn_, copy_buf_.data() + off, static_cast<int>(n));
        if (r < 0) {
          server_ended = true;
          break;
        }
        if (r == 0) {  // libpq's buffer is full: drain it and try again
          if (!flush_output(deadline, cancelled, s)) return s;
          continue;
        }
        off += n;
      }
      if (!open) break;
      open = more();
    }
    while (true) {
      const int r = detail::pq().PQputCopyEnd(conn_, nullptr);
      if (r < 0) break;
      if (r == 1) break;
      if (!flush_output(deadline, cancelled, s)) return s;
    }
    if (!flush_output(deadline, cancelled, s)) return s;
    return collect(deadline, cancelled);
  }

  /// Ends a transaction we left open after an error; a failing ROLLBACK drops the connection.
  void rollback() {
    if (conn_ == nullptr || detail::pq().PQstatus(conn_) != CONNECTION_OK) return;
    if (detail::pq().PQtransactionStatus(conn_) == PQTRANS_IDLE) return;
    if (run("ROLLBACK").kind != Step::Kind::ok) disconnect();
  }

  /// After any failed step: roll back, drop a dead or stuck connection, report.
  WriteResult fail_step(const Step& s) {
    WriteResult r = failure_from(s);
    if (s.kind == Step::Kind::error && conn_ != nullptr &&
        detail::pq().PQstatus(conn_) == CONNECTION_OK) {
      rollback();
    } else {
      disconnect();  // broken, or stuck past the deadline: a new connection next write
    }
    return r;
  }

  // ---- the batch ----

  WriteResult write_batch(std::span<const Event> batch) {
    WriteResult result;
    if (batch.empty()) return result;

    // Duplicate ids inside the batch: the first occurrence is sent, the rest counted here.
    mark_first_occurrences(batch);
    std::size_t sent = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!first_[i]) continue;
      ++sent;
      const Event& e = batch[i];
      if (!fits_binary_format(e)) {
        return failure(
            Disposition::reject, "54000",
            "event " + std::to_string(i) + " has a field over 2 GiB (rejected before sending)");
      }
    }
    const std::size_t in_batch_dups = batch.size() - sent;

    if (!conninfo_valid_) {
      // Not a SQLSTATE case: the configuration is wrong and only an operator can fix it. libpq's
      // parse error may quote the whole string, password included, so it is not passed on.
      return failure(Disposition::hold, "",
                     "invalid PostgreSQL connection string '" + described_ + "'");
    }
    if (auto f = ensure_connected()) {
      f->failure->at_connect = true;
      return *f;
    }

    if (sent == 1) {
      // One event (e.g. `trackevent send`): a parameterised INSERT ... ON CONFLICT DO NOTHING is
      // one round trip where COPY needs two, and is idempotent by itself.
      const Event& e = batch[static_cast<std::size_t>(
          std::find(first_.begin(), first_.end(), true) - first_.begin())];
      const Step s = insert_one(e);
      if (s.kind != Step::Kind::ok) return fail_step(s);
      result.stored = std::min<std::size_t>(s.affected, 1);
      result.duplicates = batch.size() - result.stored;
      return result;
    }

    // Keep the buffer for the next batch, unless an unusual batch made it huge.
    struct Trim {
      std::string& buf;
      ~Trim() {
        if (buf.capacity() > kKeepCopyBytes) std::string().swap(buf);
      }
    } trim{copy_buf_};

    if (conflict_mode_left_ == 0) {
      // Encoded and sent kStreamRows at a time: the server starts on the first rows at once.
      CopyEncoder enc(copy_buf_);
      std::size_t next = 0;
      auto more = [&] {
        if (next == batch.size()) {
          enc.finish();
          return false;
        }
        const std::size_t end = std::min(batch.size(), next + kStreamRows);
        for (; next < end; ++next) {
          if (first_[next]) enc.add(batch[next]);
        }
        return true;
      };
      const Step s = copy(kCopyDirect, more);
      if (s.kind == Step::Kind::ok) {
        result.stored = sent;
        result.duplicates = in_batch_dups;
        return result;
      }
      if (!(s.kind == Step::Kind::error && s.sqlstate == "23505" && s.constraint == kPrimaryKey)) {
        return fail_step(s);
      }
      // A lone COPY is its own transaction, already rolled back by the server.
      conflict_mode_left_ = kConflictModeBatches;
    } else {
      --conflict_mode_left_;
    }

    // The COPY may have stopped part-way: encode the whole batch again for the temp table.
    CopyEncoder enc(copy_buf_);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (first_[i]) enc.add(batch[i]);
    }
    enc.finish();
    Step s = copy(kCopyToTemp, [] { return false; });
    if (s.kind != Step::Kind::ok) return fail_step(s);
    s = run(kInsertFromTemp);
    if (s.kind != Step::Kind::ok) return fail_step(s);
    result.stored = std::min(s.affected, sent);
    result.duplicates = batch.size() - result.stored;
    if (result.stored == sent) conflict_mode_left_ = 0;  // no duplicates any more: fast path
    return result;
  }

  /// Sets first_[i] for each event whose id did not occur earlier in the batch. An open-addressing
  /// table of indexes, reused across batches: no allocation per event.
  void mark_first_occurrences(std::span<const Event> batch) {
    first_.assign(batch.size(), false);
    const std::size_t cap = std::bit_ceil(std::max<std::size_t>(batch.size() * 2, 16));
    const int shift = 64 - std::countr_zero(cap);
    slots_.assign(cap, 0);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Uuid& id = batch[i].event_id;
      std::size_t at = static_cast<std::size_t>((UuidHash{}(id)*0x9E3779B97F4A7C15ULL) >> shift);
      bool seen = false;
      while (slots_[at] != 0) {
        if (batch[slots_[at] - 1].event_id == id) {
          seen = true;
          break;
        }
        at = (at + 1) & (cap - 1);
      }
      if (seen) continue;
      slots_[at] = i + 1;
      first_[i] = true;
    }
  }

  /// INSERT ... ON CONFLICT DO NOTHING of one event, parameters in binary. Step::affected is 1
  /// when stored, 0 when the id was already there.
  Step insert_one(const Event& e) {
    const auto org = big_endian(static_cast<std::uint64_t>(e.org_id));
    const auto user = big_endian(static_cast<std::uint64_t>(e.user_id.value_or(0)));
    const auto at = pg_timestamp(e.occurred_at_us);
    std::string meta;
    meta.reserve(e.metadata.size() + 1);
    meta.push_back('\1');  // jsonb binary format version
    meta += e.metadata;

    static constexpr Oid kTypes[6] = {2950 /*uuid*/, 20 /*int8*/,    20 /*int8*/,
                                      25 /*text*/,   3802 /*jsonb*/, 1184 /*timestamptz*/};
    const char* values[6] = {reinterpret_cast<const char*>(e.event_id.bytes.data()),
                             org.data(),
                             e.user_id ? user.data() : nullptr,
                             e.event_name.data(),
                             meta.data(),
                             at.data()};
    const int lengths[6] = {static_cast<int>(e.event_id.bytes.size()),
                            8,
                            8,
                            static_cast<int>(e.event_name.size()),
                            static_cast<int>(meta.size()),
                            8};
    static constexpr int kFormats[6] = {1, 1, 1, 1, 1, 1};

    auto deadline = Clock::now() + statement_budget();
    bool cancelled = false;
    if (detail::pq().PQsendQueryParams(conn_, kInsertOne, 6, kTypes, values, lengths, kFormats,
                                       0) == 0) {
      return broken("sending the query failed");
    }
    Step s;
    if (!flush_output(deadline, cancelled, s)) return s;
    return collect(deadline, cancelled);
  }

  std::string conninfo_;
  std::string described_;
  PgTimeouts timeouts_;
  std::string password_;
  PGconn* conn_ = nullptr;
  bool conninfo_valid_ = true;
  int conflict_mode_left_ = 0;
  std::string copy_buf_;            // binary COPY data of the current batch
  std::vector<bool> first_;         // per event of the batch: first with its id
  std::vector<std::size_t> slots_;  // mark_first_occurrences' table (index + 1, 0: empty)
};

}  // namespace

std::unique_ptr<Sink> make_postgres_sink(std::string conninfo, const PgTimeouts& timeouts) {
  return std::make_unique<PgSink>(std::move(conninfo), timeouts);
}

std::unique_ptr<Sink> make_sink(const DbTarget& target, const PgTimeouts& timeouts) {
  if (target.kind == DbTarget::Kind::sqlite) return make_sqlite_sink(target.conninfo);
  return make_postgres_sink(target.conninfo, timeouts);
}

}  // namespace trackevent
