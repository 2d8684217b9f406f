// replay_dead_letters() against a real PostgreSQL while another thread keeps appending dead
// letters, as a concurrent `flush` does: nothing is lost, nothing is left twice.

#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "spool/dead_letter_file.hpp"
#include "spool/spool.hpp"
#include "support/pg.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace trackevent;
using namespace trackevent::detail;

namespace {

TEST(DeadLetterReplay, ConcurrentAppendsAreNeitherLostNorDuplicated) {
  TRACKEVENT_REQUIRE_PG();
  const std::string url = test::fresh_database("dead_letter_replay");
  const DbTarget target = parse_database_url(url);
  (void)migrate(target);
  char tmpl[] = "/tmp/trackevent-dlr.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path dir = tmpl;

  constexpr int kEvents = 300;
  std::vector<Event> events;
  for (int i = 0; i < kEvents; ++i) {
    Event e;
    e.event_id = make_uuid_v7();
    e.org_id = 1 + i % 5;
    e.event_name = "user.signed_in";
    e.metadata = "{\"i\":" + std::to_string(i) + "}";
    e.occurred_at_us = now_unix_us();
    events.push_back(e);
  }
  std::atomic<bool> done{false};
  std::thread appender([&] {
    DeadLetters dead(dir);
    for (const Event& e : events) ASSERT_TRUE(dead.append(e, "refused once", "23514"));
    done = true;
  });
  ReplayOptions options;
  options.batch_size = 37;
  int rounds = 0;
  for (bool last = false; !last; ++rounds) {
    last = done.load();  // one more round after the appender has finished
    const ReplayResult r = replay_dead_letters(target, dir, options);
    ASSERT_TRUE(r.outcome == ReplayResult::Outcome::done) << r.error;
    EXPECT_EQ(r.refused, 0U);
  }
  appender.join();
  // Whatever the last round left (appended after its snapshot) goes now.
  ASSERT_EQ(replay_dead_letters(target, dir, options).outcome, ReplayResult::Outcome::done);

  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM analytics_events")[0].as<int>(), kEvents);
  std::ifstream in(dir / kDeadLetterFile);
  std::stringstream rest;
  rest << in.rdbuf();
  EXPECT_EQ(rest.str(), "") << "after " << rounds << " rounds";
  fs::remove_all(dir);
}

}  // namespace
