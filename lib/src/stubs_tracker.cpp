// TEMPORARY stubs; each is replaced by its owner's real implementation.
#include "trackevent/log.hpp"
#include "trackevent/tracker.hpp"

namespace trackevent {
TrackerOptions TrackerOptions::from_env() { return {}; }
class Tracker::Impl {};
Tracker::Tracker(TrackerOptions) {}
Tracker::~Tracker() = default;
void Tracker::track(std::int64_t, std::optional<std::int64_t>, std::string_view, const nlohmann::json&) noexcept {}
void Tracker::track(std::int64_t, std::optional<std::int64_t>, std::string_view) noexcept {}
bool Tracker::track(Event) noexcept { return true; }
FlushResult Tracker::flush(std::chrono::milliseconds) noexcept { return {}; }
Stats Tracker::stats() const noexcept { return {}; }
namespace log {
std::optional<Format> parse_format(std::string_view) noexcept { return Format::json; }
std::optional<Level> parse_level(std::string_view) noexcept { return Level::info; }
void init(Format, Level, bool) {}
void write(Level, std::string_view, const nlohmann::json&) noexcept {}
void write_limited(Level, std::string_view, std::string_view, const nlohmann::json&, int) noexcept {}
void set_line_sink_for_testing(LineSink*) noexcept {}
}  // namespace log
}  // namespace trackevent
