// bench_parse: parse_event_line over generated JSONL lines, in bytes/s, next to
// nlohmann::json::parse of the same lines as the anchor; and again with the tracking plan of
// bench/catalog50.json checking every line (--catalog-mode reject), which is the plan's cost.
//
// The lines come from the same deterministic generator as the harness's files
// (bench/event_gen.hpp), 20k of them (~5 MB, beyond L2), parsed in a loop. nlohmann only builds a
// DOM; parse_event_line also validates every field and builds the Event, so the comparison favours
// the anchor.
#include "trackevent/event.hpp"

#include "event_gen.hpp"
#include "input/catalog.hpp"
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

void run_parser(benchmark::State& state, const trackevent::ParseOptions& options) {
  const Corpus& c = corpus();
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

void BM_parse_event_line(benchmark::State& state) { run_parser(state, {}); }

// Every line's name looked up and its metadata checked against its schema (50 entries, 20 of
// them used by the corpus; bench/catalog50.json).
const trackevent::Catalog& plan_catalog() {
  static const trackevent::Catalog catalog =
      trackevent::Catalog::load(TRACKEVENT_BENCH_DIR "/catalog50.json");
  return catalog;
}

void BM_parse_event_line_catalog(benchmark::State& state) {
  trackevent::ParseOptions options;
  options.catalog = &plan_catalog();
  options.catalog_mode = trackevent::CatalogMode::reject;
  run_parser(state, options);
}

// The schema check alone, over the corpus's events as the parser gives them (name and compact
// metadata): what the plan adds per line, without the parse around it.
void BM_schema_check(benchmark::State& state) {
  const trackevent::Catalog& catalog = plan_catalog();
  const Corpus& c = corpus();
  std::vector<trackevent::Event> events;
  for (const std::string_view line : c.lines) {
    trackevent::ParseResult r = trackevent::parse_event_line(line, 0);
    if (auto* ev = std::get_if<trackevent::Event>(&r)) events.push_back(std::move(*ev));
  }
  std::size_t violations = 0;
  for (auto _ : state) {
    for (const trackevent::Event& ev : events) {
      if (catalog.check(ev.event_name, ev.metadata)) ++violations;
    }
  }
  if (violations != 0 || events.size() != c.lines.size()) {
    state.SkipWithError("the corpus does not conform to bench/catalog50.json");
    return;
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(events.size()));
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
BENCHMARK(BM_parse_event_line_catalog)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_schema_check)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_nlohmann_parse)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
