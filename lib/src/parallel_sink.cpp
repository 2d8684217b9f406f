#include "parallel_sink.hpp"

#include <algorithm>
#include <condition_variable>
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

/// One thread serving one inner sink: takes a part, writes it, hands the result back.
struct ParallelSink::Worker {
  explicit Worker(Sink& s) : sink(s), thread([this] { run(); }) {}

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

  /// Bounded by the sink: its write returns within its connect and statement deadlines.
  WriteResult wait() noexcept {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return done; });
    done = false;
    return std::move(result);
  }

  void run() noexcept {
    std::unique_lock lock(mutex);
    for (;;) {
      cv.wait(lock, [&] { return stop || has_job; });
      if (has_job) {
        has_job = false;
        const std::span<const Event> part = job;
        lock.unlock();
        WriteResult r = sink.write(part);  // noexcept
        lock.lock();
        result = std::move(r);
        done = true;
        cv.notify_all();
        continue;
      }
      return;  // stop, with no job pending
    }
  }

  Sink& sink;
  std::mutex mutex;
  std::condition_variable cv;
  std::span<const Event> job;
  WriteResult result;
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
  workers_.reserve(inner_.size() - 1);
  for (std::size_t i = 1; i < inner_.size(); ++i) {
    workers_.push_back(std::make_unique<Worker>(*inner_[i]));
  }
}

// Workers first (they use the inner sinks), then the sinks.
ParallelSink::~ParallelSink() { workers_.clear(); }

std::size_t ParallelSink::parts_for(std::size_t rows) const noexcept {
  return std::clamp<std::size_t>(rows / min_part_, 1, inner_.size());
}

WriteResult ParallelSink::write(std::span<const Event> batch) noexcept {
  const std::size_t parts = parts_for(batch.size());
  if (parts == 1) return inner_[0]->write(batch);

  // Contiguous parts, sizes differing by at most one; part 0 is written on this thread.
  const std::size_t base = batch.size() / parts;
  const std::size_t extra = batch.size() % parts;
  auto part_size = [&](std::size_t k) { return base + (k < extra ? 1 : 0); };
  std::size_t offset = part_size(0);
  for (std::size_t k = 1; k < parts; ++k) {
    workers_[k - 1]->post(batch.subspan(offset, part_size(k)));
    offset += part_size(k);
  }
  WriteResult total = inner_[0]->write(batch.first(part_size(0)));
  for (std::size_t k = 1; k < parts; ++k) merge_part_result(total, workers_[k - 1]->wait());
  return total;
}

std::string ParallelSink::describe() const {
  return inner_[0]->describe() + " (" + std::to_string(inner_.size()) + " connections)";
}

std::unique_ptr<Sink> make_parallel_postgres_sink(const std::string& conninfo,
                                                  const PgTimeouts& timeouts,
                                                  std::size_t connections) {
  if (connections <= 1) return make_postgres_sink(conninfo, timeouts);
  std::vector<std::unique_ptr<Sink>> inner;
  inner.reserve(connections);
  for (std::size_t i = 0; i < connections; ++i)
    inner.push_back(make_postgres_sink(conninfo, timeouts));
  return std::make_unique<ParallelSink>(std::move(inner));
}

}  // namespace trackevent::detail

namespace trackevent {

std::unique_ptr<Sink> make_sink(const DbTarget& target, const PgTimeouts& timeouts,
                                std::size_t connections) {
  if (target.kind == DbTarget::Kind::sqlite || connections <= 1) return make_sink(target, timeouts);
  return detail::make_parallel_postgres_sink(target.conninfo, timeouts, connections);
}

}  // namespace trackevent
