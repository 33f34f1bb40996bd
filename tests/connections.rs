//! Connection-level behaviour: idle and head deadlines, connection caps and
//! floods on both listeners (memory and fds come back), and exact counts for
//! the awkward cases: WebSocket upgrades, pipelined requests, duplicate
//! tenant headers, and `/readyz` during a drain.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn proxy_extra(extra: &str) -> impl Fn(SocketAddr, SocketAddr, SocketAddr) -> String + '_ {
    move |proxy, admin, up| {
        format!(
            "[proxy]\nlisten = \"{proxy}\"\nupstream = \"{up}\"\nthreads = 2\ngrace_period = \"10s\"\n{extra}\n\n[admin]\nlisten = \"{admin}\"\n"
        )
    }
}

fn start(up: SocketAddr, proxy_keys: &str, admin_keys: &str) -> Statuswatch {
    let (proxy, admin) = (free_addr(), free_addr());
    let toml = format!(
        "{}{admin_keys}\n",
        proxy_extra(proxy_keys)(proxy, admin, up)
    );
    Statuswatch::start_with(&toml, proxy, admin, &[])
}

/// Whether the peer closed the connection within `within` (EOF or reset).
fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn idle_and_head_deadlines_close_connections() {
    let up = Upstream::start();
    let sw = start(
        up.addr,
        "client_idle_timeout = \"2s\"\nclient_header_timeout = \"1s\"",
        "",
    );

    // Never sends a byte: closed after the idle timeout, not before.
    let mut silent = TcpStream::connect(sw.proxy).unwrap();
    // After one request, idle: closed after the idle timeout too (pingora
    // would keep it forever once the client said "keep-alive").
    let mut after_one = TcpStream::connect(sw.proxy).unwrap();
    after_one
        .write_all(b"GET /status/200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: idle\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut BufReader::new(after_one.try_clone().unwrap()), false).unwrap();
    assert_eq!(resp.status, 200);
    let t0 = Instant::now();
    assert!(!closed_within(&mut silent, Duration::from_millis(1200)));
    assert!(closed_within(&mut silent, Duration::from_secs(4)));
    assert!(closed_within(&mut after_one, Duration::from_secs(4)));
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Slowloris: a byte every 250 ms keeps every single read under the idle
    // timeout, but the whole head must arrive within 1 s of its first byte.
    let mut slow = TcpStream::connect(sw.proxy).unwrap();
    let head = b"GET /status/200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: slow\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n";
    let t0 = Instant::now();
    let mut cut = false;
    for b in head.iter() {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        if t0.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    assert!(cut || closed_within(&mut slow, Duration::from_secs(1)));
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "slow head held the connection for {:?}",
        t0.elapsed()
    );

    // A slow *body* is not a slow head: a 1 s deadline does not cut it.
    let mut upload = TcpStream::connect(sw.proxy).unwrap();
    upload
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: upload\r\nContent-Length: 8\r\n\r\n",
        )
        .unwrap();
    for b in b"abcdefgh" {
        std::thread::sleep(Duration::from_millis(250));
        upload.write_all(&[*b]).unwrap();
    }
    let resp = read_response(&mut BufReader::new(upload), false).unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abcdefgh"[..]));

    let m = sw.metrics();
    assert_eq!(
        m.val(
            "statuswatch_connections_head_timeouts_total",
            &[("listener", "proxy")]
        ),
        1.0,
        "{}",
        m.text
    );
    // Nothing was answered to the slow head, so nothing is tallied for it.
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "slow")]),
        0.0
    );
}

#[test]
fn connection_cap_refuses_new_connections_and_keeps_serving_open_ones() {
    let up = Upstream::start();
    let sw = start(up.addr, "max_connections = 20", "max_connections = 4");
    let mut ka = KeepAlive::connect(sw.proxy);
    assert_eq!(
        ka.get("/status/200", &[("X-Tenant-Name", "a")])
            .unwrap()
            .status,
        200
    );
    let mut admin_ka = KeepAlive::connect(sw.admin);
    assert_eq!(admin_ka.get("/metrics", &[]).unwrap().status, 200);

    // Fill both listeners with idle connections that have sent one byte.
    let mut hogs = Vec::new();
    for addr in [sw.proxy, sw.admin] {
        for _ in 0..40 {
            let mut c = TcpStream::connect(addr).unwrap();
            let _ = c.write_all(b"G");
            hogs.push(c);
        }
    }
    eventually(Duration::from_secs(5), "refusals counted", || {
        let m = sw.metrics_now_with(&mut admin_ka);
        m.val(
            "statuswatch_connections_refused_total",
            &[("listener", "proxy")],
        ) >= 20.0
            && m.val(
                "statuswatch_connections_refused_total",
                &[("listener", "admin")],
            ) >= 36.0
    });
    // The connections already open keep being served.
    for _ in 0..5 {
        assert_eq!(
            ka.get("/status/201", &[("X-Tenant-Name", "a")])
                .unwrap()
                .status,
            201
        );
    }
    let m = sw.metrics_now_with(&mut admin_ka);
    assert_eq!(
        m.val("statuswatch_connections_open", &[("listener", "proxy")]),
        20.0
    );
    assert_eq!(
        m.val("statuswatch_connections_limit", &[("listener", "admin")]),
        4.0
    );
    // Refusals are logged at most once a second, not once per connection.
    let lines = sw.stderr().matches("connection limit reached").count();
    assert!(
        (1..=6).contains(&lines),
        "{lines} log lines:\n{}",
        sw.stderr()
    );

    // Once the hogs leave, new connections are accepted again.
    drop(hogs);
    eventually(Duration::from_secs(5), "new connections accepted", || {
        get(sw.proxy, "/status/200", &[("X-Tenant-Name", "a")]).is_ok_and(|r| r.status == 200)
    });
}

trait ScrapeOn {
    fn metrics_now_with(&self, conn: &mut KeepAlive) -> Metrics;
}

impl ScrapeOn for Statuswatch {
    /// Scrape over an already-open admin connection (new ones may be refused).
    fn metrics_now_with(&self, conn: &mut KeepAlive) -> Metrics {
        let r = conn.get("/metrics", &[]).expect("scrape");
        assert_eq!(r.status, 200);
        Metrics::parse(&String::from_utf8_lossy(&r.body))
    }
}

/// The normal client of the flood test gets its answer.
fn assert_served(client: &mut KeepAlive) {
    let r = client.get("/status/200", &[("X-Tenant-Name", "warm")]);
    assert_eq!(r.expect("normal client answered").status, 200);
}

/// With the default limits, 10,000 slow-header connections (and a few
/// thousand idle ones on the admin listener) stay within a 256 MiB sidecar,
/// a normal client keeps being served, and memory and fds come back.
#[test]
fn connection_floods_stay_bounded_and_memory_comes_back() {
    // 12,000 client sockets here and up to 4,096 + 64 in the child: raise the
    // soft fd limit to the hard one (the child inherits it).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 16_384,
        "the flood test needs at least 16384 file descriptors (hard limit {})",
        lim.rlim_max
    );
    let up = Upstream::start();
    // Default limits and deadlines; only the addresses differ.
    let sw = start(up.addr, "", "");
    let pid = sw.pid();
    let mut client = KeepAlive::connect(sw.proxy);
    let mut scraper = KeepAlive::connect(sw.admin);
    for _ in 0..200 {
        assert_served(&mut client);
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = rss_kib(pid);
    let idle_fds = fd_count(pid);

    let mut flood = Vec::with_capacity(12_000);
    let partial = b"GET /status/200 HTTP/1.1\r\nHost: flood\r\nX-Tenant-Name: flood\r\nX-Slow: ";
    for i in 0..10_000 {
        match TcpStream::connect(sw.proxy) {
            Ok(mut c) => {
                let _ = c.write_all(partial);
                flood.push(c);
            }
            Err(e) => panic!("connect {i}: {e}"),
        }
    }
    for _ in 0..2_000 {
        if let Ok(c) = TcpStream::connect(sw.admin) {
            flood.push(c);
        }
    }
    // The normal client is served throughout.
    for _ in 0..20 {
        assert_served(&mut client);
    }
    let m = sw.metrics_now_with(&mut scraper);
    let open = m.val("statuswatch_connections_open", &[("listener", "proxy")]);
    let refused = m.val(
        "statuswatch_connections_refused_total",
        &[("listener", "proxy")],
    );
    let peak_during = rss_kib(pid);
    eprintln!(
        "flood: idle RSS {idle_rss} KiB, during {peak_during} KiB, open {open}, refused {refused}"
    );
    assert!(open <= 4096.0, "{open} open");
    // Wait out the head deadline: the slow heads are closed by the proxy.
    eventually(Duration::from_secs(20), "slow heads closed", || {
        let m = sw.metrics_now_with(&mut scraper);
        m.val(
            "statuswatch_connections_head_timeouts_total",
            &[("listener", "proxy")],
        ) >= open - 2.0
    });
    assert_served(&mut client);
    let peak = status_kib(pid, "VmHWM");
    assert!(peak > 0, "VmHWM was not read from /proc/{pid}/status");
    drop(flood);

    // Memory and fds come back, while the normal client goes on as a live
    // sidecar's traffic does. (Memory a worker thread freed is handed back
    // when that thread next runs; a fully idle process keeps ~2-3x idle
    // until then. See docs/operations.md, "Memory after a flood".)
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = rss_kib(pid);
    let mut seen = Vec::new();
    while after > 2 * idle_rss {
        assert!(
            Instant::now() < deadline,
            "RSS not back within 2x idle ({idle_rss} KiB) in 60 s; RSS seen (KiB): {seen:?}"
        );
        for _ in 0..200 {
            assert_served(&mut client);
        }
        std::thread::sleep(Duration::from_millis(50));
        after = rss_kib(pid);
        if seen.last() != Some(&after) && seen.len() < 40 {
            seen.push(after);
        }
    }
    eventually(Duration::from_secs(10), "fds back", || {
        fd_count(pid) <= idle_fds + 8
    });
    eprintln!(
        "flood: idle RSS {idle_rss} KiB, peak {peak} KiB, after {after} KiB, fds {idle_fds} -> {}",
        fd_count(pid)
    );
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB is over a 256 MiB sidecar limit"
    );
    assert_served(&mut client);
}

#[test]
fn websocket_upgrade_is_counted_once_as_101() {
    let up = Upstream::start();
    let sw = start(up.addr, "", "");
    let mut conn = TcpStream::connect(sw.proxy).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let resp = read_response(&mut r, true).unwrap();
    assert_eq!(resp.status, 101);
    for msg in [&b"hello"[..], b"frames both ways"] {
        conn.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        r.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    // Mid-session nothing is counted yet; it is counted when it ends.
    drop(r);
    drop(conn);
    eventually(Duration::from_secs(5), "upgrade counted", || {
        sw.metrics()
            .sum("statuswatch_responses_total", &[("tenant", "ws")])
            == 1.0
    });
    let m = sw.metrics();
    assert_eq!(
        m.responses("ws", "undocumented", "1xx", "upstream"),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "statuswatch_undocumented_responses_total",
            &[("code", "101")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("class", "4xx")]),
        0.0,
        "no false 499: {}",
        m.text
    );
}

#[test]
fn pipelined_requests_are_all_served_and_counted() {
    let up = Upstream::start();
    let sw = start(up.addr, "", "");
    let mut conn = TcpStream::connect(sw.proxy).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut batch = Vec::new();
    for code in [200, 201, 404, 409, 200] {
        batch.extend_from_slice(
            format!("GET /status/{code} HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: pipe\r\n\r\n")
                .as_bytes(),
        );
    }
    // One POST with a body in the middle of the pipeline, then one more GET.
    batch.extend_from_slice(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: pipe\r\nContent-Length: 4\r\n\r\nbody",
    );
    batch.extend_from_slice(b"GET /status/201 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: pipe\r\n\r\n");
    conn.write_all(&batch).unwrap();
    let mut r = BufReader::new(conn);
    let statuses: Vec<u16> = (0..7)
        .map(|_| {
            read_response(&mut r, false)
                .expect("pipelined response")
                .status
        })
        .collect();
    assert_eq!(statuses, vec![200, 201, 404, 409, 200, 200, 201]);
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "pipe")]),
        7.0,
        "{}",
        m.text
    );
    for (code, n) in [("200", 3.0), ("201", 2.0), ("404", 1.0), ("409", 1.0)] {
        assert_eq!(
            m.sum(
                "statuswatch_responses_total",
                &[("tenant", "pipe"), ("code", code)]
            ),
            n,
            "code {code}"
        );
    }
}

#[test]
fn duplicate_tenant_headers_count_as_invalid() {
    let up = Upstream::start();
    let sw = start(up.addr, "", "");
    let r = get(
        sw.proxy,
        "/status/200",
        &[("X-Tenant-Name", "inkhouse"), ("X-Tenant-Name", "blackcat")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "still proxied");
    let m = sw.metrics();
    assert_eq!(
        m.sum("statuswatch_responses_total", &[("tenant", "__invalid__")]),
        1.0
    );
    for t in ["inkhouse", "blackcat"] {
        assert_eq!(m.sum("statuswatch_responses_total", &[("tenant", t)]), 0.0);
    }
}

#[test]
fn readyz_is_503_and_metrics_stay_up_during_a_drain() {
    let up = Upstream::start();
    let mut sw = start(up.addr, "", "");
    let proxy = sw.proxy;
    let slow = std::thread::spawn(move || {
        get(proxy, "/slow/2500", &[("X-Tenant-Name", "drain")]).map(|r| r.status)
    });
    eventually(Duration::from_secs(5), "request in flight", || {
        sw.metrics_now().get("statuswatch_requests_in_flight", &[]) == Some(1.0)
    });
    sw.signal(libc::SIGTERM);
    eventually(Duration::from_secs(3), "/readyz says draining", || {
        get(sw.admin, "/readyz", &[]).is_ok_and(|r| r.status == 503)
    });
    let r = get(sw.admin, "/readyz", &[]).unwrap();
    assert_eq!(String::from_utf8_lossy(&r.body).trim(), "draining");
    // The last scrape still works while the request drains.
    let m = sw.metrics_now();
    assert_eq!(m.get("statuswatch_requests_in_flight", &[]), Some(1.0));
    assert_eq!(slow.join().unwrap().unwrap(), 200);
    // And a scrape right after the last request sees the final total: the
    // process lingers until nothing has been in flight for a moment.
    // (The client has its answer a moment before the tally: wait for that.)
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let last = get(sw.admin, "/metrics", &[]).expect("a last scrape before exit");
        let m = Metrics::parse(&String::from_utf8_lossy(&last.body));
        if m.get("statuswatch_requests_in_flight", &[]) == Some(0.0) {
            assert_eq!(
                m.sum("statuswatch_responses_total", &[("tenant", "drain")]),
                1.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "request never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = sw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}
