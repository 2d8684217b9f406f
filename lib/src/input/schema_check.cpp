// The check of metadata text against a compiled schema (input/schema_node.hpp).
#include "input/json_text.hpp"
#include "input/schema.hpp"
#include "input/schema_node.hpp"

#include <regex.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

namespace trackevent {

namespace {

using detail::hex4;
using detail::is_digit;
using detail::is_json_ws;
using detail::is_number_char;
using detail::json_number;
using detail::type_list;
using Node = MetadataSchema::Node;

constexpr std::size_t kEnumShown = 8;
constexpr std::size_t kSuggestDistance = 3;

// --- checking -----------------------------------------------------------------------------------
//
// The check walks the metadata text once, in place: no DOM, no copy. The text is normally compact
// JSON the line parser (or validate_event) has already validated, but the walk does not rely on
// that for safety: it stays inside the text whatever it holds, and reports what it cannot read as
// "metadata: invalid JSON".

// One step of the path to a value: a key, or an array index. Steps live on the walk's stack, each
// pointing at its parent, so that descending costs nothing; the path is only spelled out when a
// violation is reported.
struct Step {
  const Step* parent = nullptr;
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;
};

enum class Kind { kString, kNumber, kTrue, kFalse, kNull, kObject, kArray };

// A string as it appears in the text: the bytes between the quotes, escapes not yet decoded.
// Scalars rather than a string_view member: the walk writes a token and reads it back at once,
// and a 16-byte load of two fields just written separately stalls the CPU (store forwarding).
struct StringToken {
  const char* data = nullptr;
  std::uint32_t size = 0;
  bool escaped = false;
  [[nodiscard]] std::string_view raw() const noexcept { return {data, size}; }
};

// A number: its text, its value, and whether it is an integer in JSON Schema's sense (3.0 is).
struct NumberToken {
  std::string_view text;
  long double value = 0;
  bool integral = false;
  bool fraction_syntax = false;  // written with '.', 'e' or 'E'
};

// A string value quoted as JSON writes it ("a\"b"), cut and escaped by detail::quote_text.
std::string quote_json_string(std::string_view s) { return detail::quote_text(s, '"', true); }

std::string number_text(double d) {
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), d);
  return std::string(buf.data(), r.ptr);
}

// As in JSON Schema, a number without a fractional part is an integer, whatever its size.
bool is_integral(double d) noexcept { return std::isfinite(d) && std::floor(d) == d; }

std::string bound_text(long double b) {
  if (b == static_cast<long double>(static_cast<std::int64_t>(b)) && b >= -9.2e18L &&
      b <= 9.2e18L) {
    return std::to_string(static_cast<std::int64_t>(b));
  }
  return number_text(static_cast<double>(b));
}

// A number as a message shows it: integers as written (without a sign of zero), fractions as the
// shortest text of their double, and beyond a double's range as written.
std::string number_shown(const NumberToken& n) {
  if (!n.fraction_syntax) {
    if (n.text.size() <= 20) {
      if (n.value >= -9.2e18L && n.value <= 9.2e18L) {
        return std::to_string(static_cast<std::int64_t>(n.value));
      }
      if (n.value >= 0 && n.value <= 1.8e19L) {
        return std::to_string(static_cast<std::uint64_t>(n.value));
      }
    }
    return std::string(n.text);
  }
  const auto d = static_cast<double>(n.value);
  if (std::isfinite(d) && (d != 0 || n.value == 0)) return number_text(d);
  return std::string(n.text);
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A \\u escape at `i` (its backslash) in `r`: the code point (a surrogate pair joined, a lone
// surrogate as U+FFFD, as the line parser refuses those) and the bytes it takes (6, or 12 for a
// pair); length 0 when four hex digits do not follow.
struct UnicodeEscape {
  std::uint32_t cp = 0;
  std::size_t length = 0;
};

UnicodeEscape read_unicode_escape(std::string_view r, std::size_t i) noexcept {
  const int cp = hex4(r, i + 2);
  if (cp < 0) return {};
  if (cp >= 0xD800 && cp <= 0xDBFF && i + 7 < r.size() && r[i + 6] == '\\' && r[i + 7] == 'u') {
    const int low = hex4(r, i + 8);
    if (low >= 0xDC00 && low <= 0xDFFF) {
      return {static_cast<std::uint32_t>(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)), 12};
    }
  }
  if (cp >= 0xD800 && cp <= 0xDFFF) return {0xFFFD, 6};
  return {static_cast<std::uint32_t>(cp), 6};
}

// The characters (code points) of a string as the text writes it, counted without decoding: an
// escape is one character, a surrogate pair two escapes for one, and a lone surrogate one (as
// decode() makes it U+FFFD).
std::size_t code_points(const StringToken& s) noexcept {
  const std::string_view r = s.raw();
  if (!s.escaped) {
    // Count the bytes that do not continue a UTF-8 sequence (10xxxxxx), 8 at a time.
    std::size_t continuation = 0;
    std::size_t i = 0;
    for (; i + 8 <= r.size(); i += 8) {
      std::uint64_t w = 0;
      std::memcpy(&w, r.data() + i, 8);
      continuation +=
          static_cast<std::size_t>(std::popcount(w & ~(w << 1) & 0x8080808080808080ULL));
    }
    for (; i < r.size(); ++i) continuation += (static_cast<unsigned char>(r[i]) & 0xC0) == 0x80;
    return r.size() - continuation;
  }
  std::size_t n = 0;
  for (std::size_t i = 0; i < r.size();) {
    const auto c = static_cast<unsigned char>(r[i]);
    if (c == '\\') {
      const std::size_t length =
          i + 1 < r.size() && r[i + 1] == 'u' ? read_unicode_escape(r, i).length : 2;
      i += length != 0 ? length : 6;
      ++n;
      continue;
    }
    n += (c & 0xC0) != 0x80 ? 1 : 0;
    ++i;
  }
  return n;
}

// The string's value with its escapes decoded into `out` (a view of the text itself when it has
// none). False for an escape JSON does not have.
bool decode_escapes(const StringToken& s, std::string& out, std::string_view& value) {
  out.clear();
  const std::string_view r = s.raw();
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (r[i] != '\\') {
      out += r[i];
      continue;
    }
    if (++i >= r.size()) return false;
    switch (r[i]) {
      case '"':
      case '\\':
      case '/':
        out += r[i];
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        const UnicodeEscape e = read_unicode_escape(r, i - 1);
        if (e.length == 0) return false;
        append_utf8(out, e.cp);
        i += e.length - 2;  // to its last byte
        break;
      }
      default:
        return false;
    }
  }
  value = out;
  return true;
}

// The string's value, returned rather than written through a reference so that it can stay in
// registers; `ok` turns false for an escape JSON does not have.
inline std::string_view decode(const StringToken& s, std::string& out, bool& ok) {
  if (!s.escaped) return s.raw();
  std::string_view value;
  ok = decode_escapes(s, out, value);
  return value;
}

// The pattern's answer through regexec, for the patterns ByteRegex leaves to it. The subject is
// copied into `buf` to end it with a NUL: regexec reads a C string, and REG_STARTEND, which would
// spare the copy, is not honoured by the sanitizers' regexec interceptor, which reads up to a NUL
// past the value's end in the line. A NUL inside ends the subject, as it does for ByteRegex
// (metadata cannot hold one: \u0000 is refused).
bool matches(const regex_t& re, std::string_view s, std::string& buf) {
  buf.assign(s.data(), s.size());
  return regexec(&re, buf.c_str(), 0, nullptr, 0) == 0;
}

// JSON values equal as JSON Schema's enum compares them: numbers by value (3 == 3.0).
bool json_equal(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) return json_number(a) == json_number(b);
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!json_equal(a[i], b[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, value] : a.items()) {
      const auto it = b.find(key);
      if (it == b.end() || !json_equal(value, *it)) return false;
    }
    return true;
  }
  return a == b;
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

class Walker {
 public:
  explicit Walker(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  // A strict walk (MetadataSchema::conforms_as_written) also judges the text as the line parser
  // would, within its depth and key limits, and gives up (as an unreadable value) on anything it
  // is not sure the parser accepts: the parser then has its say. Deeper than kStrictDepth it gives
  // up too, which bounds skip_strict's recursion.
  static constexpr std::size_t kStrictDepth = 64;
  void make_strict(std::size_t max_depth, std::size_t max_keys) noexcept {
    strict_ = true;
    max_depth_ = std::max<std::size_t>(max_depth, 2);  // as the parser clamps it
    max_keys_ = max_keys;
  }
  [[nodiscard]] bool saw_whitespace() const noexcept { return whitespace_; }

  std::optional<Violation> run(const Node& root) {
    skip_ws();
    if (p_ >= end_ || *p_ != '{') {
      invalid("expected an object");
    } else if (!check_value(root, nullptr)) {
      skip_ws();
      if (p_ == end_) return std::nullopt;
      invalid("unexpected text after the object");
    }
    return std::move(found_);
  }

 private:
  // --- reading ----------------------------------------------------------------------------------

  void skip_ws() noexcept {
    if (p_ >= end_ || !is_json_ws(*p_)) return;
    whitespace_ = true;
    while (p_ < end_ && is_json_ws(*p_)) ++p_;
  }

  // One more container opens (strict walk): false when the parser's --max-depth would refuse it
  // (its line object is depth 1, so metadata's own object is depth 2), or when it is too deep for
  // the strict walk. open_ is dropped by the Open guard that each container holds.
  struct Open {
    explicit Open(Walker& w) noexcept
        : w_(w), ok_(!w.strict_ || (w.open_ + 2 <= w.max_depth_ && w.open_ < kStrictDepth)) {
      ++w_.open_;
    }
    ~Open() { --w_.open_; }
    Open(const Open&) = delete;
    Open& operator=(const Open&) = delete;
    [[nodiscard]] bool ok() const noexcept { return ok_; }

   private:
    Walker& w_;
    bool ok_;
  };

  // One more key (strict walk): false past --max-keys, counted over all of the metadata.
  bool count_key() noexcept { return !strict_ || ++keys_ <= max_keys_; }

  bool consume(char c) noexcept {
    if (p_ < end_ && *p_ == c) {  // compact text: no whitespace to skip
      ++p_;
      return true;
    }
    skip_ws();
    if (p_ >= end_ || *p_ != c) return false;
    ++p_;
    return true;
  }

  // At a '"': reads the string and moves past its closing quote, eight bytes at a time to the
  // next quote, backslash or control byte (detail::find_special).
  bool read_string(StringToken& out) noexcept {
    const char* const start = ++p_;
    const auto n = static_cast<std::size_t>(end_ - start);
    std::size_t i = 0;
    bool escaped = false;
    for (;;) {
      i = detail::find_special(start, i, n);
      if (i >= n) return false;
      if (start[i] == '"') break;
      if (start[i] == '\\') {
        escaped = true;
        if (n - i < 2) return false;
        if (strict_) {
          const std::size_t length = strict_escape(std::string_view(start, n), i);
          if (length == 0) return false;
          i += length;
          continue;
        }
        i += 2;  // past the escaped character, which may be a quote
      } else {
        if (strict_) return false;  // a control byte, which the parser refuses
        ++i;                        // passed over: the text was judged before
      }
    }
    out.data = start;
    out.size = static_cast<std::uint32_t>(i);
    out.escaped = escaped;
    p_ = start + i + 1;
    return true;
  }

  // The bytes of the escape at `i` (its backslash) when the parser takes it as it is: 2, or 6 or
  // 12 for \\u (a surrogate pair, as read_unicode_escape pairs them). 0 for anything else,
  // \\u0000 and lone surrogates included.
  static std::size_t strict_escape(std::string_view r, std::size_t i) noexcept {
    switch (r[i + 1]) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        return 2;
      case 'u': {
        const int cp = hex4(r, i + 2);
        const std::size_t length = read_unicode_escape(r, i).length;
        const bool lone_surrogate = cp >= 0xD800 && cp <= 0xDFFF && length != 12;
        return cp <= 0 || lone_surrogate ? 0 : length;
      }
      default:
        return 0;
    }
  }

  bool read_number(NumberToken& out) noexcept {
    if (fast_number(out)) {
      if (!strict_) return true;
      // JSON has no leading zeros ("01"); the fast path reads no number the parser's numeric
      // range could refuse (at most 19 significant digits and a power of ten within 22).
      const std::string_view t = out.text.front() == '-' ? out.text.substr(1) : out.text;
      return !(t.size() > 1 && t[0] == '0' && is_digit(t[1]));
    }
    if (strict_) return false;
    const char* const start = p_;
    bool fraction = false;
    while (p_ < end_ && is_number_char(*p_)) {
      fraction = fraction || *p_ == '.' || *p_ == 'e' || *p_ == 'E';
      ++p_;
    }
    out.text = std::string_view(start, static_cast<std::size_t>(p_ - start));
    out.fraction_syntax = fraction;
    if (out.text.empty() || out.text.front() == '+') return false;
    return slow_number(out);
  }

  // Most numbers: at most 19 significant digits and a small power of ten. Then one IEEE
  // operation on exact operands gives the correctly rounded double (Clinger's fast path), the
  // same value from_chars gives. Reads at p_ and moves past the number only when it applies.
  bool fast_number(NumberToken& out) noexcept {
    static constexpr std::array<double, 23> kPow10{1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char* c = p_;
    const bool negative = c < end_ && *c == '-';
    if (negative) ++c;
    std::uint64_t mantissa = 0;
    int digits = 0;  // significant digits taken (leading zeros are not)
    long exponent = 0;
    const char* const int_start = c;
    for (; c < end_ && is_digit(*c) && digits < 19; ++c) {
      mantissa = mantissa * 10 + static_cast<std::uint64_t>(*c - '0');
      digits += mantissa != 0 ? 1 : 0;
    }
    if (c == int_start) return false;
    bool fraction = false;
    if (c < end_ && *c == '.') {
      fraction = true;
      const char* const frac_start = ++c;
      for (; c < end_ && is_digit(*c) && digits < 19; ++c) {
        mantissa = mantissa * 10 + static_cast<std::uint64_t>(*c - '0');
        digits += mantissa != 0 ? 1 : 0;
        --exponent;
      }
      if (c == frac_start) return false;
    }
    if (c < end_ && (*c == 'e' || *c == 'E')) {
      fraction = true;
      ++c;
      bool neg_exp = false;
      if (c < end_ && (*c == '+' || *c == '-')) neg_exp = *c++ == '-';
      long e = 0;
      const char* const exp_start = c;
      for (; c < end_ && is_digit(*c) && e < 100000; ++c) e = e * 10 + (*c - '0');
      if (c == exp_start) return false;
      exponent += neg_exp ? -e : e;
    }
    // More digits than the fast path takes, or text that is not a number: the slow path decides.
    if (c < end_ && is_number_char(*c)) return false;
    double value = 0;
    if (!fraction) {
      if (mantissa > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return false;
      }
      const auto v = static_cast<std::int64_t>(mantissa);
      out.value = static_cast<long double>(negative ? -v : v);
      out.integral = true;
    } else {
      if (mantissa > (std::uint64_t{1} << 53) || exponent < -22 || exponent > 22) return false;
      value = static_cast<double>(mantissa);
      value = exponent < 0 ? value / kPow10[static_cast<std::size_t>(-exponent)]
                           : value * kPow10[static_cast<std::size_t>(exponent)];
      if (negative) value = -value;
      out.value = static_cast<long double>(value);
      out.integral = is_integral(value);
    }
    out.text = std::string_view(p_, static_cast<std::size_t>(c - p_));
    out.fraction_syntax = fraction;
    p_ = c;
    return true;
  }

  // The rest: from_chars, and long double beyond int64 or a double's range (jsonb keeps such
  // numbers exactly).
  static bool slow_number(NumberToken& out) noexcept {
    const char* const first = out.text.data();
    const char* const last = first + out.text.size();
    if (!out.fraction_syntax) {
      std::int64_t i = 0;
      if (const auto r = std::from_chars(first, last, i); r.ec == std::errc() && r.ptr == last) {
        out.value = static_cast<long double>(i);
        out.integral = true;
        return true;
      }
    } else {
      double d = 0;
      if (const auto r = std::from_chars(first, last, d); r.ec == std::errc() && r.ptr == last) {
        out.value = static_cast<long double>(d);
        out.integral = is_integral(d);
        return true;
      }
    }
    long double ld = 0;
    const auto r = std::from_chars(first, last, ld);
    if (r.ptr != last || (r.ec != std::errc() && r.ec != std::errc::result_out_of_range)) {
      return false;
    }
    out.value = ld;
    out.integral = !out.fraction_syntax || (std::isfinite(ld) && std::floor(ld) == ld);
    return true;
  }

  bool read_literal(std::string_view word) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0) {
      return false;
    }
    p_ += word.size();
    // Strict: "truex" is one bad token to the parser; only what can follow a value is taken.
    return !strict_ || p_ == end_ || is_json_ws(*p_) || *p_ == ',' || *p_ == '}' || *p_ == ']';
  }

  // skip_value for the strict walk: every token read and judged, keys and depth counted.
  bool skip_strict() noexcept {
    skip_ws();
    if (p_ >= end_) return false;
    switch (*p_) {
      case '"': {
        StringToken s;
        return read_string(s);
      }
      case '{':
      case '[': {
        const bool object = *p_ == '{';
        const Open open(*this);
        if (!open.ok()) return false;
        ++p_;
        const char close = object ? '}' : ']';
        if (consume(close)) return true;
        for (;;) {
          if (object) {
            skip_ws();
            StringToken key;
            if (p_ >= end_ || *p_ != '"' || !count_key() || !read_string(key) || !consume(':')) {
              return false;
            }
          }
          if (!skip_strict()) return false;
          if (consume(close)) return true;
          if (!consume(',')) return false;
        }
      }
      case 't':
        return read_literal("true");
      case 'f':
        return read_literal("false");
      case 'n':
        return read_literal("null");
      default: {
        NumberToken n;
        return read_number(n);
      }
    }
  }

  // Moves past one value without looking into it.
  bool skip_value() noexcept {
    if (strict_) return skip_strict();
    skip_ws();
    if (p_ >= end_) return false;
    const char c = *p_;
    if (c == '"') {
      StringToken s;
      return read_string(s);
    }
    if (c == '{' || c == '[') {
      std::size_t depth = 0;
      while (p_ < end_) {
        const char d = *p_;
        if (d == '"') {
          StringToken s;
          if (!read_string(s)) return false;
          continue;
        }
        if (d == '{' || d == '[') {
          ++depth;
        } else if (d == '}' || d == ']') {
          if (--depth == 0) {
            ++p_;
            return true;
          }
        }
        ++p_;
      }
      return false;
    }
    if (c == 't') return read_literal("true");
    if (c == 'f') return read_literal("false");
    if (c == 'n') return read_literal("null");
    NumberToken n;
    return read_number(n);
  }

  // --- reporting --------------------------------------------------------------------------------
  // Each check returns true once it has found something to report, which is then in found_.

  bool invalid(std::string_view what) {
    bad_ = true;
    found_ = Violation{"metadata: json", "metadata: invalid JSON: " + std::string(what)};
    return true;
  }
  bool unreadable() { return invalid("unreadable value"); }

  static std::string where(const Step* at, bool for_rule) {
    std::vector<const Step*> steps;
    for (; at != nullptr; at = at->parent) steps.push_back(at);
    std::string out = "metadata";
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      const Step& s = **it;
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

  bool report(const Step* at, std::string_view keyword, const std::string& what) {
    found_ =
        Violation{where(at, true) + ": " + std::string(keyword), where(at, false) + ": " + what};
    return true;
  }

  // "string \"12\"", "integer 5", "object": what the value at `at` is, for "got ...".
  std::string describe(Kind kind, const char* at) {
    const char* const saved = p_;
    p_ = at;
    std::string out;
    switch (kind) {
      case Kind::kString: {
        StringToken s;
        std::string buf;
        bool ok = read_string(s);
        const std::string_view v = ok ? decode(s, buf, ok) : std::string_view();
        if (ok) out = "string " + quote_json_string(v);
        break;
      }
      case Kind::kNumber: {
        NumberToken n;
        if (read_number(n)) {
          out = (n.integral && !n.fraction_syntax ? "integer " : "number ") + number_shown(n);
        }
        break;
      }
      case Kind::kTrue:
        out = "boolean true";
        break;
      case Kind::kFalse:
        out = "boolean false";
        break;
      case Kind::kNull:
        out = "null";
        break;
      case Kind::kArray:
        out = "array";
        break;
      case Kind::kObject:
        out = "object";
        break;
    }
    p_ = saved;
    return out.empty() ? "a value" : out;
  }

  // The value without its type word ("12" for integer 12), for enum and bound messages.
  std::string value_text(Kind kind, const char* at) {
    const std::string d = describe(kind, at);
    const auto space = d.find(' ');
    return space == std::string::npos ? d : d.substr(space + 1);
  }

  bool type_violation(const Step* path, const Node& n, Kind kind, const char* at) {
    return report(path, "type", "expected " + type_list(n.types) + ", got " + describe(kind, at));
  }

  bool enum_violation(const Step* path, const Node& n, Kind kind, const char* at) {
    const auto& values = *n.enum_values;
    std::string list;
    for (std::size_t i = 0; i < values.size() && i < kEnumShown; ++i) {
      if (i > 0) list += ", ";
      list += values[i].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    if (values.size() > kEnumShown) list += ", ...";
    return report(path, "enum", "expected one of " + list + ", got " + value_text(kind, at));
  }

  // Whether the array or object at `at` (already read up to p_) equals one of the enum's values.
  [[nodiscard]] bool enum_has_composite(const Node& n, const char* at) const {
    const auto parsed = nlohmann::json::parse(at, p_, nullptr, /*allow_exceptions=*/false,
                                              /*ignore_comments=*/false);
    if (parsed.is_discarded()) return false;
    const auto& values = *n.enum_values;
    return std::any_of(values.begin(), values.end(),
                       [&](const nlohmann::json& j) { return json_equal(parsed, j); });
  }

  // --- checking ---------------------------------------------------------------------------------

  bool check_value(const Node& n, const Step* path) {
    skip_ws();
    if (p_ >= end_) return invalid("unexpected end");
    const char* const at = p_;
    switch (*p_) {
      case '"':
        return check_string(n, path, at);
      case '{':
      case '[': {
        const bool object = *p_ == '{';
        const Kind kind = object ? Kind::kObject : Kind::kArray;
        if (n.types != 0 && (n.types & (object ? kTypeObject : kTypeArray)) == 0) {
          return type_violation(path, n, kind, at);
        }
        if ((n.rules & Node::kEnum) != 0) {
          if (!skip_value()) return unreadable();
          if (!enum_has_composite(n, at)) return enum_violation(path, n, kind, at);
          p_ = at;
        }
        return object ? check_object(n, path) : check_array(n, path);
      }
      case 't':
      case 'f':
      case 'n': {
        const bool is_null = *p_ == 'n';
        const bool truth = *p_ == 't';
        if (!read_literal(is_null ? "null" : truth ? "true" : "false")) return unreadable();
        const Kind kind = is_null ? Kind::kNull : truth ? Kind::kTrue : Kind::kFalse;
        if (n.types != 0 && (n.types & (is_null ? kTypeNull : kTypeBoolean)) == 0) {
          return type_violation(path, n, kind, at);
        }
        if ((n.rules & Node::kEnum) != 0 && !(is_null ? n.enum_null
                                              : truth ? n.enum_true
                                                      : n.enum_false)) {
          return enum_violation(path, n, kind, at);
        }
        return false;
      }
      default:
        return check_number(n, path, at);
    }
  }

  // The order of the rules is the order of the report: type, enum, length, pattern.
  bool check_string(const Node& n, const Step* path, const char* at) {
    StringToken s;
    if (!read_string(s)) return unreadable();
    if (n.types != 0 && (n.types & kTypeString) == 0) {
      return type_violation(path, n, Kind::kString, at);
    }
    if ((n.rules & Node::kStringRules) == 0) return false;
    std::string_view value;
    bool decoded = false;
    bool ok = true;
    if ((n.rules & Node::kEnum) != 0) {
      value = decode(s, scratch_, ok);
      if (!ok) return unreadable();
      decoded = true;
      if (!n.enum_has_string(value)) {
        return enum_violation(path, n, Kind::kString, at);
      }
    }
    // A string has between size/4 and size characters (UTF-8), and an escape is one character
    // written with 2 to 12 bytes: count them only when the bytes alone cannot settle the bounds.
    const bool short_enough = !n.max_length || s.size <= *n.max_length;
    const bool long_enough = !n.min_length || s.size / 12 >= *n.min_length;
    if (!short_enough || !long_enough) {
      const std::size_t len = code_points(s);
      if (n.min_length && len < *n.min_length) {
        return report(path, "minLength",
                      "expected at least " + std::to_string(*n.min_length) + " characters, got " +
                          std::to_string(len));
      }
      if (n.max_length && len > *n.max_length) {
        return report(path, "maxLength",
                      "expected at most " + std::to_string(*n.max_length) + " characters, got " +
                          std::to_string(len));
      }
    }
    if (n.pattern) {
      if (!decoded) value = decode(s, scratch_, ok);
      if (!ok) return unreadable();
      if (!(n.dfa ? n.dfa->search(value) : matches(*n.pattern, value, subject_))) {
        return report(
            path, "pattern",
            "expected a string matching " + n.pattern_text + ", got " + quote_json_string(value));
      }
    }
    return false;
  }

  bool check_number(const Node& n, const Step* path, const char* at) {
    NumberToken num;
    if (!read_number(num)) return unreadable();
    const unsigned bits = num.integral ? (kTypeInteger | kTypeNumber) : kTypeNumber;
    if (n.types != 0 && (n.types & bits) == 0) return type_violation(path, n, Kind::kNumber, at);
    if ((n.rules & Node::kNumberRules) == 0) return false;
    if ((n.rules & Node::kEnum) != 0 && std::find(n.enum_numbers.begin(), n.enum_numbers.end(),
                                                  num.value) == n.enum_numbers.end()) {
      return enum_violation(path, n, Kind::kNumber, at);
    }
    if (n.minimum && num.value < *n.minimum) {
      return report(
          path, "minimum",
          "expected >= " + bound_text(*n.minimum) + ", got " + value_text(Kind::kNumber, at));
    }
    if (n.maximum && num.value > *n.maximum) {
      return report(
          path, "maximum",
          "expected <= " + bound_text(*n.maximum) + ", got " + value_text(Kind::kNumber, at));
    }
    return false;
  }

  bool check_array(const Node& n, const Step* path) {
    if ((n.rules & Node::kItems) == 0) return skip_value() ? false : unreadable();
    const Open open(*this);
    if (!open.ok()) return unreadable();
    ++p_;  // '['
    if (consume(']')) return false;
    for (std::size_t i = 0;; ++i) {
      const Step step{path, {}, i, true};
      if (check_value(*n.items, &step)) return true;
      if (consume(']')) return false;
      if (!consume(',')) return invalid("expected ',' or ']' in an array");
    }
  }

  // Keys are checked in the order they come; a missing required key is reported before any of
  // them (the first missing one, in the order `required` lists them), so the walk goes on to the
  // end of the object once a key has failed, to learn which required keys are there.
  bool check_object(const Node& n, const Step* path) {
    const char* const start = p_;
    const Open open(*this);
    if (!open.ok()) return unreadable();
    ++p_;  // '{'
    // Without properties, additionalProperties and required, no key has a rule.
    const bool keys_have_rules = (n.rules & Node::kKeyRules) != 0;
    const std::size_t required = n.required.size();
    std::uint64_t seen = 0;  // bit i: required[i] is present (for the first 64)
    bool failed = false;
    std::string key_buf;
    if (!consume('}')) {
      for (;;) {
        skip_ws();
        StringToken key;
        if (p_ >= end_ || *p_ != '"' || !read_string(key)) return invalid("expected a key");
        if (!count_key()) return unreadable();
        bool ok = true;
        const std::string_view name = decode(key, key_buf, ok);
        if (!ok) return unreadable();
        if (!consume(':')) return invalid("expected ':' after a key");
        const Node::Named* named = required != 0 || keys_have_rules ? n.lookup(name) : nullptr;
        if (named != nullptr && named->required >= 0 && named->required < 64) {
          seen |= std::uint64_t{1} << named->required;
        }
        const Node* child = named != nullptr ? named->child : nullptr;
        if (child == nullptr && n.additional) child = n.additional.get();
        const Step step{path, name, 0, false};
        if (failed || !keys_have_rules || (child == nullptr && n.additional_allowed)) {
          if (!skip_value()) return unreadable();
        } else if (child == nullptr) {
          std::string what = "unknown key";
          if (auto near = suggest(n, name)) what += " (did you mean " + *near + "?)";
          failed = report(&step, "additionalProperties", what);
          if (!skip_value()) return unreadable();
        } else {
          skip_ws();
          const char* const value_at = p_;
          failed = check_value(*child, &step);
          if (bad_) return true;
          if (failed) {
            // The walk stopped inside the value: go past it as a whole.
            p_ = value_at;
            if (!skip_value()) return unreadable();
          }
        }
        if (failed && required == 0) return true;
        if (consume('}')) break;
        if (!consume(',')) return invalid("expected ',' or '}' in an object");
      }
    }
    for (std::size_t i = 0; i < required; ++i) {
      const bool present =
          i < 64 ? ((seen >> i) & 1U) != 0 : has_key(start, n.required[i], key_buf);
      if (!present) {
        return report(path, "required", "missing required key \"" + n.required[i] + "\"");
      }
    }
    return failed;
  }

  // Whether the object at `start` has the key `name` (for required keys past the 64th).
  bool has_key(const char* start, std::string_view name, std::string& buf) {
    const char* const saved = p_;
    const std::size_t saved_keys = keys_;  // a second look at keys already counted
    p_ = start + 1;
    bool found = false;
    if (!consume('}')) {
      for (;;) {
        skip_ws();
        StringToken key;
        if (p_ >= end_ || *p_ != '"' || !read_string(key)) break;
        bool ok = true;
        const std::string_view decoded = decode(key, buf, ok);
        if (!ok || !consume(':')) break;
        if (decoded == name) {
          found = true;
          break;
        }
        if (!skip_value() || !consume(',')) break;
      }
    }
    p_ = saved;
    keys_ = saved_keys;
    return found;
  }

  const char* p_;
  const char* end_;
  bool bad_ = false;
  std::optional<Violation> found_;
  std::string scratch_;
  std::string subject_;  // the NUL-ended copy regexec reads
  bool whitespace_ = false;
  bool strict_ = false;
  std::size_t max_depth_ = 0;
  std::size_t max_keys_ = 0;
  std::size_t open_ = 0;  // containers open around p_
  std::size_t keys_ = 0;  // keys read so far
};

}  // namespace

bool MetadataSchema::conforms_as_written(std::string_view raw, std::size_t max_depth,
                                         std::size_t max_keys, bool& whitespace) const noexcept {
  try {
    Walker w(raw);
    w.make_strict(max_depth, max_keys);
    if (w.run(*root_)) return false;
    whitespace = w.saw_whitespace();
    return true;
  } catch (const std::bad_alloc&) {
    return false;
  }
}

std::optional<Violation> MetadataSchema::check(std::string_view metadata) const noexcept {
  try {
    return Walker(metadata).run(*root_);
  } catch (const std::bad_alloc&) {
    return Violation{"metadata: out of memory", "metadata: out of memory while checking"};
  }
}

}  // namespace trackevent
