//! Multi-window multi-burn-rate SLO alerts (Google SRE workbook, "Alerting
//! on SLOs") on the raw response counters, per tenant and per job, with the
//! 1d/3d windows averaged from 5m rates so no rule scans days of samples.

use std::time::Duration;

use super::yaml::{num, Alert, Yaml};
use super::{CODE_LABELS, POD_LABELS};

/// The recording and alert groups of the burn-rate alerts.
pub(super) fn burn_rate_rules(y: &mut Yaml, budget: f64, slo_pct: &str) {
    let tenant_agg = format!("{POD_LABELS}, {CODE_LABELS}");
    let job_agg = format!("{POD_LABELS}, {CODE_LABELS}, tenant");
    y.group(
        "statuswatch.recording",
        None,
        &["Burn-rate inputs: requests/s, 5xx/s and 5xx share per tenant and per job at 5m..6h."],
    );
    y.record(
        "statuswatch:responses:rate5m",
        &[],
        &format!("sum without ({POD_LABELS}) (rate(statuswatch_responses_total[5m]))"),
    );
    for (lvl, agg) in [("tenant", &tenant_agg), ("job", &job_agg)] {
        for win in ["5m", "30m", "1h", "2h", "6h"] {
            let req = format!("{lvl}:statuswatch_responses:rate{win}");
            let err = format!("{lvl}:statuswatch_responses_5xx:rate{win}");
            y.record(
                &req,
                &[],
                &format!("sum without ({agg}) (rate(statuswatch_responses_total[{win}]))"),
            );
            y.record(
                &err,
                &[],
                &format!(
                    "sum without ({agg}) (rate(statuswatch_responses_total{{class=\"5xx\"}}[{win}]))\n  or 0 * {req}"
                ),
            );
            y.record(
                &format!("{lvl}:statuswatch_responses_5xx:ratio_rate{win}"),
                &[],
                &format!("{err} / {req}"),
            );
        }
    }
    let b = num(budget);
    let fast = |lvl: &str| {
        format!(
            "(\n    {lvl}:statuswatch_responses_5xx:ratio_rate1h > (14.4 * {b})\n  and\n    {lvl}:statuswatch_responses_5xx:ratio_rate5m > (14.4 * {b})\n  and\n    {lvl}:statuswatch_responses:rate1h >= 1\n)\nor\n(\n    {lvl}:statuswatch_responses_5xx:ratio_rate6h > (6 * {b})\n  and\n    {lvl}:statuswatch_responses_5xx:ratio_rate30m > (6 * {b})\n  and\n    {lvl}:statuswatch_responses:rate6h >= 1\n)"
        )
    };
    let slow = |lvl: &str| {
        format!(
            "(\n    {lvl}:statuswatch_responses_5xx:ratio_rate1d > (3 * {b})\n  and\n    {lvl}:statuswatch_responses_5xx:ratio_rate2h > (3 * {b})\n  and\n    {lvl}:statuswatch_responses:rate1d >= 0.1\n)\nor\n(\n    {lvl}:statuswatch_responses_5xx:ratio_rate3d > {b}\n  and\n    {lvl}:statuswatch_responses_5xx:ratio_rate6h > {b}\n  and\n    {lvl}:statuswatch_responses:rate3d >= 0.1\n)"
        )
    };
    y.group("statuswatch.slo", None, &[]);
    y.alert(Alert {
        name: "StatuswatchErrorBudgetBurn",
        expr: &fast("job"),
        for_: Some(Duration::from_secs(120)),
        keep_firing_for: None,
        labels: &[("severity", "critical"), ("signal", "5xx")],
        summary: "5xx error budget of {{ $labels.job }} burning fast across all tenants",
        description: &format!("{{{{ $value | humanizePercentage }}}} of all responses are 5xx over the long window (1h or 6h), burning the {slo_pct} % SLO's error budget at 6x-14.4x: at this rate the 30-day budget is gone in 2-5 days."),
        runbook: None,
    });
    y.alert(Alert {
        name: "StatuswatchTenantErrorBudgetBurn",
        expr: &fast("tenant"),
        for_: Some(Duration::from_secs(120)),
        keep_firing_for: None,
        labels: &[("severity", "warning"), ("signal", "5xx")],
        summary: "5xx error budget of tenant {{ $labels.tenant }} burning fast",
        description: &format!("{{{{ $value | humanizePercentage }}}} of tenant {{{{ $labels.tenant }}}}'s responses are 5xx over the long window (1h or 6h), burning its {slo_pct} % SLO's error budget at 6x-14.4x."),
        runbook: None,
    });
    y.group(
        "statuswatch.slo.long",
        Some("5m"),
        &[
            "1d/3d windows are averaged from the 5m rates every 5 minutes instead of",
            "scanning days of raw samples at every evaluation.",
        ],
    );
    for lvl in ["tenant", "job"] {
        for win in ["1d", "3d"] {
            let req = format!("{lvl}:statuswatch_responses:rate{win}");
            let err = format!("{lvl}:statuswatch_responses_5xx:rate{win}");
            y.record(
                &req,
                &[],
                &format!("avg_over_time({lvl}:statuswatch_responses:rate5m[{win}])"),
            );
            y.record(
                &err,
                &[],
                &format!("avg_over_time({lvl}:statuswatch_responses_5xx:rate5m[{win}])"),
            );
            y.record(
                &format!("{lvl}:statuswatch_responses_5xx:ratio_rate{win}"),
                &[],
                &format!("{err} / {req}"),
            );
        }
    }
    y.alert(Alert {
        name: "StatuswatchErrorBudgetBurnSlow",
        expr: &slow("job"),
        for_: Some(Duration::from_secs(900)),
        keep_firing_for: None,
        labels: &[("severity", "warning"), ("signal", "5xx")],
        summary: "5xx error budget of {{ $labels.job }} burning slowly across all tenants",
        description: &format!("{{{{ $value | humanizePercentage }}}} of all responses are 5xx over the long window (1d or 3d), above the {slo_pct} % SLO's error budget (1x-3x burn): the 30-day budget will run out before the month ends."),
        runbook: None,
    });
    y.alert(Alert {
        name: "StatuswatchTenantErrorBudgetBurnSlow",
        expr: &slow("tenant"),
        for_: Some(Duration::from_secs(900)),
        keep_firing_for: None,
        labels: &[("severity", "info"), ("signal", "5xx")],
        summary: "5xx error budget of tenant {{ $labels.tenant }} burning slowly",
        description: &format!("{{{{ $value | humanizePercentage }}}} of tenant {{{{ $labels.tenant }}}}'s responses are 5xx over the long window (1d or 3d), above its {slo_pct} % SLO's error budget (1x-3x burn)."),
        runbook: None,
    });
}
