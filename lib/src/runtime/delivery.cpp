#include "runtime/delivery.hpp"

#include "log/log.hpp"

#include <algorithm>
#include <utility>

namespace trackevent::detail {

std::size_t DeliveryOutcome::unsent_rows() const noexcept {
  std::size_t n = 0;
  for (const auto part : unsent) n += part.size();
  return n;
}

/// One deliver() call: its outcome and its retry budget.
struct DeliveryPolicy::Run {
  DeliveryOutcome out;
  Clock::time_point started;
  unsigned attempts = 1;  // writes of this batch that failed transiently, plus one
  bool retry = true;
};

DeliveryPolicy::DeliveryPolicy(Rules rules, Hooks hooks, std::shared_ptr<const Clock> clock,
                               Backoff::Jitter jitter)
    : rules_(rules),
      hooks_(std::move(hooks)),
      clock_(clock ? std::move(clock) : std::make_shared<SteadyClock>()),
      backoff_(rules.first_retry, rules.max_retry_delay, std::move(jitter)),
      row_cap_(std::max<std::size_t>(rules.max_rows, 1)) {
  rules_.max_rows = row_cap_;
}

DeliveryOutcome DeliveryPolicy::deliver(std::span<const Event> batch,
                                        std::optional<WriteResult> first, bool retry) {
  Run run;
  run.started = clock_->now();
  run.retry = retry && !failing_;  // a probe of a failing sink is one attempt
  if (first) {
    take_result(batch, std::move(*first), run);
  } else {
    write_capped(batch, run);
  }
  return std::move(run.out);
}

void DeliveryPolicy::write_capped(std::span<const Event> rows, Run& run) {
  while (!rows.empty()) {
    const auto part = rows.first(std::min(std::max<std::size_t>(row_cap_, 1), rows.size()));
    write_isolating(part, run);
    rows = rows.subspan(part.size());
  }
}

// Bisects a refused batch: each half is written on its own, so k bad rows in n cost about
// 2k*log2(n) writes and every good row is stored. Once a part could not be written (the sink
// failed, or the caller stopped the delivery) the rest is returned unsent.
void DeliveryPolicy::write_isolating(std::span<const Event> rows, Run& run) {
  if (rows.empty()) return;
  if (run.out.failure) {
    run.out.unsent.push_back(rows);
    return;
  }
  if (hooks_.before_write) hooks_.before_write();
  take_result(rows, hooks_.write(rows), run);
}

void DeliveryPolicy::take_result(std::span<const Event> rows, WriteResult result, Run& run) {
  for (;;) {
    note_write(result, rows.size());
    if (result.ok()) {
      run.out.stored += result.stored;
      run.out.duplicates += result.duplicates;
      if (hooks_.settled) hooks_.settled(rows);
      return;
    }
    Failure& failure = *result.failure;
    if (failure.disposition == Disposition::reject) {
      if (rows.size() == 1) {
        dead_letter(rows.front(), failure, run);
        return;
      }
      const std::size_t half = rows.size() / 2;
      write_isolating(rows.first(half), run);
      write_isolating(rows.subspan(half), run);
      return;
    }
    if (failure.disposition == Disposition::retry && retry_after_pause(rows, failure, run)) {
      // The cap may have shrunk (57014): the retry writes the rows in statements that fit it.
      if (rows.size() > row_cap_) {
        write_capped(rows, run);
        return;
      }
      if (hooks_.before_write) hooks_.before_write();
      result = hooks_.write(rows);
      continue;
    }
    run.out.unsent.push_back(rows);
    run.out.failure = std::move(failure);
    return;
  }
}

bool DeliveryPolicy::retry_after_pause(std::span<const Event> rows, const Failure& failure,
                                       Run& run) {
  const auto stopped = [&] { return hooks_.stop && hooks_.stop(); };
  if (!run.retry || failing_ || run.attempts >= rules_.max_attempts ||
      clock_->now() - run.started >= rules_.max_retry_time || stopped()) {
    return false;
  }
  const Clock::duration delay = backoff_.next();
  if (hooks_.on_retry) hooks_.on_retry(rows, run.attempts, delay, failure);
  ++run.attempts;
  ++run.out.retries;
  if (hooks_.wait) hooks_.wait(delay);
  if (stopped()) {  // the pause ended at a deadline: no more attempts
    run.out.stopped = true;
    return false;
  }
  return true;
}

void DeliveryPolicy::dead_letter(const Event& row, const Failure& failure, Run& run) {
  if (hooks_.dead_letter(row, failure)) {
    ++run.out.dead_lettered;
    run.out.dead.push_back(&row);
    if (hooks_.settled) hooks_.settled(std::span<const Event>(&row, 1));
    return;
  }
  run.out.dead_failed.push_back(&row);  // its only copy stays with the caller
}

Clock::duration DeliveryPolicy::failed(const Failure& failure) {
  failing_ = true;
  const Clock::duration delay =
      failure.disposition == Disposition::hold ? rules_.hold_probe : backoff_.next();
  next_probe_ = clock_->now() + delay;
  return delay;
}

bool DeliveryPolicy::succeeded() noexcept {
  const bool was_failing = failing_;
  failing_ = false;
  backoff_.reset();
  return was_failing;
}

bool DeliveryPolicy::held_back() const noexcept { return failing_ && clock_->now() < next_probe_; }

void DeliveryPolicy::note_write(const WriteResult& result, std::size_t rows) {
  if (result.ok()) {
    // A statement as large as the cap went through: allow twice as many again. (A smaller one
    // proves nothing about the size that timed out.)
    if (rows >= row_cap_) {
      timeouts_in_a_row_ = 0;
      row_cap_ = std::min(rules_.max_rows, row_cap_ * 2);
    }
    return;
  }
  if (result.failure->sqlstate != "57014") return;
  // A batch that keeps exceeding statement_timeout would be retried and replayed from the spool
  // forever at the same size: from the second timeout in a row, write fewer rows per statement.
  if (++timeouts_in_a_row_ < 2 || row_cap_ <= 1) return;
  row_cap_ = std::max<std::size_t>(std::min(row_cap_, rows) / 2, 1);
  log::write_limited(log::Level::warn, "sink.statement_timeout",
                     "batches keep exceeding the statement timeout; writing fewer rows per "
                     "statement",
                     {{"rows_per_statement", row_cap_}, {"err", result.failure->message}});
}

}  // namespace trackevent::detail
