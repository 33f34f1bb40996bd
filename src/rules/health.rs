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
use crate::detect::{SignalSpec, SUSPENDED_SIGNAL};
use crate::metrics::names::{
    BUILD_INFO, RESPONSES_TOTAL, SUSPENSIONS_TOTAL, TENANT_OVERFLOW_TOTAL, TENANT_SUSPENDED,
};

/// The `statuswatch.suspensions` group. A tenant counts as newly
/// suspended only if it was not seen suspended at any time within the
/// suspended signal's `relearn_after` before: a suspended studio that goes
/// idle (its slot reclaimed after `tenant.idle_ttl`, its series gone) and
/// calls again the next morning is not new. The memory is two recorded
/// series per tenant seen suspended within that horizon: when it was last
/// seen suspended, and since when its current suspension lasts (a gap
/// shorter than the horizon is the same suspension).
pub(super) fn suspension_rules(y: &mut Yaml, cfg: &Config, spec: &SignalSpec, cadence: &Cadence) {
    let d = &cfg.detector;
    let ww = prom_duration(d.wave_window);
    let horizon = spec.relearn_after.as_secs();
    // How far back a rule finds its own last sample: the wave window, at
    // least two and a half evaluations, so a Prometheus restart shorter than
    // that keeps the memory.
    let hold = prom_duration(d.wave_window.max(cadence.eval * 5 / 2));
    let r5 = prom_duration(cadence.raw_range(Duration::from_secs(300)));
    let (max, last_seen, since) = (
        "tenant:statuswatch_tenant_suspended:max",
        "tenant:statuswatch_tenant_suspended:last_seen",
        "tenant:statuswatch_tenant_suspended:since",
    );
    y.group(
        "statuswatch.suspensions",
        None,
        &["Suspended tenants, deduplicated across pods (each pod sees its own share of a tenant)."],
    );
    y.record(
        max,
        &[],
        &format!("max without ({POD_LABELS}) ({TENANT_SUSPENDED} == 1)"),
    );
    y.record(
        "job:statuswatch_tenants_suspended:count",
        &[],
        &format!("count without ({TEN}) ({max})"),
    );
    y.record(
        last_seen,
        &[],
        &format!(
            "(0 * {max} + time())\nor\n(last_over_time({last_seen}[{hold}]) > time() - {horizon})"
        ),
    );
    // A new suspension starts at the evaluation that first sees it, but
    // only once this Prometheus has scraped the job for a window: at its
    // first start every tenant already suspended is "seen" at once, and its
    // start is unknown (0, never new: the wave counts only onsets > 0).
    y.record(
        since,
        &[],
        &format!(
            "(last_over_time({since}[{hold}]) and {last_seen})\nor\n(\n  (0 * {max} + time())\n    and ignoring ({TEN})\n  max without ({POD_LABELS}, version) ({BUILD_INFO} offset {w})\n)\nor\n0 * {max}",
            w = prom_duration(cadence.window),
        ),
    );
    y.record(
        &format!("job:statuswatch_tenants_newly_suspended:count{ww}"),
        &[],
        &format!(
            "count without ({TEN}) (\n  ({since} > time() - {} > 0)\n    and\n  {max}\n)",
            d.wave_window.as_secs()
        ),
    );
    y.record(
        &format!("job:statuswatch_suspensions:rate{r5}"),
        &[],
        &format!("sum without ({POD_LABELS}) (rate({SUSPENSIONS_TOTAL}[{r5}]))"),
    );
    let days = prom_duration(spec.relearn_after);
    let codes = super::annotate::describe_codes(spec);
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
            "{{{{ $value }}}} distinct tenants of {{{{ $labels.job }}}} became suspended (answered {codes}) within the last {ww}, none of them suspended at any time in the {days} before, counted once each however many pods saw them (the wave needs {}): {{{{ range $i, $t := query (printf \"({since}{{job=%q}} > time() - {} > 0) and {max}\" $labels.job) | sortByLabel \"tenant\" }}}}{{{{ if $i }}}}, {{{{ end }}}}{{{{ $t.Labels.tenant }}}}{{{{ end }}}}. Either a real abuse wave or a faulty suspension job locking out paying studios.",
            d.wave_tenants,
            d.wave_window.as_secs(),
        ),
        dashboard: None,
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
        dashboard: None,
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
        dashboard: None,
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
        dashboard: None,
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
        dashboard: None,
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
        dashboard: None,
        runbook: None,
    });
}
