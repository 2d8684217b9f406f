#include "tee.hpp"

#include "trackevent/log.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace trackevent::cli {

void Tee::write(std::string_view bytes) noexcept {
  while (fd_ >= 0 && !bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      written_ += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // stdout was handed to us non-blocking: wait for room rather than spin.
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    const int err = n < 0 ? errno : EIO;
    if (err == EPIPE) {
      log::info("stdout closed; no longer teeing", {{"tee_bytes", written_}});
    } else {
      log::warn("tee write failed; no longer teeing", {{"err", std::strerror(err)}});
    }
    fd_ = -1;
  }
}

}  // namespace trackevent::cli
