#pragma once
// `trackevent status`: the spool, the dead letters, the last delivery and (with a database
// configured) the database's reachability and schema, for people, scripts and Prometheus.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace trackevent::cli {

struct StatusOptions {
  /// text | json | prometheus (the text exposition format, for node_exporter's textfile
  /// collector).
  std::string format = "text";
  /// Write to FILE through a temporary file and rename (atomic for a collector), not stdout.
  std::string output;
  /// A spool whose oldest event is older than this many seconds makes the host degraded.
  double max_age_s = 3600;
  /// The longest the database check (connect and schema query) and the spool's lock wait take.
  double timeout_s = 5;
  /// Skip the database even when one is configured.
  bool no_db = false;
};

void setup_status(CLI::App& app, StatusOptions& options);
/// 0 healthy; 2 degraded (spool older than --max-age, dead letters, pending migrations); 69 the
/// database is unreachable; 1 the spool or the dead-letter file cannot be read (corrupt, foreign,
/// locked too long) or the output cannot be written. The report is printed in every case.
[[nodiscard]] int run_status(const StatusOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
