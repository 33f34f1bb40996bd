//! The Prometheus rules file for a config: `statuswatch rules --config FILE`.
//!
//! One generator, so that the in-process detector ([`crate::detect`]) and the
//! fleet-level detection in Prometheus use the same signals, thresholds and
//! decision, and operator signals (`[signals.NAME]`) get recording rules and
//! alerts without hand-written YAML. The shipped
//! `deploy/prometheus/rules/statuswatch.rules.yml` is this output for the
//! default config (`deploy/check.sh` verifies it).
//!
//! What it emits:
//!
//! * **spike detection on pod-summed counters**: per tenant and overall, the
//!   short window's requests `n` and signal events `k`, the baseline share
//!   over `detector.baseline_half_life` before the window (`offset`), the
//!   expected share `p0 = max(baseline, floor)` and the surprise
//!   `n·KL(k/n ‖ p0)`; the alerts apply [`crate::detect::SignalSpec::judge`]'s
//!   conditions to them. Aggregation is `sum without (instance, pod,
//!   container, …)`, so `job`, `namespace`, `cluster` (and any other target
//!   label) survive and two APIs' tenants never merge;
//! * **a suspension wave**: distinct tenants (deduplicated across pods) that
//!   became suspended within `detector.wave_window`;
//! * **multi-window multi-burn-rate SLO alerts** on the raw counters, with the
//!   SLO as one setting ([`RulesOptions::slo`]);
//! * **health**: a sidecar that cannot be scraped, no sidecar scraped at all,
//!   tenants folded into `__overflow__`.
//!
//! Every alert carries `severity` = `critical` / `warning` / `info` and a
//! `runbook_url` built from one base URL ([`RulesOptions::runbook_base_url`]).
//!
//! The parts: `spikes` (spike recording rules and alerts), `health`
//! (suspension wave, health), `slo` (burn rates) and `yaml` (the writer).

mod health;
mod slo;
mod spikes;
mod yaml;

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::detect::SignalSpec;

pub use spikes::signal_title;
pub use yaml::prom_duration;
use yaml::{num, Yaml};

/// Runbook base URL used unless `--runbook-base-url` says otherwise: the
/// README's runbook sections (anchors `#runbook-<alertname lower-cased>`).
pub const DEFAULT_RUNBOOK_BASE_URL: &str =
    "https://github.com/statuswatch/statuswatch/blob/main/README.md";

/// Target labels that identify one sidecar: summed away everywhere.
pub const POD_LABELS: &str = "instance, pod, container";

/// Labels of `statuswatch_responses_total` below the tenant level.
pub(super) const CODE_LABELS: &str = "code, class, origin";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A rules option or a config value the rules cannot express.
    #[error("{key}: {msg}")]
    Invalid { key: String, msg: String },
}

pub(super) fn invalid(key: impl Into<String>, msg: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        key: key.into(),
        msg: msg.into(),
    }
}

/// Settings of the rules that are not detector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesOptions {
    /// SLO target of the burn-rate alerts, e.g. 0.999 (error budget 0.1 %).
    pub slo: f64,
    /// Base of every `runbook_url` annotation.
    pub runbook_base_url: String,
    /// `for:` of the spike alerts (the decision already spans the window).
    pub spike_for: Duration,
    /// Regex of the scrape job(s) of the sidecars, for the health alerts.
    pub job_regex: String,
}

impl Default for RulesOptions {
    fn default() -> Self {
        RulesOptions {
            slo: 0.999,
            runbook_base_url: DEFAULT_RUNBOOK_BASE_URL.to_string(),
            spike_for: Duration::from_secs(10),
            job_regex: "statuswatch".to_string(),
        }
    }
}

/// The rules file for `cfg` (YAML, ready for `rule_files:`).
pub fn render(cfg: &Config, opts: &RulesOptions) -> Result<String, RulesError> {
    let signals = SignalSpec::all_from_config(cfg)?;
    if !(opts.slo > 0.0 && opts.slo < 1.0) {
        return Err(invalid("--slo", "must be within (0, 1), e.g. 0.999"));
    }
    if opts.runbook_base_url.is_empty() || opts.runbook_base_url.contains(char::is_whitespace) {
        return Err(invalid(
            "--runbook-base-url",
            "must be a URL without spaces",
        ));
    }
    if opts.job_regex.is_empty() || opts.job_regex.contains('"') {
        return Err(invalid(
            "--job-regex",
            "must be a non-empty regex without '\"'",
        ));
    }
    let w = prom_duration(cfg.detector.short_window);
    let b = prom_duration(cfg.detector.baseline_half_life);
    let budget = 1.0 - opts.slo;
    let slo_pct = format!("{}", (opts.slo * 1e6).round() / 1e4);

    let mut y = Yaml {
        out: String::new(),
        base_url: opts.runbook_base_url.trim_end_matches('/').to_string(),
    };
    let sig_names: Vec<&str> = signals.iter().map(|s| s.name.as_str()).collect();
    let _ = write!(
        y.out,
        "\
# statuswatch Prometheus rules. GENERATED by `statuswatch rules` -- do not edit:
# change the config (or the options below) and regenerate.
#   statuswatch rules --config FILE --slo {slo} --runbook-base-url URL --spike-for {sf} --job-regex {job}
# Signals: {sig}. Runbooks: {base}#runbook-<alertname lower-cased>.
#
# Every aggregation sums away the labels of one sidecar, `without ({pods})`, so
# job, namespace, cluster and other target labels survive: N pods give one
# alert per tenant, and two APIs' tenants never merge.
#
# Spike detection (per signal, per tenant and overall; the in-process detector
# decides the same way on its own sidecar's share of the traffic):
#   n, k   requests and signal events in the last {w} (pod-summed increase)
#   p0     max(baseline share, floor): the share over the {b} before that window
#          (offset {w}), once that baseline holds >= max(min_requests, n) requests
#   S      n * KL(k/n || p0) = k ln(k/(n p0)) + (n-k) ln((n-k)/(n (1-p0))), the
#          Chernoff bound P(>= k events | n, p0) <= exp(-S)
#   spike  S >= ln(1/significance) and k/n >= factor * p0 and k >= min_events
#
# SLO of the burn-rate alerts: {slo_pct} % of responses are not 5xx (error budget
# {budget}), per tenant and overall, proxy-generated 502/504 included. Multi-window,
# multi-burn-rate alerts as in the Google SRE workbook (\"Alerting on SLOs\"):
#   critical/warning: 1h and 5m > 14.4 x budget, or 6h and 30m > 6 x budget (>= 1 req/s)
#   warning/info    : 1d and 2h > 3 x budget,    or 3d and 6h  > 1 x budget (>= 0.1 req/s)
# A steady background above the budget (e.g. 2 % 5xx against 99.9 %) fires them
# all the time: set the SLO you actually keep with --slo.
groups:",
        slo = opts.slo,
        budget = num(budget),
        sf = prom_duration(opts.spike_for),
        job = opts.job_regex,
        sig = sig_names.join(", "),
        base = y.base_url,
        pods = POD_LABELS,
    );

    spikes::spike_rules(&mut y, &signals, cfg, opts)?;
    health::suspension_rules(&mut y, cfg);
    health::health_rules(&mut y, opts);
    slo::burn_rate_rules(&mut y, budget, &slo_pct);
    Ok(y.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        Config::defaults().unwrap()
    }

    #[test]
    fn default_rules_carry_the_configured_decision() {
        let out = render(&defaults(), &RulesOptions::default()).unwrap();
        assert!(out.contains("- alert: StatuswatchTenant5xxSpike"));
        assert!(out.contains("- alert: StatuswatchSuspensionWave"));
        assert!(out.contains("- alert: StatuswatchAbsent"));
        // ln(1/1e-7)
        assert!(out.contains(">= 16.1181"), "{out}");
        assert!(out.contains("increase(statuswatch_responses_total{class=~\"5xx\"}[1h] offset 1m)"));
        assert!(out.contains("(14.4 * 0.001"));
        assert!(!out.contains("sum by"), "aggregations keep target labels");
        assert!(!out.to_lowercase().contains("design"));
        for line in out.lines().filter(|l| l.contains("runbook_url")) {
            assert!(line.contains(DEFAULT_RUNBOOK_BASE_URL), "{line}");
        }
    }

    #[test]
    fn operator_signals_get_rules_and_options_apply() {
        let mut cfg = defaults();
        cfg.signals.insert(
            "payment_required".into(),
            crate::config::SignalConfig {
                enabled: true,
                codes: vec![402],
                significance: Some(1e-5),
                ..Default::default()
            },
        );
        let opts = RulesOptions {
            slo: 0.99,
            runbook_base_url: "https://runbooks.example.org/statuswatch/".into(),
            ..Default::default()
        };
        let out = render(&cfg, &opts).unwrap();
        assert!(out.contains("- alert: StatuswatchTenantPaymentRequiredSpike"));
        assert!(out.contains("{code=~\"402\"}"));
        assert!(out.contains("signal: \"payment_required\""));
        assert!(out.contains(">= 11.5129"));
        assert!(out.contains("(14.4 * 0.01"), "slo 0.99 -> budget 0.01");
        assert!(out.contains(
            "https://runbooks.example.org/statuswatch#runbook-statuswatchtenantsignalspike"
        ));
        assert!(!out.contains("github.com"));
    }

    #[test]
    fn undocumented_signal_codes_and_bad_options_are_named() {
        let mut cfg = defaults();
        cfg.signals.insert(
            "teapot".into(),
            crate::config::SignalConfig {
                enabled: true,
                codes: vec![418],
                ..Default::default()
            },
        );
        let e = render(&cfg, &RulesOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("signals.teapot.codes[0]"), "{e}");
        let e = render(
            &defaults(),
            &RulesOptions {
                slo: 1.0,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--slo"), "{e}");
    }
}
