//! The spike alerts and what their page says: who failed and by how much.
//!
//! An overall alert names the tenants carrying the excess (the most signal
//! events above their expected share, with counts and shares); a tenant alert
//! gives its k of n, its baseline share and the expected share the decision
//! compared with. The numbers are queried from the recording rules in the
//! alert's template, so nothing is evaluated until an alert fires. Each alert
//! links the Grafana dashboard that shows the same decision
//! (`dashboard_url`, from [`RulesOptions::grafana_url`]).

use super::spikes::{in_classes, signal_title, Chain};
use super::yaml::{num, q, Alert};
use super::{RulesOptions, Yaml, POD_LABELS, SIG, TEN};
use crate::detect::{SignalSpec, SUSPENDED_SIGNAL};
use crate::metrics::names::{label, ROUTE_RESPONSES_TOTAL};

/// The dashboards' UIDs (`dashboards/*.json`; `deploy/check.sh` checks
/// every `dashboard_url` against them).
pub const TENANT_DASHBOARD_UID: &str = "statuswatch-tenant";
pub const OVERVIEW_DASHBOARD_UID: &str = "statuswatch-overview";

/// How many tenants an overall spike's description names.
pub(super) const TOP_TENANTS: usize = 3;

/// Go-template code that sets `$scope` to the matchers of the alert's API
/// (the job, and namespace and cluster when the alert has them: an absent
/// label matches only series without it, so two APIs never mix) and `$sel`
/// to those of its own series (the signal, and the tenant for a tenant
/// alert, within that scope).
fn selector(sig: &str, tenant: bool) -> String {
    let mut s = "{{ $scope := printf \"job=%q\" $labels.job }}".to_string();
    for l in ["namespace", "cluster"] {
        s.push_str(&format!(
            "{{{{ with $labels.{l} }}}}{{{{ $scope = printf \"%s,{l}=%q\" $scope . }}}}{{{{ end }}}}"
        ));
    }
    if tenant {
        s.push_str(&format!(
            "{{{{ $sel := printf \"{SIG}=%q,{TEN}=%q,%s\" {sig:?} $labels.{TEN} $scope }}}}"
        ));
    } else {
        s.push_str(&format!(
            "{{{{ $sel := printf \"{SIG}=%q,%s\" {sig:?} $scope }}}}"
        ));
    }
    s
}

/// How many routes a spike's description names.
pub(super) const TOP_ROUTES: usize = 3;

/// The sentence naming the routes that failed most in the window, over all
/// tenants (the route tally has no tenant label, so a tenant alert names
/// the API's failing routes, most often its own), or nothing for a signal
/// the tally cannot tell: it keeps classes, not codes, so only a signal
/// made of whole classes (5xx) gets one.
fn failing_routes(spec: &SignalSpec, c: &Chain) -> String {
    let whole_classes = spec.codes.iter().all(|code| in_classes(spec, *code));
    if !c.route_tally || spec.classes.is_empty() || !whole_classes {
        return String::new();
    }
    let expr = format!(
        "sort_desc(topk({TOP_ROUTES}, sum without ({POD_LABELS}, {origin}) (increase({ROUTE_RESPONSES_TOTAL}{{{class}=~{re},%s}}[{w}])) > 0))",
        origin = label::ORIGIN,
        class = label::CLASS,
        re = q(&spec.classes.join("|")),
        w = c.w,
    );
    format!(
        " Failing routes, all tenants, last {w}: {{{{ range $i, $r := query (printf {expr:?} $scope) }}}}{{{{ if $i }}}}; {{{{ end }}}}{{{{ $r.Labels.{route} }}}} {{{{ $r.Labels.{class} }}}} x{{{{ $r.Value | printf \"%.0f\" }}}}{{{{ else }}}}none recorded{{{{ end }}}}.",
        w = c.w,
        route = label::ROUTE,
        class = label::CLASS,
    )
}

/// The first value of `metric{$sel<more>}` through `fmt` (a template
/// pipeline stage), or `none` when the query returns nothing.
fn value(metric: &str, more: &str, more_args: &str, fmt: &str, none: &str) -> String {
    format!("{{{{ with query (printf \"{metric}{{%s{more}}}\" $sel{more_args}) }}}}{{{{ . | first | value | {fmt} }}}}{{{{ else }}}}{none}{{{{ end }}}}")
}

const COUNT: &str = "printf \"%.0f\"";
/// A share, to three significant digits: the fourth differs between
/// Prometheus 2 and 3 (closed and left-open ranges count a baseline's
/// windows a little differently), and on-call needs no more. Applied to
/// `100 * <share>` (see [`share`]).
const SHARE: &str = "printf \"%.3g%%\"";

/// The expression [`SHARE`] formats: a share as a percentage.
fn share(metric: &str) -> String {
    format!("100 * {metric}")
}

/// `dashboard_url` of a dashboard, with the alert's job (and tenant,
/// namespace, cluster when it has them) as the dashboard's variables.
fn dashboard_url(base: &str, uid: &str, tenant: bool) -> String {
    let mut s = format!("{base}/d/{uid}?var-job={{{{ $labels.job | urlquery }}}}");
    if tenant {
        s.push_str(&format!("&var-{TEN}={{{{ $labels.{TEN} | urlquery }}}}"));
    }
    for l in ["namespace", "cluster"] {
        s.push_str(&format!(
            "{{{{ with $labels.{l} }}}}&var-{l}={{{{ . | urlquery }}}}{{{{ end }}}}"
        ));
    }
    s
}

/// The tenant and the fleet-wide alert of one signal, on its decision.
pub(super) fn spike_alerts(y: &mut Yaml, spec: &SignalSpec, c: &Chain, opts: &RulesOptions) {
    let sig = spec.name.as_str();
    let (w, b) = (&c.w, &c.b);
    let m = format!("{{{SIG}={}}}", q(sig));
    let title = signal_title(sig);
    let known = matches!(sig, "5xx" | SUSPENDED_SIGNAL);
    let what = match sig {
        "5xx" => "5xx".to_string(),
        SUSPENDED_SIGNAL => format!("{} (suspended)", describe_codes(spec)),
        other => format!("{other} ({})", describe_codes(spec)),
    };
    let hint = match sig {
        "5xx" => " origin=\"proxy\" in statuswatch_responses_total means the API could not be reached (502/504), origin=\"upstream\" that it answered 5xx.",
        SUSPENDED_SIGNAL => " The studio's subscription was suspended over a suspected terms-of-service violation: confirm it was intended.",
        _ => "",
    };
    let stat = format!(
        "improbable for the baseline share given the requests seen (chance below {}) and at least {}x that share.",
        num(spec.significance),
        num(spec.factor),
    );
    let base = opts.grafana_url.trim_end_matches('/');
    let routes = failing_routes(spec, c);
    let (k, n) = (
        c.events("tenant"),
        format!("tenant:statuswatch_signal_window_requests:increase{w}"),
    );
    let expected = "tenant:statuswatch_signal_expected:ratio";

    // The tenant alert: its counts, its baseline and what it was judged against.
    let kn = format!(
        "{} of {}",
        value(&k, "", "", COUNT, "?"),
        value(&n, "", "", COUNT, "?")
    );
    let baseline = value(
        &share("tenant:statuswatch_signal_window_baseline:ratio"),
        "",
        "",
        SHARE,
        &format!("none (too few requests in the last {b})"),
    );
    let p0 = value(&share(expected), "", "", SHARE, "?");
    let tenant_alert = format!("StatuswatchTenant{title}Spike");
    y.alert(Alert {
        name: &tenant_alert,
        expr: &format!("{}{m}", c.spike("tenant")),
        for_: Some(opts.spike_for),
        keep_firing_for: Some(c.cadence.keep_firing(spec.clear_after)),
        labels: &[("severity", "warning"), (SIG, sig)],
        summary: &format!("{what} spike for tenant {{{{ $labels.tenant }}}}"),
        description: &format!(
            "{sel}{{{{ $value | humanizePercentage }}}} of tenant {{{{ $labels.tenant }}}}'s requests in the last {w} were {what}: {kn}, summed over all pods of {{{{ $labels.job }}}}. Its baseline share over the last {b} was {baseline}, the decision expected at most {p0}: {stat}{routes}{hint}",
            sel = selector(sig, true),
        ),
        dashboard: Some(dashboard_url(base, TENANT_DASHBOARD_UID, true)),
        runbook: (!known).then_some("StatuswatchTenantSignalSpike"),
    });

    // The overall alert names the tenants carrying the excess: k - n·p0
    // (k where the tenant has no expected share yet), the largest first.
    let excess = format!(
        "sort_desc(topk({TOP_TENANTS}, (({k}{{%s}} - {n}{{%s}} * {expected}{{%s}}) or {k}{{%s}}) > 0))"
    );
    let per = |metric: &str, fmt: &str| value(metric, ",tenant=%q", " $t.Labels.tenant", fmt, "?");
    let tenants = format!(
        "{{{{ range $i, $t := query (printf {excess:?} $sel $sel $sel $sel) }}}}{{{{ if $i }}}}; {{{{ end }}}}{{{{ $t.Labels.tenant }}}} {} of {} ({}, {{{{ $t.Value | printf \"%.0f\" }}}} above its expected share){{{{ else }}}}none above its expected share{{{{ end }}}}",
        per(&k, COUNT),
        per(&n, COUNT),
        per(&share(&format!("tenant:statuswatch_signal_events:ratio{w}")), SHARE),
    );
    let overall_kn = format!(
        "{} of {}",
        value(&c.events("job"), "", "", COUNT, "?"),
        value(
            &format!("job:statuswatch_signal_window_requests:increase{w}"),
            "",
            "",
            COUNT,
            "?"
        )
    );
    let overall_alert = format!("Statuswatch{title}Spike");
    y.alert(Alert {
        name: &overall_alert,
        expr: &format!("{}{m}", c.spike("job")),
        for_: Some(opts.spike_for),
        keep_firing_for: Some(c.cadence.keep_firing(spec.clear_after)),
        labels: &[("severity", spec.severity.as_str()), (SIG, sig)],
        summary: &format!("{what} spike across all tenants of {{{{ $labels.job }}}}"),
        description: &format!(
            "{sel}{{{{ $value | humanizePercentage }}}} of all requests in the last {w} were {what}: {overall_kn}, summed over all pods and tenants of {{{{ $labels.job }}}}: {stat} Tenants carrying it (signal events above their expected share, most first): {tenants}.{routes}{hint}",
            sel = selector(sig, false),
        ),
        dashboard: Some(dashboard_url(base, OVERVIEW_DASHBOARD_UID, false)),
        runbook: (!known).then_some("StatuswatchSignalSpike"),
    });
}

/// The signal's classes and codes, for the alerts' wording ("451", "5xx, 429").
pub(super) fn describe_codes(spec: &SignalSpec) -> String {
    let mut parts: Vec<String> = spec.classes.clone();
    parts.extend(spec.codes.iter().map(|c| c.to_string()));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_names_the_alerts_own_series() {
        let s = selector("5xx", true);
        assert!(s.starts_with(r#"{{ $scope := printf "job=%q" $labels.job }}"#));
        assert!(s.contains(
            r#"{{ with $labels.namespace }}{{ $scope = printf "%s,namespace=%q" $scope . }}{{ end }}"#
        ));
        assert!(s.ends_with(
            r#"{{ $sel := printf "signal=%q,tenant=%q,%s" "5xx" $labels.tenant $scope }}"#
        ));
        assert!(!selector("5xx", false).contains("tenant"));
    }

    /// Routes are named for a signal of whole classes only, and not at all
    /// without the route tally.
    #[test]
    fn failing_routes_only_where_the_tally_can_tell() {
        let mut cfg = crate::config::Config::defaults().unwrap();
        let specs = SignalSpec::all_from_config(&cfg).unwrap();
        let cadence = super::super::Cadence::of(&cfg).unwrap();
        let c = Chain::new(&cfg, cadence);
        let five = specs.iter().find(|s| s.name == "5xx").unwrap();
        let susp = specs.iter().find(|s| s.name == SUSPENDED_SIGNAL).unwrap();
        let r = failing_routes(five, &c);
        assert!(
            r.contains(r#"statuswatch_route_responses_total{class=~\"5xx\",%s}[1m]"#),
            "{r}"
        );
        assert!(
            failing_routes(susp, &c).is_empty(),
            "451 is a code, not a class"
        );
        cfg.route_tally.enabled = false;
        let c = Chain::new(&cfg, cadence);
        assert!(failing_routes(five, &c).is_empty());
    }

    #[test]
    fn dashboard_links_carry_the_alerts_labels() {
        let u = dashboard_url("", TENANT_DASHBOARD_UID, true);
        assert!(
            u.starts_with("/d/statuswatch-tenant?var-job={{ $labels.job | urlquery }}&var-tenant=")
        );
        let u = dashboard_url("https://grafana.example.org", OVERVIEW_DASHBOARD_UID, false);
        assert!(u.starts_with("https://grafana.example.org/d/statuswatch-overview?var-job="));
        assert!(!u.contains("var-tenant"));
    }
}
