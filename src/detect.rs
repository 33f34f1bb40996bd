//! Spike detectors: for each signal (a set of status codes), overall and per
//! tenant, decide whether the signal's count in a short window is improbable
//! under the series' own long-run share, given the requests seen.
//!
//! The detector runs off the request path: a background task ticks every
//! `detector.tick`, reads the tally's cumulative counters, and turns their
//! deltas into a ring of buckets (the short window) and an exponentially
//! decayed event/request pair (the baseline, fed only by buckets that left the
//! window, so it never contains the window it is compared with).
//!
//! The decision ([`SignalSpec::judge`]) is the one the Prometheus rules of
//! `statuswatch rules` compute on pod-summed counters. With `n` requests and `k`
//! events in the window, and a baseline of `N` requests with share `b`:
//!
//! * `p0 = max(b, floor)`: the expected share (the floor keeps a zero
//!   baseline from making every event a surprise);
//! * `S = n · KL(k/n ‖ p0)` = `k·ln(k/(n·p0)) + (n−k)·ln((n−k)/(n·(1−p0)))`,
//!   the Chernoff–Hoeffding exponent: `P(≥ k events | n, p0) ≤ e^(−S)` for
//!   any `n`, with no normal approximation, so small samples are safe;
//! * a spike when `S ≥ ln(1/significance)` **and** `k ≥ min_events` **and**
//!   `k/n ≥ factor × p0` (effect size: a huge tenant's tiny but significant
//!   rise does not page) **and** `N ≥ max(min_requests, n)` (a series is
//!   judged only against a baseline of its own, at least as large as the window).
//!
//! A spike ends once that decision has been false for `clear_after`. The
//! baseline does not learn while a spike is active, so a long outage keeps
//! alerting until it ends rather than becoming the new normal.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::status::{self, CELLS};
use crate::tenant::{Registry, SlotRef};

/// Buckets in the short window: detection granularity is window / BUCKETS.
pub const BUCKETS: usize = 12;

/// A named set of status cells and its thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    pub name: String,
    pub cells: Vec<usize>,
    /// The configured codes (sorted, deduplicated), for the Prometheus rules.
    pub codes: Vec<u16>,
    /// The configured classes, normalised ("5xx"), for the Prometheus rules.
    pub classes: Vec<String>,
    /// Lower bound of the expected share `p0`.
    pub floor: f64,
    /// Effect size: the window's share must be at least `factor × p0`.
    pub factor: f64,
    /// Requests the baseline must hold before the series is judged.
    pub min_requests: u64,
    /// Events the window must hold.
    pub min_events: u64,
    /// Bound on the per-window probability of a steady series being judged a spike.
    pub significance: f64,
    pub clear_after: Duration,
    /// Severity of the fleet-wide alert in the Prometheus rules.
    pub severity: String,
}

/// Alert severities (kube-prometheus-stack's convention).
pub const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// Largest expected share used: keeps `ln(1 − p0)` finite.
pub const P0_MAX: f64 = 0.999_999;

/// `n · KL(k/n ‖ p0)`: the Chernoff–Hoeffding exponent of the binomial upper
/// tail, `P(X ≥ k | X ~ Bin(n, p0)) ≤ exp(−surprise)`. Zero when `k/n ≤ p0`.
/// The shares are clamped to `[1e-9, 1 − 1e-9]` exactly as the Prometheus
/// rules do, so both engines compute the same number.
pub fn surprise(n: f64, k: f64, p0: f64) -> f64 {
    if !(n > 0.0 && k > 0.0) {
        return 0.0;
    }
    let p0 = p0.clamp(1e-9, P0_MAX);
    let q = (k / n).clamp(1e-9, 1.0 - 1e-9);
    if q <= p0 {
        return 0.0;
    }
    n * (q * (q / p0).ln() + (1.0 - q) * ((1.0 - q) / (1.0 - p0)).ln())
}

impl SignalSpec {
    /// `ln(1/significance)`: the surprise a spike needs.
    pub fn surprise_threshold(&self) -> f64 {
        -self.significance.ln()
    }

    /// The expected share for a baseline share `baseline`.
    pub fn expected_share(&self, baseline: f64) -> f64 {
        baseline.max(self.floor).min(P0_MAX)
    }

    /// The spike decision (module doc): `n` requests and `k` events in the
    /// window, a baseline of `base_requests` requests with share `baseline`.
    pub fn judge(&self, n: f64, k: f64, base_requests: f64, baseline: f64) -> bool {
        // A baseline holding fewer requests than the window it is compared with
        // (just started, or a tenant far above its usual volume) is too noisy to judge by.
        if base_requests < (self.min_requests as f64).max(n)
            || k < self.min_events as f64
            || n <= 0.0
        {
            return false;
        }
        let p0 = self.expected_share(baseline);
        k / n >= self.factor * p0 && surprise(n, k, p0) >= self.surprise_threshold()
    }

    /// Every enabled signal of a config, validated; errors name the key.
    pub fn all_from_config(cfg: &Config) -> Result<Vec<SignalSpec>, ConfigError> {
        let d = &cfg.detector;
        let mut out = Vec::new();
        for (name, s) in &cfg.signals {
            let key = |k: &str| format!("signals.{name}.{k}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::invalid(
                    format!("signals.{name}"),
                    "signal names may use only letters, digits, '_' and '-'",
                ));
            }
            if !s.enabled {
                continue;
            }
            let mut member = [false; CELLS];
            for (i, code) in s.codes.iter().enumerate() {
                if !status::is_tracked(*code) {
                    return Err(ConfigError::invalid(
                        format!("signals.{name}.codes[{i}]"),
                        format!(
                            "{code} is not an IANA-registered status code; name its class instead (e.g. \"5xx\")"
                        ),
                    ));
                }
                member[status::cell_of(*code)] = true;
            }
            let mut classes = Vec::new();
            for (i, class) in s.classes.iter().enumerate() {
                let c = status::parse_class(class).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("signals.{name}.classes[{i}]"),
                        format!("expected one of \"1xx\"..\"5xx\", got {class:?}"),
                    )
                })?;
                let label = class.to_ascii_lowercase();
                if !classes.contains(&label) {
                    classes.push(label);
                }
                for (cell, m) in member.iter_mut().enumerate() {
                    if status::cell_class(cell) == c {
                        *m = true;
                    }
                }
            }
            let cells: Vec<usize> = (0..CELLS).filter(|c| member[*c]).collect();
            if cells.is_empty() {
                return Err(ConfigError::invalid(
                    key("codes"),
                    "a signal needs at least one code or class",
                ));
            }
            let mut codes = s.codes.clone();
            codes.sort_unstable();
            codes.dedup();
            let spec = SignalSpec {
                name: name.clone(),
                cells,
                codes,
                classes,
                floor: s.floor.unwrap_or(d.floor),
                factor: s.factor.unwrap_or(d.factor),
                min_requests: s.min_requests.unwrap_or(d.min_requests),
                min_events: s.min_events.unwrap_or(d.min_events),
                significance: s.significance.unwrap_or(d.significance),
                clear_after: s.clear_after.unwrap_or(d.clear_after),
                severity: s.severity.clone().unwrap_or_else(|| "warning".into()),
            };
            if !SEVERITIES.contains(&spec.severity.as_str()) {
                return Err(ConfigError::invalid(
                    key("severity"),
                    format!(
                        "expected \"critical\", \"warning\" or \"info\", got {:?}",
                        spec.severity
                    ),
                ));
            }
            // Errors name the key that set the value: the signal's own, or [detector]'s.
            let which = |k: &str, own: bool| {
                if own {
                    key(k)
                } else {
                    format!("detector.{k}")
                }
            };
            if !(spec.floor > 0.0 && spec.floor < 1.0) {
                return Err(ConfigError::invalid(
                    which("floor", s.floor.is_some()),
                    "must be within (0, 1)",
                ));
            }
            if !(spec.factor >= 1.0 && spec.factor.is_finite()) {
                return Err(ConfigError::invalid(
                    which("factor", s.factor.is_some()),
                    "must be a finite number >= 1",
                ));
            }
            if spec.min_events == 0 {
                return Err(ConfigError::invalid(
                    which("min_events", s.min_events.is_some()),
                    "must be at least 1",
                ));
            }
            if !(spec.significance > 0.0 && spec.significance < 0.5) {
                return Err(ConfigError::invalid(
                    which("significance", s.significance.is_some()),
                    "must be within (0, 0.5), e.g. 1e-7",
                ));
            }
            out.push(spec);
        }
        Ok(out)
    }
}

/// Detector timing, from `[detector]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub tick: Duration,
    pub short_window: Duration,
    pub baseline_half_life: Duration,
}

impl Timing {
    pub fn from_config(cfg: &Config) -> Timing {
        Timing {
            tick: cfg.detector.tick,
            short_window: cfg.detector.short_window,
            baseline_half_life: cfg.detector.baseline_half_life,
        }
    }

    fn ticks_per_bucket(&self) -> u64 {
        let window_ticks = (self.short_window.as_secs_f64() / self.tick.as_secs_f64()).round();
        ((window_ticks / BUCKETS as f64).round() as u64).max(1)
    }

    /// Baseline decay per bucket that leaves the short window.
    fn decay(&self) -> f64 {
        let bucket = self.tick.as_secs_f64() * self.ticks_per_bucket() as f64;
        (-bucket / self.baseline_half_life.as_secs_f64()).exp2()
    }
}

/// What the exposition shows of one detector series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SeriesView {
    pub active: bool,
    pub short: f64,
    pub baseline: f64,
    pub spikes_total: u64,
}

/// One signal's view: the overall series and the tenants spiking now.
#[derive(Debug, Clone, Default)]
pub struct SignalView {
    pub name: String,
    pub overall: SeriesView,
    pub active: Vec<(String, SeriesView)>,
}

/// The detector's published state, swapped whole after each tick.
///
/// Spike onset counts of every tenant are kept flat by slot index (no name
/// copies per tick); the exposition joins them with the registry's names.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub signals: Vec<SignalView>,
    slot_gen: Vec<u32>,
    spikes: Vec<u64>,
}

impl Snapshot {
    /// Spike onsets of signal `sig` for the tenant in slot `r`, if the
    /// detector holds state for exactly that slot generation.
    pub fn spikes_total(&self, r: SlotRef, sig: usize) -> Option<u64> {
        let n = self.signals.len();
        let idx = r.idx as usize;
        (self.slot_gen.get(idx) == Some(&r.gen))
            .then(|| self.spikes.get(idx * n + sig).copied())
            .flatten()
    }
}

#[derive(Debug, Clone, Default)]
struct SigState {
    last_events: u64,
    ring: [u32; BUCKETS],
    decayed_events: f64,
    decayed_requests: f64,
    active: bool,
    below_since: Option<u64>,
    spikes_total: u64,
    short: f64,
    baseline: f64,
}

#[derive(Debug, Clone)]
struct SeriesState {
    gen: u32,
    last_requests: u64,
    ring: [u32; BUCKETS],
    sig: Box<[SigState]>,
}

impl SeriesState {
    fn new(gen: u32, signals: usize) -> SeriesState {
        SeriesState {
            gen,
            last_requests: 0,
            ring: [0; BUCKETS],
            sig: vec![SigState::default(); signals].into_boxed_slice(),
        }
    }
}

/// Approximate bytes of detector state per tracked tenant with `signals` signals.
pub fn bytes_per_tenant(signals: usize) -> usize {
    std::mem::size_of::<Option<SeriesState>>() + signals * std::mem::size_of::<SigState>()
}

/// The detector. Owned by its background task; `step` is its whole work.
pub struct Detector {
    timing: Timing,
    signals: Vec<SignalSpec>,
    tick_no: u64,
    overall: SeriesState,
    /// Indexed by tenant slot; reset when a slot's generation changes.
    tenants: Vec<Option<SeriesState>>,
}

impl Detector {
    pub fn new(timing: Timing, signals: Vec<SignalSpec>) -> Detector {
        let n = signals.len();
        Detector {
            timing,
            signals,
            tick_no: 0,
            overall: SeriesState::new(0, n),
            tenants: Vec::new(),
        }
    }

    /// Apply reloaded signals and timing. A signal that keeps its name and
    /// codes keeps its state (thresholds may change); others start fresh.
    pub fn reconfigure(&mut self, timing: Timing, signals: Vec<SignalSpec>) {
        let mapping: Vec<Option<usize>> = signals
            .iter()
            .map(|s| {
                self.signals
                    .iter()
                    .position(|o| o.name == s.name && o.cells == s.cells)
            })
            .collect();
        let remap = |st: &mut SeriesState| {
            let old = std::mem::take(&mut st.sig);
            st.sig = mapping
                .iter()
                .map(|m| m.and_then(|i| old.get(i).cloned()).unwrap_or_default())
                .collect();
            // A fresh signal must not see all history as one delta.
            for (s, m) in st.sig.iter_mut().zip(&mapping) {
                if m.is_none() {
                    s.last_events = u64::MAX;
                }
            }
        };
        remap(&mut self.overall);
        for st in self.tenants.iter_mut().flatten() {
            remap(st);
        }
        if timing != self.timing {
            // A different window length makes the ring's buckets meaningless.
            for st in std::iter::once(&mut self.overall).chain(self.tenants.iter_mut().flatten()) {
                st.ring = [0; BUCKETS];
                for s in st.sig.iter_mut() {
                    s.ring = [0; BUCKETS];
                }
            }
        }
        self.timing = timing;
        self.signals = signals;
    }

    /// One tick: read the tallies, update every series, return the new view.
    pub fn step(&mut self, registry: &Registry) -> Snapshot {
        self.tick_no += 1;
        let per_bucket = self.timing.ticks_per_bucket();
        let bucket = ((self.tick_no / per_bucket) % BUCKETS as u64) as usize;
        let new_bucket = self.tick_no.is_multiple_of(per_bucket);
        let decay = self.timing.decay();
        let nsig = self.signals.len();

        let mut all_requests = 0u64;
        let mut all_events = vec![0u64; nsig];
        let mut seen = vec![false; self.tenants.len()];
        let signals = &self.signals;
        let tick_no = self.tick_no;
        let mut slot_gen: Vec<u32> = Vec::with_capacity(self.tenants.len());
        let mut spikes: Vec<u64> = Vec::with_capacity(self.tenants.len() * nsig);
        let mut views: Vec<SignalView> = signals
            .iter()
            .map(|s| SignalView {
                name: s.name.clone(),
                ..Default::default()
            })
            .collect();

        registry.for_each(|name, r, slot| {
            let idx = r.idx as usize;
            if idx >= self.tenants.len() {
                self.tenants.resize_with(idx + 1, || None);
                seen.resize(idx + 1, false);
            }
            seen[idx] = true;
            if slot_gen.len() <= idx {
                slot_gen.resize(idx + 1, u32::MAX);
                spikes.resize((idx + 1) * nsig, 0);
            }
            slot_gen[idx] = r.gen;
            let st = match &mut self.tenants[idx] {
                Some(st) if st.gen == r.gen => st,
                other => other.insert(SeriesState::new(r.gen, nsig)),
            };
            let requests = slot.counters.total();
            let d_req = requests.saturating_sub(st.last_requests);
            st.last_requests = requests;
            all_requests += d_req;
            let evicted = if new_bucket {
                std::mem::take(&mut st.ring[bucket])
            } else {
                0
            };
            st.ring[bucket] = st.ring[bucket].saturating_add(d_req.min(u32::MAX as u64) as u32);
            let window_requests: u64 = st.ring.iter().map(|&v| v as u64).sum();
            for (i, spec) in signals.iter().enumerate() {
                let events: u64 = spec
                    .cells
                    .iter()
                    .map(|&c| slot.counters.cell_total(c))
                    .sum();
                let s = &mut st.sig[i];
                let d_ev = if s.last_events == u64::MAX {
                    0
                } else {
                    events.saturating_sub(s.last_events)
                };
                s.last_events = events;
                all_events[i] += d_ev;
                update(
                    s,
                    spec,
                    bucket,
                    new_bucket,
                    evicted,
                    d_ev,
                    window_requests,
                    decay,
                    tick_no,
                    &self.timing,
                );
                spikes[idx * nsig + i] = s.spikes_total;
                if s.active {
                    views[i].active.push((
                        name.to_string(),
                        SeriesView {
                            active: s.active,
                            short: s.short,
                            baseline: s.baseline,
                            spikes_total: s.spikes_total,
                        },
                    ));
                }
            }
        });
        // Slots reclaimed since the last tick lose their detector state too.
        for (i, st) in self.tenants.iter_mut().enumerate() {
            if !seen.get(i).copied().unwrap_or(false) {
                *st = None;
            }
        }

        let st = &mut self.overall;
        let evicted = if new_bucket {
            std::mem::take(&mut st.ring[bucket])
        } else {
            0
        };
        st.ring[bucket] = st.ring[bucket].saturating_add(all_requests.min(u32::MAX as u64) as u32);
        let window_requests: u64 = st.ring.iter().map(|&v| v as u64).sum();
        for (i, spec) in signals.iter().enumerate() {
            let s = &mut st.sig[i];
            s.last_events = 0;
            update(
                s,
                spec,
                bucket,
                new_bucket,
                evicted,
                all_events[i],
                window_requests,
                decay,
                tick_no,
                &self.timing,
            );
            views[i].overall = SeriesView {
                active: s.active,
                short: s.short,
                baseline: s.baseline,
                spikes_total: s.spikes_total,
            };
        }
        Snapshot {
            signals: views,
            slot_gen,
            spikes,
        }
    }

    /// Detector state currently held (tenants with state).
    pub fn tenants_with_state(&self) -> usize {
        self.tenants.iter().filter(|t| t.is_some()).count()
    }
}

#[allow(clippy::too_many_arguments)]
fn update(
    s: &mut SigState,
    spec: &SignalSpec,
    bucket: usize,
    new_bucket: bool,
    evicted_requests: u32,
    d_ev: u64,
    window_requests: u64,
    decay: f64,
    tick_no: u64,
    timing: &Timing,
) {
    if new_bucket {
        // The bucket leaving the short window feeds the baseline, so the
        // baseline never contains the window it is compared with; it does
        // not learn while a spike is active (see the module doc).
        let evicted_events = std::mem::take(&mut s.ring[bucket]);
        if !s.active {
            s.decayed_events = s.decayed_events * decay + evicted_events as f64;
            s.decayed_requests = s.decayed_requests * decay + evicted_requests as f64;
        }
    }
    s.ring[bucket] = s.ring[bucket].saturating_add(d_ev.min(u32::MAX as u64) as u32);
    let window_events: u64 = s.ring.iter().map(|&v| v as u64).sum();
    s.short = if window_requests > 0 {
        (window_events as f64 / window_requests as f64).min(1.0)
    } else {
        0.0
    };
    s.baseline = if s.decayed_requests > 0.0 {
        (s.decayed_events / s.decayed_requests).min(1.0)
    } else {
        0.0
    };
    let over = spec.judge(
        window_requests as f64,
        window_events as f64,
        s.decayed_requests,
        s.baseline,
    );
    if !s.active {
        if over {
            s.active = true;
            s.below_since = None;
            s.spikes_total += 1;
        }
    } else if over {
        s.below_since = None;
    } else {
        let since = *s.below_since.get_or_insert(tick_no);
        let below_for = timing.tick.mul_f64((tick_no - since) as f64);
        if below_for >= spec.clear_after {
            s.active = false;
            s.below_since = None;
        }
    }
}

/// The shared, swappable detector view the exposition reads.
pub type SharedSnapshot = arc_swap::ArcSwap<Snapshot>;

pub fn empty_snapshot(signals: &[SignalSpec]) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        signals: signals
            .iter()
            .map(|s| SignalView {
                name: s.name.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Origin;
    use crate::tenant::ResolverSpec;

    struct Sim {
        reg: Registry,
        spec: ResolverSpec,
        det: Detector,
        cfg: Config,
        now: u32,
    }

    impl Sim {
        fn new(f: impl FnOnce(&mut Config)) -> Sim {
            Sim::with_capacity(100, f)
        }

        fn with_capacity(cap: usize, f: impl FnOnce(&mut Config)) -> Sim {
            let mut cfg = Config::defaults().unwrap();
            cfg.detector.short_window = Duration::from_secs(60);
            f(&mut cfg);
            let spec = ResolverSpec::from_config(&cfg.tenant).unwrap();
            let det = Detector::new(
                Timing::from_config(&cfg),
                SignalSpec::all_from_config(&cfg).unwrap(),
            );
            Sim {
                reg: Registry::new(cap),
                spec,
                det,
                cfg,
                now: 0,
            }
        }

        /// One second of traffic for a tenant: `n` requests, `bad` of them answered `code`.
        fn send(&self, tenant: &str, n: u64, bad: u64, code: u16) {
            let r = self.reg.lookup(&self.spec, tenant.as_bytes(), self.now);
            let slot = self.reg.slot(r);
            for i in 0..n {
                let c = if i < bad { code } else { 200 };
                slot.counters.add(Origin::Upstream, status::cell_of(c));
            }
        }

        fn tick(&mut self) -> Snapshot {
            self.now += 1;
            self.det.step(&self.reg)
        }

        fn tenant_active(snap: &Snapshot, signal: &str, tenant: &str) -> bool {
            snap.signals
                .iter()
                .find(|s| s.name == signal)
                .and_then(|s| s.active.iter().find(|(t, _)| t == tenant))
                .is_some_and(|(_, v)| v.active)
        }

        fn overall(snap: &Snapshot, signal: &str) -> SeriesView {
            snap.signals
                .iter()
                .find(|s| s.name == signal)
                .unwrap()
                .overall
        }
    }

    #[test]
    fn spike_is_raised_within_one_short_window_and_clears() {
        let mut sim = Sim::new(|c| c.detector.clear_after = Duration::from_secs(30));
        // an hour of clean-ish traffic: 1% errors
        for s in 0..3600 {
            sim.send("inkhouse", 10, u64::from(s % 10 == 0), 500);
            sim.send("blackcat", 10, 0, 500);
            let snap = sim.tick();
            assert!(
                !Sim::tenant_active(&snap, "5xx", "inkhouse"),
                "false positive at {s}s"
            );
        }
        // burst: half of inkhouse's requests fail
        let mut raised_after = None;
        for s in 0..60 {
            sim.send("inkhouse", 10, 5, 500);
            sim.send("blackcat", 10, 0, 500);
            let snap = sim.tick();
            if Sim::tenant_active(&snap, "5xx", "inkhouse") {
                raised_after = Some(s + 1);
                break;
            }
        }
        let raised_after = raised_after.expect("spike not raised within one short window");
        assert!(raised_after <= 60, "{raised_after}");
        // blackcat is clean
        let snap = sim.tick();
        assert!(!Sim::tenant_active(&snap, "5xx", "blackcat"));
        // recovery: clears only after the window drains and clear_after passes
        let mut cleared_after = None;
        for s in 0..300 {
            sim.send("inkhouse", 10, 0, 500);
            sim.send("blackcat", 10, 0, 500);
            let snap = sim.tick();
            if !Sim::tenant_active(&snap, "5xx", "inkhouse") {
                cleared_after = Some(s + 1);
                break;
            }
        }
        let cleared_after = cleared_after.expect("spike never cleared");
        assert!(cleared_after >= 30, "cleared too early: {cleared_after}s");
        assert!(
            cleared_after <= 60 + 30 + 5,
            "cleared too late: {cleared_after}s"
        );
        let v = sim.det.step(&sim.reg);
        let r = sim.reg.lookup(&sim.spec, b"inkhouse", sim.now);
        let blackcat = sim.reg.lookup(&sim.spec, b"blackcat", sim.now);
        assert_eq!(v.spikes_total(r, 0), Some(1));
        assert_eq!(v.spikes_total(blackcat, 0), Some(0));
    }

    #[test]
    fn constant_two_percent_background_never_fires() {
        let mut sim = Sim::new(|_| {});
        for s in 0..7200u64 {
            // exactly 2% of requests fail, spread evenly
            sim.send("steady", 50, 1, 500);
            let snap = sim.tick();
            assert!(!Sim::tenant_active(&snap, "5xx", "steady"), "fired at {s}s");
            assert!(!Sim::overall(&snap, "5xx").active);
        }
        let snap = sim.tick();
        let o = Sim::overall(&snap, "5xx");
        assert!((o.baseline - 0.02).abs() < 0.002, "{}", o.baseline);
    }

    #[test]
    fn low_traffic_tenant_never_fires() {
        let mut sim = Sim::new(|_| {});
        for s in 0..600 {
            // 3 requests a minute, all failing: below min_requests
            if s % 20 == 0 {
                sim.send("tiny", 1, 1, 500);
            }
            sim.send("big", 20, 0, 500);
            let snap = sim.tick();
            assert!(!Sim::tenant_active(&snap, "5xx", "tiny"));
        }
    }

    #[test]
    fn suspension_flood_raises_the_suspended_signal() {
        let mut sim = Sim::new(|_| {});
        for _ in 0..300 {
            for t in ["a", "b", "c", "d"] {
                sim.send(t, 5, 0, 451);
            }
            sim.tick();
        }
        let mut raised = false;
        for _ in 0..60 {
            sim.send("a", 5, 0, 451);
            sim.send("b", 5, 0, 451);
            sim.send("c", 5, 0, 451);
            sim.send("d", 5, 5, 451);
            let snap = sim.tick();
            if Sim::tenant_active(&snap, "suspended", "d")
                && Sim::overall(&snap, "suspended").active
            {
                raised = true;
                break;
            }
        }
        assert!(
            raised,
            "451 flood for one tenant did not raise suspended (tenant and overall)"
        );
    }

    #[test]
    fn reclaimed_slot_drops_detector_state() {
        let mut sim = Sim::new(|c| c.tenant.idle_ttl = Duration::from_secs(5));
        sim.spec = ResolverSpec::from_config(&sim.cfg.tenant).unwrap();
        for _ in 0..60 {
            sim.send("gone", 10, 10, 500);
            sim.tick();
        }
        // the three reserved slots always have state
        assert_eq!(sim.det.tenants_with_state(), 4);
        sim.now += 100;
        sim.reg.sweep(&sim.spec, sim.now);
        let snap = sim.tick();
        assert_eq!(sim.det.tenants_with_state(), 3);
        assert!(snap.signals[0].active.is_empty());
        assert!((3..10).all(|idx| snap.spikes_total(SlotRef { idx, gen: 0 }, 0).is_none()));
    }

    #[test]
    fn signals_from_config_validate() {
        let mut cfg = Config::defaults().unwrap();
        let sig = SignalSpec::all_from_config(&cfg).unwrap();
        assert_eq!(sig.len(), 2);
        let five = sig.iter().find(|s| s.name == "5xx").unwrap();
        assert!(five.cells.contains(&status::cell_of(502)));
        assert!(five.cells.contains(&status::cell_of(599)));
        assert!(!five.cells.contains(&status::cell_of(451)));
        cfg.signals.insert(
            "weird".into(),
            crate::config::SignalConfig {
                enabled: true,
                codes: vec![299],
                ..Default::default()
            },
        );
        let e = SignalSpec::all_from_config(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("signals.weird.codes[0]"), "{e}");
    }

    #[test]
    fn memory_per_tenant_is_small_and_fixed() {
        let b = bytes_per_tenant(2);
        assert!(b < 512, "{b} bytes");
    }

    #[test]
    fn reload_keeps_matching_signal_state() {
        let mut sim = Sim::new(|_| {});
        for _ in 0..120 {
            sim.send("x", 10, 0, 500);
            sim.tick();
        }
        for _ in 0..30 {
            sim.send("x", 10, 8, 500);
            sim.tick();
        }
        let signals = SignalSpec::all_from_config(&sim.cfg).unwrap();
        sim.det.reconfigure(Timing::from_config(&sim.cfg), signals);
        let snap = sim.tick();
        assert!(Sim::tenant_active(&snap, "5xx", "x"));
    }

    /// splitmix64: a seeded, reproducible RNG for the simulations.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Poisson(lambda) by inversion (lambda is small here).
        fn poisson(&mut self, lambda: f64) -> u64 {
            let (mut k, mut p, l) = (0u64, 1.0f64, (-lambda).exp());
            loop {
                p *= self.unit();
                if p <= l {
                    return k;
                }
                k += 1;
            }
        }

        fn binomial(&mut self, n: u64, p: f64) -> u64 {
            (0..n).filter(|_| self.unit() < p).count() as u64
        }
    }

    fn spec() -> SignalSpec {
        SignalSpec::all_from_config(&Config::defaults().unwrap())
            .unwrap()
            .into_iter()
            .find(|s| s.name == "5xx")
            .unwrap()
    }

    #[test]
    fn surprise_is_the_binomial_kl_exponent_and_bounds_the_tail() {
        // by hand: n=60, k=12, p0=0.02
        let q: f64 = 0.2;
        let want = 60.0 * (q * (q / 0.02).ln() + (1.0 - q) * ((1.0 - q) / 0.98).ln());
        assert!((surprise(60.0, 12.0, 0.02) - want).abs() < 1e-9);
        assert_eq!(surprise(60.0, 1.0, 0.02), 0.0, "k/n <= p0 is no surprise");
        assert_eq!(surprise(0.0, 0.0, 0.02), 0.0);
        assert!(surprise(10.0, 10.0, 0.01).is_finite());
        // exp(-surprise) >= the exact binomial tail P(X >= k), for a grid of n, p0, k
        let tail = |n: u64, p: f64, k: u64| -> f64 {
            let mut t = 0.0;
            let mut lc = 0.0f64; // ln C(n, j)
            for j in 0..=n {
                if j > 0 {
                    lc += ((n - j + 1) as f64).ln() - (j as f64).ln();
                }
                if j >= k {
                    t += (lc + j as f64 * p.ln() + (n - j) as f64 * (1.0 - p).ln()).exp();
                }
            }
            t
        };
        for n in [1u64, 3, 10, 14, 60, 200, 1000] {
            for p0 in [0.01, 0.02, 0.05, 0.3, 0.7] {
                for k in 1..=n {
                    if (k as f64) / (n as f64) <= p0 {
                        continue;
                    }
                    let bound = (-surprise(n as f64, k as f64, p0)).exp();
                    let exact = tail(n, p0, k);
                    assert!(
                        bound >= exact * (1.0 - 1e-9),
                        "n={n} p0={p0} k={k}: {bound} < {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn small_samples_are_judged_by_their_size() {
        let s = spec();
        // the normal approximation's trap: n=10, p0=0.02, k=3 (z = 6.3, P = 0.001)
        assert!(!s.judge(10.0, 3.0, 1e4, 0.02));
        // no baseline of its own yet: not judged
        assert!(!s.judge(60.0, 40.0, 5.0, 0.0));
        // a baseline smaller than the window (one 5 s bucket after start-up) is not trusted
        assert!(!s.judge(2750.0, 90.0, 250.0, 0.008));
        assert!(s.judge(2750.0, 90.0, 2750.0, 0.008));
        // a huge tenant's tiny significant rise: 2.0% -> 2.5% is no spike (effect size)
        assert!(surprise(1e6, 25_000.0, 0.02) > s.surprise_threshold());
        assert!(!s.judge(1e6, 25_000.0, 1e7, 0.02));
        // a chronically failing tenant (30 %) having a bad minute (8 of 20)
        assert!(!s.judge(20.0, 8.0, 1e4, 0.3));
        // a clear incident of a 1 req/s tenant: 40 % of 60
        assert!(s.judge(60.0, 24.0, 3600.0, 0.02));
    }

    #[test]
    fn thousands_of_steady_tenants_never_fire() {
        // 2000 tenants, Zipf-like volumes from 0.01 to 20 req/s, each with its
        // own steady 5xx share (0 %..40 %: clean ones, the 2 % background,
        // chronically failing ones), two simulated hours, after a warm-up.
        let tenants = 2000usize;
        let mut sim = Sim::with_capacity(tenants + 10, |_| {});
        let mut rng = Rng(0x5EED_0001);
        let names: Vec<String> = (0..tenants).map(|i| format!("t{i}")).collect();
        let rates: Vec<(f64, f64)> = (0..tenants)
            .map(|i| {
                let rps = (20.0 / (1.0 + i as f64 / 3.0)).max(0.01);
                let share = match i % 5 {
                    0 => 0.0,
                    1 | 2 => 0.02,
                    3 => 0.005 + 0.05 * rng.unit(),
                    _ => 0.1 + 0.3 * rng.unit(),
                };
                (rps, share)
            })
            .collect();
        let mut fired = Vec::new();
        let warmup = 600;
        for sec in 0..(warmup + 7200) {
            for (i, (rps, share)) in rates.iter().enumerate() {
                let n = rng.poisson(*rps);
                if n > 0 {
                    let bad = rng.binomial(n, *share);
                    sim.send(&names[i], n, bad, 500);
                }
            }
            let snap = sim.tick();
            if sec >= warmup {
                let five = &snap.signals[0];
                for (t, _) in &five.active {
                    fired.push((sec, t.clone()));
                }
                if five.overall.active {
                    fired.push((sec, "__all__".into()));
                }
            }
        }
        assert!(
            fired.is_empty(),
            "false spikes: {:?}",
            &fired[..fired.len().min(20)]
        );
    }

    /// Seconds from onset until `tenant`'s 5xx spike is active, when it gets
    /// `rps` requests per second with a 2 % background that becomes
    /// `incident` share at onset; `share_of_traffic` is this sidecar's part
    /// of it (1/replicas).
    fn onset_latency(rps: f64, incident: f64, share_of_traffic: f64, seed: u64) -> Option<u64> {
        let mut sim = Sim::new(|_| {});
        let mut rng = Rng(seed);
        let rps = rps * share_of_traffic;
        for _ in 0..900 {
            let n = rng.poisson(rps);
            let bad = rng.binomial(n, 0.02);
            sim.send("small", n, bad, 500);
            sim.send("big", 20, u64::from(rng.unit() < 0.4), 500);
            let snap = sim.tick();
            assert!(
                !Sim::tenant_active(&snap, "5xx", "small"),
                "false spike before onset"
            );
        }
        for s in 1..=90 {
            let n = rng.poisson(rps);
            let bad = rng.binomial(n, incident);
            sim.send("small", n, bad, 500);
            sim.send("big", 20, u64::from(rng.unit() < 0.4), 500);
            if Sim::tenant_active(&sim.tick(), "5xx", "small") {
                return Some(s);
            }
        }
        None
    }

    #[test]
    fn one_request_per_second_tenant_at_40_percent_fires() {
        let mut worst = 0;
        for seed in 1..=20 {
            let s = onset_latency(1.0, 0.4, 1.0, seed).expect("1 req/s at 40 % 5xx never fired");
            worst = worst.max(s);
        }
        assert!(worst <= 50, "slowest onset {worst}s");
    }

    #[test]
    fn chronically_failing_low_volume_tenant_never_fires() {
        let mut sim = Sim::new(|_| {});
        let mut rng = Rng(7);
        for s in 0..7200 {
            for (t, rps, share) in [
                ("chronic", 0.3, 0.35),
                ("flaky", 0.05, 0.6),
                ("mid", 5.0, 0.02),
            ] {
                let n = rng.poisson(rps);
                let bad = rng.binomial(n, share);
                sim.send(t, n, bad, 500);
            }
            let snap = sim.tick();
            assert!(
                snap.signals[0].active.is_empty(),
                "fired at {s}s: {:?}",
                snap.signals[0].active
            );
        }
    }
}
