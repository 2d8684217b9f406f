#include "commands/status.hpp"

#include "trackevent/event.hpp"

#include "config/database_url.hpp"
#include "exit_codes.hpp"
#include "log/log.hpp"
#include "schema/migrate.hpp"
#include "spool/dead_letter_file.hpp"
#include "spool/delivery_record.hpp"
#include "spool/inspect.hpp"
#include "spool/spool.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace trackevent::cli {
namespace {

using nlohmann::json;

struct DbCheck {
  std::string target;  // password-free
  bool reachable = false;
  std::string error;
  std::string sqlstate;
  int schema_version = 0;
  int pending = 0;
  int mismatched = 0;
};

struct Report {
  std::string spool_dir;
  std::optional<detail::SpoolInspection> spool;
  std::string spool_error;
  std::optional<detail::DeadLetterInspection> dead;
  std::string dead_error;
  std::optional<detail::DeliveryState> delivery;
  std::string delivery_error;
  std::optional<DbCheck> db;
  std::int64_t now_us = 0;
  std::vector<std::string> problems;  // why the host is degraded
  int exit_status = exit_code::ok;
};

std::string health_of(int status) {
  switch (status) {
    case exit_code::ok:
      return "healthy";
    case exit_code::degraded:
      return "degraded";
    case exit_code::unavailable:
      return "unreachable";
    default:
      return "error";
  }
}

double age_s(std::int64_t now_us, std::int64_t then_us) {
  return std::max<double>(0.0, static_cast<double>(now_us - then_us) / 1e6);
}

bool database_configured(const GlobalOptions& global) {
  for (const char* name : {"TRACKEVENT_DATABASE_URL", "DATABASE_URL"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return true;
  }
  return global.db.has_value();
}

DbCheck check_database(const DbTarget& target, double timeout_s) {
  DbCheck check;
  check.target = describe_target(target);
  MigrateOptions options;
  const int ms = static_cast<int>(std::clamp(timeout_s * 1000.0, 100.0, 3'600'000.0));
  options.timeouts.connect_timeout_s = std::max(1, static_cast<int>(std::ceil(timeout_s)));
  options.timeouts.statement_timeout_ms = ms;
  options.timeouts.tcp_user_timeout_ms = ms;
  options.lock_timeout_ms = ms;
  try {
    const MigrateReport report = migration_status(target, options);
    check.reachable = true;
    for (const MigrationStatus& m : report.status) {
      if (m.state == MigrationStatus::State::applied) {
        check.schema_version = std::max(check.schema_version, m.version);
      } else if (m.state == MigrationStatus::State::pending) {
        ++check.pending;
      } else {
        ++check.mismatched;
      }
    }
  } catch (const MigrateError& e) {
    check.reachable = !e.unreachable;
    check.error = e.what();
  } catch (const std::exception& e) {
    check.error = e.what();
  }
  return check;
}

Report gather(const StatusOptions& o, const GlobalOptions& global) {
  Report r;
  r.now_us = now_unix_us();
  bool unreadable = false;
  if (auto dir = detail::default_spool_dir(); dir) {
    r.spool_dir = dir->string();
    const auto busy = std::chrono::milliseconds(
        static_cast<std::int64_t>(std::clamp(o.timeout_s, 0.0, 60.0) * 1000.0));
    if (auto s = detail::inspect_spool(*dir, busy); s) {
      r.spool = std::move(s).value();
    } else {
      r.spool_error = s.error().message;
      unreadable = true;
    }
    if (auto d = detail::inspect_dead_letters(*dir); d) {
      r.dead = std::move(d).value();
    } else {
      r.dead_error = d.error().message;
      unreadable = true;
    }
    if (auto rec = detail::read_delivery_record(*dir); rec) {
      r.delivery = std::move(rec).value();
    } else {
      r.delivery_error = rec.error().message;  // reported, but the host is not unhealthy for it
    }
  } else {
    r.spool_error = dir.error().message;
    unreadable = true;
  }

  if (!o.no_db && database_configured(global)) {
    if (const auto target = database_target(global); target) {
      r.db = check_database(*target, o.timeout_s);
    } else {
      r.db = DbCheck{};
      r.db->error = "malformed database URL";
    }
  }

  if (r.spool && r.spool->oldest_us && age_s(r.now_us, *r.spool->oldest_us) > o.max_age_s) {
    r.problems.push_back("spool holds events older than " +
                         std::to_string(std::lround(o.max_age_s)) + " s");
  }
  if (r.dead && r.dead->count > 0) {
    r.problems.push_back(std::to_string(r.dead->count) + " dead letter(s)");
  }
  if (r.dead && r.dead->invalid > 0) {
    r.problems.push_back(std::to_string(r.dead->invalid) + " invalid dead-letter line(s)");
  }
  if (r.db && r.db->reachable && r.db->pending > 0) {
    r.problems.push_back(std::to_string(r.db->pending) + " pending migration(s)");
  }
  if (r.db && r.db->mismatched > 0) {
    r.problems.push_back(std::to_string(r.db->mismatched) + " migration(s) changed since applied");
  }
  if (unreadable) {
    r.exit_status = exit_code::failure;
  } else if (r.db && !r.db->reachable) {
    r.exit_status = exit_code::unavailable;
  } else if (!r.problems.empty()) {
    r.exit_status = exit_code::degraded;
  }
  return r;
}

json entry_json(const std::optional<detail::DeliveryEntry>& e) {
  if (!e) return nullptr;
  json j{{"at", format_rfc3339(e->at_us)}, {"kind", e->kind}, {"events", e->events}};
  if (!e->sqlstate.empty()) j["sqlstate"] = e->sqlstate;
  if (!e->error.empty()) j["error"] = e->error;
  return j;
}

// An instant as JSON: its RFC 3339 text, or null when there is none.
json time_or_null(const std::optional<std::int64_t>& us) {
  return us ? json(format_rfc3339(*us)) : json(nullptr);
}

json to_json(const Report& r) {
  json j;
  j["health"] = health_of(r.exit_status);
  j["problems"] = r.problems;
  j["time"] = format_rfc3339(r.now_us);
  json spool{{"dir", r.spool_dir}};
  if (r.spool) {
    spool["exists"] = r.spool->exists;
    spool["events"] = r.spool->events;
    spool["bytes"] = r.spool->bytes;
    spool["oldest_event_at"] = time_or_null(r.spool->oldest_us);
    spool["oldest_event_age_s"] =
        r.spool->oldest_us ? json(std::floor(age_s(r.now_us, *r.spool->oldest_us))) : json(nullptr);
    json claims = json::array();
    for (const auto& c : r.spool->claims) {
      claims.push_back(
          {{"owner", c.owner}, {"events", c.events}, {"until", format_rfc3339(c.until_ms * 1000)}});
    }
    spool["claims"] = std::move(claims);
  } else {
    spool["error"] = r.spool_error;
  }
  j["spool"] = std::move(spool);
  json dead{
      {"file", r.spool_dir.empty()
                   ? std::string{}
                   : (std::filesystem::path(r.spool_dir) / detail::kDeadLetterFile).string()}};
  if (r.dead) {
    dead["count"] = r.dead->count;
    dead["invalid_lines"] = r.dead->invalid;
    dead["bytes"] = r.dead->bytes;
    dead["newest_at"] = time_or_null(r.dead->newest_us);
    dead["oldest_at"] = time_or_null(r.dead->oldest_us);
  } else {
    dead["error"] = r.dead_error;
  }
  j["dead_letters"] = std::move(dead);
  json last{{"success", nullptr}, {"failure", nullptr}};
  if (r.delivery) {
    last["success"] = entry_json(r.delivery->success);
    last["failure"] = entry_json(r.delivery->failure);
  } else {
    last["error"] = r.delivery_error;
  }
  j["last_delivery"] = std::move(last);
  if (r.db) {
    json db{{"target", r.db->target}, {"reachable", r.db->reachable}};
    if (r.db->reachable) {
      db["schema_version"] = r.db->schema_version;
      db["pending_migrations"] = r.db->pending;
      db["changed_migrations"] = r.db->mismatched;
    }
    if (!r.db->error.empty()) db["error"] = r.db->error;
    j["database"] = std::move(db);
  } else {
    j["database"] = nullptr;
  }
  return j;
}

std::string text_of(const Report& r) {
  std::ostringstream s;
  const auto when = [&r](std::int64_t us) {
    return format_rfc3339(us) + " (" + std::to_string(std::llround(age_s(r.now_us, us))) +
           " s ago)";
  };
  s << "health        " << health_of(r.exit_status);
  if (!r.problems.empty()) {
    s << ":";
    for (std::size_t i = 0; i < r.problems.size(); ++i) s << (i ? ", " : " ") << r.problems[i];
  }
  s << "\n\nspool         " << r.spool_dir << "\n";
  if (r.spool) {
    s << "  events      " << r.spool->events << "\n";
    s << "  bytes       " << r.spool->bytes << "\n";
    s << "  oldest      " << (r.spool->oldest_us ? when(*r.spool->oldest_us) : "-") << "\n";
    s << "  claims      " << (r.spool->claims.empty() ? "none" : "") << "\n";
    for (const auto& c : r.spool->claims) {
      s << "    " << c.owner << ": " << c.events << " event(s) until "
        << format_rfc3339(c.until_ms * 1000) << "\n";
    }
  } else {
    s << "  error       " << r.spool_error << "\n";
  }
  s << "\ndead letters\n";
  if (r.dead) {
    s << "  count       " << r.dead->count;
    if (r.dead->invalid > 0) s << " (+" << r.dead->invalid << " invalid line(s))";
    s << "\n  bytes       " << r.dead->bytes << "\n";
    s << "  newest      " << (r.dead->newest_us ? when(*r.dead->newest_us) : "-") << "\n";
  } else {
    s << "  error       " << r.dead_error << "\n";
  }
  s << "\nlast delivery\n";
  if (r.delivery) {
    const auto& d = *r.delivery;
    s << "  success     "
      << (d.success
              ? when(d.success->at_us) + ", " + std::to_string(d.success->events) + " event(s)"
              : "-")
      << "\n";
    s << "  failure     ";
    if (d.failure) {
      s << when(d.failure->at_us) << ", " << d.failure->kind << ", "
        << (d.failure->sqlstate.empty() ? "no SQLSTATE" : "SQLSTATE " + d.failure->sqlstate) << ": "
        << d.failure->error;
    } else {
      s << "-";
    }
    s << "\n";
  } else {
    s << "  error       " << r.delivery_error << "\n";
  }
  s << "\ndatabase      ";
  if (!r.db) {
    s << "not checked (no --db or database URL in the environment)\n";
  } else {
    s << r.db->target << "\n";
    s << "  reachable   " << (r.db->reachable ? "yes" : "no") << "\n";
    if (r.db->reachable) {
      s << "  schema      version " << r.db->schema_version << ", " << r.db->pending << " pending";
      if (r.db->mismatched > 0) s << ", " << r.db->mismatched << " changed";
      s << "\n";
    }
    if (!r.db->error.empty()) s << "  error       " << r.db->error << "\n";
  }
  return s.str();
}

// Label values in the exposition format: backslash, double quote and newline escaped.
std::string label_value(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string prometheus_of(const Report& r) {
  std::ostringstream s;
  const std::string spool = "spool=\"" + label_value(r.spool_dir) + "\"";
  const auto metric = [&](const char* name, const char* help, double value,
                          const std::string& extra = {}) {
    s << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " gauge\n"
      << name << '{' << spool << extra << "} " << number(value) << "\n";
  };
  metric("trackevent_up", "1 when trackevent status could read the spool and its dead letters.",
         r.exit_status == exit_code::failure ? 0 : 1);
  metric("trackevent_healthy", "1 when the host is healthy (trackevent status exits 0).",
         r.exit_status == exit_code::ok ? 1 : 0);
  metric("trackevent_status_timestamp_seconds", "When this report was made (Unix time).",
         static_cast<double>(r.now_us) / 1e6);
  if (r.spool) {
    std::int64_t claimed = 0;
    for (const auto& c : r.spool->claims) claimed += c.events;
    metric("trackevent_spool_events", "Events held in the spool, waiting for delivery.",
           static_cast<double>(r.spool->events));
    metric("trackevent_spool_bytes", "Size of the spool database and its WAL on disk.",
           static_cast<double>(r.spool->bytes));
    metric("trackevent_spool_oldest_event_age_seconds",
           "Age of the oldest event in the spool (its occurred_at); 0 when empty.",
           r.spool->oldest_us ? age_s(r.now_us, *r.spool->oldest_us) : 0.0);
    metric("trackevent_spool_claimed_events",
           "Spooled events under an unexpired delivery claim of some process.",
           static_cast<double>(claimed));
  }
  if (r.dead) {
    metric("trackevent_dead_letters", "Events the database refused, in dead-letter.jsonl.",
           static_cast<double>(r.dead->count));
    metric("trackevent_dead_letter_invalid_lines",
           "Lines of dead-letter.jsonl that are no dead letter (torn or edited).",
           static_cast<double>(r.dead->invalid));
    metric("trackevent_dead_letter_bytes", "Size of dead-letter.jsonl.",
           static_cast<double>(r.dead->bytes));
    if (r.dead->newest_us) {
      metric("trackevent_dead_letter_newest_timestamp_seconds",
             "When the newest dead letter was written (Unix time).",
             static_cast<double>(*r.dead->newest_us) / 1e6);
    }
  }
  if (r.delivery && r.delivery->success) {
    metric("trackevent_last_delivery_success_timestamp_seconds",
           "When a delivery to the database last succeeded (Unix time).",
           static_cast<double>(r.delivery->success->at_us) / 1e6);
  }
  if (r.delivery && r.delivery->failure) {
    metric("trackevent_last_delivery_failure_timestamp_seconds",
           "When a delivery last failed (Unix time); kind is unavailable or rejected.",
           static_cast<double>(r.delivery->failure->at_us) / 1e6,
           ",kind=\"" + label_value(r.delivery->failure->kind) + "\",sqlstate=\"" +
               label_value(r.delivery->failure->sqlstate) + "\"");
  }
  if (r.db) {
    metric("trackevent_database_up", "1 when the database answered within the deadline.",
           r.db->reachable ? 1 : 0);
    if (r.db->reachable) {
      metric("trackevent_schema_version", "The newest schema migration applied.",
             r.db->schema_version);
      metric("trackevent_schema_pending_migrations",
             "Schema migrations this trackevent knows and the database has not applied.",
             r.db->pending);
    }
  }
  return s.str();
}

// Through a temporary file in the same directory and rename: a collector never reads half a file.
bool write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    log::error("cannot write the status", {{"file", tmp}, {"err", std::strerror(errno)}});
    return false;
  }
  std::string_view rest = text;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      log::error("cannot write the status", {{"file", tmp}, {"err", std::strerror(errno)}});
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    log::error("cannot rename the status into place",
               {{"file", path}, {"err", std::strerror(errno)}});
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace

void setup_status(CLI::App& app, StatusOptions& o) {
  app.add_option("--format", o.format, "text, json, or prometheus (text exposition format)")
      ->capture_default_str()
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "json", "prometheus"}));
  app.add_option("--output", o.output,
                 "write the report to FILE (a temporary file renamed into place), not stdout")
      ->type_name("FILE");
  app.add_option("--max-age", o.max_age_s,
                 "seconds the oldest spooled event may be old before the host is degraded")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--timeout", o.timeout_s,
                 "seconds the database check and the wait for a locked spool may take")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::PositiveNumber);
  app.add_flag("--no-db", o.no_db, "do not check the database even when one is configured");
  app.footer(
      "The database is checked when --db or a database URL in the environment names one. Exit "
      "status: 0 healthy, 2 degraded (spool older than --max-age, dead letters, pending "
      "migrations), 69 database unreachable, 1 the spool or dead-letter file cannot be read, or "
      "--output cannot be written. The report is printed in every case.");
}

int run_status(const StatusOptions& o, const GlobalOptions& global) {
  const Report report = gather(o, global);
  std::string text;
  if (o.format == "json") {
    text = to_json(report).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  } else if (o.format == "prometheus") {
    text = prometheus_of(report);
  } else {
    text = text_of(report);
  }
  if (!report.spool_error.empty()) {
    log::error("cannot read the spool", {{"dir", report.spool_dir}, {"err", report.spool_error}});
  }
  if (!report.dead_error.empty()) {
    log::error("cannot read the dead-letter file", {{"err", report.dead_error}});
  }
  if (report.db && !report.db->reachable) {
    log::error("database unreachable",
               {{"database", report.db->target}, {"err", report.db->error}});
  }
  if (!o.output.empty()) {
    if (!write_atomically(o.output, text)) return exit_code::failure;
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
    if (std::fflush(stdout) != 0) return exit_code::failure;
  }
  return report.exit_status;
}

}  // namespace trackevent::cli
