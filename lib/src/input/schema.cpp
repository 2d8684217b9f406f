#include "input/schema.hpp"

#include "input/schema_node.hpp"

#include <regex.h>

#include <algorithm>
#include <array>
#include <utility>

namespace trackevent {

namespace {

using detail::Error;
using detail::Result;

// A pattern longer than this is refused: glibc compiles counted repetitions into automata whose
// size grows with the count, so a short hostile pattern could still cost a lot of memory.
constexpr std::size_t kMaxPatternBytes = 512;
constexpr int kMaxRepeat = 255;

constexpr std::array<std::pair<std::string_view, unsigned>, 7> kTypeNames{{
    {"string", kTypeString},
    {"integer", kTypeInteger},
    {"number", kTypeNumber},
    {"boolean", kTypeBoolean},
    {"object", kTypeObject},
    {"array", kTypeArray},
    {"null", kTypeNull},
}};

// Keywords that only annotate: accepted, and not checked.
constexpr std::array<std::string_view, 4> kAnnotations{"description", "title", "$comment",
                                                       "examples"};

}  // namespace

namespace detail {

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

std::string type_list(unsigned types) {
  std::vector<std::string_view> names;
  for (const auto& [name, bit] : kTypeNames) {
    if ((types & bit) != 0) names.push_back(name);
  }
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

long double json_number(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return static_cast<long double>(v.get<std::uint64_t>());
  if (v.is_number_integer()) return static_cast<long double>(v.get<std::int64_t>());
  return static_cast<long double>(v.get<double>());
}

std::string pointer_segment(std::string_view key) {
  std::string out = "/";
  for (const char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace detail

namespace {

using detail::json_number;
using detail::type_list;
using Node = MetadataSchema::Node;

// --- compiling ----------------------------------------------------------------------------------

Result<unsigned> compile_type(const nlohmann::json& v, const std::string& at) {
  auto one = [&](const nlohmann::json& t, const std::string& where) -> Result<unsigned> {
    if (!t.is_string()) return Error{where + ": expected a type name"};
    const auto& s = t.get_ref<const std::string&>();
    for (const auto& [name, bit] : kTypeNames) {
      if (s == name) return bit;
    }
    return Error{where + ": unknown type \"" + s +
                 "\" (expected string, integer, number, boolean, object, array or null)"};
  };
  if (v.is_string()) return one(v, at);
  if (!v.is_array() || v.empty()) {
    return Error{at + ": expected a type name or a non-empty list of them"};
  }
  unsigned bits = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string where = at + "/" + std::to_string(i);
    Result<unsigned> bit = one(v[i], where);
    if (!bit) return bit;
    if ((bits & *bit) != 0) return Error{where + ": type listed twice"};
    bits |= *bit;
  }
  return bits;
}

Result<std::uint64_t> compile_length(const nlohmann::json& v, const std::string& at) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d >= 0 && d == static_cast<double>(static_cast<std::uint64_t>(d))) {
      return static_cast<std::uint64_t>(d);
    }
  }
  return Error{at + ": expected an integer >= 0"};
}

// Refuses what glibc's matcher would make slow or huge: back-references (an extension to ERE that
// needs backtracking) and large repetition counts.
Result<> check_pattern_safety(std::string_view p, const std::string& at) {
  if (p.size() > kMaxPatternBytes) {
    return Error{at + ": pattern longer than " + std::to_string(kMaxPatternBytes) + " bytes"};
  }
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      if (p[i + 1] >= '1' && p[i + 1] <= '9') {
        return Error{at + ": back-references (\\" + std::string(1, p[i + 1]) +
                     ") are not supported"};
      }
      ++i;
    } else if (p[i] == '{') {
      // Every number inside {m,n} must stay small.
      std::size_t j = i + 1;
      while (j < p.size() && p[j] != '}') {
        int n = 0;
        bool digits = false;
        while (j < p.size() && p[j] >= '0' && p[j] <= '9') {
          n = std::min(n * 10 + (p[j] - '0'), 100000);
          digits = true;
          ++j;
        }
        if (digits && n > kMaxRepeat) {
          return Error{at + ": repetition count above " + std::to_string(kMaxRepeat)};
        }
        if (!digits) ++j;
      }
      i = j;
    }
  }
  return detail::ok();
}

Result<std::unique_ptr<Node>> compile_node(const nlohmann::json& s, const std::string& at);

Result<std::unique_ptr<Node>> compile_keywords(const nlohmann::json& s, const std::string& at) {
  auto node = std::make_unique<Node>();
  for (const auto& [key, v] : s.items()) {
    const std::string where = at + detail::pointer_segment(key);
    if (key == "type") {
      Result<unsigned> t = compile_type(v, where);
      if (!t) return std::move(t).error();
      node->types = *t;
    } else if (key == "required") {
      if (!v.is_array()) return Error{where + ": expected an array of key names"};
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string())
          return Error{where + "/" + std::to_string(i) + ": expected a string"};
        const auto& name = v[i].get_ref<const std::string&>();
        if (std::find(node->required.begin(), node->required.end(), name) != node->required.end()) {
          return Error{where + "/" + std::to_string(i) + ": \"" + name + "\" listed twice"};
        }
        node->required.push_back(name);
      }
    } else if (key == "properties") {
      if (!v.is_object()) return Error{where + ": expected an object of schemas"};
      for (const auto& [name, sub] : v.items()) {
        Result<std::unique_ptr<Node>> child =
            compile_node(sub, where + detail::pointer_segment(name));
        if (!child) return std::move(child).error();
        node->properties.emplace_back(name, std::move(child).value());
      }
    } else if (key == "additionalProperties") {
      if (v.is_boolean()) {
        node->additional_allowed = v.get<bool>();
      } else {
        Result<std::unique_ptr<Node>> child = compile_node(v, where);
        if (!child) return std::move(child).error();
        node->additional = std::move(child).value();
      }
    } else if (key == "enum") {
      if (!v.is_array() || v.empty()) return Error{where + ": expected a non-empty array"};
      node->enum_values = std::vector<nlohmann::json>(v.begin(), v.end());
      for (const nlohmann::json& e : v) {
        if (e.is_string()) {
          node->enum_strings.push_back(e.get<std::string>());
          node->enum_words.push_back(Node::key_words(node->enum_strings.back()));
        } else if (e.is_number()) {
          node->enum_numbers.push_back(json_number(e));
        } else if (e.is_boolean()) {
          (e.get<bool>() ? node->enum_true : node->enum_false) = true;
        } else if (e.is_null()) {
          node->enum_null = true;
        }
      }
    } else if (key == "minimum" || key == "maximum") {
      if (!v.is_number()) return Error{where + ": expected a number"};
      (key == "minimum" ? node->minimum : node->maximum) = json_number(v);
    } else if (key == "minLength" || key == "maxLength") {
      Result<std::uint64_t> n = compile_length(v, where);
      if (!n) return std::move(n).error();
      (key == "minLength" ? node->min_length : node->max_length) = *n;
    } else if (key == "pattern") {
      if (!v.is_string()) return Error{where + ": expected a string (a POSIX extended regex)"};
      node->pattern_text = v.get<std::string>();
      if (Result<> safe = check_pattern_safety(node->pattern_text, where); !safe) {
        return std::move(safe).error();
      }
      auto re = std::unique_ptr<regex_t, detail::RegexDeleter>(new regex_t);
      if (const int rc = regcomp(re.get(), node->pattern_text.c_str(), REG_EXTENDED | REG_NOSUB);
          rc != 0) {
        std::array<char, 256> buf{};
        regerror(rc, re.get(), buf.data(), buf.size());
        ::operator delete(re.release());  // regcomp failed: nothing to regfree
        return Error{where + ": invalid POSIX extended regex: " + std::string(buf.data())};
      }
      node->pattern = std::move(re);
      node->dfa = detail::ByteRegex::compile(node->pattern_text);
    } else if (key == "items") {
      if (v.is_array()) {
        return Error{where + ": expected a schema object (the tuple form is not supported)"};
      }
      Result<std::unique_ptr<Node>> child = compile_node(v, where);
      if (!child) return std::move(child).error();
      node->items = std::move(child).value();
    } else if (std::find(kAnnotations.begin(), kAnnotations.end(), key) == kAnnotations.end()) {
      return Error{where + ": unsupported keyword \"" + key +
                   "\" (supported: type, required, properties, additionalProperties, enum, "
                   "minimum, maximum, minLength, maxLength, pattern, items)"};
    }
  }
  // Contradictions: a schema that no value could satisfy is a mistake in the plan.
  if (node->minimum && node->maximum && *node->minimum > *node->maximum) {
    return Error{at + "/minimum: minimum " + s["minimum"].dump() + " is greater than maximum " +
                 s["maximum"].dump()};
  }
  if (node->min_length && node->max_length && *node->min_length > *node->max_length) {
    return Error{at + "/minLength: minLength " + std::to_string(*node->min_length) +
                 " is greater than maxLength " + std::to_string(*node->max_length)};
  }
  if (!node->additional_allowed && !node->additional) {
    for (std::size_t i = 0; i < node->required.size(); ++i) {
      const std::string& name = node->required[i];
      const bool declared = std::any_of(node->properties.begin(), node->properties.end(),
                                        [&](const auto& p) { return p.first == name; });
      if (!declared) {
        return Error{at + "/required/" + std::to_string(i) + ": \"" + name +
                     "\" is required, but additionalProperties is false and it is not in "
                     "properties"};
      }
    }
  }
  if (node->types != 0 && (node->types & kTypeObject) == 0 &&
      (!node->required.empty() || !node->properties.empty())) {
    return Error{at + ": properties/required given, but type " + type_list(node->types) +
                 " excludes object"};
  }
  std::vector<Node::Named> names;
  for (const auto& [name, child] : node->properties)
    names.push_back(Node::Named{name, child.get(), -1});
  for (std::size_t i = 0; i < node->required.size(); ++i) {
    const std::string& name = node->required[i];
    const auto it = std::find_if(names.begin(), names.end(),
                                 [&](const Node::Named& e) { return e.name == name; });
    if (it != names.end()) {
      it->required = static_cast<int>(i);
    } else {
      names.push_back(Node::Named{name, nullptr, static_cast<int>(i)});
    }
  }
  node->index_names(names);
  node->rules =
      (node->enum_values ? Node::kEnum : 0U) | (node->min_length ? Node::kMinLength : 0U) |
      (node->max_length ? Node::kMaxLength : 0U) | (node->pattern ? Node::kPattern : 0U) |
      (node->minimum ? Node::kMinimum : 0U) | (node->maximum ? Node::kMaximum : 0U) |
      (node->items ? Node::kItems : 0U) |
      (!node->properties.empty() || !node->additional_allowed || node->additional ? Node::kKeyRules
                                                                                  : 0U);
  return node;
}

Result<std::unique_ptr<Node>> compile_node(const nlohmann::json& s, const std::string& at) {
  if (!s.is_object()) return Error{at + ": expected a schema (a JSON object)"};
  return compile_keywords(s, at);
}

}  // namespace

MetadataSchema::~MetadataSchema() = default;

Result<std::shared_ptr<const MetadataSchema>> MetadataSchema::compile(const nlohmann::json& schema,
                                                                      const std::string& pointer) {
  Result<std::unique_ptr<Node>> root = compile_node(schema, pointer);
  if (!root) return std::move(root).error();
  // Metadata is always an object: a root type must allow one, and then means "object".
  if ((*root)->types != 0 && ((*root)->types & kTypeObject) == 0) {
    return Error{pointer + "/type: metadata is always an object, but the schema says " +
                 type_list((*root)->types)};
  }
  (*root)->types = kTypeObject;
  std::shared_ptr<MetadataSchema> s(new MetadataSchema());
  s->root_ = std::move(root).value();
  s->source_ = schema;
  return std::shared_ptr<const MetadataSchema>(std::move(s));
}

std::vector<std::string> MetadataSchema::keys() const {
  std::vector<std::string> out;
  out.reserve(root_->properties.size());
  for (const auto& [name, child] : root_->properties) out.push_back(name);
  return out;
}

unsigned MetadataSchema::property_types(std::string_view key) const noexcept {
  const Node::Named* n = root_->lookup(key);
  return n == nullptr || n->child == nullptr ? 0 : n->child->types;
}

}  // namespace trackevent
