//! The route counters: one fixed table of slots, each a route label and
//! its responses by class and origin, for the whole process (a reload never
//! resets them).
//!
//! Slot 0 is `__other__`; then [`MAX_TEMPLATE_LABELS`] slots for the
//! templates' labels (a reload that brings new templates takes new slots);
//! then `route_tally.max_routes` slots for normalized paths, taken in order
//! of first sight. Past either cap a route counts as `__other__`, so a flood
//! of distinct paths costs at most `max_routes` labels. A label is found
//! through a lock-free map; only taking a new slot locks (once per label).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use crate::status::{Origin, OUT_OF_RANGE_CLASS};

/// Label of routes past the caps.
pub const OTHER: &str = "__other__";
/// Template labels one process can hold (`route_tally.routes` is at most this long).
pub const MAX_TEMPLATE_LABELS: usize = 500;
/// Classes of the route tally: 1xx..5xx, then `other` (codes outside 100..=599).
pub const CLASSES: usize = OUT_OF_RANGE_CLASS + 1;

/// A slot of the table; [`RouteRef::NONE`] counts nowhere (tally off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRef(pub(crate) u32);

impl RouteRef {
    pub const NONE: RouteRef = RouteRef(u32::MAX);
    pub const OTHER: RouteRef = RouteRef(0);
}

struct Slot {
    label: OnceLock<Box<str>>,
    /// `[origin][class]`.
    counts: [[AtomicU64; CLASSES]; 2],
}

/// Which pool a new label is taken from.
#[derive(Debug, Clone, Copy)]
enum Pool {
    Template,
    Normalized,
}

pub struct RouteTally {
    slots: Box<[Slot]>,
    labels: papaya::HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    templates: AtomicU32,
    normalized: AtomicU32,
    max_normalized: u32,
    /// Held only while a new label takes a slot.
    intern: Mutex<()>,
}

impl std::fmt::Debug for RouteTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTally")
            .field("templates", &self.templates.load(Relaxed))
            .field("normalized", &self.normalized.load(Relaxed))
            .field("max_normalized", &self.max_normalized)
            .finish()
    }
}

impl RouteTally {
    /// A table for `max_routes` normalized labels (read once, at start-up).
    pub fn new(max_routes: usize) -> RouteTally {
        let max_normalized = max_routes.min(u32::MAX as usize / 2) as u32;
        let n = 1 + MAX_TEMPLATE_LABELS + max_normalized as usize;
        let slots: Box<[Slot]> = (0..n)
            .map(|_| Slot {
                label: OnceLock::new(),
                counts: Default::default(),
            })
            .collect();
        let _ = slots[0].label.set(OTHER.into());
        let labels = papaya::HashMap::builder()
            .hasher(foldhash::fast::RandomState::default())
            .build();
        labels.pin().insert(Box::from(OTHER), 0);
        RouteTally {
            slots,
            labels,
            templates: AtomicU32::new(0),
            normalized: AtomicU32::new(0),
            max_normalized,
            intern: Mutex::new(()),
        }
    }

    /// The slot of a template's label, taking one if it is new
    /// ([`RouteRef::OTHER`] once [`MAX_TEMPLATE_LABELS`] are taken).
    pub fn template(&self, label: &str) -> RouteRef {
        self.find_or_take(label, Pool::Template)
    }

    /// The slot of a normalized label, taking one while fewer than
    /// `max_routes` are; past that, a new label is `__other__` and allocates
    /// nothing.
    #[inline]
    pub fn normalized(&self, label: &str) -> RouteRef {
        self.find_or_take(label, Pool::Normalized)
    }

    fn find_or_take(&self, label: &str, pool: Pool) -> RouteRef {
        if let Some(&i) = self.labels.pin().get(label) {
            return RouteRef(i);
        }
        let (used, cap, base) = match pool {
            Pool::Template => (&self.templates, MAX_TEMPLATE_LABELS as u32, 1),
            Pool::Normalized => (
                &self.normalized,
                self.max_normalized,
                1 + MAX_TEMPLATE_LABELS as u32,
            ),
        };
        if used.load(Relaxed) >= cap {
            return RouteRef::OTHER;
        }
        // A poisoned lock guards nothing (the unit): go on.
        let _held = self.intern.lock().unwrap_or_else(|e| e.into_inner());
        let map = self.labels.pin();
        if let Some(&i) = map.get(label) {
            return RouteRef(i);
        }
        let n = used.load(Relaxed);
        if n >= cap {
            return RouteRef::OTHER;
        }
        let i = base + n;
        let Some(slot) = self.slots.get(i as usize) else {
            return RouteRef::OTHER;
        };
        let _ = slot.label.set(label.into());
        map.insert(label.into(), i);
        used.store(n + 1, Relaxed);
        RouteRef(i)
    }

    /// Count one response of `class` (index 0..=5, see [`CLASSES`]).
    #[inline]
    pub fn add(&self, r: RouteRef, class: usize, origin: Origin) {
        if let Some(c) = self
            .slots
            .get(r.0 as usize)
            .and_then(|s| s.counts[origin as usize].get(class))
        {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The label of a slot.
    pub fn label(&self, r: RouteRef) -> Option<&str> {
        self.slots.get(r.0 as usize)?.label.get().map(|l| &**l)
    }

    /// Normalized labels taken so far.
    pub fn normalized_labels(&self) -> usize {
        self.normalized.load(Relaxed) as usize
    }

    /// Every labelled slot with its counts `[origin][class]`, in slot order.
    pub fn each(&self, mut f: impl FnMut(&str, [[u64; CLASSES]; 2])) {
        for s in self.slots.iter() {
            let Some(label) = s.label.get() else { continue };
            let counts =
                std::array::from_fn(|o| std::array::from_fn(|c| s.counts[o][c].load(Relaxed)));
            f(label, counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_interned_once_and_capped() {
        let t = RouteTally::new(3);
        let a = t.normalized("GET /a");
        assert_ne!(a, RouteRef::OTHER);
        assert_eq!(t.normalized("GET /a"), a);
        let b = t.normalized("GET /b");
        let c = t.normalized("GET /c");
        assert!(a != b && b != c);
        assert_eq!(t.normalized("GET /d"), RouteRef::OTHER);
        assert_eq!(t.normalized("GET /a"), a, "known labels stay");
        assert_eq!(t.normalized_labels(), 3);
        // the template pool is separate
        let p = t.template("POST /api/v2/payments");
        assert_ne!(p, RouteRef::OTHER);
        assert_eq!(t.template("POST /api/v2/payments"), p);
        t.add(a, 1, Origin::Upstream);
        t.add(a, 1, Origin::Upstream);
        t.add(RouteRef::OTHER, 4, Origin::Proxy);
        t.add(RouteRef::NONE, 4, Origin::Proxy);
        let mut seen = Vec::new();
        t.each(|l, c| seen.push((l.to_string(), c[0][1], c[1][4])));
        assert_eq!(seen[0], (OTHER.to_string(), 0, 1));
        assert!(seen.contains(&("GET /a".to_string(), 2, 0)), "{seen:?}");
        assert_eq!(seen.len(), 5);
        assert_eq!(t.label(p), Some("POST /api/v2/payments"));
    }

    #[test]
    fn the_template_pool_has_a_cap() {
        let t = RouteTally::new(0);
        for i in 0..MAX_TEMPLATE_LABELS {
            assert_ne!(t.template(&format!("/t{i}")), RouteRef::OTHER);
        }
        assert_eq!(t.template("/one-too-many"), RouteRef::OTHER);
        assert_eq!(t.normalized("GET /x"), RouteRef::OTHER);
    }
}
