//! The proxy listener's connection loop: pingora's own `HttpServerApp` →
//! `ServerApp` adapter, generic over any [`ProxyHttp`], with what a sidecar
//! needs at the connection level and the one answer no hook can see.
//!
//! # The unparseable head
//! pingora answers a request head it cannot parse with 400 inside
//! `HttpProxy::handle_new_request`, before `new_ctx`, so no `ProxyHttp` hook
//! ever sees it. To count it anyway, each HTTP/1 stream is wrapped in
//! [`Counted`], which notes the status line of the first response written
//! after a request starts. The proxy's first hook calls [`mark_hooked`] (it
//! finds the wrapper through pingora's public `IO::as_any`), so a response
//! written while no hook has run is that early 400: it is reported to the
//! [`ConnSink`] as its status line is written, before the client can see it.
//! `CONNECT` is not an early answer: the proxy enables
//! `allow_connect_method_proxying` and refuses it in its own hooks.
//!
//! # Two request paths
//! The loop reads each HTTP/1 request head itself (with pingora-core's
//! session) and offers it to a [`Direct`] path first (the plain-request
//! forwarder, [`crate::forward`]). A request that path does not take goes to
//! pingora-proxy, which reads it again from a copy of exactly the bytes the
//! session consumed (fed back as its pipelined prefix), so pingora-proxy sees
//! the connection as if it had read it itself: the same parse, the same 400
//! for an unparseable head, the same body. The copy is taken only while a
//! head is being read and dropped once the path is chosen. After one request
//! went to pingora-proxy, the rest of that connection does too: what it read
//! ahead stays inside its own settings. The direct path keeps state for the
//! connection between its requests ([`Direct::Conn`], its upstream
//! connection); the loop hands it back ([`Direct::close`]) on every exit.
//!
//! # Connection-level defences
//! A cap on open connections ([`crate::limit`]); no HTTP state for a
//! connection until its first byte; a keep-alive idle timeout that pingora
//! would otherwise lift after the first request (it carries the client's
//! "keep-alive, no timeout" into the next session); a deadline for a whole
//! request head (slowloris); HTTP/1.1 pipelining served in order.
//!
//! # HTTP/2
//! An h2 connection (ALPN `h2` on TLS, or the h2c preface on the plain
//! listener when `HttpServerOptions::h2c` is set) is handed to pingora's own
//! adapter unchanged: h2 has no "unparseable head" answer, and its streams
//! reach the hooks like any request.
//!
//! # Re-check on a pingora upgrade (written against 0.9.1, pinned in Cargo.toml)
//! - pingora-core `apps/mod.rs`, `impl<T: HttpServerApp> ServerApp for T`:
//!   the h1 loop below mirrors it (keep-alive, `keepalive_request_limit`,
//!   persistent settings, shutdown) and its h2/h2c decision.
//! - pingora-core `protocols/http/v1/server.rs`: `read_request` still reads
//!   a pipelined prefix before the socket, and nothing else than the head
//!   (plus what arrived with it) before returning; the hand-off relies on it.
//! - pingora-proxy `lib.rs`, `handle_new_request`: still the only place that
//!   writes a response before `new_ctx`, and still only for
//!   `InvalidHTTPHeader` (400) and, when not allowed, `CONNECT` (405).
//! - pingora-core `protocols/mod.rs`: the [`Stream`] traits. [`Counted`]
//!   forwards every method of each; a trait that gains a defaulted method
//!   would silently use the default, so diff them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::ALPN;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limit::ConnLimit;
use crate::memory::Release;

mod wait;
use wait::{head_deadline, idle_at_shutdown, linger};

/// What the loop reads and reports: implemented by the process state.
pub(crate) trait ConnSink: Send + Sync + 'static {
    /// Settings for a new connection (read per connection, so a reload
    /// applies to the connections that open after it).
    fn settings(&self) -> ConnSettings;
    /// Open-connection accounting of this listener.
    fn conns(&self) -> &ConnLimit;
    /// pingora answered `code` before any hook ran (an unparseable head);
    /// `elapsed` is from the request's first byte.
    fn early_answer(&self, code: u16, elapsed: Duration);
}

/// Per-connection settings, see the `proxy.client_*` and `max_connections` keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSettings {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub head_timeout: Duration,
}

/// Per-connection bookkeeping shared by the stream wrapper and the app.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Set by [`mark_hooked`]: the current request reached the proxy hooks.
    hooked: AtomicBool,
    /// Capture the status of the next response header written.
    armed: AtomicBool,
    /// Status line captured since the last arm (0 = none).
    status: AtomicU16,
    /// When the current request's first bytes arrived (ns since `epoch`, 0 = not yet).
    first_read: AtomicU64,
    /// Keep a copy of what is read, until the request's path is chosen: a
    /// request the direct path does not take is handed to pingora-proxy as
    /// these bytes. Only this connection's task touches the lock.
    recording: AtomicBool,
    recorded: std::sync::Mutex<Vec<u8>>,
}

/// What a connection keeps of a request head it read, at most (pingora's own
/// head limit is larger; a longer copy is shrunk back after use).
const RECORD_KEEP: usize = 4096;

impl ConnState {
    /// Ready for the next request on the connection.
    fn reset(&self) {
        self.hooked.store(false, Relaxed);
        self.status.store(0, Relaxed);
        self.first_read.store(0, Relaxed);
        self.armed.store(true, Relaxed);
    }

    fn start_recording(&self) {
        self.recording.store(true, Relaxed);
    }

    /// Stop copying reads; the bytes copied since the start, if `take`.
    fn stop_recording(&self, take: bool) -> Vec<u8> {
        self.recording.store(false, Relaxed);
        let Ok(mut rec) = self.recorded.lock() else {
            return Vec::new();
        };
        let out = if take { rec.clone() } else { Vec::new() };
        rec.clear();
        if rec.capacity() > RECORD_KEEP {
            rec.shrink_to(RECORD_KEEP);
        }
        out
    }

    /// A request head has begun arriving and nobody has taken it over yet
    /// (no proxy context, no response written).
    fn head_incomplete(&self) -> bool {
        self.first_read.load(Relaxed) != 0
            && !self.hooked.load(Relaxed)
            && self.status.load(Relaxed) == 0
    }
}

/// Called from the proxy's first hook (`early_request_filter`): this request
/// is on the normal, hooked path, so its response is the proxy's to count.
/// A no-op for a stream this loop did not wrap (h2, tests).
#[inline]
pub(crate) fn mark_hooked(session: &ServerSession) {
    if let Some(c) = session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Counted>())
    {
        c.state.hooked.store(true, Relaxed);
    }
}

/// A downstream stream that notes the first status line written after arming.
pub(crate) struct Counted {
    inner: Stream,
    state: Arc<ConnState>,
    epoch: Instant,
    sink: &'static dyn ConnSink,
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
            if !self.state.hooked.load(Relaxed) {
                let started = self.state.first_read.load(Relaxed);
                let elapsed = if started == 0 {
                    Duration::ZERO
                } else {
                    self.epoch
                        .elapsed()
                        .saturating_sub(Duration::from_nanos(started))
                };
                self.sink.early_answer(code, elapsed);
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
        if buf.filled().len() > before {
            if self.state.first_read.load(Relaxed) == 0 {
                let ns = (self.epoch.elapsed().as_nanos() as u64).max(1);
                self.state.first_read.store(ns, Relaxed);
            }
            if self.state.recording.load(Relaxed) {
                if let Ok(mut rec) = self.state.recorded.lock() {
                    rec.extend_from_slice(&buf.filled()[before..]);
                }
            }
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

/// A path that serves some HTTP/1 requests itself, before pingora-proxy
/// (see [`crate::forward`]).
#[async_trait]
pub(crate) trait Direct: Send + Sync + 'static {
    /// What the path keeps for one client connection between its requests.
    type Conn: Default + Send;
    /// Whether it serves this request (head read, body not yet).
    fn accepts(&self, session: &ServerSession) -> bool;
    /// Serve it, counted; false when the connection must close.
    async fn serve(&self, session: &mut ServerSession, conn: &mut Self::Conn) -> bool;
    /// The client connection is done with the path (it ended, however, or
    /// went to pingora-proxy for good): give back what `conn` holds.
    fn close(&self, conn: Self::Conn);
}

/// One client connection's [`Direct::Conn`], closed when dropped: the loop
/// below has many exits, and its future can be dropped mid-request.
struct DirectConn<'a, D: Direct> {
    direct: &'a D,
    conn: D::Conn,
}

impl<D: Direct> DirectConn<'_, D> {
    fn close(&mut self) {
        self.direct.close(std::mem::take(&mut self.conn));
    }
}

impl<D: Direct> Drop for DirectConn<'_, D> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The proxy listener's app: pingora's connection loop with the accounting
/// and defences described in the module doc.
pub(crate) struct ProxyApp<SV, D> {
    inner: Arc<HttpProxy<SV>>,
    direct: D,
    sink: &'static dyn ConnSink,
    release: Release,
}

impl<SV, D> ProxyApp<SV, D> {
    pub(crate) fn new(
        inner: HttpProxy<SV>,
        direct: D,
        sink: &'static dyn ConnSink,
        release: Release,
    ) -> ProxyApp<SV, D> {
        ProxyApp {
            inner: Arc::new(inner),
            direct,
            sink,
            release,
        }
    }
}

/// The h2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
impl<SV, D> ServerApp for ProxyApp<SV, D>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
    D: Direct,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = self.sink.settings();
        // Dropping the stream closes it: past the cap, that is the refusal.
        let _open = self.sink.conns().try_open(settings.max_connections)?;
        // Hold no HTTP state (pingora's per-request future is tens of KiB)
        // for a connection until it sends its first byte, or the idle timeout.
        let mut shutdown_rx = shutdown.clone();
        let mut first_byte = [0u8; 1];
        tokio::select! {
            biased;
            first = tokio::time::timeout(settings.idle_timeout, stream.try_peek(&mut first_byte)) => {
                if !matches!(first, Ok(Ok(_))) {
                    return None;
                }
            }
            _ = shutdown_rx.changed() => {
                linger(stream, self.sink.conns()).await;
                return None;
            }
        }
        let kept = if self.is_h2(&mut stream).await {
            // pingora's own adapter, unchanged (see the module doc).
            self.inner.process_new(stream, shutdown).await
        } else {
            self.serve_h1(stream, settings, shutdown).await
        };
        if kept.is_none() {
            self.release.connection_closed();
        }
        kept
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

impl<SV, D> ProxyApp<SV, D>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
    D: Direct,
{
    /// pingora's protocol decision: ALPN on TLS; on plain TCP, the h2c
    /// preface when h2c is enabled.
    async fn is_h2(&self, stream: &mut Stream) -> bool {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return true;
        }
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c);
        if !h2c || stream.get_ssl_digest().is_some() {
            return false;
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        // Ok(false): this stream cannot peek, so it is not h2c (as pingora).
        matches!(stream.try_peek(&mut buf).await, Ok(true)) && buf == H2_PREFACE
    }

    /// A request head did not arrive within `proxy.client_header_timeout`:
    /// counted, and the caller closes the connection.
    fn head_timed_out(&self) {
        self.sink.conns().head_timeout();
        tracing::debug!("closed a connection whose request head did not arrive in time");
    }

    async fn serve_h1(
        self: &Arc<Self>,
        stream: Stream,
        settings: ConnSettings,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let epoch = Instant::now();
        let state = Arc::new(ConnState::default());
        let stream: Stream = Box::new(Counted {
            inner: stream,
            state: state.clone(),
            epoch,
            sink: self.sink,
        });
        // pingora's keep-alive is in whole seconds, and 0 would mean "forever".
        let idle_secs = settings.idle_timeout.as_secs().max(1);
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive_reuses_remaining(
            self.inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        // Serve pipelined requests in order instead of closing the connection
        // on bytes read ahead (pingora's default), which would drop them.
        session.set_pipelining_enabled(true);
        let mut persistent = None;
        // Bytes read ahead by the previous (direct) request: the start of this one.
        let mut prefix: Option<bytes::BytesMut> = None;
        // After one request went to pingora-proxy, the rest of the connection
        // does too: what it read ahead is inside its settings, out of reach.
        let mut sticky = false;
        let mut held = DirectConn {
            direct: &self.direct,
            conn: D::Conn::default(),
        };
        loop {
            if let Some(p) = persistent.take() {
                HttpPersistentSettings::apply_to_session(p, &mut session);
            }
            // After the settings: they carry the client's "keep-alive" as no
            // timeout at all, which would keep an idle connection forever.
            if *shutdown.borrow() {
                session.set_keepalive(None);
            } else {
                session.set_keepalive(Some(idle_secs));
            }
            state.reset();
            if !sticky {
                state.start_recording();
                let read = tokio::select! {
                    biased;
                    read = session.read_request() => Some(read),
                    _ = head_deadline(&state, epoch, settings.head_timeout) => {
                        self.head_timed_out();
                        return None;
                    }
                    _ = idle_at_shutdown(&state, shutdown, prefix.is_some()) => None,
                };
                let Some(read) = read else {
                    // Draining, and no request was on its way: close it now
                    // rather than when the process exits.
                    held.close();
                    if let ServerSession::H1(v1) = session {
                        linger(v1.into_inner(), self.sink.conns()).await;
                    }
                    return None;
                };
                if matches!(read, Ok(false)) {
                    return None; // closed between requests, as pingora-proxy
                }
                let direct = read.is_ok() && self.direct.accepts(&session);
                let recorded = state.stop_recording(!direct);
                if direct {
                    let served = self.direct.serve(&mut session, &mut held.conn).await;
                    self.release.tick();
                    if !served {
                        return None;
                    }
                    let mut next = HttpPersistentSettings::for_session(&session);
                    let (stream, ahead) = session.finish().await.ok().flatten()?.into_parts();
                    prefix = ahead.filter(|p| !p.is_empty());
                    if let Some(p) = &prefix {
                        next.set_pipelined_prefix(p.clone());
                    }
                    persistent = Some(next);
                    session = ServerSession::new_http1(stream);
                    continue;
                }
                // pingora-proxy reads the request again, from the bytes this
                // session consumed: what was read ahead, then what it read.
                let mut again = prefix.take().unwrap_or_default();
                again.extend_from_slice(&recorded);
                let mut next = HttpPersistentSettings::for_session(&session);
                let ServerSession::H1(v1) = session else {
                    return None;
                };
                next.set_pipelined_prefix(again);
                session = ServerSession::new_http1(v1.into_inner());
                HttpPersistentSettings::apply_to_session(next, &mut session);
                sticky = true;
                held.close();
            }
            let result = tokio::select! {
                biased;
                result = self.inner.process_new_http(session, shutdown) => result,
                _ = head_deadline(&state, epoch, settings.head_timeout) => {
                    // Dropping the request future closes the connection, with
                    // nothing written: the request never arrived.
                    self.head_timed_out();
                    return None;
                }
            };
            self.release.tick();
            let (stream, settings) = result?.consume();
            persistent = settings;
            session = ServerSession::new_http1(stream);
        }
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
