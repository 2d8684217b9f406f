#pragma once
// Integration tests talk to the disposable PostgreSQL that scripts/pg-test-server starts.

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <string>

namespace trackevent::test {

/// URL of the test server's maintenance database, or "" when the suite runs without one.
inline std::string pg_admin_url() {
  const char* url = std::getenv("TRACKEVENT_TEST_PG_URL");
  return url ? url : "";
}

/// Skips the test when there is no test server, unless TRACKEVENT_REQUIRE_PG=1 (the README's
/// test command sets it), in which case a missing server is a failure.
#define TRACKEVENT_REQUIRE_PG()                                                           \
  do {                                                                                    \
    if (::trackevent::test::pg_admin_url().empty()) {                                     \
      if (std::getenv("TRACKEVENT_REQUIRE_PG")) FAIL() << "TRACKEVENT_TEST_PG_URL unset"; \
      GTEST_SKIP() << "no test PostgreSQL (run through scripts/pg-test-server run)";      \
    }                                                                                     \
  } while (0)

/// The first column of the one row `sql` returns at `url`, as text ("<null>" for NULL).
inline std::string sql_text(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  const pqxx::row r = tx.exec1(sql);
  return r[0].is_null() ? "<null>" : r[0].c_str();
}

/// The same, as an integer (count(*) and the like).
inline long long sql_int(const std::string& url, const std::string& sql) {
  return std::stoll(sql_text(url, sql));
}

/// Drops and creates database `name` on the test server; returns its URL.
inline std::string fresh_database(const std::string& name) {
  pqxx::connection admin{pg_admin_url()};
  pqxx::nontransaction tx{admin};
  tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name) + " WITH (FORCE)");
  tx.exec("CREATE DATABASE " + tx.quote_name(name));
  std::string url = pg_admin_url();
  return url.substr(0, url.rfind('/') + 1) + name;
}

/// A login role limited to one connection at a time (CONNECTION LIMIT 1), allowed to INSERT
/// into and SELECT from analytics_events of the database at `url`; dropped again at the end.
class OneConnectionRole {
 public:
  explicit OneConnectionRole(const std::string& url)
      // The pid alone repeats within a CI run (pid_max is 32768 here); the clock makes the name
      // unique to this object, so no other test's role or session can ever share it.
      : url_(url),
        name_("te_one_conn_" + std::to_string(::getpid()) + "_" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() %
                             1000000000)) {
    pqxx::connection c{url_};
    pqxx::nontransaction tx{c};
    tx.exec("DROP ROLE IF EXISTS " + name_);
    tx.exec("CREATE ROLE " + name_ + " LOGIN CONNECTION LIMIT 1");
    tx.exec("GRANT INSERT, SELECT ON analytics_events TO " + name_);
  }
  ~OneConnectionRole() {
    try {
      pqxx::connection c{url_};
      pqxx::nontransaction tx{c};
      tx.exec("DROP OWNED BY " + name_);
      tx.exec("DROP ROLE " + name_);
    } catch (const std::exception&) {  // the test server goes away after the run
    }
  }
  OneConnectionRole(const OneConnectionRole&) = delete;
  OneConnectionRole& operator=(const OneConnectionRole&) = delete;
  /// The database's URL as this role.
  [[nodiscard]] std::string url() const {
    return "postgresql://" + name_ + url_.substr(url_.find('@'));
  }

 private:
  std::string url_;
  std::string name_;
};

}  // namespace trackevent::test
