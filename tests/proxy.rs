//! The real binary in front of a real upstream on loopback, scraped as
//! Prometheus would: exact tallies, proxy-generated answers, bodies, headers.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const DOCUMENTED: [u16; 11] = [200, 201, 400, 401, 402, 403, 404, 409, 451, 500, 503];

fn class_of(code: u16) -> String {
    format!("{}xx", code / 100)
}

#[test]
fn exact_counts_per_label_set() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    // every documented code, twice for inkhouse and once for blackcat
    for code in DOCUMENTED {
        for (tenant, times) in [("inkhouse", 2), ("BlackCat", 1)] {
            for _ in 0..times {
                let r = get(
                    sw.proxy,
                    &format!("/status/{code}"),
                    &[("X-Tenant-Name", tenant), ("X-Api-Key", "k")],
                )
                .unwrap();
                assert_eq!(r.status, code);
            }
        }
    }
    // undocumented codes
    for _ in 0..3 {
        assert_eq!(
            get(sw.proxy, "/status/429", &[("X-Tenant-Name", "inkhouse")])
                .unwrap()
                .status,
            429
        );
    }
    assert_eq!(
        get(sw.proxy, "/status/302", &[("X-Tenant-Name", "inkhouse")])
            .unwrap()
            .status,
        302
    );
    // no tenant, invalid tenant
    assert_eq!(get(sw.proxy, "/status/200", &[]).unwrap().status, 200);
    assert_eq!(get(sw.proxy, "/status/200", &[]).unwrap().status, 200);
    assert_eq!(
        get(
            sw.proxy,
            "/status/404",
            &[("X-Tenant-Name", "not_a_studio!")]
        )
        .unwrap()
        .status,
        404
    );
    assert_eq!(
        get(
            sw.proxy,
            "/status/200",
            &[("X-Tenant-Name", &"x".repeat(200))]
        )
        .unwrap()
        .status,
        200
    );

    let m = sw.metrics();
    let resp = "statuswatch_responses_total";
    for code in DOCUMENTED {
        let c = code.to_string();
        for (tenant, times) in [("inkhouse", 2.0), ("blackcat", 1.0)] {
            assert_eq!(
                m.responses(tenant, &c, &class_of(code), "upstream"),
                Some(times),
                "{tenant} {code}\n{}",
                m.text
            );
        }
    }
    assert_eq!(
        m.responses("inkhouse", "undocumented", "4xx", "upstream"),
        Some(3.0)
    );
    assert_eq!(
        m.responses("inkhouse", "undocumented", "3xx", "upstream"),
        Some(1.0)
    );
    assert_eq!(m.responses("__none__", "200", "2xx", "upstream"), Some(2.0));
    assert_eq!(
        m.responses("__invalid__", "404", "4xx", "upstream"),
        Some(1.0)
    );
    assert_eq!(
        m.responses("__invalid__", "200", "2xx", "upstream"),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "statuswatch_undocumented_responses_total",
            &[("code", "429")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.get(
            "statuswatch_undocumented_responses_total",
            &[("code", "302")]
        ),
        Some(1.0)
    );
    // total = every request sent, nothing else
    assert_eq!(m.sum(resp, &[]), (DOCUMENTED.len() * 3 + 4 + 4) as f64);
    assert_eq!(m.sum(resp, &[("origin", "proxy")]), 0.0);
    assert_eq!(m.get("statuswatch_tenants_tracked", &[]), Some(2.0));
    assert_eq!(m.get("statuswatch_tenants_limit", &[]), Some(10000.0));
    assert_eq!(m.get("statuswatch_requests_in_flight", &[]), Some(0.0));
    // the histogram saw every request
    let count = m.sum("statuswatch_request_duration_seconds_count", &[]);
    assert_eq!(count, m.sum(resp, &[]));
    assert!(m
        .get(
            "statuswatch_request_duration_seconds_bucket",
            &[("class", "2xx"), ("origin", "upstream"), ("le", "+Inf")]
        )
        .is_some());
    // the latest answer for inkhouse was not 451; blackcat's neither
    assert_eq!(m.count("statuswatch_tenant_suspended"), 0);
    assert_eq!(m.get("statuswatch_suspensions_total", &[]), Some(2.0));
    assert_eq!(
        m.get("statuswatch_status_code_info", &[("code", "451"), ("reason", "Unavailable For Legal Reasons"), ("meaning", "the studio's subscription is suspended over a suspected terms-of-service violation")]),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "statuswatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "statuswatch_spike_active",
            &[("signal", "5xx"), ("tenant", "__all__")]
        ),
        Some(0.0)
    );
}

#[test]
fn suspended_tenant_gauge_follows_latest_answer() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let t = [("X-Tenant-Name", "shadyink")];
    get(sw.proxy, "/status/200", &t).unwrap();
    get(sw.proxy, "/status/451", &t).unwrap();
    get(sw.proxy, "/status/451", &t).unwrap();
    let m = sw.metrics();
    assert_eq!(
        m.get("statuswatch_tenant_suspended", &[("tenant", "shadyink")]),
        Some(1.0)
    );
    assert_eq!(m.get("statuswatch_suspensions_total", &[]), Some(1.0));
    get(sw.proxy, "/status/200", &t).unwrap();
    let m = sw.metrics();
    assert_eq!(
        m.get("statuswatch_tenant_suspended", &[("tenant", "shadyink")]),
        None
    );
    get(sw.proxy, "/status/451", &t).unwrap();
    assert_eq!(
        sw.metrics().get("statuswatch_suspensions_total", &[]),
        Some(2.0)
    );
}

/// The suspended state follows the `suspended` signal's codes: pointed at
/// 403, a tenant answered 403 is suspended and one answered 451 is not.
#[test]
fn suspended_state_follows_the_signals_codes() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "[signals.suspended]\ncodes = [403]\n");
    get(sw.proxy, "/status/403", &[("X-Tenant-Name", "locked")]).unwrap();
    get(sw.proxy, "/status/451", &[("X-Tenant-Name", "legal")]).unwrap();
    let m = sw.metrics();
    assert_eq!(
        m.get("statuswatch_tenant_suspended", &[("tenant", "locked")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("statuswatch_tenant_suspended", &[("tenant", "legal")]),
        None
    );
    assert_eq!(m.get("statuswatch_suspensions_total", &[]), Some(1.0));
    // both answers are still tallied by their own code
    assert_eq!(
        m.sum(
            "statuswatch_responses_total",
            &[("tenant", "legal"), ("code", "451")]
        ),
        1.0
    );
}

#[test]
fn upstream_down_is_502_from_the_proxy() {
    let dead = free_addr(); // nothing listens here
    let sw = Statuswatch::start(dead, "");
    for _ in 0..3 {
        let r = get(
            sw.proxy,
            "/api/v2/customers",
            &[("X-Tenant-Name", "inkhouse")],
        )
        .unwrap();
        assert_eq!(r.status, 502);
    }
    let m = sw.metrics();
    assert_proxy_answers(&m, "inkhouse", "502", "connect_refused", 3.0);
    assert_eq!(
        m.get(
            "statuswatch_upstream_errors_total",
            &[("kind", "read_timeout")]
        ),
        Some(0.0)
    );
}

#[test]
fn slow_upstream_is_504_from_the_proxy() {
    let up = Upstream::start();
    let sw = Statuswatch::start_env(up.addr, &[("STATUSWATCH__PROXY__READ_TIMEOUT", "300ms")]);
    let t0 = std::time::Instant::now();
    let r = get(sw.proxy, "/slow/3000", &[("X-Tenant-Name", "inkhouse")]).unwrap();
    assert_eq!(r.status, 504);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // a fast request still works
    assert_eq!(
        get(sw.proxy, "/status/200", &[("X-Tenant-Name", "inkhouse")])
            .unwrap()
            .status,
        200
    );
    let m = sw.metrics();
    assert_proxy_answers(&m, "inkhouse", "504", "read_timeout", 1.0);
}

#[test]
fn upstream_5xx_stays_upstream_origin() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    assert_eq!(
        get(sw.proxy, "/status/502", &[("X-Tenant-Name", "a")])
            .unwrap()
            .status,
        502
    );
    let m = sw.metrics();
    assert_eq!(
        m.responses("a", "undocumented", "5xx", "upstream"),
        Some(1.0)
    );
    assert_eq!(m.sum("statuswatch_upstream_errors_total", &[]), 0.0);
}

#[test]
fn bodies_pass_through_byte_for_byte() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    // large upload with content-length
    let body = pattern(5 * 1024 * 1024 + 13);
    let r = request(sw.proxy, "POST", "/echo", &[("X-Tenant-Name", "a")], &body).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "upload echoed back differs ({} vs {} bytes)",
        r.body.len(),
        body.len()
    );
    // chunked upload
    let conn = TcpStream::connect(sw.proxy).unwrap();
    let mut w = conn.try_clone().unwrap();
    w.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
    let data = pattern(300_000);
    for chunk in data.chunks(70_001) {
        w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        w.write_all(chunk).unwrap();
        w.write_all(b"\r\n").unwrap();
    }
    w.write_all(b"0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(conn), false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "chunked upload differs");
    // large chunked download
    let r = get(sw.proxy, "/bytes/8388617", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 8_388_617);
    assert!(r.body == pattern(8_388_617), "download differs");
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("code", "200")]),
        3.0
    );
}

#[test]
fn forwarding_headers_and_transparency() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let r = get(
        sw.proxy,
        "/headers",
        &[("X-Forwarded-For", "203.0.113.7"), ("X-Custom", "kept")],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto: http"), "{text}");
    assert!(text.contains("x-custom: kept"), "{text}");
    let r = get(sw.proxy, "/headers", &[("X-Forwarded-Proto", "https")]).unwrap();
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("x-forwarded-proto: https") && !text.contains("x-forwarded-proto: http\n"),
        "{text}"
    );
    // what the upstream sent is what the client gets
    let r = get(sw.proxy, "/status/409", &[]).unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(r.body, b"{\"ok\":true}");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
}

#[test]
fn upstream_connections_are_reused() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    for _ in 0..50 {
        assert_eq!(get(sw.proxy, "/status/200", &[]).unwrap().status, 200);
    }
    let conns = up.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        conns <= 4,
        "{conns} upstream connections for 50 sequential requests"
    );
}

#[test]
fn client_gone_before_response_counts_499() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    {
        let mut c = TcpStream::connect(sw.proxy).unwrap();
        c.write_all(b"GET /slow/800 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: quitter\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
    } // dropped: the client leaves
    eventually(Duration::from_secs(5), "499 tallied", || {
        sw.metrics()
            .responses("quitter", "undocumented", "4xx", "proxy")
            == Some(1.0)
    });
    let m = sw.metrics();
    assert_eq!(
        m.get(
            "statuswatch_undocumented_responses_total",
            &[("code", "499")]
        ),
        Some(1.0)
    );
    assert_eq!(m.get("statuswatch_requests_in_flight", &[]), Some(0.0));
}

#[test]
fn connect_method_is_refused_and_counted() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let out = raw(
        sw.proxy,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(
        out.starts_with(b"HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let m = sw.metrics();
    assert_eq!(
        m.responses("__none__", "undocumented", "4xx", "proxy"),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn env_overrides_config_file() {
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    let dead = free_addr();
    let sw = Statuswatch::start_with(
        &config_toml(proxy, admin, dead, ""),
        proxy,
        admin,
        &[
            ("STATUSWATCH__PROXY__UPSTREAM", &up.addr.to_string()),
            ("STATUSWATCH__TENANT__HEADER", "X-Studio"),
            ("STATUSWATCH__TENANT__MAX_TENANTS", "7"),
        ],
    );
    assert_eq!(
        get(sw.proxy, "/status/201", &[("X-Studio", "envstudio")])
            .unwrap()
            .status,
        201
    );
    let m = sw.metrics();
    assert_eq!(
        m.responses("envstudio", "201", "2xx", "upstream"),
        Some(1.0)
    );
    assert_eq!(m.get("statuswatch_tenants_limit", &[]), Some(7.0));
}

#[test]
fn admin_endpoints() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    assert_eq!(get(sw.admin, "/healthz", &[]).unwrap().status, 200);
    assert_eq!(get(sw.admin, "/readyz", &[]).unwrap().status, 200);
    assert_eq!(get(sw.admin, "/nope", &[]).unwrap().status, 404);
    let r = get(sw.admin, "/metrics", &[]).unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    // every line is a comment or a sample with a numeric value
    let text = String::from_utf8(r.body).unwrap();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let v = line.rsplit_once(' ').map(|(_, v)| v).unwrap_or("x");
        assert!(
            v.parse::<f64>().is_ok() || v == "+Inf" || v == "NaN",
            "bad line {line:?}"
        );
    }
    assert!(text.contains("process_resident_memory_bytes"));
}

#[test]
fn admin_token_and_allowlist() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    drop(sw);
    let (proxy, admin) = (free_addr(), free_addr());
    let toml = format!(
        "[proxy]\nlisten = \"{proxy}\"\nupstream = \"{}\"\n\n[admin]\nlisten = \"{admin}\"\nbearer_token = \"s3cret-token\"\nallow = [\"127.0.0.0/8\"]\n",
        up.addr
    );
    let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
    assert_eq!(get(sw.admin, "/metrics", &[]).unwrap().status, 401);
    assert_eq!(
        get(sw.admin, "/metrics", &[("Authorization", "Bearer wrong")])
            .unwrap()
            .status,
        401
    );
    let r = get(
        sw.admin,
        "/metrics",
        &[("Authorization", "Bearer s3cret-token")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("s3cret-token"));
    // probes stay open for the kubelet
    assert_eq!(get(sw.admin, "/readyz", &[]).unwrap().status, 200);
    drop(sw);
    let (proxy, admin) = (free_addr(), free_addr());
    let toml = format!(
        "[proxy]\nlisten = \"{proxy}\"\nupstream = \"{}\"\n\n[admin]\nlisten = \"{admin}\"\nallow = [\"10.0.0.0/8\"]\n",
        up.addr
    );
    let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
    assert_eq!(get(sw.admin, "/metrics", &[]).unwrap().status, 403);
}

#[test]
fn unparseable_requests_are_counted_as_proxy_400() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let out = raw(
        sw.proxy,
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let out = raw(
        sw.proxy,
        b"\x16\x03\x01garbage-not-http\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let sent_400 = usize::from(out.starts_with(b"HTTP/1.1 400")) + 1;
    // a good request on a keep-alive connection, then a bad one on the same connection
    let mut c = KeepAlive::connect(sw.proxy);
    assert_eq!(
        c.get("/status/200", &[("X-Tenant-Name", "a")])
            .unwrap()
            .status,
        200
    );
    let m = sw.metrics();
    assert_eq!(
        m.responses("__none__", "400", "4xx", "proxy"),
        Some(sent_400 as f64),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[]),
        sent_400 as f64 + 1.0
    );
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
}
