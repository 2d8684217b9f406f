// Records one event into the SQLite store given as argv[1] through the typed struct the catalog's
// schema generates; exit 0 when it was stored.
#include "consumer_events.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <trackevent/tracker.hpp>

static_assert(consumer::events::consumer_built == std::string_view{"consumer.built"});

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: consumer DB_PATH SPOOL_DIR\n");
    return 64;
  }
  trackevent::TrackerOptions options;
  options.database_url = std::string("sqlite:") + argv[1];
  options.spool_dir = argv[2];
  trackevent::Tracker tracker{options};
  // The typed overload generated from the schema of consumer.built.
  track(tracker, 1, 2, consumer::events::ConsumerBuilt{.attempt = 1, .via = "find_package"});
  const auto flushed = tracker.flush(std::chrono::seconds{10});
  const auto stats = tracker.stats();
  if (!flushed.complete || stats.stored != 1) {
    std::fprintf(stderr, "consumer: complete=%d stored=%llu\n", flushed.complete ? 1 : 0,
                 static_cast<unsigned long long>(stats.stored));
    return 1;
  }
  return 0;
}
