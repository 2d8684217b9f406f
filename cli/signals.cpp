#include "signals.hpp"

#include "log/log.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace trackevent::cli {
namespace {

// Lock-free atomics are async-signal-safe; nothing else happens in the handler.
std::atomic<int> g_stop_signals{0};
std::atomic<int> g_first_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void count_stop_signal(int signo) {
  int none = 0;
  g_first_signal.compare_exchange_strong(none, signo);
  g_stop_signals.fetch_add(1);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = count_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocked read/poll must return EINTR
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int stop_signals() noexcept { return g_stop_signals.load(); }

int first_stop_signal() noexcept { return g_first_signal.load(); }

void end_by_stop_signal() noexcept {
  const int signo = first_stop_signal();
  if (signo == 0) return;
  // Dying of a signal skips exit(): flush by hand what exit() would have (atexit handlers
  // included: the log's report of rate-limited lines).
  log::flush_suppressed();
  try {
    std::cout.flush();
    std::cerr.flush();
  } catch (...) {
  }
  std::fflush(nullptr);

  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  sigaction(signo, &action, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(signo);
  // Not reached: the default action of SIGINT and SIGTERM ends the process. Should it not, end
  // with the status a shell would have shown.
  std::_Exit(128 + signo);
}

StopSignalsBlocked::StopSignalsBlocked() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

StopSignalsBlocked::~StopSignalsBlocked() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

void ignore_sigpipe() {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  sigemptyset(&action.sa_mask);
  sigaction(SIGPIPE, &action, nullptr);
}

}  // namespace trackevent::cli
