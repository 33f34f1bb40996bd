//! Wiring: build the pingora server with the proxy, admin, detector and
//! reload services, and own the process's signals.
//!
//! Signals: SIGTERM and SIGINT drain (stop accepting, let in-flight requests
//! finish within `proxy.grace_period`, exit 0); SIGHUP reloads the config;
//! SIGQUIT is pingora's graceful upgrade (listening sockets handed to a new
//! process started with `--upgrade`).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::{Config, Sources};
use crate::conn::{ConnSettings, ConnSink, ProxyApp};
use crate::forward::Forwarder;
use crate::memory::Release;
use crate::proxy::StatusProxy;
use crate::record::Finished;
use crate::request::Core;
use crate::state::{Live, Shared};
use crate::status::Origin;
use crate::tasks::ControlTask;
use crate::tenant::SlotRef;
use crate::tls::Acceptor;

/// Per-connection read buffer of the proxy listener (pingora's default: 64 KiB).
const L4_READ_BUFFER: usize = 4096;

/// Everything `run` needs besides the config.
#[derive(Debug)]
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
    /// Lower the calling thread's CPU priority below the proxy workers'.
    /// Called once, on the control thread (detector, reload, readiness): its
    /// detector tick walks every tenant, and at a worker's priority that walk
    /// kept requests waiting on a shared core. `None` = same priority.
    pub lower_priority: Option<fn()>,
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
    let tls_listen = cfg.tls_listen()?;
    if !opts.upgrade {
        check_bindable("proxy.listen", cfg.proxy.listen)?;
        if let Some(addr) = tls_listen {
            check_bindable("tls.listen", addr)?;
        }
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

    let core = Core::new(shared);
    let mut http = pingora::proxy::http_proxy(&server.configuration, StatusProxy::new(core));
    let mut options = HttpServerOptions::default();
    options.h2c = cfg.proxy.h2c;
    // CONNECT reaches our hooks, which refuse it and count it with its
    // tenant; pingora would refuse it before any hook, uncounted.
    options.allow_connect_method_proxying = true;
    options.h2_idle_timeout = Some(cfg.proxy.client_idle_timeout);
    http.server_options = Some(options);
    // Our connection loop around pingora's, so that the 400 pingora writes
    // for an unparseable head is tallied too (see conn/mod.rs).
    // Plain HTTP/1 requests take the direct path; the rest go to pingora-proxy.
    let direct = Forwarder::new(core, &server.configuration);
    let mut proxy = Service::new(
        "statuswatch proxy".to_string(),
        ProxyApp::new(http, direct, shared, Release(opts.release_memory)),
    );
    // pingora gives every connection a 64 KiB read buffer by default: with
    // thousands of idle or slow clients that is most of the process's memory.
    // Heads are small, and body reads larger than the buffer bypass it.
    let l4_buffer = L4BufferSettings::default().read(L4_READ_BUFFER);
    proxy.add_listener(ListenerConfig::tcp(cfg.proxy.listen.to_string()).l4_buffer(l4_buffer));
    if let Some(addr) = tls_listen {
        // The certificate is chosen per handshake from the live config, so
        // a reload or a renewed certificate applies without a restart.
        let acceptor = Acceptor::new(move || shared.live.load().tls.clone());
        let mut tls = TlsSettings::with_callbacks(Box::new(acceptor))
            .map_err(|e| anyhow::anyhow!("tls.listen: cannot set up TLS: {e}"))?;
        tls.enable_h2();
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string())
                .tls(tls)
                .l4_buffer(l4_buffer),
        );
    }
    let proxy = server.add_service(proxy);

    // Not a pingora service: it must outlive pingora's shutdown (see admin.rs).
    crate::admin::spawn(shared, admin_listener).context("cannot start the admin listener")?;

    // Detector, SIGHUP reload and readiness share one small runtime.
    let mut control = background_service(
        "statuswatch control",
        ControlTask::new(
            shared,
            opts.sources.clone(),
            loopback(cfg.proxy.listen),
            opts.release_memory,
            opts.lower_priority,
        ),
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
        // Idle connections closed by the drain read until their client has
        // seen the close: exiting first would answer a late request with a reset.
        if shared.global.in_flight() <= 0 && shared.proxy_conns.lingering() == 0 {
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

/// One line about a built config (for `check` output).
pub fn describe(live: &Live) -> String {
    let cfg = &live.config;
    let names: Vec<&str> = live.signals.iter().map(|s| s.name.as_str()).collect();
    format!(
        "proxy {} -> {} ({}{}), {}admin {}, tenants from {:?} (max {}), signals {:?}",
        cfg.proxy.listen,
        cfg.proxy.upstream,
        live.upstream,
        if cfg.proxy.upstream_tls { ", tls" } else { "" },
        match &live.tls {
            Some(_) => format!("tls {}, ", cfg.tls.listen.trim()),
            None => String::new(),
        },
        cfg.admin.listen,
        cfg.tenant.sources,
        cfg.tenant.max_tenants,
        names
    )
}

/// The config file path given on the command line, if any.
pub fn file_sources(file: Option<PathBuf>) -> Sources {
    Sources { file, env: None }
}

/// What the connection loop ([`crate::conn`]) reads and reports: its
/// settings and caps from the live config, and its early answers (no hook
/// ran, so there is no tenant and the proxy wrote the response), counted by
/// the one [`Shared::record`].
impl ConnSink for Shared {
    fn early_answer(&self, code: u16, elapsed: Duration) {
        let finished = Finished {
            tenant: SlotRef::NONE,
            code,
            origin: Origin::Proxy,
            elapsed,
            error_kind: None,
            request: None,
        };
        let now = self.registry.now_secs(Instant::now());
        self.with_live(|live| self.record(live, &finished, now));
        tracing::debug!(status = code, "answered a request pingora could not parse");
    }

    fn conns(&self) -> &crate::limit::ConnLimit {
        &self.proxy_conns
    }

    fn settings(&self) -> ConnSettings {
        self.with_live(|live| {
            let p = &live.config.proxy;
            ConnSettings {
                max_connections: p.max_connections,
                idle_timeout: p.client_idle_timeout,
                head_timeout: p.client_header_timeout,
            }
        })
    }
}
