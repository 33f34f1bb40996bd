//! The suspension-wave and health groups: distinct tenants newly suspended
//! across pods, and alerts for sidecars that cannot be scraped, no sidecar
//! scraped at all, rules that cannot see (scraped too sparsely for their
//! window, or their inputs missing while the sidecars are up), and tenants
//! folded into `__overflow__`.

use std::time::Duration;

use super::cadence::{Cadence, BLIND_SAMPLES};
use super::spikes::Chain;
use super::yaml::{prom_duration, q, Alert, Yaml};
use super::{code_labels, RulesOptions, POD_LABELS, SIG, TEN};
use crate::config::Config;
use crate::detect::SUSPENDED_SIGNAL;
use crate::metrics::names::{
    BUILD_INFO, RESPONSES_TOTAL, SUSPENSIONS_TOTAL, TENANT_OVERFLOW_TOTAL, TENANT_SUSPENDED,
};

/// The `statuswatch.suspensions` group.
pub(super) fn suspension_rules(y: &mut Yaml, cfg: &Config, cadence: &Cadence) {
    let d = &cfg.detector;
    let ww = prom_duration(d.wave_window);
    let r5 = prom_duration(cadence.raw_range(Duration::from_secs(300)));
    y.group(
        "statuswatch.suspensions",
        None,
        &["Suspended tenants, deduplicated across pods (each pod sees its own share of a tenant)."],
    );
    y.record(
        "tenant:statuswatch_tenant_suspended:max",
        &[],
        &format!("max without ({POD_LABELS}) ({TENANT_SUSPENDED} == 1)"),
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
            "count without ({TEN}) (\n  max without ({POD_LABELS}) (max_over_time({TENANT_SUSPENDED}[{ww}]) == 1)\n    unless\n  max without ({POD_LABELS}) ({TENANT_SUSPENDED} offset {ww} == 1)\n)"
        ),
    );
    y.record(
        &format!("job:statuswatch_suspensions:rate{r5}"),
        &[],
        &format!("sum without ({POD_LABELS}) (rate({SUSPENSIONS_TOTAL}[{r5}]))"),
    );
    y.alert(Alert {
        name: "StatuswatchSuspensionWave",
        expr: &format!(
            "job:statuswatch_tenants_newly_suspended:count{ww} >= {}",
            d.wave_tenants
        ),
        for_: None,
        keep_firing_for: None,
        labels: &[("severity", "critical"), (SIG, SUSPENDED_SIGNAL)],
        summary: &format!(
            "Suspension wave: {{{{ $value }}}} tenants of {{{{ $labels.job }}}} newly suspended within {ww}"
        ),
        description: &format!(
            "{{{{ $value }}}} distinct tenants of {{{{ $labels.job }}}} became suspended (answered 451) within the last {ww}, counted once each however many pods saw them (the wave needs {}). Either a real abuse wave or a faulty suspension job locking out paying studios: see tenant:statuswatch_tenant_suspended:max.",
            d.wave_tenants
        ),
        runbook: None,
    });
}

/// The `statuswatch.health` group.
pub(super) fn health_rules(y: &mut Yaml, opts: &RulesOptions, c: &Chain) {
    let cadence = &c.cadence;
    let job = q(&opts.job_regex);
    let r5 = prom_duration(cadence.raw_range(Duration::from_secs(300)));
    y.group("statuswatch.health", None, &[]);
    y.alert(Alert {
        name: "StatuswatchDown",
        expr: &format!("up{{job=~{job}}} == 0"),
        // One failed scrape is not down: at least two at slow scrape intervals.
        for_: Some(Duration::from_secs(60).max(cadence.scrape * 2)),
        keep_firing_for: None,
        labels: &[("severity", "critical")],
        summary: "statuswatch {{ $labels.instance }} cannot be scraped",
        description: "Prometheus cannot scrape the statuswatch admin listener at {{ $labels.instance }} for 1 minute: the sidecar is down (and with it the API traffic of its pod) or its /metrics is unreachable (admin listen address, bearer token, allow list).",
        runbook: None,
    });
    y.alert(Alert {
        name: "StatuswatchAbsent",
        expr: &format!("absent(up{{job=~{job}}} == 1)"),
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
            "sum without ({POD_LABELS}) (rate({TENANT_OVERFLOW_TOTAL}[{r5}])) > 0"
        ),
        for_: Some(Duration::from_secs(600)),
        keep_firing_for: None,
        labels: &[("severity", "warning")],
        summary: "Tenants of {{ $labels.job }} are being folded into __overflow__",
        description: "statuswatch has been counting requests as tenant __overflow__ for 10 minutes ({{ $value | humanize }} req/s): the tenant cap (tenant.max_tenants) is reached or tenants are not on the allowlist, so those tenants get no alerts of their own. Raise the cap or check for tenant-name abuse.",
        runbook: None,
    });
    blind_rules(y, opts, c);
}

/// The alerts that say the rules cannot see, so that a spike alert that
/// stays silent means "no spike", never "no data".
fn blind_rules(y: &mut Yaml, opts: &RulesOptions, c: &Chain) {
    let cadence = &c.cadence;
    let job = q(&opts.job_regex);
    let (w, si) = (&c.w, prom_duration(cadence.scrape));
    let per_window = cadence.window.as_millis() / cadence.scrape.as_millis().max(1);
    // The best-scraped sidecar of each job: one slow or restarted pod does
    // not make the job's sums blind.
    y.alert(Alert {
        name: "StatuswatchRulesUndersampled",
        expr: &format!(
            "max without ({POD_LABELS}) (count_over_time(up{{job=~{job}}}[{w}])) < {BLIND_SAMPLES}"
        ),
        for_: Some(Duration::from_secs(300)),
        keep_firing_for: None,
        labels: &[("severity", "critical")],
        summary: &format!(
            "statuswatch rules of {{{{ $labels.job }}}} see {{{{ $value }}}} samples per {w} window: scraped too sparsely, spike alerts blind"
        ),
        description: &format!(
            "The statuswatch rules were generated for a scrape every {si} ({per_window} samples in each {w} window they judge; they need at least {BLIND_SAMPLES}), but Prometheus holds only {{{{ $value }}}} sample(s) of {{{{ $labels.job }}}} per {w}: increase() over one sample returns nothing, over two it is noise, so the spike alerts are blind or page healthy tenants. Regenerate the rules with the scrape and evaluation intervals in use (statuswatch rules --scrape-interval 60s --evaluation-interval 60s, or the prometheus.* config keys), or scrape the sidecars every {si}."
        ),
        runbook: None,
    });
    let kept = format!("{POD_LABELS}, {}, {TEN}", code_labels());
    y.alert(Alert {
        name: "StatuswatchRulesBlind",
        expr: &format!(
            "(\n  max without ({POD_LABELS}) (up{{job=~{job}}} == 1)\n    unless\n  max without ({POD_LABELS}, version) ({BUILD_INFO})\n)\nor\n(\n  max without ({kept}) ({RESPONSES_TOTAL})\n    unless\n  {}\n)",
            c.requests("job")
        ),
        for_: Some(Duration::from_secs(600)),
        keep_firing_for: None,
        labels: &[("severity", "critical")],
        summary: "statuswatch rules of {{ $labels.job }} have no input: spike alerts blind",
        description: &format!(
            "For 10 minutes the statuswatch rules have computed nothing for {{{{ $labels.job }}}} although its sidecars are up: either the scraped targets expose no statuswatch metrics (wrong job, or metric relabelling drops them), or statuswatch_responses_total is scraped but {} is missing (too few samples per {w} window, or a rule group failing to evaluate). No spike or burn-rate alert can fire meanwhile.",
            c.requests("job")
        ),
        runbook: None,
    });
}
