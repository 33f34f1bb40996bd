//! The tenants of one scrape, read from the registry once.
//!
//! Five families have a series per tenant. Walking the registry's map for
//! each of them cost a cache miss per tenant per family (map entry, then the
//! slot's generation line, in hash order), which was most of a scrape at
//! 10,000 tenants. One walk collects each tenant's slot reference and its
//! label, escaped once; the families then go through that list in slot
//! order, so the slots are read front to back through memory.

use super::text::escape_into;
use crate::tenant::{Registry, SlotRef, TenantSlot};

struct Row<'a> {
    r: SlotRef,
    slot: &'a TenantSlot,
    /// The escaped label's range in [`Tenants::labels`].
    start: u32,
    end: u32,
}

pub(super) struct Tenants<'a> {
    rows: Vec<Row<'a>>,
    labels: String,
}

/// One tenant as a family sees it.
pub(super) struct Tenant<'t> {
    pub(super) r: SlotRef,
    pub(super) slot: &'t TenantSlot,
    /// Already escaped for a label value.
    pub(super) label: &'t str,
}

impl<'a> Tenants<'a> {
    pub(super) fn collect(registry: &'a Registry) -> Tenants<'a> {
        let mut t = Tenants {
            rows: Vec::with_capacity(registry.tracked() + 8),
            labels: String::with_capacity((registry.tracked() + 8) * 16),
        };
        registry.for_each_label(|name, r| {
            let start = t.labels.len() as u32;
            escape_into(&mut t.labels, name);
            let end = t.labels.len() as u32;
            let slot = registry.slot(r);
            t.rows.push(Row {
                r,
                slot,
                start,
                end,
            });
        });
        // Slot order is memory order; the reserved slots stay first.
        t.rows.sort_unstable_by_key(|row| row.r.idx);
        t
    }

    /// Every tenant still holding its slot. A slot reclaimed since
    /// [`Tenants::collect`] is left out, as a walk of the registry would.
    pub(super) fn iter(&self) -> impl Iterator<Item = Tenant<'_>> {
        self.rows
            .iter()
            .filter(|row| row.r.is_reserved() || row.slot.generation() == row.r.gen)
            .map(|row| Tenant {
                r: row.r,
                slot: row.slot,
                label: self
                    .labels
                    .get(row.start as usize..row.end as usize)
                    .unwrap_or_default(),
            })
    }
}
