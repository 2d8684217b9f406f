#include "input/catalog.hpp"

#include "trackevent/event.hpp"

#include "base/result.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace trackevent {

// A validated catalog: its entries in file order and their names sorted, for binary search.
struct detail::CatalogParts {
  std::string version;
  std::vector<CatalogEntry> entries;
  std::vector<std::string> sorted_names;
};

namespace {

using detail::Error;
using detail::Result;

constexpr std::size_t kMaxSuggestDistance = 3;
using detail::edit_distance;
using Checked = detail::CatalogParts;

// Keys allowed at the top level and in an entry; anything else is a mistake, not ignored.
constexpr std::array<std::string_view, 4> kTopKeys{"events", "version", "description", "$comment"};
constexpr std::array<std::string_view, 4> kEntryKeys{"name", "description", "metadata", "$comment"};

template <std::size_t N>
bool known(const std::array<std::string_view, N>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// A parser callback that records, in `out`, the JSON pointer of the first key that appears twice
// in one object (nlohmann itself keeps the last one silently).
auto duplicate_key_finder(std::string& out) {
  struct Frame {
    bool array = false;
    std::size_t index = 0;
    std::string key;
    std::set<std::string> keys;
  };
  return [&out, frames = std::vector<Frame>{}](int /*depth*/, nlohmann::json::parse_event_t event,
                                               nlohmann::json& parsed) mutable {
    using E = nlohmann::json::parse_event_t;
    const auto element_done = [&frames] {
      if (!frames.empty() && frames.back().array) ++frames.back().index;
    };
    switch (event) {
      case E::object_start:
        frames.push_back(Frame{});
        break;
      case E::array_start:
        frames.push_back(Frame{.array = true, .index = 0, .key = {}, .keys = {}});
        break;
      case E::key: {
        Frame& top = frames.back();
        top.key = parsed.get<std::string>();
        if (!top.keys.insert(top.key).second && out.empty()) {
          for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
            // Appended piece by piece: GCC 12 at -O2 warns falsely (-Wrestrict) on
            // "/" + std::to_string(...).
            if (frames[i].array) {
              out += '/';
              out += std::to_string(frames[i].index);
            } else {
              out += detail::pointer_segment(frames[i].key);
            }
          }
          out += detail::pointer_segment(top.key);
        }
        break;
      }
      case E::object_end:
      case E::array_end:
        frames.pop_back();
        element_done();
        break;
      case E::value:
        element_done();
        break;
    }
    return true;
  };
}

// Errors name the place by JSON pointer (RFC 6901), e.g. "/events/3/metadata/properties/bytes".
Result<Checked> check_catalog(std::string_view json) {
  nlohmann::json doc;
  std::string duplicate;  // the pointer of the first key seen twice in one object
  try {
    doc = nlohmann::json::parse(json, duplicate_key_finder(duplicate));
  } catch (const nlohmann::json::exception& e) {
    return Error{std::string("invalid JSON: ") + e.what()};
  }
  // nlohmann keeps the last of two equal keys; a plan that says "bytes" twice is a mistake.
  if (!duplicate.empty()) return Error{duplicate + ": key given twice in one object"};
  if (!doc.is_object()) return Error{"expected a JSON object with an \"events\" array"};
  for (const auto& [key, value] : doc.items()) {
    if (!known(kTopKeys, key)) {
      return Error{detail::pointer_segment(key) + ": unknown key \"" + key +
                   "\" (expected events, version, description)"};
    }
  }
  const auto it = doc.find("events");
  if (it == doc.end() || !it->is_array()) {
    return Error{"expected an \"events\" array at the top level"};
  }
  Checked checked;
  if (const auto v = doc.find("version"); v != doc.end()) {
    if (v->is_string()) {
      checked.version = v->get<std::string>();
    } else if (v->is_number_unsigned()) {
      checked.version = std::to_string(v->get<std::uint64_t>());
    } else {
      return Error{"/version: expected a string or an integer >= 0"};
    }
  }
  std::size_t index = 0;
  for (const auto& item : *it) {
    const std::string where = "/events/" + std::to_string(index++);
    if (!item.is_object()) return Error{where + ": expected an object"};
    for (const auto& [key, value] : item.items()) {
      if (!known(kEntryKeys, key)) {
        return Error{where + detail::pointer_segment(key) + ": unknown key \"" + key +
                     "\" (expected name, description, metadata)"};
      }
    }
    const auto name = item.find("name");
    if (name == item.end() || !name->is_string()) {
      return Error{where + "/name: \"name\" must be a string"};
    }
    CatalogEntry entry;
    entry.name = name->get<std::string>();
    if (!is_valid_event_name(entry.name)) {
      return Error{where + "/name: '" + entry.name +
                   "' is not a valid event name (lowercase dotted, like 'user.signed_in')"};
    }
    if (const auto desc = item.find("description"); desc != item.end()) {
      if (!desc->is_string())
        return Error{where + "/description: \"description\" must be a string"};
      entry.description = desc->get<std::string>();
    }
    if (const auto meta = item.find("metadata"); meta != item.end()) {
      auto schema = MetadataSchema::compile(*meta, where + "/metadata");
      if (!schema) return std::move(schema).error();
      entry.schema = std::move(schema).value();
    }
    for (std::size_t j = 0; j < checked.entries.size(); ++j) {
      if (checked.entries[j].name == entry.name) {
        return Error{where + "/name: event '" + entry.name +
                     "' is listed twice (first at /events/" + std::to_string(j) + ")"};
      }
    }
    checked.entries.push_back(std::move(entry));
  }
  checked.sorted_names.reserve(checked.entries.size());
  for (const auto& e : checked.entries) checked.sorted_names.push_back(e.name);
  std::sort(checked.sorted_names.begin(), checked.sorted_names.end());
  return checked;
}

Result<std::string> read_catalog(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path.string() + ": cannot open the event catalog"};
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Error{path.string() + ": cannot read the event catalog"};
  return std::move(buf).str();
}

}  // namespace

// Factories: a catalog that cannot be loaded is an error at start-up, so these throw.
Catalog Catalog::from_json(std::string_view json) {
  Result<Checked> checked = check_catalog(json);
  if (!checked) throw std::runtime_error(checked.error().message);
  Catalog catalog;
  catalog.adopt(std::move(checked).value());
  return catalog;
}

Catalog Catalog::load(const std::filesystem::path& path) {
  const Result<std::string> text = read_catalog(path);
  if (!text) throw std::runtime_error(text.error().message);
  Result<Checked> checked = check_catalog(*text);
  if (!checked) throw std::runtime_error(path.string() + ": " + checked.error().message);
  Catalog catalog;
  catalog.adopt(std::move(checked).value());
  return catalog;
}

void Catalog::adopt(detail::CatalogParts&& checked) {
  version_ = std::move(checked.version);
  entries_ = std::move(checked.entries);
  sorted_names_ = std::move(checked.sorted_names);
  for (const auto& e : entries_) schema_count_ += e.schema ? 1 : 0;
  // Sorted like sorted_names_, so find() is a binary search too.
  sorted_index_.resize(entries_.size());
  for (std::size_t i = 0; i < entries_.size(); ++i) sorted_index_[i] = i;
  std::sort(sorted_index_.begin(), sorted_index_.end(),
            [this](std::size_t a, std::size_t b) { return entries_[a].name < entries_[b].name; });
}

const CatalogEntry* Catalog::find(std::string_view name) const noexcept {
  const auto it = std::lower_bound(
      sorted_index_.begin(), sorted_index_.end(), name,
      [this](std::size_t i, std::string_view n) { return std::string_view(entries_[i].name) < n; });
  return it != sorted_index_.end() && entries_[*it].name == name ? &entries_[*it] : nullptr;
}

std::optional<Violation> Catalog::check(std::string_view name,
                                        std::string_view metadata) const noexcept {
  const CatalogEntry* e = find(name);
  if (e == nullptr || !e->schema) return std::nullopt;
  return e->schema->check(metadata);
}

bool Catalog::contains(std::string_view name) const noexcept {
  return std::binary_search(sorted_names_.begin(), sorted_names_.end(), name,
                            [](std::string_view a, std::string_view b) { return a < b; });
}

std::optional<std::string> Catalog::closest(std::string_view name) const {
  std::optional<std::string> best;
  std::size_t best_distance = kMaxSuggestDistance + 1;
  // File order breaks ties, so the suggestion is stable.
  for (const auto& e : entries_) {
    // Only a strictly better match matters, so cap the search at one less than the best so far.
    const std::size_t d = edit_distance(name, e.name, best_distance - 1);
    if (d < best_distance) {
      best_distance = d;
      best = e.name;
      if (d == 0) break;
    }
  }
  return best;
}

}  // namespace trackevent
