//! The admin listener: `/metrics` (Prometheus text format), `/healthz`
//! (the process answers) and `/readyz` (serving traffic, not draining).
//!
//! It runs on its own address (loopback by default) and its own thread, so a
//! scrape never competes with the proxy's workers for a runtime. `/metrics`
//! can additionally require a bearer token and/or a source network.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics;
use crate::state::Shared;

pub struct AdminApp {
    shared: &'static Shared,
    /// Size of the last rendering, to size the next buffer in one go.
    last_len: AtomicUsize,
}

impl AdminApp {
    pub fn new(shared: &'static Shared) -> AdminApp {
        AdminApp {
            shared,
            last_len: AtomicUsize::new(4096),
        }
    }

    fn metrics_allowed(&self, session: &ServerSession) -> Result<(), StatusCode> {
        let live = self.shared.live.load();
        if !live.admin_allow.is_empty() {
            let ip = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            if !ip.is_some_and(|ip| live.admin_allow.iter().any(|n| n.contains(ip))) {
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
            if !constant_time_eq(given, token) {
                return Err(StatusCode::UNAUTHORIZED);
            }
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        match req.uri.path() {
            "/metrics" => {
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
                let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 1024);
                metrics::render(self.shared, &mut out);
                self.last_len.store(out.len(), Ordering::Relaxed);
                let body = out.into_bytes();
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
                "statuswatch admin: /metrics /healthz /readyz\n",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
