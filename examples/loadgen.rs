//! An open-loop HTTP/1.1 load generator for the fixed-rate latency runs of
//! `bench/run.sh`, used when `oha` is not installed.
//!
//! Why it exists: a closed-loop tool (wrk, even paced with `delay()`) sends the
//! next request only after the previous one came back and times each request
//! from its actual send. When the server stalls, the requests that *should*
//! have been sent during the stall are never sent, so they are never measured:
//! one 1 s stall shows up as a single slow sample per connection ("coordinated
//! omission"). wrk 4 patches its histogram afterwards with synthetic samples
//! spaced at the run's *average* per-connection interval, a guess; and paced
//! wrk does not hold the asked rate (each connection waits delay + latency).
//! Here every request has a time it was *intended* to be sent, fixed in advance
//! by the rate (wrk2-style), and its latency is counted from that time to the
//! end of its response. A connection that falls behind sends its backlog at
//! once, and each of those requests is charged for the time it waited.
//!
//! Request `i` on connection `c` (of `C`) is due at `start + (i*C + c) / rate`,
//! so the connections interleave evenly. Keep-alive, one request outstanding
//! per connection; responses are read in full (Content-Length, chunked, or
//! until close). Everything runs on one current-thread tokio runtime (the
//! bench pins the generator to one core); sends are timed with a timerfd per
//! connection, because tokio's timer wheel has 1 ms granularity and any wake-up
//! after the due time would be charged as latency.
//!
//! Output: one line on stdout, the same keys `bench/run.sh` reads from wrk
//! (`SWBENCH requests=N errors=E p50=US p99=US p999=US ...`, microseconds),
//! and a human-readable summary on stderr.
//!
//! ```text
//! cargo build --release --example loadgen
//! target/release/examples/loadgen --url http://127.0.0.1:8080/status/200 --rate 2000 \
//!     --connections 32 --duration 10 --warmup 1 --header 'X-Tenant-Name: t1'
//! ```

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Open-loop HTTP/1.1 load generator: fixed rate, latency from intended send time"
)]
struct Args {
    /// Target, plain HTTP only: http://host[:port]/path
    #[arg(long)]
    url: String,
    /// Total requests per second over all connections.
    #[arg(long, value_parser = parse_rate)]
    rate: f64,
    /// Keep-alive connections, one request outstanding on each. Each can carry at
    /// most 1 / latency requests per second, so give it enough for the rate.
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Measured duration (seconds, or e.g. "500ms"), after the warm-up.
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_secs)]
    duration: Duration,
    /// Time at the start whose requests are sent but not counted.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    warmup: Duration,
    /// Per-request timeout (connect, send and full response); a timed-out request
    /// is an error and its connection is reopened.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    timeout: Duration,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of requests per second"))?;
    if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
        return Err(format!("rate must be > 0 and <= 10000000, got {s}"));
    }
    Ok(r)
}

/// Plain seconds ("2.5") or a humantime duration ("500ms", "2s").
fn parse_secs(s: &str) -> Result<Duration, String> {
    if let Ok(v) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(v)
            .map_err(|_| format!("'{s}' is not a valid number of seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is neither seconds nor a duration like 500ms: {e}"))
}

/// `http://host[:port]/path` split into what the request needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    /// What goes into the Host header (as written in the URL).
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported (no TLS), got '{url}'"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("'{url}': expected http://host[:port]/path"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "'{url}': the path must not contain spaces or control characters"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{url}': unclosed '[' in the host"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("'{url}': expected ':' after ']'"))?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("'{url}': bad port '{p}'"))?,
    };
    if host.is_empty() {
        return Err(format!("'{url}': empty host"));
    }
    Ok(Target {
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

/// The request bytes, built once and written as-is for every request.
fn build_request(target: &Target, headers: &[String]) -> Result<Vec<u8>, String> {
    let mut extra = String::new();
    let mut has_host = false;
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header '{h}': expected 'Name: value'"))?;
        let value = value.trim();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("header '{h}': bad header name '{name}'"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header '{h}': control characters in the value"));
        }
        has_host |= name.eq_ignore_ascii_case("host");
        // Writing to a String cannot fail.
        let _ = write!(extra, "{name}: {value}\r\n");
    }
    let mut req = format!("GET {} HTTP/1.1\r\n", target.path);
    if !has_host {
        let _ = write!(req, "Host: {}\r\n", target.authority);
    }
    req.push_str("User-Agent: statuswatch-loadgen\r\n");
    req.push_str(&extra);
    req.push_str("\r\n");
    Ok(req.into_bytes())
}

// ------------------------------------------------------------------ schedule

/// When the `i`-th request of connection `conn` is due, from the start of the
/// run: the `i*C + c`-th tick of a clock that ticks `rate` times per second.
fn intended_offset(i: u64, conn: u64, conns: u64, rate: f64) -> Duration {
    let k = i.saturating_mul(conns).saturating_add(conn);
    // f64 keeps nanosecond precision up to 2^53 ns (~104 days) from the start.
    Duration::from_nanos((k as f64 * 1e9 / rate) as u64)
}

/// Latency charged to a request: from when it was due, not from when it went
/// out, so time spent queued behind a slow response counts.
fn charged_latency(intended: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended)
}

fn as_us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Nearest-rank percentile of sorted samples; `per_100k` is the percentile in
/// thousandths of a percent (99.9 % = 99_900) so the rank is exact integer math
/// (0.999 * 1000 in f64 rounds up to the wrong rank).
fn percentile(sorted: &[u32], per_100k: u64) -> u32 {
    let n = sorted.len() as u64;
    if n == 0 {
        return 0;
    }
    let rank = (n * per_100k).div_ceil(100_000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

// ------------------------------------------------------------------ response framing

/// Why a response could not be read. Counted per kind; the connection is reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameError {
    Malformed,
    HeadTooLarge,
    BadContentLength,
    BadChunk,
    /// 101 Switching Protocols: nothing this tool can follow.
    Upgrade,
    /// The peer closed before the response was complete.
    Truncated,
    /// Bytes after a complete response with no request outstanding.
    Unsolicited,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailer,
    UntilClose,
    Done,
}

/// How much of the input `feed` used, and whether the response is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Feed {
    consumed: usize,
    done: bool,
}

/// Incremental HTTP/1.1 response framer. Body bytes are consumed and dropped
/// as they arrive; only an incomplete head or chunk-size line is kept by the
/// caller between reads.
#[derive(Debug)]
struct ResponseParser {
    phase: Phase,
    status: u16,
    close: bool,
}

impl ResponseParser {
    fn new() -> Self {
        Self {
            phase: Phase::Head,
            status: 0,
            close: false,
        }
    }

    /// Consumes as much of `data` (the unconsumed bytes received so far) as it
    /// can. `done` = a whole response ended at `consumed`.
    fn feed(&mut self, data: &[u8]) -> Result<Feed, FrameError> {
        let mut pos = 0;
        loop {
            let avail = &data[pos..];
            let more = Feed {
                consumed: pos,
                done: false,
            };
            match self.phase {
                Phase::Done => {
                    return Ok(Feed {
                        consumed: pos,
                        done: true,
                    })
                }
                Phase::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    let mut resp = httparse::Response::new(&mut headers);
                    match resp.parse(avail) {
                        Ok(httparse::Status::Partial) => {
                            if avail.len() > MAX_HEAD {
                                return Err(FrameError::HeadTooLarge);
                            }
                            return Ok(more);
                        }
                        Ok(httparse::Status::Complete(n)) => {
                            pos += n;
                            self.on_head(&resp)?;
                        }
                        Err(httparse::Error::TooManyHeaders) => {
                            return Err(FrameError::HeadTooLarge)
                        }
                        Err(_) => return Err(FrameError::Malformed),
                    }
                }
                Phase::Fixed(rem) | Phase::ChunkData(rem) => {
                    let take = rem.min(avail.len() as u64);
                    pos += take as usize;
                    let left = rem - take;
                    self.phase = match (self.phase, left) {
                        (Phase::Fixed(_), 0) => Phase::Done,
                        (Phase::Fixed(_), l) => Phase::Fixed(l),
                        (_, 0) => Phase::ChunkDataEnd,
                        (_, l) => Phase::ChunkData(l),
                    };
                    if left > 0 {
                        return Ok(Feed {
                            consumed: pos,
                            done: false,
                        });
                    }
                }
                Phase::ChunkDataEnd => {
                    if avail.len() < 2 {
                        return Ok(more);
                    }
                    if &avail[..2] != b"\r\n" {
                        return Err(FrameError::BadChunk);
                    }
                    pos += 2;
                    self.phase = Phase::ChunkSize;
                }
                Phase::ChunkSize | Phase::Trailer => {
                    let Some(eol) = avail.windows(2).position(|w| w == b"\r\n") else {
                        if avail.len() > MAX_LINE {
                            return Err(FrameError::BadChunk);
                        }
                        return Ok(more);
                    };
                    let line = &avail[..eol];
                    pos += eol + 2;
                    if self.phase == Phase::Trailer {
                        // Trailer fields are skipped; an empty line ends the message.
                        if line.is_empty() {
                            self.phase = Phase::Done;
                        }
                    } else {
                        let size = parse_chunk_size(line)?;
                        self.phase = if size == 0 {
                            Phase::Trailer
                        } else {
                            Phase::ChunkData(size)
                        };
                    }
                }
                Phase::UntilClose => {
                    return Ok(Feed {
                        consumed: data.len(),
                        done: false,
                    })
                }
            }
        }
    }

    fn on_head(&mut self, resp: &httparse::Response<'_, '_>) -> Result<(), FrameError> {
        let code = resp.code.ok_or(FrameError::Malformed)?;
        if code == 101 {
            return Err(FrameError::Upgrade);
        }
        if (100..200).contains(&code) {
            // Interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(());
        }
        self.status = code;
        let mut keep_alive = resp.version == Some(1);
        let mut chunked = None;
        let mut length: Option<u64> = None;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                for t in h.value.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                        keep_alive = true;
                    }
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked only frames the body when it is the last coding (RFC 9112 6.3).
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(FrameError::BadContentLength)?;
                if length.is_some_and(|l| l != v) {
                    return Err(FrameError::BadContentLength);
                }
                length = Some(v);
            }
        }
        self.close = !keep_alive;
        self.phase = if code == 204 || code == 304 {
            Phase::Done
        } else {
            match (chunked, length) {
                // Transfer-Encoding wins over Content-Length.
                (Some(true), _) => Phase::ChunkSize,
                (Some(false), _) | (None, None) => {
                    self.close = true;
                    Phase::UntilClose
                }
                (None, Some(0)) => Phase::Done,
                (None, Some(n)) => Phase::Fixed(n),
            }
        };
        Ok(())
    }

    /// The peer closed the connection: fine only for a body delimited by close.
    fn eof(&mut self) -> Result<(), FrameError> {
        if self.phase == Phase::UntilClose {
            self.phase = Phase::Done;
            self.close = true;
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, FrameError> {
    // Chunk extensions (";name=value") are ignored.
    let end = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let hex = &line[..end];
    if hex.is_empty() || hex.len() > 15 {
        return Err(FrameError::BadChunk);
    }
    let mut v = 0u64;
    for &b in hex {
        let d = (b as char).to_digit(16).ok_or(FrameError::BadChunk)?;
        v = v * 16 + u64::from(d);
    }
    Ok(v)
}

/// A complete response: its status and whether the server will close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Response {
    status: u16,
    close: bool,
}

#[derive(Debug)]
enum ExchangeError {
    Connect(io::Error),
    Io(io::Error),
    Frame(FrameError),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Io(e) => write!(f, "i/o: {e}"),
            Self::Frame(e) => write!(f, "response: {e:?}"),
        }
    }
}

/// Reads one full response from `r`. `buf` is reused across requests (cleared
/// here) so the steady state allocates nothing.
async fn read_response<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Response, ExchangeError> {
    buf.clear();
    let mut parser = ResponseParser::new();
    let mut start = 0;
    loop {
        let f = parser.feed(&buf[start..]).map_err(ExchangeError::Frame)?;
        start += f.consumed;
        if f.done {
            if start != buf.len() {
                return Err(ExchangeError::Frame(FrameError::Unsolicited));
            }
            break;
        }
        // Keep only what the parser still needs (a partial head or line).
        buf.drain(..start);
        start = 0;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let n = r.read_buf(buf).await.map_err(ExchangeError::Io)?;
        if n == 0 {
            parser.eof().map_err(ExchangeError::Frame)?;
        }
    }
    Ok(Response {
        status: parser.status,
        close: parser.close,
    })
}

async fn exchange(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Response, ExchangeError> {
    let stream = match conn {
        Some(s) => s,
        None => {
            let s = TcpStream::connect(addr)
                .await
                .map_err(ExchangeError::Connect)?;
            s.set_nodelay(true).map_err(ExchangeError::Connect)?;
            conn.insert(s)
        }
    };
    stream.write_all(request).await.map_err(ExchangeError::Io)?;
    read_response(stream, buf).await
}

// ------------------------------------------------------------------ precise sleep

#[cfg(target_os = "linux")]
mod timer {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A timerfd (microsecond precision; tokio's own timers round to 1 ms).
    pub struct Timer {
        fd: AsyncFd<OwnedFd>,
    }

    impl Timer {
        pub fn new() -> io::Result<Self> {
            // SAFETY: a plain syscall; the result is checked before it is owned.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: the OwnedFd moves into the AsyncFd and stays open until it is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
            Ok(Self { fd })
        }

        pub async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Ok(());
            }
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
                    // < 1e9, fits every c_long.
                    tv_nsec: wait.subsec_nanos() as libc::c_long,
                },
            };
            // SAFETY: valid fd and itimerspec; the old value is not wanted (null).
            let rc = unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            loop {
                let mut guard = self.fd.readable().await?;
                let res = guard.try_io(|fd| {
                    let mut expirations = [0u8; 8];
                    // SAFETY: reads 8 bytes into an 8-byte buffer.
                    let n =
                        unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                if let Ok(r) = res {
                    return r;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod timer {
    use std::io;
    use std::time::Instant;

    /// Fallback: tokio's timer (1 ms granularity; latencies include up to 1 ms of send lag).
    pub struct Timer;

    impl Timer {
        pub fn new() -> io::Result<Self> {
            Ok(Self)
        }

        pub async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
            tokio::time::sleep_until(deadline.into()).await;
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ the run

/// Everything a connection task needs, shared read-only.
struct Plan {
    addr: SocketAddr,
    request: Vec<u8>,
    conns: u64,
    rate: f64,
    start: Instant,
    /// Requests due before this offset are warm-up (sent, not counted).
    measure_from: Duration,
    /// No request is due at or after this offset.
    end: Duration,
    /// A connection still behind schedule at `end + timeout` gives up on its
    /// backlog (counted as unsent) instead of running on indefinitely.
    give_up: Duration,
    timeout: Duration,
}

const ERR_CONNECT: usize = 0;
const ERR_IO: usize = 1;
const ERR_TIMEOUT: usize = 2;
const ERR_PROTOCOL: usize = 3;
const ERR_NAMES: [&str; 4] = ["connect", "io", "timeout", "protocol"];

/// One connection's tallies for the measured window.
#[derive(Debug, Default)]
struct ConnStats {
    /// Due time -> response complete, µs.
    latency: Vec<u32>,
    /// Actual send -> response complete, µs: what a closed-loop tool reports.
    service: Vec<u32>,
    errors: [u64; 4],
    /// Due requests never sent because the connection gave up on its backlog.
    unsent: u64,
    /// Requests whose due time passed while the previous one was still out.
    late: u64,
    /// Status classes 1xx..5xx at [1..=5], anything else at [0].
    status: [u64; 6],
    /// How far after its due time each on-schedule send actually went out, µs:
    /// this tool's timer and scheduling lag, which is part of the charged
    /// latency (large when its core is busy with something else).
    lag: Vec<u32>,
    /// The first error, for the summary (formatted once, off the happy path).
    first_error: Option<String>,
}

impl ConnStats {
    fn merge(&mut self, o: ConnStats) {
        self.latency.extend_from_slice(&o.latency);
        self.service.extend_from_slice(&o.service);
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        self.unsent += o.unsent;
        self.late += o.late;
        self.lag.extend_from_slice(&o.lag);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

async fn drive(c: u64, plan: Arc<Plan>, mut conn: Option<TcpStream>) -> io::Result<ConnStats> {
    let timer = timer::Timer::new()?;
    let expected = (plan.rate * plan.end.saturating_sub(plan.measure_from).as_secs_f64()
        / plan.conns as f64) as usize;
    // Preallocated so recording never allocates mid-run (capped; beyond it the Vec grows).
    let cap = expected.saturating_add(16).min(1 << 22);
    let mut st = ConnStats {
        latency: Vec::with_capacity(cap),
        service: Vec::with_capacity(cap),
        lag: Vec::with_capacity(cap),
        ..ConnStats::default()
    };
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut i = 0u64;
    loop {
        let due = intended_offset(i, c, plan.conns, plan.rate);
        if due >= plan.end {
            break;
        }
        let measured = due >= plan.measure_from;
        let intended = plan.start + due;
        let now = Instant::now();
        let late = now > intended;
        if late {
            if now.duration_since(plan.start) >= plan.give_up {
                // Count this and every later due request of this connection as unsent.
                let mut j = i;
                while intended_offset(j, c, plan.conns, plan.rate) < plan.end {
                    if intended_offset(j, c, plan.conns, plan.rate) >= plan.measure_from {
                        st.unsent += 1;
                    }
                    j += 1;
                }
                break;
            }
        } else {
            timer.sleep_until(intended).await?;
        }
        let sent = Instant::now();
        let res = tokio::time::timeout(
            plan.timeout,
            exchange(&mut conn, plan.addr, &plan.request, &mut buf),
        )
        .await;
        let done = Instant::now();
        let ok = match res {
            Ok(Ok(resp)) => {
                if resp.close {
                    conn = None;
                }
                Some(resp.status)
            }
            Ok(Err(e)) => {
                conn = None;
                if measured {
                    st.errors[match e {
                        ExchangeError::Connect(_) => ERR_CONNECT,
                        ExchangeError::Io(_) => ERR_IO,
                        ExchangeError::Frame(_) => ERR_PROTOCOL,
                    }] += 1;
                    st.first_error.get_or_insert_with(|| e.to_string());
                }
                None
            }
            Err(_elapsed) => {
                conn = None;
                if measured {
                    st.errors[ERR_TIMEOUT] += 1;
                    st.first_error.get_or_insert_with(|| {
                        format!("no full response within {:?}", plan.timeout)
                    });
                }
                None
            }
        };
        if measured {
            if late {
                st.late += 1;
            } else {
                st.lag.push(as_us(sent.saturating_duration_since(intended)));
            }
            if let Some(status) = ok {
                st.latency.push(as_us(charged_latency(intended, done)));
                st.service.push(as_us(done.saturating_duration_since(sent)));
                let class = usize::from(status / 100);
                st.status[if (1..=5).contains(&class) { class } else { 0 }] += 1;
            }
        }
        i += 1;
    }
    Ok(st)
}

/// Runs the whole plan: `conns` tasks on the current runtime, merged tallies.
async fn run(
    addr: SocketAddr,
    request: Vec<u8>,
    rate: f64,
    conns: u32,
    warmup: Duration,
    duration: Duration,
    timeout: Duration,
) -> io::Result<ConnStats> {
    // Connect first so the schedule does not start with C handshakes queued.
    let mut streams = Vec::with_capacity(conns as usize);
    let mut first_err = None;
    for _ in 0..conns {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                streams.push(Some(s));
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
                streams.push(None);
            }
            Err(_) => {
                first_err.get_or_insert(io::Error::new(io::ErrorKind::TimedOut, "connect"));
                streams.push(None);
            }
        }
    }
    if streams.iter().all(Option::is_none) {
        let e = first_err.unwrap_or_else(|| io::Error::other("no connection"));
        return Err(io::Error::new(
            e.kind(),
            format!("cannot connect to {addr}: {e}"),
        ));
    }
    let end = warmup + duration;
    let plan = Arc::new(Plan {
        addr,
        request,
        conns: u64::from(conns),
        rate,
        start: Instant::now(),
        measure_from: warmup,
        end,
        give_up: end + timeout,
        timeout,
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, s)| tokio::spawn(drive(c as u64, Arc::clone(&plan), s)))
        .collect();
    let mut total = ConnStats::default();
    for t in tasks {
        let st = t.await.map_err(io::Error::other)??;
        total.merge(st);
    }
    Ok(total)
}

/// The stdout line and the stderr summary.
fn report(mut st: ConnStats, rate: f64, conns: u32, duration: Duration) -> (String, String) {
    st.latency.sort_unstable();
    st.service.sort_unstable();
    st.lag.sort_unstable();
    let (lat, svc, lag) = (&st.latency, &st.service, &st.lag);
    let requests = lat.len() as u64;
    let errors: u64 = st.errors.iter().sum();
    let mean = |v: &[u32]| {
        let n = v.len() as u64;
        v.iter()
            .map(|&x| u64::from(x))
            .sum::<u64>()
            .checked_div(n)
            .unwrap_or(0)
    };
    let lat_mean = mean(lat);
    let lag_mean = mean(lag);
    let p = |q| percentile(lat, q);
    let sp = |q| percentile(svc, q);
    let max = lat.last().copied().unwrap_or(0);
    let lag_max = lag.last().copied().unwrap_or(0);
    let achieved = requests as f64 / duration.as_secs_f64();
    let status_errors = st.status[4] + st.status[5];
    let line = format!(
        "SWBENCH requests={requests} errors={errors} p50={} p99={} p999={} max={max} mean={lat_mean} \
         late={} unsent={} status_errors={status_errors} s1xx={} s2xx={} s3xx={} s4xx={} s5xx={} \
         s_other={} duration_us={} rate={rate} rate_achieved={achieved:.1} connections={conns} \
         svc_p50={} svc_p99={} svc_p999={} lag_mean={lag_mean} lag_p99={} lag_max={lag_max}",
        p(50_000),
        p(99_000),
        p(99_900),
        st.late,
        st.unsent,
        st.status[1],
        st.status[2],
        st.status[3],
        st.status[4],
        st.status[5],
        st.status[0],
        duration.as_micros(),
        sp(50_000),
        sp(99_000),
        sp(99_900),
        percentile(lag, 99_000),
    );
    let mut human = format!(
        "loadgen: {requests} responses in {:.1} s ({achieved:.1}/s of {rate}/s asked, {conns} connections)\n\
         latency from intended send (coordinated-omission corrected), µs:\n  \
         p50 {}  p99 {}  p99.9 {}  max {max}  mean {lat_mean}\n\
         service time from actual send (what a closed loop would report), µs:\n  \
         p50 {}  p99 {}  p99.9 {}  max {}\n\
         sends behind schedule: {} of {}; this tool's lag on the others, µs: mean {lag_mean}  p99 {}  max {lag_max}\n\
         status: 1xx {} 2xx {} 3xx {} 4xx {} 5xx {} other {}\n",
        duration.as_secs_f64(),
        p(50_000),
        p(99_000),
        p(99_900),
        sp(50_000),
        sp(99_000),
        sp(99_900),
        svc.last().copied().unwrap_or(0),
        st.late,
        st.late + lag.len() as u64,
        percentile(lag, 99_000),
        st.status[1],
        st.status[2],
        st.status[3],
        st.status[4],
        st.status[5],
        st.status[0],
    );
    let _ = write!(human, "errors: {errors}");
    for (name, n) in ERR_NAMES.iter().zip(st.errors) {
        if n > 0 {
            let _ = write!(human, " ({name} {n})");
        }
    }
    if let Some(e) = &st.first_error {
        let _ = write!(human, "; first: {e}");
    }
    if st.unsent > 0 {
        let _ = write!(
            human,
            "\nwarning: {} due requests were never sent (still behind schedule at the end + timeout); \
             the percentiles understate the latency",
            st.unsent
        );
    }
    (line, human)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match parse_url(&args.url) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let request = match build_request(&target, &args.headers) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if args.duration.is_zero() {
        return fail("--duration must be > 0");
    }
    if args.timeout.is_zero() {
        return fail("--timeout must be > 0");
    }
    let addr = match (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        Ok(None) => return fail(&format!("{}: no address", target.host)),
        Err(e) => return fail(&format!("cannot resolve {}: {e}", target.host)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    let res = rt.block_on(run(
        addr,
        request,
        args.rate,
        args.connections,
        args.warmup,
        args.duration,
        args.timeout,
    ));
    match res {
        Ok(st) => {
            let (line, human) = report(st, args.rate, args.connections, args.duration);
            eprintln!("{human}");
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("loadgen: {msg}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50_000), 500);
        assert_eq!(percentile(&v, 99_000), 990);
        // f64 math (0.999 * 1000 -> 999.0000000000001 -> ceil 1000) would give 1000.
        assert_eq!(percentile(&v, 99_900), 999);
        assert_eq!(percentile(&v, 100_000), 1000);
        assert_eq!(percentile(&v, 0), 1);
        assert_eq!(percentile(&[], 99_000), 0);
        assert_eq!(percentile(&[7], 99_900), 7);
        // 10 samples: p99 is the largest, p50 the 5th.
        let v: Vec<u32> = (10..20).collect();
        assert_eq!(percentile(&v, 50_000), 14);
        assert_eq!(percentile(&v, 99_000), 19);
    }

    #[test]
    fn report_sorts_and_keys() {
        let st = ConnStats {
            latency: vec![300, 100, 200],
            service: vec![3, 1, 2],
            status: [0, 0, 2, 0, 0, 1],
            late: 1,
            lag: vec![5, 1],
            ..ConnStats::default()
        };
        let (line, _) = report(st, 3.0, 1, Duration::from_secs(1));
        for kv in [
            "SWBENCH requests=3 ",
            " errors=0 ",
            " p50=200 ",
            " p99=300 ",
            " p999=300 ",
            " max=300 ",
            " mean=200 ",
            " late=1 ",
            " status_errors=1 ",
            " s5xx=1 ",
            " svc_p50=2 ",
            " duration_us=1000000 ",
            " lag_mean=3 ",
            " lag_p99=5 ",
            " lag_max=5",
        ] {
            assert!(line.contains(kv), "{kv:?} missing from {line}");
        }
    }

    #[test]
    fn schedule_interleaves_connections_evenly() {
        let (conns, rate) = (4u64, 1000.0);
        let mut all = Vec::new();
        for c in 0..conns {
            for i in 0..25 {
                let t = intended_offset(i, c, conns, rate);
                // Each connection fires every C / R = 4 ms, offset by c ms.
                assert_eq!(t, Duration::from_millis(4 * i + c));
                all.push(t);
            }
        }
        all.sort();
        // Together: one request every 1 / R, none twice, none missing.
        let want: Vec<_> = (0..100).map(Duration::from_millis).collect();
        assert_eq!(all, want);
        // A rate that does not divide a second: 3/s -> 333.33 ms apart, no drift.
        assert_eq!(intended_offset(3000, 0, 1, 3.0), Duration::from_secs(1000));
        assert_eq!(
            intended_offset(1, 0, 1, 3.0),
            Duration::from_nanos(333_333_333)
        );
    }

    #[test]
    fn latency_is_charged_from_the_intended_time() {
        let start = Instant::now();
        let intended = start + Duration::from_millis(10);
        // Sent 400 ms late because the connection was busy; the response took 1 ms.
        let sent = start + Duration::from_millis(410);
        let done = sent + Duration::from_millis(1);
        assert_eq!(charged_latency(intended, done), Duration::from_millis(401));
        // Early completion cannot go negative.
        assert_eq!(charged_latency(done, intended), Duration::ZERO);
    }

    /// Feeds `input` to a parser in pieces of `step` bytes the way read_response
    /// does (keeping unconsumed bytes); returns the response and bytes left over.
    fn parse_in_pieces(
        input: &[u8],
        step: usize,
        eof: bool,
    ) -> Result<(Response, usize), FrameError> {
        let mut p = ResponseParser::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            let f = p.feed(&pending)?;
            pending.drain(..f.consumed);
            if f.done {
                let left = pending.len() + (input.len() - fed);
                return Ok((
                    Response {
                        status: p.status,
                        close: p.close,
                    },
                    left,
                ));
            }
            if fed == input.len() {
                if !eof {
                    return Err(FrameError::Truncated);
                }
                p.eof()?;
                continue;
            }
            let n = step.min(input.len() - fed);
            pending.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }

    /// A complete response with no bytes left over.
    fn whole(status: u16, close: bool) -> Result<(Response, usize), FrameError> {
        Ok((Response { status, close }, 0))
    }

    fn every_split(input: &[u8], eof: bool) -> Result<(Response, usize), FrameError> {
        let whole = parse_in_pieces(input, input.len().max(1), eof);
        for step in 1..input.len() {
            assert_eq!(
                parse_in_pieces(input, step, eof),
                whole,
                "pieces of {step} bytes"
            );
        }
        whole
    }

    #[test]
    fn frames_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        assert_eq!(every_split(r, false), whole(200, false));
        // A following response is not swallowed: its bytes are left over.
        let two = b"HTTP/1.1 503 No\r\ncontent-length: 2\r\n\r\nabHTTP/1.1 200 OK\r\n";
        let (resp, left) = parse_in_pieces(two, two.len(), false).unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(left, b"HTTP/1.1 200 OK\r\n".len());
        // Short body at EOF.
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
        assert_eq!(every_split(short, true), Err(FrameError::Truncated));
    }

    #[test]
    fn frames_chunked() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
                  5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(every_split(r, false), whole(200, false));
        // Missing the final empty line: incomplete, so truncated at EOF.
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n";
        assert_eq!(every_split(cut, true), Err(FrameError::Truncated));
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
        assert_eq!(every_split(bad, false), Err(FrameError::BadChunk));
        let no_crlf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n";
        assert_eq!(every_split(no_crlf, false), Err(FrameError::BadChunk));
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n";
        assert_eq!(every_split(huge, false), Err(FrameError::BadChunk));
    }

    #[test]
    fn frames_without_length() {
        // No body by status.
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(every_split(r, false).unwrap().0.status, 204);
        let r = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n";
        assert_eq!(every_split(r, false).unwrap().0.status, 304);
        // Interim 100 Continue, then the real response.
        let r =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(every_split(r, false), whole(404, false));
        // Body delimited by close.
        let r = b"HTTP/1.1 200 OK\r\n\r\nsome body";
        assert_eq!(every_split(r, true), whole(200, true));
        assert_eq!(every_split(r, false), Err(FrameError::Truncated));
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(every_split(r, false), Err(FrameError::Upgrade));
    }

    #[test]
    fn frames_connection_close_and_errors() {
        let r = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n";
        assert!(every_split(r, false).unwrap().0.close);
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(every_split(r, false).unwrap().0.close);
        let r = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert!(!every_split(r, false).unwrap().0.close);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
        assert_eq!(every_split(r, false), Err(FrameError::BadContentLength));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n";
        assert_eq!(every_split(r, false), Err(FrameError::BadContentLength));
        assert_eq!(
            every_split(b"garbage garbage\r\n\r\n", false),
            Err(FrameError::Malformed)
        );
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert_eq!(
            parse_in_pieces(&big, 8192, false),
            Err(FrameError::HeadTooLarge)
        );
    }

    /// Writes `bytes` in 3-byte pieces, yielding between them so the reader
    /// sees many partial reads.
    async fn write_in_fragments(w: &mut tokio::io::DuplexStream, bytes: &[u8]) {
        for b in bytes.chunks(3) {
            w.write_all(b).await.unwrap();
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn read_response_over_a_stream_in_fragments() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut buf = Vec::new();
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (_, r) = tokio::join!(
            write_in_fragments(&mut server, chunked),
            read_response(&mut client, &mut buf)
        );
        assert_eq!(r.unwrap().status, 200);
        // The same buffer and stream go on with the next response.
        let fixed = b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\nfail";
        let (_, r) = tokio::join!(
            write_in_fragments(&mut server, fixed),
            read_response(&mut client, &mut buf)
        );
        assert_eq!(
            r.unwrap(),
            Response {
                status: 500,
                close: false
            }
        );
        // Bytes behind a complete response, with only one request out: an error.
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxjunk")
            .await
            .unwrap();
        assert!(matches!(
            read_response(&mut client, &mut buf).await,
            Err(ExchangeError::Frame(FrameError::Unsolicited))
        ));
        // The peer closes mid-body.
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nxx")
            .await
            .unwrap();
        drop(server);
        assert!(matches!(
            read_response(&mut client, &mut buf).await,
            Err(ExchangeError::Frame(FrameError::Truncated))
        ));
    }

    /// A keep-alive server on loopback: answers each request with a ~1 KB
    /// Content-Length body; the first response is held back by `stall`.
    async fn server(stall: Duration) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut s, _)) = l.accept().await {
                let stall_now = if first { stall } else { Duration::ZERO };
                first = false;
                tokio::spawn(async move {
                    let body = [b'x'; 1000];
                    let mut head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    head.extend_from_slice(&body);
                    let mut buf = Vec::new();
                    let mut n = 0;
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(got) = s.read(&mut chunk).await else {
                            return;
                        };
                        if got == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..got]);
                        while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..i + 4);
                            if n == 0 {
                                tokio::time::sleep(stall_now).await;
                            }
                            n += 1;
                            if s.write_all(&head).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn req() -> Vec<u8> {
        let t = parse_url("http://127.0.0.1:1/status/200").unwrap();
        build_request(&t, &["X-Tenant-Name: t1".into()]).unwrap()
    }

    #[tokio::test]
    async fn steady_run_counts_every_request_after_warmup() {
        let addr = server(Duration::ZERO).await;
        // 200/s over 2 connections: 0.2 s warm-up (40 requests, not counted), 0.3 s measured.
        let st = run(
            addr,
            req(),
            200.0,
            2,
            Duration::from_millis(200),
            Duration::from_millis(300),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(st.latency.len(), 60);
        assert_eq!(st.status[2], 60);
        assert_eq!(st.errors, [0; 4]);
        assert_eq!(st.unsent, 0);
        assert_eq!(st.late + st.lag.len() as u64, 60);
    }

    #[tokio::test]
    async fn stalled_server_is_charged_for_every_delayed_request() {
        // One connection at 100/s: due at 0, 10, 20, ... 590 ms. The server holds
        // the first response for 300 ms, so request k cannot complete before
        // 300 ms and its latency from its due time (10k ms) is >= 300 - 10k ms.
        let stall = Duration::from_millis(300);
        let addr = server(stall).await;
        let st = run(
            addr,
            req(),
            100.0,
            1,
            Duration::ZERO,
            Duration::from_millis(600),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(st.latency.len(), 60);
        assert_eq!(st.errors, [0; 4]);
        // Requests 1..=29 were due while the connection was still waiting.
        assert!(st.late >= 29, "late {}", st.late);
        let at_least = |v: &[u32], us: u32| v.iter().filter(|&&x| x >= us).count();
        // k = 0..=15 all have >= 150 ms charged.
        assert!(at_least(&st.latency, 150_000) >= 16, "{:?}", st.latency);
        assert!(st.latency.iter().max().copied().unwrap_or(0) >= 300_000);
        // Timed from their actual send, only the stalled request is slow:
        // a closed loop would report one bad sample.
        assert!(at_least(&st.service, 150_000) <= 3, "{:?}", st.service);
        let (line, _) = report(st, 100.0, 1, Duration::from_millis(600));
        let p99: u32 = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix("p99="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(p99 >= 250_000, "{line}");
    }

    #[test]
    fn urls_and_headers() {
        let t = parse_url("http://127.0.0.1:8080/status/200?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/status/200?x=1".into()
            }
        );
        let t = parse_url("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = parse_url("http://[::1]:9000/a#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9000, "/a")
        );
        for bad in [
            "https://x/",
            "x:80/",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://h:p/",
            "http://u@h/",
            "http://[::1/",
            "http://h/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
        let t = parse_url("http://h:81/p").unwrap();
        let r = build_request(&t, &["X-Tenant-Name:  t1 ".into()]).unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "GET /p HTTP/1.1\r\nHost: h:81\r\nUser-Agent: statuswatch-loadgen\r\nX-Tenant-Name: t1\r\n\r\n"
        );
        let r = build_request(&t, &["host: other".into()]).unwrap();
        assert!(!String::from_utf8(r).unwrap().contains("Host: h:81"));
        for bad in ["NoColon", ": v", "Bad Name: v", "X: a\r\nY: b"] {
            assert!(
                build_request(&t, &[bad.into()]).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("nan").is_err());
        assert!(parse_rate("abc").is_err());
        assert_eq!(parse_rate("2500"), Ok(2500.0));
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_secs("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
