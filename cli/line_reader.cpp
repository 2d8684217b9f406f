#include "line_reader.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace trackevent::cli {
namespace {

// How long a wait for input lasts before should_stop() is polled again.
constexpr int kPollMillis = 200;

}  // namespace

LineReader::LineReader(int fd, std::size_t max_line_bytes, Hooks hooks)
    : fd_(fd), max_line_bytes_(max_line_bytes), hooks_(std::move(hooks)) {
  struct stat st {};
  // A regular file never blocks a read, so it needs no poll.
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) wait_with_poll_ = false;
}

void LineReader::emit_consumed() noexcept {
  if (hooks_.on_consumed && pos_ > consumed_from_) {
    hooks_.on_consumed(std::string_view{chunk_.data() + consumed_from_, pos_ - consumed_from_});
  }
  consumed_from_ = pos_;
}

bool LineReader::stop_requested() const { return hooks_.should_stop && hooks_.should_stop(); }

LineReader::Status LineReader::stop() noexcept {
  // Echo what was handed out, but not the start of an unterminated line: that stays unread.
  const std::size_t handed = std::max(consumed_from_, line_start_);
  if (hooks_.on_consumed && handed > consumed_from_) {
    hooks_.on_consumed(std::string_view{chunk_.data() + consumed_from_, handed - consumed_from_});
  }
  consumed_from_ = handed;
  return final_ = Status::stopped;
}

LineReader::Fill LineReader::fill() {
  // Before anything is echoed or read: at a stop, a line held unfinished stays unread.
  if (stop_requested()) return Fill::stopped;
  emit_consumed();
  pos_ = end_ = consumed_from_ = line_start_ = 0;
  for (;;) {
    if (wait_with_poll_) {
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, kPollMillis);
      if (ready == 0 || (ready < 0 && errno == EINTR)) {
        if (stop_requested()) return Fill::stopped;
        continue;
      }
      if (ready < 0) {
        error_ = std::strerror(errno);
        return Fill::error;
      }
      // POLLHUP/POLLERR: fall through to read(), which reports end of input or the error.
    }
    const ssize_t n = ::read(fd_, chunk_.data(), chunk_.size());
    if (n > 0) {
      end_ = static_cast<std::size_t>(n);
      bytes_read_ += static_cast<std::uint64_t>(n);
      return Fill::data;
    }
    if (n == 0) return Fill::end;
    if (errno == EINTR) {
      if (stop_requested()) return Fill::stopped;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_with_poll_ = true;  // a non-blocking descriptor: wait in poll instead of spinning
      continue;
    }
    error_ = std::strerror(errno);
    return Fill::error;
  }
}

LineReader::Status LineReader::finish_line(std::string_view tail, Line& line) {
  ++line_number_;
  // Everything up to pos_ (past this line's newline, or the end of input) is handed out now.
  handed_out_ = bytes_read_ - end_ + pos_;
  line_start_ = pos_;
  line = Line{};
  line.number = line_number_;
  in_line_ = false;
  if (skipping_) {
    skipping_ = false;
    line.too_long = true;
    line.length = skipped_length_ + tail.size();
    skipped_length_ = 0;
    return Status::line;
  }
  std::string_view text = tail;
  if (!partial_.empty()) {
    if (partial_.size() + tail.size() > max_line_bytes_ + 1) {
      line.too_long = true;
      line.length = partial_.size() + tail.size();
      partial_.clear();
      return Status::line;
    }
    partial_.append(tail);
    text = partial_;
  }
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  line.length = text.size();
  if (text.size() > max_line_bytes_) {
    line.too_long = true;
    partial_.clear();
    return Status::line;
  }
  line.text = text;
  return Status::line;
}

LineReader::Status LineReader::next(Line& line) {
  if (final_ != Status::line) return final_;
  // partial_ held the previous line when it spanned chunks; it is free again now.
  if (!in_line_) partial_.clear();
  for (;;) {
    if (pos_ == end_) {
      switch (fill()) {
        case Fill::data:
          break;
        case Fill::end:
          // Input that does not end in a newline still ends its last line.
          if (in_line_) return finish_line({}, line);
          return final_ = Status::end;
        case Fill::stopped:
          return stop();
        case Fill::error:
          return final_ = Status::error;
      }
    }
    // A complete line in memory is handed out even after a stop was requested: on a pipe, the
    // producer cannot send it again.
    const char* begin = chunk_.data() + pos_;
    const std::size_t available = end_ - pos_;
    const auto* newline = static_cast<const char*>(std::memchr(begin, '\n', available));
    if (newline != nullptr) {
      const auto length = static_cast<std::size_t>(newline - begin);
      pos_ += length + 1;
      return finish_line(std::string_view{begin, length}, line);
    }
    // The rest of the chunk starts (or continues) an unterminated line: at a stop it stays unread.
    if (stop_requested()) return stop();
    // Keep it (bounded) and read more.
    in_line_ = true;
    pos_ = end_;
    if (skipping_) {
      skipped_length_ += available;
    } else if (partial_.size() + available > max_line_bytes_ + 1) {
      skipping_ = true;
      skipped_length_ = partial_.size() + available;
      partial_.clear();
    } else {
      partial_.append(begin, available);
    }
  }
}

}  // namespace trackevent::cli
