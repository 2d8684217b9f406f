#pragma once
// Small pieces of JSON text scanning shared by the line parser (input/parse.cpp) and the metadata
// schema check (input/schema_check.cpp), which both read JSON text in place.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace trackevent::detail {

inline bool is_json_ws(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Characters that can continue a number token (grammar is checked afterwards).
inline bool is_number_char(char c) noexcept {
  return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// The value of the four hex digits at `pos`, or -1.
inline int hex4(std::string_view s, std::size_t pos) noexcept {
  if (pos + 4 > s.size()) return -1;
  int v = 0;
  for (std::size_t i = pos; i < pos + 4; ++i) {
    const char c = s[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

// Bytes a JSON string cannot hold as they are: the quote, the backslash and control bytes.
inline constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
inline constexpr std::uint64_t kHighs = 0x8080808080808080ULL;

// High bit set in each byte of the result that is '"', '\\' or below 0x20. Exact for the lowest
// flagged byte (borrows only run upwards, from a byte that does match), which is all we use.
constexpr std::uint64_t special_bytes(std::uint64_t w) noexcept {
  const std::uint64_t q = w ^ (kOnes * '"');
  const std::uint64_t b = w ^ (kOnes * '\\');
  // Per byte, (x - 1) & ~x has its high bit set when x is 0 (and only then, for the lowest one).
  const std::uint64_t zero_q = (q - kOnes) & ~q;
  const std::uint64_t zero_b = (b - kOnes) & ~b;
  const std::uint64_t below = (w - kOnes * 0x20) & ~w;
  return (zero_q | zero_b | below) & kHighs;
}

// Offset of the first '"', '\\' or control byte at or after `i`, or `n` when there is none.
// Only these need a closer look in a string, so the rest is skipped 8 bytes at a time.
inline std::size_t find_special(const char* data, std::size_t i, std::size_t n) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    while (i < n) {
      std::uint64_t w = 0;  // past the end: zero bytes, which count as special
      if (n - i >= 8) {
        std::memcpy(&w, data + i, 8);
      } else {
        std::memcpy(&w, data + i, n - i);
      }
      if (const std::uint64_t m = special_bytes(w); m != 0) {
        return std::min(n, i + static_cast<std::size_t>(std::countr_zero(m)) / 8);
      }
      i += 8;
    }
    return n;
  } else {
    for (; i < n; ++i) {
      const auto c = static_cast<unsigned char>(data[i]);
      if (c == '"' || c == '\\' || c < 0x20) break;
    }
    return i;
  }
}

// The most bytes of a value a message quotes.
inline constexpr std::size_t kQuoteMax = 64;

// A value quoted inside a message: cut to at most kQuoteMax bytes on a UTF-8 boundary ("..." marks
// the cut), control bytes written as \xHH so that a log line stays one line, and, with
// `escape_quotes`, the quote character and the backslash escaped as in JSON.
inline std::string quote_text(std::string_view s, char quote_char, bool escape_quotes) {
  std::string out(1, quote_char);
  std::size_t n = std::min(s.size(), kQuoteMax);
  while (n < s.size() && n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (escape_quotes && (c == static_cast<unsigned char>(quote_char) || c == '\\')) {
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
  out += quote_char;
  return out;
}

}  // namespace trackevent::detail
