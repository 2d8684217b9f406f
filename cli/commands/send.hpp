#pragma once
// `trackevent send`: events from the command line (cron jobs), delivered in bounded time.

#include "global_options.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trackevent::cli {

struct SendOptions {
  /// Each argument is one JSON event line, parsed exactly like an ingest line.
  std::vector<std::string> json;
  // Or one event from flags:
  std::optional<std::int64_t> org;
  std::optional<std::int64_t> user;
  std::optional<std::string> event;
  /// --meta: a JSON object; -m KEY=VALUE pairs are merged into it (and win).
  std::optional<std::string> meta;
  std::vector<std::string> pairs;
  std::optional<std::string> at;
  std::optional<std::string> id;
  /// Seconds to wait for delivery; what is not delivered by then is spooled.
  double timeout_s = 3;
  /// Return only once the event is committed to the local spool (survives a crash after exit).
  bool durable = false;
  /// Commit the events to the spool, start a detached `trackevent flush --exclusive` (unless one
  /// is running) and return without waiting for the database.
  bool background = false;
};

void setup_send(CLI::App& app, SendOptions& options);
[[nodiscard]] int run_send(const SendOptions& options, const GlobalOptions& global);

}  // namespace trackevent::cli
