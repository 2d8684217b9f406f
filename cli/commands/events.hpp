#pragma once
// `trackevent events [--json | --names | --show NAME | --keys NAME]`: list the event catalog or
// show one entry's schema; `trackevent events lint FILE...`: check JSONL against it.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace trackevent::cli {

struct EventsOptions {
  /// A JSON array of {"name","description"} instead of the table.
  bool json = false;
  /// Only the names, one per line (for shell completion and scripts).
  bool names = false;
  /// --show NAME: the entry as JSON, its metadata schema included.
  std::optional<std::string> show;
  /// --keys NAME: the metadata keys NAME's schema declares, one per line (for completion of
  /// `send -m KEY=`).
  std::optional<std::string> keys;
  /// The `lint` subcommand and its inputs.
  CLI::App* lint = nullptr;
  std::vector<std::string> lint_files;
};

void setup_events(CLI::App& app, EventsOptions& options);
/// Without a configured catalog: a note on stderr, nothing (or "[]") on stdout, exit 0 — there is
/// simply no list. An unreadable or invalid catalog: exit 66. --show/--keys of a name outside the
/// catalog: exit 65. lint: exit 65 when a line is rejected or breaks a schema, 66 without a
/// catalog or on an unreadable input.
[[nodiscard]] int run_events(const EventsOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
