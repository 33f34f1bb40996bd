use super::*;

fn failure<'a>(tenant: &'a str, route: &'a str, id: Option<&'a [u8]>) -> Failure<'a> {
    Failure {
        tenant,
        method: "GET",
        route,
        code: 503,
        origin: Origin::Proxy,
        error_kind: Some(UpstreamErrorKind::ConnectRefused),
        elapsed: Duration::from_millis(12),
        request_id: id,
    }
}

fn tenants_of(v: &[Entry]) -> Vec<&str> {
    v.iter().map(|e| e.tenant.as_str()).collect()
}

/// What the store holds, measured: 1,536 entries in at most 576 KiB, all
/// allocated up front (each `Entry` is at most 384 bytes: a const assert).
#[test]
fn the_bound_is_fixed() {
    let f = Failures::new();
    let bytes = std::mem::size_of_val(&*f.shards);
    assert!(bytes <= 576 * 1024, "{bytes} bytes");
    let rings: usize = f
        .shards
        .iter()
        .map(|s| {
            let s = s.lock().unwrap();
            s.recent.entries.len()
                + s.tenants
                    .iter()
                    .map(|t| t.ring.entries.len())
                    .sum::<usize>()
        })
        .sum();
    assert_eq!(rings, CAPACITY);
    assert_eq!(CAPACITY, 1536);
}

#[test]
fn newest_first_each_once_and_filtered() {
    let f = Failures::new();
    for i in 0..10 {
        let t = if i % 2 == 0 { "alpha" } else { "beta" };
        f.push(&failure(t, &format!("/r/{i}"), Some(b"req-1")), |_| false);
    }
    let all = f.newest(usize::MAX, |_| true);
    assert_eq!(all.len(), 10, "the recent and tenant rings hold each once");
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(all[0].route.as_str(), "/r/9");
    assert_eq!(all[0].request_id.unwrap().as_str(), "req-1");
    let alpha = f.newest(3, |e| e.tenant.as_str() == "alpha");
    assert_eq!(tenants_of(&alpha), ["alpha"; 3]);
    assert_eq!(alpha[0].route.as_str(), "/r/8");
    // 64 tenants of 20 failures: more than one answer lists
    for i in 0..64 * PER_TENANT {
        f.push(&failure(&format!("t{}", i % 64), "/", None), |_| false);
    }
    assert_eq!(f.newest(usize::MAX, |_| true).len(), MAX_RETURNED);
    assert_eq!(f.newest(7, |_| true).len(), 7);
}

#[test]
fn request_ids_are_sanitized_and_capped() {
    let f = Failures::new();
    let long = [b'x'; 200];
    f.push(&failure("a", "/", Some(&long)), |_| false);
    f.push(&failure("a", "/", Some(b"id with\nnewline\"q")), |_| false);
    f.push(&failure("a", "/", Some(b"")), |_| false);
    let v = f.newest(10, |_| true);
    assert!(v[0].request_id.is_none());
    assert_eq!(v[1].request_id.unwrap().as_str(), "id_with_newline\"q");
    assert_eq!(v[2].request_id.unwrap().as_str().len(), REQUEST_ID_BYTES);
}

/// A tenant that is spiking keeps its last 20 failures while 10,000 other
/// tenants flood failures through every shard; memory stays the same.
#[test]
fn a_spiking_tenant_keeps_its_last_twenty_during_a_flood() {
    let f = Failures::new();
    for i in 0..25 {
        f.push(&failure("victim", &format!("/v/{i}"), None), |_| false);
    }
    for i in 0..100_000 {
        let t = format!("flood{}", i % 10_000);
        f.push(&failure(&t, "/f", None), |name| name == "victim");
    }
    let v = f.newest(usize::MAX, |e| e.tenant.as_str() == "victim");
    assert_eq!(v.len(), PER_TENANT);
    assert_eq!(v[0].route.as_str(), "/v/24");
    assert_eq!(v[19].route.as_str(), "/v/5");
    assert!(f.newest(usize::MAX, |_| true).len() <= MAX_RETURNED);
    // without the spike, the same flood takes its ring
    let g = Failures::new();
    g.push(&failure("victim", "/v", None), |_| false);
    for i in 0..100_000 {
        g.push(
            &failure(&format!("flood{}", i % 10_000), "/f", None),
            |_| false,
        );
    }
    assert!(g.newest(10, |e| e.tenant.as_str() == "victim").is_empty());
}

#[test]
fn one_flooding_tenant_does_not_evict_another() {
    let f = Failures::new();
    for i in 0..20 {
        f.push(&failure("quiet", &format!("/q/{i}"), None), |_| false);
    }
    for _ in 0..50_000 {
        f.push(&failure("loud", "/l", None), |_| false);
    }
    assert_eq!(
        f.newest(usize::MAX, |e| e.tenant.as_str() == "quiet").len(),
        20
    );
}

#[test]
fn text_and_json() {
    let f = Failures::new();
    f.push(
        &failure("alpha", "/api/v2/customers/{id}", Some(b"abc-1")),
        |_| false,
    );
    let v = f.newest(10, |_| true);
    let text = render_text(&v, "tenant=alpha");
    let line = text.lines().nth(2).unwrap();
    assert!(
        line.ends_with(
            " alpha GET /api/v2/customers/{id} 503 proxy connect_refused 0.012000 abc-1"
        ),
        "{text}"
    );
    assert!(text.starts_with("# statuswatch: the last failing requests, newest first: 1 shown"));
    let json: serde_json::Value = serde_json::from_str(&render_json(&v)).unwrap();
    let e = &json["failures"][0];
    assert_eq!(e["tenant"], "alpha");
    assert_eq!(e["code"], 503);
    assert_eq!(e["error_kind"], "connect_refused");
    assert_eq!(e["request_id"], "abc-1");
    assert_eq!(json["capacity"], 1536);
}
