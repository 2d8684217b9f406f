// A program that records analytics events with libtrackevent.
//
// Usage: trackevent_example [DB_PATH [SPOOL_DIR]]
//   With DB_PATH, events go to the SQLite file DB_PATH; without, the Tracker reads
//   TRACKEVENT_DATABASE_URL / DATABASE_URL (e.g. postgresql://...) or uses the embedded store.
#include "events.hpp"  // generated from events.json by trackevent_catalog_header()

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <trackevent/tracker.hpp>

int main(int argc, char** argv) {
  // Every option has a documented default; from_env() picks the database from the environment.
  trackevent::TrackerOptions options = trackevent::TrackerOptions::from_env();
  if (argc > 1) options.database_url = std::string("sqlite:") + argv[1];
  if (argc > 2) options.spool_dir = argv[2];
  options.on_error = [](const trackevent::ErrorInfo& e) {
    std::fprintf(stderr, "trackevent: %s: %s\n", e.message.c_str(), e.detail.c_str());
  };

  trackevent::Tracker tracker{options};

  // track() returns at once: it only queues the event. A typo such as
  // events::dataset_uplaoded would not compile.
  const std::int64_t org_id = 1;
  tracker.track(org_id, 42, events::dataset_uploaded, {{"rows", 1200}, {"bytes", 48213}});
  tracker.track(org_id, std::nullopt, events::backup_completed);

  // Optional: wait (bounded) for delivery. Without it, ~Tracker() delivers within
  // shutdown_timeout and spools whatever is left for the next run.
  const trackevent::FlushResult flushed = tracker.flush(std::chrono::seconds{5});
  const trackevent::Stats stats = tracker.stats();
  std::printf("accepted %llu, stored %llu, spooled %llu\n",
              static_cast<unsigned long long>(stats.accepted),
              static_cast<unsigned long long>(stats.stored),
              static_cast<unsigned long long>(stats.spooled));
  return flushed.complete ? 0 : 1;
}
