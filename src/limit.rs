//! Connection caps per listener: how many client connections are open, the
//! cap they may not pass, how many were refused past it and how many were
//! closed for a late request head. Its own module because the proxy's
//! connection loop (`conn`), the admin listener (`admin`), the shared state
//! and the exposition all use it, and it needs none of them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

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
}
