#include "input/schema.hpp"

#include <simdjson.h>

#include <regex.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <new>
#include <utility>

namespace trackevent {

namespace {

using detail::Error;
using detail::Result;
namespace dom = simdjson::dom;

constexpr std::size_t kQuoteMax = 64;
constexpr std::size_t kEnumShown = 8;
constexpr std::size_t kSuggestDistance = 3;
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

struct RegexDeleter {
  void operator()(regex_t* r) const noexcept {
    regfree(r);
    delete r;
  }
};

}  // namespace

struct MetadataSchema::Node {
  unsigned types = 0;  // 0: any type
  std::vector<std::string> required;
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> properties;  // file order
  std::vector<std::pair<std::string_view, const Node*>> by_name;          // sorted, for lookup
  bool additional_allowed = true;
  std::unique_ptr<Node> additional;  // additionalProperties as a schema
  std::optional<std::vector<nlohmann::json>> enum_values;
  std::optional<long double> minimum;  // long double holds every int64 and double exactly
  std::optional<long double> maximum;
  std::optional<std::uint64_t> min_length;  // in code points
  std::optional<std::uint64_t> max_length;
  std::unique_ptr<regex_t, RegexDeleter> pattern;
  std::string pattern_text;
  std::unique_ptr<Node> items;

  // Names ordered by length first: most comparisons in a lookup are then settled by the length
  // alone (the check looks up every key of every event).
  static bool before(std::string_view a, std::string_view b) noexcept {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  }

  [[nodiscard]] const Node* property(std::string_view name) const noexcept {
    const auto it =
        std::lower_bound(by_name.begin(), by_name.end(), name,
                         [](const auto& p, std::string_view n) { return before(p.first, n); });
    return it != by_name.end() && it->first == name ? it->second : nullptr;
  }
};

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

using Node = MetadataSchema::Node;

// --- compiling ----------------------------------------------------------------------------------

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
    } else if (key == "minimum" || key == "maximum") {
      if (!v.is_number()) return Error{where + ": expected a number"};
      const long double bound =
          v.is_number_integer()
              ? (v.is_number_unsigned() ? static_cast<long double>(v.get<std::uint64_t>())
                                        : static_cast<long double>(v.get<std::int64_t>()))
              : static_cast<long double>(v.get<double>());
      (key == "minimum" ? node->minimum : node->maximum) = bound;
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
      auto re = std::unique_ptr<regex_t, RegexDeleter>(new regex_t);
      if (const int rc = regcomp(re.get(), node->pattern_text.c_str(), REG_EXTENDED | REG_NOSUB);
          rc != 0) {
        std::array<char, 256> buf{};
        regerror(rc, re.get(), buf.data(), buf.size());
        ::operator delete(re.release());  // regcomp failed: nothing to regfree
        return Error{where + ": invalid POSIX extended regex: " + std::string(buf.data())};
      }
      node->pattern = std::move(re);
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
  for (const auto& [name, child] : node->properties) node->by_name.emplace_back(name, child.get());
  std::sort(node->by_name.begin(), node->by_name.end(),
            [](const auto& a, const auto& b) { return Node::before(a.first, b.first); });
  return node;
}

Result<std::unique_ptr<Node>> compile_node(const nlohmann::json& s, const std::string& at) {
  if (!s.is_object()) return Error{at + ": expected a schema (a JSON object)"};
  return compile_keywords(s, at);
}

// --- checking -----------------------------------------------------------------------------------

// One step of the path to a value: a key, or an array index.
struct Step {
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;
};

struct Checker {
  std::vector<Step> path;

  [[nodiscard]] std::string where(bool for_rule) const {
    std::string out = "metadata";
    for (const Step& s : path) {
      if (s.is_index) {
        // Piece by piece: GCC 12 at -O2 warns falsely (-Wrestrict) on "[" + std::to_string(...).
        out += '[';
        if (!for_rule) out += std::to_string(s.index);
        out += ']';
      } else {
        out += '.';
        out += s.key;
      }
    }
    return out;
  }

  [[nodiscard]] Violation violation(std::string_view keyword, const std::string& what) const {
    return Violation{where(true) + ": " + std::string(keyword), where(false) + ": " + what};
  }

  std::optional<Violation> check(const Node& n, dom::element v);
  std::optional<Violation> check_object(const Node& n, dom::object o);
};

std::string quote_json_string(std::string_view s) {
  std::string out = "\"";
  std::size_t n = std::min(s.size(), kQuoteMax);
  while (n < s.size() && n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "...";
  out += '"';
  return out;
}

std::string number_text(double d) {
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), d);
  return std::string(buf.data(), r.ptr);
}

// "string \"12\"", "integer 5", "object": what a value is, for "got ...".
std::string describe(dom::element v) {
  switch (v.type()) {
    case dom::element_type::STRING:
      return "string " + quote_json_string(std::string_view(v.get_string().value_unsafe()));
    case dom::element_type::INT64:
      return "integer " + std::to_string(v.get_int64().value_unsafe());
    case dom::element_type::UINT64:
      return "integer " + std::to_string(v.get_uint64().value_unsafe());
    case dom::element_type::DOUBLE:
      return "number " + number_text(v.get_double().value_unsafe());
    case dom::element_type::BOOL:
      return v.get_bool().value_unsafe() ? "boolean true" : "boolean false";
    case dom::element_type::NULL_VALUE:
      return "null";
    case dom::element_type::ARRAY:
      return "array";
    case dom::element_type::OBJECT:
      return "object";
  }
  return "a value";
}

bool is_integral(double d) noexcept {
  return d >= -9.3e18 && d <= 9.3e18 && d == static_cast<double>(static_cast<std::int64_t>(d));
}

unsigned type_bits(dom::element v) noexcept {
  switch (v.type()) {
    case dom::element_type::STRING:
      return kTypeString;
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
      return kTypeInteger | kTypeNumber;
    case dom::element_type::DOUBLE:
      // As in JSON Schema, 3.0 is an integer.
      return is_integral(v.get_double().value_unsafe()) ? (kTypeInteger | kTypeNumber)
                                                        : kTypeNumber;
    case dom::element_type::BOOL:
      return kTypeBoolean;
    case dom::element_type::NULL_VALUE:
      return kTypeNull;
    case dom::element_type::ARRAY:
      return kTypeArray;
    case dom::element_type::OBJECT:
      return kTypeObject;
  }
  return 0;
}

std::optional<long double> number_of(dom::element v) noexcept {
  switch (v.type()) {
    case dom::element_type::INT64:
      return static_cast<long double>(v.get_int64().value_unsafe());
    case dom::element_type::UINT64:
      return static_cast<long double>(v.get_uint64().value_unsafe());
    case dom::element_type::DOUBLE:
      return static_cast<long double>(v.get_double().value_unsafe());
    default:
      return std::nullopt;
  }
}

bool equal(dom::element v, const nlohmann::json& j) {
  switch (v.type()) {
    case dom::element_type::STRING:
      return j.is_string() && j.get_ref<const std::string&>() == v.get_string().value_unsafe();
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE: {
      if (!j.is_number()) return false;
      const long double a = *number_of(v);
      const long double b =
          j.is_number_unsigned()  ? static_cast<long double>(j.get<std::uint64_t>())
          : j.is_number_integer() ? static_cast<long double>(j.get<std::int64_t>())
                                  : static_cast<long double>(j.get<double>());
      return a == b;
    }
    case dom::element_type::BOOL:
      return j.is_boolean() && j.get<bool>() == v.get_bool().value_unsafe();
    case dom::element_type::NULL_VALUE:
      return j.is_null();
    case dom::element_type::ARRAY: {
      if (!j.is_array()) return false;
      const dom::array a = v.get_array().value_unsafe();
      if (a.size() != j.size()) return false;
      std::size_t i = 0;
      for (dom::element e : a) {
        if (!equal(e, j[i++])) return false;
      }
      return true;
    }
    case dom::element_type::OBJECT: {
      if (!j.is_object()) return false;
      const dom::object o = v.get_object().value_unsafe();
      if (o.size() != j.size()) return false;
      for (dom::key_value_pair kv : o) {
        const auto it = j.find(std::string(kv.key));
        if (it == j.end() || !equal(kv.value, *it)) return false;
      }
      return true;
    }
  }
  return false;
}

std::size_t code_points(std::string_view s) noexcept {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

std::string bound_text(long double b) {
  if (b == static_cast<long double>(static_cast<std::int64_t>(b)) && b >= -9.2e18L &&
      b <= 9.2e18L) {
    return std::to_string(static_cast<std::int64_t>(b));
  }
  return number_text(static_cast<double>(b));
}

std::string value_text(dom::element v) {
  const std::string d = describe(v);
  const auto space = d.find(' ');
  return space == std::string::npos ? d : d.substr(space + 1);
}

bool matches(const regex_t& re, std::string_view s) {
  // regexec wants a C string; metadata strings hold no NUL (the validator refuses them).
  thread_local std::string buf;
  buf.assign(s);
  return regexec(&re, buf.c_str(), 0, nullptr, 0) == 0;
}

std::optional<std::string> suggest(const Node& n, std::string_view key) {
  std::optional<std::string> best;
  std::size_t best_d = kSuggestDistance + 1;
  for (const auto& [name, child] : n.properties) {
    const std::size_t d = detail::edit_distance(key, name, best_d - 1);
    if (d < best_d) {
      best_d = d;
      best = name;
    }
  }
  return best;
}

std::optional<Violation> Checker::check(const Node& n, dom::element v) {
  const unsigned bits = type_bits(v);
  if (n.types != 0 && (n.types & bits) == 0) {
    return violation("type", "expected " + type_list(n.types) + ", got " + describe(v));
  }
  if (n.enum_values) {
    const auto& values = *n.enum_values;
    if (std::none_of(values.begin(), values.end(),
                     [&](const nlohmann::json& j) { return equal(v, j); })) {
      std::string list;
      for (std::size_t i = 0; i < values.size() && i < kEnumShown; ++i) {
        if (i > 0) list += ", ";
        list += values[i].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
      if (values.size() > kEnumShown) list += ", ...";
      return violation("enum", "expected one of " + list + ", got " + value_text(v));
    }
  }
  switch (v.type()) {
    case dom::element_type::STRING: {
      const std::string_view s = v.get_string().value_unsafe();
      if (n.min_length || n.max_length) {
        const std::size_t len = code_points(s);
        if (n.min_length && len < *n.min_length) {
          return violation("minLength", "expected at least " + std::to_string(*n.min_length) +
                                            " characters, got " + std::to_string(len));
        }
        if (n.max_length && len > *n.max_length) {
          return violation("maxLength", "expected at most " + std::to_string(*n.max_length) +
                                            " characters, got " + std::to_string(len));
        }
      }
      if (n.pattern && !matches(*n.pattern, s)) {
        return violation("pattern", "expected a string matching " + n.pattern_text + ", got " +
                                        quote_json_string(s));
      }
      return std::nullopt;
    }
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE: {
      const long double x = *number_of(v);
      if (n.minimum && x < *n.minimum) {
        return violation("minimum",
                         "expected >= " + bound_text(*n.minimum) + ", got " + value_text(v));
      }
      if (n.maximum && x > *n.maximum) {
        return violation("maximum",
                         "expected <= " + bound_text(*n.maximum) + ", got " + value_text(v));
      }
      return std::nullopt;
    }
    case dom::element_type::ARRAY: {
      if (!n.items) return std::nullopt;
      std::size_t i = 0;
      const dom::array arr = v.get_array().value_unsafe();
      for (dom::element e : arr) {
        path.push_back(Step{{}, i++, true});
        if (auto bad = check(*n.items, e)) return bad;
        path.pop_back();
      }
      return std::nullopt;
    }
    case dom::element_type::OBJECT:
      return check_object(n, v.get_object().value_unsafe());
    default:
      return std::nullopt;
  }
}

std::optional<Violation> Checker::check_object(const Node& n, dom::object o) {
  for (const std::string& name : n.required) {
    dom::element ignored;
    if (o.at_key(name).get(ignored) != simdjson::SUCCESS) {
      return violation("required", "missing required key \"" + name + "\"");
    }
  }
  if (n.properties.empty() && n.additional_allowed && !n.additional) return std::nullopt;
  for (dom::key_value_pair kv : o) {
    const Node* child = n.property(kv.key);
    if (child == nullptr) {
      if (n.additional) {
        child = n.additional.get();
      } else if (!n.additional_allowed) {
        path.push_back(Step{kv.key, 0, false});
        std::string what = "unknown key";
        if (auto near = suggest(n, kv.key)) what += " (did you mean " + *near + "?)";
        return violation("additionalProperties", what);
      } else {
        continue;
      }
    }
    path.push_back(Step{kv.key, 0, false});
    if (auto bad = check(*child, kv.value)) return bad;
    path.pop_back();
  }
  return std::nullopt;
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

std::optional<Violation> MetadataSchema::check(std::string_view metadata) const noexcept {
  try {
    thread_local dom::parser parser;
    thread_local Checker checker;
    // A padded copy in a buffer kept per thread: parse() would otherwise allocate one per call.
    thread_local std::unique_ptr<char[]> buffer;
    thread_local std::size_t capacity = 0;
    const std::size_t need = metadata.size() + simdjson::SIMDJSON_PADDING;
    if (capacity < need) {
      capacity = std::max<std::size_t>(need, 4096);
      buffer = std::make_unique<char[]>(capacity);
    }
    std::memcpy(buffer.get(), metadata.data(), metadata.size());
    std::memset(buffer.get() + metadata.size(), 0, simdjson::SIMDJSON_PADDING);
    dom::element root;
    if (auto e = parser.parse(buffer.get(), metadata.size(), false).get(root); e) {
      return Violation{"metadata: json",
                       std::string("metadata: invalid JSON: ") + simdjson::error_message(e)};
    }
    checker.path.clear();
    return checker.check(*root_, root);
  } catch (const std::bad_alloc&) {
    return Violation{"metadata: out of memory", "metadata: out of memory while checking"};
  } catch (const simdjson::simdjson_error&) {
    return Violation{"metadata: json", "metadata: internal error while checking"};
  }
}

std::vector<std::string> MetadataSchema::keys() const {
  std::vector<std::string> out;
  out.reserve(root_->properties.size());
  for (const auto& [name, child] : root_->properties) out.push_back(name);
  return out;
}

unsigned MetadataSchema::property_types(std::string_view key) const noexcept {
  const Node* n = root_->property(key);
  return n == nullptr ? 0 : n->types;
}

}  // namespace trackevent
