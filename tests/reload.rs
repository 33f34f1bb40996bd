//! Reloads that must never hurt: a config file caught half-written (empty,
//! cut at a line, cut mid-line) is refused and the old config keeps serving;
//! a change on disk applies without a signal, in place and through the
//! symlink swap Kubernetes uses for a mounted ConfigMap.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A config with an admin token, an allowlist of networks, a small tenant cap
/// and an explicit upstream: what a partial write could silently undo.
fn guarded_toml(
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    up: std::net::SocketAddr,
    watch: &str,
) -> String {
    format!(
        "[proxy]\nlisten = \"{proxy}\"\nupstream = \"{up}\"\nthreads = 2\ngrace_period = \"10s\"\n\n\
         [reload]\nwatch_interval = \"{watch}\"\n\n\
         [tenant]\nmax_tenants = 50\n\n\
         [admin]\nlisten = \"{admin}\"\nbearer_token = \"s3cret-token\"\nallow = [\"127.0.0.0/8\"]\n"
    )
}

fn scrape(sw: &Statuswatch) -> Metrics {
    let r = get(
        sw.admin,
        "/metrics",
        &[("Authorization", "Bearer s3cret-token")],
    )
    .expect("scrape");
    assert_eq!(r.status, 200);
    Metrics::parse(&String::from_utf8_lossy(&r.body))
}

fn reloads(sw: &Statuswatch, result: &str) -> f64 {
    scrape(sw).val("statuswatch_config_reloads_total", &[("result", result)])
}

/// Write `text` as the config, send SIGHUP, and wait until the `result`
/// counter of `statuswatch_config_reloads_total` reaches `n`.
fn sighup_with(sw: &Statuswatch, text: &str, result: &str, n: f64, what: &str) {
    std::fs::write(&sw.config_path, text).unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), what, || reloads(sw, result) == n);
}

/// The old config is still the one in force.
fn assert_old_config_serves(sw: &Statuswatch, when: &str) {
    let r = get(sw.proxy, "/status/200", &[("X-Tenant-Name", "a")]).unwrap();
    assert_eq!(r.status, 200, "{when}: upstream changed");
    let r = get(sw.admin, "/metrics", &[]).unwrap();
    assert_eq!(r.status, 401, "{when}: /metrics lost its token");
    let m = scrape(sw);
    assert_eq!(
        m.val("statuswatch_tenants_limit", &[]),
        50.0,
        "{when}: tenant cap changed"
    );
}

#[test]
fn sighup_at_every_point_of_a_truncate_then_write_keeps_the_old_config() {
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    // Watching off: each point is tried exactly once, by SIGHUP.
    let full = guarded_toml(proxy, admin, up.addr, "0s");
    let sw = Statuswatch::start_with(&full, proxy, admin, &[]);
    assert_old_config_serves(&sw, "start");

    let cut_at_line = {
        // The [proxy] and [reload] sections only: no [admin], no [tenant].
        let end = full.find("[tenant]").unwrap();
        full[..end].to_string()
    };
    let mid_line = {
        let at = full.find("bearer_token").unwrap() + 17;
        full[..at].to_string()
    };
    let without_upstream = full.replace(&format!("upstream = \"{}\"\n", up.addr), "");
    let points: [(&str, &str); 5] = [
        ("truncated to nothing", ""),
        ("only comments so far", "# statuswatch\n"),
        ("cut at a line boundary", &cut_at_line),
        ("cut mid-line", &mid_line),
        ("upstream line not yet written", &without_upstream),
    ];
    for (n, (when, text)) in points.iter().enumerate() {
        sighup_with(&sw, text, "failure", (n + 1) as f64, when);
        assert_old_config_serves(&sw, when);
    }
    assert_eq!(reloads(&sw, "success"), 0.0);
    let log = sw.stderr();
    assert!(log.contains("no settings"), "{log}");
    assert!(log.contains("likely partial write"), "{log}");
    assert!(!log.contains("s3cret-token"), "the token leaked: {log}");

    // The whole file again, with one deliberate change: applied, and the log
    // says which key changed.
    sighup_with(
        &sw,
        &full.replace("max_tenants = 50", "max_tenants = 60"),
        "success",
        1.0,
        "the full file applies",
    );
    assert_eq!(scrape(&sw).val("statuswatch_tenants_limit", &[]), 60.0);
    let log = sw.stderr();
    assert!(log.contains("tenant.max_tenants: 50 -> 60"), "{log}");

    // Removing the token on purpose (explicitly empty) is allowed, and the
    // log names the key without its value.
    sighup_with(
        &sw,
        &full.replace("bearer_token = \"s3cret-token\"", "bearer_token = \"\""),
        "success",
        2.0,
        "explicit removal applies",
    );
    assert_eq!(get(sw.admin, "/metrics", &[]).unwrap().status, 200);
    let log = sw.stderr();
    assert!(log.contains("admin.bearer_token: (redacted)"), "{log}");
    assert!(!log.contains("s3cret-token"), "the token leaked: {log}");
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn changes_on_disk_apply_without_a_signal() {
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    let full = guarded_toml(proxy, admin, up.addr, "200ms");
    let sw = Statuswatch::start_with(&full, proxy, admin, &[]);

    // Edited in place (truncate + write, as editors and `>` do).
    std::fs::write(
        &sw.config_path,
        full.replace("max_tenants = 50", "max_tenants = 70"),
    )
    .unwrap();
    eventually(Duration::from_secs(5), "in-place edit applied", || {
        reloads(&sw, "success") == 1.0
    });
    assert_eq!(scrape(&sw).val("statuswatch_tenants_limit", &[]), 70.0);

    // A bad edit: rejected once (not once per poll), old config serves.
    std::fs::write(&sw.config_path, format!("{full}\n[tenant]\nbogus = 1\n")).unwrap();
    eventually(Duration::from_secs(5), "bad edit rejected", || {
        reloads(&sw, "failure") == 1.0
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&sw, "failure"), 1.0, "a bad file is tried once");
    assert_eq!(scrape(&sw).val("statuswatch_tenants_limit", &[]), 70.0);
    assert_eq!(
        get(sw.proxy, "/status/200", &[("X-Tenant-Name", "a")])
            .unwrap()
            .status,
        200
    );

    // An atomic replace (write elsewhere, rename over): applied.
    write_atomically(
        &sw.config_path,
        &full.replace("max_tenants = 50", "max_tenants = 80"),
    );
    eventually(Duration::from_secs(5), "atomic replace applied", || {
        reloads(&sw, "success") == 2.0
    });
    assert_eq!(scrape(&sw).val("statuswatch_tenants_limit", &[]), 80.0);
}

#[test]
fn configmap_symlink_swap_applies() {
    // Kubernetes mounts a ConfigMap as
    //   statuswatch.toml -> ..data/statuswatch.toml,  ..data -> ..2026_01_01_v1/
    // and updates it by pointing ..data at a new directory (rename of a link).
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = root.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    let full = guarded_toml(proxy, admin, up.addr, "200ms");
    // allowlist_file belongs to [tenant]: put it right after max_tenants.
    let cfg = |max: u32| {
        full.replace(
            "max_tenants = 50\n",
            &format!(
                "max_tenants = {max}\nallowlist_file = \"{}\"\n",
                root.join("allowlist.txt").display()
            ),
        )
    };
    std::fs::write(v1.join("statuswatch.toml"), cfg(50)).unwrap();
    std::fs::write(v1.join("allowlist.txt"), "inkhouse\n").unwrap();
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/statuswatch.toml", root.join("statuswatch.toml")).unwrap();
    std::os::unix::fs::symlink("..data/allowlist.txt", root.join("allowlist.txt")).unwrap();

    let log = std::fs::File::create(root.join("stderr.log")).unwrap();
    let child = std::process::Command::new(bin())
        .arg("--config")
        .arg(root.join("statuswatch.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut sw = Statuswatch {
        child,
        proxy,
        admin,
        dir: tempfile::tempdir().unwrap(),
        config_path: root.join("statuswatch.toml"),
    };
    sw.wait_ready();
    get(sw.proxy, "/status/200", &[("X-Tenant-Name", "blackcat")]).unwrap();
    eventually(
        Duration::from_secs(5),
        "blackcat is not on the first allowlist",
        || scrape(&sw).sum("statuswatch_responses_total", &[("tenant", "__overflow__")]) == 1.0,
    );

    // The swap: a new directory with a new config and a new allowlist.
    let v2 = root.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("statuswatch.toml"), cfg(90)).unwrap();
    std::fs::write(v2.join("allowlist.txt"), "inkhouse\nblackcat\n").unwrap();
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();

    eventually(Duration::from_secs(5), "the swapped config applies", || {
        reloads(&sw, "success") == 1.0
    });
    assert_eq!(scrape(&sw).val("statuswatch_tenants_limit", &[]), 90.0);
    get(sw.proxy, "/status/200", &[("X-Tenant-Name", "blackcat")]).unwrap();
    // (The client has its answer a moment before the tally.)
    eventually(Duration::from_secs(5), "the new allowlist applies", || {
        scrape(&sw).sum("statuswatch_responses_total", &[("tenant", "blackcat")]) == 1.0
    });

    // Only the allowlist changes (in place): that is a change too.
    std::fs::write(v2.join("allowlist.txt"), "inkhouse\n").unwrap();
    eventually(Duration::from_secs(5), "allowlist edit applies", || {
        reloads(&sw, "success") == 2.0
    });
    get(sw.proxy, "/status/200", &[("X-Tenant-Name", "blackcat")]).unwrap();
    eventually(Duration::from_secs(5), "blackcat folded again", || {
        scrape(&sw).sum("statuswatch_responses_total", &[("tenant", "__overflow__")]) == 2.0
    });
    assert_eq!(
        reloads(&sw, "failure"),
        0.0,
        "{}",
        std::fs::read_to_string(root.join("stderr.log")).unwrap_or_default()
    );
}

#[test]
fn a_reload_to_another_upstream_also_moves_open_client_connections() {
    // A client connection holds the upstream connection its last request
    // used; after a reload its next request must go to the new upstream.
    let (a, b) = (Upstream::start(), Upstream::start());
    let (proxy, admin) = (free_addr(), free_addr());
    let sw = Statuswatch::start_with(&config_toml(proxy, admin, a.addr, ""), proxy, admin, &[]);
    let opened = |u: &Upstream| u.connections.load(std::sync::atomic::Ordering::Relaxed);
    let mut c = KeepAlive::connect(sw.proxy);
    assert_eq!(c.get("/status/200", &[]).unwrap().status, 200);
    std::fs::write(&sw.config_path, config_toml(proxy, admin, b.addr, "")).unwrap();
    sw.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "the reload applied", || {
        sw.metrics_now()
            .val("statuswatch_config_reloads_total", &[("result", "success")])
            == 1.0
    });
    assert_eq!(c.get("/status/201", &[]).unwrap().status, 201);
    assert_eq!(
        (opened(&a), opened(&b)),
        (1, 1),
        "the second request went to the old upstream"
    );
}
