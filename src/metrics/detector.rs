//! The detector's published state: active spikes, the ratios it judged and
//! spike onsets, overall (`tenant="__all__"`) and per tenant.

use super::tenants::Tenants;
use super::text::{escape_into, header, push_float};
use crate::state::Shared;
use crate::tenant::ALL;

/// Every detector family, in exposition order.
pub(super) fn render(shared: &Shared, tenants: &Tenants, out: &mut String) {
    let snap = shared.detector.load();
    header(
        out,
        "statuswatch_spike_active",
        "gauge",
        "1 while a spike of the signal is active; tenant=\"__all__\" is the overall series.",
    );
    for sig in &snap.signals {
        spike_line(
            out,
            "statuswatch_spike_active",
            &sig.name,
            ALL,
            None,
            if sig.overall.active { 1.0 } else { 0.0 },
        );
        for (tenant, v) in &sig.active {
            if v.active {
                spike_line(
                    out,
                    "statuswatch_spike_active",
                    &sig.name,
                    tenant,
                    None,
                    1.0,
                );
            }
        }
    }
    header(
        out,
        "statuswatch_signal_ratio",
        "gauge",
        "The detector's inputs: the signal's share of requests in the short window and its long-run baseline.",
    );
    for sig in &snap.signals {
        spike_line(
            out,
            "statuswatch_signal_ratio",
            &sig.name,
            ALL,
            Some("short"),
            sig.overall.short,
        );
        spike_line(
            out,
            "statuswatch_signal_ratio",
            &sig.name,
            ALL,
            Some("baseline"),
            sig.overall.baseline,
        );
        for (tenant, v) in &sig.active {
            if v.active {
                spike_line(
                    out,
                    "statuswatch_signal_ratio",
                    &sig.name,
                    tenant,
                    Some("short"),
                    v.short,
                );
                spike_line(
                    out,
                    "statuswatch_signal_ratio",
                    &sig.name,
                    tenant,
                    Some("baseline"),
                    v.baseline,
                );
            }
        }
    }
    header(out, "statuswatch_spikes_total", "counter", "Spike onsets.");
    // Every tenant the detector tracks gets a series from 0, so that
    // increase() sees its first onset (a series born at 1 hides it).
    for sig in &snap.signals {
        spike_line(
            out,
            "statuswatch_spikes_total",
            &sig.name,
            ALL,
            None,
            sig.overall.spikes_total as f64,
        );
    }
    let mut prefix = String::new();
    for (i, sig) in snap.signals.iter().enumerate() {
        prefix.clear();
        prefix.push_str("statuswatch_spikes_total{signal=\"");
        escape_into(&mut prefix, &sig.name);
        prefix.push_str("\",tenant=\"");
        for t in tenants.iter() {
            if let Some(n) = snap.spikes_total(t.r, i) {
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
    out.push_str("{signal=\"");
    escape_into(out, signal);
    out.push_str("\",tenant=\"");
    escape_into(out, tenant);
    if let Some(w) = window {
        out.push_str("\",window=\"");
        out.push_str(w);
    }
    out.push_str("\"} ");
    push_float(out, v);
    out.push('\n');
}
