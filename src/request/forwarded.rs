//! `X-Forwarded-For` and `X-Forwarded-Proto` on the copy of a request sent
//! upstream: the one place both request paths set them ([`upstream_head`]).
//!
//! # What the upstream sees
//! - `X-Forwarded-For`: the client's address appended to what the request
//!   carried, with every line of it combined in order into one (RFC 9110
//!   §5.3: several lines are one comma-separated list). Keeping only the
//!   first line would drop the hop a front proxy appended on its own line
//!   and keep the one a client wrote.
//! - `X-Forwarded-Proto`: kept when the request carries it (a front proxy
//!   that terminated TLS set it), otherwise the listener's own: `https` on
//!   the TLS listener, `http` on the plain one.
//!
//! # Whom to believe: `proxy.trust_forwarded`
//! Both headers are claims the client makes. A sidecar normally sits behind
//! an ingress or load balancer that set them itself, so by default
//! (`true`) they are kept and extended. With `false` (clients reach the
//! sidecar directly) whatever the client sent is dropped: the upstream sees
//! only the address of the connection and the listener's scheme.

use std::cell::Cell;
use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

/// The facts about the client connection the forwarded headers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hop {
    /// The address of the connection's peer (`None` on a Unix socket).
    pub client: Option<IpAddr>,
    /// The request arrived over TLS.
    pub tls: bool,
}

impl Hop {
    /// What `session`'s connection says about itself.
    pub(crate) fn of(session: &ServerSession) -> Hop {
        Hop {
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        }
    }
}

/// Set the forwarded headers on `upstream_request` (module doc); `trust`
/// is `proxy.trust_forwarded`.
pub(crate) fn upstream_head(
    hop: Hop,
    trust: bool,
    upstream_request: &mut RequestHeader,
) -> Result<()> {
    let value = match hop.client {
        Some(ip) => appended(ip, trust, upstream_request),
        None => None,
    };
    match value {
        // pingora keeps a case map beside the header map, so a field is
        // added through its API only; `insert_header` replaces every line.
        Some(v) => {
            upstream_request.insert_header("x-forwarded-for", v)?;
        }
        None if !trust => {
            upstream_request.remove_header(&X_FORWARDED_FOR);
        }
        None => {}
    }
    if !trust || !upstream_request.headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if hop.tls { HTTPS.clone() } else { HTTP.clone() };
        upstream_request.insert_header("x-forwarded-proto", proto)?;
    }
    Ok(())
}

/// The new `X-Forwarded-For`: `ip` after the request's own lines (when
/// trusted), each non-empty one in order.
fn appended(ip: IpAddr, trust: bool, req: &RequestHeader) -> Option<http::HeaderValue> {
    if !trust {
        return client_ip_value(ip);
    }
    let mut lines = req
        .headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|v| !v.is_empty())
        .peekable();
    if lines.peek().is_none() {
        return client_ip_value(ip);
    }
    let mut ip_text = [0u8; 48];
    let ip_text = format_ip(ip, &mut ip_text)?;
    let mut v = Vec::with_capacity(64);
    for line in lines {
        v.extend_from_slice(line);
        v.extend_from_slice(b", ");
    }
    v.extend_from_slice(ip_text);
    http::HeaderValue::from_bytes(&v).ok()
}

// Looked up by pre-built name: a `&str` lookup parses and lower-cases first.
static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
static HTTP: http::HeaderValue = http::HeaderValue::from_static("http");
static HTTPS: http::HeaderValue = http::HeaderValue::from_static("https");

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

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(client: &str, tls: bool) -> Hop {
        Hop {
            client: Some(client.parse().expect("ip")),
            tls,
        }
    }

    fn request(xff: &[&str], xfp: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        for v in xff {
            req.append_header("X-Forwarded-For", *v).expect("xff");
        }
        for v in xfp {
            req.append_header("X-Forwarded-Proto", *v).expect("xfp");
        }
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
    fn the_client_address_is_appended() {
        // The per-thread cache must follow the client: same, other, back again.
        for client in [
            "192.0.2.7",
            "192.0.2.7",
            "2001:db8::1",
            "192.0.2.8",
            "192.0.2.7",
        ] {
            let text = client;
            let mut req = request(&[], &[]);
            upstream_head(hop(client, false), true, &mut req).expect("head");
            assert_eq!(get(&req, "x-forwarded-for"), [text.as_bytes()], "{client}");
            assert_eq!(get(&req, "x-forwarded-proto"), [&b"http"[..]]);
        }
        let mut req = request(&["198.51.100.1"], &["https"]);
        upstream_head(hop("10.0.0.2", false), true, &mut req).expect("head");
        assert_eq!(
            get(&req, "x-forwarded-for"),
            [&b"198.51.100.1, 10.0.0.2"[..]]
        );
        assert_eq!(get(&req, "x-forwarded-proto"), [&b"https"[..]]);
    }

    #[test]
    fn every_line_is_kept_in_order() {
        // A client's spoofed line first, the front proxy's real hop second:
        // both reach the upstream, in order, before this hop.
        let mut req = request(
            &["6.6.6.6", " 198.51.100.7 ", "", "203.0.113.1, 203.0.113.2"],
            &[],
        );
        upstream_head(hop("127.0.0.1", false), true, &mut req).expect("head");
        assert_eq!(
            get(&req, "x-forwarded-for"),
            [&b"6.6.6.6, 198.51.100.7, 203.0.113.1, 203.0.113.2, 127.0.0.1"[..]]
        );
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8_lossy(&wire).to_ascii_lowercase();
        assert_eq!(wire.matches("x-forwarded-for").count(), 1, "{wire}");
    }

    #[test]
    fn the_listener_sets_the_scheme_when_the_request_does_not() {
        let mut req = request(&[], &[]);
        upstream_head(hop("192.0.2.7", true), true, &mut req).expect("head");
        assert_eq!(get(&req, "x-forwarded-proto"), [&b"https"[..]]);
        // A front proxy's value is kept when trusted, even on another listener.
        let mut req = request(&[], &["http"]);
        upstream_head(hop("192.0.2.7", true), true, &mut req).expect("head");
        assert_eq!(get(&req, "x-forwarded-proto"), [&b"http"[..]]);
    }

    #[test]
    fn an_untrusted_client_cannot_claim_hops_or_a_scheme() {
        let mut req = request(&["6.6.6.6", "7.7.7.7"], &["https", "https"]);
        upstream_head(hop("192.0.2.9", false), false, &mut req).expect("head");
        assert_eq!(get(&req, "x-forwarded-for"), [&b"192.0.2.9"[..]]);
        assert_eq!(get(&req, "x-forwarded-proto"), [&b"http"[..]]);
        let mut req = request(&["6.6.6.6"], &["http"]);
        upstream_head(hop("192.0.2.9", true), false, &mut req).expect("head");
        assert_eq!(get(&req, "x-forwarded-proto"), [&b"https"[..]]);
        // No address to add (a Unix socket): the client's claim still goes.
        let mut req = request(&["6.6.6.6"], &[]);
        let unix = Hop {
            client: None,
            tls: false,
        };
        upstream_head(unix, false, &mut req).expect("head");
        assert!(get(&req, "x-forwarded-for").is_empty());
        let mut req = request(&["6.6.6.6"], &[]);
        upstream_head(unix, true, &mut req).expect("head");
        assert_eq!(get(&req, "x-forwarded-for"), [&b"6.6.6.6"[..]]);
    }
}
