#pragma once
// The SQL files of schema/ and their checksums, compiled in by cmake/EmbedSchema.cmake.

#include <string_view>
#include <vector>

namespace trackevent::detail {

struct SchemaFile {
  std::string_view kind;  ///< "postgres" or "sqlite"
  std::string_view file;  ///< e.g. "0001_create_analytics_events.sql"
  std::string_view sql;
  std::string_view sha256;  ///< SHA-256 of `sql`, 64 lowercase hex digits: the migration's checksum
};

const std::vector<SchemaFile>& schema_files();

}  // namespace trackevent::detail
