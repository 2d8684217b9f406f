#include "commands/send.hpp"

#include "config/database_url.hpp"
#include "delivery.hpp"
#include "exit_codes.hpp"
#include "input/parse.hpp"
#include "log/log.hpp"
#include "signals.hpp"
#include "spool/drain.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <system_error>

extern char** environ;

namespace trackevent::cli {
namespace {

/// A -m value without a schema type: JSON when it is a valid JSON scalar (42, true, null, "x"),
/// else the text itself, so `-m host=db1` needs no quoting and `-m rows=1200` stays a number.
nlohmann::json pair_value(const std::string& text) {
  auto parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || parsed.is_object() || parsed.is_array()) return text;
  return parsed;
}

/// The type bits of a JSON value, as the schema's `type` names them (12 is integer and number).
unsigned json_type_bits(const nlohmann::json& j) {
  if (j.is_string()) return kTypeString;
  if (j.is_boolean()) return kTypeBoolean;
  if (j.is_null()) return kTypeNull;
  if (j.is_number_integer()) return kTypeInteger | kTypeNumber;
  if (j.is_number()) return kTypeNumber;
  if (j.is_object()) return kTypeObject;
  return kTypeArray;
}

/// A -m value for a key whose schema declares `types` (0: none declared): the text read as JSON
/// when that gives a value of a declared type (`-m bytes=12` is 12 for an integer, `-m tags=["a"]`
/// an array for an array), else the text as a string when strings are allowed (`-m zip=01234`,
/// `-m version=1.2` for a string), else today's rule, and the schema check words the mismatch.
nlohmann::json typed_pair_value(const std::string& text, unsigned types) {
  if (types == 0) return pair_value(text);
  auto parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded() && (json_type_bits(parsed) & types) != 0 && !parsed.is_string()) {
    return parsed;
  }
  if ((types & kTypeString) != 0) return text;
  return pair_value(text);
}

/// Builds the one event line the flags describe. Returns false (after printing why) on a flag
/// that is malformed as such: --meta not a JSON object, -m without '='.
bool line_from_flags(const SendOptions& o, const Catalog* catalog, std::string& line) {
  const CatalogEntry* entry = catalog != nullptr ? catalog->find(*o.event) : nullptr;
  const MetadataSchema* schema = entry != nullptr ? entry->schema.get() : nullptr;
  nlohmann::json event = nlohmann::json::object();
  event["org_id"] = *o.org;
  if (o.user) event["user_id"] = *o.user;
  event["event_name"] = *o.event;
  nlohmann::json meta = nlohmann::json::object();
  if (o.meta) {
    meta = nlohmann::json::parse(*o.meta, nullptr, false);
    if (meta.is_discarded() || !meta.is_object()) {
      std::cerr << "--meta: expected a JSON object, got: " << *o.meta << "\n";
      return false;
    }
  }
  for (const auto& pair : o.pairs) {
    const auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "-m: expected KEY=VALUE, got: " << pair << "\n";
      return false;
    }
    const std::string key = pair.substr(0, eq);
    meta[key] =
        typed_pair_value(pair.substr(eq + 1), schema != nullptr ? schema->property_types(key) : 0U);
  }
  event["metadata"] = std::move(meta);
  if (o.at) event["occurred_at"] = *o.at;
  if (o.id) event["event_id"] = *o.id;
  line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return true;
}

/// The background deliverer's log, beside the spool; rotated to flush.log.1 past this size.
constexpr std::uintmax_t kDelivererLogMax = std::uintmax_t{1} << 20;

/// Starts `trackevent flush --exclusive` in a new session, detached from our stdin, stdout and
/// stderr (so a pipeline, `$(...)` or cron does not wait for it), logging to `log_path`. The
/// database is passed in the environment (never on the command line, where `ps` shows it).
/// Returns an empty string when it started, else why not.
std::string start_deliverer(const GlobalOptions& global, const std::filesystem::path& log_path) {
  std::error_code ec;
  if (std::filesystem::file_size(log_path, ec) > kDelivererLogMax && !ec) {
    std::filesystem::rename(log_path, log_path.string() + ".1", ec);
  }
  std::vector<std::string> args{"trackevent",
                                "--log-format",
                                global.log_format,
                                "--log-level",
                                global.quiet ? std::string("error") : global.log_level,
                                "flush",
                                "--exclusive"};
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (global.db && std::strncmp(*e, "TRACKEVENT_DATABASE_URL=", 24) == 0) continue;
    env_strings.emplace_back(*e);
  }
  if (global.db) env_strings.push_back("TRACKEVENT_DATABASE_URL=" + *global.db);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t files;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&files);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&files, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&files, STDERR_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  // Nothing else we hold (a caller's pipe inherited without close-on-exec) goes along.
  posix_spawn_file_actions_addclosefrom_np(&files, 3);
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &files, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  return rc == 0 ? std::string{} : std::string(std::strerror(rc));
}

/// --background: commit to the spool, make sure a deliverer runs, return. False when the events
/// could not be spooled (the caller then delivers them in the foreground).
bool hand_off(const SendOptions& o, const GlobalOptions& global, const std::vector<Event>& events,
              RunCounts& counts) {
  std::filesystem::path dir;
  try {
    dir = spool_directory();
  } catch (const std::exception& e) {
    log::warn("cannot spool for background delivery; delivering now", {{"err", e.what()}});
    return false;
  }
  const HandOff handed = spool_for_delivery(events, dir, o.durable);
  if (!handed.error.empty()) {
    log::warn("cannot spool for background delivery; delivering now", {{"err", handed.error}});
    return false;
  }
  counts.accepted += events.size();
  counts.stats.accepted = events.size();
  counts.stats.spooled = events.size();
  const auto log_path = dir / "flush.log";
  log::Fields fields{{"events", events.size()}, {"spool", dir.string()}};
  if (handed.drain_running) {
    fields["deliverer"] = "already running";
  } else if (std::string err = start_deliverer(global, log_path); err.empty()) {
    fields["deliverer"] = "started";
    fields["deliverer_log"] = log_path.string();
  } else {
    fields["err"] = err;
    log::warn(
        "events spooled, but the background deliverer did not start; they wait for the "
        "next run or `trackevent flush`",
        fields);
    return true;
  }
  log::info("events spooled; delivering them in the background", fields);
  return true;
}

}  // namespace

void setup_send(CLI::App& app, SendOptions& o) {
  app.add_option("json", o.json, "events as JSON objects, one per argument (as ingest lines)")
      ->type_name("JSON");
  app.add_option("--org", o.org, "org_id of the event (integer >= 1)")->type_name("N");
  app.add_option("--user", o.user, "user_id (omit for a system event)")->type_name("N");
  app.add_option("--event", o.event, "event name, e.g. backup.completed")->type_name("NAME");
  app.add_option("--meta", o.meta, "metadata as a JSON object")->type_name("JSON");
  app.add_option("-m", o.pairs,
                 "one metadata field; VALUE is JSON when it is a JSON scalar, else a string "
                 "(repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  app.add_option("--at", o.at, "when it happened (RFC 3339); default now")->type_name("TIME");
  app.add_option("--id", o.id,
                 "event_id (UUID); default a new UUIDv7. Without --at it must be a UUIDv7, whose "
                 "time is used")
      ->type_name("UUID");
  app.add_option("--timeout", o.timeout_s,
                 "seconds to wait for delivery; what is not delivered by then is spooled")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--durable", o.durable,
               "return only once the event is committed to the local spool, so nothing that "
               "send accepted is lost even if the machine crashes right after");
  app.add_flag("--background", o.background,
               "do not wait for the database: commit the event to the local spool and leave "
               "delivery to a detached `trackevent flush --exclusive` (started unless one runs; "
               "it logs to flush.log beside the spool)");
}

int run_send(const SendOptions& o, const GlobalOptions& global) {
  const auto started = std::chrono::steady_clock::now();
  const bool from_flags = o.org || o.user || o.event || o.meta || !o.pairs.empty() || o.at || o.id;
  if (from_flags && !o.json.empty()) {
    std::cerr << "send: give JSON arguments or --org/--event flags, not both\n";
    return exit_code::usage;
  }
  if (!from_flags && o.json.empty()) {
    std::cerr << "send: nothing to send: give JSON arguments or --org N --event NAME\n";
    return exit_code::usage;
  }
  if (from_flags && (!o.org || !o.event)) {
    std::cerr << "send: --org and --event are required when building an event from flags\n";
    return exit_code::usage;
  }
  const LoadedCatalog catalog = load_catalog(global);
  if (!catalog.error.empty()) {
    log::error("cannot load catalog", {{"err", catalog.error}});
    return exit_code::no_input;
  }
  ParseOptions parse_options;
  parse_options.catalog = catalog.catalog ? &*catalog.catalog : nullptr;
  parse_options.catalog_mode = catalog_mode(global);

  std::vector<std::string> lines = o.json;
  if (from_flags) {
    lines.emplace_back();
    if (!line_from_flags(o, parse_options.catalog, lines.back())) return exit_code::usage;
  }

  // Parse everything first: an invalid event must not start a Tracker (or touch the database).
  RunCounts counts;
  std::vector<Event> events;
  const char* source = from_flags ? "flags" : "argv";
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ++counts.read;
    auto parsed = parse_event_line(lines[i], now_unix_us(), parse_options);
    if (auto* rejection = std::get_if<Rejection>(&parsed)) {
      ++counts.rejected;
      log::error("rejected event",
                 {{"source", source}, {"line", i + 1}, {"err", rejection->reason}});
      continue;
    }
    if (parse_options.catalog != nullptr && parse_options.catalog_mode == CatalogMode::warn) {
      warn_on_violation(*parse_options.catalog, std::get<Event>(parsed), source, i + 1, counts);
    }
    events.push_back(std::get<Event>(std::move(parsed)));
  }

  if (!events.empty()) {
    // Handing off to the spool needs no connection, so --background checks only the URL's form;
    // the deliverer checks the rest (and logs it to flush.log).
    const auto target = database_target(global, o.background ? UrlCheck::form : UrlCheck::full);
    if (!target) return exit_code::usage;
    counts.database = describe_target(*target);
  }
  const bool handed_off = !events.empty() && o.background && hand_off(o, global, events, counts);
  if (!events.empty() && !handed_off) {
    if (o.background && !database_target(global)) return exit_code::usage;
    install_stop_handlers();
    std::unique_ptr<Tracker> tracker;
    {
      const StopSignalsBlocked blocked;
      TrackerOptions options = cli_tracker_options(global);
      options.durable = o.durable;
      tracker = std::make_unique<Tracker>(std::move(options));
    }
    for (auto& event : events) {
      if (tracker->track(std::move(event))) ++counts.accepted;
    }
    // Write-ahead: the events are in the spool (fsynced) before delivery is even tried.
    if (o.durable && !tracker->sync(seconds_to_ms(o.timeout_s))) {
      log::error("events not committed to the spool in time", {{"timeout_s", o.timeout_s}});
    }
    finish_delivery(*tracker, seconds_to_ms(o.timeout_s));
    // Final counters: what the flush left is spooled now, and what could not be is dropped.
    counts.stats = tracker->close(std::chrono::milliseconds{0});
    counts.rejected += counts.stats.rejected;
    tracker.reset();
  }
  // A SIGINT/SIGTERM did not cut delivery short (a second one does); the summary says it came,
  // and the process then dies of it (see end_by_stop_signal()).
  counts.interrupted = stop_signals() > 0;
  counts.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
  log_summary(counts);
  return exit_status(counts);
}

}  // namespace trackevent::cli
