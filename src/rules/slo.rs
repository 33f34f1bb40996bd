//! Multi-window multi-burn-rate SLO alerts (Google SRE workbook, "Alerting
//! on SLOs"), per tenant and per job, on recorded series only: the 5m..6h
//! windows are sums of the baseline group's one-sample-per-window series
//! (`..._offset<w>`), the 1d/3d windows averages of hourly points of the 1h
//! rate (a subquery at a 1h step), so no rule reads the raw per-pod
//! counters over a long range and none scans days of samples.

use std::time::Duration;

use super::spikes::{Chain, LEVELS};
use super::yaml::{num, prom_duration, q, Alert, Yaml};
use super::{SIG, TEN};
use crate::detect::SignalSpec;
use crate::metrics::names::{label, RESPONSES_TOTAL};

/// The burn-rate windows taken from the per-window series.
const WINDOWS: [(&str, u64); 5] = [
    ("5m", 300),
    ("30m", 1800),
    ("1h", 3600),
    ("2h", 7200),
    ("6h", 21_600),
];

/// Where the SLO's 5xx counts come from: the events of a signal that is
/// exactly the 5xx class (the default `5xx` signal), or series of its own.
pub(super) struct Source {
    signal: Option<String>,
}

impl Source {
    pub(super) fn new(signals: &[SignalSpec]) -> Source {
        Source {
            signal: signals
                .iter()
                .find(|s| s.classes == ["5xx"] && s.codes.iter().all(|c| c / 100 == 5))
                .map(|s| s.name.clone()),
        }
    }

    /// The per-window 5xx series of a level, as a selector.
    fn tiled(&self, c: &Chain, lvl: &str) -> String {
        match &self.signal {
            Some(sig) => format!("{}{{{SIG}={}}}", c.tiled(&c.events(lvl)), q(sig)),
            None => c.tiled(&own_5xx(c, lvl)),
        }
    }

    /// The spike group's part: the window's 5xx count, when no signal has it.
    pub(super) fn window_records(&self, y: &mut Yaml, c: &Chain) {
        if self.signal.is_some() {
            return;
        }
        y.record(
            &own_5xx(c, "tenant"),
            &[],
            &format!(
                "sum without ({}, {}) (increase({RESPONSES_TOTAL}{{{}=\"5xx\"}}[{}])) > 0",
                super::POD_LABELS,
                super::code_labels(),
                label::CLASS,
                c.w
            ),
        );
        y.record(
            &own_5xx(c, "job"),
            &[],
            &format!("sum without ({TEN}) ({})", own_5xx(c, "tenant")),
        );
    }

    /// The baseline group's part: one sample per window of that count.
    pub(super) fn tiled_records(&self, y: &mut Yaml, c: &Chain) {
        if self.signal.is_some() {
            return;
        }
        for lvl in LEVELS {
            y.record(
                &c.tiled(&own_5xx(c, lvl)),
                &[],
                &format!("{} offset {}", own_5xx(c, lvl), c.w),
            );
        }
    }
}

fn own_5xx(c: &Chain, lvl: &str) -> String {
    format!("{lvl}:statuswatch_responses_5xx:increase{}", c.w)
}

/// The recording and alert groups of the burn-rate alerts.
pub(super) fn burn_rate_rules(y: &mut Yaml, c: &Chain, src: &Source, budget: f64, slo_pct: &str) {
    let short_window = c.cadence.window;
    let w_secs = short_window.as_secs_f64();
    y.group(
        "statuswatch.slo.windows",
        Some(&c.w),
        &[
            "Burn-rate inputs: requests/s and 5xx/s per tenant and per job at 5m..6h, summed",
            "from the one-sample-per-window series (5xx only where there were any).",
        ],
    );
    for lvl in LEVELS {
        for (win, secs) in WINDOWS {
            // Whole windows only: k windows of the short window, k >= 1.
            let k = ((secs as f64 / w_secs).round() as u64).max(1);
            let span = short_window * k as u32;
            let range = prom_duration(span.saturating_sub(short_window / 2).max(short_window / 2));
            let per_s = num(span.as_secs_f64());
            y.record(
                &format!("{lvl}:statuswatch_responses:rate{win}"),
                &[],
                &format!(
                    "sum_over_time({}[{range}]) / {per_s}",
                    c.tiled(&c.requests(lvl))
                ),
            );
            y.record(
                &format!("{lvl}:statuswatch_responses_5xx:rate{win}"),
                &[],
                &format!(
                    "sum without ({SIG}) (sum_over_time({}[{range}])) / {per_s}",
                    src.tiled(c, lvl)
                ),
            );
        }
    }
    let b = num(budget);
    // The share over a window: Σ5xx / Σrequests (a ratio of rates over the same span).
    let share = |lvl: &str, win: &str| {
        format!("{lvl}:statuswatch_responses_5xx:rate{win} / {lvl}:statuswatch_responses:rate{win}")
    };
    let burn = |lvl: &str, long: &str, short: &str, times: &str, min_rps: &str| {
        format!(
            "(\n    {} > ({times}{b})\n  and\n    {} > ({times}{b})\n  and\n    {lvl}:statuswatch_responses:rate{long} >= {min_rps}\n)",
            share(lvl, long),
            share(lvl, short),
        )
    };
    let fast = |lvl: &str| {
        format!(
            "{}\nor\n{}",
            burn(lvl, "1h", "5m", "14.4 * ", "1"),
            burn(lvl, "6h", "30m", "6 * ", "1")
        )
    };
    let slow = |lvl: &str| {
        format!(
            "{}\nor\n{}",
            burn(lvl, "1d", "2h", "3 * ", "0.1"),
            burn(lvl, "3d", "6h", "", "0.1")
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
        dashboard: None,
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
        dashboard: None,
        runbook: None,
    });
    y.group(
        "statuswatch.slo.long",
        Some("5m"),
        &[
            "1d/3d windows: the average of hourly points of the 1h rates (a subquery at a",
            "1h step reads one point per hour), every 5 minutes.",
        ],
    );
    for lvl in LEVELS {
        for win in ["1d", "3d"] {
            let req = format!("{lvl}:statuswatch_responses:rate1h");
            y.record(
                &format!("{lvl}:statuswatch_responses:rate{win}"),
                &[],
                &format!("avg_over_time({req}[{win}:1h])"),
            );
            // An hour without 5xx has no 5xx series: it counts as 0, not as missing.
            y.record(
                &format!("{lvl}:statuswatch_responses_5xx:rate{win}"),
                &[],
                &format!(
                    "avg_over_time(({lvl}:statuswatch_responses_5xx:rate1h or 0 * {req})[{win}:1h])"
                ),
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
        dashboard: None,
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
        dashboard: None,
        runbook: None,
    });
}
