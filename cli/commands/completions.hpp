#pragma once
// `trackevent completions bash|zsh|fish`: prints a completion script generated from the CLI11
// model itself (subcommands, options, whether they take a value, their choices), so the scripts
// cannot drift from the parser. completions/ holds the checked-in output (scripts/gen-completions).

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace trackevent::cli {

struct CompletionsOptions {
  /// bash, zsh or fish.
  std::string shell;
  /// The root App, walked when the script is generated (set by setup_completions).
  CLI::App* root = nullptr;
};

void setup_completions(CLI::App& app, CompletionsOptions& options);
[[nodiscard]] int run_completions(const CompletionsOptions& options, const GlobalOptions& global);

/// The script for `shell` ("bash", "zsh" or "fish"); empty for another name.
[[nodiscard]] std::string completion_script(CLI::App& root, const std::string& shell);

}  // namespace trackevent::cli
