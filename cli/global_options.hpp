#pragma once
// Options every subcommand sees, and the small helpers that interpret them the same way for all.

#include "trackevent/options.hpp"

#include "config/database_url.hpp"
#include "input/catalog.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace trackevent::cli {

struct GlobalOptions {
  /// --db: a PostgreSQL URL/conninfo or sqlite:PATH. Unset: the environment, then the embedded
  /// store.
  std::optional<std::string> db;
  /// --log-format json|text. JSON by default: stderr is read by programs more often than people.
  std::string log_format = "json";
  /// --log-level trace|debug|info|warn|error|critical|off.
  std::string log_level = "info";
  /// -q/--quiet: only errors (wins over --log-level).
  bool quiet = false;
  /// --catalog FILE, else $TRACKEVENT_CATALOG; unset: event names are not checked against a list.
  std::optional<std::filesystem::path> catalog;
  /// --catalog-mode reject|warn|off: what the catalog's metadata schemas do (CatalogMode).
  std::string catalog_mode = "reject";
};

/// Configures trackevent::log from the options. Text is coloured only on a terminal without
/// NO_COLOR.
void init_logging(const GlobalOptions& global);

/// The database the command talks to, as the README and man/trackevent.1 describe (--db, then the
/// environment). nullopt (after logging why, password-free) when the URL is malformed: a usage
/// error.
[[nodiscard]] std::optional<DbTarget> database_target(const GlobalOptions& global,
                                                      UrlCheck check = UrlCheck::full);

/// The URL to hand to TrackerOptions::database_url: --db when given, else what from_env() found.
[[nodiscard]] std::string tracker_database_url(const GlobalOptions& global,
                                               const std::string& from_env);

/// A password-free description of the target for logs.
[[nodiscard]] std::string describe_target(const DbTarget& target);

/// The catalog file to use: --catalog, else $TRACKEVENT_CATALOG (when non-empty).
[[nodiscard]] std::optional<std::filesystem::path> catalog_path(const GlobalOptions& global);

/// The catalog named by catalog_path(), loaded. `error` is set (and `catalog` empty) when the file
/// cannot be read or is invalid; both are empty when no catalog is configured.
struct LoadedCatalog {
  std::optional<Catalog> catalog;
  std::string error;
};
[[nodiscard]] LoadedCatalog load_catalog(const GlobalOptions& global);

/// --catalog-mode as a CatalogMode (the parser has checked the word).
[[nodiscard]] CatalogMode catalog_mode(const GlobalOptions& global);

/// Seconds given on the command line (fractions allowed) as milliseconds, never negative.
[[nodiscard]] std::chrono::milliseconds seconds_to_ms(double seconds);

}  // namespace trackevent::cli
