//! The direct HTTP/1 path: a plain request forwarded in one sequential
//! exchange on pingora-core's session and connector APIs, without
//! pingora-proxy's generic request machinery.
//!
//! # Why
//! pingora-proxy runs every request through its full pipeline: two task
//! channels and a `try_join!` of a downstream and an upstream half, cache,
//! module and retry-buffer state, a boxed peer. For a sidecar in front of one
//! JSON API that machinery cost more CPU than everything else in user space
//! (issue 14: one bench run had a bare pingora-proxy at 85–88 CPU-µs/request
//! and the same forwarding on pingora-core sessions at 49). The exchange
//! here is what that pipeline does for a plain request, in order.
//!
//! # What it serves, and what it leaves to pingora-proxy
//! Only a *plain* request ([`is_plain`]): one whose upstream copy
//! pingora-proxy would send unchanged but for dropping `Connection`, so none
//! of its request sanitising applies. Everything else (upgrades, `CONNECT`,
//! `Expect`, chunked or large bodies, absolute-form targets, hop-by-hop
//! fields, HTTP/1.0) and all of h2 go to pingora-proxy, which [`crate::conn`]
//! hands the request bytes exactly as they were read. Both paths share the
//! request core, [`crate::request`] (context, tenant claim, refusals,
//! forwarded headers, the upstream's answer, failure answers, the one
//! `finish`), called here in the order pingora-proxy's hooks run. A client
//! connection keeps its upstream connection between requests ([`Pinned`]).
//!
//! # Mirrored from pingora-proxy 0.9.1 (re-check on upgrade)
//! - `proxy_common.rs`: `sanitize_h1_upstream_request` with the default
//!   `HttpUpstreamRequestPolicy` (strips the hop-by-hop fields listed in
//!   [`is_plain`], `Connection` and what it nominates),
//!   `set_h1_host_from_authority`, `reconcile_upstream_authority` and
//!   `finalize_h1_upstream_request_framing`: all identities for a plain
//!   request except removing `Connection`.
//! - `proxy_h1.rs`, `h1_response_filter`: a response with neither length nor
//!   chunking (and a body) is re-framed as chunked HTTP/1.1; a 101 to a
//!   request that asked for no upgrade is an upstream error.
//! - `proxy_h1.rs`, `proxy_1to1`: the peer's read/write timeouts on the
//!   upstream session; waiting for the response while watching the client
//!   (`read_body_or_idle`), so a client that leaves is noticed at once.
//! - pingora-core `connectors/mod.rs`, `test_reusable_stream`: the check
//!   [`idle_and_open`] repeats before a held connection is reused.
//! - `lib.rs`, the retry loop with the default `error_while_proxy`: up to
//!   `max_retries` tries; an idempotent request is retried after a failure on
//!   a reused connection (`RetryType::ReusedOnly`), or when the connector
//!   marks the error retryable.
//!
//! Ours, not pingora's: a non-idempotent request that failed on a reused
//! connection is retried when none of it reached the upstream
//! ([`never_arrived`]), and a retry after a failure on a reused connection
//! opens a new one instead of taking another from the pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{header, Method, Version};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, UniqueID};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::Peer;
use pingora::ErrorSource;

use crate::conn::Direct;
use crate::request::{content_length, outcome, Core, Ctx};
use crate::state::Live;
use tokio::io::{AsyncRead, ReadBuf};

/// The largest request body the direct path buffers (for a retry to replay
/// it, as pingora-proxy's retry buffer does); larger ones go to pingora-proxy.
/// Either way its bytes are first admitted by the request core's body
/// budget (`proxy.max_buffered_body_bytes`).
pub(crate) const MAX_BODY: u64 = 64 * 1024;

/// Request fields pingora-proxy strips as hop-by-hop or handles specially;
/// a request carrying any of them is not plain.
const NOT_PLAIN: [&str; 10] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
];

/// Whether the direct path serves this request (head read, body not yet).
pub(crate) fn is_plain(req: &RequestHeader) -> bool {
    if req.version != Version::HTTP_11
        || req.method == Method::CONNECT
        || !req.raw_path().starts_with(b"/")
    {
        return false;
    }
    let mut hosts = 0;
    let mut lengths = 0;
    let mut connections = 0;
    for (name, value) in req.headers.iter() {
        if name == header::HOST {
            hosts += 1;
            // pingora-proxy rejects userinfo in Host; let it.
            if value.as_bytes().contains(&b'@') {
                return false;
            }
        } else if name == header::CONTENT_LENGTH {
            lengths += 1;
            if content_length(value.as_bytes()).is_none_or(|l| l > MAX_BODY) {
                return false;
            }
        } else if name == header::CONNECTION {
            // More than one line: pingora-proxy's answer (it refuses some
            // such heads) is the one both paths give.
            connections += 1;
            if connections > 1 || !only_persistence_tokens(value.as_bytes()) {
                return false;
            }
        } else if NOT_PLAIN.contains(&name.as_str()) || name.as_str() == "close" {
            return false;
        }
    }
    hosts <= 1 && lengths <= 1
}

/// `Connection` naming only `keep-alive` or `close` (a few times at most):
/// removing it is then all pingora-proxy's nomination stripping does, as
/// long as no field is named after those tokens ([`is_plain`] checks).
fn only_persistence_tokens(v: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .enumerate()
        .all(|(i, t)| {
            i < 4 && (t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close"))
        })
}

/// The direct path: the request core plus its own upstream pool.
pub(crate) struct Forwarder {
    core: Core,
    transport: TransportConnector,
    max_tries: usize,
}

impl Forwarder {
    pub(crate) fn new(core: Core, conf: &ServerConf) -> Forwarder {
        Forwarder {
            core,
            transport: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            max_tries: conf.max_retries.max(1),
        }
    }

    /// Try until done, as pingora-proxy's retry loop does. The first try
    /// goes over the connection this client connection holds, if it is still
    /// good ([`Pinned::take`]); a connection that ends reusable is held again.
    async fn exchange(
        &self,
        session: &mut ServerSession,
        ctx: &mut Ctx,
        held: &mut Option<Pinned>,
    ) -> Result<()> {
        let live = self.core.shared().live.load_full();
        let peer = &live.peer;
        let body = read_body(session).await?;
        let mut tries = 0;
        // After a failure on a reused connection the retry opens a new one:
        // the upstream may well have closed its other idle ones too.
        let mut fresh = false;
        loop {
            tries += 1;
            let pinned = held.take().and_then(|p| p.take(&live, ctx.start(), self));
            let got = match pinned {
                Some(stream) => Ok((stream, true)),
                None if fresh => self.transport.new_stream(peer).await.map(|s| (s, false)),
                None => self.transport.get_stream(peer).await,
            };
            let (stream, reused) = match got {
                Ok(s) => s,
                Err(mut e) => {
                    e.retry.decide_reuse(false);
                    if e.retry() && tries < self.max_tries {
                        continue;
                    }
                    return Err(e.into_up());
                }
            };
            let mut up = Upstream::new_with_options(stream, peer);
            up.read_timeout = peer.options.read_timeout;
            up.write_timeout = peer.options.write_timeout;
            let idempotent = session.req_header().method.is_idempotent();
            // Only where it decides something: one getsockopt.
            let acked = (reused && !idempotent).then(|| bytes_acked(&up)).flatten();
            match self.one_try(session, &mut up, body.as_deref(), ctx).await {
                Ok(()) => {
                    up.respect_keepalive();
                    if let Some(stream) = up.reuse().await {
                        *held = Some(Pinned {
                            stream,
                            since: ctx.start(),
                            live,
                        });
                    }
                    return Ok(());
                }
                Err(mut e) => {
                    if idempotent {
                        // pingora-proxy's default `error_while_proxy`.
                        e.retry.decide_reuse(reused);
                    } else {
                        let unsent = acked.is_some_and(|before| {
                            e.esource() == &ErrorSource::Upstream
                                && never_arrived(before, bytes_acked(&up))
                        });
                        e.set_retry(unsent);
                    }
                    if e.retry() && session.response_written().is_none() && tries < self.max_tries {
                        fresh = reused;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Back to the shared pool, under the peer it was made for, for no
    /// longer than the upstream said it keeps the connection.
    fn release(&self, p: Pinned) {
        let peer = &p.live.peer;
        let idle = p.max_idle();
        self.transport
            .release_stream(p.stream, peer.reuse_hash(), idle);
    }

    /// One request and its response over one upstream connection.
    async fn one_try(
        &self,
        session: &mut ServerSession,
        up: &mut Upstream,
        body: Option<&[u8]>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let mut req = Box::new(session.req_header().clone());
        req.remove_header(&header::CONNECTION);
        self.core.upstream_head(session, &mut req)?;
        up.write_request_header(req)
            .await
            .map_err(|e| e.into_up())?;
        if let Some(body) = body {
            up.write_body(body).await.map_err(|e| e.into_up())?;
        }
        up.finish_body().await.map_err(|e| e.into_up())?;

        let head_request = session.req_header().method == Method::HEAD;
        loop {
            // Wait for the response while watching the client: one that
            // leaves (or half-closes) ends the request now, as in pingora-proxy.
            tokio::select! {
                biased;
                read = up.read_response() => { read.map_err(|e| e.into_up())?; }
                idle = session.read_body_or_idle(true) => {
                    idle.map_err(|e| e.into_down())?;
                    continue;
                }
            }
            let Some(resp) = up.resp_header() else {
                return Error::e_explain(InvalidHTTPHeader, "no response header")
                    .map_err(|e| e.into_up());
            };
            let mut resp = Box::new(resp.clone());
            if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
                return Error::e_explain(InvalidHTTPHeader, "101 to a request without Upgrade")
                    .map_err(|e| e.into_up());
            }
            if resp.status.is_informational() {
                // 100 or 103: pass it on, then read the final response.
                write_header(session, resp).await?;
                continue;
            }
            let end = up.is_body_done();
            reframe(&mut resp, head_request, end)?;
            self.core.upstream_answered(&resp, ctx);
            self.core.response_head(session);
            write_header(session, resp).await?;
            break;
        }
        let ServerSession::H1(down) = session else {
            return Error::e_explain(InternalError, "direct path on a non-HTTP/1 session");
        };
        while let Some(chunk) = up.read_body_ref().await.map_err(|e| e.into_up())? {
            // A read can end inside a chunk's framing and yield nothing; an
            // empty write would be the last-chunk marker to a chunked client.
            if !chunk.is_empty() {
                down.write_body(chunk).await.map_err(|e| e.into_down())?;
            }
        }
        down.finish_body().await.map_err(|e| e.into_down())?;
        Ok(())
    }
}

async fn write_header(session: &mut ServerSession, resp: Box<ResponseHeader>) -> Result<()> {
    session
        .write_response_header(resp)
        .await
        .map_err(|e| e.into_down())
}

/// A response with a body but neither length nor chunking would force the
/// client connection closed; chunk it instead (pingora-proxy's
/// `h1_response_filter`).
fn reframe(resp: &mut ResponseHeader, head_request: bool, end: bool) -> Result<()> {
    let no_body = head_request || matches!(resp.status.as_u16(), 204 | 304);
    if !no_body
        && !end
        && !resp.headers.contains_key(header::TRANSFER_ENCODING)
        && !resp.headers.contains_key(header::CONTENT_LENGTH)
    {
        resp.set_version(Version::HTTP_11);
        resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

/// The whole request body (at most [`MAX_BODY`], see [`is_plain`]), so that
/// a retry can send it again. `None` for the usual body-less request.
async fn read_body(session: &mut ServerSession) -> Result<Option<Bytes>> {
    if session.is_body_empty() {
        return Ok(None);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// The upstream connection a client connection's last request used, held
/// for its next one instead of going back to the shared pool.
///
/// # Why
/// A pool round trip per request (release: a liveness read, a locked put and
/// a spawned idle-watch task with its timer; get: a locked take, a
/// `getpeername` and another liveness read) was about a tenth of the direct
/// path's user-space instructions (issue 14, callgrind). A sidecar's clients
/// keep their connections, so the next request on a client connection can
/// take the upstream connection its last one used, as HAProxy's private
/// server connections do.
///
/// # What keeps it as safe as the pool
/// Before reuse the connection gets the pool's own liveness check (one read
/// that must find nothing: no close, no stray bytes), and one idle longer
/// than the pool would keep it ([`Pinned::max_idle`]) is closed. After a
/// reload to another peer it goes to the pool under its own peer. A client
/// connection that ends, or moves to pingora-proxy, gives it to the pool.
/// At most one is held per client connection, so `proxy.max_connections`
/// bounds them; they are not counted in the pool's size.
pub(crate) struct Pinned {
    stream: Stream,
    /// When the request that last used it started.
    since: Instant,
    /// The config (so the peer) it was made under.
    live: Arc<Live>,
}

impl Pinned {
    /// The stream, if it can carry a request to `live`'s peer now.
    fn take(mut self, live: &Arc<Live>, now: Instant, fwd: &Forwarder) -> Option<Stream> {
        if !Arc::ptr_eq(&self.live, live) {
            fwd.release(self);
            return None;
        }
        let idle = now.saturating_duration_since(self.since);
        if self.max_idle().is_some_and(|t| idle > t) {
            return None;
        }
        idle_and_open(&mut self.stream).then_some(self.stream)
    }

    /// The idle time after which the connection is not reused
    /// ([`Live::idle_limit`], as the pool would keep it).
    fn max_idle(&self) -> Option<Duration> {
        self.live.idle_limit()
    }
}

/// How many bytes the upstream's TCP stack has acknowledged on this
/// connection ([`crate::tcp`]), if the kernel says. `up` holds the socket.
fn bytes_acked(up: &Upstream) -> Option<u64> {
    crate::tcp::bytes_acked(up.id())
}

/// Whether none of a failed request reached the upstream, so sending it
/// again on a fresh connection cannot repeat it: the connection's
/// acknowledged bytes did not move from `before` (read just before the
/// request was written) to `after` (read after the failure).
///
/// # Why this is the test
/// A reused connection fails a request mostly because the upstream closed
/// it while the request was on its way: the liveness check before reuse
/// only sees a close that already arrived, and [`crate::keepalive`] only
/// narrows the race. A socket the upstream has closed answers data with a
/// reset and acknowledges none of it; one still open acknowledges what
/// arrives whether or not the server has read it, and any segment the
/// server sends after reading it (response, FIN) carries that
/// acknowledgement. So an unmoved count means no byte of the request got
/// into an open socket there, and a non-idempotent request can be retried
/// (issue 25); pingora-proxy's default `error_while_proxy` never retries
/// one. Anything unknown (no `TCP_INFO`, not TCP) is "it may have arrived".
fn never_arrived(before: u64, after: Option<u64>) -> bool {
    after == Some(before)
}

/// Whether an idle upstream connection has nothing to read: the peer has
/// neither closed it nor sent unasked bytes (pingora-core's
/// `test_reusable_stream`, which is private). One read, never waiting.
fn idle_and_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    // Unconstrained: tokio's cooperative budget could make a ready read look
    // pending, which would pass a closed connection as open.
    let mut read = std::pin::pin!(tokio::task::unconstrained(std::future::poll_fn(|cx| {
        Pin::new(&mut *stream).poll_read(cx, &mut buf)
    })));
    read.as_mut().poll(&mut cx).is_pending()
}

#[async_trait]
impl Direct for Forwarder {
    type Conn = Option<Pinned>;

    fn accepts(&self, session: &ServerSession) -> bool {
        matches!(session, ServerSession::H1(_))
            && self.core.shared().with_live(|l| l.config.proxy.direct_path)
            && is_plain(session.req_header())
    }

    async fn serve(&self, session: &mut ServerSession, held: &mut Option<Pinned>) -> bool {
        let mut ctx = self.core.start(session);
        let (answered, error) = if self.core.admit(session, &mut ctx).await {
            (true, None)
        } else {
            let error = self.exchange(session, &mut ctx, held).await.err();
            if let Some(e) = &error {
                outcome::answer_failure(e, session, &mut ctx).await;
            }
            (false, error)
        };
        self.core.finish(
            session.req_header(),
            session.response_written(),
            error.as_deref(),
            &mut ctx,
        );
        !answered && error.is_none()
    }

    fn close(&self, held: Option<Pinned>) {
        // Not while the runtime shuts down: the pool's idle watch is a task.
        if let Some(p) = held.filter(|_| tokio::runtime::Handle::try_current().is_ok()) {
            self.release(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, path, None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn plain_requests() {
        assert!(is_plain(&req("GET", b"/a", &[("Host", "x")])));
        assert!(is_plain(&req("GET", b"/a", &[])));
        assert!(is_plain(&req(
            "POST",
            b"/a",
            &[
                ("Host", "x"),
                ("Content-Length", "10"),
                ("Connection", "keep-alive")
            ]
        )));
        assert!(is_plain(&req(
            "GET",
            b"/",
            &[("Connection", "Keep-Alive, close")]
        )));
    }

    #[test]
    fn anything_pingora_proxy_would_rewrite_is_not_plain() {
        for h in NOT_PLAIN {
            assert!(!is_plain(&req("GET", b"/a", &[(h, "x")])), "{h}");
        }
        assert!(!is_plain(&req("CONNECT", b"/a", &[])));
        assert!(!is_plain(&req("GET", b"http://h/a", &[])));
        assert!(!is_plain(&req("OPTIONS", b"*", &[])));
        assert!(!is_plain(&req(
            "GET",
            b"/a",
            &[("Host", "a"), ("Host", "b")]
        )));
        assert!(!is_plain(&req("GET", b"/a", &[("Host", "u@h")])));
        assert!(!is_plain(&req("GET", b"/a", &[("Connection", "x-secret")])));
        assert!(!is_plain(&req(
            "GET",
            b"/a",
            &[("Connection", "close"), ("Close", "1")]
        )));
        assert!(!is_plain(&req(
            "GET",
            b"/a",
            &[("Connection", "close, close, close, close, close")]
        )));
        assert!(!is_plain(&req(
            "GET",
            b"/a",
            &[("Connection", "close"), ("Connection", "close")]
        )));
        assert!(!is_plain(&req(
            "POST",
            b"/a",
            &[("Content-Length", "65537")]
        )));
        assert!(!is_plain(&req(
            "POST",
            b"/a",
            &[("Content-Length", "1"), ("Content-Length", "1")]
        )));
        assert!(!is_plain(&req("POST", b"/a", &[("Content-Length", "x")])));
        let mut old = req("GET", b"/a", &[]);
        old.set_version(Version::HTTP_10);
        assert!(!is_plain(&old));
    }

    #[test]
    fn unframed_bodies_are_chunked() {
        let mut r = ResponseHeader::build(200, None).expect("response");
        reframe(&mut r, false, false).expect("reframe");
        assert_eq!(
            r.headers.get("transfer-encoding").map(|v| v.as_bytes()),
            Some(&b"chunked"[..])
        );
        for (code, head, end) in [
            (200, true, false),
            (204, false, false),
            (304, false, false),
            (200, false, true),
        ] {
            let mut r = ResponseHeader::build(code, None).expect("response");
            reframe(&mut r, head, end).expect("reframe");
            assert!(
                r.headers.get("transfer-encoding").is_none(),
                "{code} {head} {end}"
            );
        }
        let mut r = ResponseHeader::build(200, None).expect("response");
        r.insert_header("content-length", "3").expect("cl");
        reframe(&mut r, false, false).expect("reframe");
        assert!(r.headers.get("transfer-encoding").is_none());
    }

    /// A connection to a loopback server that accepts it and hands the
    /// server's side to `server`, as production connects: pingora's
    /// connector, so the socket digest `bytes_acked` reads is the real one.
    async fn upstream_to(server: impl FnOnce(std::net::TcpStream) + Send + 'static) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                server(s);
            }
        });
        let peer = HttpPeer::new(addr, false, String::new());
        let stream = TransportConnector::new(None)
            .new_stream(&peer)
            .await
            .expect("connect");
        Upstream::new_with_options(stream, &peer)
    }

    /// Write a POST on `up`, then read until its failure: the acknowledged
    /// bytes before and after.
    async fn post_and_fail(up: &mut Upstream) -> (u64, Option<u64>) {
        let before = bytes_acked(up).expect("TCP_INFO on Linux");
        let mut req = Box::new(RequestHeader::build("POST", b"/appointments", None).expect("req"));
        req.insert_header("Host", "x").expect("host");
        req.insert_header("Content-Length", "0").expect("cl");
        // The write may already fail (a reset arrived); the read then does.
        if up.write_request_header(req).await.is_ok() {
            assert!(up.read_response().await.is_err(), "the server answered");
        }
        (before, bytes_acked(up))
    }

    #[tokio::test]
    async fn a_request_into_a_socket_the_upstream_closed_never_arrived() {
        // The upstream's idle timeout: it closes before the request gets
        // there. Its socket answers the request with a reset, acknowledging
        // none of it: safe to send again, POST or not.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut up = upstream_to(move |s| {
            drop(s);
            let _ = tx.send(());
        })
        .await;
        rx.recv().expect("closed");
        // Let the FIN arrive: the state the liveness check would miss only
        // if the FIN were still on its way.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (before, after) = post_and_fail(&mut up).await;
        assert!(never_arrived(before, after), "{before} {after:?}");
    }

    #[tokio::test]
    async fn a_request_the_upstream_read_then_failed_is_not_resent() {
        // The upstream read the request (and may have acted on it), then
        // closed without answering: its FIN acknowledges what it read.
        let mut up = upstream_to(|mut s| {
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut buf);
        })
        .await;
        let (before, after) = post_and_fail(&mut up).await;
        assert!(!never_arrived(before, after), "{before} {after:?}");
        assert!(after > Some(before));
    }

    #[test]
    fn only_an_unmoved_known_count_is_never_arrived() {
        assert!(never_arrived(7, Some(7)));
        assert!(!never_arrived(7, Some(8)));
        assert!(!never_arrived(7, None), "unknown: it may have arrived");
    }
}
