// Migration 0002's conversion of a v1 analytics_events table (pg_convert.hpp).
//
// Why it cannot lose or duplicate a row:
// - CREATE TRIGGER takes a lock that conflicts with every writer's, so it waits for the writers in
//   flight: each row committed before the trigger exists is visible to the backfill, which starts
//   after it, and each row inserted later fires the trigger.
// - The backfill and the trigger both insert ON CONFLICT DO NOTHING into the new table, whose key
//   holds event_id: a row copied by both is stored once.
// - The final transaction takes ACCESS EXCLUSIVE on the v1 table, so no insert is between the
//   trigger's drop and the rename. A writer waiting on that lock resolves the name again when it
//   gets it (PostgreSQL re-looks up a relation name after a concurrent rename), so its COPY lands
//   in the new table.
// Writers are blocked only while the trigger is created and during the rename (catalog changes,
// milliseconds); each wait for those locks is bounded by swap_lock_timeout_ms and retried.
#include "schema/pg_convert.hpp"

#include "schema/migrate_internal.hpp"
#include "schema/partitions.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <thread>

namespace trackevent::detail {
namespace {

constexpr int kAhead = 3;
/// At most this many partitions for the old rows' range; older rows go to DEFAULT, from where
/// `trackevent partitions` moves them.
constexpr int kMaxPartitions = 400;

constexpr const char* kCopyTrigger = R"sql(
CREATE OR REPLACE FUNCTION trackevent_convert_copy() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- SECURITY DEFINER: the writers' role may insert into analytics_events only.
    INSERT INTO analytics_events_v2
        (event_id, org_id, user_id, event_name, metadata, occurred_at, recorded_at)
    VALUES (NEW.event_id, NEW.org_id, NEW.user_id, NEW.event_name, NEW.metadata, NEW.occurred_at,
            NEW.recorded_at)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$)sql";

constexpr const char* kChunkHead =
    "WITH chunk AS (SELECT event_id, org_id, user_id, event_name, metadata, occurred_at, "
    "recorded_at FROM analytics_events ";
constexpr const char* kChunkTail =
    "ORDER BY event_id LIMIT $1), "
    "ins AS (INSERT INTO analytics_events_v2 (event_id, org_id, user_id, event_name, metadata, "
    "occurred_at, recorded_at) SELECT * FROM chunk ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT (SELECT event_id::text FROM chunk ORDER BY event_id DESC LIMIT 1), "
    "(SELECT count(*) FROM chunk), (SELECT count(*) FROM ins)";

/// Runs `body(tx)` (which commits) in a transaction whose lock waits are bounded by
/// swap_lock_timeout_ms, retrying a lock timeout up to swap_attempts times.
template <typename Body>
void with_short_lock(pqxx::connection_base& c, const MigrateOptions& o, const char* what,
                     Body&& body) {
  const int timeout_ms = std::max(o.swap_lock_timeout_ms, 1);
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::work tx{c, "convert"};
      tx.exec("SET LOCAL lock_timeout = " + std::to_string(timeout_ms));
      body(tx);
      return;
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "55P03") throw;
      if (attempt >= std::max(o.swap_attempts, 1)) {
        throw MigrateError(
            std::string(what) + ": the lock on analytics_events was not granted in " +
                std::to_string(attempt) + " attempts of " + std::to_string(timeout_ms) +
                " ms (long transactions on it?); run migrate again to continue",
            false);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    }
  }
}

}  // namespace

bool is_partitioning_migration(const Migration& m) {
  return m.version == 2 && m.name == "partition_analytics_events";
}

void pg_check_partition_interval(pqxx::connection_base& c, const MigrateOptions& o) {
  if (!o.partition_interval) return;
  if (!parse_partition_interval(*o.partition_interval)) {
    throw MigrateError(
        "--partition-interval " + *o.partition_interval + ": expected day, week or month", false);
  }
  pqxx::read_transaction tx{c};
  if (!tx.exec1("SELECT to_regclass('trackevent_partitioning') IS NOT NULL")[0].as<bool>()) return;
  const pqxx::result r = tx.exec(
      "SELECT partition_interval FROM trackevent_partitioning WHERE parent_table = "
      "'analytics_events'");
  if (!r.empty() && *o.partition_interval != r[0][0].c_str()) {
    throw MigrateError(
        std::string("analytics_events is partitioned by ") + r[0][0].c_str() +
            " (recorded in trackevent_partitioning); migrate cannot change the interval to " +
            *o.partition_interval + " (that would mean repartitioning every row)",
        false);
  }
}

ConversionReport pg_convert_to_partitioned(pqxx::connection_base& c, const Migration& m,
                                           const MigrateOptions& o, std::string& context) {
  context = "migration " + label(m);
  ConversionReport report;
  {
    pqxx::read_transaction tx{c};
    const pqxx::result kind =
        tx.exec("SELECT relkind FROM pg_class WHERE oid = to_regclass('analytics_events')");
    if (kind.empty()) throw MigrateError(context + ": analytics_events does not exist", false);
    if (std::string(kind[0][0].c_str()) == "p") {
      throw MigrateError(context + ": analytics_events is partitioned already, but " + label(m) +
                             " is not recorded in schema_migrations",
                         false);
    }
    if (tx.exec1("SELECT to_regclass('analytics_events_v1') IS NOT NULL")[0].as<bool>()) {
      throw MigrateError(context +
                             ": analytics_events_v1 exists (the v1 table kept by an earlier "
                             "conversion?); drop or rename it first",
                         false);
    }
  }

  // 1. The new table, the recorded interval, the partitions (the old rows' range and ahead).
  {
    pqxx::work tx{c, "convert"};
    tx.exec(m.sql);
    tx.exec_params(
        "INSERT INTO trackevent_partitioning (parent_table, partition_interval) "
        "VALUES ('analytics_events', $1) ON CONFLICT DO NOTHING",
        o.partition_interval.value_or("month"));
    report.interval = tx.exec1(
                            "SELECT partition_interval FROM trackevent_partitioning WHERE "
                            "parent_table = 'analytics_events'")[0]
                          .c_str();
    if (o.partition_interval && *o.partition_interval != report.interval) {
      throw MigrateError(context + ": an interrupted conversion to " + report.interval +
                             " partitions is under way; rerun migrate with --partition-interval " +
                             report.interval + " or without it",
                         false);
    }
    const PartitionInterval interval =
        parse_partition_interval(report.interval).value_or(PartitionInterval::month);
    tx.exec(
        "CREATE TABLE IF NOT EXISTS trackevent_conversion (parent_table text PRIMARY KEY, "
        "backfilled_through uuid, rows_copied bigint NOT NULL DEFAULT 0)");
    tx.exec(
        "INSERT INTO trackevent_conversion (parent_table) VALUES ('analytics_events') "
        "ON CONFLICT DO NOTHING");
    // A full scan, but no writer waits for it; it may take longer than one statement should.
    tx.exec("SET LOCAL statement_timeout = " +
            std::to_string(std::max(o.timeouts.statement_timeout_ms, 600000)));
    const pqxx::row range = tx.exec1(
        "SELECT extract(epoch FROM min(occurred_at))::bigint, "
        "extract(epoch FROM max(occurred_at))::bigint FROM analytics_events");
    tx.exec("SET LOCAL statement_timeout = " +
            std::to_string(std::max(o.timeouts.statement_timeout_ms, 0)));
    const SysSeconds now =
        std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    const SysSeconds current = partition_start(interval, now);
    const SysSeconds last = partition_add(interval, current, kAhead);
    SysSeconds first = current;
    if (!range[0].is_null()) {
      const SysSeconds oldest =
          partition_start(interval, SysSeconds{std::chrono::seconds{range[0].as<std::int64_t>()}});
      first =
          std::max(std::min(oldest, current), partition_add(interval, last, 1 - kMaxPartitions));
    }
    for (SysSeconds s = first; s <= last; s = partition_add(interval, s, 1)) {
      pg_create_partition(tx, "analytics_events_v2", "analytics_events", interval, s);
    }
    tx.commit();
  }

  // 2. The trigger that copies every row inserted from now on.
  with_short_lock(c, o, "creating the copy trigger", [&](pqxx::work& tx) {
    tx.exec(kCopyTrigger);
    tx.exec(
        "CREATE OR REPLACE TRIGGER trackevent_convert AFTER INSERT ON analytics_events "
        "FOR EACH ROW EXECUTE FUNCTION trackevent_convert_copy()");
    tx.commit();
  });

  // 3. The backfill, in chunks by event_id (the v1 key), each chunk and its cursor committed
  //    together.
  std::string cursor;
  {
    pqxx::read_transaction tx{c};
    const pqxx::row r = tx.exec1(
        "SELECT backfilled_through::text FROM trackevent_conversion WHERE parent_table = "
        "'analytics_events'");
    if (!r[0].is_null()) cursor = r[0].c_str();
  }
  const int chunk = std::max(o.backfill_chunk_rows, 1);
  for (;;) {
    pqxx::work tx{c, "backfill"};
    const pqxx::row r =
        cursor.empty()
            ? tx.exec_params1(std::string(kChunkHead) + kChunkTail, chunk)
            : tx.exec_params1(std::string(kChunkHead) + "WHERE event_id > $2::uuid " + kChunkTail,
                              chunk, cursor);
    const auto seen = r[1].as<std::int64_t>();
    if (seen == 0) break;
    const auto copied = r[2].as<std::int64_t>();
    cursor = r[0].c_str();
    tx.exec_params(
        "UPDATE trackevent_conversion SET backfilled_through = $1::uuid, "
        "rows_copied = rows_copied + $2 WHERE parent_table = 'analytics_events'",
        cursor, copied);
    tx.commit();
    report.rows_copied += copied;
    if (seen < chunk) break;
  }

  // 4. The swap: one short transaction holding the lock that blocks writers.
  with_short_lock(c, o, "renaming the tables", [&](pqxx::work& tx) {
    tx.exec("LOCK TABLE analytics_events IN ACCESS EXCLUSIVE MODE");
    const auto locked = std::chrono::steady_clock::now();
    tx.exec("DROP TRIGGER trackevent_convert ON analytics_events");
    tx.exec("DROP FUNCTION trackevent_convert_copy()");
    // The writers' grants carry over (the owner's own privileges are implicit).
    for (const auto& g :
         tx.exec("SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
                 "quote_ident(pg_get_userbyid(a.grantee)) END, a.is_grantable "
                 "FROM pg_class c, aclexplode(c.relacl) a "
                 "WHERE c.oid = 'analytics_events'::regclass AND a.grantee <> c.relowner")) {
      tx.exec(std::string("GRANT ") + g[0].c_str() + " ON analytics_events_v2 TO " + g[1].c_str() +
              (g[2].as<bool>() ? " WITH GRANT OPTION" : ""));
    }
    // An empty v1 table (a fresh database: 0001 then 0002) is dropped; one with rows is kept
    // as analytics_events_v1, the safety net until the operator drops it.
    report.old_table_kept =
        tx.exec1("SELECT EXISTS (SELECT 1 FROM analytics_events)")[0].as<bool>();
    if (report.old_table_kept) {
      tx.exec("ALTER TABLE analytics_events RENAME TO analytics_events_v1");
      tx.exec(
          "ALTER TABLE analytics_events_v1 RENAME CONSTRAINT analytics_events_pkey TO "
          "analytics_events_v1_pkey");
      tx.exec(
          "ALTER INDEX IF EXISTS analytics_events_org_id_occurred_at_idx RENAME TO "
          "analytics_events_v1_org_id_occurred_at_idx");
    } else {
      tx.exec("DROP TABLE analytics_events");
    }
    tx.exec("ALTER TABLE analytics_events_v2 RENAME TO analytics_events");
    tx.exec(
        "ALTER TABLE analytics_events RENAME CONSTRAINT analytics_events_v2_pkey TO "
        "analytics_events_pkey");
    tx.exec("DROP TABLE trackevent_conversion");
    tx.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                   m.version, m.name, m.checksum);
    tx.commit();
    report.lock_held_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - locked)
            .count();
  });
  context.clear();
  return report;
}

}  // namespace trackevent::detail
