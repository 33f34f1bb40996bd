//! The bundled demo: an upstream that speaks the REV23 API's status codes for
//! a handful of studios, with scripted incidents, and a traffic generator.
//!
//! `statuswatch demo` runs both next to the real proxy so a newcomer sees
//! real tallies within seconds; `statuswatch demo-upstream` runs the upstream
//! alone, as a controllable backend for tests (`GET /status/{code}` answers
//! that code, `?delay_ms=N` delays it); `statuswatch demo-traffic` runs the
//! generator alone against a proxy given by address (the compose demo).
//!
//! The incident script is the upstream's, timed from its start, so the
//! generator only sends the request mix. It repeats every 3 minutes:
//! `inkhouse` has a 5xx burst
//! from 0:30 to 1:15, `shadyink` is suspended (451) from 1:00 to 2:30, and
//! `blackcat` is always past due (402). One API answer in [`SLOW_ONE_IN`]
//! takes [`SLOW_DELAY`], a slow tail above the default latency objective
//! (500 ms), so the per-tenant latency panels have something to show.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::state::Shared;
use crate::status::{self, Origin, CELLS};

/// Studios of the demo and their share of traffic (weights).
pub const STUDIOS: [(&str, u32); 7] = [
    ("inkhouse", 20),
    ("rosegarden", 18),
    ("ironneedle", 15),
    ("linework", 12),
    ("bluelotus", 10),
    ("blackcat", 8),
    ("shadyink", 7),
];

/// Length of the incident script.
pub const CYCLE: Duration = Duration::from_secs(180);

/// One API answer (not `/status/{code}`, whose timing tests control) in
/// this many is slow...
pub const SLOW_ONE_IN: u32 = 100;
/// ...by this much.
pub const SLOW_DELAY: Duration = Duration::from_millis(700);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    (SEQ.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos) | 1
}

/// A cheap xorshift64* draw in 0..n (demo traffic only; not for anything secret).
pub fn rand_below(n: u32) -> u32 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n.max(1) as u64) as u32
    })
}

/// What the demo API answers, given the script's clock.
pub fn rev23_status(
    tenant: Option<&str>,
    method: &http::Method,
    has_key: bool,
    t: Duration,
) -> u16 {
    let phase = t.as_secs() % CYCLE.as_secs();
    let roll = rand_below(1000);
    if !has_key {
        return 401;
    }
    if roll < 5 {
        return 429; // rate limited: undocumented in the catalog
    }
    match tenant {
        Some("shadyink") if (60..150).contains(&phase) => return 451,
        Some("blackcat") if roll < 700 => return 402,
        Some("inkhouse") if (30..75).contains(&phase) => {
            if roll < 400 {
                return 500;
            }
            if roll < 600 {
                return 503;
            }
        }
        _ => {}
    }
    if roll >= 995 {
        return 500; // the rare background error
    }
    if *method == http::Method::POST {
        match roll {
            r if r < 80 => 400,
            r if r < 130 => 409,
            _ => 201,
        }
    } else {
        match roll {
            r if r < 50 => 404,
            r if r < 60 => 403,
            r if r < 70 => 400,
            _ => 200,
        }
    }
}

fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// The demo upstream.
#[derive(Debug)]
pub struct DemoUpstream {
    start: Instant,
}

impl Default for DemoUpstream {
    fn default() -> Self {
        DemoUpstream {
            start: Instant::now(),
        }
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[async_trait]
impl ServeHttp for DemoUpstream {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Drain any request body so the connection can be reused.
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
        }
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let tenant = req
            .headers
            .get("x-tenant-name")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let code = if let Some(code) = path.strip_prefix("/status/") {
            code.parse::<u16>()
                .ok()
                .filter(|c| (200..=599).contains(c))
                .unwrap_or(400)
        } else {
            if rand_below(SLOW_ONE_IN) == 0 {
                tokio::time::sleep(SLOW_DELAY).await;
            }
            rev23_status(
                tenant.as_deref(),
                &req.method,
                req.headers.contains_key("x-api-key"),
                self.start.elapsed(),
            )
        };
        if let Some(ms) =
            query_param(query.as_deref(), "delay_ms").and_then(|v| v.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
        }
        let body = format!(
            "{{\"status\":{code},\"reason\":\"{}\",\"tenant\":\"{}\",\"path\":{:?},\"received_bytes\":{body_len}}}\n",
            reason(code),
            tenant.as_deref().unwrap_or(""),
            path
        )
        .into_bytes();
        Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// Requests per second the generator sends by default (`demo`, `demo-traffic`).
pub const RPS: u32 = 40;
/// Keep-alive connections the generator spreads them over.
pub const CONNECTIONS: u32 = 4;

/// Where the generator sends: `host:port`, the host an IP address or a name.
/// A name is resolved again on every connect, so a proxy that starts later,
/// or restarts under a new address (a container), is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
}

/// A `--target` that is not `host:port`.
#[derive(Debug, thiserror::Error)]
#[error("expected host:port (e.g. statuswatch:8080 or 127.0.0.1:8080), got {got:?}: {why}")]
pub struct BadTarget {
    got: String,
    why: &'static str,
}

impl FromStr for Target {
    type Err = BadTarget;

    fn from_str(s: &str) -> Result<Target, BadTarget> {
        let bad = |why| BadTarget {
            got: s.to_string(),
            why,
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return (addr.port() != 0)
                .then(|| Target::from(addr))
                .ok_or(bad("port 0"));
        }
        if s.contains("://") || s.contains('/') {
            return Err(bad("no scheme or path"));
        }
        let (host, port) = s.rsplit_once(':').ok_or(bad("no port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(bad("the port must be 1..65535"))?;
        // A DNS name (compose service names may hold '_'); an IPv6 address
        // needs brackets, which the SocketAddr parse above took.
        let name_ok = !host.is_empty()
            && !host.starts_with(['-', '.'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !name_ok {
            return Err(bad("the host must be an IP address or a DNS name"));
        }
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Traffic generator: keep-alive clients sending a REV23-like mix through the proxy.
#[derive(Debug)]
pub struct Traffic {
    pub target: Target,
    pub rps: u32,
    pub connections: u32,
    /// Log what it sent and got (by class) this often; None = never (`demo`
    /// prints the proxy's own tallies instead).
    pub report_every: Option<Duration>,
}

/// How long a connect may take before the generator tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one exchange may take (the demo API's slowest answer is
/// [`SLOW_DELAY`]) before the connection is dropped.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause of one connection after a failed connect.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whether the target was reachable at the last attempt (0: not tried yet),
/// so that only a change is logged, once, not every connection's every retry.
#[derive(Debug, Default)]
struct Reach(AtomicU8);

impl Reach {
    const UP: u8 = 1;
    const DOWN: u8 = 2;

    fn set(&self, to: u8) -> bool {
        self.0.swap(to, Ordering::Relaxed) != to
    }
}

/// Responses by class (index 1..=5) and failed exchanges (index 0).
#[derive(Debug, Default)]
struct Tally([AtomicU64; 6]);

impl Tally {
    fn take(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.0[i].swap(0, Ordering::Relaxed))
    }
}

async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    let conn = TcpStream::connect((target.host.as_str(), target.port));
    match tokio::time::timeout(CONNECT_TIMEOUT, conn).await {
        Ok(res) => res,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

const PATHS: [&str; 5] = [
    "/api/v2/customers",
    "/api/v2/appointments",
    "/api/v2/artists",
    "/api/v2/invoices",
    "/api/v2/consent-forms",
];

fn pick_studio() -> &'static str {
    let total: u32 = STUDIOS.iter().map(|(_, w)| w).sum();
    let mut r = rand_below(total);
    for (name, w) in STUDIOS {
        if r < w {
            return name;
        }
        r -= w;
    }
    STUDIOS[0].0
}

fn demo_request() -> String {
    let roll = rand_below(1000);
    let post = rand_below(4) == 0;
    let path = PATHS[rand_below(PATHS.len() as u32) as usize];
    let mut req = format!(
        "{} {path} HTTP/1.1\r\nHost: api.rev23.com\r\nUser-Agent: statuswatch-demo\r\n",
        if post { "POST" } else { "GET" }
    );
    match roll {
        0..=9 => {} // no tenant header at all
        10..=14 => req.push_str("X-Tenant-Name: Not_A_Studio!\r\n"),
        _ => {
            req.push_str("X-Tenant-Name: ");
            req.push_str(pick_studio());
            req.push_str("\r\n");
        }
    }
    if roll % 50 != 7 {
        req.push_str("X-Api-Key: demo_k3y_0123456789abcdef\r\n");
    }
    if post {
        let body = "{\"name\":\"Ada\",\"style\":\"blackwork\"}";
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    req
}

/// Send one request on a keep-alive connection and read the whole response.
async fn exchange(conn: &mut TcpStream, req: &str, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    conn.write_all(req.as_bytes()).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let code = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(0);
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            if head.contains("connection: close") {
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
            return Ok(code);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[async_trait]
impl BackgroundService for Traffic {
    async fn start(&self, shutdown: ShutdownWatch) {
        let per_conn =
            Duration::from_secs_f64(self.connections.max(1) as f64 / self.rps.max(1) as f64);
        let reach = Arc::new(Reach::default());
        let tally = Arc::new(Tally::default());
        let mut tasks = Vec::new();
        for _ in 0..self.connections.max(1) {
            let target = self.target.clone();
            let (reach, tally) = (reach.clone(), tally.clone());
            let mut shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::with_capacity(8192);
                let mut conn: Option<TcpStream> = None;
                let mut tick = tokio::time::interval(per_conn);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    if conn.is_none() {
                        match connect(&target).await {
                            Ok(c) => {
                                if reach.set(Reach::UP) {
                                    tracing::info!(%target, "demo traffic: connected");
                                }
                                conn = Some(c);
                            }
                            Err(e) => {
                                if reach.set(Reach::DOWN) {
                                    tracing::warn!(%target, error = %e, "demo traffic: cannot connect, retrying every second");
                                }
                                tokio::select! {
                                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                                    _ = shutdown.changed() => return,
                                }
                                // no burst of the ticks missed while away
                                tick.reset();
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    let req = demo_request();
                    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(c, &req, &mut buf)).await {
                        Ok(Ok(code)) => {
                            let class = (code / 100).clamp(1, 5) as usize;
                            tally.0[class].fetch_add(1, Ordering::Relaxed);
                        }
                        // closed by the proxy (a restart, connection: close) or stuck
                        Ok(Err(_)) | Err(_) => {
                            tally.0[0].fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            }));
        }
        if let Some(every) = self.report_every {
            let target = self.target.clone();
            let mut shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    let [failed, c1, c2, c3, c4, c5] = tally.take();
                    tracing::info!(
                        %target,
                        "demo traffic: last {}s: 1xx={c1} 2xx={c2} 3xx={c3} 4xx={c4} 5xx={c5} failed={failed}",
                        every.as_secs()
                    );
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Prints a one-line summary of the tallies every few seconds.
pub struct Summary {
    pub shared: &'static Shared,
    pub every: Duration,
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Totals by documented code (and "undocumented") across tenants and origins.
pub fn totals(shared: &Shared) -> Vec<(String, u64)> {
    let live = shared.live.load();
    let mut by_cell = [0u64; CELLS];
    shared.registry.for_each(|_, _, slot| {
        for (cell, n) in by_cell.iter_mut().enumerate() {
            *n +=
                slot.counters.get(Origin::Upstream, cell) + slot.counters.get(Origin::Proxy, cell);
        }
    });
    let mut out: Vec<(String, u64)> = live
        .catalog
        .entries()
        .iter()
        .map(|e| (e.code.to_string(), by_cell[status::cell_of(e.code)]))
        .collect();
    let undocumented: u64 = (0..CELLS)
        .filter(|c| live.catalog.documented(*c).is_none())
        .map(|c| by_cell[c])
        .sum();
    out.push(("undocumented".into(), undocumented));
    out
}

#[async_trait]
impl BackgroundService for Summary {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let line: Vec<String> = totals(self.shared)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            let snap = self.shared.detector.load();
            let spiking: Vec<String> = snap
                .signals
                .iter()
                .flat_map(|s| {
                    let overall = s.overall.active.then(|| format!("{}:__all__", s.name));
                    overall
                        .into_iter()
                        .chain(s.active.iter().map(move |(t, _)| format!("{}:{t}", s.name)))
                })
                .collect();
            println!(
                "tallies {} | spiking [{}] | tenants {}",
                line.join(" "),
                spiking.join(", "),
                self.shared.registry.tracked()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_produces_the_advertised_codes() {
        let get = http::Method::GET;
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..20_000u64 {
            let t = Duration::from_secs(i % 180);
            let studio = STUDIOS[(i % 7) as usize].0;
            seen.insert(rev23_status(Some(studio), &get, i % 97 != 0, t));
            seen.insert(rev23_status(Some(studio), &http::Method::POST, true, t));
        }
        for code in [200, 201, 400, 401, 402, 403, 404, 409, 451, 500, 503, 429] {
            assert!(seen.contains(&code), "demo never answers {code}");
        }
    }

    #[test]
    fn suspension_and_burst_follow_the_script() {
        let get = http::Method::GET;
        let suspended = (0..1000)
            .filter(|_| rev23_status(Some("shadyink"), &get, true, Duration::from_secs(100)) == 451)
            .count();
        assert!(suspended > 950, "{suspended}");
        let calm = (0..1000)
            .filter(|_| rev23_status(Some("inkhouse"), &get, true, Duration::from_secs(10)) >= 500)
            .count();
        let burst = (0..1000)
            .filter(|_| rev23_status(Some("inkhouse"), &get, true, Duration::from_secs(40)) >= 500)
            .count();
        assert!(burst > 400 && calm < 50, "burst {burst} calm {calm}");
    }

    #[test]
    fn targets() {
        for (text, shown) in [
            ("statuswatch:8080", "statuswatch:8080"),
            ("demo_upstream.local:1", "demo_upstream.local:1"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:8080", "[::1]:8080"),
        ] {
            let t: Target = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.to_string(), shown);
        }
        for bad in [
            "",
            "statuswatch",
            ":80",
            "x:0",
            "x:65536",
            "x:http",
            "-x:80",
            "::1:80",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
        let e = "http://x:80".parse::<Target>().unwrap_err().to_string();
        assert!(e.contains("no scheme or path"), "{e}");
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&delay_ms=20"), "delay_ms"), Some("20"));
        assert_eq!(query_param(None, "delay_ms"), None);
    }
}
