#pragma once
// Migration 0002 on PostgreSQL: the v1 analytics_events converted to the partitioned layout
// without losing or duplicating a row, writers blocked only for a short final rename.

#include "schema/migrate.hpp"

#include <string>

namespace pqxx {
class connection_base;
}

namespace trackevent::detail {

/// Whether `m` is the migration that pg_convert_to_partitioned applies (not by running its SQL
/// alone).
[[nodiscard]] bool is_partitioning_migration(const Migration& m);

/// Throws MigrateError when options.partition_interval is not day|week|month, or differs from
/// the interval trackevent_partitioning records.
void pg_check_partition_interval(pqxx::connection_base& c, const MigrateOptions& options);

/// Applies migration `m` (0002): runs its SQL (the new table under the name analytics_events_v2,
/// its DEFAULT partition, trackevent_partitioning), records the interval, creates the partitions
/// for the old rows' range and 3 ahead, installs a trigger that copies each new v1 row, copies the
/// v1 rows in chunks (resumable: trackevent_conversion holds the last event_id copied), and in one
/// short transaction takes the writers' lock, drops the trigger, renames the tables and records
/// `m` in schema_migrations. Each step is its own transaction: interrupted, a rerun continues.
/// The caller holds the migration advisory lock. `context` is set for error messages.
ConversionReport pg_convert_to_partitioned(pqxx::connection_base& c, const Migration& m,
                                           const MigrateOptions& options, std::string& context);

}  // namespace trackevent::detail
