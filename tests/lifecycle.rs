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
