#pragma once
/// A deterministic generator of realistic analytics events, shared by trackevent_gen_events (which
/// writes files for the harness) and bench_parse (which parses the same lines in memory).
///
/// Everything comes from one splitmix64 stream with a fixed seed, so the n-th event is identical on
/// every run, every machine and in every output format.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace trackevent::bench {

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for test data, and fully defined
/// by its 64-bit state.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n) (n > 0); the tiny modulo bias is irrelevant here.
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  /// Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

/// The 20 event names of the generated data: 20 of the 22 names in schema/events.json, the
/// project's example catalog, so the data also loads with `--catalog schema/events.json`.
inline constexpr std::array<std::string_view, 20> kEventNames = {
    "user.signed_in",         "user.signed_out",  "user.signed_up",  "user.password_reset",
    "dataset.uploaded",       "dataset.deleted",  "dataset.shared",  "user.invited",
    "backup.started",         "backup.completed", "backup.failed",   "export.started",
    "export.completed",       "export.failed",    "invoice.created", "invoice.paid",
    "invoice.payment_failed", "org.plan_changed", "api_key.created", "report.generated",
};

/// One generated event; `metadata` is compact JSON text (an object) and `occurred_at` RFC 3339.
struct GenEvent {
  std::string event_id;
  std::int64_t org_id = 0;
  std::int64_t user_id = 0;  ///< 0 means JSON null / SQL NULL
  std::string_view event_name;
  std::string metadata;
  std::string occurred_at;
  bool reversed_keys = false;  ///< write the JSON keys in reverse order (parsers must not care)
};

class EventGenerator {
 public:
  static constexpr std::uint64_t kSeed = 0x7472616B6576656EULL;  // "trakeven"
  static constexpr int kOrgs = 100;
  static constexpr int kUsers = 10000;
  static constexpr std::size_t kMinMetadata = 50;
  static constexpr std::size_t kMaxMetadata = 300;
  /// 2026-11-01T00:00:00Z; events spread over the 30 days after it.
  static constexpr std::int64_t kStartUnixS = 1793491200;
  static constexpr std::int64_t kSpanUs = 30LL * 86400 * 1000000;

  /// `total` sets the time axis: event i lands near start + i * span / total, with up to ten
  /// minutes of jitter, as in a real log (roughly ordered, not strictly). `uuid_version` is 7
  /// (time-ordered, what trackevent clients make) or 4 (random).
  explicit EventGenerator(std::uint64_t total, int uuid_version = 7)
      : rng_(kSeed), total_(total == 0 ? 1 : total), uuid_version_(uuid_version) {
    // Zipf-like organisation sizes: weight 1/k^1.1, so the largest org has ~20% of the events and
    // the smallest a few hundredths of a percent.
    double sum = 0;
    org_cdf_.reserve(kOrgs);
    for (int k = 1; k <= kOrgs; ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k), 1.1);
      org_cdf_.push_back(sum);
    }
    for (double& c : org_cdf_) c /= sum;
  }

  /// Fills `ev` with event number `index_` and advances.
  void next(GenEvent& ev) {
    const std::uint64_t i = index_++;
    const double u = rng_.unit();
    const auto org_rank = static_cast<std::int64_t>(
        std::lower_bound(org_cdf_.begin(), org_cdf_.end(), u) - org_cdf_.begin());
    ev.org_id = 1000 + std::min<std::int64_t>(org_rank, kOrgs - 1) * 7;
    ev.user_id = rng_.below(100) < 3 ? 0 : 1 + static_cast<std::int64_t>(rng_.below(kUsers));
    ev.event_name = kEventNames[pick_name()];
    ev.reversed_keys = rng_.below(10) == 0;

    const std::int64_t base = static_cast<std::int64_t>(
        static_cast<double>(i) / static_cast<double>(total_) * static_cast<double>(kSpanUs));
    // Up to ten minutes late: a log is roughly, not strictly, in time order.
    const auto jitter = static_cast<std::int64_t>(rng_.below(600'000'000));
    const std::int64_t us =
        std::min<std::int64_t>(base + jitter, kSpanUs - 1) + kStartUnixS * 1000000;
    format_time(us, ev.occurred_at);
    format_uuid(i, us / 1000, ev.event_id);
    make_metadata(ev.metadata);
  }

  [[nodiscard]] std::uint64_t index() const { return index_; }

 private:
  // Names are skewed too: sign-ins, reports and uploads make half of the events.
  std::size_t pick_name() {
    const std::uint64_t r = rng_.below(100);
    if (r < 25) return 0;                             // user.signed_in
    if (r < 40) return 19;                            // report.generated
    if (r < 50) return 4;                             // dataset.uploaded
    return static_cast<std::size_t>(rng_.below(20));  // the rest, uniformly
  }

  /// A UUID whose low 62 bits are a bijection of the event index, so every line's id is distinct by
  /// construction (not just with high probability). v7: 48-bit ms timestamp first, like the ids
  /// trackevent makes; v4: random high bits.
  void format_uuid(std::uint64_t index, std::int64_t unix_ms, std::string& out) {
    constexpr std::uint64_t kMask62 = (1ULL << 62) - 1;
    std::uint64_t lo =
        ((index + kSeed) * 0x9E3779B97F4A7C15ULL) & kMask62;  // odd multiplier: bijective
    lo ^= lo >> 31;                                           // xorshift: bijective
    lo = (lo * 0xD6E8FEB86659FD93ULL) & kMask62;
    lo ^= lo >> 29;
    lo |= 0x8000000000000000ULL;  // RFC 9562 variant 10xx
    std::uint64_t hi = 0;
    if (uuid_version_ == 7) {
      hi = (static_cast<std::uint64_t>(unix_ms) << 16) | (7ULL << 12) | (rng_.next() & 0x0FFF);
    } else {
      hi = (rng_.next() & ~0xF000ULL) | (4ULL << 12);
    }
    static constexpr char kHex[] = "0123456789abcdef";
    out.resize(36);
    int pos = 0;
    for (int nibble = 0; nibble < 32; ++nibble) {
      if (nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20) out[pos++] = '-';
      const std::uint64_t word = nibble < 16 ? hi : lo;
      out[pos++] = kHex[(word >> (60 - 4 * (nibble % 16))) & 0xF];
    }
  }

  /// RFC 3339: mostly UTC with microseconds ("...T08:21:07.123456Z"); one in eight with a +02:00
  /// or -05:00 offset, one in eight with whole seconds.
  void format_time(std::int64_t unix_us, std::string& out) {
    const std::uint64_t style = rng_.below(8);
    int offset_min = 0;
    if (style == 0) offset_min = (rng_.below(2) == 0) ? 120 : -300;
    const std::int64_t local_us = unix_us + static_cast<std::int64_t>(offset_min) * 60 * 1000000;
    std::int64_t secs = local_us / 1000000;
    const auto micros = static_cast<int>(local_us % 1000000);
    const std::int64_t days = secs / 86400;
    secs %= 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    const std::int64_t z = days + 719468;
    const std::int64_t era = z / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned day = doy - (153 * mp + 2) / 5 + 1;
    const unsigned month = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0);

    char buf[40];
    auto put = [&buf](int at, std::int64_t v, int width) {
      for (int k = width - 1; k >= 0; --k) {
        buf[at + k] = static_cast<char>('0' + v % 10);
        v /= 10;
      }
    };
    put(0, year, 4);
    buf[4] = '-';
    put(5, month, 2);
    buf[7] = '-';
    put(8, day, 2);
    buf[10] = 'T';
    put(11, secs / 3600, 2);
    buf[13] = ':';
    put(14, secs / 60 % 60, 2);
    buf[16] = ':';
    put(17, secs % 60, 2);
    int len = 19;
    if (style != 1) {
      buf[len++] = '.';
      put(len, micros, 6);
      len += 6;
    }
    if (offset_min == 0) {
      buf[len++] = 'Z';
    } else {
      const int a = offset_min < 0 ? -offset_min : offset_min;
      buf[len++] = offset_min < 0 ? '-' : '+';
      put(len, a / 60, 2);
      buf[len + 2] = ':';
      put(len + 3, a % 60, 2);
      len += 5;
    }
    out.assign(buf, static_cast<std::size_t>(len));
  }

  // --- metadata -------------------------------------------------------------------------------

  /// Strings as they appear inside JSON (already escaped): plain ASCII, raw UTF-8 (é, 日本, emoji),
  /// and escape sequences (\", \\, \n, \t, \uXXXX including a surrogate pair).
  static constexpr std::array<std::string_view, 16> kTexts = {
      "ok",
      "café crème",
      "日本語のテスト",
      "launch 🚀 done",
      "quote \\\"x\\\" and back\\\\slash",
      "line1\\nline2\\ttabbed",
      "\\u00e9t\\u00e9 \\u65e5\\u672c",
      "smile \\ud83d\\ude00",
      "Zürich → Genève",
      "naïve résumé",
      "timeout after 30s",
      "connection reset by peer",
      "données.parquet",
      "写真_2026.jpg",
      "C:\\\\Users\\\\report.csv",
      "<b>bold</b> & 'single'",
  };
  static constexpr std::array<std::string_view, 6> kRegions = {
      "eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-northeast-1", "sa-east-1"};
  static constexpr std::array<std::string_view, 5> kSources = {"cli", "api", "cron", "web",
                                                               "mobile"};
  static constexpr std::array<std::string_view, 5> kPlans = {"free", "starter", "pro", "team",
                                                             "enterprise"};
  static constexpr std::array<std::string_view, 6> kLocales = {"fr-FR", "ja-JP", "de-CH",
                                                               "en-US", "pt-BR", "es-ES"};
  static constexpr std::array<std::string_view, 4> kAgents = {
      "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "curl/8.4.0",
      "trackevent/0.1.0", "python-requests/2.31.0"};

  static constexpr int kFieldKinds = 20;

  template <std::size_t N>
  std::string_view pick(const std::array<std::string_view, N>& a) {
    return a[rng_.below(N)];
  }

  void append_int(std::string& s, std::uint64_t v) {
    char buf[24];
    int n = 0;
    do {
      buf[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) s.push_back(buf[--n]);
  }

  void append_str(std::string& s, std::string_view v) {
    s.push_back('"');
    s.append(v);
    s.push_back('"');
  }

  /// Renders field kind `k` as `"key":value` into `f`.
  void field(int k, std::string& f) {
    f.clear();
    switch (k) {
      case 0:
        f = "\"rows\":";
        append_int(f, rng_.below(2'000'000));
        break;
      case 1:
        f = "\"bytes\":";
        append_int(f, rng_.below(50'000'000'000ULL));
        break;
      case 2:
        f = "\"duration_ms\":";
        append_int(f, rng_.below(120'000));
        break;
      case 3: {
        f = "\"ratio\":0.";
        const std::uint64_t frac = rng_.below(1000);
        f.push_back(static_cast<char>('0' + frac / 100));
        f.push_back(static_cast<char>('0' + frac / 10 % 10));
        f.push_back(static_cast<char>('1' + frac % 9));
        break;
      }
      case 4:
        f = rng_.below(2) == 0 ? "\"ok\":true" : "\"ok\":false";
        break;
      case 5:
        f = "\"retry\":";
        if (rng_.below(3) == 0) {
          f += "null";
        } else {
          append_int(f, rng_.below(6));
        }
        break;
      case 6:
        f = "\"region\":";
        append_str(f, pick(kRegions));
        break;
      case 7:
        f = "\"source\":";
        append_str(f, pick(kSources));
        break;
      case 8:
        f = "\"plan\":";
        append_str(f, pick(kPlans));
        break;
      case 9:
        f = "\"locale\":";
        append_str(f, pick(kLocales));
        break;
      case 10:
        f = "\"user_agent\":";
        append_str(f, pick(kAgents));
        break;
      case 11:
        f = "\"comment\":";
        append_str(f, pick(kTexts));
        break;
      case 12:
        f = "\"file_name\":";
        append_str(f, pick(kTexts));
        break;
      case 13:
        f = "\"path\":\"/api/v1/datasets/";
        append_int(f, rng_.below(100000));
        f += "/rows\"";
        break;
      case 14:
        f = "\"version\":\"";
        append_int(f, rng_.below(4));
        f.push_back('.');
        append_int(f, rng_.below(20));
        f.push_back('.');
        append_int(f, rng_.below(10));
        f.push_back('"');
        break;
      case 15: {
        f = "\"tags\":[";
        const std::uint64_t n = 1 + rng_.below(3);
        for (std::uint64_t t = 0; t < n; ++t) {
          if (t != 0) f.push_back(',');
          append_str(f, pick(kSources));
        }
        f.push_back(']');
        break;
      }
      case 16:
        f = "\"context\":{\"attempt\":";
        append_int(f, 1 + rng_.below(5));
        f += ",\"reason\":";
        append_str(f, pick(kTexts));
        f.push_back('}');
        break;
      case 17:
        f = "\"ip\":\"10.";
        append_int(f, rng_.below(256));
        f.push_back('.');
        append_int(f, rng_.below(256));
        f.push_back('.');
        append_int(f, rng_.below(256));
        f.push_back('"');
        break;
      case 18:
        f = "\"temperature_c\":-";
        append_int(f, rng_.below(40));
        f += ".5e0";
        break;
      default:
        f = "\"feature_flags\":{\"beta\":";
        f += rng_.below(2) == 0 ? "true" : "false";
        f += ",\"variant\":\"";
        f.push_back(static_cast<char>('a' + rng_.below(4)));
        f += "\"}";
        break;
    }
  }

  /// A JSON object of kMinMetadata..kMaxMetadata bytes with keys chosen without repetition.
  void make_metadata(std::string& m) {
    const std::size_t target = kMinMetadata + rng_.below(kMaxMetadata - kMinMetadata + 1);
    std::array<int, kFieldKinds> order{};
    for (int k = 0; k < kFieldKinds; ++k) order[static_cast<std::size_t>(k)] = k;
    for (std::size_t k = order.size() - 1; k > 0; --k) {
      std::swap(order[k], order[rng_.below(k + 1)]);
    }
    m.clear();
    m.push_back('{');
    for (const int k : order) {
      if (m.size() + 1 >= target) break;
      field(k, field_);
      const std::size_t extra = field_.size() + (m.size() > 1 ? 1 : 0);
      if (m.size() + extra + 1 > kMaxMetadata) continue;
      if (m.size() > 1) m.push_back(',');
      m += field_;
    }
    if (m.size() + 1 < kMinMetadata) {  // top up with a padding string to reach the minimum
      if (m.size() > 1) m.push_back(',');
      m += "\"pad\":\"";
      while (m.size() + 2 < kMinMetadata) m.push_back('x');
      m.push_back('"');
    }
    m.push_back('}');
  }

  SplitMix64 rng_;
  std::uint64_t total_;
  int uuid_version_;
  std::uint64_t index_ = 0;
  std::vector<double> org_cdf_;
  std::string field_;
};

/// Appends `ev` as one JSONL line (with '\n').
inline void append_jsonl(const GenEvent& ev, std::string& out) {
  auto id = [&] {
    out += "\"event_id\":\"";
    out += ev.event_id;
    out += '"';
  };
  auto org = [&] {
    out += "\"org_id\":";
    out += std::to_string(ev.org_id);
  };
  auto user = [&] {
    out += "\"user_id\":";
    out += ev.user_id == 0 ? std::string("null") : std::to_string(ev.user_id);
  };
  auto name = [&] {
    out += "\"event_name\":\"";
    out += ev.event_name;
    out += '"';
  };
  auto at = [&] {
    out += "\"occurred_at\":\"";
    out += ev.occurred_at;
    out += '"';
  };
  auto meta = [&] {
    out += "\"metadata\":";
    out += ev.metadata;
  };
  out += '{';
  if (!ev.reversed_keys) {
    id();
    out += ',';
    org();
    out += ',';
    user();
    out += ',';
    name();
    out += ',';
    at();
    out += ',';
    meta();
  } else {
    meta();
    out += ',';
    at();
    out += ',';
    name();
    out += ',';
    user();
    out += ',';
    org();
    out += ',';
    id();
  }
  out += "}\n";
}

/// Appends `ev` as one CSV record for `\copy analytics_events(event_id,org_id,user_id,event_name,
/// metadata,occurred_at) from FILE (format csv)`: NULL user_id is an empty unquoted field, the
/// metadata is always quoted with '"' doubled.
inline void append_csv(const GenEvent& ev, std::string& out) {
  out += ev.event_id;
  out += ',';
  out += std::to_string(ev.org_id);
  out += ',';
  if (ev.user_id != 0) out += std::to_string(ev.user_id);
  out += ',';
  out += ev.event_name;
  out += ",\"";
  for (const char c : ev.metadata) {
    if (c == '"') out += '"';
    out += c;
  }
  out += "\",";
  out += ev.occurred_at;
  out += '\n';
}

/// Appends `ev` as one autocommitted INSERT statement (standard_conforming_strings on).
inline void append_sql(const GenEvent& ev, std::string& out) {
  out +=
      "INSERT INTO analytics_events(event_id,org_id,user_id,event_name,metadata,occurred_at) "
      "VALUES ('";
  out += ev.event_id;
  out += "',";
  out += std::to_string(ev.org_id);
  out += ',';
  out += ev.user_id == 0 ? std::string("NULL") : std::to_string(ev.user_id);
  out += ",'";
  out += ev.event_name;
  out += "','";
  for (const char c : ev.metadata) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += "','";
  out += ev.occurred_at;
  out += "') ON CONFLICT DO NOTHING;\n";
}

}  // namespace trackevent::bench
