//! The short window of a detector series: a ring of per-bucket counts.
//!
//! Requests and every signal's events are kept in the same kind of ring, and
//! the bucket that leaves the window is what feeds the baseline, so eviction
//! is written once here rather than at every series.

/// Buckets in the short window: detection granularity is window / BUCKETS.
pub const BUCKETS: usize = 12;

/// Where a tick falls in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub bucket: usize,
    /// The tick opens `bucket` anew, evicting what it held.
    pub starts_bucket: bool,
}

impl Position {
    /// The position of tick `tick_no` when a bucket spans `ticks_per_bucket` ticks.
    pub fn of(tick_no: u64, ticks_per_bucket: u64) -> Position {
        Position {
            bucket: ((tick_no / ticks_per_bucket) % BUCKETS as u64) as usize,
            starts_bucket: tick_no.is_multiple_of(ticks_per_bucket),
        }
    }
}

/// Counts per bucket of the short window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    ring: [u32; BUCKETS],
}

impl Window {
    /// Count `n` at `pos`. When `pos` starts its bucket, the bucket is
    /// emptied first and its old count (the part leaving the window) is
    /// returned; otherwise 0.
    pub fn record(&mut self, pos: Position, n: u64) -> u32 {
        let cell = &mut self.ring[pos.bucket];
        let evicted = if pos.starts_bucket {
            std::mem::take(cell)
        } else {
            0
        };
        *cell = cell.saturating_add(n.min(u32::MAX as u64) as u32);
        evicted
    }

    /// Counts in the whole window.
    pub fn total(&self) -> u64 {
        self.ring.iter().map(|&v| v as u64).sum()
    }

    /// Forget every bucket (the window's length changed).
    pub fn clear(&mut self) {
        self.ring = [0; BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_evicts_only_when_a_bucket_starts() {
        let mut w = Window::default();
        let p = |tick| Position::of(tick, 5);
        assert_eq!(
            p(5),
            Position {
                bucket: 1,
                starts_bucket: true
            }
        );
        assert!(!p(6).starts_bucket);
        assert_eq!(w.record(p(5), 3), 0);
        assert_eq!(w.record(p(6), 4), 0);
        assert_eq!(w.total(), 7);
        // a full turn later the same bucket starts again: its 7 leave
        assert_eq!(w.record(p(5 + 5 * BUCKETS as u64), 1), 7);
        assert_eq!(w.total(), 1);
        assert_eq!(w.record(p(0), u64::MAX), 0);
        assert_eq!(w.total(), 1 + u32::MAX as u64);
        w.clear();
        assert_eq!(w.total(), 0);
    }
}
