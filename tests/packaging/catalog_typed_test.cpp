// The structs trackevent_catalog_header() generates from the schemas of examples/plan.json: typed
// fields, std::optional for keys that are not required, and metadata() as the schema expects it.
#include "plan_events.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace ev = te_test::plan;

static_assert(std::is_same_v<decltype(ev::BackupCompleted::bytes), std::int64_t>);
static_assert(std::is_same_v<decltype(ev::BackupCompleted::host), std::string>);
static_assert(std::is_same_v<decltype(ev::BackupCompleted::duration_s), std::optional<double>>);
static_assert(std::is_same_v<decltype(ev::BackupCompleted::incremental), std::optional<bool>>);
static_assert(std::is_same_v<decltype(ev::DatasetUploaded::columns),
                             std::optional<std::vector<std::string>>>);
// A ["integer", "null"] type that is not required: optional either way.
static_assert(std::is_same_v<decltype(ev::ReportGenerated::pages), std::optional<std::int64_t>>);
// An object, or an enum of strings.
static_assert(std::is_same_v<decltype(ev::ReportGenerated::params), std::optional<nlohmann::json>>);
static_assert(std::is_same_v<decltype(ev::UserInvited::role), std::string>);

int main() {
  int failures = 0;
  const auto m = ev::metadata(ev::BackupCompleted{.bytes = 42, .host = "db1"});
  if (m != nlohmann::json{{"bytes", 42}, {"host", "db1"}})
    ++failures;  // no key for empty optionals
  const auto d =
      ev::metadata(ev::DatasetUploaded{.bytes = 1, .columns = {{"id", "ts"}}, .rows = 2});
  if (d["columns"] != nlohmann::json{"id", "ts"} || d["rows"] != 2) ++failures;
  return failures;
}
