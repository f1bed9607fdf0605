//! Flush: what a flush commits (the state when it began, with the values
//! being inserted meanwhile kept for the next), that a failed write never
//! drops a key that was durable before, that a flush waits for the
//! eviction batches in flight, that flushes reclaim what compaction
//! emptied, and that nothing changed means nothing written. Races are
//! ordered with a [`Gate`] (on the writes of values, or in a weigher),
//! never with sleeps.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use chest_core::{Backend, ChestBuilder, MemoryBackend};
use common::hooks::{ValueGates, Writes};
use common::{
    check, failure, hooked, open, open_weighed, snapshot, value, value_put, Gate, Op, Switch, HANG,
};

/// Keys of `u32`, a budget of 1 MiB, four shards.
fn builder() -> ChestBuilder<u32, Vec<u8>> {
    ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(1 << 20)
        .shards(4)
}

/// `store` behind a hook that fails the writes of values while the switch is on.
fn failing_value_puts(store: &MemoryBackend) -> (Switch, Arc<dyn Backend>) {
    let fail = Switch::default();
    let f = fail.clone();
    let b = hooked(store, move |op| {
        if value_put(op) && f.is_on() {
            return Err(failure(op, "no space left on device"));
        }
        Ok(())
    });
    (fail, b)
}

/// A flush after no change, a drop of a chest reopened and left unchanged:
/// nothing is written. A change is.
#[test]
fn a_flush_or_a_drop_without_changes_writes_nothing() {
    let puts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&puts);
    let backend = hooked(&MemoryBackend::new(), move |op| {
        if matches!(op, Op::Put(_)) {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    });
    let open = || {
        ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(4 << 10)
            .open_backend(backend.clone())
            .unwrap()
    };
    let c = open();
    for i in 0..20 {
        c.insert(i, value(i, 1000 + i as usize)).unwrap();
    }
    c.flush().unwrap();
    let after_flush = puts.load(Ordering::SeqCst);
    for i in 0..20 {
        c.get(&i).unwrap(); // loads and clean evictions: no writes
    }
    c.flush().unwrap();
    drop(c);
    assert_eq!(puts.load(Ordering::SeqCst), after_flush);
    // Reopened and dropped unchanged: still nothing written.
    drop(open());
    assert_eq!(puts.load(Ordering::SeqCst), after_flush);
    // A change is flushed.
    let c = open();
    c.remove(&3).unwrap();
    c.close().unwrap();
    assert!(puts.load(Ordering::SeqCst) > after_flush);
    assert_eq!(open().len(), 19);
}

/// An insert in progress (held in its weigher) while a flush runs is not
/// lost: the close after them stores it.
#[test]
fn an_insert_in_progress_during_a_flush_is_kept_by_the_close() {
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let gate = Gate::new();
    let g = Arc::clone(&gate);
    // The weigher holds the value 77 (the insert is in progress).
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(move |v: &Vec<u8>| {
        if v.first() == Some(&77) {
            g.pass();
        }
        v.len()
    })
    .memory_budget(1 << 20)
    .open_backend(b.clone())
    .unwrap();
    c.insert(1, vec![1; 10]).unwrap();
    let _release = gate.release_on_drop();
    gate.hold_next();
    std::thread::scope(|s| {
        let inserting = s.spawn(|| c.insert(2, vec![77; 10]));
        gate.wait_held(1);
        c.flush().unwrap(); // while the insert is in progress
        gate.release();
        inserting.join().unwrap().unwrap();
    });
    c.close().unwrap();
    let c = open(&b, 1 << 20);
    assert_eq!(
        c.get(&2).unwrap().as_deref(),
        Some(&vec![77; 10]),
        "the insert was lost"
    );
    assert_eq!(c.len(), 2);
}

/// A flush commits the state when it began: keys removed while it writes
/// (after it took them) are in its manifest, which names only objects that
/// exist, so a crash right after it reopens to that state; the close after
/// it commits the removals.
#[test]
fn a_flush_commits_the_state_when_it_began() {
    let store = MemoryBackend::new();
    let (g, b) = ValueGates::over(&store);
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(64 << 20)
        .shards(2)
        .open_backend(b.clone())
        .unwrap();
    // Enough keys that both shards have dirty values (odds of not: 2^-63).
    let keys: Vec<u64> = (0..64).collect();
    for &k in &keys {
        c.insert(k, value(k, 200)).unwrap();
    }
    // The flush takes every shard, then writes their dirty values together:
    // hold that write, when every key has been taken.
    let _release = g.puts.release_on_drop();
    g.puts.hold_next();
    let done: Vec<u64> = std::thread::scope(|s| {
        let flushing = s.spawn(|| c.flush());
        g.puts.wait_held(1);
        let done: Vec<u64> = keys.iter().copied().filter(|k| k % 2 == 0).collect();
        for k in &done {
            assert!(c.remove(k).unwrap());
        }
        g.puts.release();
        flushing.join().unwrap().unwrap();
        done
    });
    // A crash now: the state is what the flush committed, which is the
    // state when it began (the removals came after it had taken those keys).
    let reopened = open(&snapshot(&store), 64 << 20);
    assert_eq!(reopened.len(), keys.len());
    for &k in &keys {
        assert_eq!(*reopened.get(&k).unwrap().unwrap(), value(k, 200));
    }
    check(&reopened, true);
    drop(reopened);
    check(&c, true);
    c.close().unwrap();
    let c = open(&b, 64 << 20);
    assert_eq!(c.len(), keys.len() - done.len());
    for &k in &keys {
        let expected = (!done.contains(&k)).then(|| value(k, 200));
        assert_eq!(c.get(&k).unwrap().as_deref(), expected.as_ref());
    }
    check(&c, true);
}

/// A flush that begins while a batch is written waits for it, and its
/// manifest is taken after it: every value is written once.
#[test]
fn a_flush_waits_for_the_batches_in_flight() {
    let (w, b) = Writes::new();
    let c = open_weighed(&b);
    let _release = w.release_on_drop();
    w.fill_with_first_batch_held(&c);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let c = &c;
        s.spawn(move || {
            tx.send(c.flush()).unwrap();
        });
        assert!(rx.try_recv().is_err());
        w.writer.release();
        rx.recv_timeout(HANG).unwrap().unwrap();
    });
    let evicted = c.stats().evictions;
    assert!(evicted > 0, "the batch was placed before the flush");
    // The flush wrote only what the batch had not: every value once.
    assert_eq!(c.stats().spills, 16, "values written twice");
    check(&c, true);
}

/// An unchanged key stays durable when a compaction's rewrite of it fails.
///
/// (A review found: compaction dropped the stored copy of a resident,
/// clean, unchanged value; when rewriting it then failed, the flush's
/// manifest omitted the key, and a crash after that flush lost a key that
/// nobody changed.)
#[test]
fn an_unchanged_key_stays_durable_when_its_rewrite_by_a_compaction_fails() {
    let mem = MemoryBackend::new();
    let (fail, b) = failing_value_puts(&mem);
    // One shard: the flush writes one segment for all ten values.
    let c = builder().shards(1).open_backend(b).unwrap();
    for i in 0..10u32 {
        c.insert(i, vec![i as u8; 100]).unwrap();
    }
    c.flush().unwrap(); // one segment, 10 records, all resident and clean
    for i in 1..10u32 {
        c.remove(&i).unwrap(); // the segment is now sparse (1 live of 10)
    }
    fail.on();
    let flushed = c.flush();
    assert!(flushed.is_err(), "the rewrite of key 0 failed");
    std::mem::forget(c); // crash after the flush returned
    let again = builder().open_backend(Arc::new(mem)).unwrap();
    assert!(
        again.contains_key(&0),
        "key 0 (never changed, durable before) is gone after reopen"
    );
    assert_eq!(again.get(&0).unwrap().unwrap()[0], 0);
}

/// A key whose new value cannot be written at flush time keeps its
/// previous durable value: a crash after that flush finds the old value.
///
/// (A review found: the key was left out of the manifest, and the commit
/// deleted the object of its previous durable value, which had died before
/// the flush began; after a crash the key was gone entirely, less than the
/// last completed flush.)
#[test]
fn a_key_whose_new_value_cannot_be_written_keeps_its_previous_durable_value() {
    let mem = MemoryBackend::new();
    let (fail, b) = failing_value_puts(&mem);
    let c = builder().open_backend(b).unwrap();
    c.insert(0, vec![1; 100]).unwrap();
    c.flush().unwrap(); // last completed flush: 0 -> [1; 100]
    c.insert(0, vec![2; 100]).unwrap();
    fail.on();
    assert!(c.flush().is_err());
    std::mem::forget(c); // crash
    let again = builder().open_backend(Arc::new(mem)).unwrap();
    assert!(
        again.contains_key(&0),
        "key 0 lost: neither the old nor the new value is durable"
    );
}

/// Flushes with no changes still delete the segments a compaction emptied
/// (once no kept manifest names them).
///
/// (Before: the segments a compaction empties die during the compacting
/// flush, so the manifest before it may name them and the next commit
/// cannot delete them yet; `has_garbage` asked only whether it could, so the
/// next flush with no changes returned without committing, and so did every
/// later one: the garbage stayed until something changed. The conformance
/// check `garbage_is_compacted` failed whenever no other object happened to
/// die between the flushes, as when the keys of each segment sat in one
/// shard.)
#[test]
fn flushes_with_no_changes_delete_the_segments_a_compaction_emptied() {
    let b = Arc::new(MemoryBackend::new());
    let c = builder().shards(1).open_backend(b.clone()).unwrap();
    let objects = || b.list("data/").unwrap();
    for k in 0..100 {
        c.insert(k, vec![k as u8; 1000]).unwrap();
    }
    c.flush().unwrap();
    assert_eq!(objects().len(), 1, "one segment");
    // One record in ten stays live: the segment is mostly dead, not dead.
    for k in (0..100).filter(|k| k % 10 != 0) {
        assert!(c.remove(&k).unwrap());
    }
    c.flush().unwrap();
    assert_eq!(objects().len(), 2, "compacted into a second segment");
    // Nothing changes; two more manifests, and the emptied segment goes.
    c.flush().unwrap();
    c.flush().unwrap();
    assert_eq!(objects().len(), 1, "the emptied segment was never deleted");
    c.close().unwrap();
    let c = builder().open_backend(b.clone()).unwrap();
    assert_eq!(c.len(), 10);
    for k in (0..100).step_by(10) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), vec![k as u8; 1000], "key {k}");
    }
}

/// A chest opened with `flush_on_drop(false)` and dropped keeps the state
/// of its last flush, not the changes after it.
#[test]
fn without_flush_on_drop_a_drop_keeps_the_last_flush() {
    let b = Arc::new(MemoryBackend::new());
    let open = |flush_on_drop| {
        ChestBuilder::<u64, Vec<u8>>::new()
            .flush_on_drop(flush_on_drop)
            .open_backend(b.clone())
            .unwrap()
    };
    let c = open(false);
    c.insert(1, value(1, 10)).unwrap();
    c.flush().unwrap();
    c.insert(2, value(2, 10)).unwrap();
    drop(c);
    assert_eq!(
        open(true).len(),
        1,
        "dropped without a flush: the last flush"
    );
}
