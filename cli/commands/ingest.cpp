#include "commands/ingest.hpp"

#include "config/database_url.hpp"
#include "delivery.hpp"
#include "exit_codes.hpp"
#include "input/parse.hpp"
#include "line_reader.hpp"
#include "log/log.hpp"
#include "progress.hpp"
#include "signals.hpp"
#include "spool/drain.hpp"
#include "tee.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

namespace trackevent::cli {
namespace {

/// One opened input. stdin is borrowed, files are closed on destruction.
struct Input {
  std::string name;  // the "source" of rejection log lines: the path as given, or "stdin"
  int fd = -1;
  bool regular = false;
  std::uint64_t size = 0;   // bytes to read, for regular files (progress ETA)
  std::uint64_t start = 0;  // regular files: the offset reading starts at (stdin may be past 0)
  bool owned = false;
  Input() = default;
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;
  ~Input() {
    if (owned && fd >= 0) ::close(fd);
  }
};

bool is_regular(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/// Bytes left to read in a regular file (its size past the current offset); 0 otherwise.
std::uint64_t bytes_left(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  const off_t at = ::lseek(fd, 0, SEEK_CUR);
  if (at < 0 || at >= st.st_size) return 0;
  return static_cast<std::uint64_t>(st.st_size - at);
}

/// Opens every input up front, so a typo in the last path fails before anything is stored.
bool open_inputs(const IngestOptions& options, std::vector<std::unique_ptr<Input>>& inputs) {
  std::vector<std::string> names = options.files;
  if (names.empty()) names.emplace_back("-");
  for (const auto& name : names) {
    auto input = std::make_unique<Input>();
    if (name == "-") {
      input->name = "stdin";
      input->fd = STDIN_FILENO;
    } else {
      input->name = name;
      input->fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
      if (input->fd < 0) {
        log::error("cannot open input", {{"source", name}, {"err", std::strerror(errno)}});
        return false;
      }
      input->owned = true;
    }
    input->regular = is_regular(input->fd);
    input->size = input->regular ? bytes_left(input->fd) : 0;
    if (input->regular) {
      const off_t at = ::lseek(input->fd, 0, SEEK_CUR);
      input->start = at > 0 ? static_cast<std::uint64_t>(at) : 0;
    }
    inputs.push_back(std::move(input));
  }
  return true;
}

OverflowPolicy parse_policy(const std::string& name) {
  if (name == "drop") return OverflowPolicy::drop;
  if (name == "block") return OverflowPolicy::block;
  return OverflowPolicy::spool;
}

Limits limits_from(const IngestOptions& o) {
  Limits limits;
  limits.max_line_bytes = o.max_line_bytes;
  limits.max_metadata_bytes = o.max_metadata_bytes;
  limits.max_depth = o.max_depth;
  limits.max_keys = o.max_keys;
  return limits;
}

/// What a stop in inputs[at], after `handed_out` bytes of it were handed out as lines, left
/// unread: the rest of that input and every later one.
UnreadInput unread_after_stop(const std::vector<std::unique_ptr<Input>>& inputs, std::size_t at,
                              std::uint64_t handed_out) {
  UnreadInput unread;
  const Input& input = *inputs[at];
  unread.source = input.name;
  unread.offset = input.start + handed_out;
  unread.files = inputs.size() - at - 1;
  struct stat st {};
  if (input.regular && ::fstat(input.fd, &st) == 0) {
    const auto size = static_cast<std::uint64_t>(st.st_size);
    unread.bytes = size > unread.offset ? size - unread.offset : 0;
  } else {
    unread.bytes.reset();  // a pipe or terminal: what the producer still had is unknown
  }
  for (std::size_t i = at + 1; i < inputs.size() && unread.bytes; ++i) {
    if (inputs[i]->regular) {
      *unread.bytes += bytes_left(inputs[i]->fd);  // not started: its offset has not moved
    } else {
      unread.bytes.reset();
    }
  }
  return unread;
}

/// Reads every input line by line, handing each parsed line to `accept` (an Event) or logging
/// its rejection. Stops early on SIGINT/SIGTERM, once the complete lines already read are handled,
/// and records in `counts` what was left unread. Returns false on a read error.
template <typename Accept>
bool read_inputs(const std::vector<std::unique_ptr<Input>>& inputs, const IngestOptions& options,
                 const ParseOptions& parse_options, Tee* tee, Progress* progress, RunCounts& counts,
                 Accept&& accept) {
  LineReader::Hooks hooks;
  hooks.should_stop = [] { return stop_signals() > 0; };
  if (tee != nullptr) hooks.on_consumed = [tee](std::string_view bytes) { tee->write(bytes); };

  std::uint64_t bytes_before = 0;  // read from the inputs already finished
  for (std::size_t at = 0; at < inputs.size(); ++at) {
    const auto& input = inputs[at];
    LineReader reader{input->fd, options.max_line_bytes, hooks};
    LineReader::Line line;
    for (;;) {
      if (progress != nullptr) {
        progress->update(counts.read, counts.rejected, bytes_before + reader.bytes_read());
      }
      const auto status = reader.next(line);
      if (status == LineReader::Status::end) break;
      if (status == LineReader::Status::stopped) {
        counts.interrupted = true;
        counts.unread = unread_after_stop(inputs, at, reader.bytes_handed_out());
        return true;
      }
      if (status == LineReader::Status::error) {
        log::error("cannot read input", {{"source", input->name}, {"err", reader.error()}});
        return false;
      }
      if (!line.too_long && line.text.empty()) {
        ++counts.blank;
        continue;
      }
      ++counts.read;
      if (line.too_long) {
        ++counts.rejected;
        // Every bad line is logged with its number (never rate-limited): the user must find it.
        log::error("rejected event",
                   {{"source", input->name},
                    {"line", line.number},
                    {"err", "line too long: " + std::to_string(line.length) + " bytes (limit " +
                                std::to_string(options.max_line_bytes) + ", --max-line-bytes)"}});
        continue;
      }
      auto parsed = parse_event_line(line.text, now_unix_us(), parse_options);
      if (auto* rejection = std::get_if<Rejection>(&parsed)) {
        ++counts.rejected;
        log::error("rejected event",
                   {{"source", input->name}, {"line", line.number}, {"err", rejection->reason}});
        continue;
      }
      if (parse_options.catalog != nullptr && parse_options.catalog_mode == CatalogMode::warn) {
        warn_on_violation(*parse_options.catalog, std::get<Event>(parsed), input->name, line.number,
                          counts);
      }
      accept(std::get<Event>(std::move(parsed)));
    }
    bytes_before += reader.bytes_read();
  }
  return true;
}

/// --progress / --no-progress, else the defaults documented on IngestOptions::progress.
bool want_progress(const IngestOptions& o, const GlobalOptions& global,
                   const std::vector<std::unique_ptr<Input>>& inputs) {
  if (o.progress != 0) return o.progress > 0;
  if (global.quiet || ::isatty(STDERR_FILENO) != 1) return false;
  if (o.tee && ::isatty(STDOUT_FILENO) == 1) return false;  // tee'd lines would cross it
  for (const auto& input : inputs) {
    if (!input->regular) return false;
  }
  return true;
}

}  // namespace

void setup_ingest(CLI::App& app, IngestOptions& o) {
  app.add_option("files", o.files, "JSONL input files; none or \"-\" reads stdin")
      ->type_name("FILE");
  app.add_flag("--tee", o.tee,
               "copy every input line to stdout unchanged as it is read (stops quietly if stdout "
               "closes)");
  app.add_option("--batch-size", o.batch_size, "largest batch written in one round trip")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  app.add_option("--flush-interval", o.flush_interval_ms,
                 "milliseconds a partial batch may wait before it is sent")
      ->capture_default_str()
      ->type_name("MS")
      ->check(CLI::Range(1L, 3600000L));
  app.add_option("--queue-size", o.queue_size, "events held in memory before --on-full applies")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
  app.add_option(
         "--on-full", o.on_full,
         "when the queue is full while reading a pipe: spool to disk, drop (lost, counted), "
         "or block the producer; regular files always block")
      ->capture_default_str()
      ->type_name("POLICY")
      ->check(CLI::IsMember({"spool", "drop", "block"}));
  app.add_option("--flush-timeout", o.flush_timeout_s,
                 "seconds the final flush may take; what is left is spooled")
      ->capture_default_str()
      ->type_name("S")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--durable", o.durable,
               "write each event to the local spool before it counts as accepted (the library's "
               "TrackerOptions::durable), so a crash loses nothing accepted; slower");
  app.add_flag("--check", o.check, "validate only: store nothing, touch no database");
  app.add_flag("--progress,!--no-progress", o.progress,
               "show a progress line on stderr (--no-progress: never); default: when stderr is a "
               "terminal, every input is a regular file, and neither -q nor --tee to a terminal")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--strict", o.strict,
               "exit 69 when the database cannot take events (checked before reading, and "
               "anything spooled at the end) instead of spooling quietly; a full queue then "
               "waits instead of spooling");
  app.add_option("--connections", o.connections,
                 "parallel PostgreSQL connections; past the first, they open only when there "
                 "is more to write than one connection takes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{64}));
  app.add_option("--max-line-bytes", o.max_line_bytes,
                 "longest input line; longer ones are rejected")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  app.add_option("--max-metadata-bytes", o.max_metadata_bytes,
                 "largest metadata object, serialised")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{2}, std::size_t{1} << 30));
  app.add_option("--max-depth", o.max_depth, "deepest nesting of arrays/objects in a line")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{2}, std::size_t{10000}));
  app.add_option("--max-keys", o.max_keys, "most keys in metadata, nested objects included")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
}

int run_ingest(const IngestOptions& o, const GlobalOptions& global) {
  const auto started = std::chrono::steady_clock::now();
  install_stop_handlers();

  std::vector<std::unique_ptr<Input>> inputs;
  if (!open_inputs(o, inputs)) return exit_code::no_input;

  const LoadedCatalog catalog = load_catalog(global);
  if (!catalog.error.empty()) {
    log::error("cannot load catalog", {{"err", catalog.error}});
    return exit_code::no_input;
  }
  ParseOptions parse_options;
  parse_options.limits = limits_from(o);
  parse_options.catalog = catalog.catalog ? &*catalog.catalog : nullptr;
  parse_options.catalog_mode = catalog_mode(global);

  std::optional<Tee> tee;
  if (o.tee) tee.emplace(STDOUT_FILENO);

  std::optional<Progress> progress;
  if (want_progress(o, global, inputs)) {
    std::uint64_t total = 0;  // unknown (no percentage, no ETA) unless every input is a file
    bool sized = true;
    for (const auto& input : inputs) {
      sized = sized && input->regular;
      total += input->size;
    }
    progress.emplace(STDERR_FILENO, sized ? total : 0);
  }
  Progress* shown = progress ? &*progress : nullptr;

  RunCounts counts;
  bool read_ok = true;
  const auto finish = [&] {
    if (progress) progress->finish();
    // A signal after the last input was read (say, during the final flush) left nothing unread.
    counts.interrupted = counts.interrupted || stop_signals() > 0;
    if (counts.interrupted && !counts.unread && read_ok) counts.unread.emplace();
    counts.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - started)
                            .count();
    log_summary(counts);
    return exit_status(counts);
  };

  if (o.check) {
    read_ok = read_inputs(inputs, o, parse_options, tee ? &*tee : nullptr, shown, counts,
                          [&](Event&&) { ++counts.accepted; });
    const int status = finish();
    return read_ok ? status : exit_code::failure;
  }

  const auto resolved = database_target(global);
  if (!resolved) return exit_code::usage;
  const DbTarget& target = *resolved;
  counts.database = describe_target(target);
  TrackerOptions options = cli_tracker_options(global);
  if (o.strict) {
    const std::string reason = probe_database(target, options.pg_timeouts);
    if (!reason.empty()) {
      log::error("database unreachable", {{"database", counts.database}, {"err", reason}});
      return exit_code::unavailable;
    }
  }

  bool all_regular = true;
  for (const auto& input : inputs) all_regular = all_regular && input->regular;
  // Files: read only as fast as we deliver. Pipes: never make the producer wait (unless asked).
  options.on_full = all_regular || o.strict ? OverflowPolicy::block : parse_policy(o.on_full);
  options.batch_size = o.batch_size;
  options.flush_interval = std::chrono::milliseconds{o.flush_interval_ms};
  options.queue_capacity = o.queue_size;
  options.connections = o.connections;
  options.durable = o.durable;
  options.limits = parse_options.limits;
  counts.strict = o.strict && !o.durable;

  {
    std::unique_ptr<Tracker> tracker;
    {
      const StopSignalsBlocked blocked;  // the Tracker's threads must not take our signals
      tracker = std::make_unique<Tracker>(std::move(options));
      // --durable --tee: echo a line only once its event is in the spool (a kill -9 then loses
      // no echoed line). The holding thread is made here too, with our signals blocked.
      if (tee && o.durable) {
        // Lost: events counted as dropped since the last look belong to the bytes taken now
        // (or to bytes an earlier look left held, which were put back in front of them).
        tee->hold_until([t = tracker.get(), dropped = std::uint64_t{0}]() mutable {
          const bool synced = t->sync(std::chrono::seconds{5});
          const std::uint64_t now_dropped = t->stats().dropped;
          if (now_dropped != dropped) {
            dropped = now_dropped;
            return Tee::Durability::lost;
          }
          return synced ? Tee::Durability::durable : Tee::Durability::pending;
        });
      }
    }
    read_ok = read_inputs(inputs, o, parse_options, tee ? &*tee : nullptr, shown, counts,
                          [&](Event&& event) {
                            if (tracker->track(std::move(event))) ++counts.accepted;
                          });
    if (tee) tee->stop_holding();
    finish_delivery(*tracker, seconds_to_ms(o.flush_timeout_s));
    // Final counters: what the flush left is spooled now, and what could not be is dropped.
    counts.stats = tracker->close(std::chrono::milliseconds{0});
    if (tee) tee->release_held();  // lines never made durable: delivered now, or counted lost
    counts.rejected += counts.stats.rejected;
  }
  const int status = finish();
  if (!read_ok && status == exit_code::ok) return exit_code::failure;
  return status;
}

}  // namespace trackevent::cli
