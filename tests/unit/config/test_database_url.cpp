// Database URL resolution order, kinds, and password redaction in every form libpq accepts.
#include "config/database_url.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

using trackevent::DbTarget;
using trackevent::parse_database_url;
using trackevent::redact_conninfo;
using trackevent::resolve_database;

namespace {

/// Sets (or unsets, with nullptr) an environment variable for one test, restoring it after.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~EnvVar() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

constexpr auto kPg = DbTarget::Kind::postgres;
constexpr auto kSqlite = DbTarget::Kind::sqlite;

}  // namespace

TEST(ResolveDatabase, CliValueWins) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", "postgres://a/x"};
  EnvVar b{"DATABASE_URL", "postgres://b/x"};
  const DbTarget t = resolve_database(std::string("postgresql://cli/db"));
  EXPECT_EQ(t.kind, kPg);
  EXPECT_EQ(t.conninfo, "postgresql://cli/db");
}

TEST(ResolveDatabase, TrackeventVariableBeforeDatabaseUrl) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", "postgres://a/x"};
  EnvVar b{"DATABASE_URL", "postgres://b/x"};
  EXPECT_EQ(resolve_database(std::nullopt).conninfo, "postgres://a/x");
}

TEST(ResolveDatabase, DatabaseUrlWhenTrackeventVariableUnsetOrEmpty) {
  EnvVar b{"DATABASE_URL", "host=b dbname=x"};
  {
    EnvVar a{"TRACKEVENT_DATABASE_URL", nullptr};
    const DbTarget t = resolve_database(std::nullopt);
    EXPECT_EQ(t.kind, kPg);
    EXPECT_EQ(t.conninfo, "host=b dbname=x");
  }
  EnvVar a{"TRACKEVENT_DATABASE_URL", ""};
  EXPECT_EQ(resolve_database(std::nullopt).conninfo, "host=b dbname=x");
}

TEST(ResolveDatabase, EmptyCliValueCountsAsUnset) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", "sqlite:/tmp/x.db"};
  const DbTarget t = resolve_database(std::string(""));
  EXPECT_EQ(t.kind, kSqlite);
  EXPECT_EQ(t.conninfo, "/tmp/x.db");
}

TEST(ResolveDatabase, EmbeddedStoreUnderXdgDataHome) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", nullptr};
  EnvVar b{"DATABASE_URL", nullptr};
  EnvVar x{"XDG_DATA_HOME", "/srv/data"};
  const DbTarget t = resolve_database(std::nullopt);
  EXPECT_EQ(t.kind, kSqlite);
  EXPECT_EQ(t.conninfo, "/srv/data/trackevent/events.db");
}

TEST(ResolveDatabase, EmbeddedStoreUnderHomeWithoutXdg) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", nullptr};
  EnvVar b{"DATABASE_URL", nullptr};
  EnvVar x{"XDG_DATA_HOME", nullptr};
  EnvVar h{"HOME", "/home/someone"};
  const DbTarget t = resolve_database(std::nullopt);
  EXPECT_EQ(t.kind, kSqlite);
  EXPECT_EQ(t.conninfo, "/home/someone/.local/share/trackevent/events.db");
}

TEST(ResolveDatabase, RelativeXdgDataHomeIsIgnored) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", nullptr};
  EnvVar b{"DATABASE_URL", nullptr};
  EnvVar x{"XDG_DATA_HOME", "relative/dir"};
  EnvVar h{"HOME", "/home/someone"};
  EXPECT_EQ(resolve_database(std::nullopt).conninfo,
            "/home/someone/.local/share/trackevent/events.db");
}

TEST(ResolveDatabase, InvalidEnvValueThrows) {
  EnvVar a{"TRACKEVENT_DATABASE_URL", "mysql://u@h/db"};
  EXPECT_THROW((void)resolve_database(std::nullopt), std::invalid_argument);
}

TEST(ParseDatabaseUrl, PostgresForms) {
  for (const char* url : {"postgres://u@h/db", "postgresql://u:pw@h:5433/db?sslmode=disable",
                          "postgresql:///db?host=/tmp", "host=localhost dbname=x",
                          "dbname = 'my db' user=u", "service=prod", "  host=h  "}) {
    const DbTarget t = parse_database_url(url);
    EXPECT_EQ(t.kind, kPg) << url;
  }
  EXPECT_EQ(parse_database_url("  postgres://h/db\n").conninfo, "postgres://h/db");
}

TEST(ParseDatabaseUrl, SqliteForms) {
  EXPECT_EQ(parse_database_url("sqlite:/var/lib/x.db").conninfo, "/var/lib/x.db");
  EXPECT_EQ(parse_database_url("sqlite:events.db").conninfo, "events.db");
  EXPECT_EQ(parse_database_url("sqlite:///var/lib/x.db").conninfo, "/var/lib/x.db");
  EXPECT_EQ(parse_database_url("sqlite://rel/x.db").conninfo, "rel/x.db");
  EXPECT_EQ(parse_database_url("sqlite:/var/lib/x.db").kind, kSqlite);
}

TEST(ParseDatabaseUrl, RejectsEverythingElse) {
  for (const char* url : {"", "   ", "mysql://u@h/db", "http://h/", "just-a-name",
                          "sqlite:", "sqlite://", "/var/lib/x.db", "host=h nosuchoption=1",
                          "host='unterminated", "postgres://h/db?nosuchparam=1"}) {
    EXPECT_THROW((void)parse_database_url(url), std::invalid_argument) << url;
  }
}

TEST(ParseDatabaseUrl, ErrorMessagesNeverShowThePassword) {
  for (const char* url :
       {"mysql://user:hunter2@h/db", "postgres://user:hunter2@[::1/db",
        "postgres://user:hunter2@h/db?bogus=1", "password=hunter2 nosuchoption=1",
        "host=h password='hunter2", "postgresql://h/db?password=hunter2&bogus=1"}) {
    try {
      (void)parse_database_url(url);
      ADD_FAILURE() << "accepted " << url;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
    }
  }
}

TEST(ParseDatabaseUrl, UnknownKeywordIsNamed) {
  try {
    (void)parse_database_url("host=h pasword=x");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("pasword"), std::string::npos) << e.what();
  }
}

TEST(RedactConninfo, UrlUserinfo) {
  EXPECT_EQ(redact_conninfo("postgresql://u:secret@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(redact_conninfo("postgres://u:s%40cr:et@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require");
  EXPECT_EQ(redact_conninfo("postgres://u:p@ss/w@h/db"), "postgres://u:***@h/db");
  EXPECT_EQ(redact_conninfo("postgres://u:@h/db"), "postgres://u:***@h/db");
}

TEST(RedactConninfo, UrlWithoutPasswordUnchanged) {
  for (const char* url : {"postgresql://u@h/db", "postgresql://h/db", "postgresql:///db",
                          "postgresql://h:5432/db?sslmode=disable&application_name=x"}) {
    EXPECT_EQ(redact_conninfo(url), url);
  }
}

TEST(RedactConninfo, UrlQueryParameter) {
  EXPECT_EQ(redact_conninfo("postgresql://u@h/db?password=secret"),
            "postgresql://u@h/db?password=***");
  EXPECT_EQ(redact_conninfo("postgresql://h/db?sslmode=disable&password=secret&x=1"),
            "postgresql://h/db?sslmode=disable&password=***&x=1");
  EXPECT_EQ(redact_conninfo("postgresql://h/db?%70assword=secret"),
            "postgresql://h/db?%70assword=***");
  EXPECT_EQ(redact_conninfo("postgresql://u:a@h/db?password=b"),
            "postgresql://u:***@h/db?password=***");
}

TEST(RedactConninfo, KeywordValue) {
  EXPECT_EQ(redact_conninfo("host=h password=secret dbname=x"), "host=h password=*** dbname=x");
  EXPECT_EQ(redact_conninfo("password=secret"), "password=***");
  EXPECT_EQ(redact_conninfo("host=h password = secret"), "host=h password = ***");
  EXPECT_EQ(redact_conninfo("host=h password='a secret with spaces' user=u"),
            "host=h password=*** user=u");
  EXPECT_EQ(redact_conninfo(R"(password='it\'s \\ here' user=u)"), "password=*** user=u");
  EXPECT_EQ(redact_conninfo(R"(password=back\ slash user=u)"), "password=*** user=u");
  EXPECT_EQ(redact_conninfo("host=h\tpassword=secret\nuser=u"), "host=h\tpassword=***\nuser=u");
  EXPECT_EQ(redact_conninfo("host=h dbname=x"), "host=h dbname=x");
}

TEST(RedactConninfo, MalformedKeywordValueMasksTheRest) {
  const std::string r = redact_conninfo("host=h password='unterminated secret");
  EXPECT_EQ(r.find("secret"), std::string::npos) << r;
  EXPECT_EQ(r.find("unterminated"), std::string::npos) << r;
}

TEST(RedactConninfo, UrlInsideDbname) {
  const std::string r = redact_conninfo("dbname=postgresql://u:secret@h/db connect_timeout=3");
  EXPECT_EQ(r.find("secret"), std::string::npos) << r;
  EXPECT_NE(r.find("connect_timeout=3"), std::string::npos) << r;
}

TEST(RedactConninfo, SqliteUnchanged) {
  EXPECT_EQ(redact_conninfo("sqlite:/var/lib/x.db"), "sqlite:/var/lib/x.db");
}
