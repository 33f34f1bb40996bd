//! Per-tenant latency end to end: requests through the real binary, read back
//! from `/metrics` as `statuswatch_tenant_request_duration_seconds`, with the
//! series following the tenant's slot (present while tracked, gone once the
//! slot is reclaimed).

mod common;

use std::time::Duration;

use common::*;

const M: &str = "statuswatch_tenant_request_duration_seconds";

fn bucket(m: &Metrics, tenant: &str, le: &str) -> f64 {
    m.val(&format!("{M}_bucket"), &[("tenant", tenant), ("le", le)])
}

#[test]
fn latency_series_per_tenant_in_seconds() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "[tenant]\nidle_ttl = \"2s\"\n");
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
    let sw = Statuswatch::start(dead, "");
    for _ in 0..3 {
        let r = get(sw.proxy, "/x", &[("X-Tenant-Name", "blackcat")]).unwrap();
        assert_eq!(r.status, 502);
    }
    let m = sw.metrics();
    assert_eq!(m.val(&format!("{M}_count"), &[("tenant", "blackcat")]), 3.0);
    assert_eq!(bucket(&m, "blackcat", "+Inf"), 3.0);
}
