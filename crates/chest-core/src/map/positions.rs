//! The hash table of an [`Index`](super::index::Index): the positions of
//! its entries, found by hash, in chunks of one cache line each.
//!
//! A chunk holds 12 slots: a one-byte tag per slot (8 bits of the key's
//! hash), a mask of the slots taken and, in the same 64 bytes, the 12
//! positions they tag. A lookup loads one chunk, compares the 12 tags at
//! once (SSE2's byte compare), and then reads the entry a matching
//! position points to: two memory accesses on a table too large for the
//! cache. A Swiss table of positions (hashbrown's, which this replaced)
//! keeps its tags and its buckets in different cache lines: three. The
//! layout is folly's F14, with 4-byte items.
//!
//! # Probing
//!
//! A hash starts at chunk `hash & mask` and goes on by triangular steps
//! (1, 2, 3, … chunks further), which visit every chunk once in `chunks`
//! steps. Each chunk counts the keys stored further along a probe that
//! passed it because it was full (its *overflow*): a lookup stops at the
//! first chunk with no overflow; a removal takes one off the overflow of
//! every chunk its key's probe passed. No tombstones: an emptied slot is
//! reused by the next insert that reaches it. An overflow that reaches 255
//! stays there (lookups through that chunk go on probing).
//!
//! # Invariants (checked by [`Positions::check`])
//!
//! - `len` is the number of slots taken;
//! - each chunk's overflow is the number of keys whose probe passed it
//!   (or 255);
//! - at most 7/8 of the slots are taken: a probe always ends.

/// Slots in a chunk.
const SLOTS: usize = 12;
/// Where a chunk's head holds its overflow count, and its mask of the
/// slots taken (a `u16`, little-endian).
const OVERFLOW: usize = SLOTS;
const TAKEN: usize = 14;
/// The slots' bits in a mask of a chunk's slots.
const SLOT_BITS: u32 = (1 << SLOTS) - 1;

/// Every byte of a `u64` 0x01, 0x7f, 0x80.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
const ONES: u64 = u64::from_le_bytes([1; 8]);
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
const LOW7: u64 = ONES * 0x7f;
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
const HIGH: u64 = ONES * 0x80;

/// The high bit of each byte of `x` that is zero, exactly: the low 7 bits
/// plus 0x7f carry into the byte's high bit unless they are all zero (and
/// never into the next byte), and `| x` adds the byte's own high bit.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// The high bits of the 8 bytes of `x` as the low 8 bits (byte `i`'s to
/// bit `i`): the multiply adds each byte's bit, shifted to its place in the
/// top byte, with no two terms on one bit (so no carries).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn gather(x: u64) -> u32 {
    ((x >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// One cache line: a head of 16 bytes (the 12 slots' tags, the overflow
/// count, a byte unused, the mask of the slots taken) and 12 positions.
/// A slot not taken keeps whatever tag it had: the mask says which count.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk {
    head: [u8; 16],
    positions: [u32; SLOTS],
}

impl Chunk {
    const EMPTY: Chunk = Chunk {
        head: [0; 16],
        positions: [0; SLOTS],
    };

    /// The slots taken (masked to the slots, so that the compiler knows a
    /// slot from it is within `positions`: no bounds check).
    #[inline(always)]
    fn taken(&self) -> u32 {
        u32::from(u16::from_le_bytes([self.head[TAKEN], self.head[TAKEN + 1]])) & SLOT_BITS
    }

    fn set_taken(&mut self, taken: u32) {
        debug_assert_eq!(taken & !SLOT_BITS, 0);
        [self.head[TAKEN], self.head[TAKEN + 1]] = (taken as u16).to_le_bytes();
    }

    /// The first slot not taken, if any.
    #[inline(always)]
    fn vacant(&self) -> Option<usize> {
        Slots(!self.taken() & SLOT_BITS).next()
    }

    /// Puts `tag` and `position` in the vacant `slot`.
    #[inline(always)]
    fn fill(&mut self, slot: usize, tag: u8, position: u32) {
        self.head[slot] = tag;
        self.positions[slot] = position;
        self.set_taken(self.taken() | 1 << slot);
    }

    /// The slots taken whose tag is `tag`: the 12 tags compared at once,
    /// by SSE2's byte compare on x86-64, else as the bytes of two `u64`.
    #[inline(always)]
    fn matching(&self, tag: u8) -> Slots {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        let equal = self.equal_sse2(tag);
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        let equal = self.equal_swar(tag);
        Slots(equal & self.taken())
    }

    /// The bytes of the head equal to `tag`, a bit each (slots' and not).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn equal_sse2(&self, tag: u8) -> u32 {
        use safe_arch::{cmp_eq_mask_i8_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i};
        let equal = cmp_eq_mask_i8_m128i(m128i::from(self.head), set_splat_i8_m128i(tag as i8));
        move_mask_i8_m128i(equal) as u32
    }

    /// The same with `u64` arithmetic, on the head's two halves.
    #[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
    #[inline(always)]
    fn equal_swar(&self, tag: u8) -> u32 {
        let low: [u8; 8] = self.head[..8].try_into().expect("8 bytes");
        let high: [u8; 8] = self.head[8..].try_into().expect("8 bytes");
        let tags = ONES * u64::from(tag);
        let low = zero_bytes(u64::from_le_bytes(low) ^ tags);
        let high = zero_bytes(u64::from_le_bytes(high) ^ tags);
        gather(low) | gather(high) << 8
    }

    /// How many keys passed this chunk.
    #[inline(always)]
    fn overflow(&self) -> u8 {
        self.head[OVERFLOW]
    }

    fn overflow_mut(&mut self) -> &mut u8 {
        &mut self.head[OVERFLOW]
    }
}

/// Slots of a chunk, a bit each.
struct Slots(u32);

impl Iterator for Slots {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let slot = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(slot)
    }
}

/// A hash's tag: its top byte.
#[inline(always)]
fn tag(hash: u64) -> u8 {
    (hash >> 56) as u8
}

/// The chunks a hash visits, in order.
struct Probe {
    at: usize,
    step: usize,
    mask: usize,
}

impl Probe {
    fn new(hash: u64, chunks: usize) -> Self {
        let mask = chunks - 1;
        Self {
            at: hash as usize & mask,
            step: 0,
            mask,
        }
    }

    fn advance(&mut self) {
        self.step += 1;
        self.at = (self.at + self.step) & self.mask;
    }
}

/// How many keys `chunks` chunks hold at most (7/8 of the slots).
fn limit(chunks: usize) -> usize {
    chunks * SLOTS * 7 / 8
}

/// The fewest chunks (a power of two, or none) that hold `n` keys.
fn chunks_for(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let mut chunks = 1;
    while limit(chunks) < n {
        chunks *= 2;
    }
    chunks
}

/// Positions (`u32`) by hash (see the [module](self)). The caller hashes
/// and compares keys: every call takes the key's hash, and a lookup a test
/// of whether the entry at a position holds the key.
pub(crate) struct Positions {
    /// A power of two of them, or none.
    chunks: Vec<Chunk>,
    len: usize,
    /// The most keys the chunks hold ([`limit`]).
    limit: usize,
}

impl Positions {
    pub const fn new() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
            limit: 0,
        }
    }

    /// A table with room for `n` keys.
    pub fn with_capacity(n: usize) -> Self {
        let chunks = chunks_for(n);
        Self {
            chunks: vec![Chunk::EMPTY; chunks],
            len: 0,
            limit: limit(chunks),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether one more key needs a larger table ([`rebuild`](Positions::rebuild)).
    pub fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// Where the position the key of `hash` is at sits: its chunk, its
    /// slot and how many chunks its probe passed. `eq` tells whether a
    /// position holds the key.
    #[inline(always)]
    fn find_slot(
        &self,
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<(usize, usize, usize)> {
        if self.chunks.is_empty() {
            return None;
        }
        let tag = tag(hash);
        let mut probe = Probe::new(hash, self.chunks.len());
        loop {
            let chunk = &self.chunks[probe.at];
            let overflow = chunk.overflow();
            for slot in chunk.matching(tag) {
                if eq(chunk.positions[slot]) {
                    return Some((probe.at, slot, probe.step));
                }
            }
            if overflow == 0 || probe.step + 1 >= self.chunks.len() {
                return None;
            }
            probe.advance();
        }
    }

    /// The position of the key of `hash` (`eq` tells whether a position
    /// holds it).
    #[inline(always)]
    pub fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_slot(hash, eq)
            .map(|(at, slot, _)| self.chunks[at].positions[slot])
    }

    /// [`find`](Positions::find), the position mutable (to point it at
    /// another position of the same key).
    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<&mut u32> {
        self.find_slot(hash, eq)
            .map(|(at, slot, _)| &mut self.chunks[at].positions[slot])
    }

    /// The position of the key of `hash` (`eq` tells whether a position
    /// holds it), to change; or, if the key is not in the table, `None`
    /// once its position `at` is added: into the first chunk with an
    /// empty slot on its probe, which the lookup passed on its way (the
    /// chunks are in the cache the second time). The table must not be
    /// [full](Positions::is_full).
    #[inline]
    pub fn find_or_insert(
        &mut self,
        hash: u64,
        at: u32,
        eq: impl FnMut(u32) -> bool,
    ) -> Option<&mut u32> {
        assert!(
            !self.is_full(),
            "a full position table is rebuilt before an insert"
        );
        if let Some((chunk, slot, _)) = self.find_slot(hash, eq) {
            return Some(&mut self.chunks[chunk].positions[slot]);
        }
        self.place(hash, at);
        None
    }

    /// Adds the position `at` of a key of `hash` that is not in the table,
    /// which has room for it: into the first chunk with an empty slot on
    /// its probe.
    #[inline(always)]
    fn place(&mut self, hash: u64, at: u32) {
        let tag = tag(hash);
        let mut probe = Probe::new(hash, self.chunks.len());
        loop {
            let chunk = &mut self.chunks[probe.at];
            if let Some(slot) = chunk.vacant() {
                chunk.fill(slot, tag, at);
                self.len += 1;
                return;
            }
            let overflow = chunk.overflow_mut();
            *overflow = overflow.saturating_add(1);
            debug_assert!(
                probe.step + 1 < self.chunks.len(),
                "a probe visits every chunk"
            );
            probe.advance();
        }
    }

    /// Removes the key of `hash` (`eq` tells whether a position holds it);
    /// returns its position.
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let (at, slot, passed) = self.find_slot(hash, eq)?;
        let chunk = &mut self.chunks[at];
        chunk.set_taken(chunk.taken() & !(1 << slot));
        let position = chunk.positions[slot];
        self.len -= 1;
        let mut probe = Probe::new(hash, self.chunks.len());
        for _ in 0..passed {
            let overflow = self.chunks[probe.at].overflow_mut();
            debug_assert!(*overflow > 0, "a passed chunk counts the key");
            if *overflow != u8::MAX {
                *overflow -= 1;
            }
            probe.advance();
        }
        Some(position)
    }

    /// Makes the table anew with room for `n` keys (at least the
    /// `hashes.len()` it is given), holding the positions `0..` of the
    /// keys of `hashes`, in that order.
    pub fn rebuild(&mut self, n: usize, hashes: impl ExactSizeIterator<Item = u64>) {
        *self = Self::with_capacity(n.max(hashes.len()));
        for (at, hash) in hashes.enumerate() {
            let at = u32::try_from(at).expect("a shard holds fewer than 2^32 keys");
            self.place(hash, at);
        }
    }

    /// Whether a table for `n` keys would be smaller than this one.
    pub fn would_shrink(&self, n: usize) -> bool {
        chunks_for(n) < self.chunks.len()
    }

    /// Empties the table, keeping its memory.
    pub fn clear(&mut self) {
        self.chunks.fill(Chunk::EMPTY);
        self.len = 0;
    }

    /// Checks the invariants of the [module](self); `hash_of` gives the
    /// hash of the key at a position.
    pub fn check(&self, hash_of: impl Fn(u32) -> u64) -> Result<(), String> {
        let mut taken = 0;
        let mut passed = vec![0usize; self.chunks.len()];
        for (c, chunk) in self.chunks.iter().enumerate() {
            if chunk.taken() & !SLOT_BITS != 0 {
                return Err(format!("chunk {c}: slots taken past the last"));
            }
            for slot in Slots(chunk.taken()) {
                taken += 1;
                let hash = hash_of(chunk.positions[slot]);
                if chunk.head[slot] != tag(hash) {
                    return Err(format!("chunk {c} slot {slot}: a tag not of its hash"));
                }
                let mut probe = Probe::new(hash, self.chunks.len());
                while probe.at != c {
                    passed[probe.at] += 1;
                    if probe.step >= self.chunks.len() {
                        return Err(format!("chunk {c} slot {slot}: not on its probe"));
                    }
                    probe.advance();
                }
            }
        }
        if taken != self.len {
            return Err(format!("{taken} slots taken, {} counted", self.len));
        }
        if self.limit != limit(self.chunks.len()) || self.len > self.limit {
            return Err(format!("{} keys in {} chunks", self.len, self.chunks.len()));
        }
        for (c, chunk) in self.chunks.iter().enumerate() {
            let overflow = chunk.overflow();
            if overflow != u8::MAX && usize::from(overflow) != passed[c] {
                return Err(format!(
                    "chunk {c}: overflow {overflow}, passed by {}",
                    passed[c]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn a_chunk_is_one_cache_line() {
        assert_eq!(size_of::<Chunk>(), 64);
        assert_eq!(align_of::<Chunk>(), 64);
    }

    #[test]
    fn only_slots_taken_match() {
        let mut chunk = Chunk::EMPTY;
        // Neighbouring bytes that would borrow into a naive zero test.
        chunk.head[..SLOTS].copy_from_slice(&[0, 1, 0x80, 0xff, 7, 0, 7, 0x7f, 1, 0, 0, 7]);
        *chunk.overflow_mut() = 7; // never a slot
        assert!(chunk.matching(7).next().is_none(), "no slot taken");
        assert_eq!(chunk.vacant(), Some(0));
        chunk.set_taken(SLOT_BITS & !(1 << 6));
        assert_eq!(chunk.matching(7).collect::<Vec<_>>(), [4, 11]);
        assert_eq!(chunk.matching(0).collect::<Vec<_>>(), [0, 5, 9, 10]);
        assert_eq!(chunk.matching(1).collect::<Vec<_>>(), [1, 8]);
        assert_eq!(chunk.matching(0xff).collect::<Vec<_>>(), [3]);
        assert_eq!(chunk.matching(0x80).collect::<Vec<_>>(), [2]);
        assert!(chunk.matching(2).next().is_none());
        assert_eq!(chunk.vacant(), Some(6));
        chunk.fill(6, 2, 99);
        assert_eq!(chunk.matching(2).collect::<Vec<_>>(), [6]);
        assert_eq!(chunk.positions[6], 99);
        assert_eq!(chunk.vacant(), None);
        assert_eq!(chunk.overflow(), 7, "the mask and the count are apart");
    }

    proptest! {
        /// Both compares find the slots a byte-by-byte scan finds, among
        /// the slots taken.
        #[test]
        fn tags_match_as_a_scan_finds(head in any::<[u8; 16]>(), taken in 0u32..1 << SLOTS, tag in any::<u8>()) {
            let mut chunk = Chunk { head, positions: [0; SLOTS] };
            chunk.set_taken(taken);
            let head = chunk.head;
            let expected: Vec<usize> = (0..SLOTS).filter(|&s| taken & 1 << s != 0 && head[s] == tag).collect();
            prop_assert_eq!(Slots(chunk.equal_swar(tag) & chunk.taken()).collect::<Vec<_>>(), expected.clone());
            prop_assert_eq!(chunk.matching(tag).collect::<Vec<_>>(), expected);
            let expected_vacant = (0..SLOTS).find(|&s| taken & 1 << s == 0);
            prop_assert_eq!(chunk.vacant(), expected_vacant);
        }
    }

    #[test]
    fn any_byte_is_a_tag() {
        assert_eq!(tag(0x00ff_ffff_ffff_ffff), 0);
        assert_eq!(tag(0xab00_0000_0000_0000), 0xab);
        // Keys whose tag is 0 or 0xff are found as any other.
        let hashes = [0u64, 0x00ff_ffff_ffff_fff0, 0xff00_0000_0000_0001, u64::MAX];
        let mut t = Positions::with_capacity(4);
        for (i, &h) in hashes.iter().enumerate() {
            assert!(t.find_or_insert(h, i as u32, |p| p == i as u32).is_none());
        }
        for (i, &h) in hashes.iter().enumerate() {
            assert_eq!(t.find(h, |p| p == i as u32), Some(i as u32));
        }
        t.check(|p| hashes[p as usize]).unwrap();
    }

    #[test]
    fn a_probe_visits_every_chunk_once() {
        for chunks in [1, 2, 8, 64] {
            let mut probe = Probe::new(5, chunks);
            let mut seen = vec![false; chunks];
            for _ in 0..chunks {
                assert!(!seen[probe.at]);
                seen[probe.at] = true;
                probe.advance();
            }
        }
    }

    #[test]
    fn capacity_doubles_by_chunks() {
        assert_eq!(chunks_for(0), 0);
        assert_eq!(chunks_for(1), 1);
        assert_eq!(chunks_for(10), 1);
        assert_eq!(chunks_for(11), 2);
        assert_eq!(chunks_for(1_000_000), 131_072);
        assert!(Positions::with_capacity(0).is_full());
        let mut t = Positions::with_capacity(10);
        for i in 0..10 {
            assert!(!t.is_full());
            assert!(t
                .find_or_insert(u64::from(i) << 56 | 1, i, |_| false)
                .is_none());
        }
        assert!(t.is_full());
        assert!(t.would_shrink(0));
        assert!(!t.would_shrink(5));
    }

    /// Hashes of keys that all start at chunk 0 of a small table, with
    /// tags that collide often: full chunks, long probes, overflows, false
    /// tag matches.
    fn crowded(key: u16) -> u64 {
        (u64::from(key % 7) << 56) | (u64::from(key) << 8 & 0x300)
    }

    #[test]
    fn keys_that_pass_full_chunks_are_found_and_removed() {
        let mut t = Positions::new();
        let mut keys: Vec<u16> = Vec::new();
        for key in 0..200u16 {
            if t.is_full() {
                t.rebuild(keys.len() + 1, keys.iter().map(|&k| crowded(k)));
            }
            let at = u32::from(key);
            assert!(t.find_or_insert(crowded(key), at, |p| p == at).is_none());
            keys.push(key);
        }
        t.check(|at| crowded(at as u16)).unwrap();
        for key in (0..200u16).step_by(3) {
            assert_eq!(
                t.remove(crowded(key), |at| at == u32::from(key)),
                Some(u32::from(key))
            );
            t.check(|at| crowded(at as u16)).unwrap();
        }
        for key in 0..200u16 {
            let found = t.find(crowded(key), |at| at == u32::from(key));
            assert_eq!(found.is_some(), key % 3 != 0, "{key}");
        }
    }

    #[test]
    fn a_rebuild_holds_positions_in_the_order_of_its_hashes() {
        let hashes: Vec<u64> = (0..1000u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut t = Positions::with_capacity(3);
        t.rebuild(10, hashes.iter().copied());
        assert_eq!(t.len(), 1000);
        t.check(|at| hashes[at as usize]).unwrap();
        for (i, &h) in hashes.iter().enumerate() {
            assert_eq!(t.find(h, |at| at == i as u32), Some(i as u32));
        }
        assert!(t.find(12345, |_| false).is_none());
    }

    #[test]
    fn a_key_past_a_hole_is_found_not_added_again() {
        // 13 keys that all start at chunk 0 of 2: the 13th goes to chunk 1.
        let hash = |k: u32| (u64::from(k) + 1) << 56; // chunk 0, tags 1..
        let mut t = Positions::with_capacity(13);
        assert_eq!(t.chunks.len(), 2);
        for k in 0..13 {
            assert!(t.find_or_insert(hash(k), k, |p| p == k).is_none());
        }
        assert_eq!(t.chunks[0].overflow(), 1);
        // A hole in chunk 0; the 13th key is still found past it.
        assert_eq!(t.remove(hash(3), |p| p == 3), Some(3));
        assert_eq!(
            t.find_or_insert(hash(12), 12, |p| p == 12).copied(),
            Some(12)
        );
        assert_eq!(t.len(), 12);
        t.check(hash).unwrap();
        // A new key takes the hole, and passes nothing.
        assert!(t.find_or_insert(hash(20), 20, |p| p == 20).is_none());
        assert_eq!(t.chunks[0].overflow(), 1);
        t.check(hash).unwrap();
        // Removing the 13th takes its count off chunk 0.
        assert_eq!(t.remove(hash(12), |p| p == 12), Some(12));
        assert_eq!(t.chunks[0].overflow(), 0);
        t.check(hash).unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => any::<u16>().prop_map(|k| Op::Insert(k % 600)),
            5 => any::<u16>().prop_map(|k| Op::Remove(k % 600)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Keys (their position: the key itself) are found where a map
        /// has them, whatever the inserts, removals, rebuilds and
        /// shrinking, and the invariants hold after every step.
        #[test]
        fn finds_what_a_map_holds(ops in proptest::collection::vec(op(), 1..1500), crowd in any::<bool>()) {
            let hash = |k: u32| if crowd { crowded(k as u16) } else {
                (u64::from(k)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
            };
            let mut t = Positions::new();
            let mut model: HashMap<u32, ()> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        let k = u32::from(k);
                        let known = model.insert(k, ()).is_some();
                        if t.is_full() && !known {
                            let mut larger = Positions::with_capacity(model.len());
                            for &j in model.keys().filter(|&&j| j != k) {
                                prop_assert!(larger.find_or_insert(hash(j), j, |at| at == j).is_none());
                            }
                            t = larger;
                        }
                        if t.is_full() {
                            prop_assert_eq!(t.find(hash(k), |at| at == k), Some(k));
                        } else {
                            let found = t.find_or_insert(hash(k), k, |at| at == k).copied();
                            prop_assert_eq!(found, known.then_some(k));
                        }
                    }
                    Op::Remove(k) => {
                        let k = u32::from(k);
                        let removed = t.remove(hash(k), |at| at == k);
                        prop_assert_eq!(removed.is_some(), model.remove(&k).is_some());
                        if t.would_shrink(model.len() * 2) && model.len() * 4 < limit(t.chunks.len()) {
                            let mut small = Positions::with_capacity(model.len() * 2);
                            for &j in model.keys() {
                                prop_assert!(small.find_or_insert(hash(j), j, |at| at == j).is_none());
                            }
                            t = small;
                        }
                    }
                    Op::Clear => {
                        t.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert_eq!(t.check(hash), Ok(()));
            }
            for k in 0..600u32 {
                prop_assert_eq!(t.find(hash(k), |at| at == k).is_some(), model.contains_key(&k));
            }
        }
    }
}
