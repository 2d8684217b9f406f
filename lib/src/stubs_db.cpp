// TEMPORARY stubs; each is replaced by its owner's real implementation.
#include "trackevent/migrate.hpp"
#include "trackevent/sink.hpp"

namespace trackevent {
}  // namespace trackevent
