#pragma once
// `trackevent migrate [--status] [--dry-run] [--partition-interval I]`: create or upgrade the
// schema.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace trackevent::cli {

struct MigrateCommandOptions {
  /// Print every migration's state as a table on stdout; change nothing.
  bool status = false;
  /// Report what would be applied; change nothing.
  bool dry_run = false;
  /// --partition-interval day|week|month (migration 0002); empty: the recorded one, or month.
  std::string partition_interval;
};

void setup_migrate(CLI::App& app, MigrateCommandOptions& options);
[[nodiscard]] int run_migrate(const MigrateCommandOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
