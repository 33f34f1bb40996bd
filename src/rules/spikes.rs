//! Spike detection in Prometheus: per signal, the recording rules that
//! compute the detector's inputs on pod-summed counters (window, baseline,
//! expected share, surprise) and the tenant and fleet-wide spike alerts that
//! apply [`SignalSpec::judge`]'s conditions to them.

use super::yaml::{num, prom_duration, q, Alert, Yaml};
use super::{invalid, RulesError, RulesOptions, CODE_LABELS, POD_LABELS};
use crate::config::Config;
use crate::detect::{SignalSpec, P0_MAX};

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

/// The label selector(s) of a signal's events, disjoint: classes first, then
/// the codes outside those classes.
pub(super) fn selectors(spec: &SignalSpec, cfg: &Config) -> Result<Vec<String>, RulesError> {
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

/// The `statuswatch.spikes` group: recording rules and alerts of every signal.
pub(super) fn spike_rules(
    y: &mut Yaml,
    signals: &[SignalSpec],
    cfg: &Config,
    opts: &RulesOptions,
) -> Result<(), RulesError> {
    let w = prom_duration(cfg.detector.short_window);
    let b = prom_duration(cfg.detector.baseline_half_life);
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
    for spec in signals {
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
    Ok(())
}

fn describe_codes(spec: &SignalSpec) -> String {
    let mut parts: Vec<String> = spec.classes.clone();
    parts.extend(spec.codes.iter().map(|c| c.to_string()));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(signal_title("5xx"), "5xx");
        assert_eq!(signal_title("suspended"), "Suspension");
        assert_eq!(signal_title("payment_required"), "PaymentRequired");
        assert_eq!(signal_title("auth-failures"), "AuthFailures");
    }

    #[test]
    fn codes_inside_a_class_are_not_counted_twice() {
        let mut cfg = Config::defaults().unwrap();
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
