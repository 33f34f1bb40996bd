//! Connection caps per listener: how many client connections are open, the
//! cap they may not pass, how many were refused past it and how many were
//! closed for a late request head; and the process-wide budget of request
//! body bytes held at once, both request paths together ([`BodyBudget`]).
//! Its own module because the proxy's connection loop (`conn`), the admin
//! listener (`admin`), the shared state and the exposition all use it, and
//! it needs none of them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which listener a [`ConnLimit`] guards (the `listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Proxy,
    Admin,
}

impl Listener {
    pub fn label(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Admin => "admin",
        }
    }
}

/// Open connections on one listener, with a cap. Past the cap a new
/// connection is closed at once (the ones already open keep being served),
/// counted, and logged at most once a second with the count since the last
/// line, so a flood cannot flood the log too.
#[derive(Debug)]
pub struct ConnLimit {
    listener: Listener,
    open: AtomicUsize,
    refused: AtomicU64,
    head_timeouts: AtomicU64,
    /// Connections closed by a drain that are still lingering ([`Closing`]).
    closing: AtomicUsize,
    /// Second (since `epoch`) of the last refusal log line, and refusals since.
    last_log: AtomicU64,
    unlogged: AtomicU64,
    epoch: Instant,
}

/// One open connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnGuard<'a>(&'a ConnLimit);

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// A connection a drain has closed but still reads from (see
/// `conn::wait::linger`): the process waits for these before it exits.
#[derive(Debug)]
pub struct Closing<'a>(&'a ConnLimit);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.closing.fetch_sub(1, Relaxed);
    }
}

impl ConnLimit {
    pub fn new(listener: Listener) -> ConnLimit {
        ConnLimit {
            listener,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            head_timeouts: AtomicU64::new(0),
            closing: AtomicUsize::new(0),
            last_log: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Take a slot if fewer than `max` connections are open.
    pub fn try_open(&self, max: usize) -> Option<ConnGuard<'_>> {
        let prev = self.open.fetch_add(1, Relaxed);
        if prev < max {
            return Some(ConnGuard(self));
        }
        self.open.fetch_sub(1, Relaxed);
        self.refused.fetch_add(1, Relaxed);
        self.unlogged.fetch_add(1, Relaxed);
        let now = self.epoch.elapsed().as_secs() + 1;
        let last = self.last_log.load(Relaxed);
        if now > last
            && self
                .last_log
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let refused = self.unlogged.swap(0, Relaxed);
            tracing::warn!(
                listener = self.listener.label(),
                max_connections = max,
                refused,
                "connection limit reached: refusing new connections (logged at most once a second)"
            );
        }
        None
    }

    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// A connection closed because its request head did not arrive in time.
    pub fn head_timeout(&self) {
        self.head_timeouts.fetch_add(1, Relaxed);
    }

    pub fn head_timeouts(&self) -> u64 {
        self.head_timeouts.load(Relaxed)
    }

    /// A connection starts lingering after a drain closed it.
    pub fn closing(&self) -> Closing<'_> {
        self.closing.fetch_add(1, Relaxed);
        Closing(self)
    }

    /// Connections still lingering.
    pub fn lingering(&self) -> usize {
        self.closing.load(Relaxed)
    }
}

/// Request body bytes the proxy may hold at once, all connections and both
/// request paths together (`proxy.max_buffered_body_bytes`). Each request
/// with a body reserves what it may hold of it before any of the body is
/// read: up to 64 KiB (the direct path buffers a small body whole, for a
/// retry; pingora-proxy reads into a 64 KiB buffer per request). Past the
/// budget a request waits for its turn with its body unread, so the kernel's
/// socket buffer and the client's TCP window hold it, not the heap: 4,096
/// connections that each send most of a 64 KiB body and go silent held
/// ~650-730 MiB without it. Fair (first come, first served), in KiB.
#[derive(Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
}

/// What a request holds of the [`BodyBudget`], given back when dropped.
pub(crate) type BodyTicket = OwnedSemaphorePermit;

/// The most a request reserves: one 64 KiB buffer (see [`BodyBudget`]).
pub(crate) const BODY_RESERVE_MAX: u64 = 64 * 1024;

impl BodyBudget {
    /// A budget of `bytes` (whole KiB, at least [`BODY_RESERVE_MAX`]).
    pub fn new(bytes: u64) -> BodyBudget {
        let kib = (bytes.max(BODY_RESERVE_MAX) / 1024).min(Semaphore::MAX_PERMITS as u64);
        BodyBudget {
            kib: Arc::new(Semaphore::new(kib as usize)),
        }
    }

    /// Reserve what a body of `len` bytes may hold (`None`: length unknown,
    /// e.g. chunked), waiting at most `wait`. `None` if it did not fit in time.
    pub async fn reserve(&self, len: Option<u64>, wait: Duration) -> Option<BodyTicket> {
        let bytes = len.unwrap_or(BODY_RESERVE_MAX).min(BODY_RESERVE_MAX);
        let kib = bytes.div_ceil(1024).max(1) as u32;
        if let Ok(t) = self.kib.clone().try_acquire_many_owned(kib) {
            return Some(t);
        }
        tokio::time::timeout(wait, self.kib.clone().acquire_many_owned(kib))
            .await
            .ok()?
            .ok()
    }

    /// KiB free now.
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_refuses_past_the_limit_and_guards_give_slots_back() {
        let l = ConnLimit::new(Listener::Proxy);
        let a = l.try_open(2).expect("first");
        let b = l.try_open(2).expect("second");
        assert!(l.try_open(2).is_none());
        assert!(l.try_open(2).is_none());
        assert_eq!((l.open(), l.refused()), (2, 2));
        drop(a);
        let c = l.try_open(2).expect("a slot came back");
        assert_eq!(l.open(), 2);
        drop((b, c));
        assert_eq!(l.open(), 0);
        // A lower cap after a reload applies to the next connection.
        let _d = l.try_open(1).expect("one");
        assert!(l.try_open(1).is_none());
        assert_eq!(l.refused(), 3);
    }

    #[tokio::test]
    async fn the_body_budget_is_shared_fair_and_given_back() {
        let b = BodyBudget::new(128 * 1024);
        let short = Duration::from_millis(20);
        let one = b.reserve(Some(100 * 1024), short).await.expect("fits");
        assert_eq!(b.available_kib(), 64, "at most 64 KiB per request");
        let two = b
            .reserve(None, short)
            .await
            .expect("unknown length: 64 KiB");
        assert_eq!(b.available_kib(), 0);
        assert!(
            b.reserve(Some(1), short).await.is_none(),
            "past the budget, in time"
        );
        drop(one);
        let three = b.reserve(Some(1), short).await.expect("given back");
        assert_eq!(b.available_kib(), 63, "rounded up to whole KiB");
        drop((two, three));
        assert_eq!(b.available_kib(), 128);
        assert_eq!(BodyBudget::new(0).available_kib(), 64, "one body at least");
    }
}
