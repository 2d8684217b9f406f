#pragma once
// DeliveryPolicy: the one failure policy for writing a batch (docs/architecture.md, "Failure
// policy"): retry, backoff with jitter, splitting, dead-lettering, holding, the rows-per-statement
// cap. The dispatcher (runtime/courier.*) and `trackevent flush` (spool/drain.cpp) both use it.

#include "trackevent/clock.hpp"
#include "trackevent/event.hpp"
#include "trackevent/sink.hpp"

#include "runtime/backoff.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace trackevent::detail {

/// What delivering one batch achieved. Every row of the batch is in exactly one of: stored or
/// duplicate (counted), `dead`, `dead_failed`, `unsent`.
struct DeliveryOutcome {
  std::size_t stored = 0;
  std::size_t duplicates = 0;
  std::size_t dead_lettered = 0;
  /// Parts not written: the sink failed (retry past the budget, or hold), or the caller's stop
  /// check cut a retry short. Their order is the batch's.
  std::vector<std::span<const Event>> unsent;
  /// Why the unsent parts were not written (set exactly when `unsent` is not empty).
  std::optional<Failure> failure;
  /// The caller's stop check ended the delivery (shutdown or drain deadline), not the sink.
  bool stopped = false;
  std::vector<const Event*> dead;  ///< refused rows whose dead-letter line is durable
  /// Refused rows whose dead-letter line could not be written: the caller must keep them (the
  /// row is the event's only copy).
  std::vector<const Event*> dead_failed;
  unsigned retries = 0;  ///< writes repeated after a transient failure

  [[nodiscard]] std::size_t unsent_rows() const noexcept;
};

/// Delivers batches through a caller's write function: a transient failure (Disposition::retry)
/// is retried with capped exponential backoff and full jitter, within an attempt budget and a
/// time budget per batch; a refusal (reject) splits the batch in halves until the bad rows stand
/// alone, and those are dead-lettered; a hold (auth, permission, missing table) stops at once.
/// After a delivery that did not get through, the sink counts as failing: callers hold back
/// (spool) until the next probe, which failed() schedules and which is written without retries.
///
/// Two statement timeouts (57014) in a row halve the rows written per statement (down to one);
/// statements of full size that succeed double it back up to Rules::max_rows, so a batch too
/// large for statement_timeout is not retried and replayed at the same size forever.
///
/// The policy never sleeps on its own: it waits through Hooks::wait, measures time on the
/// injected clock, and lets every exception from a hook through (the dispatcher's custody
/// handshake throws TakenOver from its write and wait hooks). Used from one thread at a time.
class DeliveryPolicy {
 public:
  struct Rules {
    /// Writes of one batch that may fail transiently before it gives up (retries + 1).
    unsigned max_attempts = 3;
    /// Retries of one batch stop once this long has passed since its first write.
    Clock::duration max_retry_time = std::chrono::seconds{10};
    /// Backoff: the ceiling of the first delay, doubling up to `max_retry_delay`; each delay is
    /// drawn uniformly below its ceiling (full jitter).
    Clock::duration first_retry = std::chrono::milliseconds{500};
    Clock::duration max_retry_delay = std::chrono::seconds{30};
    /// After a hold, the next probe comes this much later.
    Clock::duration hold_probe = std::chrono::seconds{30};
    /// Most rows per statement; the 57014 cap grows back up to this.
    std::size_t max_rows = 5000;
  };

  /// What differs between the callers. `write` and `dead_letter` are required.
  struct Hooks {
    /// One write of `rows` (one transaction). May throw to abandon the delivery.
    std::function<WriteResult(std::span<const Event> rows)> write;
    /// Writes a refused row's dead-letter line; true once it is durable.
    std::function<bool(const Event& row, const Failure& why)> dead_letter;
    /// A retry pause of at most `delay`; may return early (shutdown) and may throw. Empty: none.
    std::function<void(Clock::duration delay)> wait;
    /// True: no more attempts (a deadline passed). Checked before and after each retry pause.
    std::function<bool()> stop;
    /// Before each write, e.g. to renew the lease of claimed spool rows.
    std::function<void()> before_write;
    /// Rows settled as the delivery goes: written (stored or duplicate) or dead-lettered.
    std::function<void(std::span<const Event> rows)> settled;
    /// A retry is about to pause `delay` (for counting and logging).
    std::function<void(std::span<const Event> rows, unsigned attempt, Clock::duration delay,
                       const Failure& failure)>
        on_retry;
  };

  /// `jitter`: a number in [0, 1) per delay (tests); empty: a random source.
  DeliveryPolicy(Rules rules, Hooks hooks, std::shared_ptr<const Clock> clock,
                 Backoff::Jitter jitter = {});

  /// Writes `batch` in statements of at most row_cap() rows, each isolating bad rows, retrying
  /// transient failures unless `retry` is false or the sink is failing (a probe is one attempt).
  /// `first`: the result of a write of the whole batch made elsewhere (pipelined); it counts as
  /// the first attempt.
  DeliveryOutcome deliver(std::span<const Event> batch, std::optional<WriteResult> first = {},
                          bool retry = true);

  // ---- The sink's health across batches ----------------------------------------------------
  /// A delivery did not get through because of `failure`: the sink counts as failing until the
  /// returned delay has passed (hold: Rules::hold_probe; retry: the next backoff delay).
  Clock::duration failed(const Failure& failure);
  /// A delivery got through. True when the sink was failing until now.
  bool succeeded() noexcept;
  [[nodiscard]] bool failing() const noexcept { return failing_; }
  /// Failing, and the next probe is not due: hold batches back without writing.
  [[nodiscard]] bool held_back() const noexcept;
  [[nodiscard]] Clock::time_point next_probe() const noexcept { return next_probe_; }

  /// Most rows per statement now (see the class comment).
  [[nodiscard]] std::size_t row_cap() const noexcept { return row_cap_; }
  /// Tracks statement timeouts and successes for the row cap; deliver() calls it for each
  /// write, callers for writes made elsewhere that succeeded.
  void note_write(const WriteResult& result, std::size_t rows);

 private:
  struct Run;
  void write_capped(std::span<const Event> rows, Run& run);
  void write_isolating(std::span<const Event> rows, Run& run);
  void take_result(std::span<const Event> rows, WriteResult result, Run& run);
  /// Whether a transient failure of `rows` is retried: then the pause has been made.
  bool retry_after_pause(std::span<const Event> rows, const Failure& failure, Run& run);
  void dead_letter(const Event& row, const Failure& failure, Run& run);

  Rules rules_;
  Hooks hooks_;
  std::shared_ptr<const Clock> clock_;
  Backoff backoff_;
  bool failing_ = false;
  Clock::time_point next_probe_{};
  std::size_t row_cap_;
  unsigned timeouts_in_a_row_ = 0;
};

}  // namespace trackevent::detail
