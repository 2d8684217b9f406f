#include "pg/pg_wait.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>

namespace trackevent::detail {

int wait_socket(PGconn* conn, bool for_write,
                std::chrono::steady_clock::time_point deadline) noexcept {
  using std::chrono::milliseconds;
  const auto left_ms = [deadline] {
    return std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now())
        .count();
  };
  // The deadline first: a caller that retries on -1 (the connect loop calls PQconnectPoll again)
  // must still stop once it has passed, socket or not.
  if (left_ms() <= 0) return 0;
  const int fd = PQsocket(conn);
  if (fd < 0) return -1;
  while (true) {
    const auto left = left_ms();
    if (left <= 0) return 0;
    pollfd p{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
    if (n > 0) return 1;  // POLLERR/POLLHUP too: libpq reports the error when it reads
    if (n < 0 && errno != EINTR) return -1;
  }
}

}  // namespace trackevent::detail
