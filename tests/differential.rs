//! The two request paths give the same answers: one corpus of requests
//! (plain ones, edge cases and hostile ones) is sent to two statuswatch
//! processes, one with the direct path on (the default) and one with
//! `proxy.direct_path = false` (everything through pingora-proxy), each in
//! front of its own recording upstream. For every request, the bytes the
//! upstream received and the bytes the client received must be the same
//! (but for `Date`), and so must the counts in `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// What each recording upstream saw: request id → the raw request bytes
/// (head and body) as they arrived.
type Seen = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// An upstream that records every request it receives and answers it by the
/// kind named in its target, `/k/{kind}/{id}`.
fn recording_upstream() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let s = s.clone();
            thread::spawn(move || record_and_answer(conn, &s));
        }
    });
    (addr, seen)
}

/// The end of a request head in `buf`, and its parsed target and framing.
fn parse_head(buf: &[u8]) -> Option<(usize, String, Framing)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(end) = req.parse(buf).ok()? else {
        return None;
    };
    let framing = framing(req.headers).ok()?.unwrap_or(Framing::Length(0));
    Some((end, req.path?.to_string(), framing))
}

/// The body framing `headers` declare (chunking wins over a length), `None`
/// when they declare neither; `Err` for a length that is not a number.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Option<Framing>, ()> {
    let mut framing = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            framing = Some(Framing::Chunked);
        } else if h.name.eq_ignore_ascii_case("content-length") && framing != Some(Framing::Chunked)
        {
            let n = std::str::from_utf8(h.value).map_err(|_| ())?.trim();
            framing = Some(Framing::Length(n.parse().map_err(|_| ())?));
        }
    }
    Ok(framing)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// Where a body framed as `framing` ends in `body`, if it has.
fn body_end(body: &[u8], framing: Framing) -> Option<usize> {
    match framing {
        Framing::Length(n) => (body.len() >= n).then_some(n),
        Framing::Chunked => {
            let mut at = 0;
            loop {
                let line_end = at + body.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
                let size = std::str::from_utf8(&body[at..line_end]).ok()?;
                let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
                at = line_end + 2;
                if size == 0 {
                    // Trailers (none expected), then the final CRLF.
                    let end = at + body.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
                    return Some(end + 2);
                }
                at += size + 2;
                if at > body.len() {
                    return None;
                }
            }
        }
    }
}

fn record_and_answer(mut conn: TcpStream, seen: &Seen) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // One whole request: head, then its body.
        let (head_end, target, framing) = loop {
            if let Some(h) = parse_head(&buf) {
                break h;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let end = loop {
            if let Some(e) = body_end(&buf[head_end..], framing) {
                break head_end + e;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let request: Vec<u8> = buf.drain(..end).collect();
        let mut parts = target.trim_start_matches('/').split('/');
        let (kind, id) = match (parts.next(), parts.next(), parts.next()) {
            (Some("k"), Some(kind), Some(id)) => (kind.to_string(), id.to_string()),
            _ => ("ok".to_string(), target.clone()),
        };
        seen.lock().unwrap().insert(id, request.clone());
        let head_request = request.starts_with(b"HEAD ");
        let answer: &[u8] = match kind.as_str() {
            "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "unframed" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
            "204" => b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n",
            "304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
            "103" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "500" => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail",
            "451" => b"HTTP/1.1 451 Unavailable For Legal Reasons\r\nContent-Length: 0\r\n\r\n",
            "close" => return, // closes without an answer
            _ if head_request => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kind: ok\r\n\r\nok",
        };
        if conn.write_all(answer).is_err() || kind == "unframed" {
            return;
        }
    }
}

/// One request of the corpus: its id, and its bytes as sent.
struct Case {
    id: String,
    bytes: Vec<u8>,
}

/// The corpus: request variants (plain, edge, hostile) × upstream answers,
/// and every method on the plain answer.
fn corpus() -> Vec<Case> {
    let kinds = [
        "ok", "chunked", "unframed", "204", "304", "103", "500", "451", "close",
    ];
    // (name, method, extra head lines, body; `{T}` is the target)
    type Variant = (&'static str, &'static str, &'static str, &'static [u8]);
    let variants: [Variant; 24] = [
        ("plain", "GET", "Host: api\r\nX-Tenant-Name: diff\r\n", b""),
        ("keepalive", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nConnection: keep-alive\r\n", b""),
        ("xff-lines", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 198.51.100.7\r\n", b""),
        ("xfp", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nX-Forwarded-Proto: https\r\n", b""),
        ("name-case", "GET", "HOST: api\r\nx-TENANT-name: diff\r\nX-API-KEY: k-1234567890abcdef\r\n", b""),
        ("no-host", "GET", "X-Tenant-Name: diff\r\n", b""),
        ("two-hosts", "GET", "Host: a\r\nHost: b\r\nX-Tenant-Name: diff\r\n", b""),
        ("userinfo-host", "GET", "Host: u@api\r\nX-Tenant-Name: diff\r\n", b""),
        ("post-length", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nContent-Length: 5\r\n", b"hello"),
        ("post-chunked", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ("two-lengths-same", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nContent-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        ("two-lengths-differ", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nContent-Length: 5\r\nContent-Length: 4\r\n", b"hello"),
        ("length-and-chunked", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ("bad-length", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nContent-Length: 5x\r\n", b"hello"),
        ("expect", "POST", "Host: api\r\nX-Tenant-Name: diff\r\nExpect: 100-continue\r\nContent-Length: 5\r\n", b"hello"),
        ("te-trailers", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nTE: trailers\r\n", b""),
        ("nominated", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nConnection: x-hop\r\nX-Hop: 1\r\n", b""),
        ("odd-connection", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nConnection: close, close, keep-alive\r\n", b""),
        ("upgrade", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", b""),
        ("absolute-form", "GET", "Host: api\r\nX-Tenant-Name: diff\r\n", b""),
        ("bare-lf", "GET", "Host: api\nX-Tenant-Name: diff\n", b""),
        ("http10", "GET", "X-Tenant-Name: diff\r\n", b""),
        ("long-header", "GET", "Host: api\r\nX-Tenant-Name: diff\r\nX-Long: LONG\r\n", b""),
        ("bad-tenant", "GET", "Host: api\r\nX-Tenant-Name: Not_A-Label!\r\n", b""),
    ];
    let long = "v".repeat(6000);
    let mut out = Vec::new();
    let mut add = |variant: &Variant, kind: &str, method: &str| {
        let (name, _, extra, body) = *variant;
        let id = format!("{name}.{kind}.{method}");
        let target = format!("/k/{kind}/{id}");
        let target = if name == "absolute-form" {
            format!("http://api{target}")
        } else {
            target
        };
        let version = if name == "http10" {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let eol = if name == "bare-lf" { "\n" } else { "\r\n" };
        // Every request closes its connection after the answer, so the
        // client reads to the end; a variant with its own `Connection`
        // field (two lines) is a case of its own.
        let mut head = format!(
            "{method} {target} {version}{eol}{}",
            extra.replace("LONG", &long)
        );
        head.push_str(&format!("Connection: close{eol}{eol}"));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        out.push(Case { id, bytes });
    };
    for v in &variants {
        for kind in kinds {
            add(v, kind, v.1);
        }
    }
    for v in &variants {
        for method in ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            add(v, "ok", method);
        }
    }
    out
}

/// Where the answer in `buf` ends: after its interim (1xx) responses and its
/// final one, framed as RFC 9112 §6.3 says. `None`: not complete yet (or
/// delimited by the close).
fn answer_end(buf: &[u8], head_request: bool) -> Option<usize> {
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = resp.parse(buf.get(at..)?).ok()? else {
            return None;
        };
        let code = resp.code?;
        at += head;
        if (100..200).contains(&code) && code != 101 {
            continue;
        }
        if head_request || code == 204 || code == 304 || code == 101 {
            return Some(at);
        }
        // Neither length nor chunking: delimited by the close.
        let framing = framing(resp.headers).ok()??;
        return Some(at + body_end(&buf[at..], framing)?);
    }
}

/// What a client received for `bytes` on a new connection: the whole answer
/// (read until it is complete, or the connection closes), with `Date` lines
/// removed, and how it ended.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = conn.write_all(bytes);
    let head_request = bytes.starts_with(b"HEAD ");
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    let ended = loop {
        if answer_end(&got, head_request) == Some(got.len()) {
            break "";
        }
        match conn.read(&mut chunk) {
            Ok(0) => break " <closed>",
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break " <reset>",
            Err(_) => break " <timeout>",
        }
    };
    let text = String::from_utf8_lossy(&got);
    let kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    format!("{}{ended}", kept.concat())
}

fn start(direct: bool) -> (Statuswatch, Seen) {
    let (up, seen) = recording_upstream();
    let sw = Statuswatch::start_env(
        up,
        &[(
            "STATUSWATCH__PROXY__DIRECT_PATH",
            if direct { "true" } else { "false" },
        )],
    );
    (sw, seen)
}

#[test]
fn both_paths_answer_and_forward_and_count_the_same() {
    let cases = corpus();
    assert!(cases.len() >= 200, "{}", cases.len());
    let (on, on_seen) = start(true);
    let (off, off_seen) = start(false);
    // Each case on both at once (the two processes are independent), a few
    // cases at a time.
    let mut diffs = Vec::new();
    for batch in cases.chunks(8) {
        let results: Vec<_> = thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|c| {
                    let (a, b) = (on.proxy, off.proxy);
                    s.spawn(move || (exchange(a, &c.bytes), exchange(b, &c.bytes)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (c, (direct, proxied)) in batch.iter().zip(results) {
            if direct.ends_with("<timeout>") {
                eprintln!("timeout: {}", c.id);
            }
            if direct != proxied {
                diffs.push(format!(
                    "{}: client got\n  direct path:   {direct:?}\n  pingora-proxy: {proxied:?}",
                    c.id
                ));
            }
        }
    }
    let (a, b) = (on_seen.lock().unwrap(), off_seen.lock().unwrap());
    for c in &cases {
        let (x, y) = (a.get(&c.id), b.get(&c.id));
        if x != y {
            diffs.push(format!(
                "{}: upstream got\n  direct path:   {:?}\n  pingora-proxy: {:?}",
                c.id,
                x.map(|v| String::from_utf8_lossy(v).into_owned()),
                y.map(|v| String::from_utf8_lossy(v).into_owned())
            ));
        }
    }
    // Something reached both upstreams: the comparison is not vacuous.
    assert!(
        a.len() >= cases.len() / 2,
        "{} of {} forwarded",
        a.len(),
        cases.len()
    );
    drop((a, b));
    let counts = |sw: &Statuswatch| -> Vec<(String, f64)> {
        sw.metrics()
            .matching("statuswatch_responses_total", &[])
            .map(|(k, v)| (k.clone(), v))
            .collect()
    };
    let (x, y) = (counts(&on), counts(&off));
    if x != y {
        diffs.push(format!(
            "counts differ:\n  direct path:   {x:?}\n  pingora-proxy: {y:?}"
        ));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
