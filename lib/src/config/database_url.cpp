// Which database to use, what kind it is, and how to show its address without the password.
#include "config/database_url.hpp"

#include "base/result.hpp"

#include <libpq-fe.h>

#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent {
namespace {

constexpr std::string_view kMask = "***";

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

/// Length of a URL scheme followed by "://" at the start of `s` (RFC 3986 scheme chars), else 0.
std::size_t scheme_length(std::string_view s) noexcept {
  if (s.empty() || std::isalpha(static_cast<unsigned char>(s[0])) == 0) return 0;
  std::size_t i = 1;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) != 0 || s[i] == '+' ||
                          s[i] == '-' || s[i] == '.')) {
    ++i;
  }
  return s.substr(i).starts_with("://") ? i : 0;
}

bool is_postgres_url(std::string_view s) noexcept {
  // libpq only recognises these two prefixes, in lowercase.
  return s.starts_with("postgresql://") || s.starts_with("postgres://");
}

/// True when `s` starts like a libpq key=value string: an identifier, optional blanks, '='.
bool looks_like_keyword_value(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) != 0 || s[i] == '_')) ++i;
  if (i == 0) return false;
  while (i < s.size() && is_space(s[i])) ++i;
  return i < s.size() && s[i] == '=';
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

/// libpq's parse errors quote tokens of the input; keep a quoted token only when it also appears
/// in the redacted input, so a password (or part of one) never gets through.
std::string scrub_quoted(std::string_view reason, std::string_view redacted) {
  std::string out;
  std::size_t i = 0;
  while (i < reason.size()) {
    const std::size_t open = reason.find('"', i);
    const std::size_t close = open == std::string_view::npos ? open : reason.find('"', open + 1);
    if (close == std::string_view::npos) {
      out.append(reason.substr(i));
      break;
    }
    const std::string_view token = reason.substr(open + 1, close - open - 1);
    out.append(reason.substr(i, open + 1 - i));
    out.append(redacted.find(token) != std::string_view::npos ? token : kMask);
    out.push_back('"');
    i = close + 1;
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && starts_with_ci(a, b);
}

std::string redact_url(std::string_view url, std::size_t scheme_len) {
  const std::size_t auth_begin = scheme_len + 3;
  const std::size_t query = url.find('?', auth_begin);
  std::string_view before_query = url.substr(0, query);
  std::string out;

  // Userinfo ends at the last '@' before the query: a password with a raw '/' or '@' in it
  // still gets masked (over-masking a malformed URL is harmless, leaking is not).
  const std::size_t at = before_query.rfind('@');
  if (at != std::string_view::npos && at >= auth_begin) {
    const std::string_view userinfo = before_query.substr(auth_begin, at - auth_begin);
    const std::size_t colon = userinfo.find(':');
    out.append(before_query.substr(0, auth_begin));
    if (colon == std::string_view::npos) {
      out.append(userinfo);
    } else {
      out.append(userinfo.substr(0, colon + 1)).append(kMask);
    }
    out.append(before_query.substr(at));
  } else {
    out.append(before_query);
  }
  if (query == std::string_view::npos) return out;

  // Query parameters: libpq percent-decodes keys, so "%70assword" is a password too.
  std::string_view params = url.substr(query + 1);
  out.push_back('?');
  bool first = true;
  while (true) {
    const std::size_t amp = params.find('&');
    const std::string_view param = params.substr(0, amp);
    if (!first) out.push_back('&');
    first = false;
    const std::size_t eq = param.find('=');
    const std::string key = percent_decode(param.substr(0, eq));
    if (eq != std::string_view::npos && iequals(key, "password")) {
      out.append(param.substr(0, eq + 1)).append(kMask);
    } else {
      out.append(param);
    }
    if (amp == std::string_view::npos) break;
    params.remove_prefix(amp + 1);
  }
  return out;
}

std::string redact_keyword_value(std::string_view s);

/// A value that is itself a URL or conninfo (dbname=postgresql://...) is redacted recursively.
std::string redact_any(std::string_view s) {
  const std::string_view t = trim(s);
  if (const std::size_t n = scheme_length(t); n > 0) return redact_url(s, n);
  if (looks_like_keyword_value(t)) return redact_keyword_value(s);
  return std::string(s);
}

// libpq's key=value grammar: blanks, keyword, blanks, '=', blanks, then either a single-quoted
// value (backslash escapes anything) or a bare value up to the next blank (backslash escapes).
std::string redact_keyword_value(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const std::size_t ws_begin = i;
    while (i < n && is_space(s[i])) ++i;
    out.append(s.substr(ws_begin, i - ws_begin));
    if (i >= n) break;
    const std::size_t key_begin = i;
    while (i < n && !is_space(s[i]) && s[i] != '=') ++i;
    const std::string_view key = s.substr(key_begin, i - key_begin);
    while (i < n && is_space(s[i])) ++i;
    if (i >= n || s[i] != '=') {
      // Malformed: keep what we understood, mask the rest in case it holds a secret.
      out.append(s.substr(key_begin, i - key_begin));
      if (i < n) out.append(kMask);
      break;
    }
    ++i;  // '='
    while (i < n && is_space(s[i])) ++i;
    out.append(s.substr(key_begin, i - key_begin));
    const std::size_t value_begin = i;
    bool closed = true;
    std::string value;
    if (i < n && s[i] == '\'') {
      closed = false;
      ++i;
      while (i < n) {
        if (s[i] == '\\' && i + 1 < n) {
          value.push_back(s[i + 1]);
          i += 2;
        } else if (s[i] == '\'') {
          ++i;
          closed = true;
          break;
        } else {
          value.push_back(s[i++]);
        }
      }
    } else {
      while (i < n && !is_space(s[i])) {
        if (s[i] == '\\' && i + 1 < n) {
          value.push_back(s[i + 1]);
          i += 2;
        } else {
          value.push_back(s[i++]);
        }
      }
    }
    const std::string_view raw = s.substr(value_begin, i - value_begin);
    if (iequals(key, "password") || !closed) {
      out.append(kMask);
    } else if (scheme_length(value) > 0 || looks_like_keyword_value(value)) {
      const std::string inner = redact_any(value);
      out.append(inner == value ? std::string(raw) : "'" + inner + "'");
    } else {
      out.append(raw);
    }
  }
  return out;
}

detail::Result<std::filesystem::path> home_directory() {
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home);
  }
  // cron and systemd units sometimes run without HOME; the passwd entry is what HOME would be.
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
  passwd pw{};
  passwd* result = nullptr;
  if (getpwuid_r(getuid(), &pw, buf.data(), buf.size(), &result) == 0 && result != nullptr &&
      result->pw_dir != nullptr && *result->pw_dir != '\0') {
    return std::filesystem::path(result->pw_dir);
  }
  return detail::Error{
      "cannot locate the embedded store: neither XDG_DATA_HOME nor HOME is set; pass --db"};
}

const char* nonempty_env(const char* name) noexcept {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

// Empty values (`--db ''`, `DATABASE_URL=`) count as unset, as most tools treat them.
DbTarget resolve_database(const std::optional<std::string>& cli_value) {
  return resolve_database(cli_value, UrlCheck::full);
}

DbTarget resolve_database(const std::optional<std::string>& cli_value, UrlCheck check) {
  if (cli_value && !trim(*cli_value).empty()) return parse_database_url(*cli_value, check);
  if (const char* v = nonempty_env("TRACKEVENT_DATABASE_URL")) return parse_database_url(v, check);
  if (const char* v = nonempty_env("DATABASE_URL")) return parse_database_url(v, check);

  // XDG: a relative XDG_DATA_HOME is invalid and must be ignored.
  std::filesystem::path base;
  const char* xdg = nonempty_env("XDG_DATA_HOME");
  if (xdg != nullptr && std::filesystem::path(xdg).is_absolute()) {
    base = xdg;
  } else {
    // Setup: a target that cannot be resolved is an error at start-up.
    auto home = home_directory();
    if (!home) throw std::runtime_error(home.error().message);
    base = *home / ".local" / "share";
  }
  return DbTarget{DbTarget::Kind::sqlite, (base / "trackevent" / "events.db").string()};
}

// Accepted forms (surrounding blanks are ignored):
//   postgres://... | postgresql://...    PostgreSQL URL, passed to libpq as is
//   key=value ...                         libpq conninfo string (validated with libpq's parser)
//   sqlite:PATH                           SQLite file PATH, verbatim (relative to the cwd if so)
//   sqlite://PATH                         the same PATH; so sqlite:///var/x.db is /var/x.db and
//                                         sqlite://x.db is ./x.db (the sqlx/dbmate convention)
DbTarget parse_database_url(std::string_view url) {
  return parse_database_url(url, UrlCheck::full);
}

DbTarget parse_database_url(std::string_view url, UrlCheck check) {
  const std::string_view s = trim(url);
  if (s.empty()) throw std::invalid_argument("empty database URL");

  if (starts_with_ci(s, "sqlite:")) {
    std::string_view path = s.substr(7);
    if (path.starts_with("//")) path.remove_prefix(2);
    if (path.empty()) {
      throw std::invalid_argument("database URL '" + std::string(s) +
                                  "' has no file path (expected sqlite:PATH)");
    }
    return DbTarget{DbTarget::Kind::sqlite, std::string(path)};
  }

  const std::size_t scheme = scheme_length(s);
  if (scheme > 0 && !is_postgres_url(s)) {
    throw std::invalid_argument("unsupported database URL scheme '" +
                                std::string(s.substr(0, scheme)) + "' in '" + redact_conninfo(s) +
                                "' (expected postgres://, postgresql://, sqlite:PATH or a libpq "
                                "key=value string)");
  }
  if (scheme == 0 && !looks_like_keyword_value(s)) {
    throw std::invalid_argument("unrecognised database URL '" + redact_conninfo(s) +
                                "' (expected postgres://, postgresql://, sqlite:PATH or a libpq "
                                "key=value string)");
  }

  if (check == UrlCheck::form) return DbTarget{DbTarget::Kind::postgres, std::string(s)};

  // Let libpq itself reject typos (unknown keywords, bad quoting, malformed URLs) up front. Its
  // message can quote the whole URL, so only our redacted copy of the input is shown.
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(std::string(s).c_str(), &err);
  if (opts == nullptr) {
    std::string reason = err != nullptr ? err : "out of memory";
    if (err != nullptr) PQfreemem(err);
    while (!reason.empty() && is_space(reason.back())) reason.pop_back();
    const std::string redacted = redact_conninfo(s);
    throw std::invalid_argument("invalid PostgreSQL connection string '" + redacted +
                                "': " + scrub_quoted(reason, redacted));
  }
  PQconninfoFree(opts);
  return DbTarget{DbTarget::Kind::postgres, std::string(s)};
}

std::string redact_conninfo(std::string_view conninfo) {
  const std::string_view t = trim(conninfo);
  if (starts_with_ci(t, "sqlite:")) return std::string(conninfo);
  return redact_any(conninfo);
}

}  // namespace trackevent
