//! Per-tenant latency end to end, in each `tenant.latency` mode: requests
//! through the real binary, read back from `/metrics`, with the series
//! following the tenant's slot (present while tracked, gone once the slot is
//! reclaimed), and a reload switching the mode (a bad value keeps the old).
//!
//! * `"histogram"`: `statuswatch_tenant_request_duration_seconds` buckets,
//!   `_sum` and `_count`;
//! * `"summary"`: `_sum` and `_count` only;
//! * `"slow"` (default): `statuswatch_tenant_slow_requests_total` for tenants
//!   with a response slower than `tenant.latency_objective`;
//! * `"off"`: none of them.

mod common;

use std::time::Duration;

use common::*;

const M: &str = "statuswatch_tenant_request_duration_seconds";
const SLOW: &str = "statuswatch_tenant_slow_requests_total";
const OBJECTIVE: &str = "statuswatch_tenant_latency_objective_seconds";

/// Series of every per-tenant latency family, by family.
fn latency_series(m: &Metrics) -> [usize; 4] {
    [
        m.count(&format!("{M}_bucket")),
        m.count(&format!("{M}_sum")) + m.count(&format!("{M}_count")),
        m.count(SLOW),
        m.count(OBJECTIVE),
    ]
}

/// `statuswatch_series` is the number of series in the very scrape.
fn assert_series_gauge(m: &Metrics) {
    let counted = m
        .text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(m.get("statuswatch_series", &[]), Some(counted as f64));
}

/// Two fast requests and one of 250 ms for inkhouse, one fast one for
/// blackcat and one without a tenant.
fn traffic(sw: &Statuswatch) {
    for (path, tenant) in [
        ("/status/200", Some("inkhouse")),
        ("/slow/250", Some("inkhouse")),
        ("/status/404", Some("inkhouse")),
        ("/status/200", Some("blackcat")),
        ("/status/200", None),
    ] {
        let h: Vec<(&str, &str)> = tenant.map(|t| ("X-Tenant-Name", t)).into_iter().collect();
        assert!(get(sw.proxy, path, &h).unwrap().status < 500);
    }
}

fn bucket(m: &Metrics, tenant: &str, le: &str) -> f64 {
    m.val(&format!("{M}_bucket"), &[("tenant", tenant), ("le", le)])
}

#[test]
fn latency_series_per_tenant_in_seconds() {
    let up = Upstream::start();
    let sw = Statuswatch::start(
        up.addr,
        "[tenant]\nidle_ttl = \"2s\"\nlatency = \"histogram\"\n",
    );
    // one fast and one 120 ms request for inkhouse, one fast one without a tenant
    let fast = get(sw.proxy, "/status/200", &[("X-Tenant-Name", "inkhouse")]).unwrap();
    assert_eq!(fast.status, 200);
    let slow = get(sw.proxy, "/slow/120", &[("X-Tenant-Name", "InkHouse")]).unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(get(sw.proxy, "/status/404", &[]).unwrap().status, 404);

    let m = sw.metrics();
    assert!(
        m.text.contains(&format!("# TYPE {M} histogram\n")),
        "{}",
        m.text
    );
    assert_eq!(m.count(SLOW), 0, "one latency family per mode");
    assert_series_gauge(&m);
    let count = m.val(&format!("{M}_count"), &[("tenant", "inkhouse")]);
    assert_eq!(count, 2.0, "{}", m.text);
    assert_eq!(
        count,
        m.sum("statuswatch_responses_total", &[("tenant", "inkhouse")]),
        "one observation per counted response"
    );
    assert_eq!(bucket(&m, "inkhouse", "+Inf"), 2.0);
    // the 120 ms request is above 0.1 s and at most 0.5 s... unless the
    // machine stalled, so only the bounds that cannot be wrong are exact
    assert!(bucket(&m, "inkhouse", "0.1") <= 1.0);
    assert_eq!(bucket(&m, "inkhouse", "2.5"), 2.0);
    let sum = m.val(&format!("{M}_sum"), &[("tenant", "inkhouse")]);
    assert!(
        (0.12..2.5).contains(&sum),
        "sum is in seconds and includes the 120 ms request: {sum}"
    );
    // cumulative along le
    let les = ["0.005", "0.025", "0.1", "0.5", "2.5", "+Inf"];
    for w in les.windows(2) {
        assert!(bucket(&m, "inkhouse", w[0]) <= bucket(&m, "inkhouse", w[1]));
    }
    // exactly these buckets, and reserved tenants only with traffic
    assert_eq!(
        m.matching(&format!("{M}_bucket"), &[("tenant", "inkhouse")])
            .count(),
        les.len()
    );
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "__none__")]), 1.0);
    assert_eq!(
        m.get(&format!("{M}_count"), &[("tenant", "__overflow__")]),
        None
    );

    // the slot is reclaimed after idle_ttl: its latency series leave with it
    eventually(Duration::from_secs(15), "inkhouse reclaimed", || {
        sw.metrics().get("statuswatch_tenants_tracked", &[]) == Some(0.0)
    });
    let m = sw.metrics();
    assert_eq!(
        m.get(&format!("{M}_count"), &[("tenant", "inkhouse")]),
        None
    );
    assert!(!m.text.contains("tenant=\"inkhouse\""));
    // and come back from zero
    assert_eq!(
        get(sw.proxy, "/status/201", &[("X-Tenant-Name", "inkhouse")])
            .unwrap()
            .status,
        201
    );
    let m = sw.metrics();
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "inkhouse")]), 1.0);
}

#[test]
fn proxy_made_answers_are_timed_for_their_tenant() {
    // nothing listens upstream: every answer is a 502 made by the proxy
    let dead = free_addr();
    let sw = Statuswatch::start_env(dead, &[("STATUSWATCH__TENANT__LATENCY", "histogram")]);
    for _ in 0..3 {
        let r = get(sw.proxy, "/x", &[("X-Tenant-Name", "blackcat")]).unwrap();
        assert_eq!(r.status, 502);
    }
    let m = sw.metrics();
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "blackcat")]), 3.0);
    assert_eq!(bucket(&m, "blackcat", "+Inf"), 3.0);
}

#[test]
fn slow_mode_counts_responses_over_the_objective() {
    let up = Upstream::start();
    // the default mode; an objective the 250 ms request is above
    let sw = Statuswatch::start_env(
        up.addr,
        &[("STATUSWATCH__TENANT__LATENCY_OBJECTIVE", "100ms")],
    );
    traffic(&sw);
    let m = sw.metrics();
    assert!(
        m.text.contains(&format!("# TYPE {SLOW} counter\n")),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(SLOW, &[("tenant", "inkhouse")]),
        Some(1.0),
        "{}",
        m.text
    );
    // no slow response yet: no series (the dashboards read the share as 0)
    assert_eq!(m.get(SLOW, &[("tenant", "blackcat")]), None);
    assert_eq!(m.get(SLOW, &[("tenant", "__none__")]), None);
    assert_eq!(m.get(OBJECTIVE, &[]), Some(0.1));
    // one series for the one tenant with a slow response, and the objective
    assert_eq!(latency_series(&m), [0, 0, 1, 1], "{}", m.text);
    // the share's denominator is the tenant's responses
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "inkhouse")]),
        3.0
    );
    // no per-tenant spike counter for tenants that never spiked
    assert_eq!(m.count("statuswatch_spikes_total"), 2, "{}", m.text);
    assert_series_gauge(&m);
}

#[test]
fn summary_mode_exports_sum_and_count_only() {
    let up = Upstream::start();
    let sw = Statuswatch::start_env(up.addr, &[("STATUSWATCH__TENANT__LATENCY", "summary")]);
    traffic(&sw);
    let m = sw.metrics();
    assert!(
        m.text.contains(&format!("# TYPE {M} summary\n")),
        "{}",
        m.text
    );
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "inkhouse")]), 3.0);
    let sum = m.val(&format!("{M}_sum"), &[("tenant", "inkhouse")]);
    assert!((0.25..2.5).contains(&sum), "{sum}");
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "blackcat")]), 1.0);
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "__none__")]), 1.0);
    // 2 series for each of inkhouse, blackcat and __none__; no buckets
    assert_eq!(latency_series(&m), [0, 6, 0, 0], "{}", m.text);
    assert_series_gauge(&m);
}

#[test]
fn off_mode_exports_no_per_tenant_latency() {
    let up = Upstream::start();
    let sw = Statuswatch::start_env(up.addr, &[("STATUSWATCH__TENANT__LATENCY", "off")]);
    traffic(&sw);
    let m = sw.metrics();
    assert_eq!(latency_series(&m), [0, 0, 0, 0], "{}", m.text);
    assert!(!m.text.contains("statuswatch_tenant_request_duration"));
    // the tallies and the process-wide histogram are unchanged
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "inkhouse")]),
        3.0
    );
    assert_eq!(
        m.sum("statuswatch_request_duration_seconds_count", &[]),
        5.0
    );
    assert_series_gauge(&m);
}

#[test]
fn a_reload_switches_the_mode_and_a_bad_value_keeps_the_old_one() {
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    let cfg = |tenant: &str| {
        config_toml(
            proxy,
            admin,
            up.addr,
            &format!("[tenant]\n{tenant}\n\n[reload]\nwatch_interval = \"0s\"\n"),
        )
    };
    let sw = Statuswatch::start_with(&cfg("latency_objective = \"100ms\""), proxy, admin, &[]);
    traffic(&sw);
    let reloads = |result: &str| {
        sw.metrics_now()
            .val("statuswatch_config_reloads_total", &[("result", result)])
    };
    // a bad mode is refused naming the key; the slow counter keeps going
    std::fs::write(&sw.config_path, cfg("latency = \"percentiles\"")).unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "the bad reload", || {
        reloads("failure") == 1.0
    });
    assert!(
        sw.stderr().contains("tenant.latency"),
        "the error names the key:\n{}",
        sw.stderr()
    );
    assert_eq!(
        get(sw.proxy, "/slow/150", &[("X-Tenant-Name", "inkhouse")])
            .unwrap()
            .status,
        200
    );
    let m = sw.metrics();
    assert_eq!(
        m.get(SLOW, &[("tenant", "inkhouse")]),
        Some(2.0),
        "{}",
        m.text
    );
    assert_eq!(m.get(OBJECTIVE, &[]), Some(0.1));
    // a good one switches to the histogram, which counted all along
    std::fs::write(&sw.config_path, cfg("latency = \"histogram\"")).unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "the good reload", || {
        reloads("success") == 1.0
    });
    let m = sw.metrics();
    assert_eq!(m.count(SLOW), 0, "{}", m.text);
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "inkhouse")]), 4.0);
    assert_eq!(
        m.val(
            &format!("{M}_bucket"),
            &[("tenant", "inkhouse"), ("le", "0.1")]
        ),
        2.0
    );
    assert_eq!(latency_series(&m), [3 * 6, 3 * 2, 0, 0], "{}", m.text);
}
