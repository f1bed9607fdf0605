//! [`Budget`]: the memory tier's counters, and the rules over them, stated
//! once. Every change of a counter goes through a method here.
//!
//! # The counters
//!
//! | counter | what it holds | changed by |
//! | --- | --- | --- |
//! | `usage` | the weights of the resident values (those being written included) | [`Budget::admit`], [`Budget::release`], [`Budget::reweigh`], under the value's shard lock |
//! | `resident` | how many values are resident | with `usage`, by the same calls |
//! | `inflight` | the weights of the victims taken by eviction and not yet placed (counted in `usage` too) | [`Budget::start_write`] (under the shard lock that marks the victim), [`Budget::placed`] |
//! | `reserved` | room reserved for values on their way into memory (chunks of a prefetch or a read-ahead being read) | [`Budget::try_reserve`], [`Budget::force_reserve`], [`Budget::unreserve`] |
//! | `recent_large` | the weight of the last large value taken to be written (sizes eviction batches) | [`Budget::start_write`] |
//!
//! # The rules
//!
//! - Memory *taken* is `usage + reserved`: values in memory and values on
//!   their way.
//! - Eviction starts when `taken - inflight` passes the high mark, and takes
//!   victims down to the low mark ([`marks`]); it looks at `taken - inflight`
//!   because values already on their way out free their room when placed.
//!   The marks are for values that must be written before they leave: a
//!   clean value (its stored copy is current) leaves at once, so eviction
//!   drops clean values only while `taken` is over the limit, and they fill
//!   the whole budget (see `Inner::pick_victims`).
//! - A chunk of loads is let in only while `taken + need <= limit`
//!   ([`Budget::fits`]); callers decide when to wait (see `writer`).
//!
//! The counters are atomics read without a lock; each rule's decision that
//! must not race with another's (two reservations) is taken by the caller
//! under the write-behind state lock, which the calls that free room take
//! before they wake waiters.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The memory tier's counters (see the [module](self)).
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    /// How far below the limit an eviction goes at least (see [`low_water_gap`]).
    evict_batch: usize,
    /// Values at least this heavy are *large* (objects of their own).
    large_value: usize,
    usage: AtomicUsize,
    resident: AtomicUsize,
    inflight: AtomicUsize,
    reserved: AtomicUsize,
    recent_large: AtomicUsize,
}

/// Where eviction starts (`high`) and where it stops (`low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marks {
    pub high: usize,
    pub low: usize,
}

impl Budget {
    pub fn new(limit: usize, evict_batch: usize, large_value: usize) -> Self {
        Self {
            limit,
            evict_batch,
            large_value,
            usage: AtomicUsize::new(0),
            resident: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            recent_large: AtomicUsize::new(0),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The weights of the resident values.
    pub fn usage(&self) -> usize {
        self.usage.load(Ordering::Relaxed)
    }

    /// How many values are resident.
    pub fn resident(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    /// The weights of the victims on their way out.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Room reserved for values on their way in.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Memory taken: the values in memory and those on their way in.
    pub fn taken(&self) -> usize {
        self.usage().saturating_add(self.reserved())
    }

    /// What eviction weighs against the marks: memory taken, less what is
    /// already on its way out.
    pub fn unfreed(&self) -> usize {
        self.taken().saturating_sub(self.inflight())
    }

    /// The values in memory that are not on their way out: what taking
    /// victims brings down (room reserved for loads is not, so a caller
    /// that makes room for loads takes it off its target).
    pub fn staying(&self) -> usize {
        self.usage().saturating_sub(self.inflight())
    }

    /// A value of `weight` becomes resident (inserted, loaded and kept).
    pub fn admit(&self, weight: usize) {
        self.usage.fetch_add(weight, Ordering::Relaxed);
        self.resident.fetch_add(1, Ordering::Relaxed);
    }

    /// A resident value of `weight` leaves memory (evicted, dropped clean,
    /// removed or replaced).
    pub fn release(&self, weight: usize) {
        let before = self.usage.fetch_sub(weight, Ordering::Relaxed);
        debug_assert!(before >= weight, "released {weight} of {before} bytes");
        self.resident.fetch_sub(1, Ordering::Relaxed);
    }

    /// A resident value's weight changes from `old` to `new` (an update).
    pub fn reweigh(&self, old: usize, new: usize) {
        self.usage.fetch_add(new, Ordering::Relaxed);
        self.usage.fetch_sub(old, Ordering::Relaxed);
    }

    /// A resident value of `weight` is taken to be written by eviction: it
    /// counts in flight until [`placed`](Budget::placed).
    pub fn start_write(&self, weight: usize) {
        if weight >= self.large_value {
            self.recent_large.store(weight, Ordering::Relaxed);
        }
        self.inflight.fetch_add(weight, Ordering::Relaxed);
    }

    /// An evicted victim of `weight` is placed (written or given back).
    pub fn placed(&self, weight: usize) {
        let before = self.inflight.fetch_sub(weight, Ordering::Relaxed);
        debug_assert!(
            before >= weight,
            "placed {weight} of {before} bytes in flight"
        );
    }

    /// Whether `need` more bytes fit: `taken + need <= limit`.
    pub fn fits(&self, need: usize) -> bool {
        self.taken().saturating_add(need) <= self.limit
    }

    /// Reserves `need` bytes if they fit ([`fits`](Budget::fits)).
    pub fn try_reserve(&self, need: usize) -> bool {
        let fits = self.fits(need);
        if fits {
            self.reserved.fetch_add(need, Ordering::Relaxed);
        }
        fits
    }

    /// Reserves `need` bytes whether they fit or not (the one value a
    /// thread may take past the budget).
    pub fn force_reserve(&self, need: usize) {
        self.reserved.fetch_add(need, Ordering::Relaxed);
    }

    /// Gives back `bytes` of a reservation.
    pub fn unreserve(&self, bytes: usize) {
        let before = self.reserved.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(
            before >= bytes,
            "gave back {bytes} of {before} reserved bytes"
        );
    }

    /// How far below the budget an eviction goes (see [`low_water_gap`]).
    pub fn low_water_gap(&self, write_concurrency: usize) -> usize {
        low_water_gap(
            self.limit,
            self.evict_batch,
            write_concurrency,
            self.recent_large.load(Ordering::Relaxed),
        )
    }

    /// Where eviction starts and stops (see [`marks`]).
    pub fn marks(&self, writers: usize, write_concurrency: usize) -> Marks {
        marks(self.limit, self.low_water_gap(write_concurrency), writers)
    }
}

/// How far below the budget an eviction goes: the configured batch (by
/// default 1/16 of the budget), or, on a backend that writes several
/// objects at once, enough of the large values recently evicted to keep its
/// writers busy — at most a quarter of the budget. Never more than the budget.
pub(crate) fn low_water_gap(
    budget: usize,
    evict_batch: usize,
    write_concurrency: usize,
    recent_large: usize,
) -> usize {
    let base = evict_batch.min(budget);
    if write_concurrency <= 1 {
        return base;
    }
    base.max(
        write_concurrency
            .saturating_mul(recent_large)
            .min(budget / 4),
    )
}

/// Where eviction starts and where it stops. Eviction starts *ahead* of
/// the budget, one batch (`gap`, at most a quarter of the budget) below it,
/// so that background writers write while the budget still holds; and
/// takes victims down to a batch below that. With no writer threads, or a
/// budget so small that one batch is most of it, there is no room to write
/// ahead: eviction starts at the budget, and the call that crosses it waits
/// for the batch.
pub(crate) fn marks(budget: usize, gap: usize, writers: usize) -> Marks {
    let ahead = if writers == 0 || gap > budget / 2 {
        0
    } else {
        gap.min(budget / 4)
    };
    let high = budget - ahead;
    Marks {
        high,
        low: high.saturating_sub(gap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn marks_start_one_batch_ahead_of_the_budget_with_writers() {
        let m = marks(16 * MIB, MIB, 1);
        assert_eq!(
            m,
            Marks {
                high: 15 * MIB,
                low: 14 * MIB
            }
        );
    }

    #[test]
    fn marks_start_at_the_budget_without_writers() {
        let m = marks(16 * MIB, MIB, 0);
        assert_eq!(
            m,
            Marks {
                high: 16 * MIB,
                low: 15 * MIB
            }
        );
    }

    #[test]
    fn marks_start_at_the_budget_when_a_batch_is_most_of_it() {
        // A batch of more than half the budget leaves no room to write ahead.
        let m = marks(100, 60, 2);
        assert_eq!(m, Marks { high: 100, low: 40 });
    }

    #[test]
    fn marks_write_ahead_at_most_a_quarter_of_the_budget() {
        let m = marks(100, 50, 2);
        assert_eq!(m, Marks { high: 75, low: 25 });
    }

    #[test]
    fn marks_never_go_below_zero() {
        assert_eq!(marks(0, 0, 1), Marks { high: 0, low: 0 });
        assert_eq!(marks(10, 10, 0), Marks { high: 10, low: 0 });
    }

    #[test]
    fn gap_is_the_batch_on_a_backend_that_writes_one_object_at_a_time() {
        assert_eq!(low_water_gap(16 * MIB, MIB, 1, 8 * MIB), MIB);
        // Never more than the budget.
        assert_eq!(low_water_gap(MIB, 4 * MIB, 1, 0), MIB);
    }

    #[test]
    fn gap_keeps_concurrent_writers_busy_with_large_values_up_to_a_quarter() {
        // 8 writers of 1 MiB values: 8 MiB, within a quarter of 64 MiB.
        assert_eq!(low_water_gap(64 * MIB, MIB, 8, MIB), 8 * MIB);
        // ... capped at a quarter of the budget.
        assert_eq!(low_water_gap(16 * MIB, MIB, 8, MIB), 4 * MIB);
        // ... and never below the configured batch.
        assert_eq!(low_water_gap(64 * MIB, 2 * MIB, 8, 0), 2 * MIB);
    }

    #[test]
    fn admit_and_release_move_usage_and_resident_together() {
        let b = Budget::new(1000, 100, 500);
        b.admit(300);
        b.admit(200);
        assert_eq!((b.usage(), b.resident()), (500, 2));
        b.reweigh(200, 250);
        assert_eq!((b.usage(), b.resident()), (550, 2));
        b.release(300);
        assert_eq!((b.usage(), b.resident()), (250, 1));
    }

    #[test]
    fn values_on_their_way_out_still_count_until_placed() {
        let b = Budget::new(1000, 100, 500);
        b.admit(400);
        b.start_write(400);
        assert_eq!((b.taken(), b.unfreed(), b.staying()), (400, 0, 0));
        b.release(400);
        b.placed(400);
        assert_eq!((b.taken(), b.inflight()), (0, 0));
    }

    #[test]
    fn a_large_value_written_sizes_the_next_batches() {
        let b = Budget::new(64 * MIB, MIB, 256 << 10);
        b.start_write(100);
        assert_eq!(
            b.low_water_gap(8),
            MIB,
            "small values leave the batch as it is"
        );
        b.start_write(4 * MIB);
        assert_eq!(
            b.low_water_gap(8),
            16 * MIB,
            "8 writers x 4 MiB, a quarter at most"
        );
    }

    #[test]
    fn reservations_fit_the_budget_or_are_refused() {
        let b = Budget::new(1000, 100, 500);
        b.admit(600);
        assert!(b.try_reserve(300));
        assert_eq!(b.taken(), 900);
        assert_eq!(
            (b.unfreed(), b.staying()),
            (900, 600),
            "reservations are taken, not evictable"
        );
        assert!(!b.try_reserve(200), "600 + 300 + 200 > 1000");
        assert!(b.try_reserve(100), "exactly the budget fits");
        b.force_reserve(500);
        assert_eq!(b.taken(), 1500);
        b.unreserve(900);
        assert_eq!((b.reserved(), b.taken()), (0, 600));
    }
}
