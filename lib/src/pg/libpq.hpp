#pragma once
// libpq, loaded the first time a PostgreSQL target is used rather than when the library is.
//
// libpq's dependency closure (OpenSSL, GSSAPI/Kerberos, LDAP, ...) is most of the start-up time
// of a process that links it: ~10 ms on the 2-core machine of bench/README.md, against ~2 ms for
// the rest of the trackevent CLI. A program that only uses the SQLite store or the spool (and
// `trackevent send --background`, which only spools) should not pay for it, so libtrackevent
// is not linked with libpq: it reaches libpq's functions through this table. The library is
// linked with -Wl,--no-undefined, so a direct call to a libpq function fails the build.
//
// Use: `detail::pq().PQexec(conn, sql)`. The first call dlopen()s libpq and resolves every
// function below; it throws std::runtime_error when that fails (a broken installation). Every
// user calls it first in a context that may throw (a constructor, a URL check), so the calls in
// noexcept code never load and never throw.

#include <libpq-fe.h>

namespace trackevent::detail {

// Every libpq function the library calls, once.
// clang-format off
#define TRACKEVENT_LIBPQ_FUNCTIONS(X)                                                           \
  X(PQcancel) X(PQclear) X(PQcmdTuples) X(PQconnectPoll) X(PQconnectStartParams)                \
  X(PQconnectdbParams) X(PQconninfo) X(PQconninfoFree) X(PQconninfoParse) X(PQconsumeInput)     \
  X(PQerrorMessage) X(PQexec) X(PQfinish) X(PQflush) X(PQfreeCancel) X(PQfreemem)               \
  X(PQgetCancel) X(PQgetResult) X(PQisBusy) X(PQputCopyData) X(PQputCopyEnd)                    \
  X(PQresultErrorField) X(PQresultErrorMessage) X(PQresultStatus) X(PQsendQuery)                \
  X(PQsendQueryParams) X(PQsetErrorVerbosity) X(PQsetNoticeProcessor) X(PQsetnonblocking)       \
  X(PQsocket) X(PQstatus) X(PQtransactionStatus)
// clang-format on

struct Libpq {
#define TRACKEVENT_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
  TRACKEVENT_LIBPQ_FUNCTIONS(TRACKEVENT_LIBPQ_MEMBER)
#undef TRACKEVENT_LIBPQ_MEMBER
};

/// The loaded table (loaded on the first call, thread-safe). Throws std::runtime_error naming
/// the library and dlerror() when libpq or one of its functions cannot be loaded.
[[nodiscard]] const Libpq& pq();

}  // namespace trackevent::detail
