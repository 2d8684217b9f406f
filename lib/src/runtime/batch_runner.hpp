#pragma once
// BatchRunner: how the dispatcher hands whole batches to a sink, pipelined or not.

#include "trackevent/event.hpp"
#include "trackevent/sink.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

namespace trackevent::detail {

/// Writes whole batches, each as one transaction, possibly several at once: submit() hands one
/// over and returns; next_done() gives each back with its result once its write has finished.
/// The dispatcher forms the next batch meanwhile. ParallelSink (pg/parallel_sink.hpp) runs one
/// batch per connection; SyncRunner writes each batch within submit(). Used from one thread.
class BatchRunner {
 public:
  using Batch = std::shared_ptr<const std::vector<Event>>;
  struct Done {
    Batch batch;
    WriteResult result;
  };

  virtual ~BatchRunner() = default;
  /// True when submit() would start writing at once.
  [[nodiscard]] virtual bool has_free_lane() const noexcept = 0;
  /// Starts writing `batch` (whole, one transaction). Requires has_free_lane(). The runner keeps
  /// `batch` alive until next_done() hands it back.
  virtual void submit(Batch batch) noexcept = 0;
  /// A submitted batch whose write has finished, with its result; waits up to `timeout` for one.
  /// Empty when none finished in time (or none is outstanding).
  [[nodiscard]] virtual std::optional<Done> next_done(
      std::chrono::steady_clock::duration timeout) noexcept = 0;
  /// Submitted batches whose result next_done() has not handed back yet.
  [[nodiscard]] virtual std::size_t outstanding() const noexcept = 0;
};

/// The runner for any Sink: submit() writes the batch then and there (the caller is blocked for
/// the write, as with Sink::write), and next_done() hands the result back. One lane.
class SyncRunner final : public BatchRunner {
 public:
  explicit SyncRunner(std::shared_ptr<Sink> sink) noexcept : sink_(std::move(sink)) {}

  [[nodiscard]] bool has_free_lane() const noexcept override { return !done_.has_value(); }
  void submit(Batch batch) noexcept override;
  [[nodiscard]] std::optional<Done> next_done(
      std::chrono::steady_clock::duration timeout) noexcept override;
  [[nodiscard]] std::size_t outstanding() const noexcept override { return done_ ? 1 : 0; }

 private:
  std::shared_ptr<Sink> sink_;
  std::optional<Done> done_;
};

/// The runner for `sink`: the sink itself when it runs batches (a ParallelSink, as make_sink
/// builds for PostgreSQL), else a SyncRunner over it. Null for a null sink.
[[nodiscard]] std::shared_ptr<BatchRunner> make_runner(const std::shared_ptr<Sink>& sink);

}  // namespace trackevent::detail
