//! Eviction: the budget holds, eviction batches are written behind by the
//! background writers (an insert returns while its batch is written), an
//! insert over the budget waits for them (backpressure), and a write that
//! fails keeps its values in memory and reaches the caller. Each race is
//! ordered with a [`Gate`](common::Gate) on the writes of values — those of
//! the writer (`chest-writer`) apart from the others' — never with sleeps;
//! [`HANG`] only turns a hang into a failure.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use chest_core::{Admission, Backend, ChestBuilder, Error, ErrorKind, MemoryBackend};
use common::hooks::{ValueGates, Writes};
use common::{
    check, failure, finishes, hooked, open_weighed as open, until, value, Op, Switch, BUDGET, HANG,
    LEN,
};

/// A store whose writes (every `put`) fail while the switch is on.
fn failing_puts() -> (Switch, Arc<dyn Backend>) {
    let fail = Switch::default();
    let f = fail.clone();
    let b = hooked(&MemoryBackend::new(), move |op| match op {
        Op::Put(_) if f.is_on() => Err(failure(op, "no space left on device")),
        _ => Ok(()),
    });
    (fail, b)
}

fn sized(i: u64) -> Vec<u8> {
    value(i, 1000 + i as usize)
}

/// Write errors not yet reported were about values a `clear` removes: they
/// go with them, and the flush after it reports nothing stale.
#[test]
fn clear_drops_the_unreported_errors_of_the_values_it_removes() {
    let (fail, b) = failing_puts();
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .admission(Admission::EveryRead)
        .writer_threads(0)
        .open_backend(Arc::clone(&b))
        .unwrap();
    for k in 0..32 {
        c.insert(k, value(k, LEN)).unwrap();
    }
    c.flush().unwrap();
    fail.on();
    // Dirty values in memory whose spills fail (reported to the inserts)...
    for k in 100..116 {
        let _ = c.insert(k, value(k, LEN));
    }
    let errors = c.stats().errors;
    // ... and loads that make room by spilling them: those failures wait
    // for the next call that reports (a get does not).
    for k in 0..8 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN));
    }
    assert!(c.stats().errors > errors, "the loads' spills failed too");
    c.clear().unwrap();
    fail.off();
    c.flush().unwrap();
    assert!(c.is_empty());
    check(&c, true);
}

/// The budget holds when the windows of loads on probation could hold
/// more than all of it (a few large values, many shards: each shard's
/// window keeps at least one value): eviction takes from the windows when
/// nothing else is left.
#[test]
fn the_budget_holds_when_windows_could_hold_more_than_it() {
    const LARGE: usize = 64 << 10;
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(4 * LARGE)
        .count_entry_overhead(false)
        .shards(16)
        .open_backend(b)
        .unwrap();
    for k in 0..64 {
        c.insert(k, value(k, LARGE)).unwrap();
    }
    c.flush().unwrap();
    for round in 0..3 {
        for k in 0..64 {
            assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LARGE));
            let usage = c.memory_usage();
            assert!(
                usage <= 5 * LARGE,
                "round {round}, key {k}: {usage} bytes in memory, budget {}",
                4 * LARGE
            );
        }
    }
    check(&c, true);
}

/// Values that are stored (loaded ones) fill the whole budget: eviction
/// drops them only as far as the budget needs, and keeps the margin below
/// it (where eviction starts ahead of the budget) for values that must be
/// written first. With 4 KiB values and a 1 MiB budget that margin is 16
/// values: memory would sit at least 64 KiB below the budget.
#[test]
fn stored_values_fill_the_whole_budget() {
    const MIB: usize = 1 << 20;
    const SMALL: usize = 4096;
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(MIB)
        .count_entry_overhead(false)
        .admission(Admission::EveryRead)
        .open_backend(b)
        .unwrap();
    for k in 0..1024 {
        c.insert(k, value(k, SMALL)).unwrap();
    }
    c.flush().unwrap();
    c.evict(usize::MAX).unwrap();
    assert_eq!(c.memory_usage(), 0);
    for k in 0..1024 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, SMALL));
        let usage = c.memory_usage();
        assert!(usage <= MIB, "{usage} bytes over the budget");
        if k >= 256 {
            assert!(usage > MIB - SMALL, "{usage} bytes: the budget is not used");
        }
    }
    assert_eq!(c.stats().spills, 1024, "nothing written again");
    check(&c, true);
}

/// An insert returns while its eviction batch is being written.
#[test]
fn an_insert_returns_while_its_batch_is_written() {
    let (w, b) = Writes::new();
    let c = open(&b);
    let _release = w.release_on_drop();
    w.writer.hold();
    std::thread::scope(|s| {
        // The 16th value fills the budget: its insert hands the two coldest
        // to the writer, and returns while their put is held.
        finishes(s, || {
            for k in 0..16 {
                c.insert(k, value(k, LEN)).unwrap();
            }
        });
        w.writer.wait_held(1);
        assert_eq!(c.stats().spills, 0, "nothing written yet");
        assert!(c.memory_usage() <= BUDGET);
        check(&c, false);
        w.writer.release();
    });
    check(&c, true);
    assert!(c.stats().spills > 0);
    assert!(c.memory_usage() <= BUDGET);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
}

/// A value being written is readable and updatable in memory; the update wins.
#[test]
fn a_value_being_written_is_read_and_updated_in_memory() {
    let (w, b) = Writes::new();
    let c = open(&b);
    let _release = w.release_on_drop();
    w.fill_with_first_batch_held(&c);
    // Key 0, the coldest, is in the held batch.
    let misses = c.stats().misses;
    assert_eq!(*c.get(&0).unwrap().unwrap(), value(0, LEN));
    assert_eq!(c.stats().misses, misses, "read from memory");
    let mut updated = value(0, LEN);
    updated[0] ^= 0xff;
    c.update(&0, |v| v[0] ^= 0xff).unwrap().unwrap();
    assert_eq!(*c.get(&0).unwrap().unwrap(), updated);
    check(&c, false);
    w.writer.release();
    check(&c, true);
    // The write of the old value landed after the update: the new one stays.
    assert_eq!(*c.get(&0).unwrap().unwrap(), updated);
    for k in 1..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    c.close().unwrap();
    let c = open(&b);
    assert_eq!(*c.get(&0).unwrap().unwrap(), updated, "after reopen");
    check(&c, true);
}

/// Backpressure: with the writer held, an insert past the budget waits,
/// memory stays within the budget (and one value), and it resumes on release.
#[test]
fn inserts_wait_for_the_writer_when_memory_reaches_the_budget() {
    let (w, b) = Writes::new();
    let c = open(&b);
    let _release = w.release_on_drop();
    w.fill_with_first_batch_held(&c);
    assert!(c.memory_usage() <= BUDGET);
    let waiting = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let waiting = &waiting;
        let c = &c;
        s.spawn(move || {
            waiting.store(true, Ordering::SeqCst);
            c.insert(16, value(16, LEN)).unwrap();
            tx.send(()).unwrap();
        });
        // Its value is in, memory is over the budget: it waits for the writer.
        until("the insert", || {
            waiting.load(Ordering::SeqCst) && c.contains_key(&16)
        });
        assert!(c.memory_usage() > BUDGET);
        assert!(
            c.memory_usage() <= BUDGET + LEN,
            "memory grew past the bound"
        );
        assert!(
            rx.try_recv().is_err(),
            "an insert over the budget did not wait"
        );
        check(c, false);
        w.writer.release();
        rx.recv_timeout(HANG).expect("the insert never resumed");
    });
    assert!(c.memory_usage() <= BUDGET);
    check(&c, true);
    for k in 0..17 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
}

/// A failed background write: the error, with the key, reaches flush; the
/// values stay readable; a later flush with a healed backend stores them.
#[test]
fn a_failed_background_write_reaches_flush_with_its_key() {
    let (w, b) = Writes::new();
    let c = open(&b);
    let _release = w.release_on_drop();
    w.fail.on();
    w.fill_with_first_batch_held(&c);
    w.writer.release();
    let err = c.flush().unwrap_err();
    let keys: Vec<&str> = err.errors().iter().filter_map(Error::key).collect();
    assert!(
        err.errors()
            .iter()
            .any(|e| matches!(e, Error::Write { .. }) && e.kind() == ErrorKind::Store),
        "{err}"
    );
    assert!(!keys.is_empty(), "no key in {err}");
    for key in &keys {
        assert!(key.parse::<u64>().is_ok_and(|k| k < 16), "{key}");
    }
    assert!(
        err.errors()
            .iter()
            .all(|e| e.key().is_none() || e.to_string().contains("no space left")),
        "{err:?}"
    );
    // The batch's own error is there, after the flush's: two values.
    assert!(
        matches!(err.errors().last(), Some(Error::Write { keys, .. }) if keys.len() == 2),
        "{err:?}"
    );
    // Nothing was lost: every value is still in memory.
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    check(&c, true);
    w.fail.off();
    c.flush().unwrap();
    drop(c);
    let c = open(&b);
    assert_eq!(c.len(), 16);
    for k in 0..16 {
        assert_eq!(
            *c.get(&k).unwrap().unwrap(),
            value(k, LEN),
            "key {k} reopened"
        );
    }
}

/// A failed background write reaches the next insert that has to wait for room.
#[test]
fn a_failed_background_write_reaches_an_insert() {
    let (w, b) = Writes::new();
    let c = open(&b);
    let _release = w.release_on_drop();
    w.fail.on();
    let mut failed = None;
    for k in 0..40 {
        if let Err(e) = c.insert(k, value(k, LEN)) {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("the failure never reached an insert");
    assert!(err.errors().iter().any(|e| e.key().is_some()), "{err}");
    check(&c, true);
    w.fail.off();
    // Batches that failed after the one the insert reported come with the
    // next call; a flush after them is clean.
    if let Err(e) = c.flush() {
        assert!(
            e.errors().iter().all(|e| matches!(e, Error::Write { .. })),
            "{e}"
        );
    }
    c.close().unwrap();
    let c = open(&b);
    for k in 0..c.len() as u64 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
}

/// A chest dropped with writes in flight: the drop waits for them and
/// flushes; a reopen finds every value.
#[test]
fn a_chest_dropped_with_writes_in_flight_loses_nothing() {
    let (w, b) = Writes::new();
    let c = open(&b);
    let _release = w.release_on_drop();
    w.fill_with_first_batch_held(&c);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            drop(c);
            tx.send(()).unwrap();
        });
        // The drop waits for the held write (its flush comes after it).
        assert!(rx.try_recv().is_err());
        w.writer.release();
        rx.recv_timeout(HANG).expect("the drop never finished");
    });
    let c = open(&b);
    assert_eq!(c.len(), 16);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    check(&c, true);
}

/// A value that a flush and an eviction write at once, the eviction's write
/// landing first (the flush's is held), is still evicted: out of memory, the
/// budget holding. Evictions are written by the background writer, and a
/// flush waits for the batches submitted before it, so the race is an
/// eviction that begins while a flush writes.
#[test]
fn a_value_a_flush_is_writing_is_evicted_when_the_eviction_lands_first() {
    let store = MemoryBackend::new();
    let (g, b) = ValueGates::over(&store);
    let budget = 16_000;
    let c = common::open(&b, budget);
    for k in 1..=3 {
        c.insert(k, value(k, 3000)).unwrap();
    }
    assert_eq!(c.stats().spills, 0, "nothing evicted before the flush");
    // The flush's write of the dirty values is held...
    let _release = g.puts.release_on_drop();
    g.puts.hold_next();
    std::thread::scope(|s| {
        let flushing = s.spawn(|| c.flush());
        g.puts.wait_held(1);
        // ...while inserts evict the same values (the last one waits for
        // the writer to store them: memory is over the budget).
        for k in 4..=6 {
            c.insert(k, value(k, 3000)).unwrap();
        }
        until("the eviction landed", || c.stats().evictions >= 3);
        g.puts.release();
        flushing.join().unwrap().unwrap();
    });
    check(&c, true);
    assert!(c.memory_usage() <= budget);
    // Everything the eviction took is out of memory: reading it is a miss.
    let misses = c.stats().misses;
    for k in 1..=3 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 3000));
    }
    assert_eq!(c.stats().misses, misses + 3, "values stayed in memory");
    // And the budget keeps holding.
    for k in 10..40 {
        c.insert(k, value(k, 3000)).unwrap();
        assert!(
            c.memory_usage() <= budget,
            "{} over {budget}",
            c.memory_usage()
        );
    }
    check(&c, true);
    c.close().unwrap();
    let c = common::open(&b, budget);
    for k in (1..=6).chain(10..40) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 3000), "key {k}");
    }
}

/// The other order of the race above: an eviction begins while a flush
/// writes the same values, and the flush lands first. The values are still
/// evicted, and nothing is lost.
///
/// One shard, so that the values the eviction takes are those the held flush
/// is writing: the flush takes and writes the shards one at a time, and the
/// eviction takes the coldest of a shard or two at the cursor; with several
/// shards those could be shards the flush had passed while they were empty,
/// holding only keys inserted after it (in one run in 50 or so none of keys
/// 0..10 was evicted, and the race was not run at all).
#[test]
fn a_value_a_flush_is_writing_is_evicted_when_the_flush_lands_first() {
    let (w, b) = Writes::new();
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .shards(1)
        .open_backend(Arc::clone(&b))
        .unwrap();
    let _release = w.release_on_drop();
    for k in 0..10 {
        c.insert(k, value(k, LEN)).unwrap();
    }
    assert_eq!(c.stats().spills, 0);
    w.others.hold();
    w.writer.hold();
    std::thread::scope(|s| {
        let flushing = s.spawn(|| c.flush());
        w.others.wait_held(1);
        // The flush holds its snapshot of the dirty values 0..10; inserts
        // evict the two coldest of them, 0 and 1.
        for k in 10..16 {
            c.insert(k, value(k, LEN)).unwrap();
        }
        w.writer.wait_held(1);
        w.others.release();
        flushing.join().unwrap().unwrap();
        // The flush stored them (kept in memory); the eviction's write is held.
        check(&c, false);
        w.writer.release();
    });
    check(&c, true);
    assert!(c.memory_usage() <= BUDGET);
    assert_eq!(
        c.stats().spills,
        12,
        "the flush's ten and the eviction's two"
    );
    let misses = c.stats().misses;
    for k in 0..2 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    assert_eq!(
        c.stats().misses,
        misses + 2,
        "the evicted values stayed in memory"
    );
    for k in 2..10 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    c.close().unwrap();
    let c = open(&b);
    for k in 0..16 {
        assert_eq!(
            *c.get(&k).unwrap().unwrap(),
            value(k, LEN),
            "key {k} reopened"
        );
    }
}

/// Inserts 16 values with the writers held (the first batch is held), then
/// one more on another thread: memory passes the high mark again, a second
/// batch is handed over, and the insert waits (memory is at the budget).
/// Returns how many batches were being written at once (waiting until
/// `expected` are, if more than one), then lets them through and checks
/// every value, in memory, after a flush, and reopened.
fn batches_at_once(inner: Arc<dyn Backend>, writers: Option<usize>, expected: usize) -> usize {
    let (w, b) = Writes::over(inner);
    let open = || {
        let builder = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len).memory_budget(BUDGET);
        let builder = match writers {
            Some(n) => builder.writer_threads(n),
            None => builder,
        };
        builder.open_backend(Arc::clone(&b)).unwrap()
    };
    let c = open();
    let _release = w.release_on_drop();
    w.fill_with_first_batch_held(&c);
    assert_eq!(w.writer.held(), 1, "one batch so far");
    let at_once = std::thread::scope(|s| {
        // A failed assertion in here lets the held insert go before the
        // scope joins it.
        let _release = w.release_on_drop();
        let (tx, rx) = mpsc::channel();
        let c = &c;
        s.spawn(move || {
            // Twice as heavy, so that memory passes the high mark again.
            c.insert(16, big(16)).unwrap();
            tx.send(()).unwrap();
        });
        until("the second batch", || {
            c.contains_key(&16) && c.memory_usage() > BUDGET
        });
        // The insert that handed over the second batch waits for room; a
        // second writer (if any) is held in the gate by then, or soon.
        if expected > 1 {
            w.writer.wait_held(expected);
        }
        let at_once = w.writer.held();
        assert!(rx.try_recv().is_err(), "the insert did not wait");
        check(c, false);
        w.writer.release();
        rx.recv_timeout(HANG).expect("the insert never resumed");
        at_once
    });
    check(&c, true);
    assert!(c.memory_usage() <= BUDGET);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    assert_eq!(*c.get(&16).unwrap().unwrap(), big(16));
    c.flush().unwrap();
    check(&c, true);
    c.close().unwrap();
    let c = open();
    assert_eq!(c.len(), 17);
    for k in 0..16 {
        assert_eq!(
            *c.get(&k).unwrap().unwrap(),
            value(k, LEN),
            "key {k} reopened"
        );
    }
    assert_eq!(*c.get(&16).unwrap().unwrap(), big(16), "reopened");
    at_once
}

fn big(k: u64) -> Vec<u8> {
    [value(k, LEN), value(k + 1000, LEN)].concat()
}

/// On a backend that writes several objects at once, two writers by default:
/// a second batch is written while the first is still on its way.
#[test]
fn a_wide_backend_gets_two_writers_that_write_batches_at_once() {
    use common::doubles::Shaped;
    assert_eq!(batches_at_once(Shaped::wide(4), None, 2), 2);
}

/// One writer (the default on a one-at-a-time backend, or asked for): the
/// second batch waits in the queue while the first is written.
#[test]
fn one_writer_writes_one_batch_at_a_time() {
    use common::doubles::Shaped;
    assert_eq!(batches_at_once(Arc::new(Shaped::default()), None, 1), 1);
    assert_eq!(batches_at_once(Shaped::wide(4), Some(1), 1), 1);
}

/// Spills that fail (disk full) keep their values in memory, over the
/// budget, and report the error to the caller and in the stats; once the
/// disk has room again everything spills and flushes, and nothing is lost.
#[test]
fn failed_spills_keep_their_values_in_memory_and_report_errors() {
    let (fail, backend) = failing_puts();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(16 << 10)
        .open_backend(backend.clone())
        .unwrap();
    for i in 0..10 {
        c.insert(i, sized(i)).unwrap();
    }
    fail.on();
    let mut errors = 0;
    for i in 10..60 {
        match c.insert(i, sized(i)) {
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                let msg = e.to_string();
                assert!(msg.contains("no space left"), "{msg}");
            }
        }
    }
    assert!(errors > 0, "spill failures must reach the caller");
    assert!(c.stats().errors > 0);
    assert!(
        c.memory_usage() > 16 << 10,
        "values that could not be spilled stay in memory"
    );
    for i in 0..60 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), sized(i), "key {i} lost");
    }
    let err = c.flush().unwrap_err();
    assert!(matches!(err, Error::Backend(_) | Error::Many(_)), "{err}");

    // The disk has room again: everything spills and flushes.
    fail.off();
    c.insert(1000, sized(1)).unwrap();
    assert!(c.memory_usage() <= (16 << 10) + 2000);
    c.close().unwrap();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(16 << 10)
        .open_backend(backend)
        .unwrap();
    assert_eq!(c.len(), 61);
    for i in 0..60 {
        assert_eq!(
            *c.get(&i).unwrap().unwrap(),
            sized(i),
            "key {i} after reopen"
        );
    }
}

/// A value heavier than the budget is written at once by its insert; when
/// that write fails, the insert says so and the value stays in memory.
#[test]
fn a_failed_direct_write_of_a_value_heavier_than_the_budget_keeps_it() {
    let (fail, backend) = failing_puts();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(1 << 10)
        .open_backend(backend.clone())
        .unwrap();
    fail.on();
    assert!(c.insert(1, vec![7; 10_000]).is_err());
    assert_eq!(c.get(&1).unwrap().unwrap().len(), 10_000);
    fail.off();
    c.close().unwrap();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .open_backend(backend)
        .unwrap();
    assert_eq!(c.get(&1).unwrap().unwrap().len(), 10_000);
}

/// An evicted value leaves memory once its batch is placed: the chest keeps
/// no handle to it (a caller that dropped its own handles expects the
/// memory back, and Python's buffer finds values still alive through weak
/// references). Batches written by the inserting thread (no writers), so
/// that each is placed when the insert returns.
#[test]
fn an_evicted_value_is_let_go_once_its_batch_is_placed() {
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .writer_threads(0)
        .open("memory://")
        .unwrap();
    c.insert(0, value(0, LEN)).unwrap();
    let handle = c.get(&0).unwrap().unwrap();
    let mut k = 1;
    while c.keys_in_memory().contains(&0) {
        assert_eq!(
            Arc::strong_count(&handle),
            2,
            "in memory: the chest's and ours"
        );
        c.insert(k, value(k, LEN)).unwrap();
        k += 1;
        assert!(k < 10_000, "key 0 was never evicted");
    }
    assert_eq!(
        Arc::strong_count(&handle),
        1,
        "the chest still holds the value"
    );
    assert_eq!(*c.get(&0).unwrap().unwrap(), *handle);
}
