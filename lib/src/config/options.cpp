#include "trackevent/options.hpp"

#include <cstdlib>

namespace trackevent {
namespace {

const char* nonempty_env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

}  // namespace

TrackerOptions TrackerOptions::from_env() {
  TrackerOptions options;
  if (const char* url = nonempty_env("TRACKEVENT_DATABASE_URL")) {
    options.database_url = url;
  } else if (const char* fallback = nonempty_env("DATABASE_URL")) {
    options.database_url = fallback;
  }
  if (const char* dir = nonempty_env("TRACKEVENT_SPOOL_DIR")) options.spool_dir = dir;
  return options;
}

}  // namespace trackevent
