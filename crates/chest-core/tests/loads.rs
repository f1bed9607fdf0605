//! Loads: how a value that is not in memory comes back — a `get` miss
//! (concurrent misses share one read), a read through (a first read under
//! [`Admission::SecondRead`](chest_core::Admission::SecondRead), not kept),
//! `prefetch` (room made first) and `read_ahead` (on the background
//! readers). Each race is ordered with a [`Gate`] on the reads of values by
//! one named thread, never with sleeps; [`HANG`] only turns a hang into a
//! failure.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chest_core::{Backend, ChestBuilder, MemoryBackend};
use common::{
    check, failure, hooked, hooked_over, on_thread, value, value_get, Gate, Switch, HANG,
};

/// The hook of these tests: the reads of values by one named thread wait
/// at `gate` while it holds, and fail or panic on cue; every read of a
/// value fails while `fail_all` is on; `passed` counts the reads of values
/// let through to the store.
#[derive(Default)]
struct Reads {
    gate: Arc<Gate>,
    fail_thread: Switch,
    fail_all: Switch,
    panic_thread: Switch,
    passed: AtomicUsize,
}

impl Reads {
    /// `inner` behind the hook, for the reads of `thread`.
    fn on(thread: &'static str, inner: Arc<dyn Backend>) -> (Arc<Self>, Arc<dyn Backend>) {
        let reads = Arc::new(Self::default());
        let r = Arc::clone(&reads);
        let backend = hooked_over(inner, move |op| {
            if !value_get(op) {
                return Ok(());
            }
            let gated = on_thread(thread);
            if gated {
                r.gate.pass();
            }
            if gated && r.panic_thread.is_on() {
                panic!("the backend panicked on a read of {op:?}");
            }
            if r.fail_all.is_on() || (gated && r.fail_thread.is_on()) {
                return Err(failure(op, "the disk went away"));
            }
            r.passed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        (reads, backend)
    }

    fn passed(&self) -> usize {
        self.passed.load(Ordering::SeqCst)
    }
}

/// Concurrent misses of one key whose value is an object of its own read it
/// once: the first miss loads it, the others wait for that load.
#[test]
fn concurrent_misses_of_a_value_stored_alone_share_one_read() {
    let store = MemoryBackend::new();
    let gate = Gate::new();
    let read_of = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (g, seen) = (Arc::clone(&gate), Arc::clone(&read_of));
    let b = hooked(&store, move |op| {
        if value_get(op) {
            seen.lock().unwrap().push(op.name().unwrap().to_string());
            g.pass();
        }
        Ok(())
    });
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .large_value_bytes(500)
        .open_backend(Arc::clone(&b))
        .unwrap();
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap(); // each an object of its own
    }
    c.flush().unwrap();
    drop(c);
    let c = common::open(&b, 4000);
    let waiting = AtomicUsize::new(0);
    let _release = gate.release_on_drop();
    gate.hold_next();
    std::thread::scope(|s| {
        let first = s.spawn(|| c.get(&3).unwrap().unwrap());
        gate.wait_held(1);
        let name = read_of.lock().unwrap().last().unwrap().clone();
        let others: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    c.get(&3).unwrap().unwrap()
                })
            })
            .collect();
        // The others are parked on the load (or about to be); none reads.
        while waiting.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        gate.release();
        assert_eq!(*first.join().unwrap(), value(3, 1000));
        for t in others {
            assert_eq!(*t.join().unwrap(), value(3, 1000));
        }
        let reads = read_of
            .lock()
            .unwrap()
            .iter()
            .filter(|n| **n == name)
            .count();
        assert_eq!(reads, 1, "concurrent misses read the object more than once");
    });
    check(&c, true);
}

/// A prefetched window that fits the budget makes room before it is read:
/// memory stays within the budget, and the gets that follow find the values.
/// (Most are hits; not all always: eviction takes a little from each shard
/// in turn, so a shard holding only window values may give one up.)
#[test]
fn prefetch_makes_room_first() {
    const LEN: usize = 16 << 10;
    let budget = 64 * LEN;
    // Raw: a value's weight is about its stored bytes, which is what the
    // room made ahead of the read is reckoned from.
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .serializer(chest_core::Raw)
        .memory_budget(budget)
        .open_backend(Arc::new(MemoryBackend::new()))
        .unwrap();
    for k in 0..256 {
        c.insert(k, value(k, LEN)).unwrap();
    }
    c.flush().unwrap();
    // Every key once, in an order that visits the shards unevenly.
    let order: Vec<u64> = (0..256u64).map(|i| (i * 97) % 256).collect();
    for window in order.chunks(16) {
        c.prefetch(window).unwrap();
        assert!(
            c.memory_usage() <= budget,
            "over the budget after a prefetch"
        );
        for k in window {
            assert_eq!(*c.get(k).unwrap().unwrap(), value(*k, LEN), "key {k}");
        }
    }
    let s = c.stats();
    assert!(
        s.misses < 16,
        "{} of 256 prefetched values were evicted",
        s.misses
    );
    check(&c, true);
}

/// `Chest::read_ahead` loads values on a background reader (`chest-reader`,
/// the gated thread) and returns at once.
mod read_ahead {
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    use chest_core::{Backend, Chest, ChestBuilder, MemoryBackend, Raw};

    use super::common::{check, until, value, READER};
    use super::{Reads, HANG};

    /// Values of 16 KiB in a budget of 256 KiB: 64 of them spill all but the
    /// last dozen or so.
    const LEN: usize = 16 << 10;
    const BUDGET: usize = 256 << 10;
    const KEYS: u64 = 64;

    /// A store whose reads by the chest's readers are hooked.
    fn store() -> (Arc<Reads>, Arc<dyn Backend>) {
        Reads::on(READER, Arc::new(MemoryBackend::new()))
    }

    /// `Raw`: the values are stored as they are, so the room a read-ahead makes
    /// for them (by their stored length) is their weight in memory.
    fn open(backend: &Arc<dyn Backend>) -> Chest<u64, Vec<u8>, Raw> {
        ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
            .serializer(Raw)
            .memory_budget(BUDGET)
            .shards(1)
            .open_backend(Arc::clone(backend))
            .unwrap()
    }

    /// A chest holding keys 0..64, flushed; keys 0..8 are spilled.
    fn filled(b: &Arc<dyn Backend>) -> Chest<u64, Vec<u8>, Raw> {
        let c = open(b);
        for k in 0..KEYS {
            c.insert(k, value(k, LEN)).unwrap();
        }
        c.flush().unwrap();
        check(&c, true);
        c
    }

    #[test]
    fn read_ahead_returns_while_its_reads_are_made_and_a_get_waits_for_them() {
        let (r, b) = store();
        let c = filled(&b);
        let _release = r.gate.release_on_drop();
        r.gate.hold();
        let window: Vec<u64> = (0..8).collect();
        assert_eq!(c.read_ahead(window.iter().copied()), 8, "loads started");
        r.gate.wait_held(1);
        let loads = c.stats().loads;
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let c = &c;
            s.spawn(move || tx.send(c.get(&3).map(|v| v.map(|v| v.to_vec()))).unwrap());
            // The get waits for the held load rather than reading again.
            assert!(
                rx.recv_timeout(Duration::from_millis(50)).is_err(),
                "the get did not wait for the load on its way"
            );
            check(c, false);
            r.gate.release();
            let got = rx.recv_timeout(HANG).expect("the get never returned");
            assert_eq!(got.unwrap().unwrap(), value(3, LEN));
        });
        for k in &window {
            assert_eq!(*c.get(k).unwrap().unwrap(), value(*k, LEN), "key {k}");
        }
        let stats = c.stats();
        assert_eq!(stats.loads, loads + 8, "each value read once: {stats:?}");
        // Kept: read again from memory.
        let hits = stats.hits;
        for k in &window {
            assert_eq!(*c.get(k).unwrap().unwrap(), value(*k, LEN));
        }
        let after = c.stats();
        assert_eq!(after.hits, hits + 8, "{stats:?} then {after:?}");
        assert_eq!(after.loads, loads + 8, "{after:?}");
        check(&c, true);
        assert!(c.memory_usage() <= BUDGET + LEN + 256);
    }

    #[test]
    fn keys_absent_in_memory_or_on_their_way_are_skipped() {
        let (r, b) = store();
        let c = filled(&b);
        let _release = r.gate.release_on_drop();
        r.gate.hold();
        assert_eq!(c.read_ahead([0, 1]), 2);
        // 0 and 1 are on their way, 63 is in memory, 1000 is absent.
        assert_eq!(c.read_ahead([0, 1, 2, 63, 1000]), 1);
        r.gate.release();
        for k in [0, 1, 2, 63] {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN));
        }
        assert!(c.get(&1000).unwrap().is_none());
        check(&c, true);
    }

    #[test]
    fn a_failed_read_ahead_is_reported_by_the_get_of_its_key() {
        let (r, b) = store();
        let c = filled(&b);
        // The reader's reads fail; the get reads again itself, and succeeds.
        r.fail_thread.on();
        let errors = c.stats().errors;
        assert_eq!(c.read_ahead(0..4), 4);
        for k in 0..4 {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
        }
        // The reader counts a failure just after the get it woke may have returned.
        until("the failures counted", || c.stats().errors >= errors + 4);
        check(&c, true);
        // Every read fails: the get returns the error, naming the key.
        r.fail_thread.off();
        r.fail_all.on();
        assert_eq!(c.read_ahead(4..8), 4);
        let e = c.get(&5).unwrap_err();
        assert!(e.to_string().contains("the disk went away"), "{e}");
        assert!(matches!(e, chest_core::Error::Read { .. }), "{e:?}");
        assert_eq!(e.key(), Some("5"), "{e}");
        assert_eq!(e.kind(), chest_core::ErrorKind::Store, "{e}");
        // Healed: everything reads, nothing was lost.
        r.fail_all.off();
        for k in 0..KEYS {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
        }
        check(&c, true);
    }

    #[test]
    fn an_insert_over_a_key_on_its_way_wins() {
        let (r, b) = store();
        let c = filled(&b);
        let _release = r.gate.release_on_drop();
        r.gate.hold();
        assert_eq!(c.read_ahead(0..4), 4);
        r.gate.wait_held(1);
        c.insert(2, vec![7; 100]).unwrap();
        c.remove(&3).unwrap();
        r.gate.release();
        assert_eq!(*c.get(&2).unwrap().unwrap(), vec![7; 100]);
        assert!(c.get(&3).unwrap().is_none());
        for k in [0, 1] {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN));
        }
        check(&c, true);
        c.close().unwrap();
        let c = open(&b);
        assert_eq!(*c.get(&2).unwrap().unwrap(), vec![7; 100], "reopened");
        assert!(c.get(&3).unwrap().is_none(), "reopened");
        assert_eq!(c.len(), KEYS as usize - 1);
    }

    #[test]
    fn a_chest_dropped_with_reads_on_their_way_loses_nothing() {
        let (r, b) = store();
        let c = filled(&b);
        let _release = r.gate.release_on_drop();
        r.gate.hold();
        // Every reader (4) held, a fifth window queued behind them.
        for w in 0..4 {
            assert_eq!(c.read_ahead(2 * w..2 * w + 2), 2);
        }
        r.gate.wait_held(4);
        assert_eq!(c.read_ahead(8..10), 2);
        c.insert(100, value(100, LEN)).unwrap();
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            s.spawn(move || {
                drop(c);
                tx.send(()).unwrap();
            });
            // Whether the drop waits for the held reads or not, it ends once
            // they are let through.
            r.gate.release();
            rx.recv_timeout(HANG).expect("the drop never ended");
        });
        let c = open(&b);
        assert_eq!(c.len(), KEYS as usize + 1);
        for k in (0..KEYS).chain([100]) {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
        }
        check(&c, true);
    }

    #[test]
    fn a_backend_panicking_on_a_read_ahead_loses_nothing_and_the_reader_goes_on() {
        let (r, b) = store();
        let c = filled(&b);
        r.panic_thread.on();
        let errors = c.stats().errors;
        assert_eq!(c.read_ahead(0..4), 4);
        // The gets read the values themselves (the panicked loads went back to
        // spilled), and the job counts as done: the quiescent check returns.
        for k in 0..4 {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
        }
        check(&c, true);
        assert!(c.stats().errors > errors, "the panic was counted");
        // The readers still work.
        r.panic_thread.off();
        let loads = c.stats().loads;
        assert_eq!(c.read_ahead(4..8), 4);
        for k in 4..8 {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
        }
        check(&c, true);
        assert_eq!(c.stats().loads, loads + 4, "read once each, by the readers");
    }
}

/// Reads through: a `get` of a spilled value that is not to be kept
/// (`Admission::SecondRead`, its first read) reads the stored record with
/// no lock held and leaves the key as it was, spilled. Meanwhile the key
/// may change; the gate holds the reads of the thread `reading`.
mod read_through {
    use std::sync::Arc;

    use chest_core::{Admission, Backend, Chest, ChestBuilder, Error, MemoryBackend, Raw};

    use super::common::bounded;
    use super::common::doubles::Shaped;
    use super::{Reads, HANG};

    /// The thread whose reads the gate holds.
    const READING: &str = "reading";

    /// Values of 16 KiB, packed into segments (below the 256 KiB of a large
    /// value), 8 of them in a budget of 64 KiB: key 0, the first in, is the
    /// first out, and every read of a spilled value is read through (its first
    /// read: [`Admission::SecondRead`]).
    const BUDGET: usize = 64 << 10;
    const LEN: usize = 16 << 10;
    const KEYS: u64 = 8;

    type Raws = Chest<u64, Vec<u8>, Raw>;

    /// A chest of [`KEYS`] values, `k` being `[k; LEN]`, written and settled:
    /// key 0 is spilled.
    fn open() -> (Arc<Reads>, Arc<Raws>) {
        let (r, b) = Reads::on(READING, Arc::new(MemoryBackend::new()));
        (r, Arc::new(open_with(&b, 256 << 10)))
    }

    /// [`open`], values of `large` bytes and more being large.
    fn open_with(b: &Arc<dyn Backend>, large: usize) -> Raws {
        let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
            .serializer(Raw)
            .large_value_bytes(large)
            .memory_budget(BUDGET)
            .admission(Admission::SecondRead)
            .shards(1)
            .open_backend(Arc::clone(b))
            .unwrap();
        for k in 0..KEYS {
            c.insert(k, vec![k as u8; LEN]).unwrap();
        }
        c.check_invariants(true).unwrap();
        assert!(c.stats().resident < KEYS as usize, "{:?}", c.stats());
        c
    }

    /// Starts `get(key)` on the thread [`READING`] and waits until its read is
    /// held by the gate.
    fn held_get(
        c: &Arc<Raws>,
        r: &Reads,
        key: u64,
    ) -> std::thread::JoinHandle<chest_core::Result<Option<Vec<u8>>>> {
        r.gate.hold();
        let reader = Arc::clone(c);
        let handle = std::thread::Builder::new()
            .name(READING.into())
            .spawn(move || reader.get(&key).map(|v| v.map(|v| v.to_vec())))
            .unwrap();
        r.gate.wait_held(1);
        handle
    }

    #[test]
    fn a_value_read_once_is_read_through_and_stays_spilled() {
        let (r, c) = open();
        let before = c.stats();
        let reads = r.passed();
        assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
        let after = c.stats();
        assert_eq!(r.passed(), reads + 1);
        assert_eq!(after.loads, before.loads + 1);
        assert_eq!(after.misses, before.misses + 1);
        // Nothing in memory changed: the value was handed over, not kept.
        assert_eq!(after.resident, before.resident);
        assert_eq!(after.memory_usage, before.memory_usage);
        c.check_invariants(true).unwrap();
        // Read again soon: now it is kept, and the next read is a hit.
        assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
        assert_eq!(r.passed(), reads + 2);
        let hits = c.stats().hits;
        assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
        assert_eq!(c.stats().hits, hits + 1);
        assert_eq!(r.passed(), reads + 2);
        c.check_invariants(true).unwrap();
    }

    /// Removes every key, which deletes the objects no manifest names.
    fn remove_all(c: &Raws) {
        for k in 0..KEYS {
            assert!(c.remove(&k).unwrap());
        }
    }

    #[test]
    fn concurrent_gets_of_a_small_value_read_it_each() {
        // The first get's read is held; a second get of the key does not wait
        // for it (there is no load to wait for) but reads on its own.
        let (r, c) = open();
        let release = r.gate.release_on_drop();
        let first = held_get(&c, &r, 0);
        let reads = r.passed();
        let other = Arc::clone(&c);
        let second = bounded("a get beside a held read", move || {
            other.get(&0).map(|v| v.map(|v| v.to_vec()))
        });
        assert_eq!(second.unwrap(), Some(vec![0; LEN]));
        assert_eq!(r.passed(), reads + 1);
        drop(release);
        assert_eq!(first.join().unwrap().unwrap(), Some(vec![0; LEN]));
        assert_eq!(r.passed(), reads + 2);
        c.check_invariants(true).unwrap();
    }

    #[test]
    fn concurrent_misses_of_a_large_value_in_a_segment_share_one_read() {
        // Values of 16 KiB are large here (from 4 KiB on), and the backend packs
        // large values into segments: their records are not objects of their
        // own, but they are still loaded once for all the readers.
        let (r, b) = Reads::on(READING, Shaped::packing());
        let c = Arc::new(open_with(&b, 4 << 10));
        let misses = c.stats().misses;
        let release = r.gate.release_on_drop();
        let first = held_get(&c, &r, 0);
        let reads = r.passed();
        let other = Arc::clone(&c);
        let second = std::thread::spawn(move || other.get(&0).map(|v| v.map(|v| v.to_vec())));
        // The second get has counted its miss: it waits for the held load (or,
        // were it to read through, reads on its own, which the count of reads
        // below would show).
        let waited = std::time::Instant::now();
        while c.stats().misses < misses + 2 {
            assert!(waited.elapsed() < HANG, "the second get never missed");
            std::thread::yield_now();
        }
        drop(release);
        assert_eq!(first.join().unwrap().unwrap(), Some(vec![0; LEN]));
        assert_eq!(second.join().unwrap().unwrap(), Some(vec![0; LEN]));
        assert_eq!(
            r.passed(),
            reads + 1,
            "the misses read the value more than once"
        );
        c.check_invariants(true).unwrap();
    }

    #[test]
    fn a_key_replaced_while_its_value_is_read_through_reads_again() {
        // The read is held; every key is removed, which deletes the segments
        // (never named by a manifest), and key 0 is inserted again. The held
        // read then finds its object gone: that is no error of the key's, which
        // is looked up again and found where it is now.
        let (r, c) = open();
        let release = r.gate.release_on_drop();
        let get = held_get(&c, &r, 0);
        remove_all(&c);
        c.insert(0, vec![100; LEN]).unwrap();
        drop(release);
        let got = get
            .join()
            .unwrap()
            .expect("no error: the key changed, not its object");
        assert_eq!(got, Some(vec![100; LEN]));
        c.check_invariants(true).unwrap();
    }

    #[test]
    fn a_key_removed_while_its_value_is_read_through_is_then_absent() {
        let (r, c) = open();
        let release = r.gate.release_on_drop();
        let get = held_get(&c, &r, 0);
        remove_all(&c);
        drop(release);
        // The object is gone when the read goes on: the key is looked up again
        // and is absent.
        assert_eq!(get.join().unwrap().unwrap(), None);
        c.check_invariants(true).unwrap();
    }

    #[test]
    fn a_value_whose_object_outlives_a_removal_reads_as_it_was() {
        // Flushed: the manifest names the objects, so removing the keys keeps
        // them until the next manifest is durable. The held read then reads the
        // value the key had when the get looked it up — a get ordered before
        // the removal.
        let (r, c) = open();
        c.flush().unwrap();
        let release = r.gate.release_on_drop();
        let get = held_get(&c, &r, 0);
        remove_all(&c);
        drop(release);
        assert_eq!(get.join().unwrap().unwrap(), Some(vec![0; LEN]));
        assert!(!c.contains_key(&0));
        c.check_invariants(true).unwrap();
    }

    #[test]
    fn a_failed_read_through_names_the_key_and_loses_nothing() {
        let (r, c) = open();
        r.fail_all.on();
        let other = Arc::clone(&c);
        let err = bounded("a failed read", move || other.get(&0).map(|_| ())).unwrap_err();
        assert!(
            matches!(&err, Error::Read { key, .. } if key == "0"),
            "{err}"
        );
        assert_eq!(err.key(), Some("0"));
        assert!(c.contains_key(&0));
        r.fail_all.off();
        assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
        c.check_invariants(true).unwrap();
    }
}
