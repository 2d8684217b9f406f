#pragma once
// Integration tests' PostgreSQL setup: a database of the test's own, and the analytics_events
// table in it, made from schema/postgres the way the test chooses.

#include "config/database_url.hpp"
#include "schema/migrate.hpp"
#include "support/pg.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <cctype>
#include <fstream>
#include <sstream>
#include <string>

namespace trackevent::test {

/// How create_analytics_events() makes the table.
enum class SchemaVia {
  schema_file,  ///< runs schema/postgres/0001_create_analytics_events.sql as it is, nothing more
  migrate,      ///< trackevent::migrate(): the same SQL, built in, plus a schema_migrations row
};

/// The text of schema/postgres/0001_create_analytics_events.sql.
inline std::string analytics_events_sql() {
  std::ifstream in(std::string(TRACKEVENT_SOURCE_DIR) +
                   "/schema/postgres/0001_create_analytics_events.sql");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Creates the analytics_events table in the database at `url`.
inline void create_analytics_events(const std::string& url, SchemaVia via) {
  if (via == SchemaVia::migrate) {
    trackevent::migrate(trackevent::parse_database_url(url));
    return;
  }
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  tx.exec(analytics_events_sql());
}

/// Drops and creates database `prefix` + the running test's name in lower case, on the test
/// server; returns its URL. The prefix keeps test programs that run at once apart.
inline std::string fresh_test_database(const std::string& prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = prefix + info->name();
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return fresh_database(name);
}

}  // namespace trackevent::test
