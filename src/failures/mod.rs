//! The last failing requests, for `GET /failures` on the admin listener.
//!
//! A failure is a response in one of the signals' codes or classes, or one
//! the proxy wrote because the upstream failed. What is kept of it is fixed
//! in size and never a secret: time, tenant, method, route (the template, or
//! the normalized path), code, origin, upstream error kind, duration, and
//! the request id header's value (visible ASCII, at most 64 bytes). Never
//! the query string, a body, an API key or any other header.
//!
//! # Memory bound
//! [`CAPACITY`] entries of at most [`ENTRY_BYTES`] each, allocated once:
//! [`SHARDS`] shards, each a ring of the [`RECENT`] newest failures of its
//! tenants and [`TENANT_RINGS`] rings of the [`PER_TENANT`] newest failures
//! of one tenant. A tenant hashes to one shard. When a tenant without a
//! ring fails, it takes the least recently written ring of its shard,
//! skipping tenants that are spiking now; so a spiking tenant keeps its
//! last 20 failures while others flood, whatever their number.
//!
//! Writing takes its shard's lock, only on a failing request, for a copy of
//! one entry; a read copies each shard under its lock in turn.

mod render;

pub use render::{render_json, render_text};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::status::Origin;
use crate::tally::UpstreamErrorKind;

pub const SHARDS: usize = 8;
/// Newest failures kept per shard, whatever the tenant.
pub const RECENT: usize = 32;
/// Tenants with a ring of their own per shard.
pub const TENANT_RINGS: usize = 8;
/// Failures kept per tenant ring.
pub const PER_TENANT: usize = 20;
/// Entries held in all: 1,536.
pub const CAPACITY: usize = SHARDS * (RECENT + TENANT_RINGS * PER_TENANT);
/// Bytes an entry takes at most (checked by a test).
pub const ENTRY_BYTES: usize = 384;
/// Most entries one answer lists (newest first).
pub const MAX_RETURNED: usize = 500;
/// Most bytes kept of a request id.
pub const REQUEST_ID_BYTES: usize = 64;

/// A short text kept inline.
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> Text<N> {
    const EMPTY: Self = Text {
        buf: [0; N],
        len: 0,
    };

    /// Visible ASCII of `bytes` (anything else as `_`), cut at `N` bytes.
    pub fn new(bytes: &[u8]) -> Self {
        let mut t = Self::EMPTY;
        let n = bytes.len().min(N).min(u8::MAX as usize);
        for (d, &b) in t.buf.iter_mut().zip(&bytes[..n]) {
            *d = if b.is_ascii_graphic() { b } else { b'_' };
        }
        t.len = n as u8;
        t
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

/// One failing request as the request path knows it.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub tenant: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub code: u16,
    pub origin: Origin,
    pub error_kind: Option<UpstreamErrorKind>,
    pub elapsed: Duration,
    pub request_id: Option<&'a [u8]>,
}

/// One kept failure.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Order of arrival, process-wide (1 = first).
    pub seq: u64,
    pub unix_millis: u64,
    pub duration_nanos: u64,
    pub code: u16,
    pub origin: Origin,
    pub error_kind: Option<UpstreamErrorKind>,
    pub tenant: Text<64>,
    pub method: Text<8>,
    pub route: Text<160>,
    pub request_id: Option<Text<REQUEST_ID_BYTES>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("seq", &self.seq)
            .field("tenant", &self.tenant.as_str())
            .field("route", &self.route.as_str())
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

const _: () = assert!(std::mem::size_of::<Entry>() <= ENTRY_BYTES);

impl Entry {
    const EMPTY: Entry = Entry {
        seq: 0,
        unix_millis: 0,
        duration_nanos: 0,
        code: 0,
        origin: Origin::Proxy,
        error_kind: None,
        tenant: Text::EMPTY,
        method: Text::EMPTY,
        route: Text::EMPTY,
        request_id: None,
    };
}

/// The newest `N` entries written, oldest overwritten.
struct Ring<const N: usize> {
    entries: [Entry; N],
    next: usize,
}

impl<const N: usize> Ring<N> {
    const EMPTY: Self = Ring {
        entries: [Entry::EMPTY; N],
        next: 0,
    };

    fn push(&mut self, e: &Entry) {
        self.entries[self.next] = *e;
        self.next = (self.next + 1) % N;
    }

    fn clear(&mut self) {
        *self = Self::EMPTY;
    }

    fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.seq != 0)
    }
}

struct TenantRing {
    tenant: Text<64>,
    /// `seq` of the last entry written (0 = unused).
    last: u64,
    ring: Ring<PER_TENANT>,
}

struct Shard {
    recent: Ring<RECENT>,
    tenants: [TenantRing; TENANT_RINGS],
}

pub struct Failures {
    shards: Box<[Mutex<Shard>]>,
    seq: AtomicU64,
}

impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failures")
            .field("written", &self.seq.load(Relaxed))
            .finish()
    }
}

impl Default for Failures {
    fn default() -> Self {
        Failures::new()
    }
}

/// The shard of a tenant (FNV-1a of its name).
fn shard_of(tenant: &str) -> usize {
    let h = tenant.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % SHARDS as u64) as usize
}

impl Failures {
    /// Every entry allocated now, once ([`CAPACITY`]).
    pub fn new() -> Failures {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    recent: Ring::EMPTY,
                    tenants: std::array::from_fn(|_| TenantRing {
                        tenant: Text::EMPTY,
                        last: 0,
                        ring: Ring::EMPTY,
                    }),
                })
            })
            .collect();
        Failures {
            shards,
            seq: AtomicU64::new(0),
        }
    }

    /// Keep one failure. `spiking` is asked, only when a tenant needs a
    /// ring, whether another tenant holding one is spiking now (its ring is
    /// then kept).
    pub fn push(&self, f: &Failure<'_>, spiking: impl Fn(&str) -> bool) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let tenant = Text::new(f.tenant.as_bytes());
        let mut e = Entry {
            seq: 0,
            unix_millis: now.as_millis().min(u64::MAX as u128) as u64,
            duration_nanos: f.elapsed.as_nanos().min(u64::MAX as u128) as u64,
            code: f.code,
            origin: f.origin,
            error_kind: f.error_kind,
            tenant,
            method: Text::new(f.method.as_bytes()),
            route: Text::new(f.route.as_bytes()),
            request_id: f
                .request_id
                .filter(|v| !v.is_empty())
                .map(|v| Text::new(&v[..v.len().min(REQUEST_ID_BYTES)])),
        };
        let shard = &self.shards[shard_of(f.tenant)];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        e.seq = self.seq.fetch_add(1, Relaxed) + 1;
        s.recent.push(&e);
        let name = tenant.as_str();
        let i = match s
            .tenants
            .iter()
            .position(|r| r.last != 0 && r.tenant.as_str() == name)
        {
            Some(i) => i,
            None => {
                let lru = |skip_spiking: bool| {
                    s.tenants
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| {
                            r.last == 0 || !skip_spiking || !spiking(r.tenant.as_str())
                        })
                        .min_by_key(|(_, r)| r.last)
                        .map(|(i, _)| i)
                };
                let i = lru(true).or_else(|| lru(false)).unwrap_or(0);
                let r = &mut s.tenants[i];
                r.tenant = tenant;
                r.ring.clear();
                i
            }
        };
        let r = &mut s.tenants[i];
        r.last = e.seq;
        r.ring.push(&e);
    }

    /// The newest kept failures that `keep` accepts, newest first, at most
    /// `limit` (and [`MAX_RETURNED`]), each once.
    pub fn newest(&self, limit: usize, keep: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::with_capacity(CAPACITY.min(1024));
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(s.recent.live().filter(|e| keep(e)));
            for r in &s.tenants {
                out.extend(r.ring.live().filter(|e| keep(e)));
            }
        }
        out.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
        out.dedup_by_key(|e| e.seq);
        out.truncate(limit.min(MAX_RETURNED));
        out
    }
}

#[cfg(test)]
mod tests;
