#pragma once
// `trackevent migrate [--status] [--dry-run]`: create or upgrade the schema.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

namespace trackevent::cli {

struct MigrateCommandOptions {
  /// Print every migration's state as a table on stdout; change nothing.
  bool status = false;
  /// Report what would be applied; change nothing.
  bool dry_run = false;
};

void setup_migrate(CLI::App& app, MigrateCommandOptions& options);
[[nodiscard]] int run_migrate(const MigrateCommandOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
