//! The detector: per signal, one series overall and one per tenant slot,
//! stepped once per tick off the request path. Each step reads the tallies'
//! cumulative counters, turns their deltas into short-window counts
//! ([`Window`]) and a decayed baseline, judges every series with
//! [`SignalSpec::judge`] and publishes a [`Snapshot`] for the exposition.

use std::sync::Arc;
use std::time::Duration;

use super::spec::SignalSpec;
use super::window::{Position, Window, BUCKETS};
use crate::config::Config;
use crate::tenant::{Registry, SlotRef};

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

/// One signal's state in one series.
#[derive(Debug, Clone, Default)]
struct SigState {
    last_events: u64,
    events: Window,
    decayed_events: f64,
    decayed_requests: f64,
    active: bool,
    /// Tick of the active spike's onset.
    active_since: u64,
    below_since: Option<u64>,
    spikes_total: u64,
    short: f64,
    baseline: f64,
}

/// One series (overall, or one tenant slot generation): its requests and
/// each signal's state.
#[derive(Debug, Clone)]
struct SeriesState {
    gen: u32,
    last_requests: u64,
    requests: Window,
    sig: Box<[SigState]>,
}

impl SeriesState {
    fn new(gen: u32, signals: usize) -> SeriesState {
        SeriesState {
            gen,
            last_requests: 0,
            requests: Window::default(),
            sig: vec![SigState::default(); signals].into_boxed_slice(),
        }
    }

    /// Count this tick's requests; what the series' signals are judged against.
    fn record_requests(&mut self, pos: Position, d_req: u64) -> Requests {
        let evicted = self.requests.record(pos, d_req);
        Requests {
            evicted,
            window: self.requests.total(),
        }
    }
}

/// What is the same for every series in one tick.
struct Tick<'a> {
    pos: Position,
    /// Baseline decay per evicted bucket.
    decay: f64,
    no: u64,
    timing: &'a Timing,
}

/// A series' requests this tick: those leaving the window, and those in it.
#[derive(Clone, Copy)]
struct Requests {
    evicted: u32,
    window: u64,
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

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("signals", &self.signals.len())
            .field("tick_no", &self.tick_no)
            .field("tenants", &self.tenants.len())
            .finish_non_exhaustive()
    }
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
                st.requests.clear();
                for s in st.sig.iter_mut() {
                    s.events.clear();
                }
            }
        }
        self.timing = timing;
        self.signals = signals;
    }

    /// One tick: read the tallies, update every series, return the new view.
    pub fn step(&mut self, registry: &Registry) -> Snapshot {
        self.tick_no += 1;
        let tick = Tick {
            pos: Position::of(self.tick_no, self.timing.ticks_per_bucket()),
            decay: self.timing.decay(),
            no: self.tick_no,
            timing: &self.timing,
        };
        let nsig = self.signals.len();

        let mut all_requests = 0u64;
        let mut all_events = vec![0u64; nsig];
        let mut seen = vec![false; self.tenants.len()];
        let signals = &self.signals;
        let mut slot_gen: Vec<u32> = Vec::with_capacity(self.tenants.len());
        let mut spikes: Vec<u64> = Vec::with_capacity(self.tenants.len() * nsig);
        // What a tenant without a baseline of its own is judged against (as
        // of the last tick): the overall series' baseline share once that
        // holds min_requests, else (a fresh start) the overall window's share.
        let overall_window = self.overall.requests.total() as f64;
        let references: Vec<Option<f64>> = signals
            .iter()
            .zip(self.overall.sig.iter())
            .map(|(spec, o)| {
                if spec.freezes(o.decayed_requests) {
                    Some(o.baseline)
                } else {
                    (overall_window >= spec.cold_min_requests as f64).then_some(o.short)
                }
            })
            .collect();
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
            let req = st.record_requests(tick.pos, d_req);
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
                s.update(spec, &tick, req, d_ev, references[i]);
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
        let req = st.record_requests(tick.pos, all_requests);
        for (i, spec) in signals.iter().enumerate() {
            let s = &mut st.sig[i];
            s.last_events = 0;
            s.update(spec, &tick, req, all_events[i], None);
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

impl SigState {
    /// Count this tick's `d_ev` events and re-judge the series; `reference`
    /// is what it is judged against while it has no baseline of its own.
    fn update(
        &mut self,
        spec: &SignalSpec,
        tick: &Tick<'_>,
        req: Requests,
        d_ev: u64,
        reference: Option<f64>,
    ) {
        let evicted_events = self.events.record(tick.pos, d_ev);
        let active_for = tick
            .timing
            .tick
            .mul_f64(tick.no.saturating_sub(self.active_since) as f64);
        // A spike freezes the baseline (see the module doc) until it has
        // lasted relearn_after: then it is taken for a permanent change.
        let learning = !self.active
            || !spec.freezes(self.decayed_requests)
            || active_for >= spec.relearn_after;
        if tick.pos.starts_bucket && learning {
            // The bucket leaving the short window feeds the baseline, so the
            // baseline never contains the window it is compared with.
            self.decayed_events = self.decayed_events * tick.decay + evicted_events as f64;
            self.decayed_requests = self.decayed_requests * tick.decay + req.evicted as f64;
        }
        let window_events = self.events.total();
        self.short = if req.window > 0 {
            (window_events as f64 / req.window as f64).min(1.0)
        } else {
            0.0
        };
        self.baseline = if self.decayed_requests > 0.0 {
            (self.decayed_events / self.decayed_requests).min(1.0)
        } else {
            0.0
        };
        let over = spec.judge(
            req.window as f64,
            window_events as f64,
            self.decayed_requests,
            self.baseline,
            reference,
        );
        if !self.active {
            if over {
                self.active = true;
                self.active_since = tick.no;
                self.below_since = None;
                self.spikes_total += 1;
            }
        } else if over {
            self.below_since = None;
        } else {
            let since = *self.below_since.get_or_insert(tick.no);
            let below_for = tick.timing.tick.mul_f64((tick.no - since) as f64);
            if below_for >= spec.clear_after {
                self.active = false;
                self.below_since = None;
            }
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
    use crate::status::{self, Origin};
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

    /// A tenant at `rps` req/s whose 5xx share is `share(second)`, beside a
    /// steady fleet; returns, per second, whether its 5xx spike is active.
    fn replay(
        cfg: impl FnOnce(&mut Config),
        seconds: u64,
        rps: f64,
        share: impl Fn(u64) -> f64,
        seed: u64,
    ) -> Vec<bool> {
        let mut sim = Sim::new(cfg);
        let mut rng = Rng(seed);
        (0..seconds)
            .map(|sec| {
                let n = rng.poisson(rps);
                let bad = rng.binomial(n, share(sec));
                sim.send("studio", n, bad, 500);
                let m = rng.poisson(20.0);
                let bad = rng.binomial(m, 0.02);
                sim.send("fleet", m, bad, 500);
                Sim::tenant_active(&sim.tick(), "5xx", "studio")
            })
            .collect()
    }

    #[test]
    fn an_incident_longer_than_the_baseline_keeps_firing_until_it_ends() {
        // compressed: 30 s window, 2 min half-life, an incident of 4 half-lives
        let (warm, len) = (900u64, 480u64);
        let clear = 20u64;
        for seed in 1..=5 {
            let active = replay(
                |c| {
                    c.detector.short_window = Duration::from_secs(30);
                    c.detector.baseline_half_life = Duration::from_secs(120);
                    c.detector.clear_after = Duration::from_secs(clear);
                },
                warm + len + 120,
                5.0,
                |s| {
                    if (warm..warm + len).contains(&s) {
                        0.35
                    } else {
                        0.02
                    }
                },
                seed,
            );
            let onset = (warm..warm + len)
                .find(|&s| active[s as usize])
                .expect("the incident never fired");
            assert!(
                onset - warm <= 30,
                "seed {seed}: fired {}s after onset",
                onset - warm
            );
            let gap = (onset..warm + len).find(|&s| !active[s as usize]);
            assert_eq!(
                gap, None,
                "seed {seed}: resolved at {gap:?} while the incident went on"
            );
            let off = (warm + len..warm + len + 120)
                .find(|&s| !active[s as usize])
                .expect("never cleared after the incident");
            assert!(
                off - (warm + len) <= clear + 30 + 1,
                "seed {seed}: cleared {}s after the end",
                off - (warm + len)
            );
            assert!(
                active[..warm as usize].iter().all(|a| !a),
                "seed {seed}: false spike"
            );
        }
    }

    #[test]
    fn a_new_tenant_failing_from_its_first_request_fires_and_a_quiet_one_does_not() {
        let hour = 3600u64;
        for seed in 1..=10 {
            // a fresh start: the studio and the fleet start together
            let active = replay(|_| {}, 120, 1.0, |_| 0.35, seed);
            let first = active.iter().position(|a| *a).expect("never fired");
            assert!(first <= 60, "seed {seed}: first alert after {first}s");
        }
        // a new tenant after an hour of fleet history
        for seed in 1..=10 {
            let mut sim = Sim::new(|_| {});
            let mut rng = Rng(seed);
            for _ in 0..hour {
                let m = rng.poisson(20.0);
                let bad = rng.binomial(m, 0.02);
                sim.send("fleet", m, bad, 500);
                sim.tick();
            }
            let mut fired = None;
            for sec in 0..90 {
                let n = rng.poisson(1.0);
                let bad = rng.binomial(n, 0.35);
                sim.send("newcomer", n, bad, 500);
                // a chronically failing newcomer of low volume stays quiet
                let n = rng.poisson(0.3);
                let bad = rng.binomial(n, 0.3);
                sim.send("quiet", n, bad, 500);
                let m = rng.poisson(20.0);
                let bad = rng.binomial(m, 0.02);
                sim.send("fleet", m, bad, 500);
                let snap = sim.tick();
                assert!(
                    !Sim::tenant_active(&snap, "5xx", "quiet"),
                    "seed {seed}: quiet fired"
                );
                assert!(
                    !Sim::tenant_active(&snap, "5xx", "fleet"),
                    "seed {seed}: fleet fired"
                );
                if fired.is_none() && Sim::tenant_active(&snap, "5xx", "newcomer") {
                    fired = Some(sec);
                }
            }
            let fired = fired.unwrap_or_else(|| {
                let snap = sim.tick();
                panic!("seed {seed}: newcomer never fired: {:?}", snap.signals[0])
            });
            assert!(fired <= 60, "seed {seed}: newcomer fired after {fired}s");
        }
    }

    #[test]
    fn a_permanent_change_is_learned_after_relearn_after() {
        let (warm, relearn) = (900u64, 600u64);
        let active = replay(
            |c| {
                c.detector.short_window = Duration::from_secs(30);
                c.detector.baseline_half_life = Duration::from_secs(120);
                c.detector.clear_after = Duration::from_secs(20);
                c.detector.relearn_after = Duration::from_secs(relearn);
            },
            warm + relearn + 1200,
            5.0,
            |s| if s >= warm { 0.35 } else { 0.02 },
            3,
        );
        assert!(active[(warm + 60) as usize..(warm + relearn) as usize]
            .iter()
            .all(|a| *a));
        let off = ((warm + relearn) as usize..active.len())
            .find(|&s| !active[s])
            .expect("the new normal was never learned");
        // the decayed baseline must climb to share/factor: about a half-life
        assert!(
            off as u64 - (warm + relearn) <= 600,
            "learned after {}s",
            off as u64 - warm - relearn
        );
        assert!(
            active[off..].iter().all(|a| !a),
            "fired again after learning"
        );
    }
}
