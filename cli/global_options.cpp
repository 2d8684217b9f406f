#include "global_options.hpp"

#include "config/database_url.hpp"
#include "log/log.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdlib>

namespace trackevent::cli {

void init_logging(const GlobalOptions& global) {
  // The values were validated when the command line was parsed; the fallbacks are defensive.
  const auto format = log::parse_format(global.log_format).value_or(log::Format::json);
  auto level = log::parse_level(global.log_level).value_or(log::Level::info);
  if (global.quiet) level = log::Level::error;
  const char* no_color = std::getenv("NO_COLOR");
  const bool color = format == log::Format::text && ::isatty(STDERR_FILENO) == 1 &&
                     (no_color == nullptr || *no_color == '\0');
  log::init(format, level, color);
}

std::optional<DbTarget> database_target(const GlobalOptions& global, UrlCheck check) {
  try {
    return resolve_database(global.db, check);
  } catch (const std::exception& e) {
    // The library redacts the password in this message.
    log::error("invalid database URL", {{"err", e.what()}});
    return std::nullopt;
  }
}

std::string tracker_database_url(const GlobalOptions& global, const std::string& from_env) {
  return global.db ? *global.db : from_env;
}

std::string describe_target(const DbTarget& target) {
  if (target.kind == DbTarget::Kind::sqlite) return "sqlite:" + target.conninfo;
  return redact_conninfo(target.conninfo);
}

std::optional<std::filesystem::path> catalog_path(const GlobalOptions& global) {
  if (global.catalog) return global.catalog;
  const char* env = std::getenv("TRACKEVENT_CATALOG");
  if (env != nullptr && *env != '\0') return std::filesystem::path{env};
  return std::nullopt;
}

LoadedCatalog load_catalog(const GlobalOptions& global) {
  LoadedCatalog loaded;
  const auto path = catalog_path(global);
  if (!path) return loaded;
  try {
    loaded.catalog = Catalog::load(*path);
  } catch (const std::exception& e) {
    loaded.error = e.what();
    if (loaded.error.empty()) loaded.error = "cannot load catalog " + path->string();
  }
  return loaded;
}

std::chrono::milliseconds seconds_to_ms(double seconds) {
  if (!(seconds > 0)) return std::chrono::milliseconds{0};
  return std::chrono::milliseconds{static_cast<long long>(std::llround(seconds * 1000.0))};
}

CatalogMode catalog_mode(const GlobalOptions& global) {
  if (global.catalog_mode == "warn") return CatalogMode::warn;
  if (global.catalog_mode == "off") return CatalogMode::off;
  return CatalogMode::reject;
}

}  // namespace trackevent::cli
