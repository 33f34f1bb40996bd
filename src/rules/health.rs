//! The suspension-wave and health groups: distinct tenants newly suspended
//! across pods, and alerts for sidecars that cannot be scraped, no sidecar
//! scraped at all, and tenants folded into `__overflow__`.

use std::time::Duration;

use super::yaml::{prom_duration, q, Alert, Yaml};
use super::{RulesOptions, POD_LABELS, TEN};
use crate::config::Config;
use crate::metrics::names::{SUSPENSIONS_TOTAL, TENANT_OVERFLOW_TOTAL, TENANT_SUSPENDED};

/// The `statuswatch.suspensions` group.
pub(super) fn suspension_rules(y: &mut Yaml, cfg: &Config) {
    let d = &cfg.detector;
    let ww = prom_duration(d.wave_window);
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
        "job:statuswatch_suspensions:rate5m",
        &[],
        &format!("sum without ({POD_LABELS}) (rate({SUSPENSIONS_TOTAL}[5m]))"),
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
}

/// The `statuswatch.health` group.
pub(super) fn health_rules(y: &mut Yaml, opts: &RulesOptions) {
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
            "sum without ({POD_LABELS}) (rate({TENANT_OVERFLOW_TOTAL}[5m])) > 0"
        ),
        for_: Some(Duration::from_secs(600)),
        keep_firing_for: None,
        labels: &[("severity", "warning")],
        summary: "Tenants of {{ $labels.job }} are being folded into __overflow__",
        description: "statuswatch has been counting requests as tenant __overflow__ for 10 minutes ({{ $value | humanize }} req/s): the tenant cap (tenant.max_tenants) is reached or tenants are not on the allowlist, so those tenants get no alerts of their own. Raise the cap or check for tenant-name abuse.",
        runbook: None,
    });
}
