#pragma once
// The SQL files of schema/, compiled in by cmake/EmbedSchema.cmake.

#include <string_view>
#include <vector>

namespace trackevent::detail {

struct SchemaFile {
  std::string_view kind;  ///< "postgres" or "sqlite"
  std::string_view file;  ///< e.g. "0001_create_analytics_events.sql"
  std::string_view sql;
};

const std::vector<SchemaFile>& schema_files();

}  // namespace trackevent::detail
