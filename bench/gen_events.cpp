// trackevent_gen_events: writes N deterministic, realistic analytics events to stdout.
//
//   trackevent_gen_events [--count N] [--format jsonl|csv|sql] [--uuid 7|4]
//
// The same N gives byte-identical output on every run; the first K events of a larger run equal a
// run with --count K except for occurred_at/event_id timing (the time axis is spread over N), so
// the harness always generates each size with its own --count.
#include "event_gen.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

void usage(std::FILE* to) {
  std::fputs(
      "usage: trackevent_gen_events [--count N] [--format jsonl|csv|sql] [--uuid 7|4]\n"
      "  Writes N deterministic analytics events to stdout (default 1000, jsonl).\n"
      "  csv: columns event_id,org_id,user_id,event_name,metadata,occurred_at for\n"
      "       \\copy ... (format csv); an empty unquoted field is a NULL user_id.\n"
      "  sql: one INSERT ... ON CONFLICT DO NOTHING statement per line.\n"
      "  --uuid 7 (default): time-ordered event ids, as trackevent makes; 4: random ids.\n",
      to);
}

bool parse_u64(const char* text, std::uint64_t& out) {
  if (text == nullptr || *text == '\0' || *text == '-') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t count = 1000;
  std::string_view format = "jsonl";
  std::uint64_t uuid_version = 7;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    }
    if (arg == "--count" || arg == "-n") {
      if (!parse_u64(value, count)) {
        std::fprintf(stderr, "gen_events: --count needs a non-negative integer\n");
        return 64;
      }
      ++i;
    } else if (arg == "--format") {
      if (value == nullptr) {
        usage(stderr);
        return 64;
      }
      format = value;
      ++i;
    } else if (arg == "--uuid") {
      if (!parse_u64(value, uuid_version) || (uuid_version != 4 && uuid_version != 7)) {
        std::fprintf(stderr, "gen_events: --uuid must be 4 or 7\n");
        return 64;
      }
      ++i;
    } else {
      std::fprintf(stderr, "gen_events: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 64;
    }
  }
  void (*append)(const trackevent::bench::GenEvent&, std::string&) = nullptr;
  if (format == "jsonl") {
    append = trackevent::bench::append_jsonl;
  } else if (format == "csv") {
    append = trackevent::bench::append_csv;
  } else if (format == "sql") {
    append = trackevent::bench::append_sql;
  } else {
    std::fprintf(stderr, "gen_events: --format must be jsonl, csv or sql\n");
    return 64;
  }

  trackevent::bench::EventGenerator gen(count, static_cast<int>(uuid_version));
  trackevent::bench::GenEvent ev;
  std::string buf;
  constexpr std::size_t kFlushAt = 1 << 20;
  buf.reserve(kFlushAt + 4096);
  for (std::uint64_t n = 0; n < count; ++n) {
    gen.next(ev);
    append(ev, buf);
    if (buf.size() >= kFlushAt || n + 1 == count) {
      if (std::fwrite(buf.data(), 1, buf.size(), stdout) != buf.size()) {
        std::fprintf(stderr, "gen_events: write failed: %s\n", std::strerror(errno));
        return 74;
      }
      buf.clear();
    }
  }
  if (std::fflush(stdout) != 0) {
    std::fprintf(stderr, "gen_events: write failed: %s\n", std::strerror(errno));
    return 74;
  }
  return 0;
}
