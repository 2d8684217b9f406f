#pragma once
// `trackevent flush [--timeout S]`: deliver what is in the local spool.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

namespace trackevent::cli {

struct FlushOptions {
  /// Seconds the whole drain may take; what is left stays spooled (exit 75).
  double timeout_s = 30;
  /// Events per round trip.
  std::size_t batch_size = 5000;
  /// One exclusive flush per spool at a time: exit 0 at once when another one runs (it will
  /// deliver what is there); otherwise drain until the spool stays empty.
  bool exclusive = false;
};

void setup_flush(CLI::App& app, FlushOptions& options);
/// 0: the spool is empty (an empty spool never touches the database), or with --exclusive another
/// exclusive flush is running; 69: the database cannot
/// take the events; 75: time ran out with events left; 1: the spool itself cannot be read.
[[nodiscard]] int run_flush(const FlushOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
