//! What a reload compares between the running config and a new one: keys
//! that need a restart, the partial-write guard, and the changed keys for
//! the log (secrets redacted).

use super::*;

impl Config {
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
            shutdown_timeout,
            max_buffered_body_bytes
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
        if self.route_tally.max_routes != new.route_tally.max_routes {
            keys.push("route_tally.max_routes");
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
