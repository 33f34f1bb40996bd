//! The route of a path no template matches: the path with the segments that
//! look like identifiers folded to `{id}`, the query string gone, capped in
//! length and written into a fixed buffer (no allocation), prefixed by the
//! method.

/// Most bytes of a normalized path (longer paths are cut there).
pub const MAX_PATH_BYTES: usize = 128;

/// The method part of a label: the standard methods by name, any other as
/// `OTHER` (so an invented method cannot mint labels of its own).
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The placeholder an identifier-like segment becomes.
pub const ID: &str = "{id}";

/// Room for `METHOD path`: the longest method label, a space, the path.
const CAP: usize = 8 + MAX_PATH_BYTES;

/// A normalized `METHOD path` label on the stack.
#[derive(Clone)]
pub struct Normalized {
    buf: [u8; CAP],
    len: usize,
    /// Where the path starts (after `METHOD `).
    path_at: usize,
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl Normalized {
    /// `METHOD path`, the label of `statuswatch_route_responses_total`.
    pub fn label(&self) -> &str {
        // Only ASCII is ever written (see `push`).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// The path part alone.
    pub fn path(&self) -> &str {
        self.label().get(self.path_at..).unwrap_or("")
    }

    /// Append `bytes` up to the cap, printable ASCII only (anything else
    /// becomes `_`).
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == self.buf.len() {
                return;
            }
            self.buf[self.len] = if b.is_ascii_graphic() { b } else { b'_' };
            self.len += 1;
        }
    }
}

/// Whether a path segment looks like an identifier: all digits; a UUID; 16
/// or more hex digits; or a token of 8 or more letters, digits, `-`, `_`,
/// `.` with at least one digit (`cus_9f8a7b21`, `2026-01-15`). Words
/// (`customers`) and short versions (`v2`, `oauth2`) stay.
pub fn is_id(seg: &[u8]) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(seg) || (seg.len() >= 16 && seg.iter().all(u8::is_ascii_hexdigit)) {
        return true;
    }
    seg.len() >= 8
        && seg.iter().any(u8::is_ascii_digit)
        && seg
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_uuid(seg: &[u8]) -> bool {
    seg.len() == 36
        && seg.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `METHOD path` with identifier-like segments folded to `{id}`, the query
/// string (if `path` still has one) dropped, at most [`MAX_PATH_BYTES`] of
/// path.
pub fn normalize(method: &http::Method, path: &str) -> Normalized {
    let mut n = Normalized {
        buf: [0; CAP],
        len: 0,
        path_at: 0,
    };
    n.push(method_label(method).as_bytes());
    n.buf[n.len] = b' ';
    n.len += 1;
    n.path_at = n.len;
    let path = path.split(['?', '#']).next().unwrap_or("").as_bytes();
    let end = n.path_at + MAX_PATH_BYTES;
    for (i, seg) in path.split(|&b| b == b'/').enumerate() {
        if n.len >= end {
            break;
        }
        if i > 0 {
            n.push(b"/");
        }
        let room = end.saturating_sub(n.len);
        if is_id(seg) {
            n.push(&ID.as_bytes()[..ID.len().min(room)]);
        } else {
            n.push(&seg[..seg.len().min(room)]);
        }
    }
    n.len = n.len.min(end);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(m: &str, p: &str) -> String {
        normalize(&http::Method::from_bytes(m.as_bytes()).unwrap(), p)
            .label()
            .to_string()
    }

    #[test]
    fn identifiers_fold_and_words_stay() {
        for (path, want) in [
            ("/api/v2/customers", "GET /api/v2/customers"),
            ("/api/v2/customers/12345", "GET /api/v2/customers/{id}"),
            (
                "/api/v2/customers/3f2504e0-4f89-11d3-9a0c-0305e82c3301/notes",
                "GET /api/v2/customers/{id}/notes",
            ),
            ("/files/0123456789abcdef0123", "GET /files/{id}"),
            (
                "/api/v2/payments/pay_8f7a6b5c4d",
                "GET /api/v2/payments/{id}",
            ),
            ("/oauth2/token", "GET /oauth2/token"),
            ("/days/2026-01-15", "GET /days/{id}"),
            ("/a/deadbeef", "GET /a/deadbeef"),
            ("/search?q=secret&api_key=k", "GET /search"),
            ("/", "GET /"),
            ("/a//b/", "GET /a//b/"),
            ("/caf\u{e9}", "GET /caf__"),
        ] {
            assert_eq!(norm("GET", path), want, "{path}");
        }
        assert_eq!(norm("PURGE", "/x/1"), "OTHER /x/{id}");
        assert_eq!(norm("POST", "/x/1"), "POST /x/{id}");
    }

    #[test]
    fn long_paths_are_capped() {
        let long = format!("/{}", "segment/".repeat(100));
        let n = normalize(&http::Method::GET, &long);
        assert_eq!(n.path().len(), MAX_PATH_BYTES);
        assert!(long.starts_with(n.path()));
        let ids = "/1".repeat(100);
        let n = normalize(&http::Method::DELETE, &ids);
        assert!(n.path().len() <= MAX_PATH_BYTES, "{n:?}");
        assert!(n.path().starts_with("/{id}/{id}/"), "{n:?}");
        assert_eq!(n.label().len(), "DELETE ".len() + n.path().len());
    }
}
