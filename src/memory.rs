//! Handing freed memory back to the OS from every proxy worker thread.
//!
//! # Why
//! The allocator the binary installs (mimalloc, see `main.rs`) keeps freed
//! pages in the heap of the thread that freed them, and its collect call
//! reaches only the calling thread's heap (plus the arenas all threads
//! share). The control task's periodic collect (`tasks.rs`) therefore cannot
//! return what a worker thread freed after a connection flood: that worker
//! holds it until it happens to allocate enough to run the allocator's own
//! purge. Measured before this: 4,096 slow clients took RSS from 20 to
//! 101 MiB, and a third of the runs were still at 40–48 MiB a minute later,
//! with ordinary traffic going on.
//!
//! # What
//! A worker thread on which a connection closed is marked; the next time
//! that thread finishes a request or a connection, it collects its own heap,
//! at most once per [`EVERY`]. A thread that closes no connections never
//! collects, so steady keep-alive traffic pays one thread-local read per
//! request. A burst of closes also collects every [`BATCH`] closes: a
//! thread may go quiet right after a flood and never reach the next
//! interval, and this bounds what it can keep to the memory of the last
//! [`BATCH`] connections (about 20 KiB each). Under steady connection churn
//! the heap reuses what it freed, so those collects find little to return.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The least time between two collects on one thread...
pub(crate) const EVERY: Duration = Duration::from_secs(1);
/// ...unless this many connections closed on it since the last one.
pub(crate) const BATCH: u32 = 256;

thread_local! {
    /// Connections closed on this thread since its last collect (0: nothing
    /// to hand back).
    static CLOSED: Cell<u32> = const { Cell::new(0) };
    /// When this thread last collected.
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The process's "return what this thread's heap no longer uses" call, if
/// the binary installed one (`RunOptions::release_memory`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Release(pub(crate) Option<fn()>);

impl Release {
    /// A connection closed on this thread: its memory is this thread's to
    /// hand back.
    pub(crate) fn connection_closed(self) {
        if self.0.is_some() {
            let closed = CLOSED.with(|c| {
                c.set(c.get().saturating_add(1));
                c.get()
            });
            if closed >= BATCH {
                self.collect(Instant::now());
            } else {
                self.tick();
            }
        }
    }

    /// A request or connection finished on this thread: collect if a
    /// connection closed here since the last collect, and not too recently.
    #[inline]
    pub(crate) fn tick(self) {
        if self.0.is_none() || CLOSED.with(Cell::get) == 0 {
            return;
        }
        let now = Instant::now();
        if LAST
            .with(Cell::get)
            .is_some_and(|at| now.duration_since(at) < EVERY)
        {
            return;
        }
        self.collect(now);
    }

    fn collect(self, now: Instant) {
        if let Some(release) = self.0 {
            release();
        }
        CLOSED.with(|c| c.set(0));
        LAST.with(|l| l.set(Some(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Relaxed);
    }

    #[test]
    fn collects_once_per_interval_and_only_after_a_close() {
        // A thread of its own: the state is per thread.
        std::thread::spawn(|| {
            let r = Release(Some(count));
            r.tick();
            assert_eq!(CALLS.load(Relaxed), 0, "nothing closed yet");
            r.connection_closed();
            assert_eq!(CALLS.load(Relaxed), 1, "first close collects at once");
            r.connection_closed();
            r.tick();
            assert_eq!(CALLS.load(Relaxed), 1, "at most once per interval");
            LAST.with(|l| l.set(Instant::now().checked_sub(EVERY)));
            r.tick();
            assert_eq!(
                CALLS.load(Relaxed),
                2,
                "the pending close is collected later"
            );
            LAST.with(|l| l.set(Instant::now().checked_sub(EVERY)));
            r.tick();
            assert_eq!(CALLS.load(Relaxed), 2, "nothing new closed");
            LAST.with(|l| l.set(Some(Instant::now())));
            for _ in 0..BATCH - 1 {
                r.connection_closed();
            }
            assert_eq!(CALLS.load(Relaxed), 2, "within the interval");
            r.connection_closed();
            assert_eq!(CALLS.load(Relaxed), 3, "a burst of closes collects");
            Release(None).connection_closed();
            assert_eq!(CLOSED.with(Cell::get), 0, "no release call, nothing marked");
        })
        .join()
        .expect("test thread");
    }
}
