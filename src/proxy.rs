//! The pingora `ProxyHttp` adapter: pingora-proxy's path through the
//! request core. Every hook only delegates to [`crate::request::Core`], so
//! logic added there runs on both paths; nothing request-specific lives here.
//!
//! The one response pingora writes before any hook (400 for an unparseable
//! head) is counted by the connection loop in [`crate::conn`]. `CONNECT` is
//! let through to the hooks (`allow_connect_method_proxying`, set in
//! `server.rs`) so the core refuses and counts it with its tenant.

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::request::{outcome, Core, Ctx};

/// pingora-proxy's view of the request core.
#[derive(Debug)]
pub(crate) struct StatusProxy {
    core: Core,
}

impl StatusProxy {
    pub(crate) fn new(core: Core) -> StatusProxy {
        StatusProxy { core }
    }
}

#[async_trait]
impl ProxyHttp for StatusProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.core.new_ctx()
    }

    /// The first hook with a session: the request is ours to count.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        self.core.begin(session.as_downstream());
        Ok(())
    }

    /// The tenant claim, and the requests the core refuses (`true`: answered).
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        Ok(self.core.admit(session.as_downstream_mut(), ctx).await)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Built once per config (state.rs); pingora wants its own copy. Its
        // idle timeout is what the connection is pooled for after this
        // request: bounded by what the upstream announced (keepalive.rs).
        Ok(Box::new(self.core.shared().with_live(|live| {
            let mut peer = live.peer.clone();
            peer.options.idle_timeout = live.idle_limit();
            peer
        })))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        self.core
            .upstream_head(session.as_downstream(), upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.core.upstream_answered(upstream_response, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        self.core.response_head(session.as_downstream_mut());
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = outcome::answer_failure(e, session.as_downstream_mut(), ctx).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // `finish` writes one redacted line per failed request instead.
        true
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        // Never the query string (it may carry credentials) nor any header value.
        let req = session.req_header();
        format!(
            "{} {} tenant={}",
            req.method,
            req.uri.path(),
            self.core.tenant_name(ctx)
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let (req, written) = (session.req_header(), session.response_written());
        self.core.finish(req, written, e, ctx);
    }
}
