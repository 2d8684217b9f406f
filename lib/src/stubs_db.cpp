// TEMPORARY stubs; each is replaced by its owner's real implementation.
#include "trackevent/migrate.hpp"
#include "trackevent/sink.hpp"

namespace trackevent {
std::unique_ptr<Sink> make_sqlite_sink(std::string) { return nullptr; }
const std::vector<Migration>& builtin_migrations(DbTarget::Kind) { static std::vector<Migration> v; return v; }
MigrateReport migrate(const DbTarget&, const MigrateOptions&) { return {}; }
MigrateReport migration_status(const DbTarget&, const MigrateOptions&) { return {}; }
}  // namespace trackevent
