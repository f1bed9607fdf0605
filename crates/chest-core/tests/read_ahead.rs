//! Read-ahead: `Chest::read_ahead` loads values on a background reader and
//! returns at once. Each race is ordered with a gate — a backend whose reads
//! of values block (or fail) until the test says, chosen by the thread that
//! makes them (the reader, `chest-reader`, or any other) — never with
//! sleeps; a bounded wait only turns a hang into a failure.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use chest_core::{Backend, Chest, ChestBuilder, Raw};
use common::gate::{Gate, Release, HANG};

/// The chest's background readers: the gated thread.
const READER: &str = "chest-reader";

/// Values of 16 KiB in a budget of 256 KiB: 64 of them spill all but the
/// last dozen or so.
const LEN: usize = 16 << 10;
const BUDGET: usize = 256 << 10;
const KEYS: u64 = 64;

/// `Raw`: the values are stored as they are, so the room a read-ahead makes
/// for them (by their stored length) is their weight in memory.
fn open(backend: &Arc<Gate>) -> Chest<u64, Vec<u8>, Raw> {
    ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .serializer(Raw)
        .memory_budget(BUDGET)
        .shards(1)
        .open_backend(backend.clone() as Arc<dyn Backend>)
        .unwrap()
}

fn value(k: u64) -> Vec<u8> {
    (0..LEN).map(|i| (k as usize * 31 + i) as u8).collect()
}

/// A chest holding keys 0..64, flushed; keys 0..8 are spilled.
fn filled(b: &Arc<Gate>) -> Chest<u64, Vec<u8>, Raw> {
    let c = open(b);
    for k in 0..KEYS {
        c.insert(k, value(k)).unwrap();
    }
    c.flush().unwrap();
    check(&c, true);
    c
}

/// Polls `done` until it holds (a bounded wait for another thread's step).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + HANG;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        std::thread::yield_now();
    }
}

fn check(c: &Chest<u64, Vec<u8>, Raw>, quiescent: bool) {
    if let Err(e) = c.check_invariants(quiescent) {
        panic!("invariant broken: {e}");
    }
}

#[test]
fn read_ahead_returns_while_its_reads_are_made_and_a_get_waits_for_them() {
    let b = Gate::new(READER);
    let c = filled(&b);
    let _release = Release(&b);
    b.set(|s| s.hold = true);
    let window: Vec<u64> = (0..8).collect();
    assert_eq!(c.read_ahead(window.iter().copied()), 8, "loads started");
    b.wait_blocked(1);
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
        b.set(|s| s.hold = false);
        let got = rx.recv_timeout(HANG).expect("the get never returned");
        assert_eq!(got.unwrap().unwrap(), value(3));
    });
    for k in &window {
        assert_eq!(*c.get(k).unwrap().unwrap(), value(*k), "key {k}");
    }
    let stats = c.stats();
    assert_eq!(stats.loads, loads + 8, "each value read once: {stats:?}");
    // Kept: read again from memory.
    let hits = stats.hits;
    for k in &window {
        assert_eq!(*c.get(k).unwrap().unwrap(), value(*k));
    }
    let after = c.stats();
    assert_eq!(after.hits, hits + 8, "{stats:?} then {after:?}");
    assert_eq!(after.loads, loads + 8, "{after:?}");
    check(&c, true);
    assert!(c.memory_usage() <= BUDGET + LEN + 256);
}

#[test]
fn keys_absent_in_memory_or_on_their_way_are_skipped() {
    let b = Gate::new(READER);
    let c = filled(&b);
    let _release = Release(&b);
    b.set(|s| s.hold = true);
    assert_eq!(c.read_ahead([0, 1]), 2);
    // 0 and 1 are on their way, 63 is in memory, 1000 is absent.
    assert_eq!(c.read_ahead([0, 1, 2, 63, 1000]), 1);
    b.set(|s| s.hold = false);
    for k in [0, 1, 2, 63] {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k));
    }
    assert!(c.get(&1000).unwrap().is_none());
    check(&c, true);
}

#[test]
fn a_failed_read_ahead_is_reported_by_the_get_of_its_key() {
    let b = Gate::new(READER);
    let c = filled(&b);
    // The reader's reads fail; the get reads again itself, and succeeds.
    b.set(|s| s.fail_gated = true);
    let errors = c.stats().errors;
    assert_eq!(c.read_ahead(0..4), 4);
    for k in 0..4 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    // The reader counts a failure just after the get it woke may have returned.
    until("the failures counted", || c.stats().errors >= errors + 4);
    check(&c, true);
    // Every read fails: the get returns the error, naming the key.
    b.set(|s| {
        s.fail_gated = false;
        s.fail_all = true;
    });
    assert_eq!(c.read_ahead(4..8), 4);
    let e = c.get(&5).unwrap_err();
    assert!(e.to_string().contains("the disk went away"), "{e}");
    assert!(matches!(e, chest_core::Error::Read { .. }), "{e:?}");
    assert_eq!(e.key(), Some("5"), "{e}");
    assert_eq!(e.kind(), chest_core::ErrorKind::Io, "{e}");
    // Healed: everything reads, nothing was lost.
    b.set(|s| s.fail_all = false);
    for k in 0..KEYS {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    check(&c, true);
}

#[test]
fn an_insert_over_a_key_on_its_way_wins() {
    let b = Gate::new(READER);
    let c = filled(&b);
    let _release = Release(&b);
    b.set(|s| s.hold = true);
    assert_eq!(c.read_ahead(0..4), 4);
    b.wait_blocked(1);
    c.insert(2, vec![7; 100]).unwrap();
    c.remove(&3).unwrap();
    b.set(|s| s.hold = false);
    assert_eq!(*c.get(&2).unwrap().unwrap(), vec![7; 100]);
    assert!(c.get(&3).unwrap().is_none());
    for k in [0, 1] {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k));
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
    let b = Gate::new(READER);
    let c = filled(&b);
    let _release = Release(&b);
    b.set(|s| s.hold = true);
    // Every reader (4) held, a fifth window queued behind them.
    for w in 0..4 {
        assert_eq!(c.read_ahead(2 * w..2 * w + 2), 2);
    }
    b.wait_blocked(4);
    assert_eq!(c.read_ahead(8..10), 2);
    c.insert(100, value(100)).unwrap();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            drop(c);
            tx.send(()).unwrap();
        });
        // Whether the drop waits for the held reads or not, it ends once
        // they are let through.
        b.set(|s| s.hold = false);
        rx.recv_timeout(HANG).expect("the drop never ended");
    });
    let c = open(&b);
    assert_eq!(c.len(), KEYS as usize + 1);
    for k in (0..KEYS).chain([100]) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    check(&c, true);
}

#[test]
fn a_backend_panicking_on_a_read_ahead_loses_nothing_and_the_reader_goes_on() {
    let b = Gate::new(READER);
    let c = filled(&b);
    b.set(|s| s.panic_gated = true);
    let errors = c.stats().errors;
    assert_eq!(c.read_ahead(0..4), 4);
    // The gets read the values themselves (the panicked loads went back to
    // spilled), and the job counts as done: the quiescent check returns.
    for k in 0..4 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    check(&c, true);
    assert!(c.stats().errors > errors, "the panic was counted");
    // The readers still work.
    b.set(|s| s.panic_gated = false);
    let loads = c.stats().loads;
    assert_eq!(c.read_ahead(4..8), 4);
    for k in 4..8 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    check(&c, true);
    assert_eq!(c.stats().loads, loads + 4, "read once each, by the readers");
}
