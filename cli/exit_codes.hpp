#pragma once
// Exit statuses of the trackevent CLI, as man/trackevent.1 (EXIT STATUS) documents them. The values
// come from BSD sysexits(3) so shell scripts and cron wrappers can tell the cases apart.

namespace trackevent::cli::exit_code {

/// Every event accepted (stored, or spooled for later); the command did what was asked.
inline constexpr int ok = 0;
/// Something failed that has no more specific status (e.g. a migration checksum mismatch).
inline constexpr int failure = 1;
/// `status`: the host is degraded (spool older than --max-age, dead letters, pending
/// migrations). Not a sysexits value: a monitoring check's "warning".
inline constexpr int degraded = 2;
/// EX_USAGE: bad command line (unknown option, missing value, malformed flag value).
inline constexpr int usage = 64;
/// EX_DATAERR: some input lines were rejected; the rest were accepted.
inline constexpr int data_error = 65;
/// EX_NOINPUT: an input file (or the catalog) could not be opened.
inline constexpr int no_input = 66;
/// EX_UNAVAILABLE: the database is unreachable for a command that needs it (migrate, flush,
/// --strict).
inline constexpr int unavailable = 69;
/// EX_IOERR: events could be neither delivered nor spooled. The one case where data is lost.
inline constexpr int data_lost = 74;
/// EX_TEMPFAIL: `flush` ran out of time with events still in the spool; try again later.
inline constexpr int temp_fail = 75;

}  // namespace trackevent::cli::exit_code
