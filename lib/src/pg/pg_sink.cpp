// The PostgreSQL sink: its batch strategy, over a lazily opened pg::Connection (connection.hpp),
// which does the protocol, the deadlines and the error fields.
//
// It builds on libpq rather than libpqxx: libpqxx 6.4 (Debian 12) has no binary COPY (its
// stream_to writes text format) and no deadline-bounded asynchronous I/O.
//
// Per batch, on the fast path: one COPY (its own transaction; the query and then the data, two
// round trips), its rows encoded and sent a few hundred at a time so the server is parsing the
// first ones while the client encodes the rest. When the batch holds an id the table already has
// (23505 on analytics_events_pkey or a partition's key), two statements more: COPY into a session
// temp table inside BEGIN, then INSERT ... ON CONFLICT DO NOTHING; COMMIT. After such a fallback
// the next batches go straight to the conflict-tolerant path while duplicates keep turning up
// (spool replays tend to come in runs), so we don't pay the wasted COPY each time. A batch of one
// event (`trackevent send`) is a single parameterised INSERT ... ON CONFLICT DO NOTHING instead:
// one round trip.
#include "config/database_url.hpp"
#include "pg/connection.hpp"
#include "pg/sqlstate.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trackevent {
namespace {

using pg::PgError;

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
    "ON CONFLICT DO NOTHING; "
    "COMMIT";
constexpr const char* kInsertOne =
    "INSERT INTO analytics_events (event_id, org_id, user_id, event_name, metadata, occurred_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

/// Whether a 23505 came from the events' primary key: the parent's constraint, or (a COPY into
/// the partitioned layout of migration 0002) a partition's own key index, which PostgreSQL names
/// <partition>_pkey, e.g. analytics_events_p2026_12_pkey. ON CONFLICT has no target, because
/// (event_id) alone is not unique in that layout (docs/architecture.md, "Stored once").
bool is_primary_key(std::string_view constraint) {
  constexpr std::string_view prefix = "analytics_events_";
  constexpr std::string_view suffix = "_pkey";
  if (constraint == "analytics_events_pkey") return true;
  return constraint.size() > prefix.size() + suffix.size() && constraint.starts_with(prefix) &&
         constraint.ends_with(suffix);
}

/// Batches after a duplicate-id fallback that skip the fast path (reset by a clean batch).
constexpr int kConflictModeBatches = 16;
/// COPY buffer capacity kept between batches (a larger one is freed after its batch).
constexpr std::size_t kKeepCopyBytes = std::size_t{16} << 20;
/// Largest field the binary COPY format (and a libpq parameter) can carry.
constexpr std::size_t kMaxField = std::numeric_limits<std::int32_t>::max();
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

class PgSink final : public Sink {
 public:
  PgSink(std::string conninfo, const PgTimeouts& timeouts) : ci_(std::move(conninfo)) {
    settings_.timeouts = timeouts;
  }

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
    conn_.close();  // we may have left it mid-protocol
    // Building the message can itself run out of memory; an empty Failure cannot.
    WriteResult r;
    try {
      r.failure =
          Failure{Disposition::retry, "", ci_.scrub(std::string("internal error: ") + what)};
    } catch (...) {
      r.failure.emplace();
    }
    return r;
  }

  [[nodiscard]] std::string describe() const override { return ci_.described(); }

 private:
  static WriteResult failure(Disposition d, std::string sqlstate, std::string message) {
    WriteResult r;
    r.failure = Failure{d, std::move(sqlstate), std::move(message)};
    return r;
  }

  /// The Connection's error (already password-free) as a Failure.
  static WriteResult failure_from(PgError e) {
    const Disposition d = pg::classify(e);
    if (e.message.empty()) e.message = "connection to the database lost";
    return failure(d, std::move(e.sqlstate), std::move(e.message));
  }

  /// Connects if needed; on failure returns the Failure to report.
  std::optional<WriteResult> ensure_connected() {
    if (conn_.usable()) return std::nullopt;
    auto c = pg::Connection::open(ci_, settings_);
    if (!c) return failure_from(std::move(c).error());
    conn_ = std::move(*c);
    return std::nullopt;
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

    if (!ci_.usable()) {
      // Not a SQLSTATE case: the configuration is wrong and only an operator can fix it. libpq's
      // parse error may quote the whole string, password included, so it is not passed on.
      return failure(Disposition::hold, "",
                     "invalid PostgreSQL connection string '" + ci_.described() + "'");
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
      const auto s = insert_one(e);
      if (!s) return failure_from(s.error());
      result.stored = std::min<std::size_t>(*s, 1);
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
      const auto s = conn_.copy_in(kCopyDirect, copy_buf_, more);
      if (s) {
        result.stored = sent;
        result.duplicates = in_batch_dups;
        return result;
      }
      const PgError& e = s.error();
      if (!(e.kind == PgError::Kind::server && e.sqlstate == "23505" &&
            is_primary_key(e.constraint))) {
        return failure_from(e);
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
    if (auto s = conn_.copy_in(kCopyToTemp, copy_buf_, [] { return false; }); !s) {
      return failure_from(s.error());
    }
    const auto s = conn_.exec(kInsertFromTemp);
    if (!s) return failure_from(s.error());
    result.stored = std::min(*s, sent);
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

  /// INSERT ... ON CONFLICT DO NOTHING of one event, parameters in binary: 1 when stored, 0 when
  /// the id was already there.
  detail::Result<std::size_t, PgError> insert_one(const Event& e) {
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

    return conn_.exec_params(kInsertOne, 6, kTypes, values, lengths, kFormats);
  }

  const pg::Conninfo ci_;
  pg::Settings settings_;
  pg::Connection conn_;
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
