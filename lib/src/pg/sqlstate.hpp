#pragma once
// SQLSTATE -> Disposition: the one place that decides whether a failed write is retried, held or
// split (docs/architecture.md, "Failure policy").

#include "trackevent/sink.hpp"

#include <string_view>

namespace trackevent {

[[nodiscard]] std::string_view to_string(Disposition d) noexcept;

/// Classifies a SQLSTATE (empty when the connection was lost without one). `own_cancel` is true
/// when a 57014 (query_canceled) came from our own statement timeout or cancel.
[[nodiscard]] Disposition classify_sqlstate(std::string_view sqlstate,
                                            bool own_cancel = false) noexcept;

}  // namespace trackevent
