#include "commands/events.hpp"

#include "exit_codes.hpp"
#include "input/parse.hpp"
#include "line_reader.hpp"
#include "log/log.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

namespace trackevent::cli {
namespace {

/// Per event name and rule: how many lines broke it, and the first one's place and message.
struct LintRow {
  std::uint64_t count = 0;
  std::string first;  // "FILE:LINE"
  std::string example;
};

/// What `events lint` found, keyed by (event name, rule); lines the parser refuses outright have
/// the event name "-" and the rule "line".
struct LintTable {
  std::map<std::pair<std::string, std::string>, LintRow> rows;
  std::uint64_t lines = 0;
  std::uint64_t ok = 0;

  void add(std::string event, std::string rule, const std::string& where, std::string message) {
    LintRow& row = rows[{std::move(event), std::move(rule)}];
    if (row.count++ == 0) {
      row.first = where;
      row.example = std::move(message);
    }
  }
};

/// Reads one input line by line into `table`. Returns false (after logging why) when it cannot
/// be read.
bool lint_input(const std::string& name, const Catalog& catalog, const Limits& limits,
                LintTable& table) {
  const bool is_stdin = name == "-";
  const int fd = is_stdin ? STDIN_FILENO : ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    log::error("cannot open input", {{"source", name}, {"err", std::strerror(errno)}});
    return false;
  }
  const std::string source = is_stdin ? "stdin" : name;
  ParseOptions options;
  options.limits = limits;
  options.catalog = &catalog;
  options.catalog_mode = CatalogMode::off;  // the schema is checked below, to learn the rule
  LineReader reader{fd, limits.max_line_bytes, {}};
  LineReader::Line line;
  bool ok = true;
  for (;;) {
    const auto status = reader.next(line);
    if (status == LineReader::Status::end || status == LineReader::Status::stopped) break;
    if (status == LineReader::Status::error) {
      log::error("cannot read input", {{"source", source}, {"err", reader.error()}});
      ok = false;
      break;
    }
    if (!line.too_long && line.text.empty()) continue;
    ++table.lines;
    const std::string where = source + ":" + std::to_string(line.number);
    if (line.too_long) {
      table.add("-", "line", where, "line too long");
      continue;
    }
    auto parsed = parse_event_line(line.text, now_unix_us(), options);
    if (auto* rejection = std::get_if<Rejection>(&parsed)) {
      table.add("-", "line", where, rejection->reason);
      continue;
    }
    const Event& event = std::get<Event>(parsed);
    if (auto violation = catalog.check(event.event_name, event.metadata)) {
      table.add(event.event_name, violation->rule, where, violation->message);
      continue;
    }
    ++table.ok;
  }
  if (!is_stdin) ::close(fd);
  return ok;
}

void print_lint_table(const LintTable& table) {
  std::size_t w_event = 5;
  std::size_t w_rule = 4;
  std::size_t w_first = 5;
  for (const auto& [key, row] : table.rows) {
    w_event = std::max(w_event, key.first.size());
    w_rule = std::max(w_rule, key.second.size());
    w_first = std::max(w_first, row.first.size());
  }
  const auto i = [](std::size_t n) { return static_cast<int>(n); };
  if (!table.rows.empty()) {
    std::printf("%-*s  %-*s  %8s  %-*s  %s\n", i(w_event), "EVENT", i(w_rule), "RULE", "LINES",
                i(w_first), "FIRST", "EXAMPLE");
  }
  for (const auto& [key, row] : table.rows) {
    std::printf("%-*s  %-*s  %8llu  %-*s  %s\n", i(w_event), key.first.c_str(), i(w_rule),
                key.second.c_str(), static_cast<unsigned long long>(row.count), i(w_first),
                row.first.c_str(), row.example.c_str());
  }
}

int run_lint(const EventsOptions& o, const Catalog& catalog) {
  LintTable table;
  bool read_ok = true;
  const Limits limits;
  std::vector<std::string> files = o.lint_files;
  if (files.empty()) files.emplace_back("-");
  for (const auto& file : files) read_ok = lint_input(file, catalog, limits, table) && read_ok;
  print_lint_table(table);
  const std::uint64_t bad = table.lines - table.ok;
  log::info("lint summary", {{"lines", table.lines},
                             {"ok", table.ok},
                             {"violations", bad},
                             {"rules", table.rows.size()}});
  if (!read_ok) return exit_code::no_input;
  return bad > 0 ? exit_code::data_error : exit_code::ok;
}

nlohmann::json entry_json(const CatalogEntry& e) {
  nlohmann::json j = {{"name", e.name}, {"description", e.description}};
  if (e.schema) j["metadata"] = e.schema->source();
  return j;
}

}  // namespace

void setup_events(CLI::App& app, EventsOptions& o) {
  auto* json = app.add_flag("--json", o.json, "print a JSON array of {name, description}");
  auto* names = app.add_flag("--names", o.names, "print only the names, one per line (no header)")
                    ->excludes(json);
  // The tracking plan (issue 18): one entry's schema, its keys, and `lint`.
  auto* show =
      app.add_option("--show", o.show, "print NAME's entry as JSON, its metadata schema included")
          ->type_name("NAME")
          ->excludes(json)
          ->excludes(names);
  app.add_option("--keys", o.keys,
                 "print the metadata keys NAME's schema declares, one per line (for completion)")
      ->type_name("NAME")
      ->excludes(json)
      ->excludes(names)
      ->excludes(show);
  o.lint = app.add_subcommand(
      "lint",
      "check JSONL FILEs (or stdin) against the catalog without storing anything, and print a "
      "table of violations per event and rule");
  o.lint->add_option("files", o.lint_files, "JSONL input files; none or \"-\" reads stdin")
      ->type_name("FILE");
}

int run_events(const EventsOptions& o, const GlobalOptions& global) {
  const LoadedCatalog loaded = load_catalog(global);
  if (!loaded.error.empty()) {
    log::error("cannot load catalog", {{"err", loaded.error}});
    return exit_code::no_input;
  }
  if (o.lint != nullptr && o.lint->parsed()) {
    if (!loaded.catalog) {
      log::error("events lint needs a catalog (use --catalog FILE or TRACKEVENT_CATALOG)");
      return exit_code::no_input;
    }
    return run_lint(o, *loaded.catalog);
  }
  if (o.show || o.keys) {
    const std::string& name = o.show ? *o.show : *o.keys;
    const CatalogEntry* entry = loaded.catalog ? loaded.catalog->find(name) : nullptr;
    if (entry == nullptr) {
      // Quiet for --keys: completion asks for whatever --event holds.
      if (o.show) log::error("no such event in the catalog", {{"event_name", name}});
      return exit_code::data_error;
    }
    if (o.keys) {
      if (entry->schema) {
        for (const auto& key : entry->schema->keys()) std::printf("%s\n", key.c_str());
      }
      return exit_code::ok;
    }
    std::puts(
        entry_json(*entry).dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return exit_code::ok;
  }
  static const std::vector<CatalogEntry> kNone;
  const auto& entries = loaded.catalog ? loaded.catalog->entries() : kNone;
  if (!loaded.catalog && !o.names) {
    log::warn("no event catalog configured (use --catalog FILE or TRACKEVENT_CATALOG)");
  }
  if (o.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : entries)
      list.push_back({{"name", e.name}, {"description", e.description}});
    std::puts(list.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return exit_code::ok;
  }
  if (o.names) {
    for (const auto& e : entries) std::printf("%s\n", e.name.c_str());
    return exit_code::ok;
  }
  if (loaded.catalog && !loaded.catalog->version().empty()) {
    std::printf("catalog version %s\n", loaded.catalog->version().c_str());
  }
  if (entries.empty()) return exit_code::ok;
  std::size_t width = 4;
  for (const auto& e : entries) width = std::max(width, e.name.size());
  std::printf("%-*s  %s\n", static_cast<int>(width), "NAME", "DESCRIPTION");
  for (const auto& e : entries) {
    std::printf("%-*s  %s\n", static_cast<int>(width), e.name.c_str(), e.description.c_str());
  }
  return exit_code::ok;
}

}  // namespace trackevent::cli
