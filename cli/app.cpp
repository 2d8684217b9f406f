#include "app.hpp"

#include "commands/completions.hpp"
#include "commands/dead_letters.hpp"
#include "commands/events.hpp"
#include "commands/flush.hpp"
#include "commands/ingest.hpp"
#include "commands/migrate.hpp"
#include "commands/partitions.hpp"
#include "commands/send.hpp"
#include "commands/status.hpp"
#include "exit_codes.hpp"
#include "global_options.hpp"
#include "log/log.hpp"
#include "signals.hpp"

#include <CLI/CLI.hpp>

#include <functional>
#include <iostream>
#include <memory>
#include <string_view>
#include <vector>

#ifndef TRACKEVENT_VERSION
#define TRACKEVENT_VERSION "unknown"
#endif

namespace trackevent::cli {
namespace {

/// A subcommand bound to its own options object: runs it once the command line is parsed.
using Runner = std::function<int(const GlobalOptions&)>;

/// Gives a subcommand its options struct (kept alive by the returned runner) and binds its flags.
template <typename Options, void (*Setup)(CLI::App&, Options&),
          int (*Run)(const Options&, const GlobalOptions&)>
Runner attach(CLI::App& sub) {
  auto options = std::make_shared<Options>();
  Setup(sub, *options);
  return [options](const GlobalOptions& global) { return Run(*options, global); };
}

struct Command {
  std::string_view name;
  std::string_view help;
  Runner (*attach)(CLI::App&);
};

// Every subcommand, in one place.
constexpr Command kCommands[] = {
    {"migrate", "create or upgrade the schema (idempotent, advisory-locked)",
     &attach<MigrateCommandOptions, setup_migrate, run_migrate>},
    {"send", "record events given as JSON arguments or built from --org/--event flags",
     &attach<SendOptions, setup_send, run_send>},
    {"ingest", "record JSONL from FILEs, or stdin when none or \"-\"",
     &attach<IngestOptions, setup_ingest, run_ingest>},
    {"flush", "deliver what is in the local spool", &attach<FlushOptions, setup_flush, run_flush>},
    {"events", "list the event catalog", &attach<EventsOptions, setup_events, run_events>},
    // Operating a host (issue 17): its state for people and monitoring, and the dead letters.
    {"status",
     "report the spool, dead letters, last delivery and database (text, json, prometheus)",
     &attach<StatusOptions, setup_status, run_status>},
    {"dead-letters", "list, replay or purge the events the database refused",
     &attach<DeadLettersOptions, setup_dead_letters, run_dead_letters>},
    {"partitions",
     "partition upkeep: create ahead, move rows out of DEFAULT, retention, list (cron-safe)",
     &attach<PartitionsCommandOptions, setup_partitions, run_partitions>},
    {"completions", "print a completion script for bash, zsh or fish",
     &attach<CompletionsOptions, setup_completions, run_completions>},
};

std::string level_check(const std::string& value) {
  return log::parse_level(value) ? std::string{}
                                 : "expected trace|debug|info|warn|error|critical|off";
}

void setup_globals(CLI::App& app, GlobalOptions& g) {
  app.set_version_flag("--version", std::string{"trackevent "} + TRACKEVENT_VERSION);
  app.add_option("--db", g.db,
                 "database: postgresql://..., libpq key=value, or sqlite:PATH (default: "
                 "$TRACKEVENT_DATABASE_URL, $DATABASE_URL, else the embedded store)")
      ->type_name("URL");
  app.add_option("--log-format", g.log_format, "log lines on stderr: json or text")
      ->capture_default_str()
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"json", "text"}));
  app.add_option("--log-level", g.log_level, "least severe log line shown")
      ->capture_default_str()
      ->type_name("LEVEL")
      // Described like IsMember ("{a,b}") so help and the completion scripts list the levels;
      // the check itself also takes "warning", as log::parse_level does.
      ->check(CLI::Validator(level_check, "{trace,debug,info,warn,error,critical,off}"));
  app.add_flag("-q,--quiet", g.quiet, "log errors only");
  app.add_option("--catalog", g.catalog,
                 "event catalog (JSON); names outside it are rejected (default: "
                 "$TRACKEVENT_CATALOG)")
      ->type_name("FILE");
  // The tracking plan (issue 18): what the catalog's metadata schemas do.
  app.add_option("--catalog-mode", g.catalog_mode,
                 "metadata that breaks the catalog's schema: reject the event, warn (keep it, "
                 "count it in the summary), or off (not checked)")
      ->capture_default_str()
      ->type_name("MODE")
      ->check(CLI::IsMember({"reject", "warn", "off"}));
}

}  // namespace

int run(int argc, char** argv) {
  ignore_sigpipe();  // a closed stdout must be an EPIPE we handle, not a silent death

  CLI::App app{"trackevent: record analytics events without slowing down what emits them",
               "trackevent"};
  app.footer(
      "Exit status: 0 every event accepted (stored or spooled), 64 usage error, 65 some input "
      "rejected, 69 database unreachable (migrate, flush, --strict), 74 events lost, 75 flush "
      "timed out with events left. Stopped by SIGINT or SIGTERM, ingest, send and flush finish "
      "(flush, spool, summary) and then die of that signal: 130 (SIGINT) or 143 (SIGTERM).");
  GlobalOptions global;
  setup_globals(app, global);
  app.require_subcommand(1);

  std::vector<std::pair<CLI::App*, Runner>> runners;
  for (const Command& command : kCommands) {
    CLI::App* sub = app.add_subcommand(std::string{command.name}, std::string{command.help});
    runners.emplace_back(sub, command.attach(*sub));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with status 0; everything else is a usage error (64),
    // never CLI11's own codes.
    const int status = app.exit(e);
    return status == 0 ? exit_code::ok : exit_code::usage;
  }

  init_logging(global);
  for (const auto& [sub, runner] : runners) {
    if (!sub->parsed()) continue;
    int status = exit_code::failure;
    try {
      status = runner(global);
    } catch (const std::exception& e) {
      // The library reports failures as values; this is the last line of defence (e.g. an
      // unusable SQLite path when the Tracker opens its sink).
      log::error("command failed", {{"command", sub->get_name()}, {"err", e.what()}});
    }
    // Stopped by SIGINT/SIGTERM (ingest, send, flush): the command has flushed, spooled and
    // written its summary; now die of that signal, so $? is 130 or 143 whatever `status` says.
    end_by_stop_signal();
    return status;
  }
  return exit_code::usage;  // unreachable: require_subcommand(1)
}

}  // namespace trackevent::cli
