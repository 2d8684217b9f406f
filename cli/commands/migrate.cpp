#include "commands/migrate.hpp"

#include "config/database_url.hpp"
#include "exit_codes.hpp"
#include "log/log.hpp"
#include "schema/migrate.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

namespace trackevent::cli {
namespace {

std::string_view state_name(MigrationStatus::State state) {
  switch (state) {
    case MigrationStatus::State::applied:
      return "applied";
    case MigrationStatus::State::pending:
      return "pending";
    case MigrationStatus::State::checksum_mismatch:
      return "checksum mismatch";
  }
  return "unknown";
}

/// psql-like aligned table: VERSION NAME STATE APPLIED_AT.
void print_status_table(const std::vector<MigrationStatus>& rows) {
  std::size_t name_width = 4;
  for (const auto& row : rows) name_width = std::max(name_width, row.name.size());
  std::printf("%-7s  %-*s  %-17s  %s\n", "VERSION", static_cast<int>(name_width), "NAME", "STATE",
              "APPLIED_AT");
  for (const auto& row : rows) {
    const std::string state{state_name(row.state)};
    std::printf("%-7d  %-*s  %-17s  %s\n", row.version, static_cast<int>(name_width),
                row.name.c_str(), state.c_str(),
                row.applied_at.empty() ? "-" : row.applied_at.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

void setup_migrate(CLI::App& app, MigrateCommandOptions& o) {
  app.add_flag("--status", o.status,
               "print each migration's state (a table on stdout); change nothing");
  app.add_flag("--dry-run", o.dry_run, "report what would be applied; change nothing");
  app.add_option("--partition-interval", o.partition_interval,
                 "PostgreSQL: partition analytics_events by day, week or month (default month; "
                 "chosen once, by migration 0002: changing it later is an error)")
      ->check(CLI::IsMember({"day", "week", "month"}));
}

int run_migrate(const MigrateCommandOptions& o, const GlobalOptions& global) {
  const auto resolved = database_target(global);
  if (!resolved) return exit_code::usage;
  const DbTarget& target = *resolved;
  const std::string database = describe_target(target);
  MigrateOptions options;
  options.dry_run = o.dry_run;
  if (!o.partition_interval.empty()) options.partition_interval = o.partition_interval;
  try {
    if (o.status) {
      const MigrateReport report = migration_status(target, options);
      print_status_table(report.status);
      const bool mismatch = std::any_of(report.status.begin(), report.status.end(), [](auto& s) {
        return s.state == MigrationStatus::State::checksum_mismatch;
      });
      if (mismatch) {
        log::error("applied migration changed since it was applied (checksum mismatch)",
                   {{"database", database}});
        return exit_code::failure;
      }
      return exit_code::ok;
    }
    const MigrateReport report = migrate(target, options);
    for (const int version : report.applied) {
      auto it = std::find_if(report.status.begin(), report.status.end(),
                             [&](const auto& s) { return s.version == version; });
      log::info(o.dry_run ? "would apply migration" : "applied migration",
                {{"version", version},
                 {"name", it == report.status.end() ? std::string{} : it->name},
                 {"database", database}});
    }
    if (const auto& conv = report.conversion) {
      log::info("analytics_events partitioned",
                {{"interval", conv->interval},
                 {"rows_copied", conv->rows_copied},
                 {"lock_held_ms", conv->lock_held_ms},
                 {"old_table", conv->old_table_kept ? "kept as analytics_events_v1 (drop it "
                                                      "when no longer needed)"
                                                    : "empty, dropped"},
                 {"database", database}});
    }
    const int current = report.status.empty() ? 0 : report.status.back().version;
    log::info(o.dry_run ? "dry run: schema unchanged" : "schema up to date",
              {{"version", current}, {"applied", report.applied.size()}, {"database", database}});
    return exit_code::ok;
  } catch (const MigrateError& e) {
    log::error(e.unreachable ? "database unreachable" : "migration failed",
               {{"database", database}, {"err", e.what()}});
    return e.unreachable ? exit_code::unavailable : exit_code::failure;
  } catch (const std::exception& e) {
    log::error("migration failed", {{"database", database}, {"err", e.what()}});
    return exit_code::failure;
  }
}

}  // namespace trackevent::cli
