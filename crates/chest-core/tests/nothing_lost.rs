//! "Nothing lost, ever": each race, panic and mistake found on the core gets
//! a deterministic reproduction here. Races are ordered with gates (a
//! backend that blocks one chosen request, a weigher that blocks one value)
//! never with sleeps; a bounded wait only turns a hang into a failure.

use std::collections::HashMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chest_core::{
    Backend, BackendResult, BoxError, Cbor, Chest, ChestBuilder, Error, MemoryBackend, OpenMode,
    Serializer,
};

/// How long a test waits for something that must happen before it calls it
/// a hang (a liveness bound, not an ordering device).
const HANG: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

#[derive(Debug, Default)]
struct GateState {
    /// (op, name prefix, matching requests to let through first)
    rule: Option<(Op, String, usize)>,
    entered: bool,
    released: bool,
    /// The bytes of the blocked put.
    captured: Option<Bytes>,
}

/// A memory backend that blocks one chosen request until released, and
/// counts requests.
#[derive(Debug, Default)]
struct GateBackend {
    inner: MemoryBackend,
    state: Mutex<GateState>,
    cv: Condvar,
    gets: Mutex<HashMap<String, usize>>,
    durable_puts: Mutex<Vec<String>>,
    plain_puts: Mutex<Vec<String>>,
}

impl GateBackend {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Blocks the `(skip + 1)`-th request `op` on a name starting with `prefix`.
    fn arm(&self, op: Op, prefix: &str, skip: usize) {
        let mut s = self.state.lock().unwrap();
        *s = GateState {
            rule: Some((op, prefix.to_string(), skip)),
            ..GateState::default()
        };
    }

    /// Waits until the armed request is blocked; returns its bytes (puts).
    fn wait_entered(&self) -> Option<Bytes> {
        let s = self.state.lock().unwrap();
        let (s, timeout) = self.cv.wait_timeout_while(s, HANG, |s| !s.entered).unwrap();
        assert!(!timeout.timed_out(), "the gated request never came");
        s.captured.clone()
    }

    fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.cv.notify_all();
    }

    fn gate(&self, op: Op, name: &str, data: Option<&Bytes>) {
        let mut s = self.state.lock().unwrap();
        let hit = match &mut s.rule {
            Some((o, prefix, skip)) if *o == op && name.starts_with(prefix.as_str()) => {
                if *skip == 0 {
                    true
                } else {
                    *skip -= 1;
                    false
                }
            }
            _ => false,
        };
        if !hit {
            return;
        }
        s.rule = None;
        s.entered = true;
        s.captured = data.cloned();
        self.cv.notify_all();
        let _s = self.cv.wait_while(s, |s| !s.released).unwrap();
    }

    fn gets_of(&self, name: &str) -> usize {
        self.gets.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// A copy of every object: the state a crash right now would leave on a
    /// store where every completed write is durable.
    fn snapshot(&self) -> Arc<MemoryBackend> {
        let copy = MemoryBackend::new();
        for name in self.inner.list("").unwrap() {
            copy.put(&name, self.inner.get(&name).unwrap()).unwrap();
        }
        Arc::new(copy)
    }
}

impl Backend for GateBackend {
    fn location(&self) -> &str {
        "gate://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.plain_puts.lock().unwrap().push(name.to_string());
        self.gate(Op::Put, name, Some(&data));
        self.inner.put(name, data)
    }
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.durable_puts.lock().unwrap().push(name.to_string());
        self.gate(Op::Put, name, Some(&data));
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        *self
            .gets
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default() += 1;
        self.gate(Op::Get, name, None);
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        *self
            .gets
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default() += 1;
        self.gate(Op::Get, name, None);
        self.inner.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.inner.list(prefix)
    }
}

fn open(backend: &Arc<impl Backend + 'static>, budget: usize) -> Chest<u64, Vec<u8>> {
    ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(budget)
        .open_backend(backend.clone() as Arc<dyn Backend>)
        .unwrap()
}

fn value(k: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k as usize * 31 + i) as u8).collect()
}

fn check(c: &Chest<u64, Vec<u8>>) {
    if let Err(e) = c.check_invariants(true) {
        panic!("invariant broken: {e}");
    }
}

// ---------------------------------------------------------------- 1. opening

#[test]
fn a_location_with_foreign_objects_is_refused_and_left_untouched() {
    let b = Arc::new(MemoryBackend::new());
    b.put("data/results.csv", Bytes::from_static(b"a,b\n1,2\n"))
        .unwrap();
    b.put("notes.txt", Bytes::from_static(b"mine")).unwrap();
    for mode in [
        OpenMode::OpenOrCreate,
        OpenMode::MustExist,
        OpenMode::CreateNew,
    ] {
        let err = ChestBuilder::<u64, Vec<u8>>::new()
            .mode(mode)
            .open_backend(b.clone())
            .unwrap_err();
        assert!(matches!(err, Error::NotAChest { .. }), "{mode:?}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("data/results.csv"), "{msg}");
    }
    assert_eq!(b.list("").unwrap(), ["data/results.csv", "notes.txt"]);
    assert_eq!(&b.get("data/results.csv").unwrap()[..], b"a,b\n1,2\n");
}

#[test]
fn only_the_chests_own_objects_are_removed_as_orphans() {
    let b = Arc::new(MemoryBackend::new());
    let c = open(&b, 1 << 20);
    c.insert(1, value(1, 100)).unwrap();
    c.close().unwrap();
    // Someone drops files into the chest's folder; a crash left an orphan.
    b.put("data/results.csv", Bytes::from_static(b"x")).unwrap();
    b.put("data/0000abcd", Bytes::from_static(b"orphan"))
        .unwrap();
    let c = open(&b, 1 << 20);
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 100));
    drop(c);
    assert!(
        b.get("data/results.csv").is_ok(),
        "a foreign file was deleted"
    );
    assert!(
        b.get("data/0000abcd").unwrap_err().is_not_found(),
        "the orphan stays"
    );
}

#[test]
fn open_modes() {
    let b = Arc::new(MemoryBackend::new());
    let err = ChestBuilder::<u64, Vec<u8>>::new()
        .mode(OpenMode::MustExist)
        .open_backend(b.clone())
        .unwrap_err();
    assert!(matches!(err, Error::NoChest { .. }), "{err:?}");
    assert!(
        b.list("").unwrap().is_empty(),
        "a failed open wrote something"
    );
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .mode(OpenMode::CreateNew)
        .open_backend(b.clone())
        .unwrap();
    drop(c);
    // Created but never flushed: still a chest (its marker says so).
    let err = ChestBuilder::<u64, Vec<u8>>::new()
        .mode(OpenMode::CreateNew)
        .open_backend(b.clone())
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    ChestBuilder::<u64, Vec<u8>>::new()
        .mode(OpenMode::MustExist)
        .open_backend(b)
        .unwrap();
}

// ------------------------------------------------ 2. an insert racing a flush

#[test]
fn an_insert_racing_a_flush_survives_a_clean_close() {
    let b = GateBackend::new();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let go_rx = Mutex::new(go_rx);
    // The weigher blocks on the value 777 (the insert is in progress).
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(move |v: &Vec<u8>| {
        if v.first() == Some(&77) {
            entered_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
        v.len()
    })
    .memory_budget(1 << 20)
    .open_backend(b.clone())
    .unwrap();
    c.insert(1, vec![1; 10]).unwrap();
    std::thread::scope(|s| {
        let inserting = s.spawn(|| c.insert(2, vec![77; 10]));
        entered_rx.recv_timeout(HANG).unwrap();
        c.flush().unwrap(); // while the insert is in progress
        go_tx.send(()).unwrap();
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

// ---------------------------- 3. a flush's manifest names only listed objects

#[test]
fn a_remove_during_a_flush_leaves_a_manifest_that_opens() {
    let b = GateBackend::new();
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
    b.arm(Op::Put, "data/", 0);
    let done: Vec<u64> = std::thread::scope(|s| {
        let flushing = s.spawn(|| c.flush());
        b.wait_entered();
        let done: Vec<u64> = keys.iter().copied().filter(|k| k % 2 == 0).collect();
        for k in &done {
            assert!(c.remove(k).unwrap());
        }
        b.release();
        flushing.join().unwrap().unwrap();
        done
    });
    // A crash now: the state is what the flush committed, which is the
    // state when it began (the removals came after it had taken those keys).
    let crashed = b.snapshot();
    let reopened = open(&crashed, 64 << 20);
    assert_eq!(reopened.len(), keys.len());
    for &k in &keys {
        assert_eq!(*reopened.get(&k).unwrap().unwrap(), value(k, 200));
    }
    check(&reopened);
    drop(reopened);
    check(&c);
    c.close().unwrap();
    let c = open(&b, 64 << 20);
    assert_eq!(c.len(), keys.len() - done.len());
    for &k in &keys {
        let expected = (!done.contains(&k)).then(|| value(k, 200));
        assert_eq!(c.get(&k).unwrap().as_deref(), expected.as_ref());
    }
    check(&c);
}

// ------------------------------------------------ 4. values stuck in memory

/// A flush and an eviction write the same values at once. Evictions are
/// written by the background writer, and a flush waits for the batches
/// submitted before it, so the race is an eviction that begins while a flush
/// writes (here its batch lands first; `write_behind.rs` has the other order).
#[test]
fn a_value_written_by_a_flush_and_an_eviction_at_once_is_still_evicted() {
    let b = GateBackend::new();
    let budget = 16_000;
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(budget)
        .open_backend(b.clone())
        .unwrap();
    for k in 1..=3 {
        c.insert(k, value(k, 3000)).unwrap();
    }
    assert_eq!(c.stats().spills, 0, "nothing evicted before the flush");
    // The flush's write of the dirty values is held...
    b.arm(Op::Put, "data/", 0);
    std::thread::scope(|s| {
        let flushing = s.spawn(|| c.flush());
        b.wait_entered();
        // ...while inserts evict the same values (the last one waits for
        // the writer to store them: memory is over the budget).
        for k in 4..=6 {
            c.insert(k, value(k, 3000)).unwrap();
        }
        let deadline = std::time::Instant::now() + HANG;
        while c.stats().evictions < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the eviction never landed"
            );
            std::thread::yield_now();
        }
        b.release();
        flushing.join().unwrap().unwrap();
    });
    check(&c);
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
    check(&c);
    c.close().unwrap();
    let c = open(&b, budget);
    for k in (1..=6).chain(10..40) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 3000), "key {k}");
    }
}

// ------------------------------------------------------------- 5. panics

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

#[test]
fn a_panicking_serializer_loses_nothing() {
    let b = Arc::new(MemoryBackend::new());
    let open_touchy = |budget| {
        ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(budget)
            .serializer(Touchy)
            .open_backend(b.clone())
            .unwrap()
    };
    {
        let c = open_touchy(1 << 20);
        for k in 0..200 {
            c.insert(k, value(k, 100)).unwrap();
        }
        PANIC_ON_SERIALIZE.store(true, Ordering::SeqCst);
        let err = c.flush().unwrap_err();
        assert!(err.to_string().contains("serializer panicked"), "{err}");
        PANIC_ON_SERIALIZE.store(false, Ordering::SeqCst);
        c.close().unwrap();
    }
    let c = open_touchy(1 << 20);
    assert_eq!(c.len(), 200, "values lost after a panicking flush");
    for k in 0..200 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 100));
    }
    c.check_invariants(true).unwrap();

    // A panic during eviction: the values stay, counted, and spill later.
    let c2_backend = Arc::new(MemoryBackend::new());
    let c2 = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .serializer(Touchy)
        .open_backend(c2_backend)
        .unwrap();
    PANIC_ON_SERIALIZE.store(true, Ordering::SeqCst);
    let mut errors = 0;
    for k in 0..10 {
        if let Err(e) = c2.insert(k, value(k, 1000)) {
            assert!(
                matches!(e, Error::Panicked { .. } | Error::Many(_)),
                "{e:?}"
            );
            errors += 1;
        }
    }
    assert!(errors > 0);
    if let Err(e) = c2.check_invariants(true) {
        panic!("{e}");
    }
    PANIC_ON_SERIALIZE.store(false, Ordering::SeqCst);
    c2.insert(99, value(99, 1000)).unwrap();
    c2.flush().unwrap();
    for k in 0..10 {
        assert_eq!(*c2.get(&k).unwrap().unwrap(), value(k, 1000));
    }
}

#[test]
fn a_chest_dropped_while_panicking_does_not_flush() {
    let b = GateBackend::new();
    let c = open(&b, 1 << 20);
    c.insert(1, value(1, 10)).unwrap();
    c.flush().unwrap();
    let manifests = b.durable_puts.lock().unwrap().len();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let c = c;
        c.insert(2, value(2, 10)).unwrap();
        panic!("the user's code fails");
    }));
    assert!(result.is_err());
    assert_eq!(
        b.durable_puts.lock().unwrap().len(),
        manifests,
        "flushed while panicking"
    );
    // The last flush is intact.
    let c = open(&b, 1 << 20);
    assert_eq!(c.len(), 1);
}

#[test]
fn panicking_weigher_and_update_closure_leave_the_chest_consistent() {
    let b = Arc::new(MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(|v: &Vec<u8>| {
        assert!(v.first() != Some(&66), "weigher bug");
        v.len()
    })
    .memory_budget(5000)
    .open_backend(b.clone())
    .unwrap();
    for k in 0..20 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    let err = c.insert(100, vec![66; 10]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Panicked {
                what: "weigher",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!c.contains_key(&100));
    check(&c);
    // A spilled value, updated by a closure that panics halfway.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        c.update(&0, |v| {
            v[0] = 1;
            v.push(9);
            panic!("closure bug");
        })
    }));
    assert!(panicked.is_err());
    check(&c);
    let mut expected = value(0, 1000);
    expected[0] = 1;
    expected.push(9);
    assert_eq!(
        *c.get(&0).unwrap().unwrap(),
        expected,
        "the partial change is kept"
    );
    c.close().unwrap();
    let c = open(&b, 5000);
    assert_eq!(*c.get(&0).unwrap().unwrap(), expected);
    assert_eq!(c.len(), 20);
}

// ------------------------------------------------------------ 6. manifests

#[test]
fn manifests_are_committed_durably_and_a_damaged_newest_falls_back() {
    let b = GateBackend::new();
    let c = open(&b, 1 << 20);
    c.insert(1, value(1, 10)).unwrap();
    c.flush().unwrap();
    c.insert(2, value(2, 10)).unwrap();
    c.close().unwrap();
    let durable = b.durable_puts.lock().unwrap().clone();
    let plain = b.plain_puts.lock().unwrap().clone();
    // The creation manifest, then one per flush.
    assert!(
        durable.iter().filter(|n| n.starts_with("manifest")).count() == 3,
        "{durable:?}"
    );
    assert!(
        !plain.iter().any(|n| n.starts_with("manifest")),
        "{plain:?}"
    );
    let mut manifests = b.inner.list("manifest").unwrap();
    assert_eq!(
        manifests.len(),
        2,
        "the newest and the one before: {manifests:?}"
    );
    // A power loss tore the newest one (a store that does not honour put_durable).
    let newest = manifests.pop().unwrap();
    let whole = b.inner.get(&newest).unwrap();
    b.inner
        .put(&newest, whole.slice(..whole.len() / 2))
        .unwrap();
    let c = open(&b, 1 << 20);
    assert_eq!(c.len(), 1, "the state of the flush before");
    assert_eq!(c.damaged_manifests().len(), 1);
    assert!(c.damaged_manifests()[0].contains(&newest));
    c.insert(3, value(3, 10)).unwrap();
    c.close().unwrap();
    let c = open(&b, 1 << 20);
    assert_eq!(c.len(), 2);
    assert!(c.damaged_manifests().is_empty());
    drop(c);
    assert_eq!(b.inner.list("manifest").unwrap().len(), 2);
    // With no readable manifest at all, the open fails: never taken for empty.
    for name in b.inner.list("manifest").unwrap() {
        b.inner.put(&name, Bytes::new()).unwrap();
    }
    let err = ChestBuilder::<u64, Vec<u8>>::new()
        .open_backend(b.clone())
        .unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
    assert!(
        !b.inner.list("data/").unwrap().is_empty(),
        "values were deleted"
    );
}

// --------------------------------------------- 7. no I/O under shard locks

/// Runs `other` while `blocked` waits in the gated request: `other` must
/// finish although the shard it uses is the blocked one's (one shard).
fn completes_while_blocked(
    b: &GateBackend,
    blocked: impl FnOnce() + Send,
    other: impl FnOnce() + Send,
) {
    std::thread::scope(|s| {
        let t = s.spawn(blocked);
        b.wait_entered();
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            other();
            tx.send(()).unwrap();
        });
        let done = rx.recv_timeout(HANG);
        b.release();
        t.join().unwrap();
        assert!(done.is_ok(), "blocked behind another key's I/O");
    });
}

#[test]
fn a_miss_does_not_block_its_shard() {
    let b = GateBackend::new();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .shards(1)
        .open_backend(b.clone())
        .unwrap();
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    b.arm(Op::Get, "data/", 0);
    completes_while_blocked(
        &b,
        || assert_eq!(*c.get(&0).unwrap().unwrap(), value(0, 1000)),
        || {
            c.insert(100, value(100, 10)).unwrap();
            assert!(c.contains_key(&5));
        },
    );
    check(&c);
}

#[test]
fn an_update_of_a_spilled_value_does_not_block_its_shard() {
    let b = GateBackend::new();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .shards(1)
        .open_backend(b.clone())
        .unwrap();
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    b.arm(Op::Get, "data/", 0);
    completes_while_blocked(
        &b,
        || {
            c.update(&0, |v| v.push(1)).unwrap().unwrap();
        },
        || c.insert(100, value(100, 10)).unwrap(),
    );
    assert_eq!(c.get(&0).unwrap().unwrap().len(), 1001);
    check(&c);
}

#[test]
fn a_heavy_insert_does_not_block_its_shard() {
    let b = GateBackend::new();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .shards(1)
        .open_backend(b.clone())
        .unwrap();
    c.insert(1, value(1, 10)).unwrap();
    b.arm(Op::Put, "data/", 0);
    completes_while_blocked(
        &b,
        || c.insert(2, value(2, 50_000)).unwrap(),
        || assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 10)),
    );
    assert_eq!(*c.get(&2).unwrap().unwrap(), value(2, 50_000));
    check(&c);
}

#[test]
fn a_flush_and_its_compaction_do_not_block_the_shard() {
    let b = GateBackend::new();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(2000)
        .shards(1)
        .open_backend(b.clone())
        .unwrap();
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
    b.arm(Op::Get, "data/", 0);
    completes_while_blocked(
        &b,
        || c.flush().unwrap(),
        || {
            c.insert(2000, value(2000, 10)).unwrap();
            assert!(c.contains_key(&35));
        },
    );
    check(&c);
    for k in (0..40).step_by(5) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 100));
    }
    // The flush's own dirty write, held too.
    c.insert(3000, value(3000, 10)).unwrap();
    b.arm(Op::Put, "data/", 0);
    completes_while_blocked(
        &b,
        || c.flush().unwrap(),
        || c.insert(4000, value(4000, 10)).unwrap(),
    );
    c.close().unwrap();
    let c = open(&b, 2000);
    assert_eq!(c.len(), 8 + 4);
}

#[test]
fn concurrent_misses_of_one_key_share_one_read() {
    let b = GateBackend::new();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .large_value_bytes(500)
        .open_backend(b.clone())
        .unwrap();
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap(); // each an object of its own
    }
    c.flush().unwrap();
    let c = {
        drop(c);
        ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(4000)
            .open_backend(b.clone())
            .unwrap()
    };
    let waiting = AtomicUsize::new(0);
    b.arm(Op::Get, "data/", 0);
    std::thread::scope(|s| {
        let first = s.spawn(|| c.get(&3).unwrap().unwrap());
        let name = {
            b.wait_entered();
            let gets = b.gets.lock().unwrap();
            gets.keys()
                .find(|n| n.starts_with("data/"))
                .unwrap()
                .clone()
        };
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
        b.release();
        assert_eq!(*first.join().unwrap(), value(3, 1000));
        for t in others {
            assert_eq!(*t.join().unwrap(), value(3, 1000));
        }
        assert_eq!(
            b.gets_of(&name),
            1,
            "concurrent misses read the object more than once"
        );
    });
    check(&c);
}

// ------------------------------------------------ the concurrency model test

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
fn threads_against_a_model() {
    const THREADS: u64 = 4;
    const KEYS: u64 = 24;
    const OPS: usize = 400;
    let b = Arc::new(MemoryBackend::new());
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
        check(&c);
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
        check(&again);
    }
}
