//! Signal specs: the `[signals.NAME]` config validated into the cells a
//! signal counts and its thresholds, and the spike decision itself
//! ([`SignalSpec::judge`]), which the Prometheus rules reproduce. Separate
//! from the detector's bookkeeping so both engines share one definition.

use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::status::{self, CELLS};

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
    /// Requests the baseline must hold before the series is judged against it.
    pub min_requests: u64,
    /// Window requests a series without a baseline of its own needs before it
    /// is judged against the overall share instead ([`SignalSpec::judge`]).
    pub cold_min_requests: u64,
    /// Events the window must hold.
    pub min_events: u64,
    /// Bound on the per-window probability of a steady series being judged a spike.
    pub significance: f64,
    pub clear_after: Duration,
    /// How long a spike keeps its baseline frozen before it learns again.
    pub relearn_after: Duration,
    /// Severity of the fleet-wide alert in the Prometheus rules.
    pub severity: String,
}

/// The signal whose codes put a tenant in the suspended state
/// (`statuswatch_tenant_suspended`, the suspension wave).
pub const SUSPENDED_SIGNAL: &str = "suspended";

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

/// Whether `[signals.NAME]` is the built-in signal of that name, unchanged.
fn is_builtin_default(name: &str, s: &crate::config::SignalConfig) -> bool {
    Config::defaults()
        .ok()
        .and_then(|d| d.signals.get(name).cloned())
        .is_some_and(|d| &d == s)
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

    /// What a baseline of `base_requests` requests with share `baseline`
    /// says the share may be: its upper bound at one standard error, plus
    /// one event in N (so a share of 0 is not taken at its word). A baseline of a few dozen
    /// requests is a noisy estimate: a 30 % tenant's first 20 requests can
    /// show 10 %, and a window at its usual 30 % would then look like a
    /// spike. With thousands of requests the bound is the share itself.
    pub fn baseline_bound(baseline: f64, base_requests: f64) -> f64 {
        if base_requests <= 0.0 {
            return baseline;
        }
        let b = baseline.clamp(0.0, 1.0);
        b + (b * (1.0 - b) / base_requests).sqrt() + 1.0 / base_requests
    }

    /// Whether a baseline of `base_requests` requests is the series' own
    /// baseline for a window of `n` requests: at least `min_requests`, and at
    /// least as large as the window (a baseline smaller than the window it is
    /// compared with, just after start-up or for a tenant far above its usual
    /// volume, is too noisy to judge by).
    pub fn has_baseline(&self, n: f64, base_requests: f64) -> bool {
        base_requests >= (self.min_requests as f64).max(n)
    }

    /// The share a window is judged against: the series' own baseline share
    /// when it has one. Else (a "cold" series: new tenant, fresh start,
    /// traffic far above its usual volume), once the window alone holds
    /// `cold_min_requests` and there is a `reference` share to go on (for a
    /// tenant: the overall series' baseline share, or at a fresh start the
    /// overall window's share), the largest of what is known:
    /// that reference, and the partial baseline the series has, taken at its
    /// upper bound ([`Self::baseline_bound`]) like a baseline of its own. A
    /// partial baseline of a few requests is noisy, and worse, biased low
    /// (Prometheus' `increase()` misses the first count of every new series,
    /// one per pod): as a point estimate, a 30 % chronically failing tenant
    /// whose first minute showed 1 of 18 looked like a spike. Taking the
    /// largest means a partial baseline can only make a cold series harder
    /// to fire. `None`: not judged.
    pub fn expected(
        &self,
        n: f64,
        base_requests: f64,
        baseline: f64,
        reference: Option<f64>,
    ) -> Option<f64> {
        let bound = Self::baseline_bound(baseline, base_requests);
        if self.has_baseline(n, base_requests) {
            return Some(self.expected_share(bound));
        }
        let reference = reference.filter(|_| n >= self.cold_min_requests as f64)?;
        let partial = if base_requests > 0.0 { bound } else { 0.0 };
        Some(self.expected_share(partial.max(reference)))
    }

    /// Whether a spike of a series with a baseline of `base_requests`
    /// requests freezes that baseline: once it holds `min_requests`. A
    /// series with less keeps learning while it spikes, or it could never
    /// get a baseline at all.
    pub fn freezes(&self, base_requests: f64) -> bool {
        base_requests >= self.min_requests as f64
    }

    /// The spike decision (module doc): `n` requests and `k` events in the
    /// window, a baseline of `base_requests` requests with share `baseline`,
    /// and the share a cold series is judged against (see [`Self::expected`]).
    pub fn judge(
        &self,
        n: f64,
        k: f64,
        base_requests: f64,
        baseline: f64,
        reference: Option<f64>,
    ) -> bool {
        if k < self.min_events as f64 || n <= 0.0 {
            return false;
        }
        match self.expected(n, base_requests, baseline, reference) {
            Some(p0) => {
                k / n >= self.factor * p0 && surprise(n, k, p0) >= self.surprise_threshold()
            }
            None => false,
        }
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
            let mut class_digits = Vec::new();
            for (i, class) in s.classes.iter().enumerate() {
                let c = status::parse_class(class).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("signals.{name}.classes[{i}]"),
                        format!("expected one of \"1xx\"..\"5xx\", got {class:?}"),
                    )
                })?;
                let label = class.to_ascii_lowercase();
                class_digits.extend(label.as_bytes().first().copied());
                if !classes.contains(&label) {
                    classes.push(label);
                }
                for (cell, m) in member.iter_mut().enumerate() {
                    if status::cell_class(cell) == c {
                        *m = true;
                    }
                }
            }
            // A code outside the signal's classes must be a documented one:
            // only those have a `code` label of their own in
            // statuswatch_responses_total, so only those can be counted by the
            // Prometheus rules, and both engines must count the same events.
            let uncovered = s.codes.iter().enumerate().find(|(_, code)| {
                !class_digits.contains(&(b'0' + (**code / 100) as u8))
                    && !cfg.catalog.codes.iter().any(|e| e.code == **code)
            });
            if let Some((i, code)) = uncovered {
                // A built-in signal left as shipped, in a config whose catalog
                // (another API's) lacks its code, does not apply to that API:
                // it is left out rather than refusing a config that never
                // mentioned it. A signal the config sets itself is an error.
                if is_builtin_default(name, s) {
                    tracing::warn!(
                        signal = %name,
                        code,
                        "built-in signal left out: its code is not in the catalog"
                    );
                    continue;
                }
                {
                    return Err(ConfigError::invalid(
                        format!("signals.{name}.codes[{i}]"),
                        format!(
                            "{code} is not in the catalog, so statuswatch_responses_total has no code=\"{code}\" series to count it by (in process or in the Prometheus rules); add it to [[catalog.codes]], name its class, or disable the signal"
                        ),
                    ));
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
                cold_min_requests: s.cold_min_requests.unwrap_or(d.cold_min_requests),
                min_events: s.min_events.unwrap_or(d.min_events),
                significance: s.significance.unwrap_or(d.significance),
                clear_after: s.clear_after.unwrap_or(d.clear_after),
                relearn_after: s.relearn_after.unwrap_or(d.relearn_after),
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
            if spec.cold_min_requests < spec.min_events {
                return Err(ConfigError::invalid(
                    which("cold_min_requests", s.cold_min_requests.is_some()),
                    format!("must be at least min_events ({})", spec.min_events),
                ));
            }
            if spec.relearn_after < d.short_window {
                return Err(ConfigError::invalid(
                    which("relearn_after", s.relearn_after.is_some()),
                    "must be at least detector.short_window",
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!s.judge(10.0, 3.0, 1e4, 0.02, None));
        // a baseline smaller than the window (one 5 s bucket after start-up) is
        // not its own: judged cold, against the reference share
        assert!(!s.has_baseline(2750.0, 250.0));
        assert!(s.judge(2750.0, 90.0, 27500.0, 0.008, None));
        assert!(!s.judge(2750.0, 90.0, 250.0, 0.008, Some(0.02)));
        // a huge tenant's tiny significant rise: 2.0% -> 2.5% is no spike (effect size)
        assert!(surprise(1e6, 25_000.0, 0.02) > s.surprise_threshold());
        assert!(!s.judge(1e6, 25_000.0, 1e7, 0.02, None));
        // a chronically failing tenant (30 %) having a bad minute (8 of 20)
        assert!(!s.judge(20.0, 8.0, 1e4, 0.3, None));
        // a clear incident of a 1 req/s tenant: 40 % of 60
        assert!(s.judge(60.0, 24.0, 3600.0, 0.02, None));
    }

    #[test]
    fn cold_series_are_judged_against_the_reference_once_the_window_is_large_enough() {
        let s = spec();
        assert_eq!(s.cold_min_requests, 30);
        // no baseline of its own: a new studio failing 40 % of 60 requests
        assert!(s.judge(60.0, 24.0, 0.0, 0.0, Some(0.02)));
        assert!(
            s.judge(60.0, 24.0, 0.0, 0.0, Some(0.001)),
            "against the floor"
        );
        // 5 healthy requests of partial baseline cannot rule out a 20 % share
        assert!(!s.judge(60.0, 24.0, 5.0, 0.0, Some(0.001)));
        assert!(
            !s.judge(60.0, 24.0, 5.0, 0.4, Some(0.02)),
            "or its partial baseline"
        );
        // nothing to go on (no overall share either): not judged
        assert!(!s.judge(60.0, 24.0, 0.0, 0.0, None));
        // ... but not below cold_min_requests: 0.3 req/s at 30 % is not enough to go on
        assert!(!s.judge(18.0, 9.0, 0.0, 0.0, Some(0.02)));
        // and not when the fleet itself fails as much (the reference share)
        assert!(!s.judge(60.0, 24.0, 0.0, 0.0, Some(0.3)));
        // a series with a baseline of its own ignores the reference
        let own = s.expected(60.0, 3600.0, 0.3, Some(0.01)).unwrap();
        assert!((own - 0.3).abs() < 0.02, "{own}");
        // a partial baseline of its own counts too, at its upper bound, when
        // that is the larger
        let bound = SignalSpec::baseline_bound(0.3, 40.0);
        assert_eq!(s.expected(60.0, 40.0, 0.3, Some(0.05)), Some(bound));
        assert!(bound > 0.39, "{bound}");
        assert_eq!(s.expected(60.0, 50.0, 0.01, Some(0.05)), Some(0.05));
        assert_eq!(s.expected(60.0, 0.0, 0.0, Some(0.0)), Some(0.01));
        assert_eq!(s.expected(60.0, 10.0, 0.3, None), None);
        assert_eq!(s.expected(29.0, 10.0, 0.3, Some(0.05)), None);
        // A chronically failing (30 %) 0.4 req/s tenant just after a fresh
        // start (seen in a fleet replay): its one-window partial baseline saw
        // 1 of 18, its window a good-for-it 14 of 30. The partial baseline as
        // a point estimate (p0 = 0.057) made that a spike.
        assert!(!s.judge(30.5, 14.2, 18.3, 1.04 / 18.3, Some(0.03)));
        assert!(
            s.judge(30.5, 14.2, 0.0, 0.0, Some(0.03)),
            "no partial baseline: judged against the fleet"
        );
        // a newcomer whose partial baseline holds a few healthy requests is still alerted
        assert!(s.judge(60.0, 24.0, 10.0, 0.0, Some(0.02)));
    }

    #[test]
    fn a_small_baseline_is_taken_at_its_upper_bound() {
        let s = spec();
        // a 30 % tenant whose first 20 requests showed 8 %: a window at 60 %
        // is no spike against what 20 requests can say (it would be against
        // the point estimate)
        assert!(!s.judge(20.0, 12.0, 20.0, 0.08, None));
        assert!(
            12.0 / 20.0 >= s.factor * 0.08 && surprise(20.0, 12.0, 0.08) >= s.surprise_threshold(),
            "the point estimate would fire"
        );
        // with a large baseline the bound is the share
        let b = SignalSpec::baseline_bound(0.02, 1e6);
        assert!((b - 0.02).abs() < 0.0005, "{b}");
        assert_eq!(SignalSpec::baseline_bound(0.0, 100.0), 0.01);
    }

    #[test]
    fn detector_keys_are_validated_by_name() {
        let mut cfg = Config::defaults().unwrap();
        cfg.detector.cold_min_requests = 2;
        let e = SignalSpec::all_from_config(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("detector.cold_min_requests"), "{e}");
        let mut cfg = Config::defaults().unwrap();
        cfg.signals.get_mut("5xx").unwrap().relearn_after = Some(Duration::from_secs(1));
        let e = SignalSpec::all_from_config(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("signals.5xx.relearn_after"), "{e}");
        // a signal code outside the catalog (and outside the signal's classes)
        let mut cfg = Config::defaults().unwrap();
        cfg.signals.insert(
            "teapot".into(),
            crate::config::SignalConfig {
                enabled: true,
                codes: vec![418],
                ..Default::default()
            },
        );
        let e = SignalSpec::all_from_config(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("signals.teapot.codes[0]"), "{e}");
        assert!(e.contains("not in the catalog"), "{e}");
        // a catalog of another API, without 451: the built-in `suspended`
        // signal, left as shipped, does not apply (not an error)
        let mut other = Config::defaults().unwrap();
        other.catalog.codes.retain(|e| e.code != 451);
        let names: Vec<String> = SignalSpec::all_from_config(&other)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["5xx"]);
        // inside one of its classes it is fine (502 under "5xx")
        cfg.signals.get_mut("teapot").unwrap().codes = vec![502];
        cfg.signals.get_mut("teapot").unwrap().classes = vec!["5xx".into()];
        assert!(SignalSpec::all_from_config(&cfg).is_ok());
    }
}
