//! Shared helpers for integration tests: free ports, a controllable HTTP/1.1
//! upstream on loopback, the real statuswatch binary as a child process, a
//! tiny HTTP client, and a Prometheus text parser.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

// ---------------------------------------------------------------- upstream

/// A request as the test upstream saw it.
#[derive(Debug, Clone, Default)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A controllable upstream. Paths:
/// `/status/{code}`, `/slow/{ms}` (200 after a delay), `/echo` (body back),
/// `/bytes/{n}` (chunked download of a known pattern), `/headers` (request
/// headers back as text), `/reset` (RST without answering), `/reset-mid`
/// (headers, part of the body, then RST), `/malformed` (garbage response),
/// `/close` (answers then closes the keep-alive connection abruptly),
/// `/tenant/{name}` (200 with `X-Resolved-Tenant: {name}`), `/upgrade` (101,
/// then echoes bytes both ways until the client closes, like a WebSocket);
/// any other path with `X-Upstream-Status: {code}` answers that code.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (stop.clone(), connections.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || serve(conn));
            }
        });
        Upstream {
            addr,
            stop,
            connections,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 {
            return None;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some((start, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn read_body(r: &mut BufReader<TcpStream>, headers: &[(String, String)]) -> Option<Vec<u8>> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end).ok()?;
                return Some(body);
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let n = header(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; n];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn reset(conn: &TcpStream) {
    // SO_LINGER 0 turns close() into a RST.
    let sock = socket2::SockRef::from(conn);
    let _ = sock.set_linger(Some(Duration::ZERO));
}

fn serve(conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let Some((start, headers)) = read_head(&mut r) else {
            return;
        };
        let Some(body) = read_body(&mut r, &headers) else {
            return;
        };
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let path = target.split('?').next().unwrap_or("/").to_string();
        let respond = |w: &mut TcpStream, code: u16, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            // One write per response: no Nagle/delayed-ACK stalls on keep-alive.
            let mut msg = head.into_bytes();
            if method != "HEAD" {
                msg.extend_from_slice(body);
            }
            w.write_all(&msg)?;
            w.flush()
        };
        let res = if let Some(code) = path.strip_prefix("/status/") {
            respond(&mut w, code.parse().unwrap_or(400), b"{\"ok\":true}")
        } else if let Some(name) = path.strip_prefix("/tenant/") {
            // The API names the real tenant in a response header.
            let body = b"{}";
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Resolved-Tenant: {name}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut msg = head.into_bytes();
            msg.extend_from_slice(body);
            w.write_all(&msg).and_then(|_| w.flush())
        } else if let Some(secs) = path.strip_prefix("/keepalive/") {
            // Announces how long it keeps the idle connection (as Node.js
            // does, `timeout=5`), but never closes it itself.
            let head = format!(
                "HTTP/1.1 200 OK\r\nKeep-Alive: timeout={secs}\r\nContent-Length: 2\r\n\r\nok"
            );
            w.write_all(head.as_bytes()).and_then(|_| w.flush())
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            respond(&mut w, 200, b"slow")
        } else if path == "/echo" {
            respond(&mut w, 200, &body)
        } else if path == "/headers" {
            let text: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            respond(&mut w, 200, text.as_bytes())
        } else if let Some(n) = path.strip_prefix("/bytes/") {
            let data = pattern(n.parse().unwrap_or(0));
            let res: std::io::Result<()> = (|| {
                w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                for chunk in data.chunks(16 * 1024 + 7) {
                    w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                    w.write_all(chunk)?;
                    w.write_all(b"\r\n")?;
                }
                w.write_all(b"0\r\n\r\n")?;
                w.flush()
            })();
            res
        } else if path == "/upgrade" {
            let _ = w.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            let _ = w.flush();
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        } else if path == "/reset" {
            reset(&w);
            return;
        } else if path == "/reset-mid" {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial");
            let _ = w.flush();
            thread::sleep(Duration::from_millis(50));
            reset(&w);
            return;
        } else if path == "/malformed" {
            let _ = w.write_all(b"HTTP/1.1 abc\r\n\x01\x02garbage\r\n\r\n");
            let _ = w.shutdown(Shutdown::Both);
            return;
        } else if path == "/unframed" {
            // HTTP/1.0 style: no length, the body ends when the connection does.
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close");
            let _ = w.shutdown(Shutdown::Both);
            return;
        } else if path == "/close" {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = w.shutdown(Shutdown::Both);
            return;
        } else if path == "/drop" {
            // Answers as if keeping the connection, then closes it at once
            // (no shutdown first): what an upstream's idle timeout does to a
            // pooled connection, with the proxy not yet aware of it.
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            return;
        } else if let Some(code) = header(&headers, "x-upstream-status") {
            // Any other path answered with the status the request asks for.
            respond(&mut w, code.parse().unwrap_or(400), b"{}")
        } else {
            respond(&mut w, 404, b"no such path")
        };
        if res.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------- binary

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_statuswatch"))
}

/// A running statuswatch; killed on drop.
pub struct Statuswatch {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

/// `statuswatch check --config` on `toml` with extra environment: (exit
/// status 0, stdout + stderr).
pub fn check_config_env(toml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("check").arg("--config").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `statuswatch check --config` on `toml`: (exit status 0, stdout + stderr).
pub fn check_config(toml: &str) -> (bool, String) {
    check_config_env(toml, &[])
}

pub fn config_toml(
    proxy: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    extra: &str,
) -> String {
    // `extra` may reopen sections; TOML allows each table once, so callers
    // pass whole sections that are not [proxy]/[admin], or use proxy_extra.
    format!(
        "[proxy]\nlisten = \"{proxy}\"\nupstream = \"{upstream}\"\nthreads = 2\ngrace_period = \"10s\"\n\n[admin]\nlisten = \"{admin}\"\n\n{extra}\n"
    )
}

impl Statuswatch {
    /// Start with a full config text (use `config_toml`).
    pub fn start_with(
        toml: &str,
        proxy: SocketAddr,
        admin: SocketAddr,
        env: &[(&str, &str)],
    ) -> Statuswatch {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("statuswatch.toml");
        std::fs::write(&config_path, toml).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn statuswatch");
        let mut sw = Statuswatch {
            child,
            proxy,
            admin,
            dir,
            config_path,
        };
        sw.wait_ready();
        sw
    }

    pub fn start(upstream: SocketAddr, extra: &str) -> Statuswatch {
        Statuswatch::start_configured(upstream, extra, &[])
    }

    /// The default test config on free ports, with environment overrides
    /// (`STATUSWATCH__SECTION__KEY`) for what `config_toml` fixes.
    pub fn start_env(upstream: SocketAddr, env: &[(&str, &str)]) -> Statuswatch {
        Statuswatch::start_configured(upstream, "", env)
    }

    fn start_configured(upstream: SocketAddr, extra: &str, env: &[(&str, &str)]) -> Statuswatch {
        let (proxy, admin) = (free_addr(), free_addr());
        Statuswatch::start_with(
            &config_toml(proxy, admin, upstream, extra),
            proxy,
            admin,
            env,
        )
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("statuswatch exited early with {status}:\n{}", self.stderr());
            }
            if let Ok(r) = get(self.admin, "/readyz", &[]) {
                if r.status == 200 {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(25));
        }
        panic!("statuswatch not ready in 20s:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Scrape once, as is.
    pub fn metrics_now(&self) -> Metrics {
        let r = get(self.admin, "/metrics", &[]).expect("scrape");
        assert_eq!(r.status, 200);
        Metrics::parse(&String::from_utf8_lossy(&r.body))
    }

    /// Scrape once nothing is in flight. A client has its response before the
    /// proxy's logging hook tallies it; in-flight drops only after that hook.
    pub fn metrics(&self) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.metrics_now();
            if m.get("statuswatch_requests_in_flight", &[]) == Some(0.0)
                || Instant::now() > deadline
            {
                return m;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait for exit; None if it did not exit in time.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Statuswatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait until `f` holds, polling; panics with `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {within:?} waiting for {what}");
}

// ---------------------------------------------------------------- client

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Parse one response from a reader (content-length, chunked, or until close).
pub fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> std::io::Result<Resp> {
    let (start, headers) = read_head(r).ok_or(std::io::ErrorKind::UnexpectedEof)?;
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if header(&headers, "transfer-encoding").is_some()
        || header(&headers, "content-length").is_some()
    {
        read_body(r, &headers).ok_or(std::io::ErrorKind::UnexpectedEof)?
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        b
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// One request on a new connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    w.write_all(req.as_bytes())?;
    w.write_all(body)?;
    read_response(&mut BufReader::new(conn), method == "HEAD")
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Resp> {
    request(addr, "GET", path, headers, b"")
}

/// Send raw bytes and read whatever comes back until close or timeout.
pub fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    let _ = conn.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

// ---------------------------------------------------------------- metrics

/// Parsed exposition: `name{k="v",...}` → value, labels sorted.
#[derive(Debug, Default)]
pub struct Metrics {
    pub series: BTreeMap<String, f64>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (key, Vec::new()),
            };
            series.insert(key_of(name, &labels), value);
        }
        Metrics {
            series,
            text: text.to_string(),
        }
    }

    /// Exact series value (labels in any order), or None.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series.get(&key_of(name, &labels)).copied()
    }

    /// Value or 0.
    pub fn val(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Sum of every series of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, v)| v).sum()
    }

    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (&'a String, f64)> + 'a {
        let prefix = format!("{name}{{");
        self.series.iter().filter_map(move |(k, v)| {
            let ok = (k == name || k.starts_with(&prefix))
                && labels
                    .iter()
                    .all(|(lk, lv)| k.contains(&format!("{lk}=\"{lv}\"")));
            ok.then_some((k, *v))
        })
    }

    /// The one `statuswatch_responses_total` series with exactly these
    /// labels (as `get`: None when that series is absent). `code` is the
    /// status or "undocumented"; `class` is "1xx".."5xx" (not derivable from
    /// an undocumented code); `origin` is "upstream" or "proxy".
    pub fn responses(&self, tenant: &str, code: &str, class: &str, origin: &str) -> Option<f64> {
        self.get(
            "statuswatch_responses_total",
            &[
                ("tenant", tenant),
                ("code", code),
                ("class", class),
                ("origin", origin),
            ],
        )
    }

    pub fn count(&self, name: &str) -> usize {
        self.matching(name, &[]).count()
    }
}

/// Assert `n` answers the proxy made itself for `tenant` because of upstream
/// failures of `kind`, all with the undocumented real `code`: the tenant's
/// series, the undocumented-code series and the error-kind counter.
pub fn assert_proxy_answers(m: &Metrics, tenant: &str, code: &str, kind: &str, n: f64) {
    assert_eq!(
        m.responses(tenant, "undocumented", "5xx", "proxy"),
        Some(n),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "statuswatch_undocumented_responses_total",
            &[("code", code)]
        ),
        Some(n),
        "{}",
        m.text
    );
    assert_eq!(
        m.get("statuswatch_upstream_errors_total", &[("kind", kind)]),
        Some(n),
        "{}",
        m.text
    );
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut v = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        v.push(match n {
                            'n' => '\n',
                            o => o,
                        });
                    }
                }
                '"' => {
                    end = i;
                    break;
                }
                c => v.push(c),
            }
        }
        out.push((k.trim_start_matches(',').to_string(), v));
        rest = r.get(end + 1..).unwrap_or("");
    }
    out
}

fn key_of(name: &str, labels: &[(String, String)]) -> String {
    let mut l = labels.to_vec();
    l.sort();
    if l.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// A KiB field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...); 0 if absent.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A keep-alive client connection for sending many requests quickly.
pub struct KeepAlive {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr) -> KeepAlive {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        w.set_nodelay(true).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        KeepAlive { w, r }
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Resp> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes())?;
        self.read(false)
    }

    /// The connection's socket (for checks like a peek).
    pub fn stream(&self) -> &TcpStream {
        &self.w
    }

    /// Write raw bytes: a request, several pipelined, or part of one.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)
    }

    /// The next response on the connection.
    pub fn read(&mut self, head_only: bool) -> std::io::Result<Resp> {
        read_response(&mut self.r, head_only)
    }
}
