//! Typed configuration: the shipped TOML defaults, an optional file on top,
//! then `STATUSWATCH__SECTION__KEY` environment overrides, then validation
//! whose every error names the offending key.
//!
//! The built-in defaults *are* `config/statuswatch.toml` (embedded at build
//! time), so running with no file at all and running with the shipped file
//! cannot drift apart.
//!
//! This module is a leaf: it parses and checks plain settings and imports
//! nothing else from the crate. What is built from a config (tenant rules,
//! catalog, signals, the upstream's address, the admin allowlist, the TLS
//! certificate) is built and validated once, by `state::Live::build`.
//! `load` reads the layered sources, `check` holds the plain checks and the
//! small derivations, `reload` what a reload compares.

mod check;
mod load;
mod reload;
mod requests;

use load::one_line;
pub(crate) use load::read_small_file;
pub use load::{Loaded, MAX_FILE_BYTES};
pub use requests::{FailuresConfig, RouteTallyConfig, RouteTemplate, MAX_ROUTES_CEILING};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The shipped default configuration, also the lowest-priority config source.
pub const DEFAULT_TOML: &str = include_str!("../../config/statuswatch.toml");

/// Prefix of environment overrides: `STATUSWATCH__PROXY__UPSTREAM=...`.
pub const ENV_PREFIX: &str = "STATUSWATCH";

/// Keys whose environment override is a comma-separated list.
pub(crate) const ENV_LIST_KEYS: [&str; 2] = ["tenant.sources", "admin.allow"];

/// Hard ceiling for `proxy.max_connections` and `admin.max_connections`.
pub const MAX_CONNECTIONS_CEILING: usize = 1_000_000;

/// Hard ceiling for `tenant.max_tenants`: bounds memory whatever the file says.
pub const MAX_TENANTS_CEILING: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, or is not something to read a config from
    /// (a directory, a device, an empty or oversized file). One line: the
    /// reason is part of the message, not a `source` that would repeat it.
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The layered sources did not parse or did not match the schema. The
    /// message comes from the `config` crate and names the key.
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("{key}: {msg}")]
    Invalid { key: String, msg: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, msg: impl Into<String>) -> Self {
        // One line per error: multi-line messages (regex parse errors) are folded.
        ConfigError::Invalid {
            key: key.into(),
            msg: one_line(&msg.into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub tenant: TenantConfig,
    pub log: LogConfig,
    pub detector: DetectorConfig,
    pub signals: BTreeMap<String, SignalConfig>,
    pub catalog: CatalogConfig,
    pub reload: ReloadConfig,
    pub tls: TlsConfig,
    pub prometheus: PrometheusConfig,
    pub route_tally: RouteTallyConfig,
    pub failures: FailuresConfig,
}

/// The Prometheus that scrapes the sidecars and evaluates the rules of
/// `statuswatch rules`: its cadence decides how long the rules' windows must
/// be to hold enough samples ([`Config::rule_window`]). The proxy itself
/// does not read it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// How often Prometheus scrapes each sidecar's /metrics.
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// How often Prometheus evaluates rule groups without an interval of their own.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
}

/// The optional TLS listener for clients (HTTP/1.1 and HTTP/2 through ALPN).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Where TLS clients connect; empty = no TLS listener.
    pub listen: String,
    /// PEM certificate chain and private key; re-read at every reload.
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often the config file and the allowlist are checked for changes
    /// (0 = only on SIGHUP).
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub upstream: String,
    pub upstream_tls: bool,
    pub sni: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub keepalive_pool_size: usize,
    pub threads: usize,
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub client_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub client_header_timeout: Duration,
    pub max_connections: usize,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener.
    pub h2c: bool,
    /// Keep (and extend) the `X-Forwarded-For` / `X-Forwarded-Proto` a
    /// request carries; `false` replaces them with this hop's own.
    pub trust_forwarded: bool,
    /// Serve plain HTTP/1.1 requests on the direct path (`crate::forward`);
    /// `false` sends every request through pingora-proxy.
    pub direct_path: bool,
    /// Request body bytes the direct path buffers at once, all connections
    /// together; past it a request's body streams through pingora-proxy.
    pub max_buffered_body_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub bearer_token: String,
    pub allow: Vec<String>,
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub sources: Vec<String>,
    pub header: String,
    pub host_suffix: String,
    pub path_prefix: String,
    pub response_header: String,
    pub pattern: String,
    pub max_length: usize,
    pub max_tenants: usize,
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    pub allowlist_file: String,
    /// Per-tenant latency series: one of [`LatencyMode::NAMES`].
    pub latency: String,
    /// `tenant.latency = "slow"` counts responses slower than this.
    #[serde(with = "humantime_serde")]
    pub latency_objective: Duration,
}

/// What `tenant.latency` exports per tenant, cheapest first. Every mode
/// has its price in series per tenant ([`LatencyMode::series_per_tenant`]),
/// multiplied by `tenant.max_tenants` and by the pod count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyMode {
    /// No per-tenant latency series.
    Off,
    /// `statuswatch_tenant_slow_requests_total`: responses slower than
    /// `tenant.latency_objective` (1 series, from the tenant's first slow one).
    Slow,
    /// `statuswatch_tenant_request_duration_seconds_sum` and `_count` (2).
    Summary,
    /// The full histogram: 6 buckets, `_sum` and `_count` (8).
    Histogram,
}

impl LatencyMode {
    /// The accepted values of `tenant.latency`.
    pub const NAMES: [&'static str; 4] = ["slow", "summary", "histogram", "off"];

    pub fn parse(s: &str) -> Result<LatencyMode, ConfigError> {
        match s {
            "slow" => Ok(LatencyMode::Slow),
            "summary" => Ok(LatencyMode::Summary),
            "histogram" => Ok(LatencyMode::Histogram),
            "off" => Ok(LatencyMode::Off),
            other => Err(ConfigError::invalid(
                "tenant.latency",
                format!(
                    "must be one of \"slow\", \"summary\", \"histogram\" or \"off\", got {other:?}"
                ),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LatencyMode::Off => "off",
            LatencyMode::Slow => "slow",
            LatencyMode::Summary => "summary",
            LatencyMode::Histogram => "histogram",
        }
    }

    /// Series per tenant with traffic (for `slow`: with a slow response).
    pub fn series_per_tenant(self) -> u64 {
        match self {
            LatencyMode::Off => 0,
            LatencyMode::Slow => 1,
            LatencyMode::Summary => 2,
            LatencyMode::Histogram => 8,
        }
    }
}

impl TenantConfig {
    /// `tenant.latency`, parsed (validated by [`Config::validate`]).
    pub fn latency_mode(&self) -> Result<LatencyMode, ConfigError> {
        LatencyMode::parse(&self.latency)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: String,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    #[serde(with = "humantime_serde")]
    pub short_window: Duration,
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    pub floor: f64,
    pub factor: f64,
    pub min_requests: u64,
    pub min_events: u64,
    pub significance: f64,
    #[serde(with = "humantime_serde")]
    pub clear_after: Duration,
    /// Window requests a series without a baseline of its own needs before
    /// it is judged against the overall share (new tenant, fresh start).
    pub cold_min_requests: u64,
    /// How long a spike may hold its baseline frozen before the baseline
    /// learns again (a permanent change becomes the new normal).
    #[serde(with = "humantime_serde")]
    pub relearn_after: Duration,
    pub wave_tenants: u64,
    #[serde(with = "humantime_serde")]
    pub wave_window: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub codes: Vec<u16>,
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub floor: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub min_requests: Option<u64>,
    #[serde(default)]
    pub min_events: Option<u64>,
    #[serde(default)]
    pub significance: Option<f64>,
    /// Severity of the signal's fleet-wide alert (`statuswatch rules`).
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub clear_after: Option<Duration>,
    #[serde(default)]
    pub cold_min_requests: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub relearn_after: Option<Duration>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    pub codes: Vec<CatalogEntry>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub code: u16,
    pub reason: String,
    #[serde(default)]
    pub meaning: String,
}

/// Where the layered configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Optional TOML file layered over the built-in defaults.
    pub file: Option<PathBuf>,
    /// Environment to read overrides from; `None` = the process environment.
    pub env: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load_str(toml: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        Config::load(&Sources {
            file: Some(f.path().to_path_buf()),
            env: env(pairs),
        })
    }

    #[test]
    fn defaults_equal_shipped_file() {
        let d = Config::defaults().unwrap();
        let f = load_str(DEFAULT_TOML, &[]).unwrap();
        assert_eq!(d, f);
        assert_eq!(d.proxy.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(d.tenant.max_tenants, 10000);
        assert_eq!(d.catalog.codes.len(), 11);
        assert_eq!(d.signals.len(), 2);
    }

    #[test]
    fn env_overrides_win() {
        let c = load_str(
            "[proxy]\nupstream = \"127.0.0.1:4000\"\n",
            &[
                ("STATUSWATCH__PROXY__UPSTREAM", "10.0.0.5:80"),
                ("STATUSWATCH__TENANT__MAX_TENANTS", "42"),
                ("STATUSWATCH__PROXY__UPSTREAM_TLS", "false"),
                ("STATUSWATCH__TENANT__SOURCES", "host,header"),
                ("STATUSWATCH__SIGNALS__SUSPENDED__FLOOR", "0.5"),
            ],
        )
        .unwrap();
        assert_eq!(c.proxy.upstream, "10.0.0.5:80");
        assert_eq!(c.tenant.max_tenants, 42);
        assert_eq!(c.tenant.sources, vec!["host", "header"]);
        assert_eq!(c.signals["suspended"].floor, Some(0.5));
    }

    #[test]
    fn file_catalog_replaces_default_catalog() {
        let c = load_str(
            "[[catalog.codes]]\ncode = 200\nreason = \"OK\"\n\n[[catalog.codes]]\ncode = 429\nreason = \"Too Many Requests\"\n",
            &[],
        )
        .unwrap();
        let codes: Vec<u16> = c.catalog.codes.iter().map(|e| e.code).collect();
        assert_eq!(codes, vec![200, 429]);
    }

    fn err_of(toml: &str) -> String {
        load_str(toml, &[]).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let e = err_of("[proxy]\nlisten = \"nonsense\"\n");
        assert!(e.contains("proxy.listen") || e.contains("listen"), "{e}");
        let e = err_of("[tenant]\nmax_tenants = \"many\"\n");
        assert!(e.contains("max_tenants"), "{e}");
        let e = err_of("[proxy]\nconnect_timeout = \"soon\"\n");
        assert!(e.contains("connect_timeout"), "{e}");
        let e = err_of("[log]\nformat = \"xml\"\n");
        assert!(e.contains("log.format"), "{e}");
        let e = err_of("[tls]\nlisten = \"127.0.0.1:1\"\n");
        assert!(e.contains("tls.cert_file"), "{e}");
        let e = err_of("[tenant]\nlatency = \"percentiles\"\n");
        assert!(
            e.starts_with("tenant.latency: ") && e.contains("\"percentiles\""),
            "{e}"
        );
        let e = err_of("[tenant]\nlatency_objective = \"0s\"\n");
        assert!(e.starts_with("tenant.latency_objective: "), "{e}");
        let e = err_of("[tenant]\nlatency_objective = \"2h\"\n");
        assert!(e.starts_with("tenant.latency_objective: "), "{e}");
        let e = err_of("[tenant]\nlatency_objective = \"soon\"\n");
        assert!(e.contains("latency_objective"), "{e}");
    }

    #[test]
    fn latency_modes_from_file_and_environment() {
        let d = Config::defaults().unwrap();
        assert_eq!(d.tenant.latency_mode().unwrap(), LatencyMode::Slow);
        assert_eq!(d.tenant.latency_objective, Duration::from_millis(500));
        for name in LatencyMode::NAMES {
            let c = load_str(
                "[tenant]\nlatency = \"off\"\n",
                &[
                    ("STATUSWATCH__TENANT__LATENCY", name),
                    ("STATUSWATCH__TENANT__LATENCY_OBJECTIVE", "250ms"),
                ],
            )
            .unwrap();
            assert_eq!(c.tenant.latency_mode().unwrap().name(), name);
            assert_eq!(c.tenant.latency_objective, Duration::from_millis(250));
        }
        let e = load_str(
            "[tenant]\nmax_tenants = 5\n",
            &[("STATUSWATCH__TENANT__LATENCY", "Histogram")],
        );
        let e = e.unwrap_err().to_string();
        assert!(e.starts_with("tenant.latency: "), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = err_of("[proxy]\nlisten_addr = \"0.0.0.0:1\"\n");
        assert!(e.contains("listen_addr"), "{e}");
        let e = err_of("[nonsense]\nx = 1\n");
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::load(&Sources {
            file: Some("/nonexistent/statuswatch.toml".into()),
            env: env(&[]),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/statuswatch.toml"), "{e}");
    }

    #[test]
    fn restart_required_detects_listen_change() {
        let a = Config::defaults().unwrap();
        let mut b = a.clone();
        b.proxy.listen = "127.0.0.1:1".parse().unwrap();
        b.tenant.max_tenants = 5;
        assert_eq!(a.restart_required_changes(&b), vec!["proxy.listen"]);
    }
}
