//! A per-thread memo of recent tenant values → slots, in front of the shared
//! map. Most requests come from a few busy tenants, and the shared map's
//! lookup (an epoch pin with a full fence, a hash and a probe) plus the
//! normalisation of the raw value dominated the request path's own cost.
//! A hit here is a hash of the raw header bytes and a compare on memory only
//! this thread touches.
//!
//! Entries are keyed by the raw value exactly as the request carried it, and
//! by the registry that answered (tests run several registries per thread).
//! A hit is only a hint: the caller checks the slot's generation, so a slot
//! reclaimed since (idle, or dropped by a reload whose rules no longer accept
//! the name) is never counted into; the miss path then asks the shared map.

use std::cell::RefCell;
use std::hash::BuildHasher;

use super::slot::SlotRef;

/// Entries per thread (direct-mapped). 64 × 48 bytes: 3 KiB per thread.
const ENTRIES: usize = 64;
/// Longest raw value memoised; longer ones always take the shared map.
const KEY: usize = 32;

#[derive(Clone, Copy)]
struct Entry {
    /// Registry id; 0 = empty.
    owner: u32,
    len: u8,
    key: [u8; KEY],
    slot: SlotRef,
}

const EMPTY: Entry = Entry {
    owner: 0,
    len: 0,
    key: [0; KEY],
    slot: SlotRef::NONE,
};

thread_local! {
    static RECENT: RefCell<[Entry; ENTRIES]> = const { RefCell::new([EMPTY; ENTRIES]) };
}

#[inline]
fn index(raw: &[u8]) -> usize {
    // Fixed seed: the index only spreads entries, it is not a map under
    // attack (a collision just means a miss).
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(raw) as usize) % ENTRIES
}

/// The slot `owner` last resolved `raw` to on this thread, if memoised.
#[inline]
pub(super) fn get(owner: u32, raw: &[u8]) -> Option<SlotRef> {
    if raw.len() > KEY {
        return None;
    }
    let i = index(raw);
    // Whole fixed-size arrays compare inline; a slice compare calls memcmp.
    let mut key = [0; KEY];
    key[..raw.len()].copy_from_slice(raw);
    RECENT
        .try_with(|r| {
            let r = r.try_borrow().ok()?;
            let e = &r[i];
            (e.owner == owner && usize::from(e.len) == raw.len() && e.key == key).then_some(e.slot)
        })
        .ok()
        .flatten()
}

/// Remember that `owner` resolved `raw` to `slot` (a tracked tenant's slot).
#[inline]
pub(super) fn put(owner: u32, raw: &[u8], slot: SlotRef) {
    if raw.len() > KEY {
        return;
    }
    let i = index(raw);
    let _ = RECENT.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            let mut key = [0; KEY];
            key[..raw.len()].copy_from_slice(raw);
            r[i] = Entry {
                owner,
                len: raw.len() as u8,
                key,
                slot,
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_for_the_same_owner_and_exact_bytes() {
        let s = SlotRef { idx: 7, gen: 3 };
        put(1, b"MyStudio", s);
        assert_eq!(get(1, b"MyStudio"), Some(s));
        assert_eq!(get(2, b"MyStudio"), None, "another registry");
        assert_eq!(get(1, b"mystudio"), None, "raw bytes, not the name");
        assert_eq!(get(1, b"MyStudi"), None);
        let long = [b'a'; KEY + 1];
        put(1, &long, s);
        assert_eq!(get(1, &long), None, "too long to memoise");
        // Another thread has its own memo.
        std::thread::spawn(|| assert_eq!(get(1, b"MyStudio"), None))
            .join()
            .unwrap();
    }
}
