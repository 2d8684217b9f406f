#pragma once
// SIGINT/SIGTERM handling for commands that deliver events: the handler only counts signals; the
// reader and the flush loop poll the count. One signal: stop reading, flush, spool the rest.
// Two: stop flushing and spool what is in memory at once. Either way the command then writes its
// summary and the process ends by the first signal (end_by_stop_signal()), so the shell sees
// status 130 (SIGINT) or 143 (SIGTERM).

namespace trackevent::cli {

/// Installs the counting handler for SIGINT and SIGTERM (without SA_RESTART, so a blocked read or
/// poll returns EINTR and notices).
void install_stop_handlers();

/// How many SIGINT/SIGTERM arrived since install_stop_handlers().
[[nodiscard]] int stop_signals() noexcept;

/// The first SIGINT or SIGTERM that arrived since install_stop_handlers(); 0 when none did.
[[nodiscard]] int first_stop_signal() noexcept;

/// When a SIGINT or SIGTERM arrived: flushes stdout, stderr and the log, restores the default
/// action of the first such signal, unblocks it and raises it again, so the process dies of it
/// (what shells, timeout(1), cron wrappers and systemd expect of a stopped program). Returns
/// only when no such signal arrived. Call it once the command has finished, from the thread
/// that runs it, with no other thread left running.
void end_by_stop_signal() noexcept;

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
