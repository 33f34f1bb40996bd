//! `statuswatch_route_responses_total{route, class, origin}`: the route
//! tally, a series per route, class and origin once counted. Bounded by the
//! tally's slots (templates, `route_tally.max_routes` normalized paths and
//! `__other__`), whatever the traffic.

use super::names::{self, label};
use super::text::{escape_into, header, push_int};
use crate::state::{Live, Shared};
use crate::status::{Origin, CLASS_LABELS, OUT_OF_RANGE_LABEL};

/// The family, when `route_tally.enabled` (counts made before a reload
/// turned it off stay, unwritten, for when it is turned on again).
pub(super) fn render(shared: &Shared, live: &Live, out: &mut String) {
    if !live.routes.enabled() {
        return;
    }
    header(
        out,
        names::ROUTE_RESPONSES_TOTAL,
        "counter",
        "Responses sent to clients by route (the matching template of route_tally.routes, else the path normalized, or __other__ past route_tally.max_routes), class of the real code (1xx..5xx, or \"other\") and origin; no tenant label.",
    );
    shared.routes.each(|route, counts| {
        for origin in Origin::ALL {
            for (class, &n) in counts[origin as usize].iter().enumerate() {
                if n == 0 {
                    continue;
                }
                out.push_str(names::ROUTE_RESPONSES_TOTAL);
                out.push('{');
                out.push_str(label::ROUTE);
                out.push_str("=\"");
                escape_into(out, route);
                out.push_str("\",");
                out.push_str(label::CLASS);
                out.push_str("=\"");
                out.push_str(
                    CLASS_LABELS
                        .get(class)
                        .copied()
                        .unwrap_or(OUT_OF_RANGE_LABEL),
                );
                out.push_str("\",");
                out.push_str(label::ORIGIN);
                out.push_str("=\"");
                out.push_str(origin.label());
                out.push_str("\"} ");
                push_int(out, n);
                out.push('\n');
            }
        }
    });
}
