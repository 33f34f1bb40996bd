//! The bounded registry of tenant slots: each tenant name maps to a slot of
//! counters that the request path updates without taking a lock.
//!
//! Names map to slot references in a lock-free `papaya` hash map, so looking
//! up a tenant that is already known takes no lock at all (readers only pin an
//! epoch). Slots live in a chunked slab that never moves or shrinks, so a slot
//! reference stays valid for the life of the process; each slot carries a
//! generation that changes when the slot is reclaimed, so a stale reference is
//! detected instead of counting into another tenant. Only *new* tenants and
//! reclaiming take the registry's mutex, and a flood of new names past the cap
//! is turned away before that mutex. Memory is bounded by `max_tenants` slots.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use pingora::http::RequestHeader;

use super::recent;
use super::resolve::{normalize, Claim, Normalized, ResolverSpec, MAX_LENGTH_CEILING};
pub use super::slot::SlotRef;
use super::slot::RESERVED;
use super::{INVALID, NONE, OVERFLOW};
use crate::config::MAX_TENANTS_CEILING;
use crate::tally::Counters;

pub(super) const RESERVED_NAMES: [&str; RESERVED] = [NONE, INVALID, OVERFLOW];
const CHUNK: usize = 256;

/// One tenant's slot: its counters and bookkeeping. Aligned to two cache
/// lines so neighbouring tenants, answered on different threads, never
/// share a line or an adjacent-line prefetch pair.
#[derive(Default)]
#[repr(align(128))]
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

impl std::fmt::Debug for TenantSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSlot")
            .field("gen", &self.gen.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
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
    /// Tells this registry's entries apart in the per-thread memo.
    id: u32,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.id)
            .field("tracked", &self.tracked.load(Ordering::Relaxed))
            .field("limit", &self.limit.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Source of registry ids (0 is the memo's "empty").
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

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
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
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
        if let Some(r) = recent::get(self.id, raw) {
            let slot = self.slot(r);
            if slot.generation() == r.gen {
                slot.touch(now);
                return r;
            }
        }
        let r = self.lookup_shared(spec, raw, now);
        if !r.is_reserved() {
            recent::put(self.id, raw, r);
        }
        r
    }

    /// [`Registry::lookup`] without the per-thread memo.
    fn lookup_shared(&self, spec: &ResolverSpec, raw: &[u8], now: u32) -> SlotRef {
        let mut buf = [0u8; MAX_LENGTH_CEILING];
        let name = match normalize(raw, spec.max_length, &mut buf) {
            Normalized::Empty => return SlotRef::NONE,
            Normalized::Invalid => return SlotRef::INVALID,
            Normalized::Name(name) => name,
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
        let allowed = spec.allows(name);
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
                idle > ttl || !spec.is_valid(name) || !spec.allows(name)
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

    /// Visit every label with its reference, without reading the slots: the
    /// scrape collects these once and reads the slots in slot order, each
    /// checked with [`Registry::is_current`] when it is read.
    pub fn for_each_label(&self, mut f: impl FnMut(&str, SlotRef)) {
        for (i, name) in RESERVED_NAMES.iter().enumerate() {
            f(
                name,
                SlotRef {
                    idx: i as u32,
                    gen: 0,
                },
            );
        }
        for (name, r) in self.map.pin().iter() {
            f(name, *r);
        }
    }

    /// Run `f` with the label of a reference, without copying it (`None`
    /// when the slot was reclaimed).
    pub fn with_name<R>(&self, r: SlotRef, f: impl FnOnce(&str) -> R) -> Option<R> {
        if r.is_reserved() {
            return RESERVED_NAMES.get(r.idx as usize).map(|n| f(n));
        }
        let slot = self.slot(r);
        let name = slot.name.lock().ok()?;
        let name = name.as_deref().filter(|_| slot.generation() == r.gen)?;
        Some(f(name))
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
