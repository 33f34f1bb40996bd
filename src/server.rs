//! Wiring: build the pingora server with the proxy, admin, detector and
//! reload services, and own the process's signals.
//!
//! Signals: SIGTERM and SIGINT drain (stop accepting, let in-flight requests
//! finish within `proxy.grace_period`, exit 0); SIGHUP reloads the config;
//! SIGQUIT is pingora's graceful upgrade (listening sockets handed to a new
//! process started with `--upgrade`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::config::{Config, Sources};
use crate::conn::ProxyApp;
use crate::detect::{Detector, SignalSpec, Timing};
use crate::proxy::StatusProxy;
use crate::state::{Live, ReloadResult, Shared};

/// Per-connection read buffer of the proxy listener (pingora's default: 64 KiB).
const L4_READ_BUFFER: usize = 4096;

/// Everything `run` needs besides the config.
pub struct RunOptions {
    /// Where the config came from, re-read on SIGHUP.
    pub sources: Sources,
    /// Take over listening sockets from a running instance (graceful upgrade).
    pub upgrade: bool,
    /// Hand memory the allocator holds but no longer uses back to the OS.
    /// Called every few seconds from the control thread: after a burst of
    /// connections the worker threads may sit idle, and an idle thread never
    /// gets round to purging what it freed. `None` = the allocator's own policy.
    pub release_memory: Option<fn()>,
}

/// Check that an address can be bound, so a busy port stops start-up with a
/// message naming the key instead of a panic inside a service thread.
pub fn check_bindable(key: &str, addr: SocketAddr) -> anyhow::Result<()> {
    TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// Build the pingora server for a validated config. Extra services (the demo)
/// can be added by the caller before `run_server`.
pub fn build(cfg: Config, opts: &RunOptions) -> anyhow::Result<(Server, &'static Shared)> {
    if !opts.upgrade {
        check_bindable("proxy.listen", cfg.proxy.listen)?;
    }
    let admin_listener = crate::admin::bind(cfg.admin.listen)
        .with_context(|| format!("admin.listen: cannot listen on {}", cfg.admin.listen))?;
    let live = Live::build(cfg).context("invalid configuration")?;
    let cfg = live.config.clone();
    // The shared state lives as long as the process: leaking it lets every
    // request hold a plain reference instead of bumping a shared refcount.
    let shared: &'static Shared = Box::leak(Box::new(
        Arc::into_inner(Shared::new(live)).context("fresh shared state")?,
    ));

    let mut conf = ServerConf {
        threads: cfg.worker_threads(),
        work_stealing: true,
        upstream_keepalive_pool_size: cfg.proxy.keepalive_pool_size,
        grace_period_seconds: Some(cfg.proxy.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(
            cfg.proxy.shutdown_timeout.as_secs_f64().ceil() as u64
        ),
        upgrade_sock: format!("/tmp/statuswatch-upgrade-{}.sock", cfg.proxy.listen.port()),
        pid_file: format!("/tmp/statuswatch-{}.pid", cfg.proxy.listen.port()),
        ..ServerConf::default()
    };
    // pingora counts tries, not retries: 2 = the first try plus one retry,
    // which the default error_while_proxy grants only to idempotent requests
    // that failed on a reused (pooled) connection the upstream had closed.
    conf.max_retries = 2;
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    // Our own connection loop around pingora's HttpProxy, so that the 400/405
    // pingora writes before any hook are tallied too (see conn.rs).
    let http = pingora::proxy::http_proxy(&server.configuration, StatusProxy::new(shared));
    let mut proxy = Service::new("statuswatch proxy".to_string(), ProxyApp::new(http, shared));
    // pingora gives every connection a 64 KiB read buffer by default: with
    // thousands of idle or slow clients that is most of the process's memory.
    // Heads are small, and body reads larger than the buffer bypass it.
    proxy.add_listener(
        ListenerConfig::tcp(cfg.proxy.listen.to_string())
            .l4_buffer(L4BufferSettings::default().read(L4_READ_BUFFER)),
    );
    let proxy = server.add_service(proxy);

    // Not a pingora service: it must outlive pingora's shutdown (see admin.rs).
    crate::admin::spawn(shared, admin_listener).context("cannot start the admin listener")?;

    // Detector, SIGHUP reload and readiness share one small runtime.
    let mut control = background_service(
        "statuswatch control",
        ControlTask {
            detector: DetectorTask {
                shared,
                tick: cfg.detector.tick,
            },
            reload: ReloadTask {
                shared,
                sources: opts.sources.clone(),
            },
            readiness: ReadinessTask {
                shared,
                probe: loopback(cfg.proxy.listen),
            },
            release_memory: opts.release_memory,
        },
    );
    control.threads = Some(1);
    let control = server.add_service(control);
    control.add_dependency(&proxy);
    Ok((server, shared))
}

/// Run until SIGTERM/SIGINT (drain) or SIGQUIT (upgrade). Never returns.
pub fn run_server(server: Server, shared: &'static Shared) -> ! {
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { shared }),
    });
    std::process::exit(0)
}

/// The address to probe for a listener bound to `addr` (wildcards → loopback).
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

struct Signals {
    shared: &'static Shared,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        let (signal, upgrade) = tokio::select! {
            _ = term.recv() => ("SIGTERM", false),
            _ = int.recv() => ("SIGINT", false),
            _ = quit.recv() => ("SIGQUIT", true),
        };
        self.shared.start_draining();
        let grace = self.shared.live.load().config.proxy.grace_period;
        tracing::info!(signal, grace_period = ?grace, in_flight = self.shared.global.in_flight(), "draining: no new connections; waiting for in-flight requests");
        // pingora sleeps the whole grace period even when nothing is in
        // flight; exit as soon as the last request is done instead.
        let shared = self.shared;
        let settle = if upgrade {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(200)
        };
        std::thread::spawn(move || drain_then_exit(shared, settle));
        if upgrade {
            ShutdownSignal::GracefulUpgrade
        } else {
            ShutdownSignal::GracefulTerminate
        }
    }
}

fn drain_then_exit(shared: &'static Shared, settle: Duration) {
    // Let pingora close its listeners and idle keep-alive connections first.
    std::thread::sleep(settle);
    let mut quiet = 0;
    loop {
        if shared.global.in_flight() <= 0 {
            quiet += 1;
            if quiet >= 4 {
                // The last scrape may predate the final requests: log the totals.
                let mut total = 0u64;
                shared
                    .registry
                    .for_each(|_, _, slot| total += slot.counters.total());
                tracing::info!(
                    responses_total = total,
                    "drained: no request in flight; exiting"
                );
                std::process::exit(0);
            }
        } else {
            quiet = 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct ControlTask {
    detector: DetectorTask,
    reload: ReloadTask,
    readiness: ReadinessTask,
    release_memory: Option<fn()>,
}

/// How often `RunOptions::release_memory` runs.
const RELEASE_MEMORY_EVERY: Duration = Duration::from_secs(5);

#[async_trait]
impl BackgroundService for ControlTask {
    async fn start(&self, shutdown: ShutdownWatch) {
        let release = async {
            let Some(release) = self.release_memory else {
                return;
            };
            let mut every = tokio::time::interval(RELEASE_MEMORY_EVERY);
            let mut shutdown = shutdown.clone();
            loop {
                tokio::select! {
                    _ = every.tick() => release(),
                    _ = shutdown.changed() => return,
                }
            }
        };
        tokio::join!(
            self.detector.start(shutdown.clone()),
            self.reload.start(shutdown.clone()),
            self.readiness.start(shutdown.clone()),
            release,
        );
    }
}

struct DetectorTask {
    shared: &'static Shared,
    tick: Duration,
}

#[async_trait]
impl BackgroundService for DetectorTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let live = self.shared.live.load_full();
        let mut current = live.clone();
        let mut det = Detector::new(Timing::from_config(&live.config), live.signals.clone());
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sweep idle tenants a few times per idle_ttl, at most once per tick.
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let live = self.shared.live.load_full();
            if !Arc::ptr_eq(&live, &current) {
                det.reconfigure(Timing::from_config(&live.config), live.signals.clone());
                current = live.clone();
            }
            // Sweep first, so a reclaimed tenant's detector series leave in the same tick.
            ticks += 1;
            let every = (live.resolver.idle_ttl.as_secs_f64() / 4.0 / self.tick.as_secs_f64())
                .clamp(1.0, 60.0) as u64;
            if ticks.is_multiple_of(every) {
                let now = self.shared.registry.now_secs(std::time::Instant::now());
                let freed = self.shared.registry.sweep(&live.resolver, now);
                if freed > 0 {
                    tracing::debug!(freed, "reclaimed idle tenant slots");
                }
            }
            let snap = det.step(&self.shared.registry);
            self.shared.detector.store(Arc::new(snap));
        }
    }
}

struct ReloadTask {
    shared: &'static Shared,
    sources: Sources,
}

impl ReloadTask {
    /// Load, check and apply the config: the one path for SIGHUP and for a
    /// change on disk. A rejected config is counted and logged, and the
    /// running one stays in force.
    fn reload(&self, trigger: &'static str) {
        let old = self.shared.live.load_full();
        let built = Config::load_explicit(&self.sources).and_then(|loaded| {
            old.config.check_reload(&loaded)?;
            Live::build(loaded.config)
        });
        match built {
            Ok(live) => {
                let restart = old.config.restart_required_changes(&live.config);
                if !restart.is_empty() {
                    tracing::warn!(keys = ?restart, "config reloaded, but these keys only take effect after a restart");
                }
                let changed = old.config.changed_keys(&live.config);
                let signals: Vec<&str> = live.signals.iter().map(|s| s.name.as_str()).collect();
                tracing::info!(trigger, upstream = %live.upstream, ?signals, ?changed, "config reloaded");
                self.shared.apply(live);
                self.shared.record_reload(ReloadResult::Success);
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "config reload rejected; the running config stays in force");
                self.shared.record_reload(ReloadResult::Failure);
            }
        }
    }

    /// What the files behind the config say now: the config file and the
    /// tenant allowlist, or the reason they cannot be read. Cheap for files
    /// of a few KiB; the read is bounded like the config load.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let allowlist = self.shared.live.load().config.tenant.allowlist_file.clone();
        let files = self
            .sources
            .file
            .iter()
            .cloned()
            .chain((!allowlist.trim().is_empty()).then(|| PathBuf::from(allowlist.trim())));
        for path in files {
            path.hash(&mut h);
            crate::config::read_small_file(&path).hash(&mut h);
        }
        h.finish()
    }
}

#[async_trait]
impl BackgroundService for ReloadTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler; reload disabled");
            return;
        };
        let every = self.shared.live.load().config.reload.watch_interval;
        let watching = !every.is_zero() && self.sources.file.is_some();
        let mut poll = tokio::time::interval(if watching {
            every
        } else {
            Duration::from_secs(3600)
        });
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Files as last loaded, and a change seen once but not yet twice:
        // a change applies once it has held still for one poll, so an editor
        // or a `kubectl` update caught half-way is not even tried.
        let mut applied = self.fingerprint();
        let mut pending = None;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    self.reload("SIGHUP");
                    applied = self.fingerprint();
                    pending = None;
                }
                _ = poll.tick(), if watching => {
                    let now = self.fingerprint();
                    if now == applied {
                        pending = None;
                    } else if pending == Some(now) {
                        self.reload("file change");
                        applied = now;
                        pending = None;
                    } else {
                        pending = Some(now);
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

struct ReadinessTask {
    shared: &'static Shared,
    probe: SocketAddr,
}

#[async_trait]
impl BackgroundService for ReadinessTask {
    async fn start(&self, _shutdown: ShutdownWatch) {
        // Ready once the proxy listener accepts connections.
        for _ in 0..3000 {
            let probe = self.probe;
            let ok = tokio::task::spawn_blocking(move || {
                TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
            })
            .await
            .unwrap_or(false);
            if ok {
                self.shared.set_ready(true);
                tracing::info!(proxy = %self.probe, "ready");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::error!(proxy = %self.probe, "the proxy listener never came up");
    }
}

/// Signals the detector would use for a config (for `check` output).
pub fn describe(cfg: &Config) -> anyhow::Result<String> {
    let signals = SignalSpec::all_from_config(cfg)?;
    let names: Vec<&str> = signals.iter().map(|s| s.name.as_str()).collect();
    Ok(format!(
        "proxy {} -> {}{}, admin {}, tenants from {:?} (max {}), signals {:?}",
        cfg.proxy.listen,
        cfg.proxy.upstream,
        if cfg.proxy.upstream_tls { " (tls)" } else { "" },
        cfg.admin.listen,
        cfg.tenant.sources,
        cfg.tenant.max_tenants,
        names
    ))
}

/// The config file path given on the command line, if any.
pub fn file_sources(file: Option<PathBuf>) -> Sources {
    Sources { file, env: None }
}
