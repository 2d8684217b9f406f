#pragma once
// Shared helpers for the black-box CLI tests: a private temp directory per test, the CLI run with
// an environment isolated from the developer's (no stray DATABASE_URL, spool or catalog), and
// readers for the JSON log lines and the SQLite store.

#include "support/net.hpp"
#include "support/subprocess.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace trackevent::test {

/// A directory (mode 0700, as the spool requires) removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "trackevent-cli.XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream out{path, std::ios::binary};
  out << content;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Options to run the CLI with XDG dirs and the spool inside `home`, and no database or catalog
/// from the outside environment.
inline RunOptions cli_options(const TempDir& home, std::vector<std::string> args) {
  RunOptions options;
  options.args = std::move(args);
  options.env = {
      {"XDG_DATA_HOME", home.file("data")},         {"XDG_STATE_HOME", home.file("state")},
      {"TRACKEVENT_SPOOL_DIR", home.file("spool")}, {"HOME", home.path().string()},
      {"TRACKEVENT_DATABASE_URL", std::nullopt},    {"DATABASE_URL", std::nullopt},
      {"TRACKEVENT_CATALOG", std::nullopt},         {"NO_COLOR", std::nullopt},
  };
  return options;
}

inline RunResult run_cli(const TempDir& home, std::vector<std::string> args, std::string input = {},
                         std::map<std::string, std::optional<std::string>> env = {},
                         std::chrono::milliseconds timeout = std::chrono::milliseconds{60000}) {
  RunOptions options = cli_options(home, std::move(args));
  options.input = std::move(input);
  options.timeout = timeout;
  for (auto& [k, v] : env) options.env[k] = v;
  return run_program(TRACKEVENT_BIN, options);
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// Every stderr line parsed as JSON; a line that is not valid JSON fails the test.
inline std::vector<nlohmann::json> log_lines(const std::string& err) {
  std::vector<nlohmann::json> out;
  for (const auto& line : split_lines(err)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "stderr line is not JSON: " << line;
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

inline std::vector<nlohmann::json> lines_with_msg(const std::vector<nlohmann::json>& logs,
                                                  const std::string& msg) {
  std::vector<nlohmann::json> out;
  for (const auto& j : logs) {
    if (j.value("msg", "") == msg) out.push_back(j);
  }
  return out;
}

/// The "summary" line, which must be the last line on stderr.
inline nlohmann::json summary_of(const RunResult& r) {
  auto logs = log_lines(r.err);
  if (logs.empty()) {
    ADD_FAILURE() << "no log lines on stderr";
    return nlohmann::json::object();
  }
  EXPECT_EQ(logs.back().value("msg", ""), "summary") << r.err;
  return logs.back();
}

/// Runs one query returning a single integer on a SQLite file (-1 on error). It waits up to 10 s
/// for a lock held by a process still writing (a background deliverer creating the store).
inline long long sqlite_scalar(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  long long value = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      value = sqlite3_column_int64(stmt, 0);
    } else {
      ADD_FAILURE() << "sqlite: " << sqlite3_errmsg(db) << " in " << sql;
    }
    sqlite3_finalize(stmt);
  } else {
    ADD_FAILURE() << "cannot open " << db_path;
  }
  sqlite3_close(db);
  return value;
}

/// Text column of the first row (empty on error or NULL).
inline std::string sqlite_text(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string value;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

/// A generated valid event line.
inline std::string event_line(int i, const std::string& name = "user.signed_in") {
  nlohmann::json j{{"org_id", 1 + i % 7},
                   {"user_id", 100 + i},
                   {"event_name", name},
                   {"metadata", {{"i", i}, {"via", "test"}}}};
  return j.dump();
}

/// A TCP port on 127.0.0.1 with nothing listening (bound once, then released).

}  // namespace trackevent::test
