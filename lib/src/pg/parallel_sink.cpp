#include "pg/parallel_sink.hpp"

#include "config/database_url.hpp"
#include "log/log.hpp"

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
  const std::size_t n = inner_.size();
  rate_.assign(n, 0.0);
  part_lanes_.reserve(n);
  sizes_.resize(n);
  took_.resize(n);
  results_.resize(n);
  lane_busy_.assign(n, false);
  lane_ok_.assign(n, false);
  aside_until_.assign(n, Clock::time_point{});
  aside_for_.assign(n, Clock::duration::zero());
  workers_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(*inner_[i], i, finished_));
  }
}

// Workers first (they use the inner sinks and report into finished_), then the sinks.
ParallelSink::~ParallelSink() { workers_.clear(); }

bool ParallelSink::set_aside_now(std::size_t lane, Clock::time_point now) const noexcept {
  return now < aside_until_[lane];
}

std::size_t ParallelSink::set_aside_connections() const noexcept {
  const auto now = Clock::now();
  std::size_t n = 0;
  for (std::size_t i = 0; i < inner_.size(); ++i) n += set_aside_now(i, now) ? 1 : 0;
  return n;
}

void ParallelSink::usable_lanes(std::vector<std::size_t>& out) const {
  out.clear();
  const auto now = Clock::now();
  for (std::size_t i = 0; i < inner_.size(); ++i) {
    if (!set_aside_now(i, now)) out.push_back(i);
  }
  if (out.empty()) out.push_back(0);  // not reached: one connection always stays in use
}

bool ParallelSink::parked(std::size_t lane) const noexcept {
  return std::any_of(undecided_.begin(), undecided_.end(),
                     [&](const auto& u) { return u.first == lane; });
}

bool ParallelSink::works_elsewhere(std::size_t lane, bool busy) const noexcept {
  const auto now = Clock::now();
  for (std::size_t i = 0; i < inner_.size(); ++i) {
    if (i != lane && lane_ok_[i] && lane_busy_[i] == busy && !parked(i) && !set_aside_now(i, now)) {
      return true;
    }
  }
  return false;
}

std::optional<std::size_t> ParallelSink::free_lane(bool fresh) const noexcept {
  const auto now = Clock::now();
  const bool any_ok = std::find(lane_ok_.begin(), lane_ok_.end(), true) != lane_ok_.end();
  for (std::size_t i = 0; i < inner_.size(); ++i) {
    if (set_aside_now(i, now) || parked(i)) continue;
    if (!lane_busy_[i]) return i;
    if (fresh && !any_ok) return std::nullopt;  // the first usable connection is busy
  }
  return std::nullopt;
}

bool ParallelSink::has_free_lane() const noexcept {
  return bounced_.empty() && free_lane(/*fresh=*/true).has_value();
}

void ParallelSink::record(std::size_t lane, const WriteResult& r) noexcept {
  lane_ok_[lane] = r.ok();
  if (r.ok()) aside_for_[lane] = Clock::duration::zero();
}

void ParallelSink::set_aside(std::size_t lane, const Failure& f) noexcept {
  aside_for_[lane] = aside_for_[lane] == Clock::duration::zero()
                         ? kSetAsideFirst
                         : std::min<Clock::duration>(aside_for_[lane] * 2, kSetAsideMax);
  aside_until_[lane] = Clock::now() + aside_for_[lane];
  log::write_limited(
      log::Level::warn, "sink.connection_set_aside",
      "could not open a database connection while another works; writing on the others",
      {{"connection", lane + 1},
       {"connections", inner_.size()},
       {"retry_in_s", std::chrono::duration_cast<std::chrono::seconds>(aside_for_[lane]).count()},
       {"sqlstate", f.sqlstate},
       {"err", f.message}});
}

void ParallelSink::decide_parked(bool witnessed) noexcept {
  for (auto it = undecided_.begin(); it != undecided_.end();) {
    const std::size_t lane = it->first;
    if (witnessed || works_elsewhere(lane, /*busy=*/false)) {
      set_aside(lane, *it->second.result.failure);
      bounced_.push_back(std::move(it->second.batch));
    } else if (works_elsewhere(lane, /*busy=*/true)) {
      ++it;  // still undecided: another write that may show the server works is under way
      continue;
    } else {
      failed_.push_back(std::move(it->second));  // no connection works: the batch's failure
    }
    it = undecided_.erase(it);
  }
}

void ParallelSink::post_bounced() noexcept {
  while (!bounced_.empty()) {
    const auto to = free_lane(/*fresh=*/false);
    if (!to) return;  // one is busy (one always stays in use): next_done() posts it then
    post(*to, std::move(bounced_.front()));
    bounced_.pop_front();
  }
}

std::size_t ParallelSink::parts_for(std::size_t rows) const noexcept {
  return parts_over(rows, std::max<std::size_t>(inner_.size() - set_aside_connections(), 1));
}

std::size_t ParallelSink::parts_over(std::size_t rows, std::size_t lanes) const noexcept {
  return std::clamp<std::size_t>(rows / min_part_, 1, lanes);
}

std::vector<std::size_t> ParallelSink::part_sizes(std::size_t rows, std::size_t parts) const {
  std::vector<std::size_t> lanes;
  usable_lanes(lanes);
  lanes.resize(std::min(parts, lanes.size()));
  std::vector<std::size_t> sizes(lanes.size());
  cut(rows, lanes, sizes);
  return sizes;
}

void ParallelSink::cut(std::size_t rows, std::span<const std::size_t> lanes,
                       std::span<std::size_t> sizes) const noexcept {
  const std::size_t parts = sizes.size();
  const auto rate = [&](std::size_t k) { return rate_[lanes[k]]; };
  bool measured = true;
  for (std::size_t k = 0; k < parts; ++k) measured = measured && rate(k) > 0;
  if (!measured) {
    for (std::size_t k = 0; k < parts; ++k) sizes[k] = rows / parts + (k < rows % parts ? 1 : 0);
    return;
  }
  // In proportion to each connection's measured rows per second, none below half or above twice
  // the mean, so one slow batch cannot starve a connection of work (and of new measurements).
  double mean = 0;
  for (std::size_t k = 0; k < parts; ++k) mean += rate(k);
  mean /= static_cast<double>(parts);
  const auto weight = [&](std::size_t k) { return std::clamp(rate(k), mean / 2, mean * 2); };
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

void ParallelSink::learn(std::span<const std::size_t> lanes, std::span<const std::size_t> sizes,
                         std::span<const Clock::duration> took) noexcept {
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const double secs = std::chrono::duration<double>(took[k]).count();
    if (secs <= 0) continue;
    const double rate = static_cast<double>(sizes[k]) / secs;
    double& r = rate_[lanes[k]];
    r = r > 0 ? (1 - kRateSmoothing) * r + kRateSmoothing * rate : rate;
  }
}

WriteResult ParallelSink::write(std::span<const Event> batch) noexcept {
  usable_lanes(part_lanes_);
  const std::size_t parts = parts_over(batch.size(), part_lanes_.size());
  const std::span<const std::size_t> lanes = std::span(part_lanes_).first(parts);
  const std::span<std::size_t> sizes = std::span(sizes_).first(parts);
  const std::span<Clock::duration> took = std::span(took_).first(parts);
  const std::span<WriteResult> results = std::span(results_).first(parts);

  // Contiguous parts, sized by how fast each connection has been; part 0 on this thread.
  if (parts == 1) {
    sizes[0] = batch.size();
  } else {
    cut(batch.size(), lanes, sizes);
  }
  std::size_t offset = sizes[0];
  for (std::size_t k = 1; k < parts; ++k) {
    workers_[lanes[k]]->post(batch.subspan(offset, sizes[k]));
    offset += sizes[k];
  }
  const auto started = Clock::now();
  results[0] = inner_[lanes[0]]->write(batch.first(sizes[0]));
  took[0] = Clock::now() - started;
  for (std::size_t k = 1; k < parts; ++k) results[k] = workers_[lanes[k]]->wait(took[k]);

  const bool all_ok =
      std::all_of(results.begin(), results.end(), [](const WriteResult& r) { return r.ok(); });
  if (parts > 1 && all_ok) learn(lanes, sizes, took);  // a failed part says nothing of speed
  for (std::size_t k = 0; k < parts; ++k) record(lanes[k], results[k]);
  // A part whose connection could not be opened while another part's connection just wrote:
  // that connection is set aside, and the part written again on the one that works.
  const auto witness =
      std::find_if(results.begin(), results.end(), [](const WriteResult& r) { return r.ok(); });
  offset = 0;
  for (std::size_t k = 0; k < parts && witness != results.end(); ++k) {
    const std::size_t at = offset;
    offset += sizes[k];
    if (results[k].ok() || !results[k].failure->at_connect) continue;
    const std::size_t other = lanes[static_cast<std::size_t>(witness - results.begin())];
    set_aside(lanes[k], *results[k].failure);
    results[k] = inner_[other]->write(batch.subspan(at, sizes[k]));
    record(other, results[k]);
  }
  WriteResult total;
  for (std::size_t k = 0; k < parts; ++k) merge_part_result(total, std::move(results[k]));
  return total;
}

void ParallelSink::post(std::size_t lane, Batch batch) noexcept {
  lane_busy_[lane] = true;
  workers_[lane]->post_batch(std::move(batch));
}

void ParallelSink::submit(Batch batch) noexcept {
  const auto lane = free_lane(/*fresh=*/true);
  if (!lane || !batch || !bounced_.empty()) return;  // callers check has_free_lane() first
  ++outstanding_;
  post(*lane, std::move(batch));
}

std::optional<ParallelSink::Done> ParallelSink::next_done(Clock::duration timeout) noexcept {
  const auto deadline = Clock::now() + timeout;
  while (outstanding_ > 0) {
    if (!failed_.empty()) {
      Done done = std::move(failed_.front());
      failed_.pop_front();
      --outstanding_;
      return done;
    }
    std::unique_lock lock(finished_.mutex);
    if (!finished_.cv.wait_until(lock, deadline, [&] { return !finished_.list.empty(); })) {
      return std::nullopt;
    }
    auto [lane, done] = std::move(finished_.list.front());
    finished_.list.pop_front();
    lock.unlock();
    lane_busy_[lane] = false;
    record(lane, done.result);
    if (!done.result.ok() && done.result.failure->at_connect &&
        (works_elsewhere(lane, /*busy=*/false) || works_elsewhere(lane, /*busy=*/true))) {
      // Another connection works, or may: this one waits, parked, for that to be decided.
      undecided_.emplace_back(lane, std::move(done));
      decide_parked(/*witnessed=*/false);
      post_bounced();
      continue;
    }
    decide_parked(/*witnessed=*/done.result.ok());
    post_bounced();
    --outstanding_;
    return std::move(done);
  }
  return std::nullopt;
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
