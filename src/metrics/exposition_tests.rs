//! The whole exposition of a small known state, compared line for line with
//! the expected text, and a strict structural check of the format, so a
//! change to how the text is written cannot change what it says.
//!
//! Series of one family may come in any tenant order (the registry's order
//! is not part of the contract), so both sides are compared with each
//! family's series sorted; families, their order and their HELP/TYPE lines
//! are compared as they are. `process_*` values change from run to run:
//! only their presence is checked.

use std::time::Duration;

use super::render;
use crate::config::Config;
use crate::detect::{Detector, Timing};
use crate::record::Finished;
use crate::state::{Live, ReloadResult, Shared};
use crate::status::Origin;
use crate::tally::UpstreamErrorKind;
use crate::tenant::SlotRef;

/// A state with every kind of series: documented, undocumented and
/// out-of-range codes, both origins, latencies, a suspended tenant, a tenant
/// without traffic, a reserved slot with traffic, spike counters from a
/// detector tick, and a tenant name that needs escaping.
fn known_state(latency: &str) -> std::sync::Arc<Shared> {
    known_state_with(|cfg| cfg.tenant.latency = latency.into())
}

/// [`known_state`] with the defaults edited first (the metrics reference
/// renders it in every mode that changes which families are written).
pub(crate) fn known_state_with(edit: impl FnOnce(&mut Config)) -> std::sync::Arc<Shared> {
    let mut cfg = Config::defaults().unwrap();
    edit(&mut cfg);
    // Lets a quote and a backslash into a tenant name, to see them escaped.
    cfg.tenant.pattern = r#"^[a-z0-9"\\-]+$"#.into();
    cfg.route_tally.routes = vec![crate::config::RouteTemplate {
        method: "GET".into(),
        path: "/api/v2/customers/{id}".into(),
    }];
    let shared = Shared::new(Live::build(cfg).unwrap());
    let live = shared.live.load_full();
    let ink = shared.registry.lookup(&live.resolver, b"inkhouse", 0);
    let weird = shared.registry.lookup(&live.resolver, br#"We"ird\name"#, 0);
    shared.registry.lookup(&live.resolver, b"idle", 0);
    let ms = Duration::from_millis;
    let headers = http::HeaderMap::new();
    let at = |tenant: SlotRef, code: u16, origin: Origin, elapsed: Duration, path: Option<&str>| {
        let error_kind = (origin == Origin::Proxy).then_some(UpstreamErrorKind::ConnectRefused);
        let f = Finished {
            tenant,
            code,
            origin,
            elapsed,
            error_kind,
            request: path.map(|path| crate::record::Asked {
                method: &http::Method::GET,
                path,
                headers: &headers,
            }),
        };
        shared.record(&live, &f, 0);
    };
    let rec = |tenant, code, origin, elapsed| at(tenant, code, origin, elapsed, None);
    let (customer, nowhere) = (Some("/api/v2/customers/42"), Some("/api/v2/nowhere/123"));
    for _ in 0..3 {
        at(ink, 200, Origin::Upstream, ms(3), customer);
    }
    rec(ink, 201, Origin::Upstream, ms(30));
    at(ink, 404, Origin::Upstream, ms(1), nowhere);
    rec(ink, 429, Origin::Upstream, ms(2));
    rec(ink, 999, Origin::Upstream, ms(4));
    rec(ink, 502, Origin::Proxy, ms(1500));
    rec(ink, 502, Origin::Proxy, Duration::from_secs(4));
    rec(weird, 200, Origin::Upstream, ms(7));
    rec(weird, 451, Origin::Upstream, ms(120));
    rec(SlotRef::NONE, 200, Origin::Upstream, ms(1));
    shared.record_reload(ReloadResult::Success);
    let mut det = Detector::new(Timing::from_config(&live.config), live.signals.clone());
    shared
        .detector
        .store(std::sync::Arc::new(det.step(&shared.registry)));
    shared
}

/// Families in order, each as its header lines and its sorted series.
fn canonical(text: &str) -> Vec<(Vec<&str>, Vec<&str>)> {
    let mut families: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") {
            families.push((vec![line], Vec::new()));
        } else if let Some(f) = families.last_mut() {
            if line.starts_with('#') {
                f.0.push(line);
            } else {
                f.1.push(line);
            }
        }
    }
    for f in &mut families {
        f.1.sort_unstable();
    }
    families
}

/// Strict format check: every family has one HELP then one TYPE, appears
/// once, and every series belongs to the family above it, has well-formed
/// labels (quoted, escaped values) and a value that parses as a float.
fn check_strictly(text: &str) {
    let mut seen = std::collections::HashSet::new();
    let mut family: Option<(String, String)> = None;
    let mut pending_help: Option<String> = None;
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(seen.insert(name.clone()), "family {name} twice");
            pending_help = Some(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert_eq!(pending_help.take().as_deref(), Some(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            family = Some((name.to_string(), kind.to_string()));
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let (fam, kind) = family.as_ref().expect("series before any TYPE");
            let end = line.find(['{', ' ']).expect(line);
            let name = &line[..end];
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(fam)),
                // a summary without quantiles: _sum and _count only
                "summary" => ["_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(fam)),
                _ => name == fam,
            };
            assert!(ok, "series {name} under family {fam}");
            let mut rest = &line[end..];
            if let Some(labels) = rest.strip_prefix('{') {
                rest = check_labels(labels, line);
            }
            let value = rest.strip_prefix(' ').expect(line);
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "value {value:?} in {line:?}"
            );
        }
    }
}

/// Parse `name="value",...}` and return what follows the `}`.
fn check_labels<'a>(mut s: &'a str, line: &str) -> &'a str {
    loop {
        let eq = s.find('=').expect(line);
        let name = &s[..eq];
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "label name {name:?} in {line:?}"
        );
        s = s[eq + 1..].strip_prefix('"').expect(line);
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next().expect(line) {
                (_, '\\') => {
                    let (_, c) = chars.next().expect(line);
                    assert!(matches!(c, '\\' | '"' | 'n'), "escape \\{c} in {line:?}");
                }
                (_, '\n') => panic!("raw newline in {line:?}"),
                (i, '"') => break i,
                _ => {}
            }
        };
        s = &s[close + 1..];
        match s.as_bytes().first() {
            Some(b',') => s = &s[1..],
            Some(b'}') => return &s[1..],
            _ => panic!("bad label list in {line:?}"),
        }
    }
}

#[test]
fn whole_exposition_of_a_known_state() {
    let shared = known_state("histogram");
    let mut out = String::new();
    render(&shared, &mut out);
    check_strictly(&out);
    // the last family counts every series, itself included
    let series = out.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        out.ends_with(&format!(
            "# TYPE statuswatch_series gauge\nstatuswatch_series {series}\n"
        )),
        "{out}"
    );
    // process_* come from the prometheus crate with this run's values.
    let (ours, process) = out
        .split_once("# HELP process_")
        .expect("process_* families");
    assert!(process.contains("# TYPE process_cpu_seconds_total counter\n"));
    let want = EXPECTED.replace("{VERSION}", crate::VERSION);
    let (got, want) = (canonical(ours), canonical(&want));
    assert_eq!(got.len(), want.len(), "families:\n{ours}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "\nwhole text:\n{ours}");
    }
}

/// Checked by hand against the state above (counts, buckets, sums,
/// escaping of `we"ird\\name`).
const EXPECTED: &str = r##"# HELP statuswatch_responses_total Responses sent to clients by tenant, documented code (or "undocumented"), class of the real code (1xx..5xx, or "other" for codes outside 100..599), and origin (upstream = answered by the API, proxy = generated by statuswatch).
# TYPE statuswatch_responses_total counter
statuswatch_responses_total{tenant="__none__",code="200",class="2xx",origin="upstream"} 1
statuswatch_responses_total{tenant="inkhouse",code="200",class="2xx",origin="upstream"} 3
statuswatch_responses_total{tenant="inkhouse",code="201",class="2xx",origin="upstream"} 1
statuswatch_responses_total{tenant="inkhouse",code="404",class="4xx",origin="upstream"} 1
statuswatch_responses_total{tenant="inkhouse",code="undocumented",class="4xx",origin="upstream"} 1
statuswatch_responses_total{tenant="inkhouse",code="undocumented",class="other",origin="upstream"} 1
statuswatch_responses_total{tenant="inkhouse",code="undocumented",class="5xx",origin="proxy"} 2
statuswatch_responses_total{tenant="we\"ird\\name",code="200",class="2xx",origin="upstream"} 1
statuswatch_responses_total{tenant="we\"ird\\name",code="451",class="4xx",origin="upstream"} 1
# HELP statuswatch_undocumented_responses_total Real status code of every response whose code is not in the catalog; "other" for all codes outside 100..599 together.
# TYPE statuswatch_undocumented_responses_total counter
statuswatch_undocumented_responses_total{code="429"} 1
statuswatch_undocumented_responses_total{code="502"} 2
statuswatch_undocumented_responses_total{code="other"} 1
# HELP statuswatch_request_duration_seconds Client-observed request duration, from request start to the end of the response, by class 1xx..5xx (responses with codes outside 100..599 are not observed here).
# TYPE statuswatch_request_duration_seconds histogram
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.001"} 1
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.0025"} 1
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.005"} 4
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.01"} 5
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.025"} 5
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.05"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.1"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.25"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="0.5"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="1"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="2.5"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="5"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="10"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="30"} 6
statuswatch_request_duration_seconds_bucket{class="2xx",origin="upstream",le="+Inf"} 6
statuswatch_request_duration_seconds_sum{class="2xx",origin="upstream"} 0.047
statuswatch_request_duration_seconds_count{class="2xx",origin="upstream"} 6
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.001"} 1
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.0025"} 2
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.005"} 2
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.01"} 2
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.025"} 2
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.05"} 2
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.1"} 2
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.25"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="0.5"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="1"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="2.5"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="5"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="10"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="30"} 3
statuswatch_request_duration_seconds_bucket{class="4xx",origin="upstream",le="+Inf"} 3
statuswatch_request_duration_seconds_sum{class="4xx",origin="upstream"} 0.123
statuswatch_request_duration_seconds_count{class="4xx",origin="upstream"} 3
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.001"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.0025"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.005"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.01"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.025"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.05"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.1"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.25"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="0.5"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="1"} 0
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="2.5"} 1
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="5"} 2
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="10"} 2
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="30"} 2
statuswatch_request_duration_seconds_bucket{class="5xx",origin="proxy",le="+Inf"} 2
statuswatch_request_duration_seconds_sum{class="5xx",origin="proxy"} 5.5
statuswatch_request_duration_seconds_count{class="5xx",origin="proxy"} 2
# HELP statuswatch_tenant_request_duration_seconds Client-observed request duration by tenant, with few buckets to bound the series per tenant (tenant.latency = "histogram").
# TYPE statuswatch_tenant_request_duration_seconds histogram
statuswatch_tenant_request_duration_seconds_bucket{tenant="__none__",le="0.005"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="__none__",le="0.025"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="__none__",le="0.1"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="__none__",le="0.5"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="__none__",le="2.5"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="__none__",le="+Inf"} 1
statuswatch_tenant_request_duration_seconds_sum{tenant="__none__"} 0.001
statuswatch_tenant_request_duration_seconds_count{tenant="__none__"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="inkhouse",le="0.005"} 6
statuswatch_tenant_request_duration_seconds_bucket{tenant="inkhouse",le="0.025"} 6
statuswatch_tenant_request_duration_seconds_bucket{tenant="inkhouse",le="0.1"} 7
statuswatch_tenant_request_duration_seconds_bucket{tenant="inkhouse",le="0.5"} 7
statuswatch_tenant_request_duration_seconds_bucket{tenant="inkhouse",le="2.5"} 8
statuswatch_tenant_request_duration_seconds_bucket{tenant="inkhouse",le="+Inf"} 9
statuswatch_tenant_request_duration_seconds_sum{tenant="inkhouse"} 5.546
statuswatch_tenant_request_duration_seconds_count{tenant="inkhouse"} 9
statuswatch_tenant_request_duration_seconds_bucket{tenant="we\"ird\\name",le="0.005"} 0
statuswatch_tenant_request_duration_seconds_bucket{tenant="we\"ird\\name",le="0.025"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="we\"ird\\name",le="0.1"} 1
statuswatch_tenant_request_duration_seconds_bucket{tenant="we\"ird\\name",le="0.5"} 2
statuswatch_tenant_request_duration_seconds_bucket{tenant="we\"ird\\name",le="2.5"} 2
statuswatch_tenant_request_duration_seconds_bucket{tenant="we\"ird\\name",le="+Inf"} 2
statuswatch_tenant_request_duration_seconds_sum{tenant="we\"ird\\name"} 0.127
statuswatch_tenant_request_duration_seconds_count{tenant="we\"ird\\name"} 2
# HELP statuswatch_upstream_errors_total Upstream failures that made the proxy answer itself, by kind.
# TYPE statuswatch_upstream_errors_total counter
statuswatch_upstream_errors_total{kind="connect_refused"} 2
statuswatch_upstream_errors_total{kind="connect_timeout"} 0
statuswatch_upstream_errors_total{kind="read_timeout"} 0
statuswatch_upstream_errors_total{kind="reset"} 0
statuswatch_upstream_errors_total{kind="tls"} 0
statuswatch_upstream_errors_total{kind="other"} 0
# HELP statuswatch_requests_in_flight Requests received and not yet answered.
# TYPE statuswatch_requests_in_flight gauge
statuswatch_requests_in_flight 0
# HELP statuswatch_tenants_tracked Tenant slots in use.
# TYPE statuswatch_tenants_tracked gauge
statuswatch_tenants_tracked 3
# HELP statuswatch_tenants_limit Configured cap on tenant slots (tenant.max_tenants).
# TYPE statuswatch_tenants_limit gauge
statuswatch_tenants_limit 10000
# HELP statuswatch_tenant_overflow_total Requests counted as __overflow__ because the tenant cap was reached or the tenant is not on the allowlist.
# TYPE statuswatch_tenant_overflow_total counter
statuswatch_tenant_overflow_total 0
# HELP statuswatch_route_responses_total Responses sent to clients by route (the matching template of route_tally.routes, else the path normalized, or __other__ past route_tally.max_routes), class of the real code (1xx..5xx, or "other") and origin; no tenant label.
# TYPE statuswatch_route_responses_total counter
statuswatch_route_responses_total{route="__other__",class="2xx",origin="upstream"} 3
statuswatch_route_responses_total{route="__other__",class="4xx",origin="upstream"} 2
statuswatch_route_responses_total{route="__other__",class="other",origin="upstream"} 1
statuswatch_route_responses_total{route="__other__",class="5xx",origin="proxy"} 2
statuswatch_route_responses_total{route="GET /api/v2/customers/{id}",class="2xx",origin="upstream"} 3
statuswatch_route_responses_total{route="GET /api/v2/nowhere/{id}",class="4xx",origin="upstream"} 1
# HELP statuswatch_spike_active 1 while a spike of the signal is active; tenant="__all__" is the overall series.
# TYPE statuswatch_spike_active gauge
statuswatch_spike_active{signal="5xx",tenant="__all__"} 0
statuswatch_spike_active{signal="suspended",tenant="__all__"} 0
# HELP statuswatch_signal_ratio The detector's inputs: the signal's share of requests in the short window and its long-run baseline.
# TYPE statuswatch_signal_ratio gauge
statuswatch_signal_ratio{signal="5xx",tenant="__all__",window="short"} 0.16666666666666666
statuswatch_signal_ratio{signal="5xx",tenant="__all__",window="baseline"} 0
statuswatch_signal_ratio{signal="suspended",tenant="__all__",window="short"} 0.08333333333333333
statuswatch_signal_ratio{signal="suspended",tenant="__all__",window="baseline"} 0
# HELP statuswatch_spikes_total Spike onsets; tenant="__all__" is always present, a tenant's series starts at its first onset.
# TYPE statuswatch_spikes_total counter
statuswatch_spikes_total{signal="5xx",tenant="__all__"} 0
statuswatch_spikes_total{signal="suspended",tenant="__all__"} 0
# HELP statuswatch_tenant_suspended 1 while the tenant's latest answer was one of the suspended signal's codes (451 by default).
# TYPE statuswatch_tenant_suspended gauge
statuswatch_tenant_suspended{tenant="we\"ird\\name"} 1
# HELP statuswatch_suspensions_total Tenant transitions into the suspended state (the first suspended answer after another).
# TYPE statuswatch_suspensions_total counter
statuswatch_suspensions_total 1
# HELP statuswatch_status_code_info The catalog of documented status codes, for legends via joins.
# TYPE statuswatch_status_code_info gauge
statuswatch_status_code_info{code="200",reason="OK",meaning="the request succeeded"} 1
statuswatch_status_code_info{code="201",reason="Created",meaning="the request succeeded and created a resource"} 1
statuswatch_status_code_info{code="400",reason="Bad Request",meaning="malformed or invalid input, or the request breaks a business rule"} 1
statuswatch_status_code_info{code="401",reason="Unauthorized",meaning="credentials missing or wrong"} 1
statuswatch_status_code_info{code="402",reason="Payment Required",meaning="the studio's subscription is past due, or its trial has ended"} 1
statuswatch_status_code_info{code="403",reason="Forbidden",meaning="authenticated, but not allowed to do this"} 1
statuswatch_status_code_info{code="404",reason="Not Found",meaning="no such endpoint or resource"} 1
statuswatch_status_code_info{code="409",reason="Conflict",meaning="clashes with the resource's current state, e.g. a duplicate"} 1
statuswatch_status_code_info{code="451",reason="Unavailable For Legal Reasons",meaning="the studio's subscription is suspended over a suspected terms-of-service violation"} 1
statuswatch_status_code_info{code="500",reason="Internal Server Error",meaning="an unexpected failure in the API"} 1
statuswatch_status_code_info{code="503",reason="Service Unavailable",meaning="the API is overloaded or in maintenance, usually briefly"} 1
# HELP statuswatch_build_info Build information.
# TYPE statuswatch_build_info gauge
statuswatch_build_info{version="{VERSION}"} 1
# HELP statuswatch_config_reloads_total Configuration reloads (SIGHUP) by result.
# TYPE statuswatch_config_reloads_total counter
statuswatch_config_reloads_total{result="success"} 1
statuswatch_config_reloads_total{result="failure"} 0
# HELP statuswatch_connections_open Client connections open, per listener.
# TYPE statuswatch_connections_open gauge
statuswatch_connections_open{listener="proxy"} 0
statuswatch_connections_open{listener="admin"} 0
# HELP statuswatch_connections_limit Most client connections open at once (proxy.max_connections, admin.max_connections).
# TYPE statuswatch_connections_limit gauge
statuswatch_connections_limit{listener="proxy"} 4096
statuswatch_connections_limit{listener="admin"} 64
# HELP statuswatch_connections_refused_total Client connections closed at once because the listener was at its limit.
# TYPE statuswatch_connections_refused_total counter
statuswatch_connections_refused_total{listener="proxy"} 0
statuswatch_connections_refused_total{listener="admin"} 0
# HELP statuswatch_connections_head_timeouts_total Client connections closed because a request head did not arrive within proxy.client_header_timeout.
# TYPE statuswatch_connections_head_timeouts_total counter
statuswatch_connections_head_timeouts_total{listener="proxy"} 0
statuswatch_connections_head_timeouts_total{listener="admin"} 0
"##;

/// The per-tenant latency families of the known state in each mode: what
/// lies between the process-wide duration histogram and the upstream errors.
#[test]
fn tenant_latency_families_per_mode() {
    let part = |mode: &str| {
        let mut out = String::new();
        render(&known_state(mode), &mut out);
        check_strictly(&out);
        let start = out
            .find("# HELP statuswatch_upstream_errors_total")
            .unwrap();
        let from = out[..start]
            .rfind("statuswatch_request_duration_seconds_count")
            .unwrap();
        let from = from + out[from..].find('\n').unwrap() + 1;
        let mut lines: Vec<String> = out[from..start].lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(part("off"), Vec::<String>::new());
    // inkhouse: 1.5 s and 4 s; we"ird\name: 7 ms and 120 ms; __none__: 1 ms
    assert_eq!(
        part("slow"),
        [
            "# HELP statuswatch_tenant_latency_objective_seconds tenant.latency_objective: a response slower than this counts in statuswatch_tenant_slow_requests_total.",
            "# HELP statuswatch_tenant_slow_requests_total Responses per tenant that took longer than tenant.latency_objective (client-observed, as statuswatch_request_duration_seconds); a tenant's series starts with its first slow response. Divide by statuswatch_responses_total for the slow share.",
            "# TYPE statuswatch_tenant_latency_objective_seconds gauge",
            "# TYPE statuswatch_tenant_slow_requests_total counter",
            "statuswatch_tenant_latency_objective_seconds 0.5",
            "statuswatch_tenant_slow_requests_total{tenant=\"inkhouse\"} 2",
        ]
    );
    assert_eq!(
        part("summary"),
        [
            "# HELP statuswatch_tenant_request_duration_seconds Client-observed request duration by tenant: sum and count only (tenant.latency = \"summary\").",
            "# TYPE statuswatch_tenant_request_duration_seconds summary",
            "statuswatch_tenant_request_duration_seconds_count{tenant=\"__none__\"} 1",
            "statuswatch_tenant_request_duration_seconds_count{tenant=\"inkhouse\"} 9",
            "statuswatch_tenant_request_duration_seconds_count{tenant=\"we\\\"ird\\\\name\"} 2",
            "statuswatch_tenant_request_duration_seconds_sum{tenant=\"__none__\"} 0.001",
            "statuswatch_tenant_request_duration_seconds_sum{tenant=\"inkhouse\"} 5.546",
            "statuswatch_tenant_request_duration_seconds_sum{tenant=\"we\\\"ird\\\\name\"} 0.127",
        ]
    );
    let histogram = part("histogram");
    assert_eq!(histogram.len(), 2 + 3 * 8, "{histogram:#?}");
    // everything else is the same in every mode
    let rest = |mode: &str| {
        let mut out = String::new();
        render(&known_state(mode), &mut out);
        out.lines()
            .filter(|l| {
                !l.contains("tenant_request_duration")
                    && !l.contains("tenant_slow")
                    && !l.contains("latency_objective")
            })
            .filter(|l| !l.starts_with("process_") && !l.starts_with("statuswatch_series "))
            .filter(|l| !l.starts_with("# HELP process_") && !l.starts_with("# TYPE process_"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let off = rest("off");
    for mode in ["slow", "summary", "histogram"] {
        assert_eq!(rest(mode), off, "{mode}");
    }
}

/// Every family the exposition writes is in [`super::names::FAMILIES`], and
/// every family there is written in some mode.
#[test]
fn names_cover_every_family() {
    let mut written = std::collections::BTreeSet::new();
    for mode in crate::config::LatencyMode::NAMES {
        let mut out = String::new();
        render(&known_state(mode), &mut out);
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                if !name.starts_with("process_") {
                    assert!(
                        super::names::FAMILIES.contains(&name.as_str()),
                        "{name} is not in names::FAMILIES"
                    );
                    written.insert(name);
                }
            }
        }
    }
    for f in super::names::FAMILIES {
        assert!(written.contains(f), "{f} is never written");
    }
}
