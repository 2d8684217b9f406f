#pragma once
// A metadata schema: the subset of JSON Schema that a catalog entry's "metadata" may use (the
// TRACKING PLAN section of man/trackevent.1 lists it), compiled once into a tree of checks that
// runs over an event's compact metadata text.

#include "base/result.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent {

/// One way an event's metadata breaks its schema (the first one found).
struct Violation {
  /// The rule broken, for counting and tables: the path (array indices shown as []) and the
  /// keyword, e.g. "metadata.bytes: type" or "metadata.plan: required".
  std::string rule;
  /// What is wrong, for people: `metadata.bytes: expected integer, got string "12"`.
  std::string message;
};

/// JSON types as a bit set, as `type` names them.
enum SchemaType : unsigned {
  kTypeString = 1U << 0,
  kTypeInteger = 1U << 1,
  kTypeNumber = 1U << 2,
  kTypeBoolean = 1U << 3,
  kTypeObject = 1U << 4,
  kTypeArray = 1U << 5,
  kTypeNull = 1U << 6,
};

class MetadataSchema {
 public:
  /// Compiles an entry's "metadata" value. `pointer` is its JSON pointer in the catalog (e.g.
  /// "/events/3/metadata"); an error names the pointer of the offending keyword and the problem:
  /// an unsupported keyword, a value of the wrong kind, a pattern that does not compile, or a
  /// contradiction (minimum > maximum, a required key that additionalProperties: false forbids).
  [[nodiscard]] static detail::Result<std::shared_ptr<const MetadataSchema>> compile(
      const nlohmann::json& schema, const std::string& pointer);

  MetadataSchema(const MetadataSchema&) = delete;
  MetadataSchema& operator=(const MetadataSchema&) = delete;
  ~MetadataSchema();

  /// Checks compact metadata text (a JSON object, as the parser and the Tracker produce it).
  /// Returns the first violation, or nullopt. Never throws: running out of memory is reported as
  /// a violation.
  [[nodiscard]] std::optional<Violation> check(std::string_view metadata) const noexcept;

  /// The line parser's one-pass path: true only when `raw` (metadata as the line writes it,
  /// whitespace included) is certainly a JSON object the parser would accept under `max_depth`
  /// and `max_keys` AND it conforms, so that neither the parser's own scan nor check() need run.
  /// False whenever anything is in doubt (a violation, or text the parser must judge itself);
  /// the caller then runs both as usual. `whitespace` tells whether any was passed over, that is
  /// whether the text needs compacting. Never throws.
  [[nodiscard]] bool conforms_as_written(std::string_view raw, std::size_t max_depth,
                                         std::size_t max_keys, bool& whitespace) const noexcept;

  /// The schema as written in the catalog (for `trackevent events --show`).
  [[nodiscard]] const nlohmann::json& source() const noexcept { return source_; }
  /// The top-level property names, in file order (for the completion of `send -m KEY=`).
  [[nodiscard]] std::vector<std::string> keys() const;
  /// The `type` bits of a top-level property; 0 when it is not declared or says nothing of type.
  [[nodiscard]] unsigned property_types(std::string_view key) const noexcept;

  struct Node;

 private:
  MetadataSchema() = default;
  std::unique_ptr<Node> root_;
  nlohmann::json source_;
};

namespace detail {
/// Levenshtein distance, or `limit + 1` once it is certain to exceed `limit`.
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t limit);
/// "/a~1b" for the key "a/b": a JSON pointer segment, escaped (RFC 6901).
[[nodiscard]] std::string pointer_segment(std::string_view key);
}  // namespace detail

}  // namespace trackevent
