//! The demo's traffic generator: REV23-like requests from the demo's studios,
//! at a fixed rate over a few keep-alive connections, to a proxy given by
//! address (`statuswatch demo`, `statuswatch demo-traffic`). It only sends the
//! request mix; the incidents are the demo upstream's script.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{rand_below, STUDIOS};

/// Requests per second the generator sends by default (`demo`, `demo-traffic`).
pub const RPS: u32 = 40;
/// Keep-alive connections the generator spreads them over.
pub const CONNECTIONS: u32 = 4;

/// Where the generator sends: `host:port`, the host an IP address or a name.
/// A name is resolved again on every connect, so a proxy that starts later,
/// or restarts under a new address (a container), is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(String);

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
        port.parse::<u16>()
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
        Ok(Target(s.to_string()))
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target(addr.to_string())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
/// [`super::SLOW_DELAY`]) before the connection is dropped.
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
    // tokio resolves the name here, on every connect
    let conn = TcpStream::connect(target.0.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
