//! The admin listener: `/metrics` (Prometheus text format), `/failures`
//! (the last failing requests, [`crate::failures`]), `/healthz` (the
//! process answers) and `/readyz` (serving traffic, not draining).
//!
//! It runs on its own address (loopback by default), its own thread and its
//! own accept loop rather than as a pingora service, for two reasons: a
//! scrape never competes with the proxy's workers for a runtime, and the
//! listener outlives pingora's shutdown, so during a drain `/readyz` answers
//! 503 and a last scrape of `/metrics` sees the final totals (pingora closes
//! its services' listeners as soon as SIGTERM arrives). It has its own
//! connection cap (`admin.max_connections`). `/metrics` and `/failures` can
//! additionally require a bearer token and/or a source network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::apps::HttpServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::{GetSocketDigest, SocketDigest};

use subtle::ConstantTimeEq;

use crate::failures;
use crate::metrics;
use crate::state::Shared;
use crate::status;

pub(crate) struct AdminApp {
    shared: &'static Shared,
    /// Size of the last rendering, to size the next buffer in one go.
    last_len: AtomicUsize,
}

impl AdminApp {
    pub(crate) fn new(shared: &'static Shared) -> AdminApp {
        AdminApp {
            shared,
            last_len: AtomicUsize::new(4096),
        }
    }

    fn metrics_allowed(&self, session: &ServerSession) -> Result<(), StatusCode> {
        let live = self.shared.live.load();
        if !live.admin_allow.is_empty() {
            // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
            let ip = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_canonical());
            if !ip.is_some_and(|ip| live.admin_allow.iter().any(|n| n.contains(&ip))) {
                return Err(StatusCode::FORBIDDEN);
            }
        }
        let token = live.config.admin.bearer_token.as_bytes();
        if !token.is_empty() {
            let given = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(|v| v.strip_prefix(b"Bearer "))
                .unwrap_or(b"");
            // Constant time, so response timing does not reveal the token.
            if !bool::from(given.ct_eq(token)) {
                return Err(StatusCode::UNAUTHORIZED);
            }
        }
        Ok(())
    }
}

/// Bind the admin listener. Done before anything else starts, so a busy
/// port stops start-up with a message naming the key.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    // A graceful upgrade (SIGQUIT + `--upgrade`) starts the new process while
    // the old one still serves its last scrapes.
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// Serve the admin listener on a thread of its own until the process exits.
pub(crate) fn spawn(
    shared: &'static Shared,
    listener: std::net::TcpListener,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("statuswatch-admin".into())
        .spawn(move || runtime.block_on(serve(shared, listener)))?;
    Ok(())
}

async fn serve(shared: &'static Shared, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin listener unusable; /metrics is not served");
            return;
        }
    };
    let app = Arc::new(HttpServer::new_app(AdminApp::new(shared)));
    // Never signalled: the listener lives until the process exits.
    let (_never, shutdown) = tokio::sync::watch::channel(false);
    let mut last_error_log = None::<std::time::Instant>;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of fds, typically: back off, and say so at most once a second.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "admin accept failed");
                    last_error_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (max, idle, head) = {
            let live = shared.live.load();
            (
                live.config.admin.max_connections,
                live.config.proxy.client_idle_timeout,
                live.config.proxy.client_header_timeout,
            )
        };
        let Some(guard) = shared.admin_conns.try_open(max) else {
            continue;
        };
        let digest = SocketDigest::from_raw_fd(std::os::fd::AsRawFd::as_raw_fd(&tcp));
        let mut stream = pingora::protocols::l4::stream::Stream::from(tcp);
        let _ = digest.peer_addr.set(Some(PeerAddr::Inet(peer)));
        stream.set_socket_digest(digest);
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _open = guard;
            let mut session = ServerSession::new_http1(Box::new(stream));
            loop {
                session.set_keepalive(Some(idle.as_secs().max(1)));
                // One bound per request: the wait for it, its head and the
                // answer. Admin requests are tiny; a client that trickles
                // its head only ever holds one of the few admin slots.
                match tokio::time::timeout(idle + head, app.process_new_http(session, &shutdown))
                    .await
                {
                    Ok(Some(reused)) => session = ServerSession::new_http1(reused.consume().0),
                    _ => break,
                }
            }
        });
    }
}

/// `GET /failures?tenant=T&signal=S&limit=N&format=json`: the newest kept
/// failures, filtered; JSON with `format=json` or `Accept: application/json`.
fn failures_page(shared: &Shared, req: &pingora::http::RequestHeader) -> Response<Vec<u8>> {
    let live = shared.live.load();
    if !live.config.failures.enabled {
        return text(StatusCode::NOT_FOUND, "failures.enabled is false\n");
    }
    let (mut tenant, mut signal, mut limit, mut json) = (None, None, failures::MAX_RETURNED, false);
    for (k, v) in req
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        match k {
            "tenant" => tenant = Some(v),
            "signal" => signal = Some(v),
            "limit" => match v.parse() {
                Ok(n) => limit = n,
                Err(_) => return text(StatusCode::BAD_REQUEST, "limit: not a number\n"),
            },
            "format" => json = v == "json",
            _ => {}
        }
    }
    json |= req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let cells = match signal {
        None => None,
        Some(name) => match live.signals.iter().find(|s| s.name == name) {
            Some(spec) => Some(&spec.cells),
            None => {
                let known: Vec<&str> = live.signals.iter().map(|s| s.name.as_str()).collect();
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("signal: unknown; one of {known:?}\n"),
                );
            }
        },
    };
    let entries = shared.failures.newest(limit, |e| {
        tenant.is_none_or(|t| e.tenant.as_str() == t)
            && cells.is_none_or(|c| c.contains(&status::cell_of(e.code)))
    });
    let (body, content_type) = if json {
        (failures::render_json(&entries), "application/json")
    } else {
        let mut filters = Vec::new();
        if let Some(t) = tenant.filter(|t| t.len() <= 64) {
            filters.push(format!(
                "tenant={}",
                failures::Text::<64>::new(t.as_bytes()).as_str()
            ));
        }
        if let Some(s) = signal {
            filters.push(format!("signal={s}"));
        }
        (
            failures::render_text(&entries, &filters.join(" ")),
            "text/plain; charset=utf-8",
        )
    };
    let body = body.into_bytes();
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    let body = body.as_bytes().to_vec();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        let path = req.uri.path();
        match path {
            "/metrics" | "/failures" => {
                if let Err(status) = self.metrics_allowed(session) {
                    let mut resp = text(status, "forbidden\n");
                    if status == StatusCode::UNAUTHORIZED {
                        resp.headers_mut().insert(
                            http::header::WWW_AUTHENTICATE,
                            http::HeaderValue::from_static("Bearer"),
                        );
                    }
                    return resp;
                }
                if path == "/failures" {
                    return failures_page(self.shared, session.req_header());
                }
                let body = metrics::body(self.shared, self.last_len.load(Ordering::Relaxed));
                self.last_len.store(body.len(), Ordering::Relaxed);
                Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.shared.is_ready() {
                    text(StatusCode::OK, "ready\n")
                } else if self.shared.is_draining() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                }
            }
            "/" => text(
                StatusCode::OK,
                "statuswatch admin: /metrics /failures /healthz /readyz\n",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
