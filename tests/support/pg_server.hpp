#pragma once
// A PostgreSQL server owned by one test, for fault injection: stop, restart, kill -9, SIGSTOP.
// Started with scripts/pg-test-server (initdb in a temp dir; as root the server runs as postgres).

#include <pqxx/pqxx>

#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace trackevent::test {

class PgServer {
 public:
  PgServer() {
    std::string templ = "/tmp/trackevent-fault.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = templ;
    try {
      start();
      std::ifstream port_file{dir_ + "/port"};
      port_file >> port_;
      // The script runs with synchronous_commit=off for speed; then a commit the client saw may
      // vanish when the server is killed, which would look like a lost event. ALTER ROLE ALL
      // outranks the command line, so every new session commits synchronously.
      exec("ALTER ROLE ALL SET synchronous_commit = on");
    } catch (...) {
      script("stop");
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      throw;
    }
  }
  ~PgServer() {
    // A SIGSTOPped server cannot shut down.
    signal_all(SIGCONT);
    script("stop");
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  /// TCP URL of the `postgres` database (TCP, so keepalives and timeouts are exercised).
  [[nodiscard]] std::string url(const std::string& user = "postgres") const {
    return "postgresql://" + user + "@127.0.0.1:" + std::to_string(port_) + "/postgres";
  }
  /// The URL the test's own connections use: bounded connect, and an application_name that
  /// fault loops keyed on 'trackevent' never match.
  [[nodiscard]] std::string admin_url() const {
    return url() + "?connect_timeout=5&application_name=fault_admin";
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }

  /// Starts the server, retrying briefly: after a kill -9 the old shared memory can still be
  /// attached for a moment by backends that have not yet noticed their postmaster died.
  void start() {
    for (int attempt = 1;; ++attempt) {
      if (script("start")) return;
      if (attempt == 5) throw std::runtime_error("could not start a PostgreSQL server in " + dir_);
      std::this_thread::sleep_for(std::chrono::milliseconds{500});
    }
  }
  void stop() { script("stop"); }
  void restart() {
    stop();
    start();
  }
  /// SIGKILL the postmaster, then wait (bounded) until it and its orphaned backends are gone,
  /// so a following start() does not trip over their shared memory.
  void kill9() {
    const pid_t pm = postmaster_pid();
    if (pm <= 0) return;
    std::vector<pid_t> family = children_of(pm);
    family.push_back(pm);
    ::kill(pm, SIGKILL);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    for (;;) {
      bool alive = false;
      for (const pid_t p : family) alive = alive || is_alive(p);
      if (!alive) return;
      if (std::chrono::steady_clock::now() >= deadline) {
        for (const pid_t p : family) ::kill(p, SIGKILL);  // orphans that never noticed
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
  }
  /// Freezes (SIGSTOP) or thaws (SIGCONT) the postmaster and every backend: a hung server.
  void freeze() { signal_all(SIGSTOP); }
  void thaw() { signal_all(SIGCONT); }

  /// Runs SQL on the server (as superuser), for setup, checks and faults like REVOKE.
  void exec(const std::string& sql) const {
    pqxx::connection c{admin_url()};
    pqxx::nontransaction tx{c};
    tx.exec(sql);
  }
  [[nodiscard]] long long scalar(const std::string& sql) const {
    pqxx::connection c{admin_url()};
    pqxx::nontransaction tx{c};
    return tx.exec1(sql)[0].as<long long>();
  }

 private:
  bool script(const std::string& verb) const {
    const std::string cmd = std::string{TRACKEVENT_SOURCE_DIR} + "/scripts/pg-test-server " + verb +
                            " '" + dir_ + "' >/dev/null";
    return std::system(cmd.c_str()) == 0;
  }
  [[nodiscard]] pid_t postmaster_pid() const {
    std::ifstream pid_file{dir_ + "/data/postmaster.pid"};
    pid_t pid = 0;
    pid_file >> pid;
    return pid;
  }
  /// Alive and not a zombie (a reaped-later orphan holds no shared memory).
  static bool is_alive(pid_t pid) {
    std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
    std::string line;
    if (!std::getline(stat, line)) return false;
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
  }
  static std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    for (const auto& entry : std::filesystem::directory_iterator{"/proc"}) {
      const std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat{entry.path() / "stat"};
      std::string line;
      std::getline(stat, line);
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      char state = 0;
      pid_t ppid = 0;
      std::istringstream rest{line.substr(close + 2)};
      rest >> state >> ppid;
      if (ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
    }
    return out;
  }
  void signal_all(int sig) const {
    const pid_t pm = postmaster_pid();
    if (pm <= 0) return;
    // The postmaster first: once stopped it forks no new backend that the scan could miss.
    ::kill(pm, sig);
    for (const pid_t child : children_of(pm)) ::kill(child, sig);
  }

  std::string dir_;
  int port_ = 0;
};

}  // namespace trackevent::test
