// Built with `c++ -std=c++20 main.cpp $(pkg-config --cflags --libs trackevent)`: records one
// event into the SQLite store given as argv[1]; exit 0 when it was stored.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <trackevent/tracker.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: consumer DB_PATH SPOOL_DIR\n");
    return 64;
  }
  trackevent::TrackerOptions options;
  options.database_url = std::string("sqlite:") + argv[1];
  options.spool_dir = argv[2];
  trackevent::Tracker tracker{options};
  tracker.track(1, std::nullopt, "consumer.pkgconfig", {{"via", "pkg-config"}});
  const auto flushed = tracker.flush(std::chrono::seconds{10});
  if (!flushed.complete || tracker.stats().stored != 1) {
    std::fprintf(stderr, "consumer: event not stored\n");
    return 1;
  }
  return 0;
}
