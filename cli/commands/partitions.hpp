#pragma once
// `trackevent partitions [--ahead N] [--retain DURATION [--drop]] [--list] [--dry-run]`: upkeep of
// the partitioned analytics_events (migration 0002), or retention on the SQLite store.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace trackevent::cli {

struct PartitionsCommandOptions {
  int ahead = 3;
  std::string retain;  ///< e.g. "13mo"; empty: no retention
  bool drop = false;
  bool list = false;
  bool dry_run = false;
  std::string format = "text";  ///< of --list: text or json
  double lock_wait_s = 60;
};

void setup_partitions(CLI::App& app, PartitionsCommandOptions& options);
/// 0 done (or nothing to do); 64 usage; 69 database unreachable; 75 another run held the lock for
/// the whole --lock-wait; 1 other failures (SQL errors, not migrated).
[[nodiscard]] int run_partitions(const PartitionsCommandOptions& options,
                                 const GlobalOptions& global);

}  // namespace trackevent::cli
