//! The counters: per tenant slot a fixed array of cells (status cell × origin)
//! and a small latency histogram, plus process-wide counters (undocumented
//! codes, upstream error kinds, the duration histogram, in-flight requests).
//!
//! Everything here is a relaxed atomic. Per-tenant cells are only contended
//! when two threads answer the same tenant at once; process-wide counters that
//! every request touches (histogram, in-flight) are sharded per thread so the
//! request path never bounces a shared cache line.
//!
//! # Per-tenant latency
//! Each tenant slot carries a small histogram ([`TENANT_DURATION_BUCKETS`]:
//! five bounds plus +Inf), a sum, and a count of responses slower than
//! `tenant.latency_objective`, together on one cache line of their own. An
//! observation is a bucket pick without branches, two uncontended atomic
//! adds on a line the thread already owns for that tenant, and a third only
//! for a slow response; no lock, no allocation.
//!
//! All three are always counted (unless `tenant.latency = "off"`), and
//! `tenant.latency` only chooses what the exposition shows: the slow counter
//! (1 series per tenant), `_sum`/`_count` (2) or the whole histogram (8).
//! Counting costs nanoseconds once per request; series cost Prometheus memory
//! per tenant and per pod for as long as they exist. Keeping every count
//! means a reload that switches the mode shows counters that were never
//! reset, as Prometheus expects of counters. The bucket bounds are a subset
//! of [`DURATION_BUCKETS`], so per-tenant and overall quantiles are
//! interpolated over the same edges. The counts live in [`Counters`], so
//! reclaiming a slot resets them with the response counters and a reclaimed
//! tenant's series leave together.

use std::sync::atomic::{
    AtomicI64, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Duration;

use crate::status::{self, Origin, CELLS};

/// Bucket upper bounds in seconds (`le`) of the per-tenant latency
/// histogram `statuswatch_tenant_request_duration_seconds`; +Inf is implied.
pub const TENANT_DURATION_BUCKETS: [f64; 5] = [0.005, 0.025, 0.1, 0.5, 2.5];
/// The same bounds as label text, so rendering formats no floats.
pub const TENANT_DURATION_LE: [&str; 5] = ["0.005", "0.025", "0.1", "0.5", "2.5"];
const TENANT_BUCKET_NANOS: [u64; 5] = [
    5_000_000,
    25_000_000,
    100_000_000,
    500_000_000,
    2_500_000_000,
];

/// One tenant's latency: non-cumulative buckets (the last is +Inf), the sum
/// in nanoseconds and the responses slower than the objective. 64 bytes,
/// aligned to a cache line, so every add of an observation touches one line.
#[repr(align(64))]
#[derive(Default)]
struct TenantLatency {
    buckets: [AtomicU64; TENANT_DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    slow: AtomicU64,
}

/// One tenant's response counters, indexed by `origin * CELLS + cell`, and
/// its latency histogram.
pub struct Counters {
    cells: [AtomicU64; CELLS * 2],
    latency: TenantLatency,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: TenantLatency::default(),
        }
    }
}

/// A tenant's latency histogram read for exposition.
#[derive(Debug)]
pub struct TenantLatencySnapshot {
    /// Cumulative counts for each bound of [`TENANT_DURATION_BUCKETS`].
    pub cumulative: [u64; TENANT_DURATION_BUCKETS.len()],
    /// Observations (the +Inf bucket).
    pub count: u64,
    pub sum_seconds: f64,
    /// Observations above the latency objective they were recorded with.
    pub slow: u64,
}

impl Counters {
    #[inline]
    pub fn add(&self, origin: Origin, cell: usize) {
        self.cells[origin as usize * CELLS + cell].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn get(&self, origin: Origin, cell: usize) -> u64 {
        self.cells[origin as usize * CELLS + cell].load(Relaxed)
    }

    /// Sum over both origins of one cell.
    pub fn cell_total(&self, cell: usize) -> u64 {
        self.get(Origin::Upstream, cell) + self.get(Origin::Proxy, cell)
    }

    /// Responses counted (both origins, every cell); latency is not included.
    pub fn total(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Record one response's client-observed duration in the tenant's
    /// histogram, and count it as slow when it took longer than
    /// `objective_nanos`. Lock-free and allocation-free: the bucket index is
    /// the number of bounds below the value (no branches), then two relaxed
    /// adds, and a third for a slow response (rare, so the branch predicts).
    #[inline]
    pub fn observe(&self, elapsed: Duration, objective_nanos: u64) {
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        let bucket: usize = TENANT_BUCKET_NANOS
            .iter()
            .map(|&b| usize::from(nanos > b))
            .sum();
        self.latency.buckets[bucket].fetch_add(1, Relaxed);
        self.latency.sum_nanos.fetch_add(nanos, Relaxed);
        if nanos > objective_nanos {
            self.latency.slow.fetch_add(1, Relaxed);
        }
    }

    /// The latency histogram, cumulative. Each bucket is read once, so the
    /// snapshot is consistent with itself (cumulative counts never decrease
    /// along `le`) even while requests are being observed.
    pub fn latency(&self) -> TenantLatencySnapshot {
        let mut cumulative = [0u64; TENANT_DURATION_BUCKETS.len()];
        let mut acc = 0u64;
        for (i, c) in cumulative.iter_mut().enumerate() {
            acc += self.latency.buckets[i].load(Relaxed);
            *c = acc;
        }
        let count = acc + self.latency.buckets[TENANT_DURATION_BUCKETS.len()].load(Relaxed);
        TenantLatencySnapshot {
            cumulative,
            count,
            sum_seconds: self.latency.sum_nanos.load(Relaxed) as f64 / 1e9,
            slow: self.latency.slow.load(Relaxed),
        }
    }

    pub fn reset(&self) {
        for c in &self.cells {
            c.store(0, Relaxed);
        }
        for b in &self.latency.buckets {
            b.store(0, Relaxed);
        }
        self.latency.sum_nanos.store(0, Relaxed);
        self.latency.slow.store(0, Relaxed);
    }
}

/// Why the proxy had to answer itself (`statuswatch_upstream_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    ConnectRefused = 0,
    ConnectTimeout = 1,
    ReadTimeout = 2,
    Reset = 3,
    Tls = 4,
    Other = 5,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 6] = [
        UpstreamErrorKind::ConnectRefused,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::ReadTimeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::ReadTimeout => "read_timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// Histogram bucket upper bounds in seconds (`le`), tuned for an API behind a sidecar.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BUCKET_NANOS: [u64; 14] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// Shards for the per-request process-wide counters. A power of two above any
/// sane worker count for a sidecar; threads beyond it share shards.
const SHARDS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Shard {
    in_flight: AtomicI64,
    /// `[class][origin][bucket]`, non-cumulative; the last bucket is +Inf.
    buckets: [[[AtomicU64; DURATION_BUCKETS.len() + 1]; 2]; 5],
    sum_nanos: [[AtomicU64; 2]; 5],
}

/// This thread's shard, and whether the thread is its only writer.
///
/// A thread takes one of the first `SHARDS - 1` shards for itself while one
/// is free, and updates it with a plain load and store: an atomic
/// read-modify-write is the costliest instruction on the request path
/// (several per request), and a sole writer does not need one. Readers (the
/// scrape) only load. A thread gives its shard back when it exits, so
/// short-lived threads (blocking pools, tests) do not use them up; the
/// Release/Acquire pair on the bitmap makes the next owner see the counts
/// the last one wrote. Threads that find none free share the last shard,
/// with read-modify-writes.
#[derive(Clone, Copy)]
struct ShardRef {
    index: usize,
    exclusive: bool,
}

/// Bit i set = exclusive shard i has an owner.
static TAKEN: AtomicU64 = AtomicU64::new(0);

struct Owned(ShardRef);

impl Owned {
    fn acquire() -> Owned {
        let mut taken = TAKEN.load(Relaxed);
        loop {
            let free = (!taken).trailing_zeros() as usize;
            if free >= SHARDS - 1 {
                return Owned(ShardRef {
                    index: SHARDS - 1,
                    exclusive: false,
                });
            }
            match TAKEN.compare_exchange_weak(taken, taken | (1 << free), Acquire, Relaxed) {
                Ok(_) => {
                    return Owned(ShardRef {
                        index: free,
                        exclusive: true,
                    })
                }
                Err(now) => taken = now,
            }
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.0.exclusive {
            TAKEN.fetch_and(!(1 << self.0.index), Release);
        }
    }
}

thread_local! {
    static SHARD: Owned = Owned::acquire();
}

#[inline]
fn shard_ref() -> ShardRef {
    // During thread teardown (after the destructor ran): the shared shard.
    SHARD.try_with(|o| o.0).unwrap_or(ShardRef {
        index: SHARDS - 1,
        exclusive: false,
    })
}

impl ShardRef {
    #[inline]
    fn add(self, c: &AtomicU64, n: u64) {
        if self.exclusive {
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            c.fetch_add(n, Relaxed);
        }
    }

    #[inline]
    fn add_signed(self, c: &AtomicI64, n: i64) {
        if self.exclusive {
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            c.fetch_add(n, Relaxed);
        }
    }
}

/// Histogram values read for exposition: cumulative bucket counts, count, sum.
#[derive(Debug)]
pub struct HistogramSnapshot {
    pub cumulative: [u64; DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

/// Undocumented-code counters: one per code in 100..=599, one for the rest.
const UNDOCUMENTED_SLOTS: usize = (status::MAX_CODE - status::MIN_CODE) as usize + 2;

/// Process-wide counters.
pub struct Global {
    shards: Box<[Shard]>,
    /// Real code of every undocumented response, 100..=599, then one
    /// counter for every out-of-range code (so the series stay bounded).
    undocumented: Box<[AtomicU64]>,
    upstream_errors: [AtomicU64; 6],
    suspensions_total: AtomicU64,
}

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            undocumented: (0..UNDOCUMENTED_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            upstream_errors: Default::default(),
            suspensions_total: AtomicU64::new(0),
        }
    }
}

impl Global {
    #[inline]
    pub fn request_started(&self) {
        let r = shard_ref();
        r.add_signed(&self.shards[r.index].in_flight, 1);
    }

    #[inline]
    pub fn request_finished(&self) {
        let r = shard_ref();
        r.add_signed(&self.shards[r.index].in_flight, -1);
    }

    /// Record one request's duration in the histogram. Out-of-range codes
    /// ([`status::OUT_OF_RANGE_CLASS`]) are not recorded: the histogram's
    /// `class` label keeps its five values, and such codes are rare enough
    /// that their latency is not worth a series of its own (the per-tenant
    /// histogram still counts them).
    #[inline]
    pub fn observe(&self, class: usize, origin: Origin, elapsed: Duration) {
        if class >= status::OUT_OF_RANGE_CLASS {
            return;
        }
        let r = shard_ref();
        let shard = &self.shards[r.index];
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        let bucket = BUCKET_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKET_NANOS.len());
        r.add(&shard.buckets[class][origin as usize][bucket], 1);
        r.add(&shard.sum_nanos[class][origin as usize], nanos);
    }

    /// Requests between `request_started` and `request_finished`.
    pub fn in_flight(&self) -> i64 {
        self.shards.iter().map(|s| s.in_flight.load(Relaxed)).sum()
    }

    pub fn histogram(&self, class: usize, origin: Origin) -> HistogramSnapshot {
        let mut raw = [0u64; DURATION_BUCKETS.len() + 1];
        let mut sum = 0u64;
        for s in self.shards.iter() {
            for (i, b) in s.buckets[class][origin as usize].iter().enumerate() {
                raw[i] += b.load(Relaxed);
            }
            sum = sum.wrapping_add(s.sum_nanos[class][origin as usize].load(Relaxed));
        }
        let mut cumulative = [0u64; DURATION_BUCKETS.len()];
        let mut acc = 0;
        for i in 0..DURATION_BUCKETS.len() {
            acc += raw[i];
            cumulative[i] = acc;
        }
        HistogramSnapshot {
            cumulative,
            count: acc + raw[DURATION_BUCKETS.len()],
            sum_seconds: sum as f64 / 1e9,
        }
    }

    #[inline]
    pub fn undocumented(&self, code: u16) {
        let i = if status::in_range(code) {
            (code - status::MIN_CODE) as usize
        } else {
            UNDOCUMENTED_SLOTS - 1
        };
        self.undocumented[i].fetch_add(1, Relaxed);
    }

    /// Non-zero undocumented counts by real code; `None` stands for every
    /// code outside 100..=599 together.
    pub fn undocumented_counts(&self) -> impl Iterator<Item = (Option<u16>, u64)> + '_ {
        self.undocumented
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let code = (i < UNDOCUMENTED_SLOTS - 1).then_some(i as u16 + status::MIN_CODE);
                (code, c.load(Relaxed))
            })
            .filter(|(_, n)| *n > 0)
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn upstream_errors(&self, kind: UpstreamErrorKind) -> u64 {
        self.upstream_errors[kind as usize].load(Relaxed)
    }

    pub fn suspension(&self) {
        self.suspensions_total.fetch_add(1, Relaxed);
    }

    pub fn suspensions_total(&self) -> u64 {
        self.suspensions_total.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_update_is_lost_with_more_threads_than_shards() {
        // Threads past the exclusive shards share one with read-modify-writes;
        // the first ones write their own without. Every count must arrive.
        let g = Global::default();
        let threads = SHARDS * 2;
        let per = 20_000u64;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..per {
                        g.request_started();
                        g.observe(1, Origin::Upstream, Duration::from_micros(300));
                        g.request_finished();
                    }
                });
            }
        });
        assert_eq!(g.histogram(1, Origin::Upstream).count, threads as u64 * per);
        assert_eq!(g.in_flight(), 0);
    }

    #[test]
    fn counters_add_and_reset() {
        let c = Counters::default();
        c.add(Origin::Upstream, status::cell_of(200));
        c.add(Origin::Proxy, status::cell_of(502));
        c.add(Origin::Proxy, status::cell_of(502));
        assert_eq!(c.get(Origin::Upstream, status::cell_of(200)), 1);
        assert_eq!(c.get(Origin::Proxy, status::cell_of(502)), 2);
        assert_eq!(c.cell_total(status::cell_of(502)), 2);
        assert_eq!(c.total(), 3);
        c.reset();
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn tenant_latency_buckets_bounds_and_reset() {
        let c = Counters::default();
        assert_eq!(c.latency().count, 0);
        // on a bound counts in that bucket (le is "less than or equal"); on
        // the objective is not slow, just above it is
        let objective = 30_000_000;
        c.observe(Duration::from_millis(5), objective);
        c.observe(Duration::from_micros(5_001), objective);
        c.observe(Duration::from_millis(30), objective);
        c.observe(Duration::from_millis(2_500), objective);
        c.observe(Duration::from_secs(31), objective);
        let h = c.latency();
        assert_eq!(h.cumulative, [1, 2, 3, 3, 4]);
        assert_eq!(h.count, 5);
        assert_eq!(h.slow, 2, "2.5 s and 31 s are above 30 ms");
        c.observe(Duration::from_nanos(30_000_001), objective);
        assert_eq!(c.latency().slow, 3);
        assert!(std::mem::size_of::<TenantLatency>() <= 64, "one cache line");
        assert!(
            (h.sum_seconds - 33.540001).abs() < 1e-9,
            "{}",
            h.sum_seconds
        );
        c.observe(Duration::ZERO, u64::MAX);
        assert_eq!(c.latency().slow, 3, "nothing is slower than u64::MAX ns");
        assert_eq!(c.total(), 0, "latency is not a response count");
        c.add(Origin::Upstream, status::cell_of(200));
        c.reset();
        assert_eq!(c.latency().count, 0);
        assert_eq!(c.latency().sum_seconds, 0.0);
        assert_eq!(c.latency().slow, 0);
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn tenant_bounds_are_global_bounds() {
        for (b, le) in TENANT_DURATION_BUCKETS.iter().zip(TENANT_DURATION_LE) {
            assert!(DURATION_BUCKETS.contains(b), "{b} is not a global bucket");
            assert_eq!(le.parse::<f64>().ok(), Some(*b));
        }
        for (b, n) in TENANT_DURATION_BUCKETS.iter().zip(TENANT_BUCKET_NANOS) {
            assert_eq!((b * 1e9).round() as u64, n);
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let g = Global::default();
        g.request_started();
        g.request_started();
        g.request_started();
        assert_eq!(g.in_flight(), 3);
        g.observe(1, Origin::Upstream, Duration::from_micros(500));
        g.observe(1, Origin::Upstream, Duration::from_millis(20));
        g.observe(1, Origin::Upstream, Duration::from_secs(60));
        for _ in 0..3 {
            g.request_finished();
        }
        assert_eq!(g.in_flight(), 0);
        let h = g.histogram(1, Origin::Upstream);
        assert_eq!(h.count, 3);
        assert_eq!(h.cumulative[0], 1); // <= 1ms
        assert_eq!(h.cumulative[4], 2); // <= 25ms
        assert_eq!(h.cumulative[DURATION_BUCKETS.len() - 1], 2); // 60s is only in +Inf
        assert!((h.sum_seconds - 60.0205).abs() < 1e-6);
        assert_eq!(g.histogram(4, Origin::Proxy).count, 0);
        // out-of-range codes are not in the class histogram
        g.observe(
            status::class_index(999),
            Origin::Upstream,
            Duration::from_millis(1),
        );
        assert_eq!(g.histogram(1, Origin::Upstream).count, 3);
    }

    #[test]
    fn in_flight_sums_across_threads() {
        let g = std::sync::Arc::new(Global::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        g.request_started();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(g.in_flight(), 4000);
    }

    #[test]
    fn undocumented_by_code() {
        let g = Global::default();
        g.undocumented(429);
        g.undocumented(429);
        g.undocumented(504);
        g.undocumented(700);
        g.undocumented(99);
        let v: Vec<_> = g.undocumented_counts().collect();
        assert_eq!(v, vec![(Some(429), 2), (Some(504), 1), (None, 2)]);
    }
}
