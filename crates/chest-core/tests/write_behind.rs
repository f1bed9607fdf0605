//! Write-behind: eviction batches are written by the chest's background
//! writer. Each race is ordered with a gate — a backend whose writes of
//! values block until the test lets them through, chosen by the thread that
//! makes them (the writer, `chest-writer`, or any other) — never with
//! sleeps; a bounded wait only turns a hang into a failure.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chest_core::{
    Backend, BackendError, BackendResult, BoxError, Cbor, Chest, ChestBuilder, Error, ErrorKind,
    MemoryBackend, Serializer,
};

/// How long a test waits for something that must happen before it calls it
/// a hang (a liveness bound, not an ordering device).
const HANG: Duration = Duration::from_secs(20);

const WRITER: &str = "chest-writer";

#[derive(Debug, Default)]
struct GateState {
    /// Puts of values by the writer thread wait while this is set...
    hold_writer: bool,
    /// ...and puts of values by any other thread (a flush) while this is.
    hold_others: bool,
    /// Puts waiting: by the writer, by others.
    blocked: [usize; 2],
    /// Puts of values fail (once let through).
    fail: bool,
}

/// A memory backend whose writes of values (`data/…`) can be held and
/// made to fail.
#[derive(Debug, Default)]
struct Gate {
    inner: MemoryBackend,
    state: Mutex<GateState>,
    cv: Condvar,
    /// Claims to write several objects at once (`write_concurrency` 4).
    wide: bool,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn wide() -> Arc<Self> {
        Arc::new(Self {
            wide: true,
            ..Self::default()
        })
    }

    /// Holds (or lets through) the writer's puts, or the others'.
    fn hold(&self, writer: bool, on: bool) {
        let mut s = self.state.lock().unwrap();
        if writer {
            s.hold_writer = on;
        } else {
            s.hold_others = on;
        }
        self.cv.notify_all();
    }

    fn fail(&self, on: bool) {
        self.state.lock().unwrap().fail = on;
    }

    /// Waits until a put of the writer (or of another thread) is held.
    fn wait_blocked(&self, writer: bool) {
        self.wait_blocked_n(writer, 1);
    }

    /// Waits until `n` puts of writers (or of other threads) are held.
    fn wait_blocked_n(&self, writer: bool, n: usize) {
        let s = self.state.lock().unwrap();
        let i = usize::from(!writer);
        let (_s, timeout) = self
            .cv
            .wait_timeout_while(s, HANG, |s| s.blocked[i] < n)
            .unwrap();
        assert!(!timeout.timed_out(), "the held puts never came ({n})");
    }

    /// Puts held now: of writers, of others.
    fn blocked(&self) -> [usize; 2] {
        self.state.lock().unwrap().blocked
    }

    fn gate(&self, name: &str) -> BackendResult<()> {
        if !name.starts_with("data/") {
            return Ok(());
        }
        let writer = std::thread::current().name() == Some(WRITER);
        let i = usize::from(!writer);
        let held = |s: &GateState| if writer { s.hold_writer } else { s.hold_others };
        let mut s = self.state.lock().unwrap();
        if held(&s) {
            s.blocked[i] += 1;
            self.cv.notify_all();
            s = self.cv.wait_while(s, |s| held(s)).unwrap();
            s.blocked[i] -= 1;
        }
        if s.fail {
            return Err(BackendError::Io {
                location: "gate://".into(),
                op: "write",
                path: name.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                ),
            });
        }
        Ok(())
    }
}

/// Lets every held put through when dropped, so that a failed assertion
/// in a scope ends the test instead of hanging it.
struct Release<'a>(&'a Gate);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.hold(true, false);
        self.0.hold(false, false);
    }
}

impl Backend for Gate {
    fn location(&self) -> &str {
        "gate://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.gate(name)?;
        self.inner.put(name, data)
    }
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.gate(name)?;
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.inner.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.inner.list(prefix)
    }
    fn write_concurrency(&self) -> usize {
        if self.wide {
            4
        } else {
            1
        }
    }
}

/// Values of 64 KiB (weighed by their length, plus the chest's own
/// bookkeeping of a hundred or so bytes each) in a budget of 1 MiB and room
/// for that bookkeeping: the writer is handed a batch (the two coldest
/// values) once memory passes the high mark (the budget less 1/16), i.e. by
/// the 16th insert, which fills the budget; the 17th goes over it.
const LEN: usize = 64 << 10;
const BUDGET: usize = (1 << 20) + 16 * 256;

fn open(backend: &Arc<Gate>) -> Chest<u64, Vec<u8>> {
    ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .open_backend(backend.clone() as Arc<dyn Backend>)
        .unwrap()
}

fn value(k: u64) -> Vec<u8> {
    (0..LEN).map(|i| (k as usize * 31 + i) as u8).collect()
}

fn check<S: Serializer<Vec<u8>>>(c: &Chest<u64, Vec<u8>, S>, quiescent: bool) {
    if let Err(e) = c.check_invariants(quiescent) {
        panic!("invariant broken: {e}");
    }
}

/// Runs `f` on another thread; returns its result, or panics if it does
/// not finish while the test waits (the gate holds a put meanwhile).
fn finishes<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> T {
    let (tx, rx) = mpsc::channel();
    let _ = s.spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(HANG)
        .expect("the call waited for a held write")
}

/// Polls `done` until it holds (a bounded wait for another thread's step).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::yield_now();
    }
}

// (a) An insert returns while its eviction batch is being written.
#[test]
fn an_insert_returns_while_its_batch_is_written() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.hold(true, true);
    std::thread::scope(|s| {
        // The 16th value fills the budget: its insert hands the two coldest
        // to the writer, and returns while their put is held.
        finishes(s, || {
            for k in 0..16 {
                c.insert(k, value(k)).unwrap();
            }
        });
        b.wait_blocked(true);
        assert_eq!(c.stats().spills, 0, "nothing written yet");
        assert!(c.memory_usage() <= BUDGET);
        check(&c, false);
        b.hold(true, false);
    });
    check(&c, true);
    assert!(c.stats().spills > 0);
    assert!(c.memory_usage() <= BUDGET);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
}

// (b) A value being written is readable and updatable; the update wins.
#[test]
fn a_value_being_written_is_read_and_updated_in_memory() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.wait_blocked(true);
    // Key 0, the coldest, is in the held batch.
    let misses = c.stats().misses;
    assert_eq!(*c.get(&0).unwrap().unwrap(), value(0));
    assert_eq!(c.stats().misses, misses, "read from memory");
    let mut updated = value(0);
    updated[0] ^= 0xff;
    c.update(&0, |v| v[0] ^= 0xff).unwrap().unwrap();
    assert_eq!(*c.get(&0).unwrap().unwrap(), updated);
    check(&c, false);
    b.hold(true, false);
    check(&c, true);
    // The write of the old value landed after the update: the new one stays.
    assert_eq!(*c.get(&0).unwrap().unwrap(), updated);
    for k in 1..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    c.close().unwrap();
    let c = open(&b);
    assert_eq!(*c.get(&0).unwrap().unwrap(), updated, "after reopen");
    check(&c, true);
}

// (c) Backpressure: with the writer held, an insert past the budget waits,
// memory stays within the budget (and one value), and it resumes on release.
#[test]
fn inserts_wait_for_the_writer_when_memory_reaches_the_budget() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.wait_blocked(true);
    assert!(c.memory_usage() <= BUDGET);
    let waiting = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let waiting = &waiting;
        let c = &c;
        s.spawn(move || {
            waiting.store(true, Ordering::SeqCst);
            c.insert(16, value(16)).unwrap();
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
        b.hold(true, false);
        rx.recv_timeout(HANG).expect("the insert never resumed");
    });
    assert!(c.memory_usage() <= BUDGET);
    check(&c, true);
    for k in 0..17 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
}

// (d) A failed background write: the error, with the key, reaches flush;
// the values stay readable; a later flush with a healed backend stores them.
#[test]
fn a_failed_background_write_reaches_flush_with_its_key() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.fail(true);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.wait_blocked(true);
    b.hold(true, false);
    let err = c.flush().unwrap_err();
    let keys: Vec<&str> = err.errors().iter().filter_map(Error::key).collect();
    assert!(
        err.errors()
            .iter()
            .any(|e| matches!(e, Error::Write { .. }) && e.kind() == ErrorKind::Io),
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
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    check(&c, true);
    b.fail(false);
    c.flush().unwrap();
    drop(c);
    let c = open(&b);
    assert_eq!(c.len(), 16);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k} reopened");
    }
}

// (d') ...and reaches the next insert that has to wait for room.
#[test]
fn a_failed_background_write_reaches_an_insert() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.fail(true);
    let mut failed = None;
    for k in 0..40 {
        if let Err(e) = c.insert(k, value(k)) {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("the failure never reached an insert");
    assert!(err.errors().iter().any(|e| e.key().is_some()), "{err}");
    check(&c, true);
    b.fail(false);
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
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
}

// (e) A chest dropped with writes in flight: the drop waits for them and
// flushes; a reopen finds every value.
#[test]
fn a_chest_dropped_with_writes_in_flight_loses_nothing() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.wait_blocked(true);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            drop(c);
            tx.send(()).unwrap();
        });
        // The drop waits for the held write (its flush comes after it).
        assert!(rx.try_recv().is_err());
        b.hold(true, false);
        rx.recv_timeout(HANG).expect("the drop never finished");
    });
    let c = open(&b);
    assert_eq!(c.len(), 16);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    check(&c, true);
}

// A flush that begins while a batch is written waits for it, and its
// manifest is taken after it.
#[test]
fn a_flush_waits_for_the_batches_in_flight() {
    let b = Gate::new();
    let c = open(&b);
    let _release = Release(&b);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.wait_blocked(true);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let c = &c;
        s.spawn(move || {
            tx.send(c.flush()).unwrap();
        });
        assert!(rx.try_recv().is_err());
        b.hold(true, false);
        rx.recv_timeout(HANG).unwrap().unwrap();
    });
    let evicted = c.stats().evictions;
    assert!(evicted > 0, "the batch was placed before the flush");
    // The flush wrote only what the batch had not: every value once.
    assert_eq!(c.stats().spills, 16, "values written twice");
    check(&c, true);
}

// The other order of the race in `nothing_lost.rs`: an eviction begins while
// a flush writes the same values, and the flush lands first. The values
// are still evicted, and nothing is lost.
//
// One shard, so that the values the eviction takes are those the held flush
// is writing: the flush takes and writes the shards one at a time, and the
// eviction takes the coldest of a shard or two at the cursor; with several
// shards those could be shards the flush had passed while they were empty,
// holding only keys inserted after it (in one run in 50 or so none of keys
// 0..10 was evicted, and the race was not run at all).
#[test]
fn an_eviction_racing_a_flush_that_lands_first_still_evicts() {
    let b = Gate::new();
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .shards(1)
        .open_backend(b.clone() as Arc<dyn Backend>)
        .unwrap();
    let _release = Release(&b);
    for k in 0..10 {
        c.insert(k, value(k)).unwrap();
    }
    assert_eq!(c.stats().spills, 0);
    b.hold(false, true);
    b.hold(true, true);
    std::thread::scope(|s| {
        let flushing = s.spawn(|| c.flush());
        b.wait_blocked(false);
        // The flush holds its snapshot of the dirty values 0..10; inserts
        // evict the two coldest of them, 0 and 1.
        for k in 10..16 {
            c.insert(k, value(k)).unwrap();
        }
        b.wait_blocked(true);
        b.hold(false, false);
        flushing.join().unwrap().unwrap();
        // The flush stored them (kept in memory); the eviction's write is held.
        check(&c, false);
        b.hold(true, false);
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
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    assert_eq!(
        c.stats().misses,
        misses + 2,
        "the evicted values stayed in memory"
    );
    for k in 2..10 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    c.close().unwrap();
    let c = open(&b);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k} reopened");
    }
}

static PANIC_ON_SERIALIZE: AtomicBool = AtomicBool::new(false);

/// CBOR, but panics while `PANIC_ON_SERIALIZE` is set.
struct Touchy;

impl Serializer<Vec<u8>> for Touchy {
    fn name(&self) -> &str {
        "cbor"
    }
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), BoxError> {
        if PANIC_ON_SERIALIZE.load(Ordering::SeqCst) {
            panic!("serializer bug");
        }
        Serializer::<Vec<u8>>::serialize(&Cbor, value, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, BoxError> {
        Serializer::<Vec<u8>>::deserialize(&Cbor, bytes)
    }
}

// A serializer that panics on the writer thread: the panic becomes an
// error for the caller, the values stay in memory, the writer lives on.
#[test]
fn a_serializer_panicking_on_the_writer_thread_loses_nothing() {
    let b = Gate::new();
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .serializer(Touchy)
        .open_backend(b.clone() as Arc<dyn Backend>)
        .unwrap();
    PANIC_ON_SERIALIZE.store(true, Ordering::SeqCst);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.hold(true, false);
    let err = c.flush().unwrap_err();
    assert!(
        err.errors().iter().any(|e| matches!(
            e,
            Error::Panicked {
                what: "serializer",
                ..
            }
        )),
        "{err}"
    );
    check(&c, true);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    PANIC_ON_SERIALIZE.store(false, Ordering::SeqCst);
    // The writer still works, and a flush writes the pinned values.
    for k in 16..40 {
        c.insert(k, value(k)).unwrap();
    }
    c.close().unwrap();
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .serializer(Touchy)
        .open_backend(b.clone() as Arc<dyn Backend>)
        .unwrap();
    assert_eq!(c.len(), 40);
    for k in 0..40 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
}

/// Inserts 16 values with the writers held (the first batch is held), then
/// one more on another thread: memory passes the high mark again, a second
/// batch is handed over, and the insert waits (memory is at the budget).
/// Returns how many batches were being written at once (waiting until
/// `expected` are, if more than one), then lets them through and checks
/// every value, in memory, after a flush, and reopened.
fn batches_at_once(b: &Arc<Gate>, writers: Option<usize>, expected: usize) -> usize {
    let open = || {
        let builder = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len).memory_budget(BUDGET);
        let builder = match writers {
            Some(n) => builder.writer_threads(n),
            None => builder,
        };
        builder.open_backend(b.clone() as Arc<dyn Backend>).unwrap()
    };
    let c = open();
    let _release = Release(b);
    b.hold(true, true);
    for k in 0..16 {
        c.insert(k, value(k)).unwrap();
    }
    b.wait_blocked(true);
    assert_eq!(b.blocked()[0], 1, "one batch so far");
    let at_once = std::thread::scope(|s| {
        // A failed assertion in here lets the held insert go before the
        // scope joins it.
        let _release = Release(b);
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
            b.wait_blocked_n(true, expected);
        }
        let at_once = b.blocked()[0];
        assert!(rx.try_recv().is_err(), "the insert did not wait");
        check(c, false);
        b.hold(true, false);
        rx.recv_timeout(HANG).expect("the insert never resumed");
        at_once
    });
    check(&c, true);
    assert!(c.memory_usage() <= BUDGET);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k}");
    }
    assert_eq!(*c.get(&16).unwrap().unwrap(), big(16));
    c.flush().unwrap();
    check(&c, true);
    c.close().unwrap();
    let c = open();
    assert_eq!(c.len(), 17);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k), "key {k} reopened");
    }
    assert_eq!(*c.get(&16).unwrap().unwrap(), big(16), "reopened");
    at_once
}

fn big(k: u64) -> Vec<u8> {
    [value(k), value(k + 1000)].concat()
}

// On a backend that writes several objects at once, two writers by default:
// a second batch is written while the first is still on its way.
#[test]
fn a_wide_backend_gets_two_writers_that_write_batches_at_once() {
    assert_eq!(batches_at_once(&Gate::wide(), None, 2), 2);
}

// One writer (the default on a one-at-a-time backend, or asked for): the
// second batch waits in the queue while the first is written.
#[test]
fn one_writer_writes_one_batch_at_a_time() {
    assert_eq!(batches_at_once(&Gate::new(), None, 1), 1);
    assert_eq!(batches_at_once(&Gate::wide(), Some(1), 1), 1);
}
