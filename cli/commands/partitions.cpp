#include "commands/partitions.hpp"

#include "config/database_url.hpp"
#include "exit_codes.hpp"
#include "log/log.hpp"
#include "schema/partitions.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

namespace trackevent::cli {
namespace {

std::string human_bytes(std::int64_t bytes) {
  const char* units[] = {"bytes", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 10240 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  return buf;
}

/// psql-like aligned table: NAME BOUNDS ROWS(EST) SIZE.
void print_table(const PartitionsReport& r) {
  std::size_t name_w = 4;
  std::size_t bounds_w = 6;
  for (const auto& p : r.partitions) {
    name_w = std::max(name_w, p.name.size());
    bounds_w = std::max(bounds_w, p.bounds.size());
  }
  std::printf("%-*s  %-*s  %12s  %10s\n", static_cast<int>(name_w), "NAME",
              static_cast<int>(bounds_w), "BOUNDS", "ROWS (EST.)", "SIZE");
  for (const auto& p : r.partitions) {
    const std::string rows = p.rows_estimate < 0 ? "-" : std::to_string(p.rows_estimate);
    std::printf("%-*s  %-*s  %12s  %10s\n", static_cast<int>(name_w), p.name.c_str(),
                static_cast<int>(bounds_w), p.bounds.c_str(), rows.c_str(),
                human_bytes(p.bytes).c_str());
  }
  std::fflush(stdout);
}

void print_json(const PartitionsReport& r) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& p : r.partitions) {
    out.push_back({{"name", p.name},
                   {"bounds", p.bounds},
                   {"rows_estimate", p.rows_estimate},
                   {"bytes", p.bytes}});
  }
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

void setup_partitions(CLI::App& app, PartitionsCommandOptions& o) {
  app.add_option("--ahead", o.ahead, "partitions to have after the current one")
      ->capture_default_str()
      ->type_name("N")
      ->check(CLI::Range(0, 1000));
  app.add_option("--retain", o.retain,
                 "detach partitions wholly older than this (e.g. 13mo, 90d, 8w, 2y); on SQLite, "
                 "delete older rows in chunks")
      ->type_name("DURATION")
      ->check(CLI::Validator(
          [](const std::string& v) {
            return parse_retention(v) ? std::string{}
                                      : "expected a positive count and d, w, mo or y, e.g. 13mo";
          },
          "DURATION"));
  app.add_flag("--drop", o.drop, "with --retain: drop old partitions instead of detaching them");
  app.add_flag("--list", o.list,
               "print the partitions with bounds, row estimates and sizes; change nothing");
  app.add_option("--format", o.format, "of --list: text or json")
      ->capture_default_str()
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--dry-run", o.dry_run, "report what would change; change nothing");
  app.add_option("--lock-wait", o.lock_wait_s,
                 "seconds to wait while another run holds the lock (runs take turns)")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::Range(0.0, 3600.0));
}

int run_partitions(const PartitionsCommandOptions& o, const GlobalOptions& global) {
  if (o.drop && o.retain.empty()) {
    log::error("--drop needs --retain");
    return exit_code::usage;
  }
  const auto resolved = database_target(global);
  if (!resolved) return exit_code::usage;
  const DbTarget& target = *resolved;
  const std::string database = describe_target(target);
  PartitionsOptions options;
  options.ahead = o.ahead;
  if (!o.retain.empty()) options.retain = parse_retention(o.retain);
  options.drop = o.drop;
  options.list_only = o.list;
  options.dry_run = o.dry_run;
  options.lock_wait_ms = static_cast<int>(o.lock_wait_s * 1000);
  try {
    const PartitionsReport r = trackevent::run_partitions(target, options);
    for (const auto& note : r.notes) log::info(note, {{"database", database}});
    const char* would = o.dry_run ? "would " : "";
    for (const auto& name : r.created) {
      log::info(std::string(o.dry_run ? "would create" : "created") + " partition",
                {{"partition", name}, {"database", database}});
    }
    for (const auto& name : r.detached) {
      log::info(std::string(o.dry_run ? "would detach" : "detached") + " partition",
                {{"partition", name}, {"database", database}});
    }
    for (const auto& name : r.dropped) {
      log::info(std::string(o.dry_run ? "would drop" : "dropped") + " partition",
                {{"partition", name}, {"database", database}});
    }
    if (o.list) {
      if (!r.sqlite) o.format == "json" ? print_json(r) : print_table(r);
      return exit_code::ok;
    }
    nlohmann::ordered_json summary = {{"database", database}};
    if (r.sqlite) {
      summary["rows_deleted"] = r.rows_deleted;
    } else {
      summary["interval"] = r.interval;
      summary["managed_by"] = r.managed_by;
      summary["created"] = r.created.size();
      summary["rows_moved"] = r.rows_moved;
      summary[o.drop ? "dropped" : "detached"] = o.drop ? r.dropped.size() : r.detached.size();
      summary["partitions"] = r.partitions.size();
    }
    log::info(std::string(o.dry_run ? "dry run: " : "") + "partition upkeep done" +
                  (*would ? " (nothing changed)" : ""),
              summary);
    return exit_code::ok;
  } catch (const PartitionsLockTimeout& e) {
    log::error("another trackevent partitions is running",
               {{"database", database}, {"err", e.what()}});
    return exit_code::temp_fail;
  } catch (const MigrateError& e) {
    log::error(e.unreachable ? "database unreachable" : "partition upkeep failed",
               {{"database", database}, {"err", e.what()}});
    return e.unreachable ? exit_code::unavailable : exit_code::failure;
  }
}

}  // namespace trackevent::cli
