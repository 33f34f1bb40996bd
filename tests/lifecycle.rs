//! Signals: SIGTERM drains in-flight requests and exits 0; SIGHUP reloads,
//! keeping counters and rejecting a bad file; secrets never reach logs or
//! /metrics.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn sigterm_drains_in_flight_requests() {
    let up = Upstream::start();
    let mut sw = Statuswatch::start(up.addr, "");
    let proxy = sw.proxy;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                get(
                    proxy,
                    "/slow/1500",
                    &[("X-Tenant-Name", &format!("drain{i}"))],
                )
                .map(|r| r.status)
            })
        })
        .collect();
    eventually(Duration::from_secs(5), "4 requests in flight", || {
        sw.metrics_now().get("statuswatch_requests_in_flight", &[]) == Some(4.0)
    });
    sw.signal(libc::SIGTERM);
    for c in clients {
        assert_eq!(c.join().unwrap().expect("request completed"), 200);
    }
    let status = sw
        .wait_exit(Duration::from_secs(10))
        .expect("exited after draining");
    assert!(status.success(), "{status}");
    let log = sw.stderr();
    assert!(log.contains("drained"), "{log}");
    // every drained request was tallied before exit
    assert!(log.contains("responses_total=4"), "{log}");
}

/// What one idle keep-alive client saw when it used its connection again
/// after SIGTERM.
#[derive(Debug, PartialEq)]
enum AfterDrain {
    /// The connection was already closed, cleanly, when the client looked.
    Closed,
    /// Sent; answered in full, with `Connection: close`.
    Answered,
    /// Sent; the connection closed cleanly without an answer.
    ClosedAfterSend,
    /// A reset, or anything else: the failure this test is about.
    Failed(String),
}

fn use_again(mut conn: std::net::TcpStream) -> AfterDrain {
    use std::io::{Read, Write};
    conn.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let peeked = conn.peek(&mut byte);
    conn.set_nonblocking(false).unwrap();
    match peeked {
        Ok(0) => return AfterDrain::Closed,
        Ok(_) => return AfterDrain::Failed("unasked bytes".into()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => return AfterDrain::Failed(format!("peek: {e}")),
    }
    if let Err(e) =
        conn.write_all(b"GET /status/200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: idle\r\n\r\n")
    {
        return AfterDrain::Failed(format!("send: {e}"));
    }
    // Read to the end by hand: a reset must show as an error, not as a
    // short response.
    let mut got = Vec::new();
    if let Err(e) = conn.read_to_end(&mut got) {
        return AfterDrain::Failed(format!("read: {e} after {} bytes", got.len()));
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    if got.is_empty() {
        AfterDrain::ClosedAfterSend
    } else if text.starts_with("http/1.1 200") && text.contains("\r\nconnection: close\r\n") {
        AfterDrain::Answered
    } else {
        AfterDrain::Failed(format!("answered {text:?}"))
    }
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_cleanly() {
    let up = Upstream::start();
    let mut sw = Statuswatch::start(up.addr, "");
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut c = KeepAlive::connect(sw.proxy);
        let r = c.get("/status/200", &[("X-Tenant-Name", "idle")]).unwrap();
        assert_eq!(
            (r.status, r.header("connection")),
            (200, Some("keep-alive"))
        );
        clients.push(c);
    }
    // One request in flight: the drain answers it, with `Connection: close`.
    let mut busy = KeepAlive::connect(sw.proxy);
    busy.send(b"GET /slow/1200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: busy\r\n\r\n")
        .unwrap();
    eventually(Duration::from_secs(5), "1 request in flight", || {
        sw.metrics_now().get("statuswatch_requests_in_flight", &[]) == Some(1.0)
    });
    sw.signal(libc::SIGTERM);
    let started = std::time::Instant::now();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let conn = c.stream().try_clone().unwrap();
            std::thread::spawn(move || {
                // Spread over the first second after SIGTERM.
                std::thread::sleep(Duration::from_millis(20 + 10 * i as u64));
                let seen = use_again(conn);
                drop(c);
                (i, seen)
            })
        })
        .collect();
    let seen: Vec<(usize, AfterDrain)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy_answer = busy.read(false).expect("the in-flight request is answered");
    assert_eq!(
        (busy_answer.status, busy_answer.header("connection")),
        (200, Some("close"))
    );
    let failed: Vec<_> = seen
        .iter()
        .filter(|(_, s)| matches!(s, AfterDrain::Failed(_)))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    // "At once": every client that looked 200 ms or more after SIGTERM found
    // its connection already closed (not left open until the process exits).
    let late: Vec<_> = seen
        .iter()
        .filter(|(i, s)| *i >= 20 && *s != AfterDrain::Closed)
        .collect();
    assert!(late.is_empty(), "{late:?}");
    let status = sw
        .wait_exit(Duration::from_secs(10))
        .expect("exited after draining");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn sighup_reload_applies_and_keeps_counters() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    for _ in 0..3 {
        get(sw.proxy, "/status/429", &[("X-Tenant-Name", "a")]).unwrap();
    }
    let m = sw.metrics();
    assert_eq!(
        m.responses("a", "undocumented", "4xx", "upstream"),
        Some(3.0)
    );

    // a bad file is rejected: old config keeps serving
    let good = std::fs::read_to_string(&sw.config_path).unwrap();
    std::fs::write(
        &sw.config_path,
        format!("{good}\n[tenant]\npattern = \"[broken\"\n"),
    )
    .unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "failed reload counted", || {
        sw.metrics()
            .get("statuswatch_config_reloads_total", &[("result", "failure")])
            == Some(1.0)
    });
    assert!(sw.stderr().contains("tenant.pattern"), "{}", sw.stderr());
    assert_eq!(
        get(sw.proxy, "/status/200", &[("X-Tenant-Name", "a")])
            .unwrap()
            .status,
        200
    );

    // a good file that documents 429 and adds a signal applies live
    std::fs::write(
        &sw.config_path,
        format!(
            "{good}\n[signals.rate_limited]\ncodes = [429]\n\n[[catalog.codes]]\ncode = 200\nreason = \"OK\"\n\n[[catalog.codes]]\ncode = 429\nreason = \"Too Many Requests\"\nmeaning = \"rate limited\"\n"
        ),
    )
    .unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "successful reload counted", || {
        sw.metrics()
            .get("statuswatch_config_reloads_total", &[("result", "success")])
            == Some(1.0)
    });
    let m = sw.metrics();
    // the same cells now read as a documented code; nothing was reset
    assert_eq!(
        m.responses("a", "429", "4xx", "upstream"),
        Some(3.0),
        "{}",
        m.text
    );
    assert_eq!(m.responses("a", "200", "2xx", "upstream"), Some(1.0));
    assert_eq!(
        m.get(
            "statuswatch_status_code_info",
            &[
                ("code", "429"),
                ("reason", "Too Many Requests"),
                ("meaning", "rate limited")
            ]
        ),
        Some(1.0)
    );
    eventually(Duration::from_secs(5), "new signal exported", || {
        sw.metrics()
            .get(
                "statuswatch_spike_active",
                &[("signal", "rate_limited"), ("tenant", "__all__")],
            )
            .is_some()
    });
}

#[test]
fn secrets_never_reach_logs_or_metrics() {
    for format in ["text", "json"] {
        let up = Upstream::start();
        let dead = free_addr();
        let (proxy, admin) = (free_addr(), free_addr());
        let toml = config_toml(
            proxy,
            admin,
            dead,
            &format!("[log]\nformat = \"{format}\"\nlevel = \"debug\"\n"),
        );
        let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
        let key = "sk_live_SUPERSECRETKEY_0123456789";
        let bearer = "Bearer eyJhbGciOiJIUzI1NiJ9.TOPSECRETPAYLOAD";
        for path in ["/api/v2/customers?api_key=QUERYSECRET", "/status/200"] {
            let r = get(
                sw.proxy,
                path,
                &[
                    ("X-Tenant-Name", "inkhouse"),
                    ("X-Api-Key", key),
                    ("Authorization", bearer),
                ],
            )
            .unwrap();
            assert_eq!(r.status, 502);
        }
        let m = sw.metrics();
        drop(up);
        let log = sw.stderr();
        assert!(log.contains("request failed"), "{log}");
        for secret in [
            "SUPERSECRETKEY",
            "TOPSECRETPAYLOAD",
            "eyJhbGciOiJIUzI1NiJ9",
            "QUERYSECRET",
        ] {
            assert!(!log.contains(secret), "{format} log leaks {secret}:\n{log}");
            assert!(!m.text.contains(secret), "metrics leak {secret}");
        }
        // at most the first 8 characters identify the key
        assert!(log.contains("sk?live?"), "{log}");
    }
}

/// Each thread of `pid`: (name, nice value), from /proc.
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name (which may hold spaces): the 17th is nice.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if let Some(nice) = rest.split_whitespace().nth(16).and_then(|v| v.parse().ok()) {
            out.push((name.trim().to_string(), nice));
        }
    }
    out
}

#[test]
fn the_control_thread_yields_to_the_proxy_workers() {
    // The detector's tick walks every tenant; it runs below the workers'
    // priority so a request never waits for it on a shared core.
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    get(sw.proxy, "/status/200", &[]).unwrap();
    let threads = thread_nice(sw.pid());
    let control: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("BG statuswatch"))
        .collect();
    let workers: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("statuswatch pro"))
        .collect();
    assert!(!control.is_empty() && !workers.is_empty(), "{threads:?}");
    assert!(control.iter().all(|(_, nice)| *nice == 10), "{threads:?}");
    assert!(workers.iter().all(|(_, nice)| *nice == 0), "{threads:?}");
}
