//! Spike detection in Prometheus, as a chain that reads the raw per-pod
//! counters once per evaluation, over the short window only, and takes every
//! longer window from recorded, pod-summed series:
//!
//! * `statuswatch.spikes` (the global evaluation interval): per tenant and
//!   overall, the window's requests `n` and signal events `k` (the only raw
//!   read), the expected share `p0`, the surprise and the decision; the
//!   alerts fire on the decision;
//! * `statuswatch.baseline` (interval = the short window, so its samples
//!   tile time): one sample per complete window of `n` and `k`, the windows
//!   that belonged to a spike of a series with a baseline of at least
//!   `min_requests` ("frozen", [`SignalSpec::freezes`]), and the baseline itself: Σk and Σn over the baseline span of
//!   the windows that were not frozen. While a spike is frozen the baseline
//!   holds its last value (a rule reading its own previous sample), so an
//!   incident of any length is judged against the share from before it, as
//!   in process; after `relearn_after` it learns again.
//!
//! A tenant without a baseline of its own (fewer than max(min_requests, n)
//! requests: new tenant, fresh start, idle longer than the span) is judged
//! against the larger of its partial baseline (at its upper bound) and the overall baseline share
//! once its window holds `cold_min_requests` (see [`SignalSpec::expected`]),
//! and only once the overall series is itself not cold.

use std::time::Duration;

use super::cadence::Cadence;
use super::yaml::{num, prom_duration, q, Yaml};
use super::{code_labels, RulesOptions, POD_LABELS, SIG, TEN};
use crate::config::Config;
use crate::detect::{SignalSpec, P0_MAX, SUSPENDED_SIGNAL};
use crate::metrics::names::RESPONSES_TOTAL;

/// The alert-name fragment of a signal: "5xx" → "5xx", "suspended" →
/// "Suspension" (its historical name), "payment_required" → "PaymentRequired".
pub fn signal_title(name: &str) -> String {
    if name == SUSPENDED_SIGNAL {
        return "Suspension".into();
    }
    name.split(['_', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_uppercase().collect::<String>() + c.as_str()
            })
        })
        .collect()
}

/// Whether `code` falls in one of the signal's classes ("5xx" holds 503).
pub(super) fn in_classes(spec: &SignalSpec, code: u16) -> bool {
    spec.classes
        .iter()
        .any(|c| c.starts_with(char::from(b'0' + (code / 100) as u8)))
}

/// The label selector(s) of a signal's events, disjoint: classes first, then
/// the codes outside those classes ([`SignalSpec::all_from_config`] has
/// checked that those are catalog codes, so each has a `code` label).
pub(super) fn selectors(spec: &SignalSpec) -> Vec<String> {
    let mut out = Vec::new();
    let class_re = spec.classes.join("|");
    if !spec.classes.is_empty() {
        out.push(format!("class=~{}", q(&class_re)));
    }
    let codes: Vec<String> = spec
        .codes
        .iter()
        .filter(|code| !in_classes(spec, **code))
        .map(|c| c.to_string())
        .collect();
    if !codes.is_empty() {
        let mut sel = format!("code=~{}", q(&codes.join("|")));
        if !spec.classes.is_empty() {
            sel.push_str(&format!(", class!~{}", q(&class_re)));
        }
        out.push(sel);
    }
    out
}

/// The two aggregation levels of every spike series: per tenant, and overall
/// (per job and whatever other target labels survive).
pub(super) const LEVELS: [&str; 2] = ["tenant", "job"];

/// The names and durations the chain is built from, computed once.
pub(super) struct Chain {
    /// The rules' cadence: the window, and how long alerts keep firing.
    pub cadence: Cadence,
    /// The window ([`Cadence::window`]), e.g. "1m".
    pub w: String,
    /// The baseline span, e.g. "1h".
    pub b: String,
    /// Range selecting exactly the whole windows in the span of a series
    /// recorded once per window: half a window less than their length, so
    /// it holds as many samples on Prometheus 2 (closed ranges) as on 3
    /// (left-open) whatever the evaluation's phase.
    pub b_range: String,
    /// Look-back for "a spike was decided lately": window + clear_after, the
    /// alerts' keep_firing_for plus one window of evaluation lag.
    pub recent: String,
    /// Look-back deciding whether a complete window belonged to a frozen
    /// spike: the window itself, clear_after before it, and one window after
    /// it (the detection lag of an incident that began inside it).
    pub covers: String,
    /// Look-back of a rule reading its own previous samples, recorded once
    /// per window: the last two on Prometheus 2 and 3 alike (two and a half
    /// windows; a left-open `[2w]` holds only the last), so one missed
    /// evaluation does not drop what it holds.
    pub hold: String,
    /// Whether the sidecars keep the route tally the alerts can name
    /// failing routes from (`route_tally.enabled`).
    pub route_tally: bool,
}

impl Chain {
    pub(super) fn new(cfg: &Config, cadence: Cadence) -> Chain {
        let d = &cfg.detector;
        let w = cadence.window;
        let ca = cadence.keep_firing(signals_clear_after(cfg));
        // Cadence::of has checked that the span holds at least two windows.
        let windows = (d.baseline_half_life.as_millis() / w.as_millis().max(1)).max(1) as u32;
        Chain {
            cadence,
            w: prom_duration(w),
            b: prom_duration(d.baseline_half_life),
            b_range: prom_duration((w * windows).saturating_sub(w / 2)),
            recent: prom_duration(w + ca),
            covers: prom_duration(w * 2 + ca),
            hold: prom_duration(w * 2 + w / 2),
            route_tally: cfg.route_tally.enabled,
        }
    }

    /// `L:statuswatch_requests:increase<w>`: requests in the window.
    pub(super) fn requests(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_requests:increase{}", self.w)
    }

    /// `L:statuswatch_signal_events:increase<w>`: signal events in the window (> 0 only).
    pub(super) fn events(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_signal_events:increase{}", self.w)
    }

    /// `...:increase<w>_offset<w>`: the last complete window, one sample per window.
    pub(super) fn tiled(&self, series: &str) -> String {
        format!("{series}_offset{}", self.w)
    }

    pub(super) fn spike(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_signal_spike:ratio{}", self.w)
    }

    fn frozen(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_signal_spike:frozen")
    }

    fn since(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_signal_spike:since")
    }

    fn base_requests(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_signal_baseline_requests:sum{}", self.b)
    }

    fn base_events(&self, lvl: &str) -> String {
        format!("{lvl}:statuswatch_signal_baseline_events:sum{}", self.b)
    }
}

/// The longest clear_after of any signal: one look-back serves them all
/// (a longer one only keeps a spike's windows out of the baseline longer).
fn signals_clear_after(cfg: &Config) -> Duration {
    cfg.signals
        .values()
        .filter_map(|s| s.clear_after)
        .chain(std::iter::once(cfg.detector.clear_after))
        .max()
        .unwrap_or(cfg.detector.clear_after)
}

/// `sum without (<pod labels>, <code labels>[, tenant])`: the aggregation
/// of a level from the raw counter.
fn raw_agg(lvl: &str) -> String {
    if lvl == "tenant" {
        format!("{POD_LABELS}, {}", code_labels())
    } else {
        format!("{POD_LABELS}, {}, {TEN}", code_labels())
    }
}

/// The signal events of `spec` in the window, per tenant, from the raw counter.
fn raw_events(spec: &SignalSpec, w: &str) -> String {
    let parts: Vec<String> = selectors(spec)
        .iter()
        .map(|sel| format!("increase({RESPONSES_TOTAL}{{{sel}}}[{w}])"))
        .collect();
    format!(
        "sum without ({}) (\n  {}\n) > 0",
        raw_agg("tenant"),
        parts.join("\n    or\n  ")
    )
}

/// The `statuswatch.spikes` group: window counts, expected share, surprise,
/// decision and alerts of every signal.
pub(super) fn spike_rules(y: &mut Yaml, signals: &[SignalSpec], c: &Chain, opts: &RulesOptions) {
    let w = &c.w;
    y.group(
        "statuswatch.spikes",
        None,
        &[
            "Fleet-level spike detection on pod-summed counters (see the header): the",
            "only rules that read the raw per-pod counters, over the short window only.",
        ],
    );
    y.record(
        &c.requests("tenant"),
        &[],
        &format!(
            "sum without ({}) (increase({RESPONSES_TOTAL}[{w}]))",
            raw_agg("tenant")
        ),
    );
    y.record(
        &c.requests("job"),
        &[],
        &format!("sum without ({TEN}) ({})", c.requests("tenant")),
    );
    for spec in signals {
        let sig = spec.name.as_str();
        let sl = [(SIG, sig)];
        let m = format!("{{{SIG}={}}}", q(sig));
        y.record(&c.events("tenant"), &sl, &raw_events(spec, w));
        y.record(
            &c.events("job"),
            &sl,
            &format!("sum without ({TEN}) ({}{m})", c.events("tenant")),
        );
        let (floor, p0max) = (num(spec.floor), num(P0_MAX));
        // The overall level first: a cold tenant's reference is its share.
        for lvl in ["job", "tenant"] {
            let req = c.requests(lvl);
            let ev = format!("{}{m}", c.events(lvl));
            let breq = format!("{}{m}", c.base_requests(lvl));
            let bev = format!("{}{m}", c.base_events(lvl));
            let expected = format!("{lvl}:statuswatch_signal_expected:ratio");
            let ratio = format!("{lvl}:statuswatch_signal_events:ratio{w}");
            let surprise = format!("{lvl}:statuswatch_signal:surprise{w}");
            // Everything from here on is computed only where the window has
            // signal events: three joins with the dense per-tenant series,
            // then sparse vectors only (a rule is as costly as its largest
            // operand, and most tenants have no event in a window).
            let n = format!("{lvl}:statuswatch_signal_window_requests:increase{w}");
            let nb = format!(
                "{lvl}:statuswatch_signal_window_baseline_requests:sum{}",
                c.b
            );
            let bs = format!("{lvl}:statuswatch_signal_window_baseline:ratio");
            y.record(&n, &sl, &format!("{req} and ignoring ({SIG}) {ev}"));
            y.record(&nb, &sl, &format!("{breq} and {ev}"));
            y.record(
                &bs,
                &sl,
                &format!("(({bev} and {ev}) or 0 * {nb}{m}) / ({nb}{m} > 0)"),
            );
            let (n, nb, bs) = (format!("{n}{m}"), format!("{nb}{m}"), format!("{bs}{m}"));
            // The series' own baseline: N >= max(min_requests, n), taken at
            // its upper bound (SignalSpec::baseline_bound): B + sqrt(B(1−B)/N) + 1/N.
            let own = format!(
                "({bs} and ({nb} >= {}) and ({nb} >= {n}))",
                spec.min_requests
            );
            let upper = |b: &str| format!("{b} + sqrt({b} * (1 - {b}) / {nb}) + 1 / {nb}");
            let bound = upper(&own);
            // A cold tenant is judged against the largest of its partial
            // baseline, at the same upper bound, and the overall baseline
            // share; a cold overall series is not judged, there is nothing to
            // compare it with. Unlike in process, only once the overall
            // series is itself no longer cold: once it has a p0 of its own
            // (the job level, computed just above, has no cold branch, so
            // its expected ratio exists exactly when N >= max(min_requests,
            // n)). Just after Prometheus or the fleet starts, every series
            // is new and increase() misses each one's first count, the 5xx
            // series (sparse, one per tenant and pod) most, so the overall
            // share reads low (1.6 % for a true ~3 % in a replay), and a
            // first baseline window holding only the traffic's first seconds
            // gives a low-volume tenant no partial baseline at all: a
            // chronically failing 30 % tenant then looked like a spike. By
            // the time the overall baseline holds a whole window, so does
            // every tenant's partial one.
            let partial = format!("({})", upper(&bs));
            let cold = if lvl == "tenant" {
                let reference = format!(
                    "(0 * {ev} + ignoring ({TEN}) group_left () (job:statuswatch_signal_baseline:ratio{m} and job:statuswatch_signal_expected:ratio{m}))"
                );
                format!(
                    "\n  or\n    (\n      clamp(({partial} >= {reference}) or {reference}, {floor}, {p0max})\n      and ({n} >= {})\n    )",
                    spec.cold_min_requests
                )
            } else {
                String::new()
            };
            y.record(
                &expected,
                &sl,
                &format!("clamp({bound}, {floor}, {p0max}){cold}"),
            );
            y.record(&ratio, &sl, &format!("{ev} / {n}"));
            // q = max(k/n, p0), below 1: a share at or below p0 is no surprise (S = 0).
            let qc =
                format!("((clamp_max({ratio}{m}, 1 - 1e-09) > {expected}{m}) or {expected}{m})");
            y.record(
                &surprise,
                &sl,
                &format!(
                    "{n} * (\n    {qc} * ln({qc} / {expected}{m})\n  + (1 - {qc}) * ln((1 - {qc}) / (1 - {expected}{m}))\n)"
                ),
            );
            y.record(
                &c.spike(lvl),
                &sl,
                &format!(
                    "({ratio}{m} >= {factor} * {expected}{m})\nand ({surprise}{m} >= {thr})\nand ({ev} >= {min_ev})",
                    factor = num(spec.factor),
                    thr = num((spec.surprise_threshold() * 1e4).round() / 1e4),
                    min_ev = spec.min_events,
                ),
            );
            // Frozen: a spike of a series whose baseline holds min_requests
            // (SignalSpec::freezes), not yet relearn_after old. Its windows
            // stay out of the baseline, which holds its value meanwhile.
            // (N read from the sparse window copy: a spike has events.)
            y.record(
                &c.frozen(lvl),
                &sl,
                &format!(
                    "({}{m} and ({nb} >= {}))\nunless ({}{m} < time() - {})",
                    c.spike(lvl),
                    spec.min_requests,
                    c.since(lvl),
                    spec.relearn_after.as_secs()
                ),
            );
        }
        super::annotate::spike_alerts(y, spec, c, opts);
    }
}

/// The `statuswatch.baseline` group: one sample per complete window, the
/// frozen windows, spike onsets, and the baseline sums.
pub(super) fn baseline_rules(y: &mut Yaml, signals: &[SignalSpec], c: &Chain) {
    y.group(
        "statuswatch.baseline",
        Some(&c.w),
        &[
            "The baseline, from recorded series only. The interval equals the short window,",
            "so a `..._offset<w>` series holds one sample per complete window and",
            "sum_over_time over the span adds each window once.",
        ],
    );
    for lvl in LEVELS {
        y.record(
            &c.tiled(&c.requests(lvl)),
            &[],
            &format!("{} offset {}", c.requests(lvl), c.w),
        );
    }
    for spec in signals {
        let sig = spec.name.as_str();
        let sl = [(SIG, sig)];
        let m = format!("{{{SIG}={}}}", q(sig));
        for lvl in LEVELS {
            let req_t = c.tiled(&c.requests(lvl));
            let ev_t = c.tiled(&c.events(lvl));
            let fr_req = c.tiled(&format!(
                "{lvl}:statuswatch_signal_frozen_requests:increase{}",
                c.w
            ));
            let fr_ev = c.tiled(&format!(
                "{lvl}:statuswatch_signal_frozen_events:increase{}",
                c.w
            ));
            let frozen = format!("{}{m}", c.frozen(lvl));
            let spike = format!("{}{m}", c.spike(lvl));
            y.record(&ev_t, &sl, &format!("{}{m} offset {}", c.events(lvl), c.w));
            // Onset time of the current spike (a flicker shorter than
            // clear_after is the same spike), for relearn_after.
            y.record(
                &c.since(lvl),
                &sl,
                &format!(
                    "(last_over_time({since}{m}[{hold}]) and max_over_time({spike}[{recent}]))\nor\n(0 * max_over_time({spike}[{recent}]) + time())",
                    since = c.since(lvl),
                    hold = c.hold,
                    recent = c.recent,
                ),
            );
            let covered = format!("max_over_time({frozen}[{}])", c.covers);
            y.record(
                &fr_req,
                &sl,
                &format!("{req_t} and ignoring ({SIG}) {covered}"),
            );
            y.record(&fr_ev, &sl, &format!("{ev_t}{m} and {covered}"));
            let frozen_now = format!("max_over_time({frozen}[{}])", c.recent);
            let span = &c.b_range;
            // Σ over the span of the windows that were not frozen; held
            // while a frozen spike lasts.
            y.record(
                &c.base_requests(lvl),
                &sl,
                &format!(
                    "(\n  (\n      sum_over_time({req_t}[{span}]) unless ignoring ({SIG}) sum_over_time({fr_req}{m}[{span}])\n    or\n      sum_over_time({req_t}[{span}]) - ignoring ({SIG}) sum_over_time({fr_req}{m}[{span}])\n  )\n  unless ignoring ({SIG}) {frozen_now}\n)\nor ignoring ({SIG})\n(last_over_time({}{m}[{}]) and {frozen_now})",
                    c.base_requests(lvl),
                    c.hold
                ),
            );
            y.record(
                &c.base_events(lvl),
                &sl,
                &format!(
                    "(\n  (\n      sum_over_time({ev_t}{m}[{span}]) unless sum_over_time({fr_ev}{m}[{span}])\n    or\n      sum_over_time({ev_t}{m}[{span}]) - sum_over_time({fr_ev}{m}[{span}])\n  )\n  unless {frozen_now}\n)\nor\n(last_over_time({}{m}[{}]) and {frozen_now})",
                    c.base_events(lvl),
                    c.hold
                ),
            );
        }
        y.record(
            "job:statuswatch_signal_baseline:ratio",
            &sl,
            &format!(
                "({bev}{m} or 0 * {breq}{m})\n  / ({breq}{m} >= {})",
                spec.min_requests,
                bev = c.base_events("job"),
                breq = c.base_requests("job"),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(signal_title("5xx"), "5xx");
        assert_eq!(signal_title("suspended"), "Suspension");
        assert_eq!(signal_title("payment_required"), "PaymentRequired");
        assert_eq!(signal_title("auth-failures"), "AuthFailures");
    }

    #[test]
    fn codes_inside_a_class_are_not_counted_twice() {
        let mut cfg = Config::defaults().unwrap();
        cfg.signals.insert(
            "mixed".into(),
            crate::config::SignalConfig {
                enabled: true,
                codes: vec![500, 451],
                classes: vec!["5xx".into()],
                ..Default::default()
            },
        );
        let spec = SignalSpec::all_from_config(&cfg)
            .unwrap()
            .into_iter()
            .find(|s| s.name == "mixed")
            .unwrap();
        let sels = selectors(&spec);
        assert_eq!(
            sels,
            vec![
                "class=~\"5xx\"".to_string(),
                "code=~\"451\", class!~\"5xx\"".to_string()
            ]
        );
    }
}
