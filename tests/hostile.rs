//! Hostile clients: garbage, oversized and over-numerous headers, request
//! smuggling, slowloris, abrupt disconnects. Each gets a clear 4xx or a closed
//! connection; the upstream never sees a smuggled request; whatever the proxy
//! answered is tallied; the daemon stays healthy and leaks no connection.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const RESP: &str = "statuswatch_responses_total";
const FD_MARGIN: usize = 4;

// ------------------------------------------------------------ recording upstream

/// An upstream that records every request line it parses (so a smuggled
/// request would show up) and answers 200 with the request body echoed.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || record_conn(conn, s));
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn record_conn(conn: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request_line = line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        seen.lock().unwrap().push(request_line.clone());
        let mut cl = 0usize;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    cl = v.trim().parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(n) = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                else {
                    return;
                };
                let mut chunk = vec![0; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(cl, 0);
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        if w.write_all(head.as_bytes())
            .and_then(|_| w.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

// ------------------------------------------------------------ helpers

/// What a hostile client got back.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A response with this status, then (for the cases here) a close.
    Status(u16),
    /// The connection was closed (FIN or RST) without any response bytes.
    Closed,
    /// Nothing within the wait, connection still open.
    Silent,
}

/// Send `bytes` (in a writer thread, so a proxy that stops reading cannot
/// wedge us), read until close/timeout, and classify.
fn send(addr: SocketAddr, bytes: Vec<u8>, wait: Duration) -> (Outcome, Vec<u8>) {
    let conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    conn.set_write_timeout(Some(wait)).unwrap();
    let mut w = conn.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let mut out = Vec::new();
    let mut r = conn;
    let mut buf = [0u8; 16384];
    let mut timed_out = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                timed_out = true;
                break;
            }
            Err(_) => break, // reset
        }
    }
    let _ = r.shutdown(Shutdown::Both);
    let _ = writer.join();
    let outcome = if out.is_empty() {
        if timed_out {
            Outcome::Silent
        } else {
            Outcome::Closed
        }
    } else {
        let text = String::from_utf8_lossy(&out);
        let code = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|t| t.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Outcome::Status(code)
    };
    (outcome, out)
}

fn show(out: &[u8]) -> String {
    String::from_utf8_lossy(&out[..out.len().min(300)]).to_string()
}

fn assert_recovered(sw: &Statuswatch, baseline: usize) {
    assert_eq!(
        get(sw.admin, "/healthz", &[]).unwrap().status,
        200,
        "healthz"
    );
    let r = get(sw.proxy, "/echo", &[("X-Tenant-Name", "after")]).unwrap();
    assert_eq!(r.status, 200, "a normal request after the abuse");
    eventually(Duration::from_secs(10), "nothing in flight", || {
        sw.metrics().get("statuswatch_requests_in_flight", &[]) == Some(0.0)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = fd_count(sw.pid());
    while now > baseline + FD_MARGIN && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        now = fd_count(sw.pid());
    }
    eprintln!("fds: baseline {baseline}, after {now}");
    assert!(
        now <= baseline + FD_MARGIN,
        "fd leak: {now} open fds vs baseline {baseline} (+{FD_MARGIN})"
    );
}

fn start() -> (Recorder, Statuswatch, usize) {
    let up = Recorder::start();
    let sw = Statuswatch::start(up.addr, "");
    let _ = sw.metrics();
    let baseline = fd_count(sw.pid());
    (up, sw, baseline)
}

/// The proxy's own 400s for requests pingora could not parse, as tallied.
fn proxy_400s(m: &Metrics) -> f64 {
    m.responses("__none__", "400", "4xx", "proxy")
        .unwrap_or(0.0)
}

// ------------------------------------------------------------ tests

#[test]
fn malformed_requests_get_400_and_never_reach_upstream() {
    let (up, sw, baseline) = start();
    let w = Duration::from_secs(3);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "binary garbage",
            b"\x00\x01\x02\xff\xfe garbage \x7f\r\n\r\n".to_vec(),
        ),
        ("no version", b"GET\r\n\r\n".to_vec()),
        (
            "bad header line",
            b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        ),
        (
            "nul in header value",
            b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(),
        ),
    ];
    for (name, bytes) in &cases {
        let (o, out) = send(sw.proxy, bytes.clone(), w);
        eprintln!("{name}: {o:?} {:?}", show(&out));
        assert_eq!(o, Outcome::Status(400), "{name}: {}", show(&out));
    }
    assert!(up.seen().is_empty(), "upstream saw {:?}", up.seen());
    assert_recovered(&sw, baseline);
}

#[test]
fn oversized_request_line_and_headers() {
    let (up, sw, baseline) = start();
    let w = Duration::from_secs(5);

    // 100 KB URI: below pingora's 1 MiB header limit, but `http::Uri` holds
    // at most 64 KiB, so pingora cannot build the request header and answers
    // 400 (a 414 would be more precise; it is still a clear 4xx). A 60 KB URI
    // is legal and is forwarded.
    let uri = format!("/{}", "a".repeat(100 * 1024));
    let (o, out) = send(
        sw.proxy,
        format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
        w,
    );
    eprintln!("100 KB URI: {o:?}");
    assert_eq!(o, Outcome::Status(400), "{}", show(&out));
    assert_eq!(up.seen().len(), 0);
    let uri = format!("/{}", "a".repeat(60 * 1024));
    let (o, out) = send(
        sw.proxy,
        format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
        w,
    );
    eprintln!("60 KB URI: {o:?}");
    assert_eq!(o, Outcome::Status(200), "{}", show(&out));
    assert_eq!(up.seen().len(), 1);

    // 2 MB URI and 2 MB of headers: past the 1 MiB limit. pingora answers 400
    // and closes; the client may see that 400 or, because the proxy closes
    // with our unread bytes in its buffer, only a reset.
    let big_uri = format!("/{}", "b".repeat(2 * 1024 * 1024));
    let (o, out) = send(
        sw.proxy,
        format!("GET {big_uri} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        w,
    );
    eprintln!("2 MB URI: {o:?} {:?}", show(&out));
    assert!(
        matches!(o, Outcome::Status(400) | Outcome::Closed),
        "{o:?} {}",
        show(&out)
    );

    let mut req = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    let value = "v".repeat(8000);
    while req.len() < 2 * 1024 * 1024 {
        req.extend_from_slice(format!("X-Big-{}: {value}\r\n", req.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let (o, out) = send(sw.proxy, req, w);
    eprintln!("2 MB of headers: {o:?} {:?}", show(&out));
    assert!(
        matches!(o, Outcome::Status(400) | Outcome::Closed),
        "{o:?} {}",
        show(&out)
    );

    // Thousands of (small) headers: over pingora's 256-header parse limit.
    let mut req = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..5000 {
        req.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let (o, out) = send(sw.proxy, req, w);
    eprintln!("5000 headers: {o:?} {:?}", show(&out));
    assert!(
        matches!(o, Outcome::Status(400) | Outcome::Closed),
        "{o:?} {}",
        show(&out)
    );

    assert_eq!(
        up.seen().len(),
        1,
        "only the 60 KB URI reached the upstream"
    );
    assert_recovered(&sw, baseline);
}

#[test]
fn smuggling_attempts_never_reach_upstream() {
    let (up, sw, baseline) = start();
    let w = Duration::from_secs(3);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

    // TE.CL / CL.TE: both framings present. pingora follows Transfer-Encoding
    // (RFC 9112 §6.3), drops Content-Length and disables keep-alive, so the
    // bytes after the terminating chunk are never parsed as a request.
    let body = format!("0\r\n\r\n{smuggled}");
    let cl_te = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let (o, out) = send(sw.proxy, cl_te.into_bytes(), w);
    eprintln!("CL+TE: {o:?} {:?}", show(&out));
    assert_eq!(o, Outcome::Status(200), "{}", show(&out));
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {text}"
    );

    // TE.CL: a back end that trusted Content-Length: 4 would read "xx\r\n"
    // as the body and the chunk data as a second request.
    let inner = "GET /smuggled-te HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nx=1".to_string();
    let te_cl = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    let (o, out) = send(sw.proxy, te_cl.into_bytes(), w);
    eprintln!("TE+CL: {o:?} {:?}", show(&out));
    assert!(
        matches!(o, Outcome::Status(200) | Outcome::Status(400)),
        "{o:?} {}",
        show(&out)
    );

    // Duplicate, differing Content-Length: ambiguous framing, 400.
    let dup = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: {}\r\n\r\nhello{smuggled}",
        5 + smuggled.len()
    );
    let (o, out) = send(sw.proxy, dup.into_bytes(), w);
    eprintln!("CL,CL: {o:?} {:?}", show(&out));
    assert_eq!(o, Outcome::Status(400), "{}", show(&out));

    // Comma-joined differing Content-Length.
    let (o, out) = send(
        sw.proxy,
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 40\r\n\r\nhello{smuggled}")
            .into_bytes(),
        w,
    );
    eprintln!("CL 5, 40: {o:?} {:?}", show(&out));
    assert_eq!(o, Outcome::Status(400), "{}", show(&out));

    // chunked is not the final coding: the body length is unknowable, 400.
    let (o, out) = send(
        sw.proxy,
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}").into_bytes(),
        w,
    );
    eprintln!("TE chunked, identity: {o:?} {:?}", show(&out));
    assert_eq!(o, Outcome::Status(400), "{}", show(&out));

    // Obfuscated TE header (space before the colon) is invalid HTTP/1.1.
    let (o, out) = send(
        sw.proxy,
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes(),
        w,
    );
    eprintln!("'Transfer-Encoding :' {o:?} {:?}", show(&out));
    assert_eq!(o, Outcome::Status(400), "{}", show(&out));

    // HTTP/1.0 with Transfer-Encoding: faulty framing per RFC 9112 §6.1.
    let (o, out) = send(
        sw.proxy,
        format!("POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes(),
        w,
    );
    eprintln!("HTTP/1.0 + TE: {o:?} {:?}", show(&out));
    assert_eq!(o, Outcome::Status(400), "{}", show(&out));

    let seen = up.seen();
    eprintln!("upstream saw: {seen:?}");
    assert!(
        seen.iter().all(|l| l.starts_with("POST /echo ")),
        "the upstream saw a smuggled request: {seen:?}"
    );
    assert!(seen.len() <= 2, "at most the two TE-framed POSTs: {seen:?}");
    assert_recovered(&sw, baseline);
}

#[test]
fn slowloris_does_not_starve_other_clients() {
    let (up, sw, baseline) = start();
    let proxy = sw.proxy;
    let req =
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: slowpoke\r\nX-Pad: aaaaaaaaaa\r\n\r\n";
    // Several slow clients, each dribbling its header a byte every 100 ms
    // (about 7 s in all).
    let slow: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let conn = TcpStream::connect(proxy).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(15)))
                    .unwrap();
                let mut w = conn.try_clone().unwrap();
                let t0 = Instant::now();
                for b in req.iter() {
                    if w.write_all(&[*b]).is_err() {
                        return (Outcome::Closed, t0.elapsed());
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                let mut r = BufReader::new(conn);
                let o = match read_response(&mut r, false) {
                    Ok(resp) => Outcome::Status(resp.status),
                    Err(_) => Outcome::Closed,
                };
                (o, t0.elapsed())
            })
        })
        .collect();
    // Meanwhile normal clients keep getting fast answers.
    let mut worst = Duration::ZERO;
    let mut n = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        let s = Instant::now();
        let r = get(proxy, "/echo", &[("X-Tenant-Name", "normal")]).unwrap();
        assert_eq!(r.status, 200);
        worst = worst.max(s.elapsed());
        n += 1;
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{n} normal requests during slowloris, worst {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "normal request took {worst:?}"
    );
    for h in slow {
        let (o, took) = h.join().unwrap();
        eprintln!("slowloris client: {o:?} after {took:?}");
        // pingora has no default downstream header-read timeout: a slow but
        // complete request is served. Either that or a 408/close is fine;
        // what matters is that the others were not starved.
        assert!(
            matches!(
                o,
                Outcome::Status(200) | Outcome::Status(408) | Outcome::Closed
            ),
            "{o:?}"
        );
    }
    let _ = up;
    assert_recovered(&sw, baseline);
}

#[test]
fn client_disconnects_mid_body_count_499() {
    let (up, sw, baseline) = start();
    for i in 0..5 {
        let conn = TcpStream::connect(sw.proxy).unwrap();
        let mut w = conn.try_clone().unwrap();
        w.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: quitter\r\nContent-Length: 1000000\r\n\r\n",
        )
        .unwrap();
        w.write_all(&vec![b'z'; 64 * 1024]).unwrap();
        thread::sleep(Duration::from_millis(100));
        if i % 2 == 0 {
            // abortive close: RST
            socket2::SockRef::from(&conn)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop((w, conn));
    }
    eventually(Duration::from_secs(10), "5 x 499 tallied", || {
        sw.metrics()
            .responses("quitter", "undocumented", "4xx", "proxy")
            .unwrap_or(0.0)
            == 5.0
    });
    let m = sw.metrics();
    assert_eq!(
        m.val(
            "statuswatch_undocumented_responses_total",
            &[("code", "499")]
        ),
        5.0
    );
    assert_eq!(m.sum(RESP, &[]), 5.0, "{}", m.text);
    assert_eq!(
        m.sum("statuswatch_upstream_errors_total", &[]),
        0.0,
        "{}",
        m.text
    );
    // the half-sent uploads must not leave upstream connections behind
    let _ = up;
    assert_recovered(&sw, baseline);
}

#[test]
fn proxy_400s_for_unparseable_requests_are_tallied() {
    let (_up, sw, _baseline) = start();
    let w = Duration::from_secs(3);
    let mut sent = 0.0;
    for bytes in [
        b"\x00\x01\x02 garbage\r\n\r\n".to_vec(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            .to_vec(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
            .to_vec(),
        format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(100 * 1024)
        )
        .into_bytes(),
    ] {
        let (o, _) = send(sw.proxy, bytes, w);
        assert_eq!(o, Outcome::Status(400));
        sent += 1.0;
    }
    // Allow for the tally lagging the client by a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut m = sw.metrics();
    while proxy_400s(&m) < sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        m = sw.metrics();
    }
    eprintln!(
        "400s sent: {sent}; tallied as __none__/400/proxy: {}; responses_total sum: {}",
        proxy_400s(&m),
        m.sum(RESP, &[])
    );
    assert_eq!(proxy_400s(&m), sent, "{}", m.text);
    assert_eq!(m.sum(RESP, &[]), sent);
}

/// Requests that pass pingora's parser and look plain, so that the direct
/// path (`proxy.direct_path`, on by default; `./dev.sh test` runs this file
/// again with it off) takes them: each gets the same clear answer on both.
#[test]
fn plain_looking_hostile_requests() {
    let (up, sw, baseline) = start();
    let w = Duration::from_secs(3);

    // Content-Length is 1*DIGIT (RFC 9110 §8.6). "+5" parses as a number in
    // most languages (Rust's u64 too, as in `is_plain`); an upstream that
    // ignored it would read "hello" as the start of the next request. pingora's
    // parser refuses them first, so neither path ever forwards one.
    for cl in ["+5", "0x5", "5 5", "-5", "５"] {
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: badlen\r\nContent-Length: {cl}\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let (o, out) = send(sw.proxy, req.into_bytes(), w);
        eprintln!("Content-Length: {cl:?}: {o:?} {:?}", show(&out));
        assert_eq!(o, Outcome::Status(400), "{cl:?}: {}", show(&out));
    }

    // A body cut short: the direct path buffers a small body before the
    // upstream is contacted, so the upstream sees nothing; the client left: 499.
    let conn = TcpStream::connect(sw.proxy).unwrap();
    let mut wr = conn.try_clone().unwrap();
    wr.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: cut\r\nContent-Length: 1000\r\n\r\n",
    )
    .unwrap();
    wr.write_all(&[b'z'; 500]).unwrap();
    thread::sleep(Duration::from_millis(100));
    drop((wr, conn));
    eventually(Duration::from_secs(10), "the cut body's 499", || {
        sw.metrics()
            .responses("cut", "undocumented", "4xx", "proxy")
            .unwrap_or(0.0)
            == 1.0
    });

    // Pipelined behind a small body: a second request, served as one, in order.
    let req = "POST /echo HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: piped\r\nContent-Length: 5\r\n\r\nhelloGET /second HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: piped\r\nConnection: close\r\n\r\n";
    let (o, out) = send(sw.proxy, req.as_bytes().to_vec(), w);
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(o, Outcome::Status(200), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");

    let seen = up.seen();
    eprintln!("upstream saw: {seen:?}");
    assert!(
        !seen.iter().any(|l| l.contains("smuggled")),
        "the upstream saw a smuggled request: {seen:?}"
    );
    // The refused heads never reach it; the cut body's head does only where
    // the body is streamed (pingora-proxy, direct path off).
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("GET /second "))
            .count(),
        1,
        "{seen:?}"
    );
    let posts = seen.iter().filter(|l| l.starts_with("POST /echo ")).count();
    assert!(posts == 1 || posts == 2, "{seen:?}");
    assert_eq!(seen.len(), posts + 1, "{seen:?}");
    let m = sw.metrics();
    // pingora's parser refuses them before any hook: tenant __none__
    assert_eq!(proxy_400s(&m), 5.0, "{}", m.text);
    assert_eq!(
        m.responses("piped", "200", "2xx", "upstream"),
        Some(2.0),
        "{}",
        m.text
    );
    assert_recovered(&sw, baseline);
}
