//! A reference to a tenant slot, shared by the registry that hands it out and
//! the per-thread memo that caches it (its own module so neither imports the
//! other).

/// Reserved slots: the labels of [`NONE`](super::NONE), [`INVALID`](super::INVALID)
/// and [`OVERFLOW`](super::OVERFLOW), at these indices.
pub(super) const RESERVED: usize = 3;

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
