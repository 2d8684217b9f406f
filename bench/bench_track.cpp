// bench_track: the cost of Tracker::track() on the caller's thread, with 1 and 2 producer threads.
//
// The Tracker gets a sink that discards each batch at once, so the dispatcher drains the queue as
// fast as it can, and the queue bound is raised so that it never fills: what is measured is the
// enqueue path (validation, stamping, the queue push), not the database. `dropped` and `spooled`
// counters show whether the queue ever overflowed during a run (they should be 0).
//
// Two kinds of figures:
//   BM_track_*       Google Benchmark's mean time per call (a tight loop of calls).
//   BM_track_latency a per-call histogram: each call timed alone with the TSC (rdtsc), the timer's
//                    own overhead subtracted; p50/p90/p99/p99.9/max in ns as counters (averaged
//                    over threads when there are two). Calls back to back.
//   BM_track_latency_paced  the same, for callers that pause 50 µs after every 64 calls, as a
//                    program doing other work does: on a 2-core machine two back-to-back callers
//                    and the dispatcher are three busy threads, and the queue outgrows its ring.
#include "trackevent/event.hpp"
#include "trackevent/options.hpp"
#include "trackevent/sink.hpp"
#include "trackevent/tracker.hpp"
#include "trackevent/uuid.hpp"

#include "log/log.hpp"

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define TRACKEVENT_BENCH_HAVE_TSC 1
#endif

namespace {

/// Accepts every batch and forgets it; counts events so the benchmark can tell they flowed.
class DiscardSink final : public trackevent::Sink {
 public:
  trackevent::WriteResult write(std::span<const trackevent::Event> batch) noexcept override {
    events_.fetch_add(batch.size(), std::memory_order_relaxed);
    trackevent::WriteResult r;
    r.stored = batch.size();
    return r;
  }
  [[nodiscard]] std::string describe() const override { return "discard"; }
  [[nodiscard]] std::uint64_t events() const { return events_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> events_{0};
};

struct Fixture {
  std::shared_ptr<DiscardSink> sink = std::make_shared<DiscardSink>();
  std::filesystem::path spool_dir;
  std::unique_ptr<trackevent::Tracker> tracker;

  Fixture() {
    spool_dir = std::filesystem::temp_directory_path() /
                ("trackevent-bench-spool-" + std::to_string(::getpid()));
    std::filesystem::create_directories(spool_dir);
    trackevent::TrackerOptions options;  // defaults, except where events go
    options.sink = sink;
    options.spool_dir = spool_dir;
    options.drain_spool = false;
    // A full queue would spool on the caller's thread (the default) and distort the figure; drop
    // instead, and report drops so a run where the queue filled is visible.
    options.on_full = trackevent::OverflowPolicy::drop;
    // The one deviation from the defaults: room for every event of a run. On a loaded 2-core
    // machine the dispatcher thread can be starved long enough for 65536 events to pile up, and
    // a push into a full queue (a fast refusal) is not the cost being measured. The queue does
    // not preallocate, so a larger bound costs nothing unless it is used.
    options.queue_capacity = std::size_t{1} << 24;
    tracker = std::make_unique<trackevent::Tracker>(std::move(options));
  }
  ~Fixture() {
    tracker.reset();
    std::error_code ec;
    std::filesystem::remove_all(spool_dir, ec);
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

const nlohmann::json& small_metadata() {
  static const nlohmann::json m = {{"rows", 1200}, {"source", "cli"}};
  return m;
}

/// Empties the queue before a benchmark starts timing (thread 0 only; the other threads wait for it
/// at the start of the timed loop).
trackevent::Stats settle(benchmark::State& state) {
  auto& t = *fixture().tracker;
  if (state.thread_index() == 0) (void)t.flush(std::chrono::seconds(10));
  return t.stats();
}

/// Events in the Tracker's memory (accepted, not yet stored, spooled or dropped).
std::uint64_t in_memory(const trackevent::Stats& st) {
  const std::uint64_t settled =
      st.stored + st.duplicates + st.rejected_by_db + st.spooled + st.dropped;
  return st.accepted > settled ? st.accepted - settled : 0;
}

void report_flow(benchmark::State& state, const trackevent::Stats& before) {
  if (state.thread_index() != 0) return;
  const trackevent::Stats after = fixture().tracker->stats();
  state.counters["dropped"] = static_cast<double>(after.dropped - before.dropped);
  state.counters["spooled"] = static_cast<double>(after.spooled - before.spooled);
  state.counters["rejected"] = static_cast<double>(after.rejected - before.rejected);
}

// track(org, user, name): no metadata.
void BM_track_no_metadata(benchmark::State& state) {
  auto& t = *fixture().tracker;
  const trackevent::Stats before = settle(state);
  std::int64_t user = 1 + state.thread_index();
  for (auto _ : state) {
    t.track(42, user, "user.signed_in");
    user = user % 10000 + 1;
  }
  state.SetItemsProcessed(state.iterations());
  report_flow(state, before);
}

// track(org, user, name, json): the library contract's example call, with a small object.
void BM_track_json_metadata(benchmark::State& state) {
  auto& t = *fixture().tracker;
  const trackevent::Stats before = settle(state);
  const nlohmann::json& meta = small_metadata();
  for (auto _ : state) {
    t.track(42, 7, "dataset.uploaded", meta);
  }
  state.SetItemsProcessed(state.iterations());
  report_flow(state, before);
}

// track(Event): what the CLI does with a parsed line (the Event copy is made outside the timing
// only in the sense that it is a move of a prepared object; its string members are small).
void BM_track_event(benchmark::State& state) {
  auto& t = *fixture().tracker;
  const trackevent::Stats before = settle(state);
  trackevent::Event proto;
  proto.org_id = 42;
  proto.user_id = 7;
  proto.event_name = "dataset.uploaded";
  proto.metadata = R"({"rows":1200,"source":"cli"})";
  proto.occurred_at_us = 1'793'491'200'000'000;
  for (auto _ : state) {
    trackevent::Event e = proto;
    benchmark::DoNotOptimize(t.track(std::move(e)));
  }
  state.SetItemsProcessed(state.iterations());
  report_flow(state, before);
}

// --- latency histogram ------------------------------------------------------------------------

std::uint64_t ticks() noexcept {
#ifdef TRACKEVENT_BENCH_HAVE_TSC
  _mm_lfence();
  const std::uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

/// Nanoseconds per tick, measured once against the steady clock over ~100 ms.
double ns_per_tick() {
  static const double value = [] {
#ifdef TRACKEVENT_BENCH_HAVE_TSC
    const auto c0 = std::chrono::steady_clock::now();
    const std::uint64_t t0 = ticks();
    while (std::chrono::steady_clock::now() - c0 < std::chrono::milliseconds(100)) {
    }
    const auto c1 = std::chrono::steady_clock::now();
    const std::uint64_t t1 = ticks();
    const double ns = std::chrono::duration<double, std::nano>(c1 - c0).count();
    return ns / static_cast<double>(t1 - t0);
#else
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::duration(1)).count();
#endif
  }();
  return value;
}

/// The cost of an empty ticks()/ticks() pair: the median of many, in ticks.
std::uint64_t timer_overhead() {
  static const std::uint64_t value = [] {
    std::vector<std::uint64_t> v(100000);
    for (auto& x : v) {
      const std::uint64_t a = ticks();
      const std::uint64_t b = ticks();
      x = b - a;
    }
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  }();
  return value;
}

double percentile(std::vector<std::uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto idx = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return static_cast<double>(sorted[idx]);
}

/// What the timed call passes as metadata (the benchmarks' `metadata` argument).
enum Metadata : std::int64_t {
  kNone = 0,   // track(org, user, name)
  kByRef = 1,  // track(org, user, name, const json&): serialised in the call
  kMoved = 2,  // track(org, user, name, json&&): moved in, serialised by the dispatcher
};

/// Each iteration is one timed call; run with a fixed number of iterations (1M per thread).
/// `pause_every` > 0: after that many calls the thread sleeps 50 µs (untimed), as a program that
/// tracks events between pieces of work does, so the dispatcher gets a core and the queue stays
/// short. 0: calls back to back. Building the moved-in object (a copy) is the caller's work and
/// is not timed.
void track_latency(benchmark::State& state, int pause_every) {
  auto& t = *fixture().tracker;
  const trackevent::Stats before = settle(state);
  const double scale = ns_per_tick();
  const std::uint64_t overhead = timer_overhead();
  std::vector<std::uint64_t> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  const auto kind = static_cast<Metadata>(state.range(0));
  const nlohmann::json& meta = small_metadata();
  std::int64_t user = 1;
  int since_pause = 0;
  std::uint64_t calls = 0;
  std::uint64_t peak_queued = 0;  // events accepted and not yet settled, sampled every 256 calls
  for (auto _ : state) {
    nlohmann::json object;
    if (kind == kMoved) object = meta;
    const std::uint64_t a = ticks();
    switch (kind) {
      case kNone:
        t.track(42, user, "user.signed_in");
        break;
      case kByRef:
        t.track(42, user, "dataset.uploaded", meta);
        break;
      case kMoved:
        t.track(42, user, "dataset.uploaded", std::move(object));
        break;
    }
    const std::uint64_t b = ticks();
    samples.push_back(b - a > overhead ? b - a - overhead : 0);
    user = user % 10000 + 1;
    if (state.thread_index() == 0 && (++calls & 255) == 0) {
      peak_queued = std::max(peak_queued, in_memory(t.stats()));
    }
    if (pause_every > 0 && ++since_pause == pause_every) {
      since_pause = 0;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  std::sort(samples.begin(), samples.end());
  const auto avg = benchmark::Counter::kAvgThreads;
  state.counters["p50_ns"] = benchmark::Counter(percentile(samples, 0.50) * scale, avg);
  state.counters["p90_ns"] = benchmark::Counter(percentile(samples, 0.90) * scale, avg);
  state.counters["p99_ns"] = benchmark::Counter(percentile(samples, 0.99) * scale, avg);
  state.counters["p999_ns"] = benchmark::Counter(percentile(samples, 0.999) * scale, avg);
  state.counters["max_ns"] = benchmark::Counter(percentile(samples, 1.0) * scale, avg);
  // Thread 0's sample (the others report 0; counters are summed over threads).
  state.counters["peak_queued"] = static_cast<double>(peak_queued);
  state.SetItemsProcessed(state.iterations());
  report_flow(state, before);
}

void BM_track_latency(benchmark::State& state) { track_latency(state, 0); }
void BM_track_latency_paced(benchmark::State& state) { track_latency(state, 64); }

// Lets the dispatcher catch up between benchmarks, so one run's backlog is not the next one's.
void BM_zz_flush(benchmark::State& state) {
  for (auto _ : state) {
    const auto r = fixture().tracker->flush(std::chrono::seconds(10));
    benchmark::DoNotOptimize(r);
  }
  state.counters["delivered"] = static_cast<double>(fixture().sink->events());
}

BENCHMARK(BM_track_no_metadata)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_track_json_metadata)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_track_event)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_track_latency)
    ->ArgName("metadata")
    ->Arg(kNone)
    ->Arg(kByRef)
    ->Arg(kMoved)
    ->Iterations(1'000'000)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_track_latency_paced)
    ->ArgName("metadata")
    ->Arg(kNone)
    ->Arg(kMoved)
    ->Iterations(1'000'000)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_zz_flush)->Iterations(1);

}  // namespace

int main(int argc, char** argv) {
  trackevent::log::init(trackevent::log::Format::json, trackevent::log::Level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  fixture();  // start the Tracker before any timing
  ns_per_tick();
  timer_overhead();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
