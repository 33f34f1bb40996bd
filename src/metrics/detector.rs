//! The detector's published state: active spikes, the ratios it judged and
//! spike onsets, overall (`tenant="__all__"`) and per tenant.
//!
//! Per tenant, every family here has series only for what happened: a spike
//! gauge and its ratios while the tenant spikes, an onset counter from the
//! tenant's first onset. A tenant that never spiked costs no series (it used
//! to cost one zero counter per signal, a fifth of a pod's series at 10,000
//! tenants). The `__all__` series are always present, one per signal.

use super::names::{self, label};
use super::tenants::Tenants;
use super::text::{escape_into, header, push_float};
use crate::state::Shared;
use crate::tenant::ALL;

/// Every detector family, in exposition order.
pub(super) fn render(shared: &Shared, tenants: &Tenants<'_>, out: &mut String) {
    let snap = shared.detector.load();
    header(
        out,
        names::SPIKE_ACTIVE,
        "gauge",
        "1 while a spike of the signal is active; tenant=\"__all__\" is the overall series.",
    );
    for sig in &snap.signals {
        spike_line(
            out,
            names::SPIKE_ACTIVE,
            &sig.name,
            ALL,
            None,
            if sig.overall.active { 1.0 } else { 0.0 },
        );
        for (tenant, v) in &sig.active {
            if v.active {
                spike_line(out, names::SPIKE_ACTIVE, &sig.name, tenant, None, 1.0);
            }
        }
    }
    header(
        out,
        names::SIGNAL_RATIO,
        "gauge",
        "The detector's inputs: the signal's share of requests in the short window and its long-run baseline.",
    );
    for sig in &snap.signals {
        spike_line(
            out,
            names::SIGNAL_RATIO,
            &sig.name,
            ALL,
            Some(names::WINDOW_SHORT),
            sig.overall.short,
        );
        spike_line(
            out,
            names::SIGNAL_RATIO,
            &sig.name,
            ALL,
            Some(names::WINDOW_BASELINE),
            sig.overall.baseline,
        );
        for (tenant, v) in &sig.active {
            if v.active {
                spike_line(
                    out,
                    names::SIGNAL_RATIO,
                    &sig.name,
                    tenant,
                    Some(names::WINDOW_SHORT),
                    v.short,
                );
                spike_line(
                    out,
                    names::SIGNAL_RATIO,
                    &sig.name,
                    tenant,
                    Some(names::WINDOW_BASELINE),
                    v.baseline,
                );
            }
        }
    }
    header(
        out,
        names::SPIKES_TOTAL,
        "counter",
        "Spike onsets; tenant=\"__all__\" is always present, a tenant's series starts at its first onset.",
    );
    for sig in &snap.signals {
        spike_line(
            out,
            names::SPIKES_TOTAL,
            &sig.name,
            ALL,
            None,
            sig.overall.spikes_total as f64,
        );
    }
    let mut prefix = String::new();
    for (i, sig) in snap.signals.iter().enumerate() {
        prefix.clear();
        prefix.push_str(names::SPIKES_TOTAL);
        prefix.push('{');
        prefix.push_str(label::SIGNAL);
        prefix.push_str("=\"");
        escape_into(&mut prefix, &sig.name);
        prefix.push_str("\",");
        prefix.push_str(label::TENANT);
        prefix.push_str("=\"");
        for t in tenants.iter() {
            // No onset yet: no series (see the module doc).
            if let Some(n @ 1..) = snap.spikes_total(t.r, i) {
                out.push_str(&prefix);
                out.push_str(t.label);
                out.push_str("\"} ");
                push_float(out, n as f64);
                out.push('\n');
            }
        }
    }
}

fn spike_line(
    out: &mut String,
    metric: &str,
    signal: &str,
    tenant: &str,
    window: Option<&str>,
    v: f64,
) {
    out.push_str(metric);
    out.push('{');
    out.push_str(label::SIGNAL);
    out.push_str("=\"");
    escape_into(out, signal);
    out.push_str("\",");
    out.push_str(label::TENANT);
    out.push_str("=\"");
    escape_into(out, tenant);
    if let Some(w) = window {
        out.push_str("\",");
        out.push_str(label::WINDOW);
        out.push_str("=\"");
        out.push_str(w);
    }
    out.push_str("\"} ");
    push_float(out, v);
    out.push('\n');
}
