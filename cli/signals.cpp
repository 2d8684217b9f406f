#include "signals.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>

namespace trackevent::cli {
namespace {

// Lock-free atomics are async-signal-safe; nothing else happens in the handler.
std::atomic<int> g_stop_signals{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void count_stop_signal(int /*signo*/) { g_stop_signals.fetch_add(1); }

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
