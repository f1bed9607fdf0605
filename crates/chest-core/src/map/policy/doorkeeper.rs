//! The doorkeeper of [`Admission::SecondRead`](crate::Admission::SecondRead):
//! which keys were loaded lately and not kept, so that a second load of one
//! keeps it. A fixed table of 4-byte fingerprints: pure logic, no I/O.

/// Fingerprints of the keys loaded lately and not kept, for
/// [`Admission::SecondRead`](crate::Admission::SecondRead): buckets of [`WAYS`] slots, a key's bucket
/// chosen by its hash; a full bucket forgets its oldest entry (so the table
/// never grows, and only forgets when [`WAYS`] newer keys met in a bucket).
pub(crate) struct Recent {
    slots: Box<[u32]>,
}

/// Slots per bucket of [`Recent`].
pub(crate) const WAYS: usize = 4;

impl Recent {
    /// A doorkeeper of `slots` fingerprints (a power of two, at least
    /// [`WAYS`]), all free.
    pub fn new(slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two() && slots >= WAYS);
        Self {
            slots: vec![0; slots].into_boxed_slice(),
        }
    }

    /// Whether the key of hash `h` was loaded lately (and forgets it if so);
    /// otherwise remembers it.
    pub fn seen_again(&mut self, h: u64) -> bool {
        let buckets = self.slots.len() / WAYS;
        let b = ((h >> 40) as usize) & (buckets - 1);
        let bucket = &mut self.slots[b * WAYS..(b + 1) * WAYS];
        let fingerprint = (h as u32) | 1; // 0 marks a free slot
        if let Some(i) = bucket.iter().position(|&f| f == fingerprint) {
            // Forget it: the key is kept now. The newer entries stay in order.
            bucket[i..].rotate_left(1);
            bucket[WAYS - 1] = 0;
            return true;
        }
        // Newest first; the oldest (or a free slot) falls off the end.
        bucket.rotate_right(1);
        bucket[0] = fingerprint;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doorkeeper(slots: usize) -> Recent {
        Recent::new(slots)
    }

    /// A hash whose bucket (of `buckets`) is `b` and whose fingerprint is `f`.
    fn hash(b: u64, f: u32) -> u64 {
        (b << 40) | u64::from(f)
    }

    #[test]
    fn a_key_is_let_in_on_its_second_load() {
        let mut d = doorkeeper(16);
        assert!(
            !d.seen_again(hash(1, 10)),
            "first load: remembered, not kept"
        );
        assert!(d.seen_again(hash(1, 10)), "second load: kept");
        assert!(
            !d.seen_again(hash(1, 10)),
            "forgotten once kept: a third load starts over"
        );
    }

    #[test]
    fn a_full_bucket_forgets_its_oldest_key() {
        let mut d = doorkeeper(16);
        for f in 1..=WAYS as u32 + 1 {
            assert!(!d.seen_again(hash(2, f * 2)));
        }
        // The first of the five fell off; the four newer ones are remembered.
        assert!(!d.seen_again(hash(2, 2)), "the oldest was forgotten");
        assert!(
            d.seen_again(hash(2, WAYS as u32 * 2 + 2)),
            "the newest is remembered"
        );
    }

    #[test]
    fn keys_of_other_buckets_do_not_push_each_other_out() {
        let mut d = doorkeeper(16);
        assert!(!d.seen_again(hash(0, 4)));
        for f in 1..=20 {
            d.seen_again(hash(3, f * 2));
        }
        assert!(
            d.seen_again(hash(0, 4)),
            "bucket 0 was untouched by bucket 3's keys"
        );
    }

    #[test]
    fn forgetting_a_key_keeps_the_newer_entries_of_its_bucket() {
        let mut d = doorkeeper(4);
        for f in [2, 4, 6] {
            d.seen_again(hash(0, f));
        }
        assert!(d.seen_again(hash(0, 4)), "the middle one, let in");
        assert!(
            d.seen_again(hash(0, 2)) && d.seen_again(hash(0, 6)),
            "the others stay"
        );
    }

    #[test]
    fn fingerprint_zero_is_never_taken_for_a_free_slot() {
        // A hash whose low 32 bits are 0 gets fingerprint 1, not 0 (free).
        let mut d = doorkeeper(4);
        assert!(!d.seen_again(hash(0, 0)));
        assert!(d.seen_again(hash(0, 0)));
    }
}
