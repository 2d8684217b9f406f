#pragma once
// Waiting on a libpq connection's socket with a client-side deadline (pg::Connection's connect
// loop and its result reads). Separate from connection.cpp so a unit test can reach it.

#include <libpq-fe.h>

#include <chrono>

namespace trackevent::detail {

/// Waits until the socket of `conn` is readable (or writable, `for_write`): 1 ready, 0 the
/// deadline has passed (checked first: 0 once it has passed, whatever the socket), -1 error (no
/// socket, poll failed).
[[nodiscard]] int wait_socket(PGconn* conn, bool for_write,
                              std::chrono::steady_clock::time_point deadline) noexcept;

}  // namespace trackevent::detail
