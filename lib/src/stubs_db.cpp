// TEMPORARY stubs; each is replaced by its owner's real implementation.
#include "trackevent/migrate.hpp"
#include "trackevent/sink.hpp"

namespace trackevent {
std::string_view to_string(Disposition) noexcept { return "retry"; }
Disposition classify_sqlstate(std::string_view, bool) noexcept { return Disposition::retry; }
DbTarget resolve_database(const std::optional<std::string>&) { return {}; }
DbTarget parse_database_url(std::string_view) { return {}; }
std::string redact_conninfo(std::string_view s) { return std::string(s); }
std::unique_ptr<Sink> make_sink(const DbTarget&, const PgTimeouts&) { return nullptr; }
std::unique_ptr<Sink> make_postgres_sink(std::string, const PgTimeouts&) { return nullptr; }
std::unique_ptr<Sink> make_sqlite_sink(std::string) { return nullptr; }
const std::vector<Migration>& builtin_migrations(DbTarget::Kind) { static std::vector<Migration> v; return v; }
MigrateReport migrate(const DbTarget&, const MigrateOptions&) { return {}; }
MigrateReport migration_status(const DbTarget&, const MigrateOptions&) { return {}; }
}  // namespace trackevent
