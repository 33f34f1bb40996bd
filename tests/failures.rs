//! `GET /failures` end to end: a spiking tenant's last failures survive a
//! flood of another tenant's, filters and formats, the admin listener's
//! auth and allow-list, and never a secret (API key in a header and in the
//! query string, other headers, a body).

mod common;

use std::time::Duration;

use common::*;

/// `/failures` once every request sent so far is counted (a client has its
/// response just before the proxy records it).
fn failures(sw: &Statuswatch, query: &str, headers: &[(&str, &str)]) -> Resp {
    sw.metrics();
    get(sw.admin, &format!("/failures{query}"), headers).unwrap()
}

fn body(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn json(sw: &Statuswatch, query: &str) -> serde_json::Value {
    let r = failures(sw, query, &[]);
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

fn send(sw: &Statuswatch, tenant: &str, path: &str, code: u16, id: &str) {
    let code = code.to_string();
    let r = get(
        sw.proxy,
        path,
        &[
            ("X-Tenant-Name", tenant),
            ("X-Upstream-Status", &code),
            ("X-Request-Id", id),
        ],
    )
    .unwrap();
    assert_eq!(r.status.to_string(), code);
}

#[test]
fn a_spiking_tenant_keeps_its_last_twenty_while_another_floods() {
    let up = Upstream::start();
    let sw = Statuswatch::start(
        up.addr,
        "[[route_tally.routes]]\npath = \"/api/v2/payments/{id}\"\n\n[route_tally]\nmax_routes = 50\n",
    );
    for i in 0..30 {
        send(
            &sw,
            "victim",
            &format!("/api/v2/payments/{i}"),
            503,
            &format!("victim-{i}"),
        );
    }
    // the flood: 4 threads, 6,000 failures of one other tenant, and some
    // successes that are not failures
    std::thread::scope(|s| {
        for t in 0..4 {
            let sw = &sw;
            s.spawn(move || {
                for i in 0..1500 {
                    let code = if i % 10 == 0 { 200 } else { 500 };
                    send(
                        sw,
                        "flood",
                        &format!("/api/v2/customers/{i}"),
                        code,
                        &format!("f{t}-{i}"),
                    );
                }
            });
        }
    });
    let v = json(&sw, "?tenant=victim&format=json");
    let list = v["failures"].as_array().unwrap();
    // its own ring's 20, and older ones only while its shard's newest
    // failures are still its own
    assert!(list.len() >= 20, "{v}");
    let ids: Vec<&str> = list
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (10..30).rev().map(|i| format!("victim-{i}")).collect();
    assert_eq!(ids[..20], want);
    let e = &list[0];
    assert_eq!(e["tenant"], "victim");
    assert_eq!(e["method"], "GET");
    assert_eq!(e["route"], "/api/v2/payments/{id}");
    assert_eq!(e["code"], 503);
    assert_eq!(e["origin"], "upstream");
    assert!(e["error_kind"].is_null());
    assert!(e["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(e["time"].as_str().unwrap().ends_with('Z'));

    // the whole list: the newest first, the flood's, at most 500
    let all = json(&sw, "?format=json");
    let list = all["failures"].as_array().unwrap();
    assert!(list.len() <= 500 && list.len() >= 20, "{}", list.len());
    assert_eq!(list[0]["tenant"], "flood");
    assert_eq!(list[0]["route"], "/api/v2/customers/{id}");
    assert!(list.iter().all(|e| e["code"] != 200));
    // text by default, one line per failure after two header lines
    let r = failures(&sw, "?tenant=victim&limit=3", &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = body(&r);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + 3, "{text}");
    assert!(
        lines[2].contains(" victim GET /api/v2/payments/{id} 503 upstream - "),
        "{text}"
    );
    assert!(lines[2].ends_with(" victim-29"), "{text}");
}

#[test]
fn signals_filter_and_upstream_errors_are_failures() {
    let up = Upstream::start();
    let sw = Statuswatch::start(up.addr, "");
    send(&sw, "alpha", "/api/v2/customers/1", 451, "s-1");
    send(&sw, "alpha", "/api/v2/customers/2", 500, "e-1");
    send(&sw, "alpha", "/api/v2/customers/3", 404, "n-1"); // not a signal's code
                                                           // the upstream resets: the proxy answers 502, kind "reset"
    let r = get(sw.proxy, "/reset", &[("X-Tenant-Name", "beta")]).unwrap();
    assert_eq!(r.status, 502);

    let suspended = json(&sw, "?signal=suspended&format=json");
    let ids: Vec<&str> = suspended["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-1"]);
    let five = failures(&sw, "?signal=5xx", &[("Accept", "application/json")]);
    let five: serde_json::Value = serde_json::from_slice(&five.body).unwrap();
    let five = five["failures"].as_array().unwrap();
    assert_eq!(five.len(), 2, "{five:?}");
    assert_eq!(five[0]["tenant"], "beta");
    assert_eq!(five[0]["origin"], "proxy");
    assert_eq!(five[0]["error_kind"], "reset");
    assert!(five[0]["request_id"].is_null());
    assert_eq!(five[1]["request_id"], "e-1");
    let all = json(&sw, "?format=json");
    assert_eq!(
        all["failures"].as_array().unwrap().len(),
        3,
        "404 is no failure: {all}"
    );
    let r = failures(&sw, "?signal=nonsense", &[]);
    assert_eq!(r.status, 400);
    assert!(body(&r).contains("\"5xx\""), "{}", body(&r));
    assert_eq!(failures(&sw, "?limit=many", &[]).status, 400);
    assert_eq!(
        json(&sw, "?tenant=nobody&format=json")["failures"],
        serde_json::json!([])
    );
}

#[test]
fn no_secret_ever_reaches_the_page() {
    let up = Upstream::start();
    let sw = Statuswatch::start(
        up.addr,
        "[failures]\nrequest_id_header = \"X-Correlation-Id\"\n",
    );
    let secrets = [
        "sk-HEADER-7f3a9c",
        "sk-QUERY-1b2c3d",
        "Bearer-AUTH-99x",
        "session=COOKIE-42",
        "BODY-SECRET-5150",
        "OTHER-HEADER-777",
    ];
    for method in ["GET", "POST"] {
        let r = request(
            sw.proxy,
            method,
            "/api/v2/payments/pay_12345678?api_key=sk-QUERY-1b2c3d&token=sk-QUERY-1b2c3d",
            &[
                ("X-Tenant-Name", "alpha"),
                ("X-Api-Key", "sk-HEADER-7f3a9c"),
                ("Authorization", "Bearer Bearer-AUTH-99x"),
                ("Cookie", "session=COOKIE-42"),
                ("X-Other", "OTHER-HEADER-777"),
                ("X-Request-Id", "not-the-configured-one"),
                ("X-Correlation-Id", "corr-1\u{e9}\"<x>"),
                ("X-Upstream-Status", "503"),
            ],
            b"card=BODY-SECRET-5150",
        )
        .unwrap();
        assert_eq!(r.status, 503);
    }
    for query in ["", "?format=json"] {
        let text = body(&failures(&sw, query, &[]));
        for s in secrets
            .iter()
            .chain(&["api_key", "token=", "?", "not-the-configured-one"])
        {
            assert!(!text.contains(s), "{s:?} in /failures{query}:\n{text}");
        }
        assert!(text.contains("/api/v2/payments/{id}"), "{text}");
        assert!(text.contains("corr-1__"), "{text}");
    }
    let metrics = body(&get(sw.admin, "/metrics", &[]).unwrap());
    for s in &secrets[..2] {
        assert!(!metrics.contains(s), "{s:?} in /metrics");
    }
    assert!(metrics.contains("route=\"POST /api/v2/payments/{id}\""));
}

#[test]
fn the_page_has_the_metrics_auth_and_allow_list() {
    let up = Upstream::start();
    let (proxy, admin) = (free_addr(), free_addr());
    let toml = config_toml(proxy, admin, up.addr, "")
        .replace("[admin]\n", "[admin]\nbearer_token = \"s3cret-token\"\n");
    let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
    send(&sw, "alpha", "/x/1", 500, "a");
    let page = |h: &[(&str, &str)]| get(sw.admin, "/failures", h).unwrap();
    let auth = [("Authorization", "Bearer s3cret-token")];
    eventually(Duration::from_secs(5), "the failure is recorded", || {
        body(&page(&auth)).contains(" alpha GET /x/{id} 500 ")
    });
    let r = page(&[]);
    assert_eq!(r.status, 401);
    assert!(!body(&r).contains("alpha"));
    assert_eq!(page(&[("Authorization", "Bearer wrong")]).status, 401);
    drop(sw);
    let (proxy, admin) = (free_addr(), free_addr());
    let toml = config_toml(proxy, admin, up.addr, "")
        .replace("[admin]\n", "[admin]\nallow = [\"10.0.0.0/8\"]\n");
    let sw = Statuswatch::start_with(&toml, proxy, admin, &[]);
    assert_eq!(get(sw.admin, "/failures", &[]).unwrap().status, 403);
    // off: not served
    drop(sw);
    let sw = Statuswatch::start(up.addr, "[failures]\nenabled = false\n");
    send(&sw, "alpha", "/x/1", 500, "a");
    assert_eq!(failures(&sw, "", &[]).status, 404);
}
