#include "input/catalog.hpp"

#include "trackevent/event.hpp"

#include "base/result.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace trackevent {

namespace {

using detail::Error;
using detail::Result;

constexpr std::size_t kMaxSuggestDistance = 3;

// Levenshtein distance, giving up (returning limit + 1) once every cell in a row exceeds `limit`.
std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t limit) {
  const std::size_t diff = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (diff > limit) return limit + 1;
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    std::size_t row_min = cur[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > limit) return limit + 1;
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// A validated catalog: its entries in file order and their names sorted, for binary search.
struct Checked {
  std::vector<CatalogEntry> entries;
  std::vector<std::string> sorted_names;
};

Result<Checked> check_catalog(std::string_view json) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    return Error{std::string("invalid JSON: ") + e.what()};
  }
  if (!doc.is_object()) return Error{"expected a JSON object with an \"events\" array"};
  const auto it = doc.find("events");
  if (it == doc.end() || !it->is_array()) {
    return Error{"expected an \"events\" array at the top level"};
  }
  Checked checked;
  std::size_t index = 0;
  for (const auto& item : *it) {
    const std::string where = "events[" + std::to_string(index++) + "]";
    if (!item.is_object()) return Error{where + ": expected an object"};
    const auto name = item.find("name");
    if (name == item.end() || !name->is_string()) {
      return Error{where + ": \"name\" must be a string"};
    }
    CatalogEntry entry;
    entry.name = name->get<std::string>();
    if (!is_valid_event_name(entry.name)) {
      return Error{where + ": '" + entry.name +
                   "' is not a valid event name (lowercase dotted, like 'user.signed_in')"};
    }
    if (const auto desc = item.find("description"); desc != item.end()) {
      if (!desc->is_string()) return Error{where + ": \"description\" must be a string"};
      entry.description = desc->get<std::string>();
    }
    checked.entries.push_back(std::move(entry));
  }
  checked.sorted_names.reserve(checked.entries.size());
  for (const auto& e : checked.entries) checked.sorted_names.push_back(e.name);
  std::sort(checked.sorted_names.begin(), checked.sorted_names.end());
  const auto dup = std::adjacent_find(checked.sorted_names.begin(), checked.sorted_names.end());
  if (dup != checked.sorted_names.end()) return Error{"event '" + *dup + "' is listed twice"};
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
  catalog.entries_ = std::move(checked->entries);
  catalog.sorted_names_ = std::move(checked->sorted_names);
  return catalog;
}

Catalog Catalog::load(const std::filesystem::path& path) {
  const Result<std::string> text = read_catalog(path);
  if (!text) throw std::runtime_error(text.error().message);
  Result<Checked> checked = check_catalog(*text);
  if (!checked) throw std::runtime_error(path.string() + ": " + checked.error().message);
  Catalog catalog;
  catalog.entries_ = std::move(checked->entries);
  catalog.sorted_names_ = std::move(checked->sorted_names);
  return catalog;
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
