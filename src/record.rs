//! The one place a finished response is counted.
//!
//! Every path that answers a client ends here: the proxy's `logging` hook,
//! the connection loop's early answers (a head pingora could not parse), and
//! the benchmarks, which therefore measure the real code. One function means
//! one definition of what "a response" adds to the tallies: the tenant's cell
//! and latency, the suspension edge (the `suspended` signal's codes), the
//! undocumented-code counter, the
//! process-wide duration histogram and, when the proxy answered because the
//! upstream failed, the error kind; the request's route (resolved here,
//! once) and, when it failed, an entry of the failures page.

use std::time::Duration;

use crate::config::LatencyMode;
use crate::failures::{Failure, Text};
use crate::route::{self, Resolved};
use crate::state::{Live, Shared};
use crate::status::{self, Origin};
use crate::tally::UpstreamErrorKind;
use crate::tenant::SlotRef;

/// What a request asked for: its route, and what the failures page shows
/// of it (never its query string, body or any header but the request id).
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a http::Method,
    /// The path, without the query string.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// A response that was sent (or, as 499, that a client left before getting).
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub tenant: SlotRef,
    pub code: u16,
    pub origin: Origin,
    /// From the request's first byte (or the hook that first saw it) to the end.
    pub elapsed: Duration,
    /// Why the proxy answered instead of the upstream, when it failed.
    pub error_kind: Option<UpstreamErrorKind>,
    /// The request, `None` for an answer to a head that could not be parsed.
    pub request: Option<Asked<'a>>,
}

impl Shared {
    /// Count one finished response. `live` is the config the request ran
    /// under (the caller has it loaded already); `now` is when it finished,
    /// in the registry's seconds ([`crate::tenant::Registry::now_secs`]).
    #[inline]
    pub fn record(&self, live: &Live, r: &Finished<'_>, now: u32) {
        let registry = &self.registry;
        let slot = registry.slot(r.tenant);
        let cell = status::cell_of(r.code);
        slot.counters.add(r.origin, cell);
        if live.latency != LatencyMode::Off {
            slot.counters
                .observe(r.elapsed, live.latency_objective_nanos);
        }
        if !r.tenant.is_reserved() {
            registry.touch(r.tenant, now);
            if slot.set_suspended(live.suspends[cell]) {
                self.global.suspension();
            }
        }
        if !live.catalog.is_documented(r.code) {
            self.global.undocumented(r.code);
        }
        self.global
            .observe(status::class_index(r.code), r.origin, r.elapsed);
        if let Some(kind) = r.error_kind {
            self.global.upstream_error(kind);
        }
        let route = match &r.request {
            Some(q) => live.routes.resolve(&self.routes, q.method, q.path),
            None => Resolved {
                slot: live.routes.unparsed(),
                template: None,
            },
        };
        self.routes
            .add(route.slot, status::class_index(r.code), r.origin);
        if live.failure_cells[cell] || (r.error_kind.is_some() && live.config.failures.enabled) {
            self.keep_failure(live, r, route);
        }
    }

    /// An entry of the failures page for a failed request.
    #[cold]
    fn keep_failure(&self, live: &Live, r: &Finished<'_>, route: Resolved) {
        let normalized;
        let (method, path) = match &r.request {
            Some(q) => {
                let template = route
                    .template
                    .and_then(|i| live.routes.templates().get(i as usize));
                let path = match template {
                    Some(t) => t.path.as_str(),
                    None => {
                        normalized = route::normalize(q.method, q.path);
                        normalized.path()
                    }
                };
                (route::method_label(q.method), path)
            }
            None => ("-", "-"),
        };
        let request_id = r
            .request
            .zip(live.request_id_header.as_ref())
            .and_then(|(q, h)| q.headers.get(h))
            .map(|v| v.as_bytes());
        let spiking = |name: &str| {
            self.detector
                .load()
                .signals
                .iter()
                .any(|s| s.active.iter().any(|(t, _)| t == name))
        };
        // Copied out, so the slot's name lock is not held while pushing.
        let Some(tenant) = self
            .registry
            .with_name(r.tenant, |n| Text::<64>::new(n.as_bytes()))
        else {
            return; // reclaimed while the request ran
        };
        let f = Failure {
            tenant: tenant.as_str(),
            method,
            route: path,
            code: r.code,
            origin: r.origin,
            error_kind: r.error_kind,
            elapsed: r.elapsed,
            request_id,
        };
        self.failures.push(&f, spiking);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SignalConfig};

    fn answer(s: &Shared, tenant: &str, code: u16) -> bool {
        let live = s.live.load_full();
        let t = s.registry.lookup(&live.resolver, tenant.as_bytes(), 0);
        let f = Finished {
            tenant: t,
            code,
            origin: Origin::Upstream,
            elapsed: Duration::from_millis(1),
            error_kind: None,
            request: None,
        };
        s.record(&live, &f, 0);
        s.registry.slot(t).is_suspended()
    }

    /// The suspended state follows the `suspended` signal's codes and
    /// classes, not a hard-coded 451; without that signal nobody is suspended.
    #[test]
    fn the_suspended_state_follows_the_suspended_signal() {
        let s = Shared::new(Live::build(Config::defaults().unwrap()).unwrap());
        assert!(answer(&s, "a", 451));
        assert!(!answer(&s, "a", 200), "a later other answer ends it");
        assert!(!answer(&s, "b", 403));
        assert_eq!(s.global.suspensions_total(), 1);

        let mut cfg = Config::defaults().unwrap();
        cfg.signals.insert(
            "suspended".into(),
            SignalConfig {
                enabled: true,
                codes: vec![403],
                ..Default::default()
            },
        );
        let s = Shared::new(Live::build(cfg).unwrap());
        assert!(answer(&s, "a", 403));
        assert!(!answer(&s, "b", 451));
        assert_eq!(s.global.suspensions_total(), 1);

        let mut cfg = Config::defaults().unwrap();
        cfg.signals.get_mut("suspended").unwrap().enabled = false;
        let s = Shared::new(Live::build(cfg).unwrap());
        assert!(!answer(&s, "a", 451));
        assert_eq!(s.global.suspensions_total(), 0);
    }
}
