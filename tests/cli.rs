//! `statuswatch check` and start-up failures: bad input stops the process
//! with one clear message that names the key.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn shipped_config_is_valid() {
    let out = Command::new(bin())
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/statuswatch.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config ok"));
    // and no file at all uses the same built-in defaults
    let out = Command::new(bin()).arg("check").output().unwrap();
    assert!(out.status.success());
}

#[test]
fn bad_configs_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[proxy]\nlisten = \"not-an-address\"\n", "listen"),
        ("[proxy]\nupstream = \"http://api:80/\"\n", "proxy.upstream"),
        ("[proxy]\nupstream = \"no-port\"\n", "proxy.upstream"),
        ("[proxy]\nconnect_timeout = \"fast\"\n", "connect_timeout"),
        ("[proxy]\nread_timeout = \"0s\"\n", "proxy.read_timeout"),
        ("[proxy]\nbogus = 1\n", "bogus"),
        ("[tenant]\npattern = \"[unclosed\"\n", "tenant.pattern"),
        ("[tenant]\nmax_tenants = \"lots\"\n", "max_tenants"),
        ("[tenant]\nmax_tenants = 0\n", "tenant.max_tenants"),
        ("[tenant]\nsources = [\"cookie\"]\n", "tenant.sources[0]"),
        ("[tenant]\nheader = \"bad header\"\n", "tenant.header"),
        ("[tenant]\nlatency = \"quantiles\"\n", "tenant.latency"),
        (
            "[tenant]\nlatency_objective = \"0ms\"\n",
            "tenant.latency_objective",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[detector]\nfloor = 2.0\n", "detector.floor"),
        (
            "[signals.teapot]\ncodes = [299]\n",
            "signals.teapot.codes[0]",
        ),
        (
            "[signals.teapot]\nclasses = [\"6xx\"]\n",
            "signals.teapot.classes[0]",
        ),
        (
            "[[catalog.codes]]\ncode = 999\nreason = \"x\"\n",
            "catalog.codes[0].code",
        ),
        ("[admin]\nallow = [\"300.1.1.1\"]\n", "admin.allow[0]"),
        ("this is not toml", "c.toml"),
    ];
    for (toml, key) in cases {
        let (ok, text) = check_config(toml);
        assert!(!ok, "accepted bad config {toml:?}");
        assert!(
            text.contains(key),
            "error for {toml:?} does not name {key}: {text}"
        );
        assert_eq!(
            text.trim().lines().count(),
            1,
            "one clear message, got: {text}"
        );
    }
}

/// The totals `check` prints: (worst case, expected) series per pod.
fn totals(text: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("total per pod"))
        .unwrap_or_else(|| panic!("no totals in {text}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.replace(',', "").parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn check_prints_the_series_a_config_costs() {
    let file = "[log]\nformat = \"text\"\n";
    let (ok, text) = check_config(file);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "series per pod at 10,000 tenants (tenant.max_tenants), tenant.latency = \"slow\""
        ),
        "{text}"
    );
    assert!(
        text.contains("statuswatch_tenant_slow_requests_total"),
        "{text}"
    );
    assert!(text.contains("Prometheus memory per pod"), "{text}");
    let (worst, expected) = totals(&text);
    // the default: about 4 series per tenant expected (3 responses + 1 slow)
    assert!((40_000..41_000).contains(&expected), "{text}");
    assert!(worst > 10 * expected / 2, "{text}");
    let mut by_mode = Vec::new();
    for mode in ["off", "slow", "summary", "histogram"] {
        let (ok, text) = check_config_env(file, &[("STATUSWATCH__TENANT__LATENCY", mode)]);
        assert!(ok, "{text}");
        by_mode.push(totals(&text).1);
    }
    // 0, 1, 2 and 8 series per tenant (and the objective gauge with "slow")
    assert_eq!(
        by_mode
            .windows(2)
            .map(|w| w[1] as i64 - w[0] as i64)
            .collect::<Vec<_>>(),
        [10_001, 9_999, 60_000]
    );
    // proportional to the cap
    let (ok, text) = check_config_env(file, &[("STATUSWATCH__TENANT__MAX_TENANTS", "1000")]);
    assert!(ok, "{text}");
    assert!((4_000..4_200).contains(&totals(&text).1), "{text}");
    // a bad mode stops check naming the key
    let (ok, text) = check_config_env(file, &[("STATUSWATCH__TENANT__LATENCY", "p99")]);
    assert!(!ok);
    assert!(text.starts_with("statuswatch: tenant.latency: "), "{text}");
}

#[test]
fn bad_env_override_names_the_key() {
    // (An empty file is refused on its own; see unusable_files_get_one_clear_line.)
    let file = "[log]\nformat = \"text\"\n";
    let (ok, text) = check_config_env(file, &[("STATUSWATCH__TENANT__MAX_TENANTS", "plenty")]);
    assert!(!ok);
    assert!(text.contains("max_tenants"), "{text}");
    let (ok, text) = check_config_env(file, &[("STATUSWATCH__PROXY__NOPE", "1")]);
    assert!(!ok);
    assert!(text.contains("nope"), "{text}");
}

#[test]
fn missing_file_is_an_error() {
    let out = Command::new(bin())
        .args(["check", "--config", "/definitely/not/here.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/not/here.toml"));
}

#[test]
fn unusable_files_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let comments = dir.path().join("comments.toml");
    std::fs::write(&comments, "# nothing but a comment\n\n   \n# and another\n").unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let missing = dir.path().join("missing.toml");
    let cases = [
        ("/dev/zero".into(), "not a regular file"),
        (dir.path().to_path_buf(), "is a directory"),
        (missing, "no such file"),
        (empty, "no settings"),
        (comments, "no settings"),
        (big, "larger than 1024 KiB"),
    ];
    for (path, reason) in cases {
        let started = std::time::Instant::now();
        let out = Command::new(bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path:?} accepted");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path:?} took {:?}",
            started.elapsed()
        );
        assert!(
            err.contains(&*path.to_string_lossy()) && err.contains(reason),
            "{path:?}: expected the path and {reason:?}, got: {err}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line for {path:?}: {err}"
        );
        // The reason is said once, not repeated by an error chain.
        assert_eq!(err.matches(reason).count(), 1, "{err}");
    }
}

#[test]
fn busy_port_stops_startup_naming_the_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_toml(taken, free_addr(), free_addr(), "")).unwrap();
    let out = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proxy.listen"), "{err}");
}

/// `check` and `rules` build a config through the same `Live::build`, so they
/// accept exactly the same configs: a set of good and bad ones, both ways.
#[test]
fn check_and_rules_accept_the_same_configs() {
    let cases: &[&str] = &[
        "[log]\nformat = \"text\"\n",
        "[prometheus]\nscrape_interval = \"1s\"\nevaluation_interval = \"1s\"\n[detector]\nshort_window = \"10s\"\nbaseline_half_life = \"1m\"\nclear_after = \"10s\"\n",
        "[signals.payment_required]\ncodes = [402]\n",
        "[signals.mixed]\ncodes = [451, 502]\nclasses = [\"5xx\"]\n",
        "[signals.\"5xx\"]\nenabled = false\n",
        // a code outside the catalog: no code label for the rules, refused by both
        "[signals.teapot]\ncodes = [418]\n",
        "[signals.teapot]\ncodes = [299]\n",
        "[detector]\ncold_min_requests = 2\n",
        "[detector]\nrelearn_after = \"1s\"\n",
        "[detector]\nshort_window = \"10m\"\nbaseline_half_life = \"1h\"\n",
        "[detector]\nbaseline_half_life = \"10s\"\n",
        "[tenant]\npattern = \"[unclosed\"\n",
        "[proxy]\nupstream = \"no-port\"\n",
        "[admin]\nallow = [\"300.1.1.1\"]\n",
        "[[catalog.codes]]\ncode = 999\nreason = \"x\"\n",
        "[signals.bad]\nseverity = \"page\"\n",
        // the rules' windows could not hold 4 scrapes
        "[prometheus]\nscrape_interval = \"2m\"\n",
        "[prometheus]\nscrape_interval = \"1m\"\n[detector]\nbaseline_half_life = \"5m\"\n",
        "[detector]\nshort_window = \"10s\"\nbaseline_half_life = \"1m\"\n",
    ];
    let mut accepted = 0;
    for toml in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let run = |cmd: &str| {
            let out = Command::new(bin())
                .arg(cmd)
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        };
        let (check_ok, check_err) = run("check");
        let (rules_ok, rules_err) = run("rules");
        assert_eq!(
            check_ok, rules_ok,
            "{toml:?}: check {check_ok} ({check_err}) but rules {rules_ok} ({rules_err})"
        );
        if !check_ok {
            assert_eq!(check_err, rules_err, "{toml:?}: the same error");
        }
        accepted += usize::from(check_ok);
    }
    assert_eq!(accepted, 5, "the first five configs are good, the rest bad");
}

/// `rules --scrape-interval/--evaluation-interval` override the
/// `[prometheus]` keys: the windows follow, and an interval the rules cannot
/// see with is refused naming the key the flag stands for.
#[test]
fn rules_follow_the_scrape_interval_flag() {
    let rules = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("rules")
            .args(args)
            .env_remove("STATUSWATCH_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = rules(&[]);
    assert!(ok, "{err}");
    assert!(out.contains("increase(statuswatch_responses_total[1m])"));
    let (ok, out, err) = rules(&["--scrape-interval", "60s", "--evaluation-interval", "1m"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("increase(statuswatch_responses_total[4m])"),
        "{out}"
    );
    assert!(!out.contains("[1m]"), "no range shorter than 4 scrapes");
    let (ok, _, err) = rules(&["--scrape-interval", "5m"]);
    assert!(!ok);
    assert!(err.contains("prometheus.scrape_interval"), "{err}");
    let (ok, _, err) = rules(&["--scrape-interval", "soon"]);
    assert!(!ok);
    assert!(err.contains("--scrape-interval"), "{err}");
}

/// A child process killed (and reaped) on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Child {
    Child(
        Command::new(bin())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn statuswatch"),
    )
}

/// Responses tallied per tenant (all codes, classes and origins).
fn by_tenant(sw: &Statuswatch) -> std::collections::BTreeMap<String, f64> {
    let m = sw.metrics_now();
    let mut out = std::collections::BTreeMap::new();
    for (key, v) in m.matching("statuswatch_responses_total", &[]) {
        if let Some(t) = key
            .split("tenant=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            *out.entry(t.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// `demo-traffic` is the compose demo's traffic: started before the proxy
/// (a name, not an address), it waits for it, fills several tenants' series,
/// and reconnects when the proxy restarts.
#[test]
fn demo_traffic_waits_for_the_proxy_and_survives_its_restart() {
    let upstream = free_addr();
    let _up = spawn(&["demo-upstream", "--listen", &upstream.to_string()]);
    let (proxy, admin) = (free_addr(), free_addr());
    let target = format!("localhost:{}", proxy.port());
    let _traffic = spawn(&["demo-traffic", "--target", &target, "--rps", "200"]);
    std::thread::sleep(Duration::from_millis(500));
    let toml = config_toml(proxy, admin, upstream, "");
    let busy = |sw: &Statuswatch| {
        let t = by_tenant(sw);
        t.values().filter(|n| **n >= 5.0).count() >= 4
    };
    let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
    eventually(Duration::from_secs(20), "traffic for 4 tenants", || {
        busy(&sw)
    });
    let inkhouse = by_tenant(&sw).get("inkhouse").copied().unwrap_or(0.0);
    eventually(Duration::from_secs(10), "inkhouse keeps growing", || {
        by_tenant(&sw).get("inkhouse").copied().unwrap_or(0.0) > inkhouse
    });
    drop(sw);
    let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
    eventually(
        Duration::from_secs(20),
        "traffic for 4 tenants after a restart",
        || busy(&sw),
    );
}

#[test]
fn demo_traffic_refuses_a_bad_target_naming_the_flag() {
    for bad in [
        "statuswatch",
        "http://statuswatch:8080",
        "statuswatch:8080/",
        ":8080",
        "statuswatch:0",
        "statuswatch:99999",
        "bad host:8080",
        "::1:8080",
    ] {
        let out = Command::new(bin())
            .args(["demo-traffic", "--target", bad])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted --target {bad:?}");
        assert!(
            text.contains("--target") && text.contains("expected host:port"),
            "--target {bad:?}: {text}"
        );
    }
}
