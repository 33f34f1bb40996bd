//! Fuzz the request-head path: arbitrary bytes parsed as an HTTP/1 request
//! head (httparse, as pingora-core does), then the request core's handling
//! of it: the direct path's choice (`is_plain`), the refusal (CONNECT, Host)
//! and the forwarded headers set on the upstream head.
//!
//! Properties: never panics; a plain request is HTTP/1.1 with an origin-form
//! target, at most one Host, one Content-Length of at most 64 KiB and no
//! Transfer-Encoding; CONNECT is refused 405; HTTP/1.1 without exactly one
//! Host is refused 400; the upstream head carries exactly one
//! X-Forwarded-For line ending in the client's address (the only address
//! when clients are not trusted) and X-Forwarded-Proto as a trusted client
//! sent it, else exactly one line with the listener's scheme; every other header
//! line reaches the upstream unchanged and in order.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use statuswatch::fuzzing::request_head;

const MAX_HEADERS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(raw) else {
        return;
    };
    let (Some(method), Some(path), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return;
    };
    let Ok(mut req) = RequestHeader::build(method, path.as_bytes(), Some(parsed.headers.len()))
    else {
        return;
    };
    req.set_version(if version == 1 {
        http::Version::HTTP_11
    } else {
        http::Version::HTTP_10
    });
    for h in parsed.headers.iter() {
        let Ok(v) = http::HeaderValue::from_bytes(h.value) else {
            return;
        };
        if req.append_header(h.name.to_string(), v).is_err() {
            return;
        }
    }
    let client = if flags & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    };
    let tls = flags & 2 != 0;
    let trust = flags & 4 != 0;
    let out = request_head(&req, client, tls, trust);

    let count = |r: &RequestHeader, name: &str| r.headers.get_all(name).iter().count();
    if out.plain {
        assert_eq!(req.version, http::Version::HTTP_11);
        assert!(req.raw_path().starts_with(b"/"));
        assert!(count(&req, "host") <= 1 && count(&req, "content-length") <= 1);
        assert_eq!(count(&req, "transfer-encoding"), 0);
        if let Some(cl) = req.headers.get("content-length") {
            let n: u64 = std::str::from_utf8(cl.as_bytes())
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(n <= 64 * 1024);
        }
    }
    if req.method == http::Method::CONNECT {
        assert_eq!(out.refusal, Some(405));
    } else if req.version == http::Version::HTTP_11 && count(&req, "host") != 1 {
        assert_eq!(out.refusal, Some(400));
    } else {
        assert_eq!(out.refusal, None);
    }
    let Ok(up) = out.upstream else {
        return;
    };
    let xff: Vec<_> = up.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff.len(), 1, "{xff:?}");
    // A trusted client's lines pass as they came (obs-text included).
    let xff = xff[0].as_bytes();
    let ip = client.to_string();
    if trust {
        let tail = format!(", {ip}");
        assert!(
            xff == ip.as_bytes() || xff.ends_with(tail.as_bytes()),
            "{xff:?}"
        );
    } else {
        assert_eq!(xff, ip.as_bytes());
    }
    let xfp: Vec<_> = up.headers.get_all("x-forwarded-proto").iter().collect();
    let sent: Vec<_> = req.headers.get_all("x-forwarded-proto").iter().collect();
    if trust && !sent.is_empty() {
        assert_eq!(xfp, sent, "a trusted client's lines are kept as they came");
    } else {
        assert_eq!(xfp.len(), 1, "{xfp:?}");
        assert_eq!(
            xfp[0].as_bytes(),
            if tls { b"https" as &[u8] } else { b"http" }
        );
    }
    let others = |r: &RequestHeader| {
        r.headers
            .iter()
            .filter(|(n, _)| *n != "x-forwarded-for" && *n != "x-forwarded-proto")
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&req), others(&up));
});
