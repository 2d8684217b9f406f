#pragma once
// `trackevent events [--json | --names]`: list the event catalog.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

namespace trackevent::cli {

struct EventsOptions {
  /// A JSON array of {"name","description"} instead of the table.
  bool json = false;
  /// Only the names, one per line (for shell completion and scripts).
  bool names = false;
};

void setup_events(CLI::App& app, EventsOptions& options);
/// Without a configured catalog: a note on stderr, nothing (or "[]") on stdout, exit 0 — there is
/// simply no list. An unreadable or invalid catalog: exit 66.
[[nodiscard]] int run_events(const EventsOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
