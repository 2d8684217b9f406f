#pragma once
// SIGINT/SIGTERM handling for commands that deliver events: the handler only counts signals; the
// reader and the flush loop poll the count. One signal: stop reading, flush, spool the rest.
// Two: stop flushing and spool what is in memory at once.

namespace trackevent::cli {

/// Installs the counting handler for SIGINT and SIGTERM (without SA_RESTART, so a blocked read or
/// poll returns EINTR and notices).
void install_stop_handlers();

/// How many SIGINT/SIGTERM arrived since install_stop_handlers().
[[nodiscard]] int stop_signals() noexcept;

/// Blocks SIGINT/SIGTERM in the calling thread while alive. Threads started meanwhile (the
/// Tracker's) inherit the mask, so the signals reach the main thread and interrupt its reads.
class StopSignalsBlocked {
 public:
  StopSignalsBlocked();
  ~StopSignalsBlocked();
  StopSignalsBlocked(const StopSignalsBlocked&) = delete;
  StopSignalsBlocked& operator=(const StopSignalsBlocked&) = delete;
};

/// Ignores SIGPIPE for the whole process: a closed stdout must surface as EPIPE, not kill us.
void ignore_sigpipe();

}  // namespace trackevent::cli
