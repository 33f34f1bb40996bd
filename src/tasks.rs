//! The control thread's background tasks: the detector tick (with the idle
//! tenant sweep), config reload (SIGHUP and changes on disk), readiness, and
//! handing freed memory back to the OS. They share one small runtime, apart
//! from the proxy's workers, so none of them ever delays a request.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{Config, Sources};
use crate::detect::{Detector, Timing};
use crate::state::{Live, ReloadResult, Shared};

/// All of them, joined on the control runtime.
pub(crate) struct ControlTask {
    detector: DetectorTask,
    reload: ReloadTask,
    readiness: ReadinessTask,
    release_memory: Option<fn()>,
    lower_priority: Option<fn()>,
}

impl ControlTask {
    /// `sources` are re-read on reload; `probe` is the proxy listener's
    /// address, probed for readiness; `release_memory` and `lower_priority`,
    /// see `server::RunOptions`.
    pub(crate) fn new(
        shared: &'static Shared,
        sources: Sources,
        probe: SocketAddr,
        release_memory: Option<fn()>,
        lower_priority: Option<fn()>,
    ) -> ControlTask {
        ControlTask {
            detector: DetectorTask {
                shared,
                tick: shared.live.load().config.detector.tick,
            },
            reload: ReloadTask { shared, sources },
            readiness: ReadinessTask { shared, probe },
            release_memory,
            lower_priority,
        }
    }
}

/// How often `RunOptions::release_memory` runs.
const RELEASE_MEMORY_EVERY: Duration = Duration::from_secs(5);

#[async_trait]
impl BackgroundService for ControlTask {
    async fn start(&self, shutdown: ShutdownWatch) {
        // The control runtime has one thread, and this runs on it.
        if let Some(lower) = self.lower_priority {
            lower();
        }
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

    /// What the files behind the config say now: the config file, the
    /// tenant allowlist and the TLS certificate and key, or the reason they
    /// cannot be read. Cheap for files
    /// of a few KiB; the read is bounded like the config load.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let live = self.shared.live.load();
        let c = &live.config;
        let referenced = [&c.tenant.allowlist_file, &c.tls.cert_file, &c.tls.key_file]
            .into_iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let files = self.sources.file.iter().cloned().chain(referenced);
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
