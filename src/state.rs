//! The process-wide state shared by the proxy, the detector and the admin
//! listener: the tallies (which live for the whole process, so reloads never
//! reset them) and the reloadable, config-derived rules (swapped atomically,
//! read without locks).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;

use crate::catalog::Catalog;
use ipnet::IpNet;

use crate::config::{Config, ConfigError, LatencyMode};
use crate::detect::{self, SignalSpec, SUSPENDED_SIGNAL};
use crate::failures::Failures;
use crate::keepalive::UpstreamIdle;
use crate::limit::{BodyBudget, ConnLimit, Listener};
use crate::route::{RouteTable, RouteTally};
use crate::status::CELLS;
use crate::tally::Global;
use crate::tenant::{Registry, ResolverSpec};
use crate::tls::CertKey;

/// Everything derived from one config: what the proxy, the detector and the
/// admin listener read per request or per tick.
pub struct Live {
    pub config: Config,
    pub resolver: ResolverSpec,
    pub catalog: Catalog,
    pub signals: Vec<SignalSpec>,
    pub upstream: SocketAddr,
    pub admin_allow: Vec<IpNet>,
    /// The TLS listener's certificate, when there is one.
    pub tls: Option<Arc<CertKey>>,
    /// The upstream peer every request is sent to, with its timeouts.
    pub peer: HttpPeer,
    /// What that upstream announced about its idle timeout (learned from
    /// its responses; a reload starts again).
    pub upstream_idle: UpstreamIdle,
    /// `tenant.latency`.
    pub latency: LatencyMode,
    /// `tenant.latency_objective` in nanoseconds, as the request path
    /// compares it.
    pub latency_objective_nanos: u64,
    /// The status cells that put a tenant in the suspended state: the
    /// `suspended` signal's codes and classes (none without that signal).
    pub suspends: [bool; CELLS],
    /// `[route_tally]`'s templates, bound to `Shared::routes`.
    pub routes: RouteTable,
    /// The status cells kept as failures (`failures.enabled`): the codes and
    /// classes of every signal.
    pub failure_cells: [bool; CELLS],
    /// `failures.request_id_header`.
    pub request_id_header: Option<http::HeaderName>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the certificate's key, nor the whole config (secrets).
        f.debug_struct("Live")
            .field("upstream", &self.upstream)
            .field("signals", &self.signals.len())
            .field("latency", &self.latency)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The upstream's address: `host:port` resolved now (names resolve at
/// start-up and at each reload, never per request).
fn resolve_upstream(up: &str) -> Result<SocketAddr, ConfigError> {
    let mut addrs = up.to_socket_addrs().map_err(|e| {
        ConfigError::invalid(
            "proxy.upstream",
            format!("cannot resolve {up:?} as host:port: {e}"),
        )
    })?;
    addrs.next().ok_or_else(|| {
        ConfigError::invalid("proxy.upstream", format!("{up:?} resolves to no address"))
    })
}

impl Live {
    /// How long an idle connection to [`Live::peer`] may be kept for reuse:
    /// `proxy.idle_timeout` or what the upstream announced, whichever is
    /// shorter. Both paths' pools and the direct path's held connections.
    pub(crate) fn idle_limit(&self) -> Option<std::time::Duration> {
        self.upstream_idle.limit(self.peer.options.idle_timeout)
    }

    /// Build everything derived from a loaded config, each piece once: the
    /// one builder, and so the one validator of those pieces, for start-up,
    /// `check` and every reload. The upstream's name is resolved here, once,
    /// and the address checked is the address used. ([`Config::load`] has
    /// checked the plain settings already.)
    pub fn build(config: Config) -> Result<Live, ConfigError> {
        let upstream = resolve_upstream(config.upstream_target()?)?;
        let p = &config.proxy;
        let mut peer = HttpPeer::new(upstream, p.upstream_tls, config.sni());
        peer.options.connection_timeout = Some(p.connect_timeout);
        peer.options.total_connection_timeout = Some(p.connect_timeout);
        peer.options.read_timeout = Some(p.read_timeout);
        peer.options.write_timeout = Some(p.write_timeout);
        peer.options.idle_timeout = Some(p.idle_timeout);
        let objective = config.tenant.latency_objective;
        let signals = SignalSpec::all_from_config(&config)?;
        let mut suspends = [false; CELLS];
        for cell in signals
            .iter()
            .filter(|s| s.name == SUSPENDED_SIGNAL)
            .flat_map(|s| &s.cells)
        {
            suspends[*cell] = true;
        }
        let mut failure_cells = [false; CELLS];
        if config.failures.enabled {
            for cell in signals.iter().flat_map(|s| &s.cells) {
                failure_cells[*cell] = true;
            }
        }
        Ok(Live {
            routes: RouteTable::from_config(&config)?,
            failure_cells,
            request_id_header: config.request_id_header(),
            latency: config.tenant.latency_mode()?,
            latency_objective_nanos: objective.as_nanos().min(u64::MAX as u128) as u64,
            resolver: ResolverSpec::from_config(&config.tenant)?,
            catalog: Catalog::from_config(&config.catalog)?,
            signals,
            suspends,
            upstream,
            peer,
            upstream_idle: UpstreamIdle::default(),
            admin_allow: config.admin_allow()?,
            tls: CertKey::load(&config.tls)?.map(Arc::new),
            config,
        })
    }
}

/// This thread's copy of one `Shared`'s live config (see `Shared::with_live`).
struct LocalLive {
    owner: u64,
    version: u64,
    live: Arc<Live>,
}

thread_local! {
    static LOCAL_LIVE: std::cell::RefCell<Option<LocalLive>> = const { std::cell::RefCell::new(None) };
}

/// Source of `Shared::id`.
static NEXT_SHARED_ID: AtomicU64 = AtomicU64::new(1);

/// Outcome labels of `statuswatch_config_reloads_total{result}`.
#[derive(Debug, Clone, Copy)]
pub enum ReloadResult {
    Success = 0,
    Failure = 1,
}

pub struct Shared {
    /// Tells this state apart in the per-thread copies of `live`.
    id: u64,
    /// Bumped after every `live` swap: per-thread copies compare it.
    live_version: AtomicU64,
    pub registry: Registry,
    pub global: Global,
    pub live: ArcSwap<Live>,
    pub detector: detect::SharedSnapshot,
    /// Open connections per listener, with their caps.
    pub proxy_conns: ConnLimit,
    pub admin_conns: ConnLimit,
    /// Request body bytes held at once (`proxy.max_buffered_body_bytes`,
    /// sized at start-up).
    pub bodies: BodyBudget,
    /// Responses by route (`route_tally.max_routes`, sized at start-up).
    pub routes: RouteTally,
    /// The last failing requests, for `/failures`.
    pub failures: Failures,
    reloads: [AtomicU64; 2],
    /// False until every service runs, and again once draining starts.
    ready: AtomicBool,
    draining: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("registry", &self.registry)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(mut live: Live) -> Arc<Shared> {
        let bodies = BodyBudget::new(live.config.proxy.max_buffered_body_bytes);
        let routes = RouteTally::new(live.config.route_tally.max_routes);
        live.routes.bind(&routes);
        Arc::new(Shared {
            routes,
            failures: Failures::new(),
            id: NEXT_SHARED_ID.fetch_add(1, Ordering::Relaxed),
            live_version: AtomicU64::new(0),
            registry: Registry::new(live.config.tenant.max_tenants),
            global: Global::default(),
            detector: ArcSwap::new(detect::empty_snapshot(&live.signals)),
            live: ArcSwap::from_pointee(live),
            proxy_conns: ConnLimit::new(Listener::Proxy),
            admin_conns: ConnLimit::new(Listener::Admin),
            bodies,
            reloads: Default::default(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    /// Swap in a new config. The tallies are untouched; the registry applies
    /// the new cap and drops tenants the new rules no longer accept.
    pub fn apply(&self, mut live: Live) {
        live.routes.bind(&self.routes);
        self.registry.set_limit(live.config.tenant.max_tenants);
        let now = self.registry.now_secs(std::time::Instant::now());
        self.live.store(Arc::new(live));
        self.live_version.fetch_add(1, Ordering::Release);
        // Re-check names against the new pattern/allowlist right away.
        self.registry.sweep(&self.live.load().resolver, now);
    }

    /// Run `f` with the live config the way the request path reads it: from
    /// this thread's copy, refreshed when a reload has swapped `live` since.
    /// arc-swap's own `load` writes a per-thread debt slot (with a full
    /// fence) each time, four times per request; this reads one atomic that
    /// only a reload writes, so request threads share no written line for
    /// it. Nested calls fall back to `load`.
    #[inline]
    pub fn with_live<R>(&self, mut f: impl FnMut(&Live) -> R) -> R {
        let version = self.live_version.load(Ordering::Acquire);
        let local = LOCAL_LIVE.try_with(|cell| {
            let mut local = cell.try_borrow_mut().ok()?;
            let fresh = matches!(&*local, Some(l) if l.owner == self.id && l.version == version);
            if !fresh {
                *local = Some(LocalLive {
                    owner: self.id,
                    version,
                    live: self.live.load_full(),
                });
            }
            Some(f(&local.as_ref()?.live))
        });
        match local {
            Ok(Some(r)) => r,
            // Nested, or during thread teardown: `f` has not run.
            _ => f(&self.live.load()),
        }
    }

    pub fn record_reload(&self, r: ReloadResult) {
        self.reloads[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloads(&self, r: ReloadResult) -> u64 {
        self.reloads[r as usize].load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_err(edit: impl FnOnce(&mut Config)) -> String {
        let mut cfg = Config::defaults().unwrap();
        edit(&mut cfg);
        Live::build(cfg).expect_err("should not build").to_string()
    }

    #[test]
    fn building_validates_each_piece_and_names_its_key() {
        let e = build_err(|c| c.tenant.pattern = "([".into());
        assert!(e.contains("tenant.pattern"), "{e}");
        let e = build_err(|c| c.proxy.upstream = "http://x:80/".into());
        assert!(e.contains("proxy.upstream"), "{e}");
        let e = build_err(|c| c.proxy.upstream = "no-such-host.invalid:80".into());
        assert!(e.contains("proxy.upstream"), "{e}");
        let e = build_err(|c| c.admin.allow = vec!["10.0.0.0/8".into(), "10.0.0.0/99".into()]);
        assert!(e.contains("admin.allow[1]"), "{e}");
        let e = build_err(|c| {
            c.tls.listen = "127.0.0.1:1".into();
            c.tls.cert_file = "/nonexistent/cert.pem".into();
            c.tls.key_file = "/nonexistent/key.pem".into();
        });
        assert!(
            e.contains("tls.cert_file") && e.contains("/nonexistent/cert.pem"),
            "{e}"
        );
    }

    #[test]
    fn with_live_sees_a_reload_at_once_and_nests() {
        let shared = Shared::new(Live::build(Config::defaults().unwrap()).unwrap());
        let other = Shared::new(Live::build(Config::defaults().unwrap()).unwrap());
        assert_eq!(shared.with_live(|l| l.config.tenant.max_tenants), 10_000);
        let mut cfg = Config::defaults().unwrap();
        cfg.tenant.max_tenants = 42;
        shared.apply(Live::build(cfg).unwrap());
        assert_eq!(shared.with_live(|l| l.config.tenant.max_tenants), 42);
        // Another state on the same thread is not confused with the first.
        assert_eq!(other.with_live(|l| l.config.tenant.max_tenants), 10_000);
        let nested = shared.with_live(|a| {
            other.with_live(|b| (a.config.tenant.max_tenants, b.config.tenant.max_tenants))
        });
        assert_eq!(nested, (42, 10_000));
    }

    #[test]
    fn the_built_upstream_is_the_resolved_address() {
        let mut cfg = Config::defaults().unwrap();
        cfg.proxy.upstream = "localhost:4000".into();
        let live = Live::build(cfg).unwrap();
        assert!(live.upstream.ip().is_loopback());
        assert_eq!(live.upstream.port(), 4000);
        assert!(live.tls.is_none());
    }
}
