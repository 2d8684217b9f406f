#pragma once
// `trackevent ingest [FILE...]`: JSONL from files or stdin into the database, line by line.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace trackevent::cli {

struct IngestOptions {
  /// Inputs in order; none, or "-", means stdin.
  std::vector<std::string> files;
  /// Copy every input line to stdout unchanged as it is read.
  bool tee = false;
  std::size_t batch_size = 5000;
  long flush_interval_ms = 200;
  std::size_t queue_size = 65536;
  /// When the queue is full while reading a pipe: spool (default), drop, or block the producer.
  /// Regular files always use block: nobody upstream needs protecting.
  std::string on_full = "spool";
  /// Seconds the end-of-input flush may take before the rest is spooled.
  double flush_timeout_s = 10;
  bool durable = false;
  bool check = false;
  bool strict = false;
  /// --progress (1) / --no-progress (-1), the last one wins; 0 (neither): shown when stderr is a
  /// terminal, every input is a regular file, -q is not given, and --tee is not writing to a
  /// terminal too.
  int progress = 0;
  std::size_t connections = 2;
  std::size_t max_line_bytes = 1024 * 1024;
  std::size_t max_metadata_bytes = 32 * 1024;
  std::size_t max_depth = 64;
  std::size_t max_keys = 1000;
};

void setup_ingest(CLI::App& app, IngestOptions& options);
[[nodiscard]] int run_ingest(const IngestOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
