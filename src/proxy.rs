//! The pingora `ProxyHttp` implementation: forward every request to the one
//! upstream, resolve the tenant once per request, and tally the response that
//! was actually sent, with its origin.
//!
//! Origin is decided from what happened, not guessed from the code: a
//! response is `upstream` when its status is the one the upstream sent
//! (recorded in `upstream_response_filter`) and `proxy` when statuswatch wrote
//! it itself (upstream failure or a refused `CONNECT`). The one response
//! pingora writes before any hook (400 for an unparseable head) is counted
//! by the connection loop in [`crate::conn`]. A client that goes away
//! before any response header was written is counted as nginx's 499 with
//! origin `proxy`, so every request that reached the proxy is counted exactly
//! once.

use std::cell::Cell;
use std::net::IpAddr;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

use crate::record::Finished;
use crate::state::Shared;
use crate::status::Origin;
use crate::tally::UpstreamErrorKind;
use crate::tenant::{self, SlotRef};

/// Status counted for a client that left before any response was written.
pub(crate) const CLIENT_CLOSED: u16 = 499;

pub(crate) struct StatusProxy {
    shared: &'static Shared,
}

impl StatusProxy {
    pub(crate) fn new(shared: &'static Shared) -> StatusProxy {
        StatusProxy { shared }
    }
}

/// Per-request state. Dropping it (normally after `logging`, or when the
/// task is cancelled) ends the request's in-flight accounting.
pub(crate) struct Ctx {
    shared: &'static Shared,
    start: Instant,
    tenant: SlotRef,
    upstream_status: Option<u16>,
    proxy_answered: bool,
    error_kind: Option<UpstreamErrorKind>,
}

impl Ctx {
    /// When the request started (its first hook ran).
    pub(crate) fn start(&self) -> Instant {
        self.start
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.shared.global.request_finished();
    }
}

#[async_trait]
impl ProxyHttp for StatusProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.shared.global.request_started();
        Ctx {
            shared: self.shared,
            start: Instant::now(),
            tenant: SlotRef::NONE,
            upstream_status: None,
            proxy_answered: false,
            error_kind: None,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // From here on this request's response is ours to count (conn.rs).
        crate::conn::mark_hooked(session.as_downstream());
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.resolve_tenant(session.req_header(), ctx);
        if session.req_header().method == http::Method::CONNECT {
            // A sidecar in front of one API does not tunnel. pingora would
            // refuse it before any hook; refusing it here counts it with its
            // tenant. The connection closes: what follows a CONNECT is not HTTP.
            ctx.proxy_answered = true;
            session.set_keepalive(None);
            if let Err(e) = session.respond_error(405).await {
                tracing::debug!(error = %e, "could not refuse CONNECT; the client is gone");
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Built once per config (state.rs); pingora wants its own copy.
        Ok(Box::new(self.shared.with_live(|live| live.peer.clone())))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        add_forwarded(session.client_addr(), upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.upstream_answered(upstream_response, ctx);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = answer_failure(e, session.as_downstream_mut(), ctx).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // `logging` writes one redacted line per failed request instead.
        true
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        // Never the query string (it may carry credentials) nor any header value.
        let req = session.req_header();
        format!(
            "{} {} tenant={}",
            req.method,
            req.uri.path(),
            self.shared
                .registry
                .name_of(ctx.tenant)
                .unwrap_or_else(|| tenant::NONE.into())
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let (req, written) = (session.req_header(), session.response_written());
        self.finish(req, written, e, ctx);
    }
}

/// What both request paths share: pingora-proxy's hooks above and the
/// direct HTTP/1 path in [`crate::forward`]. Each fact lives here once.
impl StatusProxy {
    pub(crate) fn shared(&self) -> &'static Shared {
        self.shared
    }

    /// The tenant the request claims (`request_filter`).
    pub(crate) fn resolve_tenant(&self, req: &RequestHeader, ctx: &mut Ctx) {
        let now = self.shared.registry.now_secs(ctx.start);
        ctx.tenant = self
            .shared
            .with_live(|live| self.shared.registry.resolve(&live.resolver, req, now));
    }

    /// The upstream's response header arrived: note its status, and let the
    /// API's own tenant header override what the request claimed.
    pub(crate) fn upstream_answered(&self, resp: &ResponseHeader, ctx: &mut Ctx) {
        ctx.upstream_status = Some(resp.status.as_u16());
        let registry = &self.shared.registry;
        self.shared.with_live(|live| {
            let Some(h) = &live.resolver.response_header else {
                return;
            };
            if let Some(v) = resp.headers.get(h) {
                // The API knows the real tenant: it overrides what the request claimed.
                let now = registry.now_secs(ctx.start);
                ctx.tenant = registry.lookup(&live.resolver, v.as_bytes(), now);
            }
        });
    }

    /// The request is over: count what was sent, once, and log it if it failed.
    pub(crate) fn finish(
        &self,
        req: &RequestHeader,
        written: Option<&ResponseHeader>,
        e: Option<&Error>,
        ctx: &mut Ctx,
    ) {
        let end = Instant::now();
        let sent = written
            .filter(|r| is_final(r.status))
            .map(|r| r.status.as_u16());
        let (code, origin) = match sent {
            Some(code) if !ctx.proxy_answered && ctx.upstream_status == Some(code) => {
                (code, Origin::Upstream)
            }
            Some(code) => (code, Origin::Proxy),
            None => (CLIENT_CLOSED, Origin::Proxy),
        };
        let shared = self.shared;
        let registry = &shared.registry;
        let now = registry.now_secs(end);
        shared.with_live(|live| {
            if !registry.is_current(ctx.tenant) {
                // The slot was reclaimed while this (very long) request ran.
                ctx.tenant = registry.resolve(&live.resolver, req, now);
            }
            let finished = Finished {
                tenant: ctx.tenant,
                code,
                origin,
                elapsed: end.saturating_duration_since(ctx.start),
                error_kind: ctx.error_kind,
            };
            shared.record(live, &finished, now);
        });

        if let Some(e) = e {
            let api_key = req
                .headers
                .get("x-api-key")
                .map(|k| tenant::redact(k.as_bytes()))
                .unwrap_or_default();
            let tenant = registry.name_of(ctx.tenant).unwrap_or_default();
            if ctx.error_kind.is_some() || code >= 500 {
                tracing::warn!(
                    status = code,
                    origin = origin.label(),
                    kind = ctx.error_kind.map(|k| k.label()),
                    %tenant,
                    method = %req.method,
                    path = req.uri.path(),
                    api_key,
                    error = %e.etype().as_str(),
                    source = ?e.esource(),
                    "request failed"
                );
            } else {
                tracing::debug!(
                    status = code,
                    %tenant,
                    method = %req.method,
                    path = req.uri.path(),
                    api_key,
                    error = %e.etype().as_str(),
                    source = ?e.esource(),
                    "request ended early"
                );
            }
        }
    }
}

/// `X-Forwarded-For` (appended to) and `X-Forwarded-Proto` (kept if a front
/// proxy, which may have terminated TLS, already set it) on the request sent
/// upstream.
pub(crate) fn add_forwarded(
    client: Option<&pingora::protocols::l4::socket::SocketAddr>,
    upstream_request: &mut RequestHeader,
) -> Result<()> {
    if let Some(ip) = client.and_then(|a| a.as_inet()).map(|a| a.ip()) {
        let value = match upstream_request.headers.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut ip_text = [0u8; 48];
                let Some(ip_text) = format_ip(ip, &mut ip_text) else {
                    return Ok(());
                };
                let mut v = Vec::with_capacity(prev.len() + 2 + ip_text.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(ip_text);
                http::HeaderValue::from_bytes(&v).ok()
            }
            None => client_ip_value(ip),
        };
        if let Some(v) = value {
            // pingora keeps a case map beside the header map, so a field
            // is added through its API only (by name: it parses it again).
            upstream_request.insert_header("x-forwarded-for", v)?;
        }
    }
    if !upstream_request.headers.contains_key(&X_FORWARDED_PROTO) {
        upstream_request.insert_header("x-forwarded-proto", HTTP.clone())?;
    }
    Ok(())
}

// Looked up by pre-built name: a `&str` lookup parses and lower-cases first.
static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
static HTTP: http::HeaderValue = http::HeaderValue::from_static("http");

thread_local! {
    /// The last client address seen on this worker thread, as a header value.
    /// A sidecar's clients are few (an ingress, a node's kube-proxy), so this
    /// skips formatting, validating and allocating the same value on nearly
    /// every request: a clone is a reference-count increment.
    static LAST_CLIENT: Cell<Option<(IpAddr, http::HeaderValue)>> = const { Cell::new(None) };
}

/// `ip` as an `X-Forwarded-For` value (from the per-thread cache when it is
/// the same client as last time).
fn client_ip_value(ip: IpAddr) -> Option<http::HeaderValue> {
    let value = match LAST_CLIENT.take() {
        Some((seen, value)) if seen == ip => value,
        _ => {
            let mut text = [0u8; 48];
            // From `Bytes`, so later clones share it instead of copying.
            let text = bytes::Bytes::copy_from_slice(format_ip(ip, &mut text)?);
            http::HeaderValue::from_maybe_shared(text).ok()?
        }
    };
    LAST_CLIENT.set(Some((ip, value.clone())));
    Some(value)
}

/// An address in text, formatted on the stack (at most 45 bytes), not in a `String`.
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> Option<&[u8]> {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    std::io::Write::write_fmt(&mut cursor, format_args!("{ip}")).ok()?;
    let len = cursor.position() as usize;
    buf.get(..len)
}

/// Answer a failed request, on either path: the status sent, or 0 when the
/// connection is just closed (see [`failure_code`]).
pub(crate) async fn answer_failure(e: &Error, session: &mut ServerSession, ctx: &mut Ctx) -> u16 {
    let code = failure_code(e, session.response_written(), ctx);
    if code > 0 {
        if let Err(err) = session.respond_error(code).await {
            tracing::debug!(error = %err, "could not send the error response; the client is gone");
        }
    }
    code
}

/// The status to answer a failed request with, or 0 to just close the
/// connection (headers already sent, or the client is gone). An upstream
/// failure also notes its kind in `ctx`; a non-zero answer is the proxy's.
fn failure_code(e: &Error, written: Option<&ResponseHeader>, ctx: &mut Ctx) -> u16 {
    if written.is_some_and(|r| is_final(r.status)) {
        // Headers are out; all we can do is cut the stream.
        return 0;
    }
    let code = failure_status(e, ctx);
    ctx.proxy_answered |= code > 0;
    code
}

fn failure_status(e: &Error, ctx: &mut Ctx) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => {
                ctx.error_kind = Some(classify(e.etype()));
                if is_timeout(e.etype()) {
                    504
                } else {
                    502
                }
            }
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// Whether a written status ends the request's answer: every non-1xx, and
/// 101, after which the connection belongs to the upgraded protocol (a
/// WebSocket session is counted once, as the 101 the client received, when
/// it ends). 100 and 103 are interim and never counted.
fn is_final(status: http::StatusCode) -> bool {
    !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS
}

/// Map a pingora upstream error to our `kind` label.
pub(crate) fn classify(t: &ErrorType) -> UpstreamErrorKind {
    match t {
        ErrorType::ConnectRefused => UpstreamErrorKind::ConnectRefused,
        ErrorType::ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => UpstreamErrorKind::ReadTimeout,
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
            UpstreamErrorKind::Reset
        }
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::TLSWantX509Lookup
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => UpstreamErrorKind::Tls,
        _ => UpstreamErrorKind::Other,
    }
}

/// Timeouts answer 504 (Gateway Timeout); every other upstream failure 502.
pub(crate) fn is_timeout(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_classified() {
        assert!(is_timeout(&ErrorType::ReadTimedout));
        assert!(is_timeout(&ErrorType::ConnectTimedout));
        assert!(!is_timeout(&ErrorType::ConnectRefused));
        assert_eq!(
            classify(&ErrorType::ConnectRefused),
            UpstreamErrorKind::ConnectRefused
        );
        assert_eq!(
            classify(&ErrorType::ConnectTimedout),
            UpstreamErrorKind::ConnectTimeout
        );
        assert_eq!(
            classify(&ErrorType::ReadTimedout),
            UpstreamErrorKind::ReadTimeout
        );
        assert_eq!(
            classify(&ErrorType::ConnectionClosed),
            UpstreamErrorKind::Reset
        );
        assert_eq!(classify(&ErrorType::InvalidCert), UpstreamErrorKind::Tls);
        assert!(is_final(http::StatusCode::SWITCHING_PROTOCOLS));
        assert!(is_final(http::StatusCode::OK));
        assert!(!is_final(http::StatusCode::CONTINUE));
        assert_eq!(
            classify(&ErrorType::InvalidHTTPHeader),
            UpstreamErrorKind::Other
        );
    }

    fn forwarded(client: &str, prev: Option<&str>, proto: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        if let Some(p) = prev {
            req.insert_header("X-Forwarded-For", p).expect("xff");
        }
        if let Some(p) = proto {
            req.insert_header("X-Forwarded-Proto", p).expect("xfp");
        }
        let addr: std::net::SocketAddr = client.parse().expect("address");
        add_forwarded(Some(&addr.into()), &mut req).expect("add_forwarded");
        req
    }

    fn get<'a>(req: &'a RequestHeader, name: &str) -> Vec<&'a [u8]> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    }

    #[test]
    fn forwarded_headers() {
        // The per-thread cache must follow the client: same, other, back again.
        for client in ["10.1.2.3:5", "10.1.2.3:6", "[2001:db8::7]:80", "10.1.2.3:7"] {
            let req = forwarded(client, None, None);
            let ip = client
                .rsplit_once(':')
                .map(|(ip, _)| ip)
                .unwrap_or_default();
            let ip = ip.trim_matches(['[', ']']);
            assert_eq!(get(&req, "x-forwarded-for"), [ip.as_bytes()], "{client}");
            assert_eq!(get(&req, "x-forwarded-proto"), [&b"http"[..]]);
        }
        let req = forwarded("10.1.2.3:5", Some("203.0.113.9"), Some("https"));
        assert_eq!(
            get(&req, "x-forwarded-for"),
            [&b"203.0.113.9, 10.1.2.3"[..]]
        );
        assert_eq!(get(&req, "x-forwarded-proto"), [&b"https"[..]]);
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8_lossy(&wire);
        assert_eq!(wire.matches("x-forwarded-for").count(), 1, "{wire}");
    }
}
