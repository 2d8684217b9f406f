#pragma once
// Parsing and validation of one JSONL input line into an Event (the CLI's input, and the checks
// Tracker::track() and the C ABI apply to events built in code).

#include "trackevent/event.hpp"
#include "trackevent/options.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace trackevent {

class Catalog;

struct ParseOptions {
  Limits limits;
  /// When set, event names outside the catalog are rejected ("did you mean ...?").
  const Catalog* catalog = nullptr;
  /// With a catalog: `reject` also rejects metadata that breaks the entry's schema (the reason is
  /// the violation's message). `warn` and `off` leave metadata to the caller (Catalog::check).
  CatalogMode catalog_mode = CatalogMode::reject;
};

/// Why a line was rejected: a specific, human-readable reason starting with the field it concerns,
/// e.g. "org_id: expected an integer >= 1, got 0".
struct Rejection {
  std::string reason;
};

/// Either the validated event (stamped with a new UUIDv7 and `now_us` where the line had none) or
/// the reason it was rejected.
using ParseResult = std::variant<Event, Rejection>;

/// Parses one line (without its trailing newline; a trailing '\r' is tolerated). Never throws.
/// `now_us` stamps `occurred_at` when the line does not give one.
[[nodiscard]] ParseResult parse_event_line(std::string_view line, std::int64_t now_us,
                                           const ParseOptions& options = {}) noexcept;

/// The checks of validate_event() that do not look at metadata: the name, org_id and user_id.
/// Returns an empty string when they pass, else the reason.
[[nodiscard]] std::string validate_event_identity(const Event& event);

/// Validates an event built in code (Tracker::track): name, ids, metadata being a JSON object.
/// Returns an empty string when valid, else the reason.
[[nodiscard]] std::string validate_event(const Event& event, const Limits& limits = {});

/// A catalog and what its schemas do: what Tracker::track() and the C ABI check events built in
/// code against (TrackerOptions::catalog, catalog_mode).
struct Plan {
  std::shared_ptr<const Catalog> catalog;
  CatalogMode mode = CatalogMode::reject;
};

/// Loads `path` into a Plan; null when `path` is empty. Throws std::runtime_error naming the file
/// and the problem (a setup error).
[[nodiscard]] std::shared_ptr<const Plan> load_plan(const std::filesystem::path& path,
                                                    CatalogMode mode);

/// Checks an event built in code against a plan: its name must be in the catalog, and its
/// metadata must match the entry's schema unless the mode says otherwise (warn: logged at most
/// once a second per event name and rule, then accepted). Returns the reason to reject it, or an
/// empty string.
[[nodiscard]] std::string check_plan(const Event& event, const Plan& plan);

}  // namespace trackevent
