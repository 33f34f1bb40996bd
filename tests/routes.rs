//! The route tally end to end: REV23-like traffic over 30 templates with
//! random ids costs at most templates × classes × origins series; a million
//! distinct unmatched paths stay within `route_tally.max_routes`; `check`
//! prices the family and refuses clashing templates by key.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use statuswatch::config::{Config, RouteTemplate};
use statuswatch::record::{Asked, Finished};
use statuswatch::state::{Live, Shared};
use statuswatch::status::Origin;
use statuswatch::tenant::SlotRef;

const ROUTE: &str = "statuswatch_route_responses_total";

/// 30 REV23-like endpoints: (method, template, a path for it with `{}` for an id).
fn rev23() -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    for res in [
        "customers",
        "appointments",
        "payments",
        "webhooks",
        "invoices",
        "services",
    ] {
        v.push(("GET", leak(format!("/api/v2/{res}"))));
        v.push(("POST", leak(format!("/api/v2/{res}"))));
        v.push(("GET", leak(format!("/api/v2/{res}/{{id}}"))));
        v.push(("PUT", leak(format!("/api/v2/{res}/{{id}}"))));
        v.push(("", leak(format!("/api/v2/{res}/{{id}}/notes/{{note}}"))));
    }
    v
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn routes_toml(templates: &[(&str, &str)], max_routes: usize) -> String {
    let mut t = format!("[route_tally]\nmax_routes = {max_routes}\n");
    for (m, p) in templates {
        t.push_str(&format!(
            "\n[[route_tally.routes]]\nmethod = \"{m}\"\npath = \"{p}\"\n"
        ));
    }
    t
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The distinct `route` label values of the route tally.
fn route_labels(m: &Metrics) -> BTreeSet<String> {
    m.matching(ROUTE, &[])
        .filter_map(|(l, _)| {
            l.split("route=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect()
}

fn route_series(m: &Metrics) -> BTreeMap<String, f64> {
    m.matching(ROUTE, &[])
        .map(|(labels, v)| (labels.to_string(), v))
        .collect()
}

#[test]
fn rev23_traffic_over_thirty_templates_costs_at_most_templates_classes_origins() {
    let up = Upstream::start();
    let templates = rev23();
    assert_eq!(templates.len(), 30);
    let sw = Statuswatch::start(up.addr, &routes_toml(&templates, 200));
    let mut rng = Rng(0x5eed);
    let codes = ["200", "201", "404", "409", "451", "500", "503"];
    let mut sent = 0;
    for _ in 0..900 {
        let (m, t) = templates[(rng.next() % 30) as usize];
        let id = format!("{}", rng.next() % 1_000_000_000);
        let path = t
            .replace("{id}", &id)
            .replace("{note}", &format!("n{}x{}", rng.next() % 1000, id));
        let method = if m.is_empty() { "DELETE" } else { m };
        let code = codes[(rng.next() % codes.len() as u64) as usize];
        let r = request(
            sw.proxy,
            method,
            &format!("{path}?page=2&api_key=k-{id}"),
            &[("X-Tenant-Name", "studio"), ("X-Upstream-Status", code)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status.to_string(), code);
        sent += 1;
    }
    let m = sw.metrics();
    let series = route_series(&m);
    let labels = route_labels(&m);
    let want: BTreeSet<String> = templates
        .iter()
        .map(|(m, p)| {
            if m.is_empty() {
                p.to_string()
            } else {
                format!("{m} {p}")
            }
        })
        .collect();
    assert!(
        labels.is_subset(&want),
        "{:?}",
        labels.difference(&want).collect::<Vec<_>>()
    );
    assert!(
        labels.len() >= 25,
        "900 requests over 30 templates: {labels:?}"
    );
    // 30 templates x 6 classes x 2 origins
    assert!(series.len() <= 30 * 6 * 2, "{} series", series.len());
    assert_eq!(m.sum(ROUTE, &[]), sent as f64);
    let text = String::from_utf8(get(sw.admin, "/metrics", &[]).unwrap().body).unwrap();
    assert!(!text.contains("api_key") && !text.contains("page=2"));
    eprintln!(
        "30 templates, {sent} requests with random ids: {} route labels, {} series",
        labels.len(),
        series.len()
    );
}

#[test]
fn unmatched_paths_through_the_proxy_stay_within_the_cap() {
    let up = Upstream::start();
    let sw = Statuswatch::start(
        up.addr,
        &routes_toml(&[("GET", "/api/v2/customers/{id}")], 20),
    );
    for i in 0..300 {
        // letters only: nothing folds, every path is a new route
        let word: String = format!("{i:04}")
            .bytes()
            .map(|d| (b'a' + d - b'0') as char)
            .collect();
        get(
            sw.proxy,
            &format!("/api/v2/{word}/items"),
            &[("X-Tenant-Name", "studio")],
        )
        .unwrap();
        get(
            sw.proxy,
            &format!("/api/v2/customers/{i}"),
            &[("X-Tenant-Name", "studio")],
        )
        .unwrap();
    }
    let m = sw.metrics();
    let labels = route_labels(&m);
    assert_eq!(labels.len(), 20 + 1 + 1, "{labels:?}");
    assert!(labels.contains("__other__") && labels.contains("GET /api/v2/customers/{id}"));
    assert_eq!(
        m.val(
            ROUTE,
            &[
                ("route", "GET /api/v2/customers/{id}"),
                ("class", "4xx"),
                ("origin", "upstream")
            ]
        ),
        300.0
    );
    assert_eq!(m.sum(ROUTE, &[("route", "__other__")]), 280.0);
    assert_eq!(m.sum(ROUTE, &[]), 600.0);
}

/// One million distinct paths no template matches, through the one
/// `Shared::record`: at most `max_routes` labels plus `__other__`, every
/// response counted, memory flat.
#[test]
fn a_million_distinct_unmatched_paths_stay_within_the_cap() {
    let mut cfg = Config::defaults().unwrap();
    cfg.route_tally.max_routes = 200;
    cfg.route_tally.routes = vec![RouteTemplate {
        method: String::new(),
        path: "/api/v2/customers/{id}".into(),
    }];
    let shared = Shared::new(Live::build(cfg).unwrap());
    let live = shared.live.load_full();
    let headers = http::HeaderMap::new();
    let before = rss_kib(std::process::id());
    let mut path = String::new();
    for i in 0..1_000_000u32 {
        path.clear();
        path.push_str("/api/v2/");
        // a word of letters (never folded to {id}): every path distinct
        let mut n = i;
        for _ in 0..6 {
            path.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
        }
        path.push_str("/x");
        let f = Finished {
            tenant: SlotRef::NONE,
            code: 200,
            origin: Origin::Upstream,
            elapsed: std::time::Duration::from_millis(1),
            error_kind: None,
            request: Some(Asked {
                method: &http::Method::GET,
                path: &path,
                headers: &headers,
            }),
        };
        shared.record(&live, &f, 0);
    }
    let after = rss_kib(std::process::id());
    let mut out = String::new();
    statuswatch::metrics::render(&shared, &mut out);
    let m = Metrics::parse(&out);
    let series = m.matching(ROUTE, &[]).count();
    eprintln!(
        "1,000,000 distinct unmatched paths: {} labels taken, {series} route series, RSS {before} -> {after} KiB",
        shared.routes.normalized_labels()
    );
    assert_eq!(shared.routes.normalized_labels(), 200);
    assert_eq!(series, 200 + 1);
    assert_eq!(
        m.val(
            ROUTE,
            &[
                ("route", "__other__"),
                ("class", "2xx"),
                ("origin", "upstream")
            ]
        ),
        999_800.0
    );
    assert_eq!(m.sum(ROUTE, &[]), 1_000_000.0);
    assert!(
        after < before + 16 * 1024,
        "RSS grew {before} -> {after} KiB"
    );
}

#[test]
fn check_prices_the_routes_and_names_a_clashing_template() {
    let (ok, text) = check_config(&routes_toml(&rev23(), 200));
    assert!(ok, "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with(ROUTE))
        .unwrap_or_else(|| panic!("no route row in\n{text}"));
    // worst (30 + 200 + 1) x 12 = 2,772; expected (30 + 20) x 3 = 150
    let nums: Vec<&str> = row.split_whitespace().skip(1).collect();
    assert_eq!(nums, ["2,772", "150"], "{row}");

    let (ok, text) = check_config(&routes_toml(
        &[("GET", "/a/{id}"), ("GET", "/a/{name}")],
        200,
    ));
    assert!(!ok);
    assert!(text.contains("route_tally.routes[1].path"), "{text}");
    let (ok, text) = check_config("[route_tally]\nmax_routes = 0\n");
    assert!(!ok);
    assert!(text.contains("route_tally.max_routes"), "{text}");
    let (ok, text) = check_config("[route_tally]\nenabled = false\n");
    assert!(ok, "{text}");
    assert!(!text.contains(ROUTE), "{text}");
}

/// A reload brings new templates (their labels start counting, the old
/// counts stay); a reload with clashing templates is refused and the
/// templates in force keep matching.
#[test]
fn reloads_bring_templates_and_a_clash_keeps_the_old_ones() {
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    let base = config_toml(proxy, admin, up.addr, "[reload]\nwatch_interval = \"0s\"\n");
    let sw = Statuswatch::start_with(&base, proxy, admin, &[]);
    let hit = |path: &str| {
        get(sw.proxy, path, &[("X-Tenant-Name", "studio")]).unwrap();
    };
    let reloaded = |text: &str, result: &str, n: f64| {
        std::fs::write(&sw.config_path, text).unwrap();
        sw.signal(libc::SIGHUP);
        eventually(std::time::Duration::from_secs(5), "the reload", || {
            sw.metrics_now()
                .val("statuswatch_config_reloads_total", &[("result", result)])
                == n
        });
    };
    hit("/api/v2/customers/cus_12345678/notes/abc");
    let with = format!(
        "{base}{}",
        routes_toml(&[("", "/api/v2/customers/{id}/notes/{note}")], 200)
    );
    reloaded(&with, "success", 1.0);
    hit("/api/v2/customers/cus_12345678/notes/abc");
    let clash =
        format!("{with}\n[[route_tally.routes]]\npath = \"/api/v2/customers/{{x}}/notes/{{y}}\"\n");
    reloaded(&clash, "failure", 1.0);
    assert!(
        sw.stderr().contains("route_tally.routes[1].path"),
        "{}",
        sw.stderr()
    );
    hit("/api/v2/customers/cus_87654321/notes/def");
    let m = sw.metrics();
    let four = [("class", "4xx"), ("origin", "upstream")];
    let at = |route: &str| {
        let mut labels = vec![("route", route)];
        labels.extend(four);
        m.val(ROUTE, &labels)
    };
    assert_eq!(
        at("GET /api/v2/customers/{id}/notes/abc"),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(at("/api/v2/customers/{id}/notes/{note}"), 2.0, "{}", m.text);
}
