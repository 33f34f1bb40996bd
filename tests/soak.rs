//! A bounded soak: mixed traffic from several client threads for
//! `STATUSWATCH_SOAK_SECS` seconds (default 20), sampling the daemon's RSS and
//! fd count every second. Asserts no memory growth after warm-up beyond a
//! bound, no leaked fds, and that the tallies add up to exactly what the load
//! generator observed. Run with `--nocapture` to see the series.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const RESP: &str = "statuswatch_responses_total";
const THREADS: usize = 8;
/// RSS growth allowed after warm-up. The proxy's steady-state working set
/// (per-connection buffers, pooled upstream connections, a bounded tenant
/// registry with 6 tenants, mimalloc's per-thread caches) is reached within
/// the warm-up; what remains is allocator noise of a few MiB. At the request
/// rates reached here (tens of thousands of requests per run) a leak of a few
/// hundred bytes per request, or of one connection's buffers per fault,
/// crosses 16 MiB; the test prints the exact sensitivity for the run.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
const FD_MARGIN: usize = 4;

const TENANTS: [&str; 6] = ["inkhouse", "blackcat", "paperfox", "T4", "studio-5", ""];
const CODES: [u16; 12] = [200, 200, 200, 201, 400, 404, 409, 451, 500, 503, 429, 302];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Debug)]
struct Tally {
    /// Responses the client saw (status line received), by status.
    by_status: BTreeMap<u16, u64>,
    /// Requests abandoned by the client before any answer (expected 499s).
    disconnects: u64,
    /// Keep-alive requests that found the connection closed before any
    /// byte was read (never seen by the proxy; resent on a new connection).
    ka_stale: u64,
    /// Responses whose status differed from what the path must give.
    unexpected: Vec<String>,
    /// I/O failures with no response at all.
    errors: Vec<String>,
    /// POSTs sent, and POSTs answered 502: a non-idempotent request that
    /// lands on a pooled connection the upstream has just shut down (the
    /// /close fault) is retried only when none of it reached the upstream
    /// (src/forward.rs, `never_arrived`; direct path). /close shuts the
    /// socket down before closing it, and one arriving in between is
    /// acknowledged, so not resent: it may have been read.
    posts: u64,
    post_502: u64,
}

impl Tally {
    fn responses(&self) -> u64 {
        self.by_status.values().sum()
    }
    fn saw(&mut self, status: u16, want: u16, what: &str) {
        *self.by_status.entry(status).or_default() += 1;
        if status != want && self.unexpected.len() < 20 {
            self.unexpected
                .push(format!("{what}: got {status}, want {want}"));
        } else if status != want {
            self.unexpected.push(String::new());
        }
    }
    fn merge(&mut self, o: Tally) {
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.disconnects += o.disconnects;
        self.ka_stale += o.ka_stale;
        self.unexpected.extend(o.unexpected);
        self.errors.extend(o.errors);
        self.posts += o.posts;
        self.post_502 += o.post_502;
    }
}

fn headers_for(tenant: &str) -> Vec<(&str, &str)> {
    if tenant.is_empty() {
        vec![]
    } else {
        vec![("X-Tenant-Name", tenant)]
    }
}

struct KeepAlive {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(KeepAlive {
            w: c.try_clone()?,
            r: BufReader::new(c),
        })
    }
}

/// One request on a keep-alive connection. Err(true) = stale connection
/// (nothing read back, request not seen), Err(false) = real failure.
fn ka_request(ka: &mut KeepAlive, path: &str, tenant: &str) -> Result<Resp, (bool, String)> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: soak\r\n");
    if !tenant.is_empty() {
        req.push_str(&format!("X-Tenant-Name: {tenant}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = ka.w.write_all(req.as_bytes()) {
        return Err((true, e.to_string()));
    }
    match read_response(&mut ka.r, false) {
        Ok(r) => Ok(r),
        Err(e)
            if e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.kind() == std::io::ErrorKind::ConnectionReset =>
        {
            Err((true, e.to_string()))
        }
        Err(e) => Err((false, e.to_string())),
    }
}

fn client(idx: usize, proxy: SocketAddr, stop: Arc<AtomicBool>) -> Tally {
    let mut rng = Rng(0x9E3779B97F4A7C15 ^ (idx as u64 + 1).wrapping_mul(0xD1B54A32D192ED03));
    let mut t = Tally::default();
    let mut ka: Option<KeepAlive> = None;
    while !stop.load(Ordering::Relaxed) {
        let tenant = TENANTS[rng.below(TENANTS.len() as u64) as usize];
        let h = headers_for(tenant);
        let roll = rng.below(100);
        match roll {
            // documented and undocumented codes, on a keep-alive connection
            0..=29 => {
                let code = CODES[rng.below(CODES.len() as u64) as usize];
                let path = format!("/status/{code}");
                loop {
                    if ka.is_none() {
                        match KeepAlive::open(proxy) {
                            Ok(k) => ka = Some(k),
                            Err(e) => {
                                t.errors.push(format!("connect: {e}"));
                                break;
                            }
                        }
                    }
                    match ka_request(ka.as_mut().unwrap(), &path, tenant) {
                        Ok(r) => {
                            if r.header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                            {
                                ka = None;
                            }
                            t.saw(r.status, code, &path);
                            break;
                        }
                        Err((true, _)) => {
                            t.ka_stale += 1;
                            ka = None; // resend on a fresh connection
                        }
                        Err((false, e)) => {
                            t.errors.push(format!("keep-alive {path}: {e}"));
                            ka = None;
                            break;
                        }
                    }
                }
            }
            // the same on fresh connections
            30..=49 => {
                let code = CODES[rng.below(CODES.len() as u64) as usize];
                let path = format!("/status/{code}");
                match get(proxy, &path, &h) {
                    Ok(r) => t.saw(r.status, code, &path),
                    Err(e) => t.errors.push(format!("{path}: {e}")),
                }
            }
            50..=57 => {
                let ms = 10 + rng.below(60);
                let path = format!("/slow/{ms}");
                match get(proxy, &path, &h) {
                    Ok(r) => t.saw(r.status, 200, &path),
                    Err(e) => t.errors.push(format!("{path}: {e}")),
                }
            }
            58..=65 => {
                let body = vec![b'p'; rng.below(20_000) as usize];
                t.posts += 1;
                match request(proxy, "POST", "/echo", &h, &body) {
                    Ok(r) if r.status == 502 => {
                        *t.by_status.entry(502).or_default() += 1;
                        t.post_502 += 1;
                    }
                    Ok(r) => {
                        t.saw(r.status, 200, "/echo");
                        if r.body != body {
                            t.unexpected.push(format!(
                                "/echo body differs ({} vs {})",
                                r.body.len(),
                                body.len()
                            ));
                        }
                    }
                    Err(e) => t.errors.push(format!("/echo: {e}")),
                }
            }
            66..=73 => match get(proxy, "/close", &h) {
                Ok(r) => t.saw(r.status, 200, "/close"),
                Err(e) => t.errors.push(format!("/close: {e}")),
            },
            74..=79 => match get(proxy, "/reset", &h) {
                Ok(r) => t.saw(r.status, 502, "/reset"),
                Err(e) => t.errors.push(format!("/reset: {e}")),
            },
            80..=83 => match get(proxy, "/malformed", &h) {
                Ok(r) => t.saw(r.status, 502, "/malformed"),
                Err(e) => t.errors.push(format!("/malformed: {e}")),
            },
            84..=87 => {
                // headers then a truncated body: the client got a 200
                let mut req =
                    String::from("GET /reset-mid HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n");
                if !tenant.is_empty() {
                    req.push_str(&format!("X-Tenant-Name: {tenant}\r\n"));
                }
                req.push_str("\r\n");
                let out = raw(proxy, req.as_bytes(), Duration::from_secs(10));
                if out.starts_with(b"HTTP/1.1 ") && out.len() >= 12 {
                    let code = std::str::from_utf8(&out[9..12])
                        .ok()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    t.saw(code, 200, "/reset-mid");
                } else {
                    t.errors
                        .push(format!("/reset-mid: {:?}", String::from_utf8_lossy(&out)));
                }
            }
            _ => {
                // the client leaves while the upstream is still working
                match TcpStream::connect(proxy) {
                    Ok(mut c) => {
                        let mut req = String::from("GET /slow/300 HTTP/1.1\r\nHost: soak\r\n");
                        if !tenant.is_empty() {
                            req.push_str(&format!("X-Tenant-Name: {tenant}\r\n"));
                        }
                        req.push_str("\r\n");
                        if c.write_all(req.as_bytes()).is_ok() {
                            thread::sleep(Duration::from_millis(10 + rng.below(40)));
                            // Nothing can come back yet (300 ms upstream) unless
                            // the proxy failed fast; then it is a response.
                            c.set_nonblocking(true).ok();
                            let mut b = [0u8; 64];
                            match c.read(&mut b) {
                                Ok(n) if n >= 12 && b.starts_with(b"HTTP/1.1 ") => {
                                    let code = std::str::from_utf8(&b[9..12])
                                        .ok()
                                        .and_then(|c| c.parse().ok())
                                        .unwrap_or(0);
                                    t.saw(code, 200, "/slow/300 (answered before the client left)");
                                    continue;
                                }
                                Ok(n) if n > 0 => {
                                    t.errors.push("disconnect: partial bytes early".into());
                                    continue;
                                }
                                _ => {}
                            }
                            t.disconnects += 1;
                        } else {
                            t.errors.push("disconnect: write failed".into());
                        }
                    }
                    Err(e) => t.errors.push(format!("connect: {e}")),
                }
            }
        }
    }
    t
}

#[test]
fn soak() {
    let secs: u64 = std::env::var("STATUSWATCH_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(4);
    let warmup = Duration::from_secs((secs / 4).clamp(2, 10));
    let up = Upstream::start();
    let sw = Statuswatch::start_env(
        up.addr,
        // Short idle timeout so pooled upstream connections are closed by the
        // end and the fd count can be compared with the start.
        &[
            ("STATUSWATCH__PROXY__IDLE_TIMEOUT", "2s"),
            ("STATUSWATCH__PROXY__READ_TIMEOUT", "5s"),
        ],
    );
    let pid = sw.pid();
    let _ = sw.metrics();
    let fd_start = fd_count(pid);
    let rss_start = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(f64, u64, usize)>>> = Arc::default();
    let sampler = {
        let (stop, samples) = (stop.clone(), samples.clone());
        thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                samples.lock().unwrap().push((
                    t0.elapsed().as_secs_f64(),
                    rss_kib(pid),
                    fd_count(pid),
                ));
                thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let proxy = sw.proxy;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..THREADS)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || client(i, proxy, stop))
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for c in clients {
        total.merge(c.join().expect("client thread"));
    }
    let elapsed = t0.elapsed();
    sampler.join().unwrap();

    // Let every abandoned request finish (the 300 ms upstream) and tally.
    let expected = total.responses() + total.disconnects;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut m = sw.metrics();
    while Instant::now() < deadline
        && (m.sum(RESP, &[]) != expected as f64
            || m.get("statuswatch_requests_in_flight", &[]) != Some(0.0))
    {
        thread::sleep(Duration::from_millis(100));
        m = sw.metrics();
    }
    let tallied = m.sum(RESP, &[]) as u64;
    let tallied_499 = m.val(
        "statuswatch_undocumented_responses_total",
        &[("code", "499")],
    ) as u64;

    // fds back to the start once pooled upstream connections idle out.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fd_end = fd_count(pid);
    while fd_end > fd_start + FD_MARGIN && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        fd_end = fd_count(pid);
    }
    let rss_end = rss_kib(pid);

    // ---- report
    let samples = samples.lock().unwrap().clone();
    eprintln!("soak: {secs} s, {THREADS} client threads, warm-up {warmup:?}, ran {elapsed:?}");
    eprintln!("  t(s)   rss(KiB)  fds");
    for (t, rss, fds) in &samples {
        eprintln!("  {t:5.1}  {rss:8}  {fds:4}");
    }
    let after_warmup: Vec<_> = samples
        .iter()
        .filter(|(t, _, _)| *t >= warmup.as_secs_f64())
        .collect();
    let rss_warm = after_warmup.first().map_or(rss_start, |s| s.1);
    let rss_max = after_warmup
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(rss_warm)
        .max(rss_end);
    let growth = rss_max.saturating_sub(rss_warm);
    let fd_max = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let requests = total.responses() + total.disconnects;
    eprintln!(
        "  rss: start {rss_start} KiB, after warm-up {rss_warm} KiB, max {rss_max} KiB, end {rss_end} KiB, growth after warm-up {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB = {:.0} B per request at {requests} requests)",
        RSS_GROWTH_BOUND_KIB as f64 * 1024.0 / requests.max(1) as f64
    );
    eprintln!("  fds: start {fd_start}, max {fd_max}, end {fd_end} (margin {FD_MARGIN})");
    eprintln!(
        "  client observed {} responses + {} disconnects = {expected} ({:.0} req/s); keep-alive resends {}",
        total.responses(),
        total.disconnects,
        expected as f64 / elapsed.as_secs_f64(),
        total.ka_stale
    );
    eprintln!("  by status: {:?}", total.by_status);
    eprintln!(
        "  tallied: responses_total {tallied}, of which 499 {tallied_499} (client disconnects {}), upstream errors {:?}",
        total.disconnects,
        m.matching("statuswatch_upstream_errors_total", &[]).collect::<Vec<_>>()
    );

    // ---- assertions
    assert!(
        total.errors.is_empty(),
        "client errors: {:#?}",
        &total.errors[..total.errors.len().min(20)]
    );
    eprintln!(
        "POSTs {}; answered 502 after an abrupt upstream close (acknowledged, so not retried): {}",
        total.posts, total.post_502
    );
    assert!(
        total.post_502 * 50 <= total.posts.max(50),
        "too many POST 502s: {} of {}",
        total.post_502,
        total.posts
    );
    let unexpected: Vec<_> = total.unexpected.iter().filter(|s| !s.is_empty()).collect();
    assert!(
        total.unexpected.is_empty(),
        "{} unexpected statuses, e.g. {unexpected:#?}",
        total.unexpected.len()
    );
    assert_eq!(
        tallied, expected,
        "responses_total must equal responses seen + client disconnects"
    );
    assert_eq!(m.get("statuswatch_requests_in_flight", &[]), Some(0.0));
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "RSS grew {growth} KiB after warm-up (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
    assert!(
        fd_end <= fd_start + FD_MARGIN,
        "fds: start {fd_start}, end {fd_end}"
    );
    assert_eq!(get(sw.admin, "/healthz", &[]).unwrap().status, 200);
    assert_eq!(get(sw.proxy, "/status/200", &[]).unwrap().status, 200);
}
