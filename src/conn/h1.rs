//! The HTTP/1 connection loop: pingora-core's own `ServerApp` loop for
//! HTTP/1 (keep-alive, `keepalive_request_limit`, persistent settings,
//! shutdown), with the request head read here and offered to a [`Direct`]
//! path first; what that path does not take goes to pingora-proxy
//! ([`handoff`](super::handoff)). Besides the next bytes the loop waits for a
//! head's deadline and for a drain ([`wait`](super::wait)).
//!
//! Re-check on a pingora upgrade (0.9.1): pingora-core `apps/mod.rs`,
//! `impl<T: HttpServerApp> ServerApp for T`, which this loop mirrors.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::ProxyHttp;
use pingora::server::ShutdownWatch;

use super::counted::{ConnState, Counted};
use super::handoff;
use super::wait::{head_deadline, idle_at_shutdown, linger};
use super::{ConnSettings, ProxyApp};

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

impl<SV, D> ProxyApp<SV, D>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
    D: Direct,
{
    /// A request head did not arrive within `proxy.client_header_timeout`:
    /// counted, and the caller closes the connection.
    fn head_timed_out(&self) {
        self.sink.conns().head_timeout();
        tracing::debug!("closed a connection whose request head did not arrive in time");
    }

    /// The HTTP/1 connection loop (see the module doc): each request head read
    /// here, offered to the direct path, else handed to pingora-proxy.
    pub(super) async fn serve_h1(
        self: &Arc<Self>,
        stream: Stream,
        settings: ConnSettings,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let epoch = Instant::now();
        let state = Arc::new(ConnState::default());
        let stream: Stream = Box::new(Counted::new(stream, state.clone(), epoch, self.sink));
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
                    let (next_session, next, ahead) = handoff::after_direct(session).await?;
                    session = next_session;
                    persistent = Some(next);
                    prefix = ahead;
                    continue;
                }
                session = handoff::to_proxy(session, prefix.take(), &recorded)?;
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
