#pragma once
// The compiled form of a metadata schema (MetadataSchema::Node), shared by the compiler
// (input/schema.cpp) and the check that walks metadata text against it (input/schema_check.cpp).

#include "input/byte_regex.hpp"
#include "input/schema.hpp"

#include <regex.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trackevent {

namespace detail {

struct RegexDeleter {
  void operator()(regex_t* r) const noexcept {
    regfree(r);
    delete r;
  }
};

// "integer or null", "string, number or boolean": a `type` set as messages name it.
[[nodiscard]] std::string type_list(unsigned types);

// A JSON number as the checker compares numbers: long double holds every int64, uint64 and
// double exactly.
[[nodiscard]] long double json_number(const nlohmann::json& v);

}  // namespace detail

struct MetadataSchema::Node {
  // A key the object rules name: its schema (null when only `required` names it) and its index in
  // `required` (-1 when it is not required).
  struct Named {
    std::string_view name;
    const Node* child = nullptr;
    int required = -1;
  };

  // Which keywords below a node has, so that the check of a value reads this first cache line and
  // nothing else when there is nothing more to check.
  enum Rule : unsigned {
    kEnum = 1U << 0,
    kMinLength = 1U << 1,
    kMaxLength = 1U << 2,
    kPattern = 1U << 3,
    kMinimum = 1U << 4,
    kMaximum = 1U << 5,
    kItems = 1U << 6,
    kKeyRules = 1U << 7,  // properties, additionalProperties false or a schema
    kStringRules = kEnum | kMinLength | kMaxLength | kPattern,
    kNumberRules = kEnum | kMinimum | kMaximum,
  };

  // One entry of the key table: the key's first and last 8 bytes inline (key_words), so that a
  // lookup compares a key of up to 16 bytes without reading it from anywhere else.
  struct Slot {
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    Named named;
    bool used = false;
  };

  unsigned types = 0;  // 0: any type
  unsigned rules = 0;  // Rule bits
  // The keys `properties` and `required` name, as an open-addressing hash table at most a
  // quarter full: the check looks up every key of every event.
  std::vector<Slot> slots;
  std::vector<std::string> required;
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> properties;  // file order
  bool additional_allowed = true;
  std::unique_ptr<Node> additional;  // additionalProperties as a schema
  // `enum` as written (for messages, and to compare arrays and objects), and its scalars sorted
  // by kind, so that the common cases compare without building anything.
  std::optional<std::vector<nlohmann::json>> enum_values;
  std::vector<std::string> enum_strings;
  // enum_strings as key_words() gives them, in the same order: most compare without reading the
  // strings themselves.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> enum_words;
  std::vector<long double> enum_numbers;
  bool enum_true = false;
  bool enum_false = false;
  bool enum_null = false;
  std::optional<long double> minimum;  // long double holds every int64 and double exactly
  std::optional<long double> maximum;
  std::optional<std::uint64_t> min_length;  // in code points
  std::optional<std::uint64_t> max_length;
  std::unique_ptr<regex_t, detail::RegexDeleter> pattern;
  // The same pattern as a DFA, when ByteRegex takes it: same answers, without regexec's per-call
  // cost and allocations (most patterns; input/byte_regex.cpp lists what it leaves to regexec).
  std::optional<detail::ByteRegex> dfa;
  std::string pattern_text;
  std::unique_ptr<Node> items;

  // A key as two words: with its length, they are the key itself when it has at most 16 bytes.
  static std::pair<std::uint64_t, std::uint64_t> key_words(std::string_view name) noexcept {
    const std::size_t n = name.size();
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    if (n >= 8) {
      std::memcpy(&head, name.data(), 8);
      std::memcpy(&tail, name.data() + n - 8, 8);
    } else if (n >= 4) {
      std::uint32_t lo = 0;
      std::uint32_t hi = 0;
      std::memcpy(&lo, name.data(), 4);
      std::memcpy(&hi, name.data() + n - 4, 4);
      head = (std::uint64_t{hi} << 32) | lo;
    } else {
      for (std::size_t i = 0; i < n; ++i) head = (head << 8) | static_cast<unsigned char>(name[i]);
    }
    return {head, tail};
  }

  static std::uint64_t hash(std::uint64_t head, std::uint64_t tail, std::size_t n) noexcept {
    const std::uint64_t h = (head ^ n) * 0x9E3779B97F4A7C15ULL;
    return (h ^ (h >> 29) ^ tail) * 0xBF58476D1CE4E5B9ULL >> 32;
  }

  // Builds the key table; the names must stay where they are (in `properties` and `required`).
  void index_names(const std::vector<Named>& names) {
    std::size_t size = 8;
    while (size < 4 * names.size()) size *= 2;
    slots.assign(size, Slot{});
    for (const Named& e : names) {
      const auto [head, tail] = key_words(e.name);
      std::size_t at = hash(head, tail, e.name.size()) & (size - 1);
      while (slots[at].used) at = (at + 1) & (size - 1);
      slots[at] = Slot{head, tail, e, true};
    }
  }

  // Whether `value` is one of enum_strings.
  [[nodiscard]] bool enum_has_string(std::string_view value) const noexcept {
    const auto [head, tail] = key_words(value);
    for (std::size_t i = 0; i < enum_words.size(); ++i) {
      if (enum_words[i].first != head || enum_words[i].second != tail) continue;
      const std::string& e = enum_strings[i];
      if (e.size() == value.size() &&
          (e.size() <= 16 || std::memcmp(e.data(), value.data(), e.size()) == 0)) {
        return true;
      }
    }
    return false;
  }

  [[nodiscard]] const Named* lookup(std::string_view name) const noexcept {
    if (slots.empty()) return nullptr;
    const auto [head, tail] = key_words(name);
    const std::size_t mask = slots.size() - 1;
    for (std::size_t at = hash(head, tail, name.size()) & mask;; at = (at + 1) & mask) {
      const Slot& slot = slots[at];
      if (!slot.used) return nullptr;
      if (slot.head == head && slot.tail == tail && slot.named.name.size() == name.size() &&
          (name.size() <= 16 ||
           std::memcmp(slot.named.name.data(), name.data(), name.size()) == 0)) {
        return &slot.named;
      }
    }
  }
};

}  // namespace trackevent
