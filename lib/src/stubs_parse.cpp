// TEMPORARY stubs; each is replaced by its owner's real implementation.
#include "trackevent/event.hpp"
#include "trackevent/parse.hpp"
#include "trackevent/uuid.hpp"

namespace trackevent {
std::string Uuid::to_string() const { std::string s(36, '0'); format_to(s.data()); return s; }
void Uuid::format_to(char*) const noexcept {}
std::optional<Uuid> Uuid::parse(std::string_view) noexcept { return std::nullopt; }
Uuid make_uuid_v7(std::int64_t) noexcept { return {}; }
Uuid make_uuid_v7() noexcept { return {}; }
bool is_valid_event_name(std::string_view) noexcept { return true; }
std::optional<std::int64_t> parse_rfc3339(std::string_view) noexcept { return std::nullopt; }
std::string format_rfc3339(std::int64_t) { return {}; }
std::int64_t now_unix_us() noexcept { return 0; }
ParseResult parse_event_line(std::string_view, std::int64_t, const ParseOptions&) noexcept { return Rejection{"unimplemented"}; }
std::string validate_event(const Event&, const Limits&) { return {}; }
}  // namespace trackevent
