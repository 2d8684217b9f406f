#pragma once
/// The event catalog (a tracking plan): the event names a deployment accepts, with a description
/// each and, optionally, a schema for each event's metadata (input/schema.hpp).

#include "input/schema.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent {

struct CatalogEntry {
  std::string name;
  std::string description;
  /// The entry's "metadata" schema, compiled; null when it has none (any object is accepted).
  std::shared_ptr<const MetadataSchema> schema;
};

namespace detail {
struct CatalogParts;
}

/// Loaded from a JSON file: {"version": "3", "events": [{"name": "user.signed_in", "description":
/// "...", "metadata": {...schema...}}, ...]}. Every name must be a valid lowercase dotted event
/// name; names must be unique; unknown keys are errors. Errors name the JSON pointer.
class Catalog {
 public:
  Catalog() = default;

  /// Reads and validates a catalog file. Throws std::runtime_error naming the file and the problem.
  [[nodiscard]] static Catalog load(const std::filesystem::path& path);
  /// Parses catalog JSON text. Throws std::runtime_error with the problem.
  [[nodiscard]] static Catalog from_json(std::string_view json);

  [[nodiscard]] bool contains(std::string_view name) const noexcept;
  /// The entry named `name`, or null.
  [[nodiscard]] const CatalogEntry* find(std::string_view name) const noexcept;
  /// Checks metadata (compact JSON text) against the schema of event `name`; nullopt when it
  /// conforms, the event has no schema, or the name is not in the catalog.
  [[nodiscard]] std::optional<Violation> check(std::string_view name,
                                               std::string_view metadata) const noexcept;
  /// The catalog's "version", empty when it has none.
  [[nodiscard]] const std::string& version() const noexcept { return version_; }
  /// How many entries carry a metadata schema.
  [[nodiscard]] std::size_t schema_count() const noexcept { return schema_count_; }
  /// The catalog name nearest to `name` by edit distance, when it is at most 3 edits away.
  [[nodiscard]] std::optional<std::string> closest(std::string_view name) const;
  /// Entries in file order.
  [[nodiscard]] const std::vector<CatalogEntry>& entries() const noexcept { return entries_; }
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  void adopt(detail::CatalogParts&& parts);

  std::string version_;
  std::vector<CatalogEntry> entries_;
  std::vector<std::string> sorted_names_;  // for binary search
  std::vector<std::size_t> sorted_index_;  // entries_ by name, for find()
  std::size_t schema_count_ = 0;
};

}  // namespace trackevent
