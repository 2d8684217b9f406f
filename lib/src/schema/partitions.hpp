#pragma once
/// The partitioned layout of migration 0002: partition names and bounds, and the upkeep that
/// `trackevent partitions` runs (create ahead, move rows out of DEFAULT, retention, list). On the
/// SQLite store, retention is a DELETE in bounded chunks and there are no partitions.

#include "config/database_url.hpp"
#include "schema/migrate.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pqxx {
class transaction_base;
}

namespace trackevent {

enum class PartitionInterval { day, week, month };

/// "day", "week" or "month"; nullopt for anything else.
[[nodiscard]] std::optional<PartitionInterval> parse_partition_interval(std::string_view text);
[[nodiscard]] std::string_view to_string(PartitionInterval interval) noexcept;

using SysSeconds = std::chrono::sys_seconds;

/// The start (UTC) of the partition that holds `t`: midnight, the Monday of the ISO week, or the
/// first of the month.
[[nodiscard]] SysSeconds partition_start(PartitionInterval interval, SysSeconds t);
/// The start `n` partitions after (n < 0: before) the partition starting at `start`.
[[nodiscard]] SysSeconds partition_add(PartitionInterval interval, SysSeconds start, int n);
/// The name pg_partman 4.x gives the native child starting at `start`, so upkeep can be handed
/// over to it: <parent>_p2026_12 (month), <parent>_p2026w49 (ISO week), <parent>_p2026_12_06.
[[nodiscard]] std::string partition_name(std::string_view parent, PartitionInterval interval,
                                         SysSeconds start);
/// A bound as PostgreSQL prints it in UTC: "2026-12-01 00:00:00+00".
[[nodiscard]] std::string bound_literal(SysSeconds t);

/// A retention period: `13mo`, `90d`, `8w`, `2y`.
struct Retention {
  int count = 0;
  enum class Unit { day, week, month, year } unit = Unit::month;
};
/// nullopt when `text` is not <positive integer><d|w|mo|y>.
[[nodiscard]] std::optional<Retention> parse_retention(std::string_view text);
/// `now` minus the period (calendar months and years, clamped to the month's last day).
[[nodiscard]] SysSeconds retention_cutoff(const Retention& r, SysSeconds now);

/// The pg_advisory_lock key every `trackevent partitions` run that changes something takes, so
/// runs from cron on many hosts take turns: the first 8 bytes (big-endian, as a signed 64-bit
/// integer) of SHA-256("trackevent.partitions"), 0x7d916acb06b71462. It must never change, or runs
/// of different versions would stop excluding each other. Visible in pg_locks as classid/objid.
[[nodiscard]] std::int64_t partitions_lock_key() noexcept;

struct PartitionsOptions {
  int ahead = 3;                    ///< partitions after the current one to have
  std::optional<Retention> retain;  ///< detach (or drop) partitions wholly older than this
  bool drop = false;                ///< with retain: DROP instead of DETACH
  bool list_only = false;           ///< change nothing, only list
  bool dry_run = false;             ///< report what would change, change nothing
  std::optional<SysSeconds> now;    ///< "now" (tests); the system clock when unset
  PgTimeouts timeouts;
  /// The longest wait for the advisory lock while another run holds it.
  int lock_wait_ms = 60000;
  /// lock_timeout of every DDL statement: how long writers may queue behind a lock we wait for.
  int lock_timeout_ms = 5000;
  /// SQLite retention: rows deleted per transaction.
  int sqlite_chunk_rows = 10000;
};

struct PartitionInfo {
  std::string name;
  std::string bounds;               ///< "FROM (...) TO (...)" as PostgreSQL prints it, or "DEFAULT"
  std::int64_t rows_estimate = -1;  ///< pg_class.reltuples; -1 when never analyzed
  std::int64_t bytes = 0;           ///< pg_total_relation_size
};

struct PartitionsReport {
  bool sqlite = false;
  std::string interval;                   ///< "month" etc. ("" on SQLite)
  std::string managed_by;                 ///< "trackevent" or "pg_partman" ("" on SQLite)
  std::vector<std::string> created;       ///< partitions created (or that would be, on dry run)
  std::vector<std::string> detached;      ///< detached by retention
  std::vector<std::string> dropped;       ///< dropped by retention (--drop)
  std::int64_t rows_moved = 0;            ///< rows moved out of DEFAULT
  std::int64_t rows_deleted = 0;          ///< SQLite retention
  std::vector<PartitionInfo> partitions;  ///< attached partitions after the run
  std::vector<std::string> notes;         ///< e.g. why nothing was changed
};

/// Another run held the advisory lock for the whole PartitionsOptions::lock_wait_ms.
struct PartitionsLockTimeout : MigrateError {
  explicit PartitionsLockTimeout(const std::string& what) : MigrateError(what, false) {}
};

/// Runs the upkeep (or the listing) on `target`. Throws MigrateError (unreachable database,
/// lock wait timed out, SQL errors), like the migrations.
PartitionsReport run_partitions(const DbTarget& target, const PartitionsOptions& options);

namespace detail {

/// Creates the partition of `parent` starting at `start` in `tx` unless it exists, the way that
/// does not scan it on attach: CREATE TABLE (LIKE parent), rows of the range moved out of the
/// DEFAULT partition into it, a CHECK matching the bounds, ATTACH PARTITION, drop the CHECK.
/// `name_base` is the name partitions are named after (the parent's final name while migration
/// 0002 builds the table under a temporary one). Returns the rows moved, or -1 if it existed.
std::int64_t pg_create_partition(pqxx::transaction_base& tx, const std::string& parent,
                                 const std::string& name_base, PartitionInterval interval,
                                 SysSeconds start);

}  // namespace detail
}  // namespace trackevent
