//! The plain checks of a loaded config (each error names its key) and the
//! small derivations every user of a config shares: addresses, the server
//! name, the admin allowlist, the worker count.

use super::*;

/// Ceiling of `tenant.latency_objective`: past it a request is a hang, not
/// a slow answer (and `proxy.read_timeout` will have ended it long before).
const MAX_LATENCY_OBJECTIVE: Duration = Duration::from_secs(3600);

impl Config {
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
        if p.max_buffered_body_bytes < 64 * 1024 {
            // Below one request's reservation no body could ever be admitted.
            return Err(ConfigError::invalid(
                "proxy.max_buffered_body_bytes",
                "must be at least 65536 (one request body's 64 KiB)",
            ));
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
        self.tenant.latency_mode()?;
        let objective = self.tenant.latency_objective;
        if objective.is_zero() || objective > MAX_LATENCY_OBJECTIVE {
            return Err(ConfigError::invalid(
                "tenant.latency_objective",
                "must be within (0, 1h]",
            ));
        }
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
        if d.short_window > Duration::from_secs(300) {
            // The shortest SLO window of the Prometheus rules is made of whole short windows.
            return Err(ConfigError::invalid(
                "detector.short_window",
                "must be at most 5m",
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
        self.validate_requests()
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

    /// `proxy.upstream` checked as `host:port` text (no scheme, no path).
    /// Resolving the name is not config's job: [`crate::state::Live::build`]
    /// does it, once, so the address checked is the address used.
    pub fn upstream_target(&self) -> Result<&str, ConfigError> {
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
        Ok(up)
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
}
