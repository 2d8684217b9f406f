// The header trackevent_catalog_header() generates from fixtures/events.json: every name becomes
// a constexpr string_view in the requested namespace.
#include "fixture_events.hpp"

#include <string_view>

namespace ev = te_test::events;

static_assert(ev::user_signed_in == std::string_view{"user.signed_in"});
static_assert(ev::dataset_uploaded == std::string_view{"dataset.uploaded"});
static_assert(ev::backup_completed == std::string_view{"backup.completed"});
static_assert(ev::billing_invoice_paid_v2 == std::string_view{"billing.invoice.paid_v2"});

int main() { return ev::user_signed_in.size() == 14 ? 0 : 1; }
