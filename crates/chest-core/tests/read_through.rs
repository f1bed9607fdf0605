//! Reads through: a `get` of a spilled value that is not to be kept
//! ([`Admission::SecondRead`], its first read) reads the stored record with
//! no lock held and leaves the key as it was, spilled. Meanwhile the key
//! may change; these tests order each such race with a gate — a backend
//! whose reads of values by one named thread block (or fail) until the test
//! says — never with sleeps; a bounded wait only turns a hang into a
//! failure.

mod common;

use std::sync::{mpsc, Arc};

use chest_core::{Admission, Backend, Chest, ChestBuilder, Error, Raw};
use common::gate::{Gate, Release, HANG};

/// The thread whose reads the gate holds.
const READING: &str = "reading";

/// Values of 16 KiB, packed into segments (below the 256 KiB of a large
/// value), 8 of them in a budget of 64 KiB: key 0, the first in, is the
/// first out, and every read of a spilled value is read through (its first
/// read: [`Admission::SecondRead`]).
const BUDGET: usize = 64 << 10;
const LEN: usize = 16 << 10;
const KEYS: u64 = 8;

/// A chest of [`KEYS`] values, `k` being `[k; LEN]`, written and settled:
/// key 0 is spilled.
fn open(gate: &Arc<Gate>) -> Chest<u64, Vec<u8>, Raw> {
    open_with(gate, 256 << 10)
}

/// [`open`], values of `large` bytes and more being large.
fn open_with(gate: &Arc<Gate>, large: usize) -> Chest<u64, Vec<u8>, Raw> {
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .serializer(Raw)
        .large_value_bytes(large)
        .memory_budget(BUDGET)
        .admission(Admission::SecondRead)
        .shards(1)
        .open_backend(gate.clone() as Arc<dyn Backend>)
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
    c: &Arc<Chest<u64, Vec<u8>, Raw>>,
    gate: &Arc<Gate>,
    key: u64,
) -> std::thread::JoinHandle<chest_core::Result<Option<Vec<u8>>>> {
    gate.set(|s| s.hold = true);
    let reader = Arc::clone(c);
    let handle = std::thread::Builder::new()
        .name(READING.into())
        .spawn(move || reader.get(&key).map(|v| v.map(|v| v.to_vec())))
        .unwrap();
    gate.wait_blocked(1);
    handle
}

#[test]
fn a_value_read_once_is_read_through_and_stays_spilled() {
    let gate = Gate::new(READING);
    let c = open(&gate);
    let before = c.stats();
    let reads = gate.reads();
    assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
    let after = c.stats();
    assert_eq!(gate.reads(), reads + 1);
    assert_eq!(after.loads, before.loads + 1);
    assert_eq!(after.misses, before.misses + 1);
    // Nothing in memory changed: the value was handed over, not kept.
    assert_eq!(after.resident, before.resident);
    assert_eq!(after.memory_usage, before.memory_usage);
    c.check_invariants(true).unwrap();
    // Read again soon: now it is kept, and the next read is a hit.
    assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
    assert_eq!(gate.reads(), reads + 2);
    let hits = c.stats().hits;
    assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
    assert_eq!(c.stats().hits, hits + 1);
    assert_eq!(gate.reads(), reads + 2);
    c.check_invariants(true).unwrap();
}

/// Removes every key, which deletes the objects no manifest names.
fn remove_all(c: &Chest<u64, Vec<u8>, Raw>) {
    for k in 0..KEYS {
        assert!(c.remove(&k).unwrap());
    }
}

/// Runs `f` on a thread of its own; its result, or a failure if it takes
/// longer than [`HANG`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what}: no answer within {HANG:?}"))
}

#[test]
fn concurrent_gets_of_a_small_value_read_it_each() {
    // The first get's read is held; a second get of the key does not wait
    // for it (there is no load to wait for) but reads on its own.
    let gate = Gate::new(READING);
    let c = Arc::new(open(&gate));
    let release = Release(&gate);
    let first = held_get(&c, &gate, 0);
    let reads = gate.reads();
    let other = Arc::clone(&c);
    let second = bounded("a get beside a held read", move || {
        other.get(&0).map(|v| v.map(|v| v.to_vec()))
    });
    assert_eq!(second.unwrap(), Some(vec![0; LEN]));
    assert_eq!(gate.reads(), reads + 1);
    drop(release);
    assert_eq!(first.join().unwrap().unwrap(), Some(vec![0; LEN]));
    assert_eq!(gate.reads(), reads + 2);
    c.check_invariants(true).unwrap();
}

#[test]
fn concurrent_misses_of_a_large_value_in_a_segment_share_one_read() {
    // Values of 16 KiB are large here (from 4 KiB on), and the backend packs
    // large values into segments: their records are not objects of their
    // own, but they are still loaded once for all the readers.
    let gate = Gate::with_packing(READING, true);
    let c = Arc::new(open_with(&gate, 4 << 10));
    let misses = c.stats().misses;
    let release = Release(&gate);
    let first = held_get(&c, &gate, 0);
    let reads = gate.reads();
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
        gate.reads(),
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
    let gate = Gate::new(READING);
    let c = Arc::new(open(&gate));
    let release = Release(&gate);
    let get = held_get(&c, &gate, 0);
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
    let gate = Gate::new(READING);
    let c = Arc::new(open(&gate));
    let release = Release(&gate);
    let get = held_get(&c, &gate, 0);
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
    let gate = Gate::new(READING);
    let c = Arc::new(open(&gate));
    c.flush().unwrap();
    let release = Release(&gate);
    let get = held_get(&c, &gate, 0);
    remove_all(&c);
    drop(release);
    assert_eq!(get.join().unwrap().unwrap(), Some(vec![0; LEN]));
    assert!(!c.contains_key(&0));
    c.check_invariants(true).unwrap();
}

#[test]
fn a_failed_read_through_names_the_key_and_loses_nothing() {
    let gate = Gate::new(READING);
    let c = Arc::new(open(&gate));
    gate.set(|s| s.fail_all = true);
    let other = Arc::clone(&c);
    let err = bounded("a failed read", move || other.get(&0).map(|_| ())).unwrap_err();
    assert!(
        matches!(&err, Error::Read { key, .. } if key == "0"),
        "{err}"
    );
    assert_eq!(err.key(), Some("0"));
    assert!(c.contains_key(&0));
    gate.set(|s| s.fail_all = false);
    assert_eq!(*c.get(&0).unwrap().unwrap(), vec![0; LEN]);
    c.check_invariants(true).unwrap();
}
