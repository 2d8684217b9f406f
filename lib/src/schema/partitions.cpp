// Partition names and bounds, and `trackevent partitions`: upkeep of the partitioned layout of
// migration 0002 on PostgreSQL (libpqxx, like the migrations), retention on the SQLite store.
//
// Upkeep never runs on the ingest path: `ingest` does not create partitions. Rows without a
// partition land in DEFAULT, and this command (from cron) moves them out. DDL on the hot path
// would take locks that conflict with the other writers (ATTACH locks the DEFAULT partition
// exclusively) and needs table ownership the ingest role should not have.
#include "schema/partitions.hpp"

#include "schema/migrate_internal.hpp"
#include "schema/pg_session.hpp"
#include "sqlite/sqlite_util.hpp"

#include <pqxx/pqxx>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <string>

namespace trackevent {

using std::chrono::days;
using std::chrono::floor;
using std::chrono::sys_days;
using std::chrono::year_month_day;

std::optional<PartitionInterval> parse_partition_interval(std::string_view text) {
  if (text == "day") return PartitionInterval::day;
  if (text == "week") return PartitionInterval::week;
  if (text == "month") return PartitionInterval::month;
  return std::nullopt;
}

std::string_view to_string(PartitionInterval interval) noexcept {
  switch (interval) {
    case PartitionInterval::day:
      return "day";
    case PartitionInterval::week:
      return "week";
    case PartitionInterval::month:
      return "month";
  }
  return "month";
}

SysSeconds partition_start(PartitionInterval interval, SysSeconds t) {
  const sys_days d = floor<days>(t);
  switch (interval) {
    case PartitionInterval::day:
      return d;
    case PartitionInterval::week:
      return d - days{std::chrono::weekday{d}.iso_encoding() - 1};
    case PartitionInterval::month: {
      const year_month_day ymd{d};
      return sys_days{ymd.year() / ymd.month() / 1};
    }
  }
  return d;
}

SysSeconds partition_add(PartitionInterval interval, SysSeconds start, int n) {
  switch (interval) {
    case PartitionInterval::day:
      return start + days{n};
    case PartitionInterval::week:
      return start + days{7 * n};
    case PartitionInterval::month: {
      const year_month_day ymd{floor<days>(start)};
      const auto ym = ymd.year() / ymd.month() + std::chrono::months{n};
      return sys_days{ym / 1};
    }
  }
  return start;
}

std::string partition_name(std::string_view parent, PartitionInterval interval, SysSeconds start) {
  const year_month_day ymd{floor<days>(start)};
  const int y = static_cast<int>(ymd.year());
  const unsigned m = static_cast<unsigned>(ymd.month());
  const unsigned d = static_cast<unsigned>(ymd.day());
  char buf[32];
  switch (interval) {
    case PartitionInterval::day:
      std::snprintf(buf, sizeof buf, "_p%04d_%02u_%02u", y, m, d);
      break;
    case PartitionInterval::week: {
      // ISO 8601: the week belongs to the year of its Thursday.
      const sys_days monday = floor<days>(partition_start(PartitionInterval::week, start));
      const sys_days thursday = monday + days{3};
      const auto iso_year = year_month_day{thursday}.year();
      const auto week = (thursday - sys_days{iso_year / std::chrono::January / 1}).count() / 7 + 1;
      std::snprintf(buf, sizeof buf, "_p%04dw%02d", static_cast<int>(iso_year),
                    static_cast<int>(week));
      break;
    }
    case PartitionInterval::month:
      std::snprintf(buf, sizeof buf, "_p%04d_%02u", y, m);
      break;
  }
  return std::string(parent) + buf;
}

std::string bound_literal(SysSeconds t) {
  const sys_days d = floor<days>(t);
  const year_month_day ymd{d};
  const auto tod = std::chrono::hh_mm_ss{t - d};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02d:%02d:%02d+00", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(tod.hours().count()), static_cast<int>(tod.minutes().count()),
                static_cast<int>(tod.seconds().count()));
  return buf;
}

std::optional<Retention> parse_retention(std::string_view text) {
  Retention r;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, r.count);
  if (ec != std::errc{} || p == text.data() || r.count < 1) return std::nullopt;
  const std::string_view unit(p, static_cast<std::size_t>(end - p));
  if (unit == "d") {
    r.unit = Retention::Unit::day;
  } else if (unit == "w") {
    r.unit = Retention::Unit::week;
  } else if (unit == "mo") {
    r.unit = Retention::Unit::month;
  } else if (unit == "y") {
    r.unit = Retention::Unit::year;
  } else {
    return std::nullopt;
  }
  return r;
}

SysSeconds retention_cutoff(const Retention& r, SysSeconds now) {
  switch (r.unit) {
    case Retention::Unit::day:
      return now - days{r.count};
    case Retention::Unit::week:
      return now - days{7 * r.count};
    case Retention::Unit::month:
    case Retention::Unit::year: {
      const sys_days d = floor<days>(now);
      const year_month_day ymd{d};
      const int months = r.unit == Retention::Unit::year ? 12 * r.count : r.count;
      const auto ym = ymd.year() / ymd.month() - std::chrono::months{months};
      const auto last = std::chrono::year_month_day_last{ym / std::chrono::last}.day();
      const year_month_day target{ym / std::min(ymd.day(), last)};
      return sys_days{target} + (now - d);
    }
  }
  return now;
}

std::int64_t partitions_lock_key() noexcept {
  // A constant, not computed: it must never change (partitions.hpp).
  return 0x7d916acb06b71462;
}

namespace detail {

std::int64_t pg_create_partition(pqxx::transaction_base& tx, const std::string& parent,
                                 const std::string& name_base, PartitionInterval interval,
                                 SysSeconds start) {
  const std::string name = partition_name(name_base, interval, start);
  if (tx.exec1("SELECT to_regclass(" + tx.quote(name) + ") IS NOT NULL")[0].as<bool>()) return -1;
  const std::string lo = tx.quote(bound_literal(start));
  const std::string hi = tx.quote(bound_literal(partition_add(interval, start, 1)));
  const std::string qn = tx.quote_name(name);
  const std::string qp = tx.quote_name(parent);
  tx.exec("CREATE TABLE " + qn + " (LIKE " + qp +
          " INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)");
  // Rows of the range in DEFAULT would make the ATTACH fail: move them in first, in this same
  // transaction, so no reader sees them twice or not at all.
  std::int64_t moved = 0;
  const pqxx::result def = tx.exec(
      "SELECT c.oid::regclass::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid "
      "= p.partdefid WHERE p.partrelid = " +
      tx.quote(parent) + "::regclass");
  if (!def.empty()) {
    constexpr const char* cols =
        "event_id, org_id, user_id, event_name, metadata, occurred_at, recorded_at";
    const pqxx::result r =
        tx.exec(std::string("WITH moved AS (DELETE FROM ") + def[0][0].c_str() +
                " WHERE occurred_at >= " + lo + " AND occurred_at < " + hi + " RETURNING " + cols +
                ") INSERT INTO " + qn + " (" + cols + ") SELECT " + cols + " FROM moved");
    moved = r.affected_rows();
  }
  // A CHECK that implies the partition constraint lets ATTACH skip scanning the new table.
  tx.exec("ALTER TABLE " + qn + " ADD CONSTRAINT trackevent_attach_bounds CHECK (occurred_at >= " +
          lo + " AND occurred_at < " + hi + ")");
  tx.exec("ALTER TABLE " + qp + " ATTACH PARTITION " + qn + " FOR VALUES FROM (" + lo + ") TO (" +
          hi + ")");
  tx.exec("ALTER TABLE " + qn + " DROP CONSTRAINT trackevent_attach_bounds");
  return moved;
}

}  // namespace detail

namespace {

constexpr const char* kParent = "analytics_events";

/// Attached partitions of analytics_events with their bounds, the upper one as epoch seconds
/// (null for DEFAULT). Needs TimeZone UTC for the bounds to print as UTC.
constexpr const char* kListPartitions = R"sql(
SELECT c.relname::text,
       pg_get_expr(c.relpartbound, c.oid),
       c.reltuples::bigint,
       pg_total_relation_size(c.oid),
       extract(epoch FROM (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        'TO \(''([^'']*)''\)'))[1]::timestamptz)::bigint
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'analytics_events'::regclass
ORDER BY c.relpartbound IS NOT NULL AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', 1)sql";

struct Listed {
  PartitionInfo info;
  std::optional<std::int64_t> upper;  ///< epoch seconds; nullopt for DEFAULT
};

std::vector<Listed> pg_list(pqxx::connection_base& c) {
  pqxx::read_transaction tx{c};
  std::vector<Listed> out;
  for (const auto& row : tx.exec(kListPartitions)) {
    Listed l;
    l.info.name = row[0].c_str();
    l.info.bounds = row[1].c_str();
    l.info.rows_estimate = row[2].as<std::int64_t>();
    l.info.bytes = row[3].as<std::int64_t>();
    if (!row[4].is_null()) l.upper = row[4].as<std::int64_t>();
    out.push_back(std::move(l));
  }
  return out;
}

void pg_take_partitions_lock(pqxx::connection_base& c, const PartitionsOptions& o) {
  pqxx::nontransaction tx{c};
  const int wait_ms = std::max(o.lock_wait_ms, 1);
  tx.exec("SET statement_timeout = " + std::to_string(wait_ms));
  try {
    tx.exec("SELECT pg_advisory_lock(" + std::to_string(partitions_lock_key()) + ")");
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "57014" || e.sqlstate() == "55P03") {
      throw PartitionsLockTimeout("timed out after " + std::to_string(wait_ms) +
                                  " ms waiting for another trackevent partitions (advisory lock " +
                                  std::to_string(partitions_lock_key()) + ")");
    }
    throw;
  }
  tx.exec("SET statement_timeout = " +
          std::to_string(std::max(o.timeouts.statement_timeout_ms, 0)));
}

PartitionsReport pg_partitions(const DbTarget& target, const PartitionsOptions& o) {
  return detail::with_pg(
      target, o.timeouts, "trackevent partitions",
      [&](pqxx::connection_base& c, std::string& context) {
        {
          pqxx::nontransaction tx{c};
          tx.exec("SET client_min_messages = warning");
          tx.exec("SET TimeZone = 'UTC'");
          tx.exec("SET lock_timeout = " + std::to_string(std::max(o.lock_timeout_ms, 1)));
          tx.exec("SET statement_timeout = " +
                  std::to_string(std::max(o.timeouts.statement_timeout_ms, 0)));
        }
        PartitionsReport report;
        {
          pqxx::read_transaction tx{c};
          const bool partitioned =
              tx.exec1(
                    "SELECT to_regclass('trackevent_partitioning') IS NOT NULL AND "
                    "EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = "
                    "to_regclass('analytics_events'))")[0]
                  .as<bool>();
          if (!partitioned) {
            throw MigrateError(
                "analytics_events is not partitioned: run `trackevent migrate` first "
                "(migration 0002)",
                false);
          }
          const pqxx::result r = tx.exec(
              "SELECT partition_interval, managed_by FROM trackevent_partitioning WHERE "
              "parent_table = 'analytics_events'");
          if (r.empty()) {
            throw MigrateError("trackevent_partitioning has no row for analytics_events", false);
          }
          report.interval = r[0][0].c_str();
          report.managed_by = r[0][1].c_str();
        }
        const auto interval = parse_partition_interval(report.interval);
        if (!interval) {
          throw MigrateError("trackevent_partitioning: unknown interval " + report.interval, false);
        }
        const bool changes = !o.list_only && report.managed_by == "trackevent";
        if (report.managed_by != "trackevent") {
          report.notes.push_back("partitions are managed by " + report.managed_by +
                                 " (trackevent_partitioning.managed_by): listing only, nothing "
                                 "created, moved or detached");
        }
        if (changes) {
          if (!o.dry_run) pg_take_partitions_lock(c, o);
          const SysSeconds now = o.now.value_or(
              std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()));
          // 1. The current partition and `ahead` after it; 2. one for each range of DEFAULT's rows.
          std::vector<SysSeconds> wanted;
          const SysSeconds current = partition_start(*interval, now);
          for (int k = 0; k <= std::max(o.ahead, 0); ++k) {
            wanted.push_back(partition_add(*interval, current, k));
          }
          {
            pqxx::read_transaction tx{c};
            const std::string unit = interval == PartitionInterval::week  ? "week"
                                     : interval == PartitionInterval::day ? "day"
                                                                          : "month";
            // At most 1000 ranges a run: a rerun continues.
            for (const auto& row : tx.exec(
                     "SELECT DISTINCT extract(epoch FROM date_trunc('" + unit +
                     "', occurred_at AT TIME ZONE 'UTC'))::bigint FROM analytics_events_default "
                     "ORDER BY 1 LIMIT 1000")) {
              wanted.push_back(partition_start(
                  *interval, SysSeconds{std::chrono::seconds{row[0].as<std::int64_t>()}}));
            }
          }
          std::sort(wanted.begin(), wanted.end());
          wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
          for (const SysSeconds start : wanted) {
            const std::string name = partition_name(kParent, *interval, start);
            context = "partition " + name;
            if (o.dry_run) {
              pqxx::read_transaction tx{c};
              if (tx.exec1("SELECT to_regclass(" + tx.quote(name) + ") IS NULL")[0].as<bool>()) {
                report.created.push_back(name);
                report.rows_moved +=
                    tx.exec1("SELECT count(*) FROM analytics_events_default WHERE occurred_at >= " +
                             tx.quote(bound_literal(start)) + " AND occurred_at < " +
                             tx.quote(bound_literal(partition_add(*interval, start, 1))))[0]
                        .as<std::int64_t>();
              }
              continue;
            }
            pqxx::work tx{c, "partition"};
            const std::int64_t moved =
                detail::pg_create_partition(tx, kParent, kParent, *interval, start);
            tx.commit();
            if (moved >= 0) {
              report.created.push_back(name);
              report.rows_moved += moved;
            }
          }
          // 3. Retention: partitions whose upper bound is at or before the cutoff.
          if (o.retain) {
            const auto cutoff = retention_cutoff(*o.retain, now).time_since_epoch().count();
            for (const Listed& l : pg_list(c)) {
              if (!l.upper || *l.upper > cutoff) continue;
              context = "partition " + l.info.name;
              if (!o.dry_run) {
                pqxx::work tx{c, "retention"};
                tx.exec("ALTER TABLE analytics_events DETACH PARTITION " +
                        tx.quote_name(l.info.name));
                if (o.drop) tx.exec("DROP TABLE " + tx.quote_name(l.info.name));
                tx.commit();
              }
              (o.drop ? report.dropped : report.detached).push_back(l.info.name);
            }
          }
          context.clear();
          if (!o.dry_run) {
            pqxx::nontransaction tx{c};
            tx.exec("SELECT pg_advisory_unlock(" + std::to_string(partitions_lock_key()) + ")");
          }
        }
        for (Listed& l : pg_list(c)) report.partitions.push_back(std::move(l.info));
        return report;
      });
}

PartitionsReport sqlite_partitions(const DbTarget& target, const PartitionsOptions& o) {
  PartitionsReport report;
  report.sqlite = true;
  if (o.list_only || !o.retain) {
    report.notes.push_back(
        "the SQLite store has no partitions; retention (--retain) deletes old rows there");
  }
  if (!o.retain || o.list_only) return report;
  try {
    detail::SqliteDb db = detail::open_existing_sqlite(target.conninfo);
    if (!db) throw MigrateError("no SQLite store at " + target.conninfo, false);
    detail::apply_sqlite_migrations(db.get());
    const SysSeconds now = o.now.value_or(
        std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()));
    // The store's occurred_at is RFC 3339 UTC text with microseconds: it sorts as it reads.
    std::string cutoff = bound_literal(retention_cutoff(*o.retain, now));
    cutoff = cutoff.substr(0, 10) + "T" + cutoff.substr(11, 8) + ".000000Z";
    if (o.dry_run) {
      auto s = detail::sqlite_prepare(
          db.get(), "SELECT count(*) FROM analytics_events WHERE occurred_at < ?1");
      sqlite3_bind_text(s.get(), 1, cutoff.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s.get()) == SQLITE_ROW)
        report.rows_deleted = sqlite3_column_int64(s.get(), 0);
      return report;
    }
    // Bounded chunks, each its own transaction, so writers wait at most one chunk.
    auto s = detail::sqlite_prepare(
        db.get(),
        "DELETE FROM analytics_events WHERE event_id IN (SELECT event_id FROM analytics_events "
        "WHERE occurred_at < ?1 LIMIT ?2)");
    const int chunk = std::max(o.sqlite_chunk_rows, 1);
    for (;;) {
      sqlite3_reset(s.get());
      sqlite3_bind_text(s.get(), 1, cutoff.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(s.get(), 2, chunk);
      const int rc = sqlite3_step(s.get());
      if (rc != SQLITE_DONE) throw detail::SqliteError(rc, detail::sqlite_message(db.get(), rc));
      const int n = sqlite3_changes(db.get());
      report.rows_deleted += n;
      if (n < chunk) break;
    }
    return report;
  } catch (const detail::SqliteError& e) {
    const int primary = e.code & 0xff;
    throw MigrateError(target.conninfo + ": " + e.what(),
                       primary == SQLITE_BUSY || primary == SQLITE_LOCKED);
  } catch (const MigrateError&) {
    throw;
  } catch (const std::exception& e) {
    throw MigrateError(e.what(), false);
  }
}

}  // namespace

PartitionsReport run_partitions(const DbTarget& target, const PartitionsOptions& options) {
  return target.kind == DbTarget::Kind::postgres ? pg_partitions(target, options)
                                                 : sqlite_partitions(target, options);
}

}  // namespace trackevent
