//! The proxy listener's connection loop: pingora's own `HttpServerApp` →
//! `ServerApp` adapter, generic over any [`ProxyHttp`], with what a sidecar
//! needs at the connection level and the one answer no hook can see.
//!
//! # The unparseable head
//! pingora answers a request head it cannot parse with 400 inside
//! `HttpProxy::handle_new_request`, before `new_ctx`, so no `ProxyHttp` hook
//! ever sees it. To count it anyway, each HTTP/1 stream is wrapped in
//! [`Counted`](counted::Counted), which notes the status line of the first response written
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
//! # Modules
//! - this module: accepting a connection (the open-connection cap, no HTTP
//!   state until the first byte, a drain that finds it idle) and the h2 decision;
//! - `counted`: the counting stream wrapper and the early answer;
//! - `h1`: the HTTP/1 loop and the [`Direct`] path's contract;
//! - `handoff`: the next session after a direct request, the replay to pingora-proxy;
//! - `wait`: the head deadline, the drain's wake-up of an idle connection, the clean close.
//!
//! # Re-check on a pingora upgrade (written against 0.9.1, pinned in Cargo.toml)
//! - pingora-core `apps/mod.rs`, `impl<T: HttpServerApp> ServerApp for T`:
//!   `h1` mirrors it (keep-alive, `keepalive_request_limit`, persistent
//!   settings, shutdown) and this module its h2/h2c decision.
//! - pingora-core `protocols/http/v1/server.rs`: see `handoff`.
//! - pingora-proxy `lib.rs`, `handle_new_request`: still the only place that
//!   writes a response before `new_ctx`, and still only for
//!   `InvalidHTTPHeader` (400) and, when not allowed, `CONNECT` (405).
//! - pingora-core `protocols/mod.rs`: see `counted`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::Stream;
use pingora::protocols::ALPN;
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;

use crate::limit::ConnLimit;
use crate::memory::Release;

mod counted;
mod h1;
mod handoff;
mod wait;

pub(crate) use counted::mark_hooked;
pub(crate) use h1::Direct;
use wait::linger;

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
}
