//! Concurrency: no I/O under a shard's lock (a miss, an update of a
//! spilled value, a heavy insert, a flush and its compaction each leave
//! the other keys of their shard free while their I/O is held at a gate),
//! and threads working on a small budget beside a flushing one agree with
//! a model, the invariant check holding between phases. Races are ordered
//! with a [`Gate`], never with sleeps; [`HANG`] only turns a hang into a
//! failure.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use chest_core::{Backend, Chest, ChestBuilder, MemoryBackend};
use common::hooks::ValueGates;
use common::{check, open, value, Gate, HANG};

/// Runs `other` while `blocked` waits in the gated request: `other` must
/// finish although the shard it uses is the blocked one's (one shard).
fn completes_while_blocked(
    gate: &Gate,
    blocked: impl FnOnce() + Send,
    other: impl FnOnce() + Send,
) {
    std::thread::scope(|s| {
        let t = s.spawn(blocked);
        gate.wait_held(1);
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            other();
            tx.send(()).unwrap();
        });
        let done = rx.recv_timeout(HANG);
        gate.release();
        t.join().unwrap();
        assert!(done.is_ok(), "blocked behind another key's I/O");
    });
}

/// The chests of these tests.
type Bytes = Chest<u64, Vec<u8>>;

/// A chest of one shard (so every key shares the lock a test watches) of
/// `budget` bytes, on a memory store whose value reads and writes can be
/// held; and that store, to reopen.
fn one_shard(budget: usize) -> (Arc<ValueGates>, Arc<dyn Backend>, Bytes) {
    let (g, b) = ValueGates::over(&MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(budget)
        .shards(1)
        .open_backend(b.clone())
        .unwrap();
    (g, b, c)
}

/// A miss whose read is held leaves its shard free: another key of the
/// shard is inserted and looked up meanwhile.
#[test]
fn a_miss_does_not_block_its_shard() {
    let (g, _, c) = one_shard(4000);
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    g.gets.hold_next();
    completes_while_blocked(
        &g.gets,
        || assert_eq!(*c.get(&0).unwrap().unwrap(), value(0, 1000)),
        || {
            c.insert(100, value(100, 10)).unwrap();
            assert!(c.contains_key(&5));
        },
    );
    check(&c, true);
}

/// An update of a spilled value whose read is held leaves its shard free.
#[test]
fn an_update_of_a_spilled_value_does_not_block_its_shard() {
    let (g, _, c) = one_shard(4000);
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    g.gets.hold_next();
    completes_while_blocked(
        &g.gets,
        || {
            c.update(&0, |v| v.push(1)).unwrap().unwrap();
        },
        || c.insert(100, value(100, 10)).unwrap(),
    );
    assert_eq!(c.get(&0).unwrap().unwrap().len(), 1001);
    check(&c, true);
}

/// An insert of a value heavier than the budget, whose direct write is
/// held, leaves its shard free.
#[test]
fn a_heavy_insert_does_not_block_its_shard() {
    let (g, _, c) = one_shard(4000);
    c.insert(1, value(1, 10)).unwrap();
    g.puts.hold_next();
    completes_while_blocked(
        &g.puts,
        || c.insert(2, value(2, 50_000)).unwrap(),
        || assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 10)),
    );
    assert_eq!(*c.get(&2).unwrap().unwrap(), value(2, 50_000));
    check(&c, true);
}

/// A flush whose compaction read, then whose write of dirty values, is held
/// leaves the shard free; nothing is lost.
#[test]
fn a_flush_and_its_compaction_do_not_block_the_shard() {
    let (g, b, c) = one_shard(2000);
    for k in 0..40 {
        c.insert(k, value(k, 100)).unwrap();
    }
    c.flush().unwrap();
    // Most of every segment's records die: the next flush compacts them.
    for k in (0..40).filter(|k| k % 5 != 0) {
        c.remove(&k).unwrap();
    }
    c.insert(1000, value(1000, 10)).unwrap();
    // Hold the flush's first read (compaction reads the live records).
    g.gets.hold_next();
    completes_while_blocked(
        &g.gets,
        || c.flush().unwrap(),
        || {
            c.insert(2000, value(2000, 10)).unwrap();
            assert!(c.contains_key(&35));
        },
    );
    check(&c, true);
    for k in (0..40).step_by(5) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 100));
    }
    // The flush's own dirty write, held too.
    c.insert(3000, value(3000, 10)).unwrap();
    g.puts.hold_next();
    completes_while_blocked(
        &g.puts,
        || c.flush().unwrap(),
        || c.insert(4000, value(4000, 10)).unwrap(),
    );
    c.close().unwrap();
    let c = open(&b, 2000);
    assert_eq!(c.len(), 8 + 4);
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Threads insert, update, remove, get and prefetch their own keys on a
/// small budget while another flushes; after each phase every key matches
/// the model, the invariants hold, and a reopen gives the same state.
#[test]
fn threads_on_a_small_budget_agree_with_a_model_and_a_reopen() {
    const THREADS: u64 = 4;
    const KEYS: u64 = 24;
    const OPS: usize = 400;
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let mut models: Vec<HashMap<u64, Vec<u8>>> = vec![HashMap::new(); THREADS as usize];
    for phase in 0..3u64 {
        let c = ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(16 << 10)
            .large_value_bytes(3000)
            .segment_bytes(8 << 10)
            .shards(4)
            .open_backend(b.clone())
            .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let flusher = s.spawn(|| {
                let mut flushes = 0;
                while !stop.load(Ordering::SeqCst) {
                    c.flush().unwrap();
                    flushes += 1;
                }
                flushes
            });
            let workers: Vec<_> = models
                .iter_mut()
                .enumerate()
                .map(|(t, model)| {
                    let c = &c;
                    s.spawn(move || {
                        let mut rng = phase * 1000 + t as u64;
                        let base = t as u64 * 1000;
                        for i in 0..OPS {
                            let k = base + splitmix(&mut rng) % KEYS;
                            let len = match splitmix(&mut rng) % 10 {
                                0 => 5000, // an object of its own
                                1..=3 => 1,
                                _ => 100 + (splitmix(&mut rng) % 900) as usize,
                            };
                            match splitmix(&mut rng) % 6 {
                                0 | 1 => {
                                    let v = value(k + i as u64, len);
                                    c.insert(k, v.clone()).unwrap();
                                    model.insert(k, v);
                                }
                                2 => {
                                    let got = c.update(&k, |v| v.push(i as u8)).unwrap();
                                    assert_eq!(got.is_some(), model.contains_key(&k), "update {k}");
                                    if let Some(v) = model.get_mut(&k) {
                                        v.push(i as u8);
                                    }
                                }
                                3 => {
                                    assert_eq!(c.remove(&k).unwrap(), model.remove(&k).is_some());
                                }
                                4 => {
                                    let keys: Vec<u64> =
                                        (0..4).map(|j| base + (k + j) % KEYS).collect();
                                    c.prefetch(&keys).unwrap();
                                }
                                _ => {
                                    assert_eq!(
                                        c.get(&k).unwrap().as_deref(),
                                        model.get(&k),
                                        "get {k}"
                                    );
                                }
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::SeqCst);
            assert!(flusher.join().unwrap() > 0);
        });
        check(&c, true);
        let all: HashMap<u64, Vec<u8>> = models
            .iter()
            .flatten()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(c.len(), all.len());
        for (k, v) in &all {
            assert_eq!(
                c.get(k).unwrap().as_deref(),
                Some(v),
                "key {k} after phase {phase}"
            );
        }
        assert!(c.memory_usage() <= 16 << 10);
        c.close().unwrap();
        let again = open(&b, 16 << 10);
        assert_eq!(again.len(), all.len());
        for (k, v) in &all {
            assert_eq!(
                again.get(k).unwrap().as_deref(),
                Some(v),
                "key {k} reopened"
            );
        }
        check(&again, true);
    }
}
