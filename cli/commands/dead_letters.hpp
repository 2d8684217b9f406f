#pragma once
// `trackevent dead-letters list|replay|purge`: the events the database refused
// (dead-letter.jsonl beside the spool), looked at, sent again, or removed.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace trackevent::cli {

struct DeadLettersOptions {
  std::string action;  ///< list | replay | purge
  /// list: jsonl (the lines as they are), table, or auto (a table on a terminal).
  std::string format = "auto";
  /// purge: remove dead letters written longer ago than this ("30d", "12h", "90m", "3600s", or
  /// seconds).
  std::string older_than;
  /// replay: seconds the replay may take; what is not tried stays as it was.
  double timeout_s = 30;
  /// replay: events written per round trip.
  std::size_t batch_size = 1000;
};

void setup_dead_letters(CLI::App& app, DeadLettersOptions& options);
/// list: 0 (1 when the file cannot be read); replay: 0 every dead letter stored, 65 some
/// still refused or lines invalid, 69 database unreachable (nothing moved), 75 timed out or
/// busy, 1 the file cannot be read or rewritten; purge: 0, 1 on a file error, 75 busy.
[[nodiscard]] int run_dead_letters(const DeadLettersOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
