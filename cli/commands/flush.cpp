#include "commands/flush.hpp"

#include "config/database_url.hpp"
#include "exit_codes.hpp"
#include "log/log.hpp"
#include "signals.hpp"
#include "spool/drain.hpp"

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
  // SIGINT/SIGTERM: stop between batches, give back what is claimed, write the summary; the
  // process then dies of the signal (end_by_stop_signal() in app.cpp).
  install_stop_handlers();
  const auto resolved = database_target(global);
  if (!resolved) return exit_code::usage;
  const DbTarget& target = *resolved;
  DrainOptions options;
  options.timeout = seconds_to_ms(o.timeout_s);
  options.batch_size = o.batch_size;
  options.exclusive = o.exclusive;
  options.should_stop = [] { return stop_signals() > 0; };
  const DrainResult result = drain_spool(target, options);

  nlohmann::json fields{{"stored", result.stored},
                        {"duplicates", result.duplicates},
                        {"dead_lettered", result.dead_lettered},
                        {"dead_letter_failed", result.dead_letter_failed},
                        {"remaining", result.remaining},
                        {"database", describe_target(target)}};
  // Refused events whose dead-letter line could not be written stay in the spool: not lost (74),
  // but this run failed them. Exit 1 whatever else happened.
  const bool kept_back = result.dead_letter_failed > 0;
  const auto status = [kept_back](int code) { return kept_back ? exit_code::failure : code; };
  if (kept_back) {
    log::error(
        "refused events could not be written to the dead-letter file; they stay in the spool",
        fields);
  }
  if (result.interrupted || stop_signals() > 0) fields["interrupted"] = true;
  if (result.interrupted) {
    if (result.remaining != 0) log::warn("flush interrupted; events stay in the spool", fields);
    log::info("summary", fields);
    return result.remaining == 0 ? exit_code::ok : exit_code::temp_fail;
  }
  switch (result.outcome) {
    case DrainResult::Outcome::empty:
      log::info("summary", fields);
      return status(exit_code::ok);
    case DrainResult::Outcome::unreachable:
      fields["err"] = result.error;
      if (!result.sqlstate.empty()) fields["sqlstate"] = result.sqlstate;
      log::error("database unreachable; events stay in the spool", fields);
      log::info("summary", fields);
      return status(exit_code::unavailable);
    case DrainResult::Outcome::timed_out:
      log::warn("flush timed out; events stay in the spool", fields);
      log::info("summary", fields);
      return status(exit_code::temp_fail);
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
