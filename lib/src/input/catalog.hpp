#pragma once
/// The event catalog: the list of event names a deployment accepts, with a description each.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent {

struct CatalogEntry {
  std::string name;
  std::string description;
};

/// Loaded from a JSON file: {"events": [{"name": "user.signed_in", "description": "..."}, ...]}.
/// Every name must be a valid lowercase dotted event name; names must be unique.
class Catalog {
 public:
  Catalog() = default;

  /// Reads and validates a catalog file. Throws std::runtime_error naming the file and the problem.
  [[nodiscard]] static Catalog load(const std::filesystem::path& path);
  /// Parses catalog JSON text. Throws std::runtime_error with the problem.
  [[nodiscard]] static Catalog from_json(std::string_view json);

  [[nodiscard]] bool contains(std::string_view name) const noexcept;
  /// The catalog name nearest to `name` by edit distance, when it is at most 3 edits away.
  [[nodiscard]] std::optional<std::string> closest(std::string_view name) const;
  /// Entries in file order.
  [[nodiscard]] const std::vector<CatalogEntry>& entries() const noexcept { return entries_; }
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  std::vector<CatalogEntry> entries_;
  std::vector<std::string> sorted_names_;  // for binary search
};

}  // namespace trackevent
