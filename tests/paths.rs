//! The two request paths (see src/forward.rs): plain HTTP/1 requests are
//! served by the direct path, anything else is handed to pingora-proxy with
//! the bytes already read. These tests mix them on one connection, pipeline
//! them, and check that what reaches the upstream and the client is the same
//! either way, and that every request is counted once.

mod common;

use std::time::Duration;

use common::*;

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).to_string()
}

#[test]
fn both_paths_on_one_keep_alive_connection() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let mut c = KeepAlive::connect(sw.proxy);
    // plain: the direct path
    c.send(b"GET /status/200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: a\r\n\r\n")
        .unwrap();
    let first = c.read(false).unwrap();
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, &b"{\"ok\":true}"[..])
    );
    // chunked upload: handed to pingora-proxy, bytes as read
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .unwrap();
    let echoed = c.read(false).unwrap();
    assert_eq!(
        (echoed.status, text(&echoed).as_str()),
        (200, "hello world")
    );
    // and the connection still serves plain requests afterwards
    c.send(b"GET /status/201 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: a\r\n\r\n")
        .unwrap();
    assert_eq!(c.read(false).unwrap().status, 201);
    // a small body with a length stays on the direct path
    c.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: a\r\nContent-Length: 4\r\n\r\nbody")
        .unwrap();
    let put = c.read(false).unwrap();
    assert_eq!(text(&put), "body");
    let m = sw.metrics();
    assert_eq!(m.responses("a", "200", "2xx", "upstream"), Some(3.0));
    assert_eq!(m.responses("a", "201", "2xx", "upstream"), Some(1.0));
    assert_eq!(m.sum("statuswatch_responses_total", &[]), 4.0);
}

#[test]
fn pipelined_requests_of_both_kinds_are_answered_in_order() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0]] {
        let reqs: [&[u8]; 3] = [
            b"GET /status/404 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: p\r\n\r\n",
            // nominates a field: pingora-proxy strips it, so not plain
            b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: p\r\nConnection: x-secret\r\nX-Secret: s\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: p\r\nContent-Length: 3\r\n\r\nabc",
        ];
        let mut c = KeepAlive::connect(sw.proxy);
        let all: Vec<u8> = order.iter().flat_map(|i| reqs[*i].to_vec()).collect();
        c.send(&all).unwrap();
        for i in order {
            let resp = c.read(false).unwrap();
            match i {
                0 => assert_eq!(resp.status, 404),
                1 => {
                    assert_eq!(resp.status, 200);
                    assert!(!text(&resp).contains("x-secret"), "{}", text(&resp));
                }
                _ => assert_eq!(text(&resp), "abc"),
            }
        }
    }
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "p")]),
        9.0
    );
}

#[test]
fn hop_by_hop_fields_never_reach_the_upstream() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let cases: [&[(&str, &str)]; 4] = [
        &[("Connection", "keep-alive")],
        &[("Keep-Alive", "timeout=5"), ("TE", "trailers")],
        &[
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic eA=="),
        ],
        &[("Connection", "close, x-hop"), ("X-Hop", "1")],
    ];
    for headers in cases {
        let resp = get(sw.proxy, "/headers", headers).unwrap();
        let seen = text(&resp);
        for bad in ["connection:", "keep-alive:", "te:", "proxy-", "x-hop:"] {
            assert!(!seen.contains(bad), "{bad} reached the upstream: {seen}");
        }
        assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    }
}

#[test]
fn unframed_response_is_chunked_and_the_client_connection_kept() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    let mut c = KeepAlive::connect(sw.proxy);
    c.send(b"GET /unframed HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = c.read(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(text(&resp), "until close");
    c.send(b"HEAD /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = c.read(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("11"));
    c.send(b"GET /status/503 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(c.read(false).unwrap().status, 503);
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("code", "200")]),
        2.0
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("code", "503")]),
        1.0
    );
}

#[test]
fn upstream_failures_on_the_direct_path_are_the_proxys_answers() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    // a response cut mid-body: the client sees the status line and a short body
    let mut c = KeepAlive::connect(sw.proxy);
    c.send(b"GET /reset-mid HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: f\r\n\r\n")
        .unwrap();
    let _ = c.read(false);
    // a malformed response head: 502 from the proxy
    let bad = get(sw.proxy, "/malformed", &[("X-Tenant-Name", "f")]).unwrap();
    assert_eq!(bad.status, 502);
    let m = sw.metrics();
    assert_eq!(m.responses("f", "200", "2xx", "upstream"), Some(1.0));
    assert_eq!(m.responses("f", "undocumented", "5xx", "proxy"), Some(1.0));
}

#[test]
fn a_client_connection_keeps_its_upstream_connection_while_it_is_good() {
    // The direct path holds the upstream connection a client connection's
    // last request used (src/forward.rs, `Pinned`). Each step below fails
    // if one of its safeguards is missing.
    let up = Upstream::start();
    let sw = Statuswatch::start_env(up.addr, &[("STATUSWATCH__PROXY__IDLE_TIMEOUT", "1s")]);
    let opened = || up.connections.load(std::sync::atomic::Ordering::Relaxed);
    let t = [("X-Tenant-Name", "pin")];

    // Back-to-back requests on one client connection: one upstream connection.
    let mut c = KeepAlive::connect(sw.proxy);
    for _ in 0..5 {
        assert_eq!(c.get("/status/200", &t).unwrap().status, 200);
    }
    assert_eq!(opened(), 1);

    // The client leaves: its upstream connection goes back to the pool, and
    // the next client connection takes it.
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = KeepAlive::connect(sw.proxy);
    assert_eq!(c.get("/status/201", &t).unwrap().status, 201);
    assert_eq!(opened(), 1, "the first client's connection was not pooled");

    // The upstream closes the held connection while the client is idle: a
    // POST (never retried) must not be sent on it.
    assert_eq!(c.get("/close", &t).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(200));
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: pin\r\nContent-Length: 4\r\n\r\nbody",
    )
    .unwrap();
    let posted = c.read(false).unwrap();
    assert_eq!((posted.status, text(&posted).as_str()), (200, "body"));
    assert_eq!(opened(), 2);

    // Idle past proxy.idle_timeout (1s): closed, not reused, as the pool would.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(c.get("/status/200", &t).unwrap().status, 200);
    assert_eq!(
        opened(),
        3,
        "a connection idle past idle_timeout was reused"
    );

    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_upstream_errors_total", &[]),
        0.0,
        "{}",
        m.text
    );
    assert_eq!(m.responses("pin", "200", "2xx", "upstream"), Some(8.0));
}
