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
//! * **spike detection on pod-summed counters**, as a chain that reads the
//!   raw per-pod counters once per evaluation over the short window only and
//!   takes the baseline from recorded series (see `spikes`): per tenant and
//!   overall, `n`, `k`, the expected share `p0`, the surprise
//!   `n·KL(k/n ‖ p0)` and the decision of
//!   [`crate::detect::SignalSpec::judge`], with a baseline that does not
//!   learn an incident and a reference share for series without a baseline.
//!   Aggregation is `sum without (instance, pod, container, …)`, so `job`,
//!   `namespace`, `cluster` (and any other target label) survive and two
//!   APIs' tenants never merge;
//! * **a suspension wave**: distinct tenants (deduplicated across pods) that
//!   became suspended within `detector.wave_window`;
//! * **multi-window multi-burn-rate SLO alerts** on the same recorded
//!   per-window series, with the SLO as one setting ([`RulesOptions::slo`]);
//! * **health**: a sidecar that cannot be scraped, no sidecar scraped at all,
//!   tenants folded into `__overflow__`.
//!
//! Every alert carries `severity` = `critical` / `warning` / `info` and a
//! `runbook_url` built from one base URL ([`RulesOptions::runbook_base_url`]).
//!
//! The parts: `spikes` (spike and baseline rules, alerts), `health`
//! (suspension wave, health), `slo` (burn rates) and `yaml` (the writer).

mod annotate;
mod cadence;
mod health;
mod slo;
mod spikes;
mod yaml;

use std::fmt::Write as _;
use std::time::Duration;

use crate::metrics::names::label;
use crate::state::Live;

pub use annotate::{OVERVIEW_DASHBOARD_UID, TENANT_DASHBOARD_UID};
pub use cadence::Cadence;
pub use spikes::signal_title;
pub use yaml::prom_duration;
use yaml::{num, Yaml};

/// Runbook base URL used unless `--runbook-base-url` says otherwise: the
/// runbook pages (`docs/runbooks/<AlertName>.md`) at this release's tag, so
/// an alert links the runbook of the rules that raised it.
pub const DEFAULT_RUNBOOK_BASE_URL: &str = concat!(
    "https://github.com/statuswatch/statuswatch/blob/v",
    env!("CARGO_PKG_VERSION"),
    "/docs/runbooks"
);

/// Scrape jobs of the sidecars unless `--job-regex` says otherwise: a plain
/// Prometheus' `statuswatch` job, and the Kubernetes PodMonitor's
/// `<Deployment>-statuswatch` (one job per API, even in one namespace).
pub const DEFAULT_JOB_REGEX: &str = "(.+-)?statuswatch";

/// Target labels that identify one sidecar: summed away everywhere.
pub const POD_LABELS: &str = "instance, pod, container";

/// Label names the rules aggregate by, from the one list of them.
pub(super) const SIG: &str = label::SIGNAL;
pub(super) const TEN: &str = label::TENANT;

/// Labels of `statuswatch_responses_total` below the tenant level.
pub(super) fn code_labels() -> String {
    format!("{}, {}, {}", label::CODE, label::CLASS, label::ORIGIN)
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
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
    /// `for:` of the spike alerts; zero (the default) writes none. The
    /// decision is already a test at `significance` over the whole window
    /// with an effect size and a minimum count, and consecutive evaluations
    /// read overlapping windows, so a `for:` adds latency (one evaluation
    /// interval in production), not protection; `keep_firing_for` is what
    /// stops flapping.
    pub spike_for: Duration,
    /// Regex of the scrape job(s) of the sidecars, for the health alerts.
    pub job_regex: String,
    /// Base URL of Grafana for the alerts' `dashboard_url` (e.g.
    /// `https://grafana.example.org`); empty (the default) writes links
    /// relative to Grafana's root, `/d/<uid>?var-...`.
    pub grafana_url: String,
}

impl Default for RulesOptions {
    fn default() -> Self {
        RulesOptions {
            slo: 0.999,
            runbook_base_url: DEFAULT_RUNBOOK_BASE_URL.to_string(),
            spike_for: Duration::ZERO,
            job_regex: DEFAULT_JOB_REGEX.to_string(),
            grafana_url: String::new(),
        }
    }
}

/// The rules file for a built config (YAML, ready for `rule_files:`). It
/// takes the [`Live`] that `check` and `run` build, so the three commands
/// accept exactly the same configs.
pub fn render(live: &Live, opts: &RulesOptions) -> Result<String, RulesError> {
    let cfg = &live.config;
    let signals = &live.signals;
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
    if opts
        .grafana_url
        .contains(|c: char| c.is_whitespace() || c == '"' || c == '{')
        || !(opts.grafana_url.is_empty()
            || opts.grafana_url.starts_with("https://")
            || opts.grafana_url.starts_with("http://"))
    {
        return Err(invalid(
            "--grafana-url",
            "must be empty (links relative to Grafana's root) or an http(s):// URL without spaces, quotes or braces",
        ));
    }
    let cadence = Cadence::of(cfg)?;
    let chain = spikes::Chain::new(cfg, cadence);
    let (w, b) = (&chain.w, &chain.b);
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
#   statuswatch rules --config FILE --slo {slo} --runbook-base-url URL --spike-for {sf} --job-regex '{job}' --grafana-url '{grafana}' --scrape-interval {si} --evaluation-interval {ei}
# Signals: {sig}. Runbooks: {base}/<AlertName>.md.
#
# For a Prometheus that scrapes the sidecars every {si} and evaluates every {ei}:
# {cadence}.
# Every raw read spans at least {min_samples} scrape intervals; keep_firing_for is at
# least one window and two evaluations. Scraped more sparsely, the rules would be
# blind or noisy: StatuswatchRulesUndersampled fires instead. Regenerate them
# with the intervals your Prometheus uses (prometheus.* keys or the flags).
#
# Every aggregation sums away the labels of one sidecar, `without ({pods})`, so
# job, namespace, cluster and other target labels survive: N pods give one
# alert per tenant, and two APIs' tenants never merge.
#
# Cost: only the first rules of `statuswatch.spikes` read the raw per-pod
# counters, over the short window ({w}), once per evaluation; everything else
# reads pod-summed recorded series (most of them only for tenants that have
# signal events), so no query grows with pods x window length.
#
# Spike detection (per signal, per tenant and overall; the in-process detector
# decides the same way on its own sidecar's share of the traffic; the maths is
# docs/detection.md): n requests and k signal events in the last {w}, summed
# over pods, against the expected share p0 of the series' baseline (the
# complete {w} windows of the {b} before, without a spike's windows) or, for a
# series without one (\"cold\"), the overall share; a spike when the count is
# improbable for p0 (surprise n * KL(k/n || p0) >= ln(1/significance)), the
# share is at least factor * p0 and k >= min_events. Alerts fire from the first
# evaluation that decides a spike (plus --spike-for) and keep firing
# clear_after after the last one (keep_firing_for).
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
        grafana = opts.grafana_url,
        sig = sig_names.join(", "),
        base = y.base_url,
        pods = POD_LABELS,
        si = prom_duration(cadence.scrape),
        ei = prom_duration(cadence.eval),
        cadence = cadence.describe(cfg.detector.short_window),
        min_samples = cadence::MIN_SAMPLES,
    );

    let slo_src = slo::Source::new(signals);
    spikes::spike_rules(&mut y, signals, &chain, opts);
    slo_src.window_records(&mut y, &chain);
    spikes::baseline_rules(&mut y, signals, &chain);
    slo_src.tiled_records(&mut y, &chain);
    if let Some(spec) = signals
        .iter()
        .find(|s| s.name == crate::detect::SUSPENDED_SIGNAL)
    {
        health::suspension_rules(&mut y, cfg, spec, &cadence);
    }
    health::health_rules(&mut y, opts, &chain);
    slo::burn_rate_rules(&mut y, &chain, &slo_src, budget, &slo_pct);
    Ok(y.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn defaults() -> Config {
        Config::defaults().unwrap()
    }

    fn rules(cfg: Config, opts: &RulesOptions) -> Result<String, RulesError> {
        render(&Live::build(cfg).unwrap(), opts)
    }

    #[test]
    fn default_rules_carry_the_configured_decision() {
        let out = rules(defaults(), &RulesOptions::default()).unwrap();
        assert!(out.contains("- alert: StatuswatchTenant5xxSpike"));
        assert!(out.contains("- alert: StatuswatchSuspensionWave"));
        assert!(out.contains("- alert: StatuswatchAbsent"));
        // ln(1/1e-7)
        assert!(out.contains(">= 16.1181"), "{out}");
        assert!(out.contains("(14.4 * 0.001)"));
        // the decision's other thresholds: factor, min_events, min_requests, cold_min_requests
        assert!(out.contains(">= 3 * tenant:statuswatch_signal_expected:ratio"));
        assert!(out.contains(">= 5)"));
        assert!(out.contains(
            "(tenant:statuswatch_signal_window_baseline_requests:sum1h{signal=\"5xx\"} >= 20)"
        ));
        assert!(out.contains(
            "(tenant:statuswatch_signal_window_requests:increase1m{signal=\"5xx\"} >= 30)"
        ));
        // relearn_after = 1d
        assert!(out.contains("< time() - 86400)"));
        assert!(!out.contains("sum by"), "aggregations keep target labels");
        assert!(!out.to_lowercase().contains("design"));
        assert_eq!(
            DEFAULT_RUNBOOK_BASE_URL,
            format!(
                "https://github.com/statuswatch/statuswatch/blob/v{}/docs/runbooks",
                env!("CARGO_PKG_VERSION")
            )
        );
        let alerts = alert_names(&out);
        assert_eq!(runbook_pages(&out), alerts, "each alert links its own page");
    }

    /// The `- alert:` names of a rules file, in file order.
    fn alert_names(out: &str) -> Vec<String> {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("- alert: "))
            .map(str::to_string)
            .collect()
    }

    /// The runbook page each `runbook_url` names, in file order, asserting
    /// that it is `DEFAULT_RUNBOOK_BASE_URL/<page>.md`.
    fn runbook_pages(out: &str) -> Vec<String> {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
            .map(|url| {
                let page = url
                    .trim_matches('"')
                    .strip_prefix(DEFAULT_RUNBOOK_BASE_URL)
                    .and_then(|p| p.strip_prefix('/'))
                    .and_then(|p| p.strip_suffix(".md"));
                page.unwrap_or_else(|| panic!("runbook_url {url}"))
                    .to_string()
            })
            .collect()
    }

    /// Every runbook the rules can link, the shipped signals' and an
    /// operator signal's, is a page of docs/runbooks titled with its name.
    #[test]
    fn every_runbook_url_names_a_runbook_page() {
        let cfg = with_payment_required(crate::config::SignalConfig::default());
        let out = rules(cfg, &RulesOptions::default()).unwrap();
        let pages = runbook_pages(&out);
        assert!(pages.iter().any(|p| p == "StatuswatchTenantSignalSpike"));
        assert!(pages.iter().any(|p| p == "StatuswatchSignalSpike"));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks");
        for page in pages {
            let path = dir.join(format!("{page}.md"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                text.lines().next(),
                Some(format!("# {page}").as_str()),
                "{}",
                path.display()
            );
        }
    }

    /// Every range over the raw counter is the short window: the rules read
    /// it once per evaluation, and longer windows come from recorded series.
    #[test]
    fn the_raw_counters_are_read_over_the_short_window_only() {
        for (w, b) in [(60u64, 3600u64), (10, 60)] {
            let mut cfg = defaults();
            cfg.detector.short_window = Duration::from_secs(w);
            cfg.detector.baseline_half_life = Duration::from_secs(b);
            // a test cadence: 10 s windows need a 1 s scrape (4 samples)
            cfg.prometheus.scrape_interval = Duration::from_secs(1);
            cfg.prometheus.evaluation_interval = Duration::from_secs(1);
            let out = rules(cfg, &RulesOptions::default()).unwrap();
            let wd = prom_duration(Duration::from_secs(w));
            let mut raw_reads = 0;
            for (i, _) in out.match_indices("statuswatch_responses_total") {
                let rest = &out[i..];
                // a range right after the selector: `statuswatch_responses_total{...}[X]`
                let sel_end = rest.find(['[', ')', '\n']).unwrap();
                if rest.as_bytes()[sel_end] == b'[' {
                    let range =
                        &rest[sel_end + 1..sel_end + 1 + rest[sel_end..].find(']').unwrap() - 1];
                    assert_eq!(range, wd, "raw range {range} in {}", &rest[..sel_end + 8]);
                    raw_reads += 1;
                }
            }
            // requests once, and each of the two default signals' events once
            assert_eq!(raw_reads, 3, "{out}");
            assert!(!out.contains("offset 1h"), "no offset of raw counters");
        }
    }

    /// Each range over a raw series, as `(selector, range)`.
    fn raw_ranges(out: &str) -> Vec<(String, String)> {
        let re = regex::Regex::new(r"(statuswatch_[a-z_]+|up)(\{[^}]*\})?\[([0-9a-z]+)\]").unwrap();
        re.captures_iter(out)
            .map(|c| (c[1].to_string(), c[3].to_string()))
            .collect()
    }

    /// Rules for a sparser scrape judge longer windows: every raw read spans
    /// at least four scrape intervals, and alerts keep firing at least a
    /// window; the same rules for 15 s hold the shipped 1m windows.
    #[test]
    fn every_raw_read_spans_four_scrape_intervals() {
        for (scrape, eval, window, keep) in [
            (15, 30, "1m", "2m"),
            (30, 30, "2m", "2m"),
            (60, 60, "4m", "4m"),
        ] {
            let mut cfg = defaults();
            cfg.prometheus.scrape_interval = Duration::from_secs(scrape);
            cfg.prometheus.evaluation_interval = Duration::from_secs(eval);
            let out = rules(cfg, &RulesOptions::default()).unwrap();
            let ranges = raw_ranges(&out);
            // requests and two signals' events, suspensions, overflow, up (the
            // wave reads the suspended gauge as an instant vector only), and
            // the 5xx alerts' failing routes (queried only while they fire)
            assert_eq!(ranges.len(), 8, "{ranges:?}");
            for (sel, range) in &ranges {
                let secs = humantime::parse_duration(range).unwrap().as_secs();
                assert!(secs >= 4 * scrape, "{sel}[{range}] at a {scrape}s scrape");
            }
            assert!(ranges.contains(&("statuswatch_responses_total".into(), window.into())));
            assert!(
                ranges.contains(&("up".into(), window.into())),
                "the undersampling guard reads the window"
            );
            assert!(out.contains(&format!(
                "record: tenant:statuswatch_requests:increase{window}\n"
            )));
            let kffs: Vec<&str> = out
                .lines()
                .filter_map(|l| l.trim().strip_prefix("keep_firing_for: "))
                .collect();
            assert!(
                !kffs.is_empty() && kffs.iter().all(|k| *k == keep),
                "{kffs:?}"
            );
            assert!(out.contains(&format!(
                "--scrape-interval {}",
                prom_duration(Duration::from_secs(scrape))
            )));
        }
    }

    #[test]
    fn a_cadence_the_rules_cannot_see_with_is_refused_naming_the_key() {
        let mut cfg = defaults();
        cfg.prometheus.scrape_interval = Duration::from_secs(120);
        let e = rules(cfg, &RulesOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("prometheus.scrape_interval"), "{e}");
        let mut cfg = defaults();
        cfg.prometheus.scrape_interval = Duration::from_secs(60);
        cfg.detector.baseline_half_life = Duration::from_secs(300);
        let e = rules(cfg, &RulesOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("detector.baseline_half_life"), "{e}");
    }

    /// The defaults plus an operator signal `payment_required` on 402.
    fn with_payment_required(sig: crate::config::SignalConfig) -> Config {
        let mut cfg = defaults();
        cfg.signals.insert(
            "payment_required".into(),
            crate::config::SignalConfig {
                enabled: true,
                codes: vec![402],
                ..sig
            },
        );
        cfg
    }

    #[test]
    fn operator_signals_get_rules_and_options_apply() {
        let cfg = with_payment_required(crate::config::SignalConfig {
            significance: Some(1e-5),
            ..Default::default()
        });
        let opts = RulesOptions {
            slo: 0.99,
            runbook_base_url: "https://runbooks.example.org/statuswatch/".into(),
            ..Default::default()
        };
        let out = rules(cfg, &opts).unwrap();
        assert!(out.contains("- alert: StatuswatchTenantPaymentRequiredSpike"));
        assert!(out.contains("{code=~\"402\"}"));
        assert!(out.contains("signal: \"payment_required\""));
        assert!(out.contains(">= 11.5129"));
        assert!(out.contains("(14.4 * 0.01)"), "slo 0.99 -> budget 0.01");
        assert!(out.contains(
            "runbook_url: \"https://runbooks.example.org/statuswatch/StatuswatchTenantSignalSpike.md\""
        ));
        assert!(!out.contains("github.com"));
    }

    #[test]
    fn without_a_5xx_signal_the_slo_counts_5xx_itself() {
        let mut cfg = defaults();
        cfg.signals.get_mut("5xx").unwrap().enabled = false;
        let out = rules(cfg, &RulesOptions::default()).unwrap();
        assert!(out.contains("- record: tenant:statuswatch_responses_5xx:increase1m\n"));
        assert!(out.contains("- record: tenant:statuswatch_responses_5xx:increase1m_offset1m\n"));
        assert!(!out.contains("StatuswatchTenant5xxSpike"));
        let out = rules(defaults(), &RulesOptions::default()).unwrap();
        assert!(!out.contains("statuswatch_responses_5xx:increase1m"));
        assert!(out.contains(
            "tenant:statuswatch_signal_events:increase1m_offset1m{signal=\\\"5xx\\\"}[270s]"
        ));
    }

    #[test]
    fn without_a_suspended_signal_there_is_no_suspension_wave() {
        let mut cfg = defaults();
        cfg.signals.get_mut("suspended").unwrap().enabled = false;
        let out = rules(cfg, &RulesOptions::default()).unwrap();
        assert!(!out.contains("StatuswatchSuspensionWave"));
        assert!(!out.contains("statuswatch_tenant_suspended"));
        assert!(out.contains("StatuswatchTenant5xxSpike"));
    }

    /// The wave's memory is the suspended signal's relearn_after, and its
    /// wording follows the signal's codes.
    #[test]
    fn the_wave_remembers_suspensions_for_relearn_after() {
        let mut cfg = defaults();
        let s = cfg.signals.get_mut("suspended").unwrap();
        s.codes = vec![403];
        s.relearn_after = Some(Duration::from_secs(7200));
        let out = rules(cfg, &RulesOptions::default()).unwrap();
        assert!(
            out.contains("tenant:statuswatch_tenant_suspended:last_seen[10m]) > time() - 7200)")
        );
        assert!(out.contains("(answered 403)"), "{out}");
        assert!(out.contains("in the 2h before"));
        assert!(
            !out.contains("451"),
            "the suspended signal no longer names 451"
        );
    }

    #[test]
    fn spike_alerts_link_their_dashboard_and_a_bad_grafana_url_is_named() {
        let opts = RulesOptions {
            grafana_url: "https://grafana.example.org/".into(),
            ..Default::default()
        };
        let out = rules(defaults(), &opts).unwrap();
        assert_eq!(
            out.matches(
                "dashboard_url: \"https://grafana.example.org/d/statuswatch-tenant?var-job="
            )
            .count(),
            2,
            "both tenant spike alerts"
        );
        assert!(out.contains("--grafana-url 'https://grafana.example.org/'"));
        for bad in [
            "grafana.example.org",
            "https://g.example.org/{x}",
            "https://a b",
        ] {
            let e = rules(
                defaults(),
                &RulesOptions {
                    grafana_url: bad.into(),
                    ..Default::default()
                },
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("--grafana-url"), "{bad}: {e}");
        }
    }

    /// The `for:` lines right after a spike alert's `expr`, in file order.
    fn spike_alert_for(out: &str) -> Vec<Option<String>> {
        let lines: Vec<&str> = out.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("- alert: ") && l.ends_with("Spike"))
            .map(|(i, _)| {
                lines[i + 1..]
                    .iter()
                    .take_while(|l| !l.contains("- alert: ") && !l.contains("- record: "))
                    .find_map(|l| l.trim().strip_prefix("for: ").map(str::to_string))
            })
            .collect()
    }

    /// By default a spike alert fires at the first evaluation that decides
    /// a spike (no `for:`, which would only add an evaluation interval of
    /// latency); `--spike-for` still adds one to every spike alert, and
    /// never to the health or burn-rate alerts, whose `for:` is their own.
    #[test]
    fn spike_alerts_have_no_for_unless_asked() {
        let out = rules(defaults(), &RulesOptions::default()).unwrap();
        let fors = spike_alert_for(&out);
        assert_eq!(fors.len(), 4, "two signals x tenant and overall");
        assert!(fors.iter().all(Option::is_none), "{fors:?}");
        assert!(out.contains("--spike-for 0s"));
        let out = rules(
            defaults(),
            &RulesOptions {
                spike_for: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .unwrap();
        let fors = spike_alert_for(&out);
        assert_eq!(fors, vec![Some("30s".to_string()); 4]);
        assert_eq!(out.matches("for: 30s").count(), 4, "only the spike alerts");
        assert!(out.contains("for: 15m"), "burn-rate alerts keep theirs");
    }

    #[test]
    fn bad_options_are_named() {
        let e = rules(
            defaults(),
            &RulesOptions {
                slo: 1.0,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--slo"), "{e}");
        let e = rules(
            defaults(),
            &RulesOptions {
                job_regex: "a\"b".into(),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--job-regex"), "{e}");
    }
}
