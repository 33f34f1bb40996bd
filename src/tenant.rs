//! Tenant resolution from the request (header, Host subdomain, path segment,
//! or an upstream response header), validation, and the bounded registry of
//! tenant slots.
//!
//! # Registry data structure
//! Names map to slot references in a lock-free `papaya` hash map, so looking
//! up a tenant that is already known takes no lock at all (readers only pin an
//! epoch). Slots live in a chunked slab that never moves or shrinks, so a slot
//! reference stays valid for the life of the process; each slot carries a
//! generation that changes when the slot is reclaimed, so a stale reference is
//! detected instead of counting into another tenant. Only *new* tenants and
//! reclaiming take the registry's mutex, and a flood of new names past the cap
//! is turned away before that mutex. Memory is bounded by `max_tenants` slots.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use pingora::http::RequestHeader;
use regex::Regex;

use crate::config::{ConfigError, TenantConfig, MAX_TENANTS_CEILING};
use crate::tally::Counters;

/// Reserved label values; real subdomains never contain `_`.
pub const NONE: &str = "__none__";
pub const INVALID: &str = "__invalid__";
pub const OVERFLOW: &str = "__overflow__";
pub const ALL: &str = "__all__";

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
                let mut all = req.headers.get_all(&self.header).iter();
                let first = all.next()?;
                Some(if all.next().is_some() {
                    Claim::Ambiguous
                } else {
                    Claim::Value(first.as_bytes())
                })
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

/// A reference to a tenant slot: index plus the generation it was handed out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    pub idx: u32,
    pub gen: u32,
}

impl SlotRef {
    pub const NONE: SlotRef = SlotRef { idx: 0, gen: 0 };
    pub const INVALID: SlotRef = SlotRef { idx: 1, gen: 0 };
    pub const OVERFLOW: SlotRef = SlotRef { idx: 2, gen: 0 };

    pub fn is_reserved(self) -> bool {
        self.idx < RESERVED as u32
    }
}

const RESERVED: usize = 3;
const RESERVED_NAMES: [&str; RESERVED] = [NONE, INVALID, OVERFLOW];
const CHUNK: usize = 256;

/// One tenant's slot: its counters and bookkeeping.
#[derive(Default)]
pub struct TenantSlot {
    pub counters: Counters,
    gen: AtomicU32,
    /// Seconds since the registry's epoch of the latest request start or end.
    last_seen: AtomicU32,
    /// Whether the tenant's latest answer was 451.
    suspended: AtomicBool,
    /// The tenant holding the slot, for log lines; the request path never
    /// reads it (only error logging does), so a mutex is fine here.
    name: Mutex<Option<Box<str>>>,
}

impl TenantSlot {
    pub fn generation(&self) -> u32 {
        self.gen.load(Ordering::Acquire)
    }

    #[inline]
    fn touch(&self, now: u32) {
        // Store only when the second changed: one write per second per tenant
        // instead of one per request on a line other threads read.
        if self.last_seen.load(Ordering::Relaxed) != now {
            self.last_seen.store(now, Ordering::Relaxed);
        }
    }

    /// Record the latest answer; true when this is a transition into "suspended".
    #[inline]
    pub fn set_suspended(&self, suspended: bool) -> bool {
        if self.suspended.load(Ordering::Relaxed) == suspended {
            return false;
        }
        // swap decides the race between two threads flipping it at once
        !self.suspended.swap(suspended, Ordering::Relaxed) && suspended
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Relaxed)
    }
}

type Hasher = foldhash::fast::RandomState;

struct Alloc {
    free: Vec<u32>,
    next: u32,
}

/// The bounded registry of tenant slots.
pub struct Registry {
    map: papaya::HashMap<Box<str>, SlotRef, Hasher>,
    chunks: Box<[OnceLock<Box<[TenantSlot]>>]>,
    alloc: Mutex<Alloc>,
    tracked: AtomicUsize,
    limit: AtomicUsize,
    overflow_total: AtomicU64,
    epoch: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(10_000)
    }
}

impl Registry {
    pub fn new(limit: usize) -> Registry {
        let chunks = (MAX_TENANTS_CEILING + RESERVED).div_ceil(CHUNK);
        let reg = Registry {
            map: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .capacity(limit.min(16_384))
                .build(),
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            alloc: Mutex::new(Alloc {
                free: Vec::new(),
                next: RESERVED as u32,
            }),
            tracked: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit.clamp(1, MAX_TENANTS_CEILING)),
            overflow_total: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        reg.chunk(0);
        reg
    }

    fn chunk(&self, n: usize) -> &[TenantSlot] {
        self.chunks[n].get_or_init(|| (0..CHUNK).map(|_| TenantSlot::default()).collect())
    }

    /// The slot behind a reference (reserved slots included).
    #[inline]
    pub fn slot(&self, r: SlotRef) -> &TenantSlot {
        let idx = r.idx as usize;
        match self.chunks.get(idx / CHUNK).and_then(|c| c.get()) {
            Some(chunk) => &chunk[idx % CHUNK],
            // Unreachable for references this registry handed out; fall back
            // to __invalid__ rather than panic on the request path.
            None => &self.chunk(0)[SlotRef::INVALID.idx as usize],
        }
    }

    /// Whether a reference still names the tenant it was handed out for.
    #[inline]
    pub fn is_current(&self, r: SlotRef) -> bool {
        r.is_reserved() || self.slot(r).generation() == r.gen
    }

    /// Mark a tenant as seen now (request end), keeping its slot alive.
    #[inline]
    pub fn touch(&self, r: SlotRef, now: u32) {
        self.slot(r).touch(now);
    }

    /// Seconds since the registry's epoch, the clock of `last_seen`.
    #[inline]
    pub fn now_secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_secs() as u32
    }

    /// Resolve a request to a slot. Never fails: missing, invalid and
    /// over-the-cap tenants resolve to the reserved slots.
    #[inline]
    pub fn resolve(&self, spec: &ResolverSpec, req: &RequestHeader, now: u32) -> SlotRef {
        match spec.extract(req) {
            None => SlotRef::NONE,
            Some(Claim::Ambiguous) => SlotRef::INVALID,
            Some(Claim::Value(raw)) => self.lookup(spec, raw, now),
        }
    }

    /// Resolve a raw tenant value (already extracted) to a slot.
    pub fn lookup(&self, spec: &ResolverSpec, raw: &[u8], now: u32) -> SlotRef {
        let raw = trim_ascii(raw);
        if raw.is_empty() {
            return SlotRef::NONE;
        }
        if raw.len() > spec.max_length {
            return SlotRef::INVALID;
        }
        if !raw.iter().all(u8::is_ascii_graphic) {
            return SlotRef::INVALID;
        }
        // Usual case: already lower-case, look it up as it is. Otherwise
        // lower-case into a stack buffer. No allocation either way.
        let mut buf = [0u8; MAX_LENGTH_CEILING];
        let bytes = if raw.iter().any(u8::is_ascii_uppercase) {
            for (d, s) in buf.iter_mut().zip(raw) {
                *d = s.to_ascii_lowercase();
            }
            &buf[..raw.len()]
        } else {
            raw
        };
        let Ok(name) = std::str::from_utf8(bytes) else {
            return SlotRef::INVALID;
        };
        if let Some(r) = self.map.pin().get(name) {
            let slot = self.slot(*r);
            if slot.generation() == r.gen {
                slot.touch(now);
                return *r;
            }
        }
        self.register(spec, name, now)
    }

    /// The slow path: validate a name not seen before and give it a slot.
    #[cold]
    fn register(&self, spec: &ResolverSpec, name: &str, now: u32) -> SlotRef {
        if !spec.is_valid(name) {
            return SlotRef::INVALID;
        }
        let allowed = spec.allowlist.as_ref().is_none_or(|a| a.contains(name));
        // Checked before the mutex so a flood of new names past the cap never queues on it.
        if !allowed || self.tracked.load(Ordering::Relaxed) >= self.limit.load(Ordering::Relaxed) {
            return self.overflow();
        }
        let Ok(mut alloc) = self.alloc.lock() else {
            return self.overflow();
        };
        let map = self.map.pin();
        if let Some(r) = map.get(name) {
            return *r;
        }
        if self.tracked.load(Ordering::Relaxed) >= self.limit.load(Ordering::Relaxed) {
            drop(alloc);
            return self.overflow();
        }
        let idx = match alloc.free.pop() {
            Some(i) => i,
            None => {
                let i = alloc.next;
                if i as usize >= MAX_TENANTS_CEILING + RESERVED {
                    drop(alloc);
                    return self.overflow();
                }
                alloc.next += 1;
                self.chunk(i as usize / CHUNK);
                i
            }
        };
        let probe = SlotRef { idx, gen: 0 };
        let slot = self.slot(probe);
        slot.touch(now);
        if let Ok(mut n) = slot.name.lock() {
            *n = Some(name.into());
        }
        let r = SlotRef {
            idx,
            gen: slot.generation(),
        };
        map.insert(name.into(), r);
        self.tracked.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn overflow(&self) -> SlotRef {
        self.overflow_total.fetch_add(1, Ordering::Relaxed);
        SlotRef::OVERFLOW
    }

    /// Reclaim slots idle for longer than `ttl` and, after a reload, slots
    /// whose names the new rules no longer accept. Returns how many were freed.
    pub fn sweep(&self, spec: &ResolverSpec, now: u32) -> usize {
        let ttl = spec.idle_ttl.as_secs().min(u32::MAX as u64) as u32;
        let Ok(mut alloc) = self.alloc.lock() else {
            return 0;
        };
        let map = self.map.pin();
        let doomed: Vec<(Box<str>, SlotRef)> = map
            .iter()
            .filter(|(name, r)| {
                let idle = now.saturating_sub(self.slot(**r).last_seen.load(Ordering::Relaxed));
                idle > ttl
                    || !spec.is_valid(name)
                    || spec
                        .allowlist
                        .as_ref()
                        .is_some_and(|a| !a.contains(&***name))
            })
            .map(|(name, r)| (name.clone(), *r))
            .collect();
        for (name, r) in &doomed {
            map.remove(&**name);
            let slot = self.slot(*r);
            // New generation first, so stale references stop counting here.
            slot.gen.fetch_add(1, Ordering::AcqRel);
            slot.counters.reset();
            slot.suspended.store(false, Ordering::Relaxed);
            if let Ok(mut n) = slot.name.lock() {
                *n = None;
            }
            alloc.free.push(r.idx);
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
        doomed.len()
    }

    /// Apply a new cap. Lowering it never evicts a live tenant; new tenants
    /// overflow until idle ones have been reclaimed below the cap.
    pub fn set_limit(&self, limit: usize) {
        self.limit
            .store(limit.clamp(1, MAX_TENANTS_CEILING), Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    pub fn overflow_total(&self) -> u64 {
        self.overflow_total.load(Ordering::Relaxed)
    }

    /// Visit every slot with its label: the reserved ones, then every tenant.
    pub fn for_each(&self, mut f: impl FnMut(&str, SlotRef, &TenantSlot)) {
        for (i, name) in RESERVED_NAMES.iter().enumerate() {
            let r = SlotRef {
                idx: i as u32,
                gen: 0,
            };
            f(name, r, self.slot(r));
        }
        let map = self.map.pin();
        for (name, r) in map.iter() {
            let slot = self.slot(*r);
            if slot.generation() == r.gen {
                f(name, *r, slot);
            }
        }
    }

    /// The label of a reference, if it is still current.
    pub fn name_of(&self, r: SlotRef) -> Option<String> {
        if r.is_reserved() {
            return Some(RESERVED_NAMES[r.idx as usize].to_string());
        }
        // O(1): error logging calls this for every failed request, which
        // during an outage is every request; never scan the map for it.
        let slot = self.slot(r);
        let name = slot.name.lock().ok()?.as_deref().map(str::to_string);
        // Checked after reading, so a slot reclaimed meanwhile yields None.
        name.filter(|_| slot.generation() == r.gen)
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// At most the first 8 characters of a secret, for logs: `abcd1234…`.
pub fn redact(secret: &[u8]) -> String {
    let shown: String = secret
        .iter()
        .take(8)
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if secret.len() > 8 {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    fn spec_with(f: impl FnOnce(&mut TenantConfig)) -> ResolverSpec {
        let mut c = Config::defaults().unwrap().tenant;
        f(&mut c);
        ResolverSpec::from_config(&c).unwrap()
    }

    fn req(path: &str, headers: &[(&str, &[u8])]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), http::HeaderValue::from_bytes(v).unwrap())
                .unwrap();
        }
        r
    }

    fn label(reg: &Registry, r: SlotRef) -> String {
        reg.name_of(r).unwrap()
    }

    #[test]
    fn header_source_lowercases_and_validates() {
        let spec = spec_with(|_| {});
        let reg = Registry::new(10);
        let r = reg.resolve(&spec, &req("/", &[("X-Tenant-Name", b"MyStudio")]), 0);
        assert_eq!(label(&reg, r), "mystudio");
        let r2 = reg.resolve(&spec, &req("/", &[("x-tenant-name", b"mystudio")]), 0);
        assert_eq!(r, r2);
        assert_eq!(reg.resolve(&spec, &req("/", &[]), 0), SlotRef::NONE);
        assert_eq!(
            reg.resolve(&spec, &req("/", &[("X-Tenant-Name", b"bad_name")]), 0),
            SlotRef::INVALID
        );
        assert_eq!(
            reg.resolve(&spec, &req("/", &[("X-Tenant-Name", b"-x")]), 0),
            SlotRef::INVALID
        );
        assert_eq!(
            reg.resolve(
                &spec,
                &req("/", &[("X-Tenant-Name", "caf\u{e9}".as_bytes())]),
                0
            ),
            SlotRef::INVALID
        );
        let long = "a".repeat(64);
        assert_eq!(
            reg.resolve(&spec, &req("/", &[("X-Tenant-Name", long.as_bytes())]), 0),
            SlotRef::INVALID
        );
        assert_eq!(reg.tracked(), 1);
    }

    #[test]
    fn duplicate_tenant_headers_are_ambiguous() {
        let spec = spec_with(|_| {});
        let reg = Registry::new(10);
        let mut r = req("/", &[("X-Tenant-Name", b"one")]);
        r.append_header("x-tenant-name", "two").unwrap();
        assert_eq!(reg.resolve(&spec, &r, 0), SlotRef::INVALID);
        // Even the same value twice: the request is malformed for us.
        let mut r = req("/", &[("X-Tenant-Name", b"one")]);
        r.append_header("X-Tenant-Name", "one").unwrap();
        assert_eq!(reg.resolve(&spec, &r, 0), SlotRef::INVALID);
        assert_eq!(reg.tracked(), 0);
    }

    #[test]
    fn host_and_path_sources_in_order() {
        let spec = spec_with(|c| {
            c.sources = vec!["host".into(), "path".into(), "header".into()];
        });
        let reg = Registry::new(10);
        let r = reg.resolve(
            &spec,
            &req("/t/pathstudio/x", &[("Host", b"HostStudio.REV23.com:8443")]),
            0,
        );
        assert_eq!(label(&reg, r), "hoststudio");
        let r = reg.resolve(&spec, &req("/t/pathstudio/x", &[("Host", b"rev23.com")]), 0);
        assert_eq!(label(&reg, r), "pathstudio");
        let r = reg.resolve(
            &spec,
            &req(
                "/api/v2/customers",
                &[("Host", b"other.example"), ("X-Tenant-Name", b"hdr")],
            ),
            0,
        );
        assert_eq!(label(&reg, r), "hdr");
        // a nested subdomain is claimed by the host source but is not a label
        let r = reg.resolve(&spec, &req("/", &[("Host", b"a.b.rev23.com")]), 0);
        assert_eq!(r, SlotRef::INVALID);
        assert_eq!(reg.resolve(&spec, &req("/t//x", &[]), 0), SlotRef::NONE);
    }

    #[test]
    fn cap_overflows_and_counts() {
        let spec = spec_with(|c| c.max_tenants = 2);
        let reg = Registry::new(2);
        for name in ["a", "b", "c", "d"] {
            reg.lookup(&spec, name.as_bytes(), 0);
        }
        assert_eq!(reg.tracked(), 2);
        assert_eq!(reg.overflow_total(), 2);
        assert_eq!(reg.lookup(&spec, b"a", 0).idx, 3);
        assert_eq!(reg.lookup(&spec, b"zz", 0), SlotRef::OVERFLOW);
    }

    #[test]
    fn allowlist_folds_unknown_tenants_into_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.txt");
        std::fs::write(&path, "# known studios\ninkhouse\nBlackCat  # mixed case\n").unwrap();
        let spec = spec_with(|c| c.allowlist_file = path.to_string_lossy().into());
        let reg = Registry::new(10);
        assert_eq!(label(&reg, reg.lookup(&spec, b"blackcat", 0)), "blackcat");
        assert_eq!(reg.lookup(&spec, b"stranger", 0), SlotRef::OVERFLOW);
        std::fs::write(&path, "bad_name\n").unwrap();
        let mut c = Config::defaults().unwrap().tenant;
        c.allowlist_file = path.to_string_lossy().into();
        let e = ResolverSpec::from_config(&c).unwrap_err().to_string();
        assert!(
            e.starts_with("tenant.allowlist_file") && e.contains(":1:"),
            "{e}"
        );
    }

    #[test]
    fn idle_slots_are_reclaimed_and_references_go_stale() {
        let spec = spec_with(|c| c.idle_ttl = Duration::from_secs(10));
        let reg = Registry::new(10);
        let a = reg.lookup(&spec, b"a", 0);
        reg.slot(a).counters.add(crate::status::Origin::Upstream, 0);
        let b = reg.lookup(&spec, b"b", 0);
        reg.lookup(&spec, b"b", 15);
        assert_eq!(reg.sweep(&spec, 20), 1);
        assert!(!reg.is_current(a));
        assert!(reg.is_current(b));
        assert_eq!(reg.tracked(), 1);
        let a2 = reg.lookup(&spec, b"a", 21);
        assert_eq!(a2.idx, a.idx, "slot is reused");
        assert_ne!(a2.gen, a.gen);
        assert_eq!(reg.slot(a2).counters.total(), 0, "counters start again");
    }

    #[test]
    fn suspension_transitions() {
        let s = TenantSlot::default();
        assert!(s.set_suspended(true));
        assert!(!s.set_suspended(true));
        assert!(!s.set_suspended(false));
        assert!(s.set_suspended(true));
    }

    #[test]
    fn redact_shows_at_most_8_chars() {
        assert_eq!(redact(b"sk_live_1234567890abcdef"), "sk?live?…");
        assert_eq!(redact(b"short"), "short");
    }

    proptest! {
        #[test]
        fn any_bytes_resolve_to_valid_or_reserved(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let spec = spec_with(|c| c.max_tenants = 1000);
            let reg = Registry::new(1000);
            let r = reg.lookup(&spec, &raw, 0);
            let name = reg.name_of(r).unwrap();
            prop_assert!(RESERVED_NAMES.contains(&name.as_str()) || spec.pattern.is_match(&name));
            prop_assert!(name.len() <= 63 || RESERVED_NAMES.contains(&name.as_str()));
        }

        #[test]
        fn any_header_value_resolves(raw in proptest::collection::vec(any::<u8>(), 0..100), host in "[ -~]{0,80}") {
            let spec = spec_with(|c| c.sources = vec!["host".into(), "path".into(), "header".into()]);
            let reg = Registry::new(1000);
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            if let Ok(v) = http::HeaderValue::from_bytes(&raw) {
                r.insert_header("X-Tenant-Name", v).unwrap();
            }
            if let Ok(v) = http::HeaderValue::from_str(&host) {
                r.insert_header("Host", v).unwrap();
            }
            let s = reg.resolve(&spec, &r, 0);
            let name = reg.name_of(s).unwrap();
            prop_assert!(RESERVED_NAMES.contains(&name.as_str()) || spec.pattern.is_match(&name));
        }
    }
}
