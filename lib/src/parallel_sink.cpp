#include "parallel_sink.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

namespace trackevent::detail {
namespace {

int severity(Disposition d) noexcept {
  switch (d) {
    case Disposition::reject:
      return 3;
    case Disposition::hold:
      return 2;
    case Disposition::retry:
      return 1;
  }
  return 0;
}

}  // namespace

void merge_part_result(WriteResult& total, WriteResult&& part) noexcept {
  if (part.ok()) {
    if (total.ok()) {
      total.stored += part.stored;
      total.duplicates += part.duplicates;
    }
    return;
  }
  // A failed batch reports no counts (see ParallelSink): committed parts resurface as duplicates.
  total.stored = 0;
  total.duplicates = 0;
  if (!total.failure ||
      severity(part.failure->disposition) > severity(total.failure->disposition)) {
    total.failure = std::move(part.failure);
  }
}

/// One thread serving one inner sink: takes a part (or, pipelined, a whole batch), writes it, and
/// hands the result back: to wait() for a part, to the sink's Finished list for a batch.
struct ParallelSink::Worker {
  Worker(Sink& s, std::size_t i, Finished& f)
      : sink(s), index(i), finished(f), thread([this] { run(); }) {}

  ~Worker() {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    cv.notify_all();
    thread.join();
  }

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void post(std::span<const Event> part) noexcept {
    {
      std::lock_guard lock(mutex);
      job = part;
      has_job = true;
      done = false;
    }
    cv.notify_all();
  }

  void post_batch(Batch b) noexcept {
    {
      std::lock_guard lock(mutex);
      job = *b;
      batch = std::move(b);
      has_job = true;
    }
    cv.notify_all();
  }

  /// Bounded by the sink: its write returns within its connect and statement deadlines. `took`:
  /// how long the write took, from when the worker picked the part up.
  WriteResult wait(Clock::duration& took) noexcept {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return done; });
    done = false;
    took = last_took;
    return std::move(result);
  }

  void run() noexcept {
    std::unique_lock lock(mutex);
    for (;;) {
      cv.wait(lock, [&] { return stop || has_job; });
      if (!has_job) return;  // stop, with no job pending
      has_job = false;
      const std::span<const Event> part = job;
      Batch whole = std::move(batch);
      lock.unlock();
      const auto started = Clock::now();
      WriteResult r = sink.write(part);  // noexcept
      const auto took = Clock::now() - started;
      if (whole) {
        {
          std::lock_guard done_lock(finished.mutex);
          finished.list.emplace_back(index, Done{std::move(whole), std::move(r)});
        }
        finished.cv.notify_all();
        lock.lock();
        continue;
      }
      lock.lock();
      result = std::move(r);
      last_took = took;
      done = true;
      cv.notify_all();
    }
  }

  Sink& sink;
  const std::size_t index;
  Finished& finished;
  std::mutex mutex;
  std::condition_variable cv;
  std::span<const Event> job;
  Batch batch;  // set for a pipelined job: the result goes to `finished`
  WriteResult result;
  Clock::duration last_took{};
  bool has_job = false;
  bool done = false;
  bool stop = false;
  std::thread thread;  // last: starts once the members above exist
};

ParallelSink::ParallelSink(std::vector<std::unique_ptr<Sink>> inner, std::size_t min_part)
    : inner_(std::move(inner)), min_part_(std::max<std::size_t>(min_part, 1)) {
  if (inner_.empty() ||
      std::any_of(inner_.begin(), inner_.end(), [](const auto& s) { return !s; })) {
    throw std::invalid_argument("ParallelSink needs at least one sink, none null");
  }
  rate_.assign(inner_.size(), 0.0);
  sizes_.resize(inner_.size());
  took_.resize(inner_.size());
  lane_busy_.assign(inner_.size(), false);
  workers_.reserve(inner_.size());
  for (std::size_t i = 0; i < inner_.size(); ++i) {
    workers_.push_back(std::make_unique<Worker>(*inner_[i], i, finished_));
  }
}

// Workers first (they use the inner sinks and report into finished_), then the sinks.
ParallelSink::~ParallelSink() { workers_.clear(); }

std::size_t ParallelSink::parts_for(std::size_t rows) const noexcept {
  return std::clamp<std::size_t>(rows / min_part_, 1, inner_.size());
}

std::vector<std::size_t> ParallelSink::part_sizes(std::size_t rows, std::size_t parts) const {
  std::vector<std::size_t> sizes(parts);
  cut(rows, sizes);
  return sizes;
}

void ParallelSink::cut(std::size_t rows, std::span<std::size_t> sizes) const noexcept {
  const std::size_t parts = sizes.size();
  const auto rates = std::span<const double>(rate_).first(parts);
  if (std::any_of(rates.begin(), rates.end(), [](double r) { return r <= 0; })) {
    for (std::size_t k = 0; k < parts; ++k) sizes[k] = rows / parts + (k < rows % parts ? 1 : 0);
    return;
  }
  // In proportion to each connection's measured rows per second, none below half or above twice
  // the mean, so one slow batch cannot starve a connection of work (and of new measurements).
  double mean = 0;
  for (const double r : rates) mean += r;
  mean /= static_cast<double>(parts);
  const auto weight = [&](std::size_t k) { return std::clamp(rates[k], mean / 2, mean * 2); };
  double sum = 0;
  for (std::size_t k = 0; k < parts; ++k) sum += weight(k);
  // Rounded down; the last part takes what rounding left over.
  std::size_t given = 0;
  for (std::size_t k = 0; k + 1 < parts; ++k) {
    sizes[k] = static_cast<std::size_t>(static_cast<double>(rows) * weight(k) / sum);
    given += sizes[k];
  }
  sizes[parts - 1] = rows - given;
}

void ParallelSink::learn(std::span<const std::size_t> sizes,
                         std::span<const Clock::duration> took) noexcept {
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const double secs = std::chrono::duration<double>(took[k]).count();
    if (secs <= 0) continue;
    const double rate = static_cast<double>(sizes[k]) / secs;
    rate_[k] = rate_[k] > 0 ? (1 - kRateSmoothing) * rate_[k] + kRateSmoothing * rate : rate;
  }
}

WriteResult ParallelSink::write(std::span<const Event> batch) noexcept {
  const std::size_t parts = parts_for(batch.size());
  if (parts == 1) return inner_[0]->write(batch);

  // Contiguous parts, sized by how fast each connection has been; part 0 on this thread.
  const std::span<std::size_t> sizes = std::span(sizes_).first(parts);
  const std::span<Clock::duration> took = std::span(took_).first(parts);
  cut(batch.size(), sizes);
  std::size_t offset = sizes[0];
  for (std::size_t k = 1; k < parts; ++k) {
    workers_[k]->post(batch.subspan(offset, sizes[k]));
    offset += sizes[k];
  }
  const auto started = Clock::now();
  WriteResult total = inner_[0]->write(batch.first(sizes[0]));
  took[0] = Clock::now() - started;
  bool all_ok = total.ok();
  for (std::size_t k = 1; k < parts; ++k) {
    WriteResult part = workers_[k]->wait(took[k]);
    all_ok = all_ok && part.ok();
    merge_part_result(total, std::move(part));
  }
  if (all_ok) learn(sizes, took);  // a failed part's time says nothing about its speed
  return total;
}

void ParallelSink::submit(Batch batch) noexcept {
  const auto free = std::find(lane_busy_.begin(), lane_busy_.end(), false);
  if (free == lane_busy_.end() || !batch) return;  // callers check has_free_lane() first
  *free = true;
  ++outstanding_;
  workers_[static_cast<std::size_t>(free - lane_busy_.begin())]->post_batch(std::move(batch));
}

std::optional<ParallelSink::Done> ParallelSink::next_done(Clock::duration timeout) noexcept {
  if (outstanding_ == 0) return std::nullopt;
  std::unique_lock lock(finished_.mutex);
  if (!finished_.cv.wait_for(lock, timeout, [&] { return !finished_.list.empty(); })) {
    return std::nullopt;
  }
  auto [lane, done] = std::move(finished_.list.front());
  finished_.list.pop_front();
  lock.unlock();
  lane_busy_[lane] = false;
  --outstanding_;
  return std::move(done);
}

std::string ParallelSink::describe() const {
  if (inner_.size() == 1) return inner_[0]->describe();
  return inner_[0]->describe() + " (" + std::to_string(inner_.size()) + " connections)";
}

std::unique_ptr<Sink> make_parallel_postgres_sink(const std::string& conninfo,
                                                  const PgTimeouts& timeouts,
                                                  std::size_t connections) {
  std::vector<std::unique_ptr<Sink>> inner;
  inner.reserve(connections);
  for (std::size_t i = 0; i < std::max<std::size_t>(connections, 1); ++i)
    inner.push_back(make_postgres_sink(conninfo, timeouts));
  return std::make_unique<ParallelSink>(std::move(inner));
}

}  // namespace trackevent::detail

namespace trackevent {

std::unique_ptr<Sink> make_sink(const DbTarget& target, const PgTimeouts& timeouts,
                                std::size_t connections) {
  if (target.kind == DbTarget::Kind::sqlite) return make_sink(target, timeouts);
  return detail::make_parallel_postgres_sink(target.conninfo, timeouts, connections);
}

}  // namespace trackevent
