#include "input/catalog.hpp"

#include "trackevent/event.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace trackevent {

namespace {

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

}  // namespace

Catalog Catalog::from_json(std::string_view json) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("invalid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw std::runtime_error("expected a JSON object with an \"events\" array");
  const auto it = doc.find("events");
  if (it == doc.end() || !it->is_array()) {
    throw std::runtime_error("expected an \"events\" array at the top level");
  }
  Catalog catalog;
  std::size_t index = 0;
  for (const auto& item : *it) {
    const std::string where = "events[" + std::to_string(index++) + "]";
    if (!item.is_object()) throw std::runtime_error(where + ": expected an object");
    const auto name = item.find("name");
    if (name == item.end() || !name->is_string()) {
      throw std::runtime_error(where + ": \"name\" must be a string");
    }
    CatalogEntry entry;
    entry.name = name->get<std::string>();
    if (!is_valid_event_name(entry.name)) {
      throw std::runtime_error(where + ": '" + entry.name +
                               "' is not a valid event name (lowercase dotted, like "
                               "'user.signed_in')");
    }
    if (const auto desc = item.find("description"); desc != item.end()) {
      if (!desc->is_string())
        throw std::runtime_error(where + ": \"description\" must be a string");
      entry.description = desc->get<std::string>();
    }
    catalog.entries_.push_back(std::move(entry));
  }
  catalog.sorted_names_.reserve(catalog.entries_.size());
  for (const auto& e : catalog.entries_) catalog.sorted_names_.push_back(e.name);
  std::sort(catalog.sorted_names_.begin(), catalog.sorted_names_.end());
  const auto dup = std::adjacent_find(catalog.sorted_names_.begin(), catalog.sorted_names_.end());
  if (dup != catalog.sorted_names_.end()) {
    throw std::runtime_error("event '" + *dup + "' is listed twice");
  }
  return catalog;
}

Catalog Catalog::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open the event catalog");
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw std::runtime_error(path.string() + ": cannot read the event catalog");
  try {
    return from_json(buf.str());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
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
