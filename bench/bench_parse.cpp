// bench_parse: parse_event_line over generated JSONL lines, in bytes/s, next to
// nlohmann::json::parse of the same lines as the anchor.
//
// The lines come from the same deterministic generator as the harness's files
// (bench/event_gen.hpp), 20k of them (~5 MB, beyond L2), parsed in a loop. nlohmann only builds a
// DOM; parse_event_line also validates every field and builds the Event, so the comparison favours
// the anchor.
#include "trackevent/event.hpp"

#include "event_gen.hpp"
#include "input/parse.hpp"

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

struct Corpus {
  std::string text;
  std::vector<std::string_view> lines;
  std::size_t bytes = 0;  ///< payload bytes, newlines excluded
};

const Corpus& corpus() {
  static const Corpus c = [] {
    constexpr std::uint64_t kLines = 20000;
    Corpus out;
    trackevent::bench::EventGenerator gen(kLines);
    trackevent::bench::GenEvent ev;
    for (std::uint64_t i = 0; i < kLines; ++i) {
      gen.next(ev);
      trackevent::bench::append_jsonl(ev, out.text);
    }
    std::string_view rest = out.text;
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      out.lines.push_back(rest.substr(0, nl));
      out.bytes += nl;
      rest.remove_prefix(nl + 1);
    }
    return out;
  }();
  return c;
}

void BM_parse_event_line(benchmark::State& state) {
  const Corpus& c = corpus();
  const trackevent::ParseOptions options;
  const std::int64_t now = 1'793'491'200'000'000;
  std::size_t rejected = 0;
  std::string first_reason;
  for (auto _ : state) {
    for (const std::string_view line : c.lines) {
      trackevent::ParseResult r = trackevent::parse_event_line(line, now, options);
      if (const auto* rej = std::get_if<trackevent::Rejection>(&r)) {
        if (rejected++ == 0) first_reason = rej->reason;
      }
      benchmark::DoNotOptimize(r);
    }
  }
  if (rejected != 0) {
    state.SkipWithError(("parse_event_line rejected " + std::to_string(rejected) +
                         " valid lines; first reason: " + first_reason)
                            .c_str());
    return;
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.lines.size()));
}

void BM_nlohmann_parse(benchmark::State& state) {
  const Corpus& c = corpus();
  for (auto _ : state) {
    for (const std::string_view line : c.lines) {
      nlohmann::json j = nlohmann::json::parse(line);
      benchmark::DoNotOptimize(j);
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.lines.size()));
}

BENCHMARK(BM_parse_event_line)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_nlohmann_parse)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
