//! Tenant attribution under hostile traffic: floods of distinct tenant values
//! stay bounded, idle slots are reclaimed, every source works end to end.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use statuswatch::config::Config;
use statuswatch::state::{Live, Shared};
use statuswatch::status::{self, Origin};

fn own_rss_kib() -> u64 {
    rss_kib(std::process::id())
}

fn tenant_labels(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("statuswatch_responses_total{"))
        .filter_map(|l| l.split("tenant=\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// One million distinct (valid) tenant values through the resolver and the
/// tally in-process: slots, series and memory stay bounded by max_tenants.
#[test]
fn a_million_distinct_tenants_stay_bounded() {
    let mut cfg = Config::defaults().unwrap();
    cfg.tenant.max_tenants = 10_000;
    let shared = Shared::new(Live::build(cfg).unwrap());
    let live = shared.live.load();
    let before = own_rss_kib();
    let cell = status::cell_of(200);
    let mut name = String::new();
    for i in 0..1_000_000u32 {
        name.clear();
        name.push_str("studio-");
        name.push_str(&i.to_string());
        let r = shared.registry.lookup(&live.resolver, name.as_bytes(), 0);
        shared.registry.slot(r).counters.add(Origin::Upstream, cell);
    }
    let after_flood = own_rss_kib();
    let mut out = String::new();
    statuswatch::metrics::render(&shared, &mut out);
    let after_render = own_rss_kib();
    let labels = tenant_labels(&out);
    eprintln!(
        "RSS before {before} KiB, after 1,000,000 distinct tenants {after_flood} KiB, after rendering {after_render} KiB; {} tenant labels, {} bytes of exposition",
        labels.len(),
        out.len()
    );
    assert_eq!(shared.registry.tracked(), 10_000);
    assert_eq!(shared.registry.overflow_total(), 990_000);
    assert!(labels.len() <= 10_000 + 3, "{} tenant labels", labels.len());
    assert!(labels.contains("__overflow__"));
    // every request is still counted: tenants + overflow = requests
    let m = Metrics::parse(&out);
    assert_eq!(m.sum("statuswatch_responses_total", &[]), 1_000_000.0);
    assert_eq!(
        m.responses("__overflow__", "200", "2xx", "upstream"),
        Some(990_000.0)
    );
    // 10k slots of ~1.1 KB each plus the map: far below 64 MiB
    assert!(
        after_render.saturating_sub(before) < 64 * 1024,
        "RSS grew {} KiB",
        after_render - before
    );
}

/// The same through the real binary: distinct tenants on keep-alive
/// connections, a small cap, /metrics bounded, totals exact.
#[test]
fn flood_through_the_binary_is_capped() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "[tenant]\nmax_tenants = 300\n");
    let rss_before = rss_kib(sw.pid());
    let mut c = KeepAlive::connect(sw.proxy);
    let n = 5_000;
    for i in 0..n {
        let t = format!("flood{i}");
        assert_eq!(
            c.get("/status/200", &[("X-Tenant-Name", &t)])
                .unwrap()
                .status,
            200
        );
    }
    // hostile values: control bytes, huge, reserved-looking, non-ASCII
    let hostile: Vec<Vec<u8>> = vec![
        b"__all__".to_vec(),
        b"__none__".to_vec(),
        vec![b'a'; 5000],
        "st\u{fc}dio".as_bytes().to_vec(),
        b"a b".to_vec(),
        b"Upper_Case".to_vec(),
    ];
    for h in &hostile {
        let mut req = b"GET /status/200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: ".to_vec();
        req.extend_from_slice(h);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let out = raw(sw.proxy, &req, Duration::from_secs(5));
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    let m = sw.metrics();
    let labels = tenant_labels(&m.text);
    eprintln!(
        "statuswatch RSS before {rss_before} KiB, after {n} distinct tenants {} KiB; tenant labels {}",
        rss_kib(sw.pid()),
        labels.len()
    );
    assert!(labels.len() <= 300 + 3, "{} tenant labels", labels.len());
    assert_eq!(m.get("statuswatch_tenants_tracked", &[]), Some(300.0));
    assert_eq!(
        m.get("statuswatch_tenant_overflow_total", &[]),
        Some((n - 300) as f64)
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[]),
        (n + hostile.len()) as f64
    );
    // reserved-looking and malformed values are invalid, never labels of their own
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "__invalid__")]),
        hostile.len() as f64
    );
    assert!(!m
        .text
        .contains("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    assert!(
        rss_kib(sw.pid()) < 64 * 1024,
        "RSS {} KiB",
        rss_kib(sw.pid())
    );
}

#[test]
fn idle_tenants_are_reclaimed_and_come_back_fresh() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "[tenant]\nmax_tenants = 2\nidle_ttl = \"2s\"\n");
    let send = |t: &str, n: usize| {
        for _ in 0..n {
            assert_eq!(
                get(sw.proxy, "/status/200", &[("X-Tenant-Name", t)])
                    .unwrap()
                    .status,
                200
            );
        }
    };
    send("alpha", 3);
    send("beta", 2);
    send("gamma", 4); // over the cap
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "alpha")]),
        3.0
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "__overflow__")]),
        4.0
    );
    eventually(Duration::from_secs(15), "idle tenants reclaimed", || {
        sw.metrics().get("statuswatch_tenants_tracked", &[]) == Some(0.0)
    });
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "alpha")]),
        0.0,
        "series gone"
    );
    assert!(!m.text.contains("tenant=\"alpha\""));
    // back again: counters start from zero, and gamma now gets a slot
    send("alpha", 2);
    send("gamma", 1);
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "alpha")]),
        2.0
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "gamma")]),
        1.0
    );
    // reserved slots are never reclaimed: overflow keeps its 4
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "__overflow__")]),
        4.0
    );
    // totals over what is still exported equal the requests since the reclaim plus overflow
    assert_eq!(m.sum("statuswatch_responses_total", &[]), 2.0 + 1.0 + 4.0);
}

#[test]
fn host_path_and_response_header_sources() {
    let up = Upstream::start();
    let sw = Statuswatch::start(
        up.addr,
        "[tenant]\nsources = [\"host\", \"path\", \"header\"]\nhost_suffix = \".rev23.com\"\npath_prefix = \"/t/\"\nresponse_header = \"X-Resolved-Tenant\"\n",
    );
    let r = request(
        sw.proxy,
        "GET",
        "/status/201",
        &[("Host", "MyStudio.rev23.com")],
        b"",
    );
    assert_eq!(r.unwrap().status, 201);
    // Host without the suffix falls through to the path source
    let r = request(sw.proxy, "GET", "/t/pathstudio/../status/200", &[], b"");
    assert!(r.is_ok());
    // the upstream's response header overrides what the request claimed
    assert_eq!(
        get(
            sw.proxy,
            "/tenant/realstudio",
            &[("X-Tenant-Name", "claimed")]
        )
        .unwrap()
        .status,
        200
    );
    let m = sw.metrics();
    assert_eq!(
        m.responses("mystudio", "201", "2xx", "upstream"),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "pathstudio")]),
        1.0
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "realstudio")]),
        1.0
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "claimed")]),
        0.0
    );
}
