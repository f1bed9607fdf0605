//! [`Changes`]: how many changes the map has had, and how many of them the
//! last complete flush made durable — what tells a flush that it has
//! nothing to do, and a drop how much it would lose.
//!
//! Rules: a change (an insert, update or remove, once it is in the map) is
//! recorded under the changed key's shard lock, so a flush that reads
//! [`Changes::seen`] before it takes the shards' dirty values writes every
//! change counted up to there. A flush that wrote everything marks that
//! count flushed ([`Changes::flushed_through`]); changes made while it ran
//! stay unflushed. The flushed count never goes back.

use std::sync::atomic::{AtomicU64, Ordering};

/// The map's change counter and its flushed mark (see the [module](self)).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    made: AtomicU64,
    flushed: AtomicU64,
}

impl Changes {
    /// Counts one change (called under the changed key's shard lock).
    pub(crate) fn record(&self) {
        self.made.fetch_add(1, Ordering::SeqCst);
    }

    /// The changes made so far: what a flush starting now will cover.
    pub(crate) fn seen(&self) -> u64 {
        self.made.load(Ordering::SeqCst)
    }

    /// Whether every change up to `seen` (and none after) is durable.
    pub(crate) fn all_flushed(&self, seen: u64) -> bool {
        seen == self.flushed.load(Ordering::SeqCst)
    }

    /// Marks the changes up to `seen` durable (a flush that read `seen`
    /// before it started wrote everything).
    pub(crate) fn flushed_through(&self, seen: u64) {
        let before = self.flushed.fetch_max(seen, Ordering::SeqCst);
        debug_assert!(
            before <= seen,
            "flushes mark in order: {before} then {seen}"
        );
        debug_assert!(
            seen <= self.seen(),
            "{seen} flushed of {} made",
            self.seen()
        );
    }

    /// Changes not yet durable.
    pub(crate) fn unflushed(&self) -> u64 {
        self.seen()
            .saturating_sub(self.flushed.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_map_has_nothing_to_flush() {
        let c = Changes::default();
        assert!(c.all_flushed(c.seen()));
        assert_eq!(c.unflushed(), 0);
    }

    #[test]
    fn changes_count_until_a_flush_covers_them() {
        let c = Changes::default();
        c.record();
        c.record();
        assert_eq!(c.unflushed(), 2);
        assert!(!c.all_flushed(c.seen()));
        let seen = c.seen();
        c.flushed_through(seen);
        assert!(c.all_flushed(c.seen()));
        assert_eq!(c.unflushed(), 0);
    }

    #[test]
    fn changes_during_a_flush_stay_unflushed() {
        let c = Changes::default();
        c.record();
        let seen = c.seen();
        // A change lands after the flush read its count.
        c.record();
        c.flushed_through(seen);
        assert_eq!(c.unflushed(), 1);
        assert!(!c.all_flushed(c.seen()));
        assert!(c.all_flushed(seen));
    }

    #[test]
    fn a_flush_with_nothing_new_changes_nothing() {
        let c = Changes::default();
        c.record();
        let seen = c.seen();
        c.flushed_through(seen);
        c.flushed_through(seen);
        assert_eq!(c.unflushed(), 0);
    }
}
