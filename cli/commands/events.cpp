#include "commands/events.hpp"

#include "exit_codes.hpp"
#include "log/log.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>

namespace trackevent::cli {

void setup_events(CLI::App& app, EventsOptions& o) {
  auto* json = app.add_flag("--json", o.json, "print a JSON array of {name, description}");
  app.add_flag("--names", o.names, "print only the names, one per line (no header)")
      ->excludes(json);
}

int run_events(const EventsOptions& o, const GlobalOptions& global) {
  const LoadedCatalog loaded = load_catalog(global);
  if (!loaded.error.empty()) {
    log::error("cannot load catalog", {{"err", loaded.error}});
    return exit_code::no_input;
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
