//! Typed configuration: the shipped TOML defaults, an optional file on top,
//! then `STATUSWATCH__SECTION__KEY` environment overrides, then validation
//! whose every error names the offending key.
//!
//! The built-in defaults *are* `config/statuswatch.toml` (embedded at build
//! time), so running with no file at all and running with the shipped file
//! cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The shipped default configuration, also the lowest-priority config source.
pub const DEFAULT_TOML: &str = include_str!("../config/statuswatch.toml");

/// Prefix of environment overrides: `STATUSWATCH__PROXY__UPSTREAM=...`.
pub const ENV_PREFIX: &str = "STATUSWATCH";

/// Keys whose environment override is a comma-separated list.
const ENV_LIST_KEYS: [&str; 2] = ["tenant.sources", "admin.allow"];

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

/// Most bytes read from a config or allowlist file. Real files are a few KiB;
/// the bound keeps `--config /dev/zero` or a runaway file from eating memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Read a small regular text file. The error is a one-line reason, without the
/// path (callers put the path or the key in front).
pub(crate) fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    // `metadata` follows symlinks, so Kubernetes' `..data` links are fine.
    let meta = std::fs::metadata(path).map_err(|e| io_reason(&e))?;
    if meta.is_dir() {
        return Err("is a directory, not a file".into());
    }
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let too_big = || format!("larger than {} KiB", MAX_FILE_BYTES >> 10);
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io_reason(&e))?;
    // It may have grown between the stat and the read.
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".into())
}

/// An I/O error as a short reason, without the "(os error N)" noise.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let msg = e.to_string();
            match msg.split_once(" (os error") {
                Some((m, _)) => m.to_string(),
                None => msg,
            }
        }
    }
}

/// A loaded config plus the keys that were set explicitly (in the file or the
/// environment) rather than inherited from the built-in defaults. Reload uses
/// them to tell a deliberate change from a half-written file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub explicit: BTreeSet<String>,
}

impl Loaded {
    /// Whether `key` ("section.key") was set by the file or the environment.
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains(key)
    }
}

/// Flatten a `config` crate table into dotted keys.
fn collect_keys(prefix: &str, map: config::Map<String, config::Value>, out: &mut BTreeSet<String>) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v.clone().into_table() {
            Ok(t) if !t.is_empty() => collect_keys(&key, t, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

impl Config {
    /// Load defaults + file + environment and check the plain settings.
    /// What needs building (tenant rules, catalog, signals, the upstream's
    /// address, the admin allowlist) is validated by building it, once, in
    /// [`crate::state::Live::build`].
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Config::load_explicit(sources).map(|l| l.config)
    }

    /// [`Config::load`], also reporting which keys were set explicitly.
    pub fn load_explicit(sources: &Sources) -> Result<Loaded, ConfigError> {
        let mut explicit = BTreeSet::new();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = &sources.file {
            // Read it ourselves: bounded, regular files only, and errors that
            // name the file once.
            let text = read_small_file(path).map_err(|reason| ConfigError::Read {
                path: path.clone(),
                reason,
            })?;
            let parsed = config::Config::builder()
                .add_source(config::File::from_str(&text, config::FileFormat::Toml))
                .build()
                .map_err(|e| {
                    ConfigError::Parse(format!("{}: {}", path.display(), one_line(&e.to_string())))
                })?;
            let table = parsed
                .clone()
                .try_deserialize::<config::Map<String, config::Value>>()
                .map_err(|e| {
                    ConfigError::Parse(format!("{}: {}", path.display(), one_line(&e.to_string())))
                })?;
            collect_keys("", table, &mut explicit);
            if explicit.is_empty() {
                // A file being rewritten (truncate, then write) is empty for a
                // moment; applying it would silently bring back every default.
                return Err(ConfigError::Read {
                    path: path.clone(),
                    reason: "has no settings (empty, or only comments); refusing it".into(),
                });
            }
            // Arrays of tables replace the defaults wholesale (a catalog is a
            // list, not a patch), so drop the default catalog when the file has one.
            if parsed
                .get_table("catalog")
                .is_ok_and(|t| t.contains_key("codes"))
            {
                builder = config::Config::builder().add_source(config::File::from_str(
                    &strip_default_catalog(),
                    config::FileFormat::Toml,
                ));
            }
            builder = builder.add_source(parsed);
        }
        let mut env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in ENV_LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        let env_prefix = format!("{ENV_PREFIX}__");
        let env_keys: Vec<String> = match &sources.env {
            Some(map) => map.keys().cloned().collect(),
            None => std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect(),
        };
        explicit.extend(env_keys.iter().filter_map(|k| {
            k.strip_prefix(&env_prefix)
                .map(|rest| rest.to_ascii_lowercase().replace("__", "."))
        }));
        if let Some(map) = &sources.env {
            env = env.source(Some(map.clone().into_iter().collect()));
        }
        builder = builder.add_source(env);
        let cfg: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse(describe_parse_error(e, sources.file.as_deref())))?;
        cfg.validate()?;
        Ok(Loaded {
            config: cfg,
            explicit,
        })
    }

    /// Built-in defaults (the shipped file), validated.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load(&Sources {
            file: None,
            env: Some(BTreeMap::new()),
        })
    }

    /// Checks of the plain settings that serde cannot express, the part no
    /// runtime piece covers. Each error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.proxy;
        for (key, d) in [
            ("proxy.connect_timeout", p.connect_timeout),
            ("proxy.read_timeout", p.read_timeout),
            ("proxy.write_timeout", p.write_timeout),
            ("proxy.idle_timeout", p.idle_timeout),
            ("proxy.client_header_timeout", p.client_header_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(key, "must be greater than zero"));
            }
        }
        if p.client_idle_timeout < Duration::from_secs(1) {
            // pingora keeps connections alive in whole seconds.
            return Err(ConfigError::invalid(
                "proxy.client_idle_timeout",
                "must be at least 1s",
            ));
        }
        for (key, n) in [
            ("proxy.max_connections", p.max_connections),
            ("admin.max_connections", self.admin.max_connections),
        ] {
            if n == 0 || n > MAX_CONNECTIONS_CEILING {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be within 1..={MAX_CONNECTIONS_CEILING}"),
                ));
            }
        }
        if p.threads > 1024 {
            return Err(ConfigError::invalid("proxy.threads", "at most 1024"));
        }
        if p.upstream_tls && self.sni().is_empty() {
            return Err(ConfigError::invalid(
                "proxy.sni",
                "upstream_tls needs a server name: set proxy.sni or use a host name in proxy.upstream",
            ));
        }
        if let Some(tls) = self.tls_listen()? {
            if tls == p.listen || tls == self.admin.listen {
                return Err(ConfigError::invalid(
                    "tls.listen",
                    "must differ from proxy.listen and admin.listen",
                ));
            }
            for (key, v) in [
                ("tls.cert_file", &self.tls.cert_file),
                ("tls.key_file", &self.tls.key_file),
            ] {
                if v.trim().is_empty() {
                    return Err(ConfigError::invalid(key, "must be set when tls.listen is"));
                }
            }
        }
        if self.admin.listen == p.listen {
            return Err(ConfigError::invalid(
                "admin.listen",
                "must differ from proxy.listen",
            ));
        }
        match self.log.format.as_str() {
            "text" | "json" => {}
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("must be \"text\" or \"json\", got {other:?}"),
                ))
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        let d = &self.detector;
        if d.tick.is_zero() || d.tick > Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "detector.tick",
                "must be within (0, 60s]",
            ));
        }
        if d.short_window < d.tick {
            return Err(ConfigError::invalid(
                "detector.short_window",
                "must be at least detector.tick",
            ));
        }
        if d.baseline_half_life < d.short_window {
            return Err(ConfigError::invalid(
                "detector.baseline_half_life",
                "must be at least detector.short_window",
            ));
        }
        if d.wave_tenants == 0 {
            return Err(ConfigError::invalid(
                "detector.wave_tenants",
                "must be at least 1",
            ));
        }
        if d.wave_window < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "detector.wave_window",
                "must be at least 1s",
            ));
        }
        Ok(())
    }

    /// Where the TLS listener listens, if there is one.
    pub fn tls_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let listen = self.tls.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            ConfigError::invalid(
                "tls.listen",
                format!("expected an address like 0.0.0.0:8443, got {listen:?}"),
            )
        })
    }

    /// The upstream address, resolved now (names resolve at start-up and reload).
    pub fn upstream_addr(&self) -> Result<SocketAddr, ConfigError> {
        let up = self.proxy.upstream.trim();
        if up.is_empty() {
            return Err(ConfigError::invalid("proxy.upstream", "must not be empty"));
        }
        if up.contains("://") || up.contains('/') {
            return Err(ConfigError::invalid(
                "proxy.upstream",
                format!("expected host:port, got {up:?} (no scheme or path)"),
            ));
        }
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

    /// The server name for upstream TLS: `proxy.sni`, else the upstream's host part.
    pub fn sni(&self) -> String {
        if !self.proxy.sni.is_empty() {
            return self.proxy.sni.clone();
        }
        let host = self
            .proxy
            .upstream
            .rsplit_once(':')
            .map_or(self.proxy.upstream.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_ok() {
            String::new()
        } else {
            host.to_string()
        }
    }

    /// Parsed `admin.allow` networks.
    pub fn admin_allow(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.admin
            .allow
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_net(s).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("admin.allow[{i}]"),
                        format!("expected an IP address or CIDR like 10.0.0.0/8, got {s:?}"),
                    )
                })
            })
            .collect()
    }

    /// Worker threads for the proxy (0 = available parallelism).
    pub fn worker_threads(&self) -> usize {
        if self.proxy.threads > 0 {
            self.proxy.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Keys whose change only takes effect after a restart.
    pub fn restart_required_changes(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.proxy, &new.proxy);
        let mut keys = Vec::new();
        macro_rules! cmp {
            ($($field:ident),*) => {$(
                if a.$field != b.$field { keys.push(concat!("proxy.", stringify!($field))); }
            )*};
        }
        cmp!(
            listen,
            h2c,
            threads,
            keepalive_pool_size,
            grace_period,
            shutdown_timeout
        );
        if self.admin.listen != new.admin.listen {
            keys.push("admin.listen");
        }
        if self.tls.listen != new.tls.listen {
            keys.push("tls.listen");
        }
        if self.log != new.log {
            keys.push("log");
        }
        if self.detector.tick != new.detector.tick {
            keys.push("detector.tick");
        }
        if self.reload != new.reload {
            keys.push("reload.watch_interval");
        }
        keys
    }
}

/// Keys whose values never appear in logs.
const SECRET_KEYS: [&str; 1] = ["admin.bearer_token"];

impl Config {
    /// Refuse a reload that looks like a half-written file: one that drops
    /// `admin.bearer_token` or `admin.allow`, or changes `proxy.upstream`,
    /// while the new file does not set that key at all (so the value came
    /// from the built-in defaults). Setting the key explicitly, even to `""`
    /// or `[]`, is a deliberate change and is allowed.
    pub fn check_reload(&self, new: &Loaded) -> Result<(), ConfigError> {
        let n = &new.config;
        // (key, whether the new config drops or changes it, what that means)
        let guarded = [
            (
                "admin.bearer_token",
                !self.admin.bearer_token.is_empty() && n.admin.bearer_token.is_empty(),
                "would turn off /metrics authentication",
            ),
            (
                "admin.allow",
                !self.admin.allow.is_empty() && n.admin.allow.is_empty(),
                "would open /metrics to every network",
            ),
            (
                "proxy.upstream",
                self.proxy.upstream != n.proxy.upstream,
                "would send traffic to another upstream",
            ),
        ];
        for (key, dropped, what) in guarded {
            if dropped && !new.is_explicit(key) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "the new config does not set it, and falling back to the default {what}; \
                         refused as a likely partial write (set {key} explicitly to change it)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The keys whose value differs from `new`, as `key: old -> new`, with
    /// secrets redacted and long values summarised.
    pub fn changed_keys(&self, new: &Config) -> Vec<String> {
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        flatten_json("", serde_json::to_value(self).unwrap_or_default(), &mut a);
        flatten_json("", serde_json::to_value(new).unwrap_or_default(), &mut b);
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let none = String::from("(unset)");
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let (old, new) = (a.get(k).unwrap_or(&none), b.get(k).unwrap_or(&none));
                if SECRET_KEYS.contains(&k.as_str()) {
                    format!("{k}: (redacted)")
                } else if old.len() + new.len() > 120 {
                    format!("{k}: (changed)")
                } else {
                    format!("{k}: {old} -> {new}")
                }
            })
            .collect()
    }
}

/// Flatten a JSON value into dotted keys; arrays are leaves.
fn flatten_json(prefix: &str, v: serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The shipped defaults without the catalog list, used when a file brings its own.
fn strip_default_catalog() -> String {
    DEFAULT_TOML
        .split("[[catalog.codes]]")
        .next()
        .unwrap_or(DEFAULT_TOML)
        .to_string()
        + "\n[catalog]\ncodes = []\n"
}

/// Fold a multi-line parser message (source excerpts, carets) into one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| {
            let excerpt = l.starts_with('|')
                || l.split_once('|')
                    .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()));
            !l.is_empty() && !excerpt && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Make the config crate's message say where it came from, on one line.
fn describe_parse_error(e: config::ConfigError, file: Option<&Path>) -> String {
    let msg = one_line(&e.to_string());
    match file {
        Some(path) if !msg.contains(&*path.to_string_lossy()) => {
            format!(
                "{msg} (config file {} or STATUSWATCH__* environment)",
                path.display()
            )
        }
        _ => msg,
    }
}

/// Parse one `admin.allow` entry: a network in CIDR notation or a single
/// address (a host network).
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
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
    fn admin_allow_entries() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let n = parse_net("10.0.0.0/8").unwrap();
        assert!(n.contains(&ip("10.1.2.3")));
        assert!(!n.contains(&ip("11.1.2.3")));
        let one = parse_net(" 127.0.0.1 ").unwrap();
        assert!(one.contains(&ip("127.0.0.1")));
        assert!(!one.contains(&ip("127.0.0.2")));
        assert!(parse_net("::/0").unwrap().contains(&ip("::1")));
        assert!(parse_net("1.2.3.4/33").is_none());
        assert!(parse_net("nonsense").is_none());
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
