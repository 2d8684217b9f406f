#pragma once
// Runs a program the way a shell pipeline would: stdin/stdout/stderr on pipes (or stdin from a
// file), environment overrides, and a hard deadline that kills the child and fails the test.
// Header-only so each test program can include it.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace trackevent::test {

struct RunResult {
  int exit_code = -1;   ///< the exit status, or 128 + signal when the child was killed
  int term_signal = 0;  ///< the signal that ended the child, 0 when it exited
  bool timed_out = false;
  std::string out;
  std::string err;
};

struct RunOptions {
  std::vector<std::string> args;  ///< argv[1..]; argv[0] is the program
  std::string input;              ///< written to the child's stdin, which is then closed
  /// Read stdin from this file instead of a pipe (so the child sees a regular file).
  std::optional<std::string> stdin_file;
  /// Environment changes: a value sets the variable, nullopt removes it.
  std::map<std::string, std::optional<std::string>> env;
  std::chrono::milliseconds timeout{60000};
  /// Close our end of the child's stdout after this many bytes (to test a vanishing reader).
  std::optional<std::size_t> close_stdout_after;
  /// Keep stdin open after `input` is written, until `on_output` returns true once (or forever).
  bool keep_stdin_open = false;
  /// Called whenever output arrives with the child's pid and what was captured so far; return
  /// true to close stdin. Lets a test act on what the child did (e.g. signal it) without sleeping.
  std::function<bool(pid_t, const RunResult&)> on_output;
};

namespace detail {

inline std::vector<std::string> child_environment(
    const std::map<std::string, std::optional<std::string>>& overrides) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv{*e};
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [key, value] : overrides) {
    if (value) {
      env[key] = *value;
    } else {
      env.erase(key);
    }
  }
  std::vector<std::string> out;
  for (const auto& [key, value] : env) out.push_back(key + "=" + value);
  return out;
}

inline void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

/// Starts `program` with `args` (argv[1..]) and the environment changed by `env`, its stdin,
/// stdout and stderr on the given descriptors, and every signal at its default and unblocked
/// (the test runner may ignore or block some). Returns the pid, or -1 when fork() failed.
inline pid_t spawn(const std::string& program, const std::vector<std::string>& args,
                   const std::map<std::string, std::optional<std::string>>& env, int in, int out,
                   int err) {
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = child_environment(env);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace detail

/// Runs `program` to completion (or the deadline). A deadline overrun kills the child with
/// SIGKILL and records a test failure: a CLI that hangs is a bug.
inline RunResult run_program(const std::string& program, const RunOptions& options) {
  RunResult result;
  int in_pipe[2] = {-1, -1};
  int out_pipe[2];
  int err_pipe[2];
  int stdin_fd = -1;
  if (options.stdin_file) {
    stdin_fd = ::open(options.stdin_file->c_str(), O_RDONLY | O_CLOEXEC);
    if (stdin_fd < 0) {
      ADD_FAILURE() << "cannot open " << *options.stdin_file;
      return result;
    }
  } else if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe failed";
    return result;
  }
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe failed";
    return result;
  }

  const pid_t pid =
      detail::spawn(program, options.args, options.env, options.stdin_file ? stdin_fd : in_pipe[0],
                    out_pipe[1], err_pipe[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork failed: " << std::strerror(errno);
    return result;
  }

  if (stdin_fd >= 0) ::close(stdin_fd);
  if (in_pipe[0] >= 0) ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  int in_fd = in_pipe[1];
  int out_fd = out_pipe[0];
  int err_fd = err_pipe[0];
  if (in_fd >= 0) detail::set_nonblocking(in_fd);
  detail::set_nonblocking(out_fd);
  detail::set_nonblocking(err_fd);

  // Writing to a child that exited early must not kill the test program.
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous);

  std::size_t written = 0;
  bool user_closed_stdin = false;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  const auto close_fd = [](int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  };
  while (out_fd >= 0 || err_fd >= 0) {
    if (in_fd >= 0 && written == options.input.size() &&
        (!options.keep_stdin_open || user_closed_stdin)) {
      close_fd(in_fd);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      result.timed_out = true;
      break;
    }
    std::vector<pollfd> fds;
    if (in_fd >= 0 && written < options.input.size()) fds.push_back({in_fd, POLLOUT, 0});
    if (out_fd >= 0) fds.push_back({out_fd, POLLIN, 0});
    if (err_fd >= 0) fds.push_back({err_fd, POLLIN, 0});
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    const int ready =
        ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, 100)));
    if (ready < 0 && errno != EINTR) break;
    bool got_output = false;
    for (const auto& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == in_fd) {
        const ssize_t n =
            ::write(in_fd, options.input.data() + written, options.input.size() - written);
        if (n > 0) written += static_cast<std::size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          written = options.input.size();  // the child closed its stdin; stop feeding it
          close_fd(in_fd);
        }
        continue;
      }
      char buf[65536];
      const ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n > 0) {
        (p.fd == out_fd ? result.out : result.err).append(buf, static_cast<std::size_t>(n));
        got_output = true;
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        if (p.fd == out_fd) {
          close_fd(out_fd);
        } else {
          close_fd(err_fd);
        }
      }
    }
    if (options.close_stdout_after && out_fd >= 0 &&
        result.out.size() >= *options.close_stdout_after) {
      close_fd(out_fd);
    }
    if (got_output && options.on_output && !user_closed_stdin && options.on_output(pid, result)) {
      user_closed_stdin = true;
    }
  }
  close_fd(in_fd);
  close_fd(out_fd);
  close_fd(err_fd);

  int status = 0;
  if (result.timed_out) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ADD_FAILURE() << "timed out after " << options.timeout.count() << " ms: " << program
                  << "\nstderr so far:\n"
                  << result.err;
  } else {
    // The pipes closed; the child may still be finishing (or stuck): keep the deadline.
    for (;;) {
      const pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        result.timed_out = true;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "timed out waiting for exit: " << program;
        break;
      }
      ::usleep(2000);
    }
  }
  ::sigaction(SIGPIPE, &previous, nullptr);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
    result.exit_code = 128 + result.term_signal;
  }
  return result;
}

}  // namespace trackevent::test
