// bench_sink: rows/s of the PostgreSQL sink with 1 and more connections (make_sink(..., N)).
//
//   bench_sink --db URL [--count 1000000] [--batch 5000] [--connections 1,2] [--pgdir DIR]
//              [--csv FILE]
//
// Generates --count events with bench/event_gen.hpp (parsed into Events up front, not timed),
// then for each connection count: TRUNCATE + CHECKPOINT, push every event through one sink in
// batches of --batch, check count(*), and print rows/s, the client's CPU seconds (this process,
// getrusage) and the server's CPU seconds (every process of the postmaster in DIR/data, from
// /proc) during the writes. --csv writes the same events as CSV for a `psql \copy` comparison.
// Needs a server with the analytics_events table (trackevent migrate).
#include "trackevent/event.hpp"

#include "config/database_url.hpp"
#include "event_gen.hpp"
#include "input/parse.hpp"
#include "pg/sqlstate.hpp"

#include <libpq-fe.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace {

double cpu_seconds_self() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

/// utime + stime of the postmaster and its children (backends, WAL writer, checkpointer).
double cpu_seconds_server(const std::string& pgdir) {
  if (pgdir.empty()) return 0;
  std::ifstream pidfile(pgdir + "/data/postmaster.pid");
  long postmaster = 0;
  if (!(pidfile >> postmaster)) return 0;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double total = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (const dirent* d = ::readdir(proc)) {
    const long pid = std::strtol(d->d_name, nullptr, 10);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(d->d_name) + "/stat");
    std::string text;
    std::getline(stat, text);
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (rest >> field) f.push_back(field);
    // After "pid (comm) ": state=0 ppid=1 ... utime=11 stime=12
    if (f.size() < 13) continue;
    const long ppid = std::strtol(f[1].c_str(), nullptr, 10);
    if (pid != postmaster && ppid != postmaster) continue;
    total += (std::strtod(f[11].c_str(), nullptr) + std::strtod(f[12].c_str(), nullptr)) / tick;
  }
  ::closedir(proc);
  return total;
}

std::string exec_scalar(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  std::string out;
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "bench_sink: %s", PQerrorMessage(c));
    PQfinish(c);
    std::exit(1);
  }
  PGresult* r = PQexec(c, sql.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
    std::fprintf(stderr, "bench_sink: %s: %s", sql.c_str(), PQerrorMessage(c));
    std::exit(1);
  }
  PQclear(r);
  PQfinish(c);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  std::string pgdir;
  std::string csv;
  std::size_t count = 1'000'000;
  std::size_t batch = 5000;
  std::vector<std::size_t> connections{1, 2};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--db")
      url = v;
    else if (k == "--pgdir")
      pgdir = v;
    else if (k == "--csv")
      csv = v;
    else if (k == "--count")
      count = std::stoul(v);
    else if (k == "--batch")
      batch = std::stoul(v);
    else if (k == "--connections") {
      connections.clear();
      std::istringstream in(v);
      for (std::string n; std::getline(in, n, ',');) connections.push_back(std::stoul(n));
    }
  }
  if (url.empty() || batch == 0) {
    std::fprintf(stderr,
                 "usage: bench_sink --db URL [--count N] [--batch N] [--connections 1,2] "
                 "[--pgdir DIR] [--csv FILE]\n");
    return 64;
  }

  std::vector<trackevent::Event> events;
  events.reserve(count);
  {
    trackevent::bench::EventGenerator gen(count);
    trackevent::bench::GenEvent ev;
    std::string line;
    std::ofstream csv_out;
    if (!csv.empty()) csv_out.open(csv);
    const trackevent::ParseOptions options;
    for (std::size_t i = 0; i < count; ++i) {
      gen.next(ev);
      line.clear();
      trackevent::bench::append_jsonl(ev, line);
      if (csv_out.is_open()) {
        std::string row;
        trackevent::bench::append_csv(ev, row);
        csv_out << row;
      }
      auto r = trackevent::parse_event_line(line, 0, options);
      if (auto* e = std::get_if<trackevent::Event>(&r)) events.push_back(std::move(*e));
    }
  }
  std::printf("%zu events generated, batch %zu\n", events.size(), batch);
  std::printf("%-12s %10s %12s %10s %12s %12s %10s\n", "connections", "seconds", "rows/s", "stored",
              "client CPU s", "server CPU s", "count(*)");

  const trackevent::DbTarget target = trackevent::parse_database_url(url);
  for (const std::size_t n : connections) {
    exec_scalar(url, "TRUNCATE analytics_events");
    exec_scalar(url, "CHECKPOINT");
    auto sink = trackevent::make_sink(target, {}, n);
    std::size_t stored = 0;
    const double client0 = cpu_seconds_self();
    const double server0 = cpu_seconds_server(pgdir);
    const auto t0 = std::chrono::steady_clock::now();
    const std::span<const trackevent::Event> all(events);
    for (std::size_t at = 0; at < all.size(); at += batch) {
      const auto part = all.subspan(at, std::min(batch, all.size() - at));
      const trackevent::WriteResult r = sink->write(part);
      if (!r.ok()) {
        std::fprintf(stderr, "bench_sink: write failed (%s): %s\n",
                     std::string(trackevent::to_string(r.failure->disposition)).c_str(),
                     r.failure->message.c_str());
        return 1;
      }
      stored += r.stored;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double client = cpu_seconds_self() - client0;
    const double server = cpu_seconds_server(pgdir) - server0;
    sink.reset();
    const std::string rows = exec_scalar(url, "SELECT count(*) FROM analytics_events");
    std::printf("%-12zu %10.2f %12.0f %10zu %12.2f %12.2f %10s\n", n, seconds,
                static_cast<double>(events.size()) / seconds, stored, client, server, rows.c_str());
    std::fflush(stdout);
  }
  return 0;
}
