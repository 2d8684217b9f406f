#include "input/parse.hpp"

#include "trackevent/event.hpp"
#include "trackevent/uuid.hpp"

#include "base/result.hpp"
#include "input/catalog.hpp"
#include "input/json_text.hpp"
#include "log/log.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

namespace trackevent {

namespace {

namespace od = simdjson::ondemand;
using detail::Error;
using detail::ok;
using detail::Result;

using detail::kQuoteMax;
// PostgreSQL's numeric (which jsonb uses for numbers) holds at most 131072 digits before the
// decimal point and 16383 after it; jsonb refuses the whole value otherwise (checked on PG 15).
constexpr long kPgMaxIntegerDigits = 131072;
constexpr long kPgMaxScale = 16383;
// Beyond this a number does not even fit a double; called out separately for ids.
constexpr long kHugeExponent = 308;

using detail::find_special;
using detail::hex4;
using detail::is_digit;
using detail::is_json_ws;
using detail::is_number_char;

std::string_view trim_right(std::string_view s) noexcept {
  while (!s.empty() && is_json_ws(s.back())) s.remove_suffix(1);
  return s;
}

// A value quoted inside a reason: 'like this', cut and escaped by detail::quote_text.
std::string quote(std::string_view s) { return detail::quote_text(s, '\'', false); }

std::string byte_pos(std::size_t offset) { return std::to_string(offset + 1); }

// Offset of the first invalid UTF-8 byte, or npos. Only run once a fast check has failed.
std::size_t find_invalid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // beyond U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// Checks a \uXXXX escape at `pos` (pointing at the backslash) for what jsonb refuses. Gives the
// length of the escape (12 for a surrogate pair).
Result<std::size_t> check_unicode_escape(std::string_view s, std::size_t pos, std::size_t base) {
  const int cp = hex4(s, pos + 2);
  if (cp == 0) {
    return Error{"\\u0000 escape at byte " + byte_pos(base + pos) +
                 " (PostgreSQL jsonb cannot store NUL characters)"};
  }
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (pos + 12 <= s.size() && s[pos + 6] == '\\' && s[pos + 7] == 'u') {
      const int low = hex4(s, pos + 8);
      if (low >= 0xDC00 && low <= 0xDFFF) return std::size_t{12};
    }
    return Error{"lone surrogate escape \\" + std::string(s.substr(pos + 1, 5)) + " at byte " +
                 byte_pos(base + pos) + " (a high surrogate must be followed by a low one)"};
  }
  if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return Error{"lone surrogate escape \\" + std::string(s.substr(pos + 1, 5)) + " at byte " +
                 byte_pos(base + pos) + " (a low surrogate without a high one before it)"};
  }
  return std::size_t{6};
}

// Line-wide scan for escapes jsonb refuses, whatever field they are in. Malformed escapes are left
// for the JSON parser to report.
Result<> check_line_escapes(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const void* hit = std::memchr(s.data() + i, '\\', s.size() - i);
    if (hit == nullptr) break;
    i = static_cast<std::size_t>(static_cast<const char*>(hit) - s.data());
    if (i + 1 >= s.size()) break;
    if (s[i + 1] != 'u' || hex4(s, i + 2) < 0) {
      i += 2;
      continue;
    }
    const Result<std::size_t> consumed = check_unicode_escape(s, i, 0);
    if (!consumed) return consumed.error();
    i += *consumed;
  }
  return ok();
}

enum class NumberKind { kInvalid, kInteger, kFraction };

// Validates JSON number grammar; reports whether it has a fraction/exponent and the exponent.
NumberKind classify_number(std::string_view s, long& exponent) noexcept {
  exponent = 0;
  std::size_t i = 0;
  const std::size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n) return NumberKind::kInvalid;
  if (s[i] == '0') {
    ++i;
  } else if (is_digit(s[i])) {
    while (i < n && is_digit(s[i])) ++i;
  } else {
    return NumberKind::kInvalid;
  }
  bool fraction = false;
  if (i < n && s[i] == '.') {
    ++i;
    if (i >= n || !is_digit(s[i])) return NumberKind::kInvalid;
    while (i < n && is_digit(s[i])) ++i;
    fraction = true;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
    if (i >= n || !is_digit(s[i])) return NumberKind::kInvalid;
    long e = 0;
    while (i < n && is_digit(s[i])) {
      if (e < 1'000'000'000) e = e * 10 + (s[i] - '0');
      ++i;
    }
    exponent = negative ? -e : e;
    fraction = true;
  }
  if (i != n) return NumberKind::kInvalid;
  return fraction ? NumberKind::kFraction : NumberKind::kInteger;
}

// Whether a grammatically valid JSON number fits PostgreSQL's numeric type.
bool fits_pg_numeric(std::string_view tok) noexcept {
  std::size_t i = tok.front() == '-' ? 1 : 0;
  const std::size_t int_start = i;
  while (i < tok.size() && is_digit(tok[i])) ++i;
  const std::string_view int_part = tok.substr(int_start, i - int_start);
  std::string_view frac_part;
  if (i < tok.size() && tok[i] == '.') {
    const std::size_t start = ++i;
    while (i < tok.size() && is_digit(tok[i])) ++i;
    frac_part = tok.substr(start, i - start);
  }
  long exponent = 0;
  (void)classify_number(tok, exponent);
  const long scale = static_cast<long>(frac_part.size()) - exponent;
  if (scale > kPgMaxScale) return false;
  // Position of the most significant digit relative to the decimal point; zero has none.
  long msd;
  if (int_part != "0") {
    msd = static_cast<long>(int_part.size());
  } else {
    const std::size_t nz = frac_part.find_first_not_of('0');
    if (nz == std::string_view::npos) return true;
    msd = -static_cast<long>(nz);
  }
  return msd + exponent <= kPgMaxIntegerDigits;
}

// Validates `text` as a JSON object, enforcing the metadata limits. Iterative, so hostile nesting
// cannot overflow the stack. Writes nothing: most metadata has no whitespace to strip, and then
// the text is copied in one go. The scan itself builds no strings: the reason is only made once
// something is wrong. Inside, each step returns false once it has recorded that reason (fail()),
// as a Result per token would cost the hot loop; run() hands it out as an Error.
class MetadataScanner {
 public:
  MetadataScanner(std::string_view text, std::size_t base, const Limits& limits)
      : s_(text), base_(base), limits_(limits) {}

  // Fails with the reason (without the "metadata: " prefix) when `text` is not valid metadata.
  Result<> run() {
    if (scan()) return ok();
    return Error{std::move(reason_)};
  }

  // Whether whitespace between tokens (not around the whole object) was seen.
  [[nodiscard]] bool has_inner_whitespace() const noexcept { return inner_ws_; }

 private:
  static constexpr std::size_t kInlineDepth = 64;

  bool scan() {
    skip_ws();
    if (pos_ >= s_.size() || s_[pos_] != '{') return fail("expected an object");
    // The line's object is depth 1, so metadata's own object is depth 2.
    // A limit below 2 would refuse even the empty metadata object that a line without
    // metadata gets by default; clamping keeps parse and validate_event in agreement.
    const std::size_t max_depth = std::max<std::size_t>(limits_.max_depth, 2);
    enum class State { kValue, kValueOrEnd, kKey, kKeyOrEnd, kAfterValue };
    State state = State::kValue;
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size()) {
        if (state == State::kAfterValue && depth_ == 0) break;
        return fail("invalid JSON: unexpected end");
      }
      const char c = s_[pos_];
      switch (state) {
        case State::kValueOrEnd:
          if (c == ']') {
            pop();
            ++pos_;
            state = State::kAfterValue;
            break;
          }
          [[fallthrough]];
        case State::kValue:
          if (c == '"') {
            if (!scan_string()) return false;
            state = State::kAfterValue;
          } else if (c == '-' || is_digit(c)) {
            if (!scan_number()) return false;
            state = State::kAfterValue;
          } else if (c == '{' || c == '[') {
            if (depth_ + 2 > max_depth) {
              return fail("nested deeper than " + std::to_string(max_depth) +
                          " levels (--max-depth)");
            }
            push(c == '{');
            ++pos_;
            state = c == '{' ? State::kKeyOrEnd : State::kValueOrEnd;
          } else if (c == 't' || c == 'f' || c == 'n') {
            if (!scan_literal(c)) return false;
            state = State::kAfterValue;
          } else {
            return fail(unexpected(c));
          }
          break;
        case State::kKeyOrEnd:
          if (c == '}') {
            pop();
            ++pos_;
            state = State::kAfterValue;
            break;
          }
          [[fallthrough]];
        case State::kKey:
          if (c != '"') return fail(unexpected(c, "a key"));
          if (++keys_ > limits_.max_keys) {
            return fail("more than " + std::to_string(limits_.max_keys) + " keys (--max-keys)");
          }
          if (!scan_string()) return false;
          skip_ws();
          if (pos_ >= s_.size() || s_[pos_] != ':') {
            return fail(pos_ >= s_.size() ? "invalid JSON: unexpected end"
                                          : unexpected(s_[pos_], "':'"));
          }
          ++pos_;
          state = State::kValue;
          break;
        case State::kAfterValue:
          if (depth_ == 0) return fail(unexpected(c, "the end of the object"));
          if (c == ',') {
            ++pos_;
            state = top_is_object() ? State::kKey : State::kValue;
          } else if ((c == '}' && top_is_object()) || (c == ']' && !top_is_object())) {
            pop();
            ++pos_;
          } else {
            return fail(unexpected(c, top_is_object() ? "',' or '}'" : "',' or ']'"));
          }
          break;
      }
    }
    return true;
  }

  bool fail(std::string reason) {
    reason_ = std::move(reason);
    return false;
  }

  // The open containers: one bit per level (1 for an object) in the first 64 levels, a byte per
  // level beyond them (only reachable with a --max-depth above 65).
  void push(bool object) {
    if (depth_ < kInlineDepth) {
      const std::uint64_t bit = std::uint64_t{1} << depth_;
      kinds_ = object ? (kinds_ | bit) : (kinds_ & ~bit);
    } else {
      deep_.push_back(object ? '{' : '[');
    }
    ++depth_;
  }
  void pop() noexcept {
    --depth_;
    if (depth_ >= kInlineDepth) deep_.pop_back();
  }
  [[nodiscard]] bool top_is_object() const noexcept {
    const std::size_t top = depth_ - 1;
    if (top < kInlineDepth) return ((kinds_ >> top) & 1U) != 0;
    return deep_.back() == '{';
  }

  void skip_ws() noexcept {
    if (pos_ >= s_.size() || !is_json_ws(s_[pos_])) return;
    while (pos_ < s_.size() && is_json_ws(s_[pos_])) ++pos_;
    if (depth_ != 0) inner_ws_ = true;
  }

  std::string at() const { return " at byte " + byte_pos(base_ + pos_); }

  std::string unexpected(char c, const char* wanted = nullptr) const {
    std::string r = "invalid JSON: unexpected " + quote(std::string_view(&c, 1)) + at();
    if (wanted != nullptr) r += std::string(" (expected ") + wanted + ")";
    return r;
  }

  bool scan_string() {
    ++pos_;
    const char* const data = s_.data();
    const std::size_t n = s_.size();
    for (;;) {
      pos_ = find_special(data, pos_, n);
      if (pos_ >= n) return fail("invalid JSON: unterminated string" + at());
      const char c = data[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c != '\\') {
        return fail("invalid JSON: control character " + quote(std::string_view(data + pos_, 1)) +
                    " in a string must be escaped" + at());
      }
      if (pos_ + 1 >= n) return fail("invalid JSON: unterminated string" + at());
      const char e = data[pos_ + 1];
      if (e == 'u') {
        if (hex4(s_, pos_ + 2) < 0) return fail("invalid JSON: bad \\u escape" + at());
        Result<std::size_t> consumed = check_unicode_escape(s_, pos_, base_);
        if (!consumed) return fail(std::move(consumed).error().message);
        pos_ += *consumed;
      } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                 e == 'r' || e == 't') {
        pos_ += 2;
      } else {
        return fail("invalid JSON: bad escape " + quote(s_.substr(pos_, 2)) + at());
      }
    }
  }

  bool scan_number() {
    const std::size_t start = pos_;
    const std::size_t n = s_.size();
    // Fast path: a plain integer ("-"? digits, no leading zero) ending the token. Any such
    // integer with at most kPgMaxIntegerDigits digits fits numeric.
    {
      std::size_t i = start;
      if (s_[i] == '-') ++i;
      const std::size_t digits_start = i;
      while (i < n && is_digit(s_[i])) ++i;
      const std::size_t digits = i - digits_start;
      if (digits != 0 && (digits == 1 || s_[digits_start] != '0') &&
          digits <= static_cast<std::size_t>(kPgMaxIntegerDigits) &&
          (i == n || !is_number_char(s_[i]))) {
        pos_ = i;
        return true;
      }
    }
    while (pos_ < n && is_number_char(s_[pos_])) ++pos_;
    const std::string_view tok = s_.substr(start, pos_ - start);
    long exponent = 0;
    if (classify_number(tok, exponent) == NumberKind::kInvalid) {
      return fail("invalid JSON: bad number " + quote(tok) + " at byte " + byte_pos(base_ + start));
    }
    if (!fits_pg_numeric(tok)) {
      return fail("number " + quote(tok) + " at byte " + byte_pos(base_ + start) +
                  " is out of range for PostgreSQL (at most 131072 digits before the decimal "
                  "point and 16383 after)");
    }
    return true;
  }

  bool scan_literal(char first) {
    const std::string_view lit = first == 't' ? "true" : first == 'f' ? "false" : "null";
    if (s_.compare(pos_, lit.size(), lit) == 0) {
      const std::size_t end = pos_ + lit.size();
      // "truex" is one bad token, not a literal followed by junk.
      if (end >= s_.size() || !is_alnum(s_[end])) {
        pos_ = end;
        return true;
      }
    }
    return fail("invalid JSON: bad literal" + at());
  }

  static bool is_alnum(char ch) noexcept {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) return is_digit(ch) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    return std::isalnum(c) != 0;  // what a non-C locale makes of the byte
  }

  std::string_view s_;
  std::size_t base_;
  const Limits& limits_;
  std::size_t pos_ = 0;
  std::size_t keys_ = 0;
  std::size_t depth_ = 0;  // open containers
  std::uint64_t kinds_ = 0;
  std::string deep_;
  std::string reason_;
  bool inner_ws_ = false;
};

// Copies already validated JSON without whitespace outside strings.
void compact_json(std::string_view s, std::string& out) {
  out.clear();
  out.reserve(s.size());
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      out += c;
      if (c == '\\') {
        out += s[++i];
      } else if (c == '"') {
        in_string = false;
      }
    } else if (!is_json_ws(c)) {
      out += c;
      in_string = c == '"';
    }
  }
}

// Valid metadata text compacted (whitespace outside strings dropped) and held to
// --max-metadata-bytes; `whitespace` says whether there is any to drop.
Result<std::string> compacted(std::string_view raw, bool whitespace, const Limits& limits) {
  std::string out;
  if (whitespace) {
    compact_json(raw, out);
  } else {
    std::size_t first = 0;
    while (first < raw.size() && is_json_ws(raw[first])) ++first;
    out.assign(trim_right(raw.substr(first)));
  }
  if (out.size() > limits.max_metadata_bytes) {
    return Error{"metadata: " + std::to_string(out.size()) + " bytes (limit " +
                 std::to_string(limits.max_metadata_bytes) + ", --max-metadata-bytes)"};
  }
  return out;
}

// Validates metadata text and gives it compacted; the reason starts with "metadata: ".
Result<std::string> compact_metadata(std::string_view raw, std::size_t base, const Limits& limits) {
  MetadataScanner scanner(raw, base, limits);
  if (Result<> valid = scanner.run(); !valid) {
    return Error{"metadata: " + std::move(valid).error().message};
  }
  return compacted(raw, scanner.has_inner_whitespace(), limits);
}

const char* type_name(od::json_type t) noexcept {
  switch (t) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a boolean";
    case od::json_type::null:
      return "null";
  }
  return "an unknown value";
}

std::string json_error(simdjson::error_code e) {
  switch (e) {
    case simdjson::TAPE_ERROR:
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
      return "invalid JSON: broken structure (missing or extra comma, brace, bracket or quote)";
    case simdjson::UNCLOSED_STRING:
      return "invalid JSON: unterminated string";
    case simdjson::STRING_ERROR:
      return "invalid JSON: bad string escape";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      return "invalid JSON: bad literal (expected true, false or null)";
    case simdjson::NUMBER_ERROR:
      return "invalid JSON: bad number";
    case simdjson::DEPTH_ERROR:
      return "invalid JSON: nested too deeply";
    case simdjson::UNESCAPED_CHARS:
      return "invalid JSON: a control character in a string must be escaped";
    case simdjson::EMPTY:
      return "empty line";
    default:
      return std::string("invalid JSON: ") + simdjson::error_message(e);
  }
}

// Reads org_id / user_id: the id, or nullopt for an allowed null.
Result<std::optional<std::int64_t>> read_id(od::value& v, const char* field, bool allow_null) {
  using Id = std::optional<std::int64_t>;
  // Built only on the error paths: the happy path makes no strings.
  const auto f = [field] { return std::string(field) + ": "; };
  od::json_type t;
  if (auto e = v.type().get(t); e) return Error{f() + "" + json_error(e)};
  switch (t) {
    case od::json_type::number:
      break;
    case od::json_type::null: {
      bool is_null = false;
      if (v.is_null().get(is_null) || !is_null)
        return Error{f() + "" + json_error(simdjson::N_ATOM_ERROR)};
      if (allow_null) return Id{};
      return Error{f() + "expected an integer >= 1, got null"};
    }
    case od::json_type::string: {
      std::string_view sv;
      std::string hint;
      if (!v.get_string().get(sv)) {
        long exp = 0;
        if (!sv.empty() && classify_number(sv, exp) == NumberKind::kInteger) {
          hint = " (write " + std::string(sv.substr(0, kQuoteMax)) + " without quotes)";
        }
      }
      return Error{f() + "expected an integer, got a string" + hint};
    }
    default:
      return Error{f() + "expected an integer, got " + type_name(t)};
  }
  const std::string_view tok = trim_right(v.raw_json_token());
  // Fast path: 1 to 18 digits without a leading zero is an integer >= 1 that fits 64 bits.
  if (!tok.empty() && tok.size() <= 18 && tok.front() != '0' &&
      std::all_of(tok.begin(), tok.end(), is_digit)) {
    std::int64_t value = 0;
    for (const char c : tok) value = value * 10 + (c - '0');
    return Id{value};
  }
  long exponent = 0;
  switch (classify_number(tok, exponent)) {
    case NumberKind::kInvalid:
      return Error{f() + "invalid number " + quote(tok)};
    case NumberKind::kFraction:
      if (exponent > kHugeExponent || exponent < -kHugeExponent) {
        return Error{f() + "expected an integer, got a number with a huge exponent " + quote(tok)};
      }
      return Error{f() + "expected an integer, got a number with a fraction/exponent " +
                   quote(tok)};
    case NumberKind::kInteger:
      break;
  }
  const bool negative = tok.front() == '-';
  // Accumulate negatively so INT64_MIN is representable; overflow is "out of range".
  std::int64_t value = 0;
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  for (std::size_t i = negative ? 1 : 0; i < tok.size(); ++i) {
    const int d = tok[i] - '0';
    if (value < (kMin + d) / 10) {
      return Error{f() + "integer " + quote(tok) +
                   " is out of range (64-bit: -9223372036854775808 to 9223372036854775807)"};
    }
    value = value * 10 - d;
  }
  if (!negative) {
    if (value == kMin) {
      return Error{f() + "integer " + quote(tok) +
                   " is out of range (64-bit: -9223372036854775808 to 9223372036854775807)"};
    }
    value = -value;
  }
  if (value < 1) return Error{f() + "expected an integer >= 1, got " + std::string(tok)};
  return Id{value};
}

// Reads a string value for `field`.
Result<std::string_view> read_string(od::value& v, const char* field, const char* wanted) {
  od::json_type t;
  if (auto e = v.type().get(t); e) return Error{std::string(field) + ": " + json_error(e)};
  if (t != od::json_type::string) {
    return Error{std::string(field) + ": expected " + wanted + ", got " + type_name(t)};
  }
  std::string_view out;
  if (auto e = v.get_string().get(out); e) {
    return Error{std::string(field) + ": " + json_error(e)};
  }
  return out;
}

std::string name_reason(std::string_view name) {
  if (name.size() > 200) {
    return "event_name: " + quote(name) + " is " + std::to_string(name.size()) +
           " bytes long (limit 200)";
  }
  return "event_name: " + quote(name) +
         " is not a valid event name (expected lowercase dotted words, like 'user.signed_in')";
}

std::string catalog_reason(std::string_view name, const Catalog& catalog) {
  std::string r = "event_name: " + quote(name) + " is not in the catalog";
  if (auto suggestion = catalog.closest(name)) r += "; did you mean " + quote(*suggestion) + "?";
  return r;
}

struct LineParser {
  od::parser parser;
  std::unique_ptr<char[]> buffer;
  std::size_t capacity = 0;
};

thread_local LineParser t_line_parser;

enum Field : unsigned {
  kOrgId = 1U << 0,
  kUserId = 1U << 1,
  kEventName = 1U << 2,
  kMetadata = 1U << 3,
  kOccurredAt = 1U << 4,
  kEventId = 1U << 5,
};

// The six keys a line may have, with the field each names.
constexpr std::array<std::pair<std::string_view, Field>, 6> kFieldNames{{
    {"org_id", kOrgId},
    {"user_id", kUserId},
    {"event_name", kEventName},
    {"metadata", kMetadata},
    {"occurred_at", kOccurredAt},
    {"event_id", kEventId},
}};

// The field a key names when its raw text (escapes not yet decoded) is exactly one of ours;
// Field{0} means "decode the key and look again". The buffer is padded, so the compare may read
// past a shorter key.
Field field_of_raw(const od::raw_json_string& key) noexcept {
  for (const auto& [name, field] : kFieldNames) {
    if (key == name) return field;
  }
  return Field{0};
}

std::string_view name_of(Field f) noexcept {
  for (const auto& [name, field] : kFieldNames) {
    if (field == f) return name;
  }
  return {};
}

Field field_of(std::string_view key) noexcept {
  for (const auto& [name, field] : kFieldNames) {
    if (key == name) return field;
  }
  return Field{0};
}

Result<> check_identity(const Event& event) {
  if (!is_valid_event_name(event.event_name)) return Error{name_reason(event.event_name)};
  if (event.org_id < 1) {
    return Error{"org_id: expected an integer >= 1, got " + std::to_string(event.org_id)};
  }
  if (event.user_id && *event.user_id < 1) {
    return Error{"user_id: expected an integer >= 1 or none, got " +
                 std::to_string(*event.user_id)};
  }
  return ok();
}

Result<> check_event(const Event& event, const Limits& limits) {
  if (Result<> valid = check_identity(event); !valid) return valid;
  const std::string_view meta = event.metadata;
  if (meta.size() > limits.max_metadata_bytes) {
    return Error{"metadata: " + std::to_string(meta.size()) + " bytes (limit " +
                 std::to_string(limits.max_metadata_bytes) + ", --max-metadata-bytes)"};
  }
  if (!simdjson::validate_utf8(meta.data(), meta.size())) {
    const std::size_t at = find_invalid_utf8(meta);
    return Error{"metadata: invalid UTF-8 at byte " +
                 byte_pos(at == std::string_view::npos ? 0 : at)};
  }
  if (Result<std::string> compact = compact_metadata(meta, 0, limits); !compact) {
    return std::move(compact).error();
  }
  return ok();
}

ParseResult parse_line(std::string_view line, std::int64_t now_us, const ParseOptions& options) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const Limits& limits = options.limits;
  if (line.size() > limits.max_line_bytes) {
    return Rejection{"line too long: " + std::to_string(line.size()) + " bytes (limit " +
                     std::to_string(limits.max_line_bytes) + ", --max-line-bytes)"};
  }
  std::size_t first = 0;
  while (first < line.size() &&
         (is_json_ws(line[first]) || line[first] == '\f' || line[first] == '\v')) {
    ++first;
  }
  if (first == line.size()) return Rejection{"empty line"};
  if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
    return Rejection{"NUL byte at byte " + byte_pos(static_cast<std::size_t>(
                                               static_cast<const char*>(nul) - line.data()))};
  }
  if (std::memchr(line.data(), '\\', line.size()) != nullptr) {
    if (Result<> r = check_line_escapes(line); !r) return Rejection{std::move(r).error().message};
  }

  LineParser& lp = t_line_parser;
  const std::size_t need = line.size() + simdjson::SIMDJSON_PADDING;
  if (lp.capacity < need) {
    std::size_t cap = lp.capacity == 0 ? 4096 : lp.capacity;
    while (cap < need) cap *= 2;
    lp.buffer = std::make_unique<char[]>(cap);
    lp.capacity = cap;
  }
  std::memcpy(lp.buffer.get(), line.data(), line.size());
  std::memset(lp.buffer.get() + line.size(), 0, simdjson::SIMDJSON_PADDING);
  const char* const base = lp.buffer.get();

  od::document doc;
  if (auto e = lp.parser.iterate(base, line.size(), lp.capacity).get(doc); e) {
    if (e == simdjson::UTF8_ERROR) {
      const std::size_t at = find_invalid_utf8(line);
      if (at != std::string_view::npos) return Rejection{"invalid UTF-8 at byte " + byte_pos(at)};
      return Rejection{"invalid UTF-8"};
    }
    return Rejection{json_error(e)};
  }
  od::json_type top;
  if (auto e = doc.type().get(top); e) return Rejection{json_error(e)};
  if (top != od::json_type::object) {
    return Rejection{std::string("expected a JSON object, got ") + type_name(top)};
  }
  od::object obj;
  if (auto e = doc.get_object().get(obj); e) return Rejection{json_error(e)};

  Event ev;
  unsigned seen = 0;
  std::optional<std::int64_t> org_id;
  std::optional<std::int64_t> user_id;
  bool have_occurred_at = false;
  bool have_event_id = false;
  const CatalogEntry* entry = nullptr;  // the event's catalog entry, when there is a catalog
  // Whether the line's metadata must conform to the entry's schema, and whether it was found to.
  const auto checks_schema = [&options](const CatalogEntry* e) {
    return e != nullptr && e->schema && options.catalog_mode == CatalogMode::reject;
  };
  bool schema_checked = false;
  for (auto field_result : obj) {
    od::field field;
    if (auto e = std::move(field_result).get(field); e) return Rejection{json_error(e)};
    // Keys are nearly always written plainly: match the raw text, and decode only otherwise.
    Field which = field_of_raw(field.key());
    std::string_view key = name_of(which);
    if (which == 0) {
      if (auto e = field.unescaped_key().get(key); e) return Rejection{json_error(e)};
      which = field_of(key);
      if (which == 0) return Rejection{"unknown key " + quote(key)};
    }
    if ((seen & which) != 0) return Rejection{"duplicate key " + quote(key)};
    seen |= which;
    od::value v = field.value();
    switch (which) {
      case kOrgId: {
        auto id = read_id(v, "org_id", false);
        if (!id) return Rejection{std::move(id).error().message};
        org_id = *id;
        break;
      }
      case kUserId: {
        auto id = read_id(v, "user_id", true);
        if (!id) return Rejection{std::move(id).error().message};
        user_id = *id;
        break;
      }
      case kEventName: {
        auto read = read_string(v, "event_name", "a string");
        if (!read) return Rejection{std::move(read).error().message};
        const std::string_view name = *read;
        if (!is_valid_event_name(name)) return Rejection{name_reason(name)};
        if (options.catalog != nullptr) {
          entry = options.catalog->find(name);
          if (entry == nullptr) return Rejection{catalog_reason(name, *options.catalog)};
        }
        ev.event_name.assign(name);
        break;
      }
      case kMetadata: {
        od::json_type t;
        if (auto e = v.type().get(t); e) return Rejection{"metadata: " + json_error(e)};
        if (t != od::json_type::object) {
          return Rejection{std::string("metadata: expected an object, got ") + type_name(t)};
        }
        od::object m;
        std::string_view raw;
        if (auto e = v.get_object().get(m); e) return Rejection{"metadata: " + json_error(e)};
        if (auto e = m.raw_json().get(raw); e) return Rejection{"metadata: " + json_error(e)};
        // With the event's schema known (its name came first, as it usually does), one walk
        // both judges the text and checks it; when that walk is in any doubt, the parser's scan
        // and the check below run as they would without it.
        bool whitespace = false;
        schema_checked =
            checks_schema(entry) &&
            entry->schema->conforms_as_written(raw, limits.max_depth, limits.max_keys, whitespace);
        const auto offset = static_cast<std::size_t>(raw.data() - base);
        auto compact = schema_checked ? compacted(raw, whitespace, limits)
                                      : compact_metadata(raw, offset, limits);
        if (!compact) return Rejection{std::move(compact).error().message};
        ev.metadata = std::move(compact).value();
        break;
      }
      case kOccurredAt: {
        auto read = read_string(v, "occurred_at", "an RFC 3339 timestamp string");
        if (!read) return Rejection{std::move(read).error().message};
        const std::string_view text = *read;
        const auto us = parse_rfc3339(text);
        if (!us) {
          return Rejection{
              "occurred_at: expected an RFC 3339 timestamp like "
              "'2026-11-28T12:00:00Z', got " +
              quote(text)};
        }
        ev.occurred_at_us = *us;
        have_occurred_at = true;
        break;
      }
      case kEventId: {
        auto read = read_string(v, "event_id", "a UUID string");
        if (!read) return Rejection{std::move(read).error().message};
        const std::string_view text = *read;
        const auto id = Uuid::parse(text);
        if (!id) {
          return Rejection{
              "event_id: expected a UUID like '01890a5d-ac96-774b-bcce-b302099a8057', "
              "got " +
              quote(text)};
        }
        ev.event_id = *id;
        have_event_id = true;
        break;
      }
    }
  }
  // Anything after the object ("{...} {...}", "{...}}") is an error, not ignored.
  const char* rest = nullptr;
  if (!doc.current_location().get(rest)) {
    return Rejection{"invalid JSON: unexpected " + quote(std::string_view(rest, 1)) +
                     " after the object at byte " +
                     byte_pos(static_cast<std::size_t>(rest - base))};
  }
  if (!org_id) return Rejection{"org_id: missing (required, an integer >= 1)"};
  if ((seen & kEventName) == 0) return Rejection{"event_name: missing (required)"};
  ev.org_id = *org_id;
  ev.user_id = user_id;
  if (have_event_id && !have_occurred_at) {
    // "Stored once": the key is (org_id, occurred_at, event_id), so a second delivery of the line
    // must carry the same occurred_at. A UUIDv7 holds its own time (48-bit Unix milliseconds);
    // any other id would be stamped anew on each run and stored twice.
    if (ev.event_id.version() != 7 || (ev.event_id.bytes[8] & 0xc0) != 0x80) {
      return Rejection{
          "event_id is not a UUIDv7; give occurred_at with it, so a second delivery is "
          "recognised as the same event"};
    }
    std::int64_t unix_ms = 0;
    for (int i = 0; i < 6; ++i) unix_ms = (unix_ms << 8) | ev.event_id.bytes[i];
    ev.occurred_at_us = unix_ms * 1000;
    have_occurred_at = true;
  }
  if (!have_occurred_at) ev.occurred_at_us = now_us;
  if (!have_event_id) ev.event_id = make_uuid_v7(now_us / 1000);
  if (checks_schema(entry) && !schema_checked) {
    if (auto violation = entry->schema->check(ev.metadata)) {
      return Rejection{std::move(violation->message)};
    }
  }
  return ev;
}

}  // namespace

ParseResult parse_event_line(std::string_view line, std::int64_t now_us,
                             const ParseOptions& options) noexcept {
  // simdjson is used through error codes; only a misuse of its API would throw.
  try {
    return parse_line(line, now_us, options);
  } catch (const std::bad_alloc&) {
    return Rejection{"out of memory"};  // fits the small-string buffer: no allocation
  } catch (const simdjson::simdjson_error&) {
    return Rejection{"internal error"};
  }
}

// The validators' public form (parse.hpp) is a reason, empty when valid.
std::string validate_event_identity(const Event& event) {
  Result<> valid = check_identity(event);
  return valid ? std::string() : std::move(valid).error().message;
}

std::string validate_event(const Event& event, const Limits& limits) {
  Result<> valid = check_event(event, limits);
  return valid ? std::string() : std::move(valid).error().message;
}

std::shared_ptr<const Plan> load_plan(const std::filesystem::path& path, CatalogMode mode) {
  if (path.empty()) return nullptr;
  auto plan = std::make_shared<Plan>();
  plan->catalog = std::make_shared<const Catalog>(Catalog::load(path));
  plan->mode = mode;
  return plan;
}

std::string check_plan(const Event& event, const Plan& plan) {
  if (!plan.catalog->contains(event.event_name)) {
    return catalog_reason(event.event_name, *plan.catalog);
  }
  if (plan.mode == CatalogMode::off) return {};
  auto violation = plan.catalog->check(event.event_name, event.metadata);
  if (!violation) return {};
  if (plan.mode == CatalogMode::reject) return std::move(violation->message);
  // One warning a second per event name and rule; the rest are counted as suppressed.
  log::write_limited(log::Level::warn, "catalog." + event.event_name + " " + violation->rule,
                     "metadata breaks the catalog's schema (kept: catalog mode warn)",
                     {{"source", "track"},
                      {"event_name", event.event_name},
                      {"rule", violation->rule},
                      {"err", violation->message}},
                     1);
  return {};
}

}  // namespace trackevent
