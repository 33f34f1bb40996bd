//! The request core: what happens to a request whichever path serves it,
//! written once. pingora-proxy reaches it through the hooks in
//! [`crate::proxy`], each of which only delegates here; the direct HTTP/1
//! path ([`crate::forward`]) calls the same steps in the same order:
//!
//! 1. [`Core::new_ctx`] and [`Core::begin`]: the request context, and the
//!    mark that the connection's current request reached us (its response
//!    is ours to count, not an early answer: [`crate::conn`]). The direct
//!    path gets both from one call, [`Core::start`]; pingora-proxy makes its
//!    context before it has a session, so its first hook calls `begin`.
//! 2. [`Core::admit`]: the tenant the request claims, and the requests the
//!    proxy answers itself: `CONNECT` (405) and an HTTP/1.1 request without
//!    exactly one `Host` (400, RFC 9112 §3.2); and, before any of a body is
//!    read, its share of the body budget ([`crate::limit::BodyBudget`]),
//!    waited for up to `proxy.read_timeout` (else 503).
//! 3. [`Core::upstream_head`]: the forwarded headers on the copy sent
//!    upstream ([`forwarded`]).
//! 4. [`Core::upstream_answered`]: the upstream's status, and the tenant
//!    its response names; [`Core::response_head`]: while draining, the
//!    response closes its connection.
//! 5. on failure, [`outcome::answer_failure`]: which status, if any, the
//!    proxy answers with.
//! 6. [`Core::finish`]: the response that was actually sent, counted once
//!    with its origin (and its route, and kept for `/failures` if it
//!    failed), and a redacted log line if the request failed.
//!
//! Origin is decided from what happened, not guessed from the code: a
//! response is `upstream` when its status is the one the upstream sent and
//! `proxy` when statuswatch wrote it itself (upstream failure, a refusal).
//! A client that goes away before any response header was written is
//! counted as nginx's 499 with origin `proxy`, so every request that
//! reached the proxy is counted exactly once.

pub(crate) mod forwarded;
pub(crate) mod outcome;

use std::time::Instant;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

use crate::limit::BodyTicket;
use crate::record::{Asked, Finished};
use crate::state::Shared;
use crate::status::Origin;
use crate::tally::UpstreamErrorKind;
use crate::tenant::{self, SlotRef};
use outcome::{is_final, CLIENT_CLOSED};

/// The request logic of both paths, over the process state.
#[derive(Clone, Copy)]
pub(crate) struct Core {
    shared: &'static Shared,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

/// Per-request state. Dropping it (normally after `finish`, or when the
/// task is cancelled) ends the request's in-flight accounting.
#[derive(Debug)]
pub(crate) struct Ctx {
    start: Instant,
    tenant: SlotRef,
    upstream_status: Option<u16>,
    proxy_answered: bool,
    error_kind: Option<UpstreamErrorKind>,
    /// What the request's body holds of the body budget, until it ends.
    body: Option<BodyTicket>,
    // Held for its drop.
    _in_flight: InFlight,
}

/// One request counted in `statuswatch_requests_in_flight` while it lives.
struct InFlight(&'static Shared);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.global.request_finished();
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl Ctx {
    /// When the request started.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }
}

/// The body a request head announces: `Some(0)` none, `Some(n)` a
/// Content-Length, `None` a length not known up front (chunked). pingora's
/// parser has refused a malformed or conflicting framing already.
fn body_length(req: &RequestHeader) -> Option<u64> {
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    Some(
        req.headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| content_length(v.as_bytes()))
            .unwrap_or(0),
    )
}

/// One `Content-Length` value as a number (surrounding spaces allowed).
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Why the proxy answers a request itself instead of forwarding it.
pub(crate) fn refusal(req: &RequestHeader) -> Option<u16> {
    if req.method == http::Method::CONNECT {
        // A sidecar in front of one API does not tunnel.
        return Some(405);
    }
    if req.version == http::Version::HTTP_11 {
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        if hosts.next().is_none() || hosts.next().is_some() {
            return Some(400);
        }
    }
    None
}

impl Core {
    pub(crate) fn new(shared: &'static Shared) -> Core {
        Core { shared }
    }

    pub(crate) fn shared(&self) -> &'static Shared {
        self.shared
    }

    /// A context for a request that has not reached a session yet
    /// (pingora-proxy's `new_ctx`); [`Core::begin`] must follow.
    pub(crate) fn new_ctx(&self) -> Ctx {
        self.shared.global.request_started();
        Ctx {
            start: Instant::now(),
            tenant: SlotRef::NONE,
            upstream_status: None,
            proxy_answered: false,
            error_kind: None,
            body: None,
            _in_flight: InFlight(self.shared),
        }
    }

    /// The request on `session` is ours: from here on its response is
    /// counted by [`Core::finish`], not as an early answer. pingora-proxy
    /// makes its context before it has a session, so its first hook calls
    /// this; the direct path calls [`Core::start`].
    pub(crate) fn begin(&self, session: &ServerSession) {
        crate::conn::mark_hooked(session);
    }

    /// A new context for the request on `session`, begun.
    pub(crate) fn start(&self, session: &ServerSession) -> Ctx {
        let ctx = self.new_ctx();
        self.begin(session);
        ctx
    }

    /// Claim the request's tenant, and answer the requests the proxy refuses
    /// itself (module doc). `true`: answered, the connection closes (what
    /// follows a `CONNECT`, or a head without its `Host`, is not trusted).
    pub(crate) async fn admit(&self, session: &mut ServerSession, ctx: &mut Ctx) -> bool {
        let req = session.req_header();
        let now = self.shared.registry.now_secs(ctx.start);
        ctx.tenant = self
            .shared
            .with_live(|live| self.shared.registry.resolve(&live.resolver, req, now));
        let code = match refusal(req) {
            Some(code) => code,
            None => match body_length(req) {
                Some(0) => return false,
                len => {
                    // Before any of the body is read (see limit::BodyBudget).
                    let wait = self.shared.with_live(|l| l.config.proxy.read_timeout);
                    ctx.body = self.shared.bodies.reserve(len, wait).await;
                    if ctx.body.is_some() {
                        return false;
                    }
                    // Not a warning: a flood would be one line per request
                    // (each is counted: 503, origin proxy).
                    tracing::debug!(
                        waited = ?wait,
                        "answered 503: no room in proxy.max_buffered_body_bytes for a request body in time"
                    );
                    503
                }
            },
        };
        ctx.proxy_answered = true;
        session.set_keepalive(None);
        if let Err(e) = session.respond_error(code).await {
            tracing::debug!(error = %e, status = code, "could not refuse a request; the client is gone");
        }
        true
    }

    /// The forwarded headers on `upstream_request`, the copy of the
    /// request on `session` that goes upstream.
    pub(crate) fn upstream_head(
        &self,
        session: &ServerSession,
        upstream_request: &mut RequestHeader,
    ) -> Result<()> {
        let trust = self
            .shared
            .with_live(|live| live.config.proxy.trust_forwarded);
        forwarded::upstream_head(forwarded::Hop::of(session), trust, upstream_request)
    }

    /// Just before the response header is written to the client: while the
    /// process drains, the response says `Connection: close` and the
    /// connection closes after it (the client reconnects to a pod that stays).
    /// The one place the drain decides keep-alive for a response on either
    /// path (refusals and failure answers close their connection anyway).
    pub(crate) fn response_head(&self, session: &mut ServerSession) {
        if self.shared.is_draining() {
            session.set_keepalive(None);
        }
    }

    /// The upstream's response header arrived: note its status and its
    /// announced idle timeout, and let the API's own tenant header override
    /// what the request claimed.
    pub(crate) fn upstream_answered(&self, resp: &ResponseHeader, ctx: &mut Ctx) {
        ctx.upstream_status = Some(resp.status.as_u16());
        let registry = &self.shared.registry;
        self.shared.with_live(|live| {
            live.upstream_idle.learn(resp);
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
                request: Some(Asked {
                    method: &req.method,
                    path: req.uri.path(),
                    headers: &req.headers,
                }),
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

    /// Who the request is counted for, for pingora's error log summary.
    pub(crate) fn tenant_name(&self, ctx: &Ctx) -> String {
        self.shared
            .registry
            .name_of(ctx.tenant)
            .unwrap_or_else(|| tenant::NONE.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> RequestHeader {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).expect("parse");
        let version = if req.version == Some(1) { "1.1" } else { "1.0" };
        let mut out = RequestHeader::build(
            req.method.expect("method"),
            req.path.expect("path").as_bytes(),
            None,
        )
        .expect("request");
        out.set_version(if version == "1.1" {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_10
        });
        for h in req.headers.iter() {
            out.append_header(h.name.to_string(), h.value)
                .expect("header");
        }
        out
    }

    #[test]
    fn what_the_proxy_refuses() {
        let cases: [(&[u8], Option<u16>); 7] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", Some(400)),
            // HTTP/1.0 has no Host requirement.
            (b"GET / HTTP/1.0\r\n\r\n", None),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", Some(405)),
            // An empty Host is allowed (RFC 9112 §3.2: authority-less target).
            (b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                refusal(&head(raw)),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
