//! Connection handling for the proxy listener: pingora's HTTP/1 keep-alive
//! loop around `HttpProxy`, with just enough accounting to tally the
//! responses pingora writes *before* any `ProxyHttp` hook runs.
//!
//! pingora answers an unparseable request head with 400 (and `CONNECT` with
//! 405) inside `HttpProxy::handle_new_request`, before `new_ctx`, so the
//! proxy's `logging` hook never sees them. To count them anyway, each
//! downstream stream is wrapped in [`Counted`], which notes the status line of
//! the first response written after a request starts, and each request runs
//! inside a task-local scope where `new_ctx` marks that the normal path took
//! over. A response written with no context created is one of those early
//! answers: it is tallied as tenant `__none__`, origin `proxy`, as its status
//! line is written, before the client can see it.
//!
//! The loop also holds the connection-level defences a sidecar needs: a cap
//! on open connections ([`crate::limit`]), a keep-alive idle timeout that
//! pingora would otherwise lift after the first request (it carries the
//! client's "keep-alive, no timeout" into the next session), a deadline for
//! receiving a whole request head (slowloris), HTTP/1.1 pipelining served in
//! order, and no HTTP state at all for a connection that has not sent a byte.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::StatusProxy;
use crate::state::Shared;
use crate::status::{self, Origin};
use crate::tenant::SlotRef;

tokio::task_local! {
    static CONN: Arc<ConnState>;
}

/// Per-connection bookkeeping shared by the stream wrapper and the app.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Set by `new_ctx`: the current request reached the proxy hooks.
    ctx_created: AtomicBool,
    /// Capture the status of the next response header written.
    armed: AtomicBool,
    /// Status line captured since the last arm (0 = none).
    status: AtomicU16,
    /// When the current request's first bytes arrived (ns since `epoch`, 0 = not yet).
    first_read: AtomicU64,
    /// Woken when a request head has started but a read is still waiting for
    /// the rest of it: the head deadline starts counting then. Never touched
    /// when a head arrives in one read, the usual case.
    head_wait: tokio::sync::Notify,
}

impl ConnState {
    /// Ready for the next request on the connection.
    fn reset(&self) {
        self.ctx_created.store(false, Relaxed);
        self.status.store(0, Relaxed);
        self.first_read.store(0, Relaxed);
        self.armed.store(true, Relaxed);
    }

    /// A request head has begun arriving and nobody has taken it over yet
    /// (no proxy context, no response written).
    fn head_incomplete(&self) -> bool {
        self.first_read.load(Relaxed) != 0
            && !self.ctx_created.load(Relaxed)
            && self.status.load(Relaxed) == 0
    }
}

/// Resolves once a started request head has not completed within `limit` of
/// its first byte. Pending forever otherwise.
async fn head_deadline(state: &ConnState, epoch: Instant, limit: Duration) {
    loop {
        state.head_wait.notified().await;
        let first = state.first_read.load(Relaxed);
        if first == 0 {
            continue;
        }
        let deadline = epoch + Duration::from_nanos(first) + limit;
        tokio::time::sleep_until(deadline.into()).await;
        if state.head_incomplete() && state.first_read.load(Relaxed) == first {
            return;
        }
    }
}

/// Called from `new_ctx`: this request is on the normal, hooked path.
#[inline]
pub fn mark_ctx_created() {
    let _ = CONN.try_with(|c| c.ctx_created.store(true, Relaxed));
}

/// A downstream stream that notes the first status line written after arming.
pub struct Counted {
    inner: Stream,
    state: Arc<ConnState>,
    epoch: Instant,
    shared: &'static Shared,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("inner", &self.inner)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Counted {
    /// The first bytes written since the last arm: note the status line, and
    /// tally it right away if no request context exists (an early answer).
    fn note_write(&self, first: Option<&[u8]>) {
        if !self.state.armed.swap(false, Relaxed) {
            return;
        }
        if let Some(code) = first.and_then(parse_status) {
            self.state.status.store(code, Relaxed);
            if !self.state.ctx_created.load(Relaxed) {
                count_early(self.shared, &self.state, self.epoch, code);
            }
        }
    }
}

fn parse_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.state.first_read.load(Relaxed) == 0 {
            let ns = (self.epoch.elapsed().as_nanos() as u64).max(1);
            self.state.first_read.store(ns, Relaxed);
        }
        if res.is_pending() && self.state.head_incomplete() {
            self.state.head_wait.notify_one();
        }
        res
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.state.armed.load(Relaxed) {
            self.note_write(Some(buf));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.state.armed.load(Relaxed) {
            self.note_write(bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..]));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Counted {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Counted {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Counted {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Counted {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Counted {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Counted {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Counted {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// Tally a response pingora writes before any hook ran. Called as its status
/// line is written, so the count is in place before the client can see the
/// answer (or the connection close that follows it).
fn count_early(shared: &Shared, state: &ConnState, epoch: Instant, code: u16) {
    let slot = shared.registry.slot(SlotRef::NONE);
    slot.counters.add(Origin::Proxy, status::cell_of(code));
    if !shared.live.load().catalog.is_documented(code) {
        shared.global.undocumented(code);
    }
    let started = state.first_read.load(Relaxed);
    let elapsed = if started == 0 {
        Duration::ZERO
    } else {
        epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(started))
    };
    slot.counters.observe(elapsed);
    shared
        .global
        .observe(status::class_index(code), Origin::Proxy, elapsed);
    tracing::debug!(status = code, "rejected a request pingora could not parse");
}

/// The proxy listener's app: pingora's HTTP/1 loop with early-answer accounting.
pub struct ProxyApp {
    inner: Arc<HttpProxy<StatusProxy>>,
    shared: &'static Shared,
}

impl ProxyApp {
    pub fn new(inner: HttpProxy<StatusProxy>, shared: &'static Shared) -> ProxyApp {
        ProxyApp {
            inner: Arc::new(inner),
            shared,
        }
    }
}

#[async_trait]
impl ServerApp for ProxyApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (max, idle, head_limit) = {
            let live = self.shared.live.load();
            let p = &live.config.proxy;
            (
                p.max_connections,
                p.client_idle_timeout,
                p.client_header_timeout,
            )
        };
        // Dropping the stream closes it: past the cap, that is the refusal.
        let _open = self.shared.proxy_conns.try_open(max)?;
        // Hold no HTTP state (pingora's per-request future is tens of KiB)
        // for a connection until it sends its first byte, or the idle timeout.
        let mut shutdown_rx = shutdown.clone();
        let mut first_byte = [0u8; 1];
        tokio::select! {
            biased;
            first = tokio::time::timeout(idle, stream.try_peek(&mut first_byte)) => {
                if !matches!(first, Ok(Ok(_))) {
                    return None;
                }
            }
            _ = shutdown_rx.changed() => return None,
        }

        let epoch = Instant::now();
        let state = Arc::new(ConnState::default());
        let stream: Stream = Box::new(Counted {
            inner: stream,
            state: state.clone(),
            epoch,
            shared: self.shared,
        });
        // pingora's keep-alive is in whole seconds, and 0 would mean "forever".
        let idle_secs = idle.as_secs().max(1);
        // Same loop as pingora's HttpServerApp → ServerApp adapter (HTTP/1 only:
        // the proxy listener is plain TCP without h2c). Re-check on upgrade:
        // pingora-core `apps/mod.rs`, `impl<T: HttpServerApp> ServerApp for T`.
        let mut session = ServerSession::new_http1(stream);
        // Serve pipelined requests in order instead of closing the connection
        // on bytes read ahead (pingora's default), which would drop them.
        session.set_pipelining_enabled(true);
        let mut persistent = None;
        loop {
            if let Some(p) = persistent.take() {
                pingora::apps::HttpPersistentSettings::apply_to_session(p, &mut session);
            }
            // After the settings: they carry the client's "keep-alive" as no
            // timeout at all, which would keep an idle connection forever.
            if *shutdown.borrow() {
                session.set_keepalive(None);
            } else {
                session.set_keepalive(Some(idle_secs));
            }
            state.reset();
            let request = CONN.scope(
                state.clone(),
                self.inner.process_new_http(session, shutdown),
            );
            let result = tokio::select! {
                biased;
                result = request => result,
                _ = head_deadline(&state, epoch, head_limit) => {
                    // Dropping the request future closes the connection, with
                    // nothing written: the request never arrived.
                    self.shared.proxy_conns.head_timeout();
                    tracing::debug!("closed a connection whose request head did not arrive in time");
                    return None;
                }
            };
            let reused = result?;
            let (stream, settings) = reused.consume();
            persistent = settings;
            session = ServerSession::new_http1(stream);
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(parse_status(b"HTTP/1.0 405 "), Some(405));
        assert_eq!(parse_status(b"HTTP/1.1 4"), None);
        assert_eq!(parse_status(b"{\"json\":1}"), None);
    }
}
