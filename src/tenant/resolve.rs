//! Which tenant a request claims: the resolution rules built from `[tenant]`
//! (sources, header names, host suffix, path prefix, pattern, allowlist) and
//! the extraction of a raw claim from a request.
//!
//! Kept apart from the registry because it is pure policy: it is rebuilt and
//! swapped whole on reload, while the registry and its counters live on.

use std::collections::HashSet;
use std::time::Duration;

use http::header::HeaderName;
use pingora::http::RequestHeader;
use regex::Regex;

use crate::config::{ConfigError, TenantConfig, MAX_TENANTS_CEILING};

/// Longest tenant value ever considered (a DNS name); longer is invalid.
pub const MAX_LENGTH_CEILING: usize = 253;

/// Where a tenant value can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Host,
    Path,
}

/// Resolution rules built from `[tenant]`; swapped whole on reload.
#[derive(Debug)]
pub struct ResolverSpec {
    pub sources: Vec<Source>,
    pub header: HeaderName,
    pub host_suffix: String,
    pub path_prefix: String,
    pub response_header: Option<HeaderName>,
    pub pattern: Regex,
    pub max_length: usize,
    pub max_tenants: usize,
    pub idle_ttl: Duration,
    pub allowlist: Option<HashSet<Box<str>>>,
}

impl ResolverSpec {
    pub fn from_config(cfg: &TenantConfig) -> Result<ResolverSpec, ConfigError> {
        if cfg.sources.is_empty() {
            return Err(ConfigError::invalid(
                "tenant.sources",
                "must name at least one of \"header\", \"host\", \"path\"",
            ));
        }
        let mut sources = Vec::new();
        for (i, s) in cfg.sources.iter().enumerate() {
            let src = match s.trim().to_ascii_lowercase().as_str() {
                "header" => Source::Header,
                "host" => Source::Host,
                "path" => Source::Path,
                other => {
                    return Err(ConfigError::invalid(
                        format!("tenant.sources[{i}]"),
                        format!(
                            "unknown source {other:?}; expected \"header\", \"host\" or \"path\""
                        ),
                    ))
                }
            };
            if sources.contains(&src) {
                return Err(ConfigError::invalid(
                    format!("tenant.sources[{i}]"),
                    format!("{s:?} is listed twice"),
                ));
            }
            sources.push(src);
        }
        let header = HeaderName::from_bytes(cfg.header.trim().as_bytes()).map_err(|_| {
            ConfigError::invalid(
                "tenant.header",
                format!("{:?} is not a valid header name", cfg.header),
            )
        })?;
        let response_header = match cfg.response_header.trim() {
            "" => None,
            h => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    "tenant.response_header",
                    format!("{h:?} is not a valid header name"),
                )
            })?),
        };
        let host_suffix = cfg.host_suffix.trim().to_ascii_lowercase();
        if sources.contains(&Source::Host) && host_suffix.trim_start_matches('.').is_empty() {
            return Err(ConfigError::invalid(
                "tenant.host_suffix",
                "source \"host\" needs a suffix such as \".rev23.com\"",
            ));
        }
        let path_prefix = cfg.path_prefix.trim().to_string();
        if sources.contains(&Source::Path) && !path_prefix.starts_with('/') {
            return Err(ConfigError::invalid(
                "tenant.path_prefix",
                "source \"path\" needs a prefix starting with '/', such as \"/t/\"",
            ));
        }
        let pattern = Regex::new(&cfg.pattern)
            .map_err(|e| ConfigError::invalid("tenant.pattern", e.to_string()))?;
        if !(1..=MAX_LENGTH_CEILING).contains(&cfg.max_length) {
            return Err(ConfigError::invalid(
                "tenant.max_length",
                format!("must be within 1..={MAX_LENGTH_CEILING}"),
            ));
        }
        if !(1..=MAX_TENANTS_CEILING).contains(&cfg.max_tenants) {
            return Err(ConfigError::invalid(
                "tenant.max_tenants",
                format!("must be within 1..={MAX_TENANTS_CEILING}"),
            ));
        }
        if cfg.idle_ttl < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "tenant.idle_ttl",
                "must be at least 1s",
            ));
        }
        let mut spec = ResolverSpec {
            sources,
            header,
            host_suffix,
            path_prefix,
            response_header,
            pattern,
            max_length: cfg.max_length,
            max_tenants: cfg.max_tenants,
            idle_ttl: cfg.idle_ttl,
            allowlist: None,
        };
        if !cfg.allowlist_file.trim().is_empty() {
            spec.allowlist = Some(spec.load_allowlist(cfg.allowlist_file.trim())?);
        }
        Ok(spec)
    }

    fn load_allowlist(&self, path: &str) -> Result<HashSet<Box<str>>, ConfigError> {
        let text = crate::config::read_small_file(std::path::Path::new(path)).map_err(|e| {
            ConfigError::invalid("tenant.allowlist_file", format!("cannot read {path}: {e}"))
        })?;
        let mut set = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let name = line.to_ascii_lowercase();
            if !self.is_valid(&name) {
                return Err(ConfigError::invalid(
                    "tenant.allowlist_file",
                    format!("{path}:{}: {line:?} does not match tenant.pattern", n + 1),
                ));
            }
            set.insert(name.into_boxed_str());
        }
        Ok(set)
    }

    /// Whether the allowlist (if any) admits a lower-cased name.
    pub fn allows(&self, name: &str) -> bool {
        self.allowlist.as_ref().is_none_or(|a| a.contains(name))
    }

    /// Whether a lower-cased name is an acceptable tenant label.
    pub fn is_valid(&self, name: &str) -> bool {
        !name.is_empty()
            && name.len() <= self.max_length
            && !name.starts_with("__")
            && self.pattern.is_match(name)
    }

    /// The raw tenant value the request claims, from the first source that has one.
    pub fn extract<'r>(&self, req: &'r RequestHeader) -> Option<Claim<'r>> {
        self.sources.iter().find_map(|s| match s {
            Source::Header => {
                // Two tenant headers are ambiguous: an upstream reading the
                // last one would disagree with a tally of the first.
                if req.headers.len() > SCAN_HEADERS {
                    let mut all = req.headers.get_all(&self.header).iter();
                    let first = all.next()?;
                    return Some(if all.next().is_some() {
                        Claim::Ambiguous
                    } else {
                        Claim::Value(first.as_bytes())
                    });
                }
                // A request has a handful of headers: comparing names (a
                // standard name differs from ours by kind alone, others by
                // length first) is cheaper than hashing ours for the map's
                // index, which was a fifth of the path.
                let mut found = None;
                for (name, value) in req.headers.iter() {
                    if *name == self.header {
                        if found.is_some() {
                            return Some(Claim::Ambiguous);
                        }
                        found = Some(value);
                    }
                }
                found.map(|v| Claim::Value(v.as_bytes()))
            }
            Source::Host => {
                let host = req
                    .headers
                    .get(http::header::HOST)
                    .map(|v| v.as_bytes())
                    .or_else(|| req.uri.host().map(str::as_bytes))?;
                host_subdomain(host, self.host_suffix.as_bytes()).map(Claim::Value)
            }
            Source::Path => {
                let rest = req.uri.path().strip_prefix(self.path_prefix.as_str())?;
                let seg = rest.split('/').next().unwrap_or("");
                (!seg.is_empty()).then_some(Claim::Value(seg.as_bytes()))
            }
        })
    }
}

/// Up to this many header values, the tenant header is found by a scan.
const SCAN_HEADERS: usize = 24;

/// What a request says about its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'r> {
    /// One raw value, still to be validated.
    Value(&'r [u8]),
    /// Several values for the tenant header: counted as `__invalid__`.
    Ambiguous,
}

/// The label before `suffix` in a Host value (port stripped, case-insensitive).
fn host_subdomain<'h>(host: &'h [u8], suffix: &[u8]) -> Option<&'h [u8]> {
    let host = match host.iter().rposition(|&b| b == b':') {
        // keep IPv6 literals intact; they never match a DNS suffix anyway
        Some(i) if !host.contains(&b']') => &host[..i],
        _ => host,
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let suffix = if suffix.first() == Some(&b'.') {
        suffix
    } else {
        return None;
    };
    if host.len() <= suffix.len() {
        return None;
    }
    let (sub, tail) = host.split_at(host.len() - suffix.len());
    (tail.eq_ignore_ascii_case(suffix) && !sub.is_empty()).then_some(sub)
}

/// A raw tenant value after trimming and lower-casing.
pub(super) enum Normalized<'b> {
    /// Nothing left after trimming: counted as `__none__`.
    Empty,
    /// Too long, not printable ASCII: counted as `__invalid__`.
    Invalid,
    /// A lower-case name, still to be checked against the pattern.
    Name(&'b str),
}

/// Trim and lower-case a raw value, into `buf` only when it has upper-case
/// letters: the usual, already lower-case value is used as it is, and
/// neither case allocates.
pub(super) fn normalize<'b>(
    raw: &'b [u8],
    max_length: usize,
    buf: &'b mut [u8; MAX_LENGTH_CEILING],
) -> Normalized<'b> {
    let raw = raw.trim_ascii();
    if raw.is_empty() {
        return Normalized::Empty;
    }
    if raw.len() > max_length || !raw.iter().all(u8::is_ascii_graphic) {
        return Normalized::Invalid;
    }
    let bytes = if raw.iter().any(u8::is_ascii_uppercase) {
        for (d, s) in buf.iter_mut().zip(raw) {
            *d = s.to_ascii_lowercase();
        }
        &buf[..raw.len()]
    } else {
        raw
    };
    match std::str::from_utf8(bytes) {
        Ok(name) => Normalized::Name(name),
        Err(_) => Normalized::Invalid,
    }
}
