#include "commands/dead_letters.hpp"

#include "trackevent/event.hpp"

#include "config/database_url.hpp"
#include "exit_codes.hpp"
#include "log/log.hpp"
#include "spool/dead_letter_file.hpp"
#include "spool/spool.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>

namespace trackevent::cli {
namespace {

/// "30d", "12h", "90m", "3600s" or "3600" -> seconds; nullopt when malformed.
std::optional<std::int64_t> parse_duration(std::string_view text) {
  std::int64_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'd':
        unit = 86400;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'm':
        unit = 60;
        break;
      default:
        break;
    }
    if (unit != 1 || text.back() == 's') text.remove_suffix(1);
  }
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || n < 0 ||
      n > std::numeric_limits<std::int64_t>::max() / unit / 1'000'000) {
    return std::nullopt;
  }
  return n * unit;
}

std::string clip(std::string s, std::size_t width) {
  if (s.size() > width) s = s.substr(0, width - 3) + "...";
  return s;
}

void report_invalid(const std::filesystem::path& file, const detail::DeadLetterLine& l) {
  log::error("dead-letter line is not a dead letter; kept as it is",
             {{"file", file.string()}, {"line", l.number}, {"reason", l.problem}});
}

int run_list(const DeadLettersOptions& o, const std::filesystem::path& dir) {
  auto snap = detail::read_dead_letters(dir);
  if (!snap) {
    log::error("cannot read the dead-letter file", {{"err", snap.error().message}});
    return exit_code::failure;
  }
  const std::filesystem::path file = dir / detail::kDeadLetterFile;
  const bool table = o.format == "table" || (o.format == "auto" && ::isatty(STDOUT_FILENO) == 1);
  if (table) {
    std::printf("%-5s  %-27s  %-8s  %-36s  %-7s  %-24s  %s\n", "LINE", "AT", "SQLSTATE", "EVENT_ID",
                "ORG", "EVENT", "ERROR");
  }
  for (const auto& l : snap->lines) {
    if (!l.problem.empty()) {
      report_invalid(file, l);
      continue;
    }
    if (table) {
      std::printf("%-5zu  %-27s  %-8s  %-36s  %-7lld  %-24s  %s\n", l.number,
                  format_rfc3339(l.at_us).c_str(), l.sqlstate.empty() ? "-" : l.sqlstate.c_str(),
                  l.event.event_id.to_string().c_str(), static_cast<long long>(l.event.org_id),
                  clip(l.event.event_name, 24).c_str(), clip(l.error, 60).c_str());
    } else {
      std::fwrite(l.text.data(), 1, l.text.size(), stdout);
      std::fputc('\n', stdout);
    }
  }
  return std::fflush(stdout) == 0 ? exit_code::ok : exit_code::failure;
}

int run_purge(const DeadLettersOptions& o, const std::filesystem::path& dir) {
  const auto older = parse_duration(o.older_than);
  if (!older) {
    log::error("--older-than: expected a duration such as 30d, 12h, 90m, 3600s or 3600",
               {{"value", o.older_than}});
    return exit_code::usage;
  }
  auto edit = detail::EditLock::try_acquire(dir);
  if (!edit) {
    log::error("cannot purge dead letters", {{"err", edit.error().message}});
    return edit.error().message.rfind("busy", 0) == 0 ? exit_code::temp_fail : exit_code::failure;
  }
  auto snap = detail::read_dead_letters(dir);
  if (!snap) {
    log::error("cannot read the dead-letter file", {{"err", snap.error().message}});
    return exit_code::failure;
  }
  const std::filesystem::path file = dir / detail::kDeadLetterFile;
  const std::int64_t cutoff = now_unix_us() - *older * 1'000'000;
  std::vector<std::string> head;
  std::size_t purged = 0;
  std::size_t invalid = 0;
  for (const auto& l : snap->lines) {
    if (!l.problem.empty()) {
      ++invalid;
      report_invalid(file, l);
      head.push_back(l.text);
    } else if (l.at_us < cutoff) {
      ++purged;
    } else {
      head.push_back(l.text);
    }
  }
  std::size_t kept = head.size();
  if (purged > 0) {
    auto done = detail::commit_dead_letters(dir, *snap, head, detail::dead_letter_cap());
    if (!done) {
      log::error("cannot rewrite the dead-letter file; nothing purged",
                 {{"err", done.error().message}});
      return exit_code::failure;
    }
    kept = done->lines;
  }
  log::info(
      "summary",
      {{"purged", purged}, {"kept", kept}, {"invalid_lines", invalid}, {"file", file.string()}});
  return exit_code::ok;
}

int run_replay(const DeadLettersOptions& o, const GlobalOptions& global,
               const std::filesystem::path& dir) {
  const auto target = database_target(global);
  if (!target) return exit_code::usage;
  detail::ReplayOptions options;
  options.timeout = seconds_to_ms(o.timeout_s);
  options.batch_size = o.batch_size;
  const detail::ReplayResult r = detail::replay_dead_letters(*target, dir, options);
  nlohmann::json fields{{"stored", r.stored},
                        {"refused", r.refused},
                        {"invalid_lines", r.invalid},
                        {"untried", r.untried},
                        {"database", describe_target(*target)},
                        {"file", (dir / detail::kDeadLetterFile).string()}};
  if (r.dropped > 0) fields["dropped_by_cap"] = r.dropped;
  if (!r.error.empty()) fields["err"] = r.error;
  if (!r.sqlstate.empty()) fields["sqlstate"] = r.sqlstate;
  using Outcome = detail::ReplayResult::Outcome;
  int status = exit_code::ok;
  switch (r.outcome) {
    case Outcome::done:
      status = r.refused + r.invalid > 0 ? exit_code::data_error : exit_code::ok;
      if (r.refused > 0) {
        log::warn("some dead letters were refused again; they stay with their new error", fields);
      }
      break;
    case Outcome::unreachable:
      log::error("database unreachable; the dead letters not stored stay as they were", fields);
      status = exit_code::unavailable;
      break;
    case Outcome::timed_out:
      log::warn("replay timed out; the dead letters not tried stay as they were", fields);
      status = exit_code::temp_fail;
      break;
    case Outcome::busy:
      log::error("another replay or purge of the dead letters is running", fields);
      status = exit_code::temp_fail;
      break;
    case Outcome::file_error:
      log::error("cannot read or rewrite the dead-letter file", fields);
      status = exit_code::failure;
      break;
  }
  log::info("summary", fields);
  return status;
}

}  // namespace

void setup_dead_letters(CLI::App& app, DeadLettersOptions& o) {
  app.add_option("action", o.action,
                 "list (JSON lines, a table on a terminal), replay (send again; stored ones "
                 "leave the file), or purge (with --older-than)")
      ->required()
      ->type_name("ACTION")
      ->check(CLI::IsMember({"list", "replay", "purge"}));
  app.add_option("--format", o.format, "list: jsonl, table, or auto (a table on a terminal)")
      ->capture_default_str()
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "jsonl", "table"}));
  app.add_option("--older-than", o.older_than,
                 "purge: remove dead letters written longer ago than this (30d, 12h, 90m, 3600s)")
      ->type_name("AGE");
  app.add_option("--timeout", o.timeout_s, "replay: seconds it may take; the rest stays")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch-size", o.batch_size, "replay: events written per round trip")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  app.footer(
      "The file is dead-letter.jsonl in the spool directory. Lines that are no dead letter are "
      "reported and kept. Exit status: 0 done; replay: 65 some still refused or lines invalid, "
      "69 database unreachable (nothing moved), 75 timed out, or another replay or purge is "
      "running (purge too); 1 the file cannot be read or rewritten; 64 usage error.");
}

int run_dead_letters(const DeadLettersOptions& o, const GlobalOptions& global) {
  if (o.action == "purge" && o.older_than.empty()) {
    log::error("purge needs --older-than AGE (e.g. --older-than 30d)");
    return exit_code::usage;
  }
  if (o.action != "purge" && !o.older_than.empty()) {
    log::error("--older-than is for purge only");
    return exit_code::usage;
  }
  auto dir = detail::default_spool_dir();
  if (!dir) {
    log::error("cannot find the spool directory", {{"err", dir.error().message}});
    return exit_code::failure;
  }
  if (o.action == "list") return run_list(o, *dir);
  if (o.action == "purge") return run_purge(o, *dir);
  return run_replay(o, global, *dir);
}

}  // namespace trackevent::cli
