//! How long the upstream keeps an idle connection, as it announces in its
//! responses (`Keep-Alive: timeout=N`): learned once by the request core and
//! applied by both paths to the connections they keep for reuse.
//!
//! # Why
//! A connection the upstream closes while a request is on its way there
//! fails that request, and a non-idempotent one may not be retried. The
//! liveness check before reuse only sees a close that already arrived, so
//! retiring a connection before the upstream's own timeout is the only way
//! out of that race. Common upstreams close far sooner than our
//! `proxy.idle_timeout` (Node.js: `timeout=5`, closing after 5 s).
//!
//! # Why learned, not per connection
//! pingora-proxy 0.9.1 releases a connection to the pool with the timeout of
//! the peer `upstream_peer` returned before the request was sent
//! (`proxy_to_upstream`), and no hook sees the response and the release
//! together; pingora-core's `HttpSession::respect_keepalive` parses the same
//! value but `reuse` drops it (re-check both on upgrade). The timeout is a
//! property of the upstream server, so the latest announcement is kept here
//! (per config: a reload may point at another upstream) and every later
//! release, on either path, uses it. A response that announces nothing
//! leaves it as it was: `Connection: close` and error answers often carry
//! none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pingora::http::ResponseHeader;

/// The upstream's announced idle timeout less a margin, in milliseconds;
/// 0 while it has announced none.
#[derive(Debug, Default)]
pub struct UpstreamIdle {
    millis: AtomicU64,
}

impl UpstreamIdle {
    /// Take what `resp` announces, if anything.
    pub(crate) fn learn(&self, resp: &ResponseHeader) {
        let Some(t) = announced_idle(resp) else {
            return;
        };
        let ms = t.as_millis().min(u64::MAX as u128) as u64;
        // Read before writing: an unchanged value (every response, once
        // learned) stays a shared cache line.
        if self.millis.load(Ordering::Relaxed) != ms {
            self.millis.store(ms, Ordering::Relaxed);
        }
    }

    /// How long an idle connection may be kept: `configured`
    /// (`proxy.idle_timeout`) or the announced timeout, whichever is shorter.
    pub(crate) fn limit(&self, configured: Option<Duration>) -> Option<Duration> {
        match self.millis.load(Ordering::Relaxed) {
            0 => configured,
            ms => {
                let announced = Duration::from_millis(ms);
                Some(configured.map_or(announced, |c| c.min(announced)))
            }
        }
    }
}

/// The response's `Keep-Alive: timeout=N` less a margin of a second (half of
/// it below 2 s) for the time the response took and the clocks' grain.
/// `timeout=0`, a malformed value or none: nothing announced. The parse is
/// pingora-core's `get_keepalive_values` (0.9.1), which is private.
fn announced_idle(resp: &ResponseHeader) -> Option<Duration> {
    let value = resp.headers.get("keep-alive")?.to_str().ok()?;
    let secs: u64 = value.split(',').find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| v.trim().parse().ok())?
    })?;
    if secs == 0 {
        return None;
    }
    let t = Duration::from_secs(secs);
    Some(t - Duration::from_secs(1).min(t / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(keep_alive: Option<&str>) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("response");
        if let Some(v) = keep_alive {
            r.insert_header("Keep-Alive", v).expect("header");
        }
        r
    }

    #[test]
    fn the_upstreams_announced_idle_timeout_less_a_margin() {
        let announced = |v| announced_idle(&resp(v));
        let s = Duration::from_secs;
        assert_eq!(announced(Some("timeout=5")), Some(s(4)), "Node.js");
        assert_eq!(announced(Some("max=100, Timeout = 60")), Some(s(59)));
        assert_eq!(
            announced(Some("timeout=1")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(announced(Some("timeout=0")), None);
        assert_eq!(announced(Some("timeout=-1")), None);
        assert_eq!(announced(Some("timeout=5s")), None);
        assert_eq!(announced(Some("max=5")), None);
        assert_eq!(announced(Some("timeout")), None);
        assert_eq!(announced(None), None);
        assert_eq!(
            announced(Some(&format!("timeout={}", u64::MAX))),
            Some(s(u64::MAX - 1)),
            "no overflow"
        );
    }

    #[test]
    fn the_latest_announcement_bounds_the_configured_timeout() {
        let idle = UpstreamIdle::default();
        let s = Duration::from_secs;
        assert_eq!(idle.limit(Some(s(60))), Some(s(60)), "nothing announced");
        assert_eq!(idle.limit(None), None);
        idle.learn(&resp(Some("timeout=5")));
        assert_eq!(idle.limit(Some(s(60))), Some(s(4)));
        assert_eq!(idle.limit(Some(s(2))), Some(s(2)), "the shorter one");
        assert_eq!(idle.limit(None), Some(s(4)));
        idle.learn(&resp(None));
        assert_eq!(idle.limit(Some(s(60))), Some(s(4)), "kept without one");
        idle.learn(&resp(Some("timeout=30")));
        assert_eq!(idle.limit(Some(s(60))), Some(s(29)), "the latest one");
        idle.learn(&resp(Some("timeout=x")));
        assert_eq!(idle.limit(Some(s(60))), Some(s(29)), "kept past a bad one");
        idle.learn(&resp(Some(&format!("timeout={}", u64::MAX))));
        assert_eq!(idle.limit(Some(s(60))), Some(s(60)), "huge: configured");
    }
}
