#include "commands/flush.hpp"

#include "trackevent/drain.hpp"
#include "trackevent/log.hpp"

#include "exit_codes.hpp"

namespace trackevent::cli {

void setup_flush(CLI::App& app, FlushOptions& o) {
  app.add_option("--timeout", o.timeout_s, "seconds the drain may take; what is left stays spooled")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch-size", o.batch_size, "events written per round trip")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  app.add_flag("--exclusive", o.exclusive,
               "do nothing if another `flush --exclusive` of this spool is running (it delivers "
               "what is there); else deliver until the spool stays empty");
}

int run_flush(const FlushOptions& o, const GlobalOptions& global) {
  const auto resolved = database_target(global);
  if (!resolved) return exit_code::usage;
  const DbTarget& target = *resolved;
  DrainOptions options;
  options.timeout = seconds_to_ms(o.timeout_s);
  options.batch_size = o.batch_size;
  options.exclusive = o.exclusive;
  const DrainResult result = drain_spool(target, options);

  nlohmann::json fields{{"stored", result.stored},
                        {"duplicates", result.duplicates},
                        {"dead_lettered", result.dead_lettered},
                        {"remaining", result.remaining},
                        {"database", describe_target(target)}};
  switch (result.outcome) {
    case DrainResult::Outcome::empty:
      log::info("summary", fields);
      return exit_code::ok;
    case DrainResult::Outcome::unreachable:
      fields["err"] = result.error;
      if (!result.sqlstate.empty()) fields["sqlstate"] = result.sqlstate;
      log::error("database unreachable; events stay in the spool", fields);
      log::info("summary", fields);
      return exit_code::unavailable;
    case DrainResult::Outcome::timed_out:
      log::warn("flush timed out; events stay in the spool", fields);
      log::info("summary", fields);
      return exit_code::temp_fail;
    case DrainResult::Outcome::busy:
      log::info("another exclusive flush of this spool is running; leaving the events to it",
                fields);
      log::info("summary", fields);
      return exit_code::ok;
    case DrainResult::Outcome::spool_error:
      fields["err"] = result.error;
      log::error("cannot read the spool", fields);
      return exit_code::failure;
  }
  return exit_code::failure;
}

}  // namespace trackevent::cli
