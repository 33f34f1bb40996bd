use super::*;
use crate::config::RouteTemplate;

fn config(routes: &[(&str, &str)]) -> Config {
    let mut c = Config::defaults().unwrap();
    c.route_tally.routes = routes
        .iter()
        .map(|(m, p)| RouteTemplate {
            method: m.to_string(),
            path: p.to_string(),
        })
        .collect();
    c
}

fn table(routes: &[(&str, &str)], tally: &RouteTally) -> RouteTable {
    let mut t = RouteTable::from_config(&config(routes)).unwrap();
    t.bind(tally);
    t
}

fn label(t: &RouteTable, tally: &RouteTally, m: &str, p: &str) -> String {
    let m = http::Method::from_bytes(m.as_bytes()).unwrap();
    let r = t.resolve(tally, &m, p);
    tally.label(r.slot).unwrap().to_string()
}

#[test]
fn the_most_specific_template_names_the_route() {
    let tally = RouteTally::new(100);
    let t = table(
        &[
            ("", "/api/v2/customers"),
            ("", "/api/v2/customers/{id}"),
            ("GET", "/api/v2/customers/search"),
            ("POST", "/api/v2/customers/{id}"),
            ("", "/api/v2/customers/{id}/appointments/{appt}"),
            ("post", "/api/v2/payments"),
            ("", "/files/{*rest}"),
        ],
        &tally,
    );
    for (m, p, want) in [
        ("GET", "/api/v2/customers", "/api/v2/customers"),
        ("GET", "/api/v2/customers/42", "/api/v2/customers/{id}"),
        (
            "POST",
            "/api/v2/customers/42",
            "POST /api/v2/customers/{id}",
        ),
        (
            "GET",
            "/api/v2/customers/search",
            "GET /api/v2/customers/search",
        ),
        // search is GET only: a POST to it is a customer id
        (
            "POST",
            "/api/v2/customers/search",
            "POST /api/v2/customers/{id}",
        ),
        (
            "DELETE",
            "/api/v2/customers/search",
            "/api/v2/customers/{id}",
        ),
        (
            "GET",
            "/api/v2/customers/7/appointments/9",
            "/api/v2/customers/{id}/appointments/{appt}",
        ),
        ("POST", "/api/v2/payments", "POST /api/v2/payments"),
        ("GET", "/api/v2/payments", "GET /api/v2/payments"),
        (
            "GET",
            "/api/v2/payments/pay_12345678",
            "GET /api/v2/payments/{id}",
        ),
        ("GET", "/files/a/b/c.txt", "/files/{*rest}"),
        ("PURGE", "/api/v2/customers/1", "/api/v2/customers/{id}"),
        ("PURGE", "/nowhere/1", "OTHER /nowhere/{id}"),
    ] {
        assert_eq!(label(&t, &tally, m, p), want, "{m} {p}");
    }
    assert!(t.matching(&http::Method::GET, "/api/v2/payments").is_none());
}

#[test]
fn clashing_or_bad_templates_name_their_key() {
    for (routes, key) in [
        (
            &[("", "/a/{id}"), ("", "/a/{name}")][..],
            "route_tally.routes[1].path",
        ),
        (
            &[("GET", "/a"), ("GET", "/a")][..],
            "route_tally.routes[1].path",
        ),
        (
            &[("", "/a"), ("", "no-slash")][..],
            "route_tally.routes[1].path",
        ),
        (&[("FETCH", "/a")][..], "route_tally.routes[0].method"),
        (
            &[("", "/{a}/{b}/{c}/{d}")][..],
            "route_tally.routes[0].path",
        ),
        (&[("", "/a/{id")][..], "route_tally.routes[0].path"),
    ] {
        let e = RouteTable::from_config(&config(routes))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("{key}: ")), "{routes:?}: {e}");
    }
    // the same path for two methods, or with and without one, is no clash
    RouteTable::from_config(&config(&[
        ("GET", "/a/{id}"),
        ("POST", "/a/{id}"),
        ("", "/a/{x}"),
    ]))
    .unwrap();
}

#[test]
fn off_counts_nowhere_and_unmatched_paths_are_capped() {
    let tally = RouteTally::new(5);
    let mut c = config(&[("", "/known/{id}")]);
    c.route_tally.enabled = false;
    let off = RouteTable::from_config(&c).unwrap();
    assert_eq!(
        off.resolve(&tally, &http::Method::GET, "/known/1").slot,
        RouteRef::NONE
    );
    assert_eq!(off.unparsed(), RouteRef::NONE);

    let t = table(&[("", "/known/{id}")], &tally);
    for i in 0..1000 {
        let r = t.resolve(&tally, &http::Method::GET, &format!("/x{i}/y"));
        assert!(i < 5 || r.slot == RouteRef::OTHER, "{i}");
    }
    assert_eq!(tally.normalized_labels(), 5);
    assert_eq!(label(&t, &tally, "GET", "/known/77"), "/known/{id}");
    assert_eq!(t.unparsed(), RouteRef::OTHER);
}
