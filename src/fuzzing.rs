//! What the fuzz targets (`fuzz/`) reach of the crate's private request
//! handling, compiled only under `--cfg fuzzing` (set by `cargo fuzz`): the
//! direct path's choice ([`crate::forward::is_plain`]), the request core's
//! refusal, and the forwarded headers both paths set on the upstream head.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::request::forwarded::{upstream_head, Hop};

/// What the request core decides for one parsed request head.
#[derive(Debug)]
pub struct HeadOutcome {
    /// The direct path would serve it.
    pub plain: bool,
    /// The status the proxy answers instead of forwarding (CONNECT, Host).
    pub refusal: Option<u16>,
    /// The head the upstream would get (forwarded headers set), or the error.
    pub upstream: Result<RequestHeader, String>,
}

/// Run the request core's head handling on `req`, as from `client` on a TLS
/// listener or not, with `proxy.trust_forwarded = trust`.
pub fn request_head(req: &RequestHeader, client: IpAddr, tls: bool, trust: bool) -> HeadOutcome {
    let mut upstream = req.clone();
    let hop = Hop {
        client: Some(client),
        tls,
    };
    HeadOutcome {
        plain: crate::forward::is_plain(req),
        refusal: crate::request::refusal(req),
        upstream: upstream_head(hop, trust, &mut upstream)
            .map(|()| upstream)
            .map_err(|e| e.to_string()),
    }
}
