#pragma once
// The trackevent command line: global options, the subcommand table, and the mapping of parse
// errors onto the exit statuses of man/trackevent.1.

namespace trackevent::cli {

/// Parses `argv`, runs the chosen subcommand, and returns the process exit status.
[[nodiscard]] int run(int argc, char** argv);

}  // namespace trackevent::cli
