//! statuswatch command line: `run` (default), `check`, `rules`, `demo`, `demo-upstream`,
//! `demo-traffic`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use statuswatch::config::{Config, Sources};
use statuswatch::demo::{DemoUpstream, Summary, Target, Traffic};
use statuswatch::server::{self, RunOptions};
use statuswatch::state::Live;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Purge the memory mimalloc keeps for reuse, process-wide. Its own purging
/// runs on allocation, so after a connection flood the idle worker threads
/// would hold on to it: measured, 4,000 slow clients left RSS at ~120 MiB
/// until the next burst of traffic, against 18 MiB idle.
fn release_memory() {
    // SAFETY: `mi_collect` takes no pointers; it is documented as callable
    // from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The control thread's nice value: a proxy worker woken by a request then
/// preempts it at once instead of waiting out its time slice, and it still
/// gets ≈ 10 % of a saturated core (its detector tick needs ≈ 0.5 % at
/// 10,000 tenants: one ≈ 5 ms walk a second).
const CONTROL_NICE: libc::c_int = 10;

/// See `RunOptions::lower_priority`. On Linux nice is per thread, and
/// `PRIO_PROCESS` with a thread id sets that thread only.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id; no pointers.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, CONTROL_NICE)
    };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not lower the control thread's CPU priority; it runs at the workers' priority"
        );
    }
}

#[derive(Parser)]
#[command(
    name = "statuswatch",
    version,
    about = "A status-monitoring sidecar reverse proxy"
)]
struct Cli {
    /// Config file (TOML). Without one, the built-in defaults (= config/statuswatch.toml) apply.
    /// Any key can be overridden with STATUSWATCH__SECTION__KEY environment variables.
    #[arg(short, long, global = true, env = "STATUSWATCH_CONFIG")]
    config: Option<PathBuf>,

    /// Take over the listening sockets of a running instance (after SIGQUIT to it).
    #[arg(long, global = true)]
    upgrade: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the config (file + environment), print the series it costs per
    /// pod (worst case and expected, at tenant.max_tenants) and exit: 0 when valid.
    Check,
    /// Print the Prometheus rules (recording rules and alerts) for the config's
    /// signals and thresholds, as YAML on stdout.
    Rules {
        /// SLO target of the burn-rate alerts (0.999 = 99.9 % of responses not 5xx).
        #[arg(long, default_value_t = 0.999)]
        slo: f64,
        /// Base URL of the runbooks; each alert links to BASE/<AlertName>.md (the
        /// default: docs/runbooks at this release's tag).
        #[arg(long, default_value = statuswatch::rules::DEFAULT_RUNBOOK_BASE_URL)]
        runbook_base_url: String,
        /// `for:` of the spike alerts (humantime, e.g. 30s; default none: the
        /// decision is already a significance test over the whole window).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        spike_for: Duration,
        /// Regex of the scrape job name(s) of the sidecars (health alerts).
        #[arg(long, default_value = statuswatch::rules::DEFAULT_JOB_REGEX)]
        job_regex: String,
        /// Base URL of Grafana for the alerts' dashboard_url annotation (default:
        /// links relative to Grafana's root, /d/statuswatch-tenant?var-...).
        #[arg(long, default_value = "")]
        grafana_url: String,
        /// How often Prometheus scrapes the sidecars (humantime, e.g. 30s);
        /// overrides prometheus.scrape_interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        scrape_interval: Option<Duration>,
        /// How often Prometheus evaluates the rules (humantime, e.g. 1m);
        /// overrides prometheus.evaluation_interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        evaluation_interval: Option<Duration>,
    },
    /// Run the proxy in front of the bundled demo upstream, with a traffic generator.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where /metrics is served.
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin_listen: SocketAddr,
        /// Where the demo upstream listens.
        #[arg(long, default_value = "127.0.0.1:3000")]
        upstream_listen: SocketAddr,
        /// Requests per second the traffic generator sends (0 = none).
        #[arg(long, default_value_t = statuswatch::demo::RPS)]
        rps: u32,
        /// Seconds between summary lines on stdout (0 = none).
        #[arg(long, default_value_t = 5)]
        summary_every: u64,
    },
    /// Run only the demo upstream (a controllable backend: GET /status/{code}?delay_ms=N).
    /// Its incident script runs from its own start (see `demo`).
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
    },
    /// Run only the demo traffic generator (the one of `demo`: REV23-like requests
    /// of 7 studios), against a statuswatch proxy in front of `demo-upstream`, e.g.
    /// the compose demo's `--target statuswatch:8080`. It waits for the proxy and
    /// reconnects when it restarts.
    DemoTraffic {
        /// The proxy: host:port. A host name is resolved again on every
        /// (re)connect.
        #[arg(long, value_name = "HOST:PORT")]
        target: Target,
        /// Requests per second.
        #[arg(long, default_value_t = statuswatch::demo::RPS,
              value_parser = clap::value_parser!(u32).range(1..))]
        rps: u32,
        /// Seconds between log lines counting the responses by class (0 = none).
        #[arg(long, default_value_t = 10)]
        summary_every: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statuswatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Raise the soft open-files limit to the hard one, as nginx's
/// `worker_rlimit_nofile` and Go's runtime do: the connection caps
/// (`proxy.max_connections`, each client also needing an upstream socket)
/// are only meaningful below the fd limit, and a soft limit of 1024 is common.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    raise_fd_limit();
    let sources = Sources {
        file: cli.config.clone(),
        env: None,
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            let live = Live::build(Config::load(&sources)?)?;
            // The rules' cadence too: a config the rules cannot see with is refused here.
            let cadence = statuswatch::rules::Cadence::of(&live.config)?;
            println!("config ok: {}", server::describe(&live));
            println!(
                "prometheus rules: {}",
                cadence.describe(live.config.detector.short_window)
            );
            println!("{}", statuswatch::metrics::budget::Budget::of(&live));
            Ok(())
        }
        Command::Rules {
            slo,
            runbook_base_url,
            spike_for,
            job_regex,
            grafana_url,
            scrape_interval,
            evaluation_interval,
        } => {
            let mut cfg = Config::load(&sources)?;
            if let Some(d) = scrape_interval {
                cfg.prometheus.scrape_interval = d;
            }
            if let Some(d) = evaluation_interval {
                cfg.prometheus.evaluation_interval = d;
            }
            // The same builder as `check` and `run`: the three accept the same configs.
            let live = Live::build(cfg)?;
            let opts = statuswatch::rules::RulesOptions {
                slo,
                runbook_base_url,
                spike_for,
                job_regex,
                grafana_url,
            };
            print!("{}", statuswatch::rules::render(&live, &opts)?);
            Ok(())
        }
        Command::Run => {
            let cfg = Config::load(&sources)?;
            init_logging(&cfg)?;
            let (server, shared) = server::build(
                cfg,
                &RunOptions {
                    sources,
                    upgrade: cli.upgrade,
                    release_memory: Some(release_memory),
                    lower_priority: Some(lower_priority),
                },
            )?;
            tracing::info!(version = statuswatch::VERSION, "statuswatch starting");
            server::run_server(server, shared)
        }
        Command::Demo {
            listen,
            admin_listen,
            upstream_listen,
            rps,
            summary_every,
        } => {
            let mut cfg = Config::load(&sources)?;
            cfg.proxy.listen = listen;
            cfg.admin.listen = admin_listen;
            cfg.proxy.upstream = upstream_listen.to_string();
            cfg.proxy.upstream_tls = false;
            init_logging(&cfg)?;
            server::check_bindable("--upstream-listen", upstream_listen)?;
            let (mut srv, shared) = server::build(
                cfg,
                &RunOptions {
                    sources,
                    upgrade: false,
                    release_memory: Some(release_memory),
                    lower_priority: Some(lower_priority),
                },
            )?;
            let mut upstream = Service::new("demo upstream".to_string(), DemoUpstream::default());
            upstream.add_tcp(&upstream_listen.to_string());
            upstream.threads = Some(1);
            srv.add_service(upstream);
            if rps > 0 {
                srv.add_service(background_service(
                    "demo traffic",
                    Traffic {
                        target: Target::from(server::loopback(listen)),
                        rps,
                        connections: statuswatch::demo::CONNECTIONS,
                        report_every: None,
                    },
                ));
            }
            if summary_every > 0 {
                srv.add_service(background_service(
                    "demo summary",
                    Summary {
                        shared,
                        every: Duration::from_secs(summary_every),
                    },
                ));
            }
            println!("statuswatch demo");
            println!("  proxy     http://{listen}  (try: curl -H 'X-Tenant-Name: inkhouse' -H 'X-Api-Key: k' http://{listen}/api/v2/customers)");
            println!("  metrics   http://{admin_listen}/metrics");
            println!("  upstream  http://{upstream_listen}  (the bundled REV23-like demo API)");
            println!(
                "  traffic   {rps} req/s across {} studios; incidents repeat every 3 minutes",
                statuswatch::demo::STUDIOS.len()
            );
            println!("  stop with Ctrl-C");
            server::run_server(srv, shared)
        }
        Command::DemoUpstream { listen } => {
            let cfg = Config::load(&sources)?;
            init_logging(&cfg)?;
            server::check_bindable("--listen", listen)?;
            let mut srv = demo_server();
            let mut upstream = Service::new("demo upstream".to_string(), DemoUpstream::default());
            upstream.add_tcp(&listen.to_string());
            srv.add_service(upstream);
            tracing::info!(%listen, "demo upstream listening");
            srv.run_forever()
        }
        Command::DemoTraffic {
            target,
            rps,
            summary_every,
        } => {
            let cfg = Config::load(&sources)?;
            init_logging(&cfg)?;
            let mut srv = demo_server();
            tracing::info!(%target, rps, "demo traffic starting");
            srv.add_service(background_service(
                "demo traffic",
                Traffic {
                    target,
                    rps,
                    connections: statuswatch::demo::CONNECTIONS,
                    report_every: (summary_every > 0).then(|| Duration::from_secs(summary_every)),
                },
            ));
            srv.run_forever()
        }
    }
}

/// A one-thread pingora server for `demo-upstream` and `demo-traffic`, which
/// stops at once on SIGTERM/SIGINT (nothing to drain).
fn demo_server() -> pingora::server::Server {
    let conf = pingora::server::configuration::ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut srv = pingora::server::Server::new_with_opt_and_conf(
        pingora::server::configuration::Opt::default(),
        conf,
    );
    srv.bootstrap();
    srv
}

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .with_context(|| format!("log.level: {:?}", cfg.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let res = if cfg.log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    res.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}
