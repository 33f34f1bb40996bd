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

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::detect::{SignalSpec, P0_MAX};

/// Runbook base URL used unless `--runbook-base-url` says otherwise: the
/// README's runbook sections (anchors `#runbook-<alertname lower-cased>`).
pub const DEFAULT_RUNBOOK_BASE_URL: &str =
    "https://github.com/statuswatch/statuswatch/blob/main/README.md";

/// Target labels that identify one sidecar: summed away everywhere.
pub const POD_LABELS: &str = "instance, pod, container";

/// Labels of `statuswatch_responses_total` below the tenant level.
const CODE_LABELS: &str = "code, class, origin";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A rules option or a config value the rules cannot express.
    #[error("{key}: {msg}")]
    Invalid { key: String, msg: String },
}

fn invalid(key: impl Into<String>, msg: impl Into<String>) -> RulesError {
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

/// A Prometheus duration for `d`, in its largest exact unit ("1m", "90s", "1h").
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// A YAML double-quoted scalar (JSON string escaping is valid YAML).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number as PromQL writes it: shortest round-trip form.
fn num(x: f64) -> String {
    // 12 significant decimals: 1 - 0.999 prints as 0.001, not 0.0010000000000000009.
    let r = (x * 1e12).round() / 1e12;
    format!("{}", if r == 0.0 { x } else { r })
}

/// The alert-name fragment of a signal: "5xx" → "5xx", "suspended" →
/// "Suspension" (its historical name), "payment_required" → "PaymentRequired".
pub fn signal_title(name: &str) -> String {
    if name == "suspended" {
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

struct Yaml {
    out: String,
    base_url: String,
}

struct Alert<'a> {
    name: &'a str,
    expr: &'a str,
    for_: Option<Duration>,
    keep_firing_for: Option<Duration>,
    labels: &'a [(&'a str, &'a str)],
    summary: &'a str,
    description: &'a str,
    runbook: Option<&'a str>,
}

impl Yaml {
    fn group(&mut self, name: &str, interval: Option<&str>, comment: &[&str]) {
        self.out.push('\n');
        for c in comment {
            let _ = writeln!(self.out, "  # {c}");
        }
        let _ = writeln!(self.out, "  - name: {}", q(name));
        if let Some(i) = interval {
            let _ = writeln!(self.out, "    interval: {i}");
        }
        self.out.push_str("    rules:\n");
    }

    fn expr(&mut self, expr: &str) {
        let expr = expr.trim();
        if expr.contains('\n') {
            self.out.push_str("        expr: |\n");
            for line in expr.lines() {
                let line = line.trim_end();
                if line.is_empty() {
                    self.out.push('\n');
                } else {
                    let _ = writeln!(self.out, "          {line}");
                }
            }
        } else {
            let _ = writeln!(self.out, "        expr: {}", q(expr));
        }
    }

    fn record(&mut self, name: &str, labels: &[(&str, &str)], expr: &str) {
        let _ = writeln!(self.out, "      - record: {name}");
        self.expr(expr);
        self.labels(labels);
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if !labels.is_empty() {
            self.out.push_str("        labels:\n");
            for (k, v) in labels {
                let _ = writeln!(self.out, "          {k}: {}", q(v));
            }
        }
    }

    fn alert(&mut self, a: Alert<'_>) {
        let _ = writeln!(self.out, "      - alert: {}", a.name);
        self.expr(a.expr);
        if let Some(d) = a.for_.filter(|d| !d.is_zero()) {
            let _ = writeln!(self.out, "        for: {}", prom_duration(d));
        }
        if let Some(d) = a.keep_firing_for.filter(|d| !d.is_zero()) {
            let _ = writeln!(self.out, "        keep_firing_for: {}", prom_duration(d));
        }
        self.labels(a.labels);
        let anchor = a.runbook.unwrap_or(a.name).to_ascii_lowercase();
        let url = format!("{}#runbook-{anchor}", self.base_url);
        self.out.push_str("        annotations:\n");
        let _ = writeln!(self.out, "          summary: {}", q(a.summary));
        let _ = writeln!(self.out, "          description: {}", q(a.description));
        let _ = writeln!(self.out, "          runbook_url: {}", q(&url));
    }
}

/// The label selector(s) of a signal's events, disjoint: classes first, then
/// the codes outside those classes.
fn selectors(spec: &SignalSpec, cfg: &Config) -> Result<Vec<String>, RulesError> {
    let mut out = Vec::new();
    let class_re = spec.classes.join("|");
    if !spec.classes.is_empty() {
        out.push(format!("class=~{}", q(&class_re)));
    }
    let mut codes = Vec::new();
    for (i, code) in spec.codes.iter().enumerate() {
        if spec
            .classes
            .iter()
            .any(|c| c.starts_with(char::from(b'0' + (code / 100) as u8)))
        {
            continue;
        }
        if !cfg.catalog.codes.iter().any(|e| e.code == *code) {
            return Err(invalid(
                format!("signals.{}.codes[{i}]", spec.name),
                format!(
                    "{code} is not in the catalog, so statuswatch_responses_total has no code=\"{code}\" series for the Prometheus rules; add it to [[catalog.codes]] or name its class"
                ),
            ));
        }
        codes.push(code.to_string());
    }
    if !codes.is_empty() {
        let mut sel = format!("code=~{}", q(&codes.join("|")));
        if !spec.classes.is_empty() {
            sel.push_str(&format!(", class!~{}", q(&class_re)));
        }
        out.push(sel);
    }
    Ok(out)
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
    let d = &cfg.detector;
    let w = prom_duration(d.short_window);
    let b = prom_duration(d.baseline_half_life);
    let ww = prom_duration(d.wave_window);
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

    // ---- spike detection -------------------------------------------------------
    y.group(
        "statuswatch.spikes",
        None,
        &["Fleet-level spike detection on pod-summed counters (see the header)."],
    );
    let levels = [
        ("tenant", format!("{POD_LABELS}, {CODE_LABELS}")),
        ("job", format!("{POD_LABELS}, {CODE_LABELS}, tenant")),
    ];
    for (lvl, agg) in &levels {
        y.record(
            &format!("{lvl}:statuswatch_requests:increase{w}"),
            &[],
            &format!("sum without ({agg}) (increase(statuswatch_responses_total[{w}]))"),
        );
        y.record(
            &format!("{lvl}:statuswatch_requests:increase{b}_offset{w}"),
            &[],
            &format!("sum without ({agg}) (increase(statuswatch_responses_total[{b}] offset {w}))"),
        );
    }
    for spec in &signals {
        let sels = selectors(spec, cfg)?;
        let sig = spec.name.as_str();
        let sl = [("signal", sig)];
        let title = signal_title(sig);
        for (lvl, agg) in &levels {
            let events = |range: &str, offset: &str, requests: &str| -> String {
                sels.iter()
                    .map(|sel| {
                        format!(
                            "(\n  sum without ({agg}) (increase(statuswatch_responses_total{{{sel}}}[{range}]{offset}))\n    or 0 * {requests}\n)"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n+\n")
            };
            let req_w = format!("{lvl}:statuswatch_requests:increase{w}");
            let req_b = format!("{lvl}:statuswatch_requests:increase{b}_offset{w}");
            let ev_w = format!("{lvl}:statuswatch_signal_events:increase{w}");
            let ev_b = format!("{lvl}:statuswatch_signal_events:increase{b}_offset{w}");
            let expected = format!("{lvl}:statuswatch_signal_expected:ratio");
            let ratio = format!("{lvl}:statuswatch_signal_events:ratio{w}");
            let surprise = format!("{lvl}:statuswatch_signal:surprise{w}");
            let m = format!("{{signal={}}}", q(sig));
            y.record(&ev_w, &sl, &events(&w, "", &req_w));
            y.record(&ev_b, &sl, &events(&b, &format!(" offset {w}"), &req_b));
            y.record(
                &expected,
                &sl,
                &format!(
                    "clamp(\n  {ev_b}{m}\n    / ignoring (signal) group_left() (({req_b} >= {}) >= {req_w}),\n  {}, {}\n)",
                    spec.min_requests,
                    num(spec.floor),
                    num(P0_MAX)
                ),
            );
            y.record(
                &ratio,
                &sl,
                &format!("{ev_w}{m}\n  / ignoring (signal) group_left() ({req_w} > 0)"),
            );
            // q = max(k/n, p0), below 1: a share at or below p0 is no surprise (S = 0).
            let qc =
                format!("((clamp_max({ratio}{m}, 1 - 1e-09) > {expected}{m}) or {expected}{m})");
            y.record(
                &surprise,
                &sl,
                &format!(
                    "{req_w} * ignoring (signal) group_right() (\n    {qc} * ln({qc} / {expected}{m})\n  + (1 - {qc}) * ln((1 - {qc}) / (1 - {expected}{m}))\n)"
                ),
            );
        }
        let decision = |lvl: &str| {
            format!(
                "{lvl}:statuswatch_signal_events:ratio{w}{m} >= {factor} * {lvl}:statuswatch_signal_expected:ratio{m}\nand {lvl}:statuswatch_signal:surprise{w}{m} >= {thr}\nand {lvl}:statuswatch_signal_events:increase{w}{m} >= {min_ev}",
                m = format!("{{signal={}}}", q(sig)),
                factor = num(spec.factor),
                thr = num((spec.surprise_threshold() * 1e4).round() / 1e4),
                min_ev = spec.min_events,
            )
        };
        let known = matches!(sig, "5xx" | "suspended");
        let what = match sig {
            "5xx" => "5xx".to_string(),
            "suspended" => "451 (suspended)".to_string(),
            other => format!("{other} ({})", describe_codes(spec)),
        };
        let hint = match sig {
            "5xx" => " origin=\"proxy\" in statuswatch_responses_total means the API could not be reached (502/504), origin=\"upstream\" that it answered 5xx.",
            "suspended" => " The studio's subscription was suspended over a suspected terms-of-service violation: confirm it was intended.",
            _ => "",
        };
        let stat = format!(
            "improbable for the baseline share given the requests seen (chance below {}) and at least {}x that share.",
            num(spec.significance),
            num(spec.factor),
        );
        let tenant_alert = format!("StatuswatchTenant{title}Spike");
        let tenant_runbook = if known {
            None
        } else {
            Some("StatuswatchTenantSignalSpike")
        };
        y.alert(Alert {
            name: &tenant_alert,
            expr: &decision("tenant"),
            for_: Some(opts.spike_for),
            keep_firing_for: Some(spec.clear_after),
            labels: &[("severity", "warning"), ("signal", sig)],
            summary: &format!("{what} spike for tenant {{{{ $labels.tenant }}}}"),
            description: &format!(
                "{{{{ $value | humanizePercentage }}}} of tenant {{{{ $labels.tenant }}}}'s requests in the last {w} were {what}, summed over all pods of {{{{ $labels.job }}}}: {stat}{hint}"
            ),
            runbook: tenant_runbook,
        });
        let overall_alert = format!("Statuswatch{title}Spike");
        let overall_runbook = if known {
            None
        } else {
            Some("StatuswatchSignalSpike")
        };
        y.alert(Alert {
            name: &overall_alert,
            expr: &decision("job"),
            for_: Some(opts.spike_for),
            keep_firing_for: Some(spec.clear_after),
            labels: &[("severity", spec.severity.as_str()), ("signal", sig)],
            summary: &format!("{what} spike across all tenants of {{{{ $labels.job }}}}"),
            description: &format!(
                "{{{{ $value | humanizePercentage }}}} of all requests in the last {w} were {what}, summed over all pods and tenants of {{{{ $labels.job }}}}: {stat} Check which tenants and which origin (upstream or proxy) the responses come from."
            ),
            runbook: overall_runbook,
        });
    }

    // ---- suspensions -------------------------------------------------------------
    y.group(
        "statuswatch.suspensions",
        None,
        &["Suspended tenants, deduplicated across pods (each pod sees its own share of a tenant)."],
    );
    y.record(
        "tenant:statuswatch_tenant_suspended:max",
        &[],
        &format!("max without ({POD_LABELS}) (statuswatch_tenant_suspended == 1)"),
    );
    y.record(
        "job:statuswatch_tenants_suspended:count",
        &[],
        "count without (tenant) (tenant:statuswatch_tenant_suspended:max)",
    );
    y.record(
        &format!("job:statuswatch_tenants_newly_suspended:count{ww}"),
        &[],
        &format!(
            "count without (tenant) (\n  max without ({POD_LABELS}) (max_over_time(statuswatch_tenant_suspended[{ww}]) == 1)\n    unless\n  max without ({POD_LABELS}) (statuswatch_tenant_suspended offset {ww} == 1)\n)"
        ),
    );
    y.record(
        "job:statuswatch_suspensions:rate5m",
        &[],
        &format!("sum without ({POD_LABELS}) (rate(statuswatch_suspensions_total[5m]))"),
    );
    y.alert(Alert {
        name: "StatuswatchSuspensionWave",
        expr: &format!(
            "job:statuswatch_tenants_newly_suspended:count{ww} >= {}",
            d.wave_tenants
        ),
        for_: None,
        keep_firing_for: None,
        labels: &[("severity", "critical"), ("signal", "suspended")],
        summary: &format!(
            "Suspension wave: {{{{ $value }}}} tenants of {{{{ $labels.job }}}} newly suspended within {ww}"
        ),
        description: &format!(
            "{{{{ $value }}}} distinct tenants of {{{{ $labels.job }}}} became suspended (answered 451) within the last {ww}, counted once each however many pods saw them (the wave needs {}). Either a real abuse wave or a faulty suspension job locking out paying studios: see tenant:statuswatch_tenant_suspended:max.",
            d.wave_tenants
        ),
        runbook: None,
    });

    // ---- health --------------------------------------------------------------------
    y.group("statuswatch.health", None, &[]);
    y.alert(Alert {
        name: "StatuswatchDown",
        expr: &format!("up{{job=~{}}} == 0", q(&opts.job_regex)),
        for_: Some(Duration::from_secs(60)),
        keep_firing_for: None,
        labels: &[("severity", "critical")],
        summary: "statuswatch {{ $labels.instance }} cannot be scraped",
        description: "Prometheus cannot scrape the statuswatch admin listener at {{ $labels.instance }} for 1 minute: the sidecar is down (and with it the API traffic of its pod) or its /metrics is unreachable (admin listen address, bearer token, allow list).",
        runbook: None,
    });
    y.alert(Alert {
        name: "StatuswatchAbsent",
        expr: &format!("absent(up{{job=~{}}} == 1)", q(&opts.job_regex)),
        for_: Some(Duration::from_secs(300)),
        keep_firing_for: None,
        labels: &[("severity", "critical")],
        summary: "No statuswatch sidecar is being scraped",
        description: &format!(
            "No scrape target of job=~{:?} has been up for 5 minutes: every statuswatch target vanished (Deployment scaled to zero, ServiceMonitor or scrape config broken, relabelling changed the job name), so no statuswatch alert can fire.",
            opts.job_regex
        ),
        runbook: None,
    });
    y.alert(Alert {
        name: "StatuswatchTenantOverflow",
        expr: &format!(
            "sum without ({POD_LABELS}) (rate(statuswatch_tenant_overflow_total[5m])) > 0"
        ),
        for_: Some(Duration::from_secs(600)),
        keep_firing_for: None,
        labels: &[("severity", "warning")],
        summary: "Tenants of {{ $labels.job }} are being folded into __overflow__",
        description: "statuswatch has been counting requests as tenant __overflow__ for 10 minutes ({{ $value | humanize }} req/s): the tenant cap (tenant.max_tenants) is reached or tenants are not on the allowlist, so those tenants get no alerts of their own. Raise the cap or check for tenant-name abuse.",
        runbook: None,
    });

    // ---- SLO burn rates --------------------------------------------------------------
    burn_rate_rules(&mut y, budget, &slo_pct);
    Ok(y.out)
}

fn describe_codes(spec: &SignalSpec) -> String {
    let mut parts: Vec<String> = spec.classes.clone();
    parts.extend(spec.codes.iter().map(|c| c.to_string()));
    parts.join(", ")
}

fn burn_rate_rules(y: &mut Yaml, budget: f64, slo_pct: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        Config::defaults().unwrap()
    }

    #[test]
    fn durations_in_prometheus_units() {
        assert_eq!(prom_duration(Duration::from_secs(60)), "1m");
        assert_eq!(prom_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(prom_duration(Duration::from_secs(86_400 * 3)), "3d");
    }

    #[test]
    fn titles() {
        assert_eq!(signal_title("5xx"), "5xx");
        assert_eq!(signal_title("suspended"), "Suspension");
        assert_eq!(signal_title("payment_required"), "PaymentRequired");
        assert_eq!(signal_title("auth-failures"), "AuthFailures");
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

    #[test]
    fn codes_inside_a_class_are_not_counted_twice() {
        let mut cfg = defaults();
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
        let sels = selectors(&spec, &cfg).unwrap();
        assert_eq!(
            sels,
            vec![
                "class=~\"5xx\"".to_string(),
                "code=~\"451\", class!~\"5xx\"".to_string()
            ]
        );
    }
}
