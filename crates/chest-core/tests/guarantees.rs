//! The README's Guarantees, one section each, in the README's order: every
//! promise there has at least one test here that names it in its doc
//! comment. Where a promise is also held by deeper tests elsewhere, the
//! section says where.
//!
//! | README promise | tests here | and elsewhere |
//! | --- | --- | --- |
//! | Budget | `budget_*` | `eviction.rs` (backpressure), `loads.rs` (prefetch, read-ahead) |
//! | No copies on hits | `a_hit_*` | |
//! | Write-behind | `write_behind_*` | `eviction.rs` |
//! | Nothing lost silently | `nothing_lost_*` | `eviction.rs`, `flush.rs`, `panics.rs`, `concurrency.rs` |
//! | Durability | `durability_*` | `crash.rs` (the simulator), `flush.rs`, `open.rs` (manifests), `tests/kill_loop.rs` |
//! | Measured | (the promise is the two tools themselves) | `crash.rs`, `tests/kill_loop.rs` |
//! | Only its own | `only_its_own_*` | `open.rs`, `chest-fs`'s `tests/` |
//! | Integrity | `integrity_*` | conformance `corrupt_value_names_key` |
//! | One writer | `one_writer_*` | `lease.rs`, `conformance_memory.rs`, `chest-s3`'s `single_writer.rs` |
//! | Drop | `drop_*` | `async_chest.rs` (close of an `AsyncChest`) |
//!
//! Every race here is ordered by a gate (a hooked backend that holds an
//! operation of a named thread: the shared kit's [`Gate`]), never by a
//! sleep; [`HANG`](common::HANG) only turns a hang into a failure.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use chest_core::testing::hooked::{Hooked, Op};
use chest_core::BackendExt;
use chest_core::{Backend, Chest, ChestBuilder, Error, ErrorKind, MemoryBackend, Raw};
use common::{on_thread, value, value_put as is_value, Gate, WRITER};

// ------------------------------------------------------------------ the kit

type Bytes = Chest<u64, Vec<u8>, Raw>;

fn builder(budget: usize) -> ChestBuilder<u64, Vec<u8>, Raw> {
    ChestBuilder::<u64, Vec<u8>>::new()
        .serializer(Raw)
        .memory_budget(budget)
}

/// Every object of `backend` with its size, in name order.
fn listing(backend: &MemoryBackend) -> BTreeMap<String, usize> {
    backend
        .list("")
        .unwrap()
        .into_iter()
        .map(|n| {
            let len = backend.get(&n).unwrap().len();
            (n, len)
        })
        .collect()
}

/// A weigher that sees the chest's memory usage each time a value comes
/// into memory (an insert, a load): the highest it saw, before the value
/// it weighs is counted.
#[derive(Clone, Default)]
struct Probe {
    chest: Arc<OnceLock<Weak<Bytes>>>,
    peak: Arc<AtomicUsize>,
}

impl Probe {
    fn weigher(&self) -> impl Fn(&Vec<u8>) -> usize + Send + Sync + 'static {
        let probe = self.clone();
        move |v: &Vec<u8>| {
            if let Some(c) = probe.chest.get().and_then(Weak::upgrade) {
                probe.peak.fetch_max(c.memory_usage(), Ordering::SeqCst);
            }
            v.len()
        }
    }

    fn watch(&self, chest: &Arc<Bytes>) {
        let _ = self.chest.set(Arc::downgrade(chest));
    }

    fn reset(&self) {
        self.peak.store(0, Ordering::SeqCst);
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// A chest of `count` spilled values of `len` bytes, flushed, with a probe.
fn spilled_chest(budget: usize, count: u64, len: usize) -> (Arc<Bytes>, Probe) {
    let probe = Probe::default();
    let c = Arc::new(
        builder(budget)
            .weigher(probe.weigher())
            .shards(4)
            .open("memory://")
            .unwrap(),
    );
    probe.watch(&c);
    for k in 0..count {
        c.insert(k, value(k, len)).unwrap();
    }
    c.flush().unwrap();
    assert!(c.stats().resident < count as usize / 2);
    probe.reset();
    (c, probe)
}

// ------------------------------------------------------------------ Budget

const BUDGET: usize = 1 << 20;
const VALUE: usize = 64 << 10;
/// A value's weight as the chest counts it, with room for its bookkeeping.
const ONE_VALUE: usize = VALUE + 1024;

/// **Budget**: a `prefetch` of a window twice the budget never takes the
/// values in memory past the budget by more than the value being loaded
/// (it loads the window a chunk at a time, room made for each).
#[test]
fn budget_holds_under_a_prefetch_larger_than_the_budget() {
    let (c, probe) = spilled_chest(BUDGET, 48, VALUE);
    let window: Vec<u64> = (0..32).collect();
    c.prefetch(&window).unwrap();
    assert!(
        probe.peak() <= BUDGET,
        "memory reached {} during the prefetch: budget {BUDGET} (one value {ONE_VALUE} may come on top)",
        probe.peak()
    );
    for k in &window {
        assert_eq!(*c.get(k).unwrap().unwrap(), value(*k, VALUE));
    }
    assert!(c.memory_usage() <= BUDGET + ONE_VALUE);
}

/// **Budget**: windows read ahead, each larger than the budget and several
/// on their way at once, never take the values in memory past the budget.
#[test]
fn budget_holds_under_read_ahead_of_windows_larger_than_the_budget() {
    let (c, probe) = spilled_chest(BUDGET, 96, VALUE);
    for window in (0..96).collect::<Vec<u64>>().chunks(24) {
        c.read_ahead(window.iter().copied());
    }
    for k in 0..96 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, VALUE));
    }
    assert!(
        probe.peak() <= BUDGET + ONE_VALUE,
        "memory reached {} during the read-ahead: budget {BUDGET}, one value {ONE_VALUE}",
        probe.peak()
    );
}

/// **Budget**: two threads reading windows ahead at once (each window fits)
/// keep the values in memory within the budget, with one value per thread
/// on top at most.
#[test]
fn budget_holds_with_two_threads_reading_ahead() {
    for _round in 0..4 {
        let (c, probe) = spilled_chest(BUDGET, 64, VALUE);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let c = &c;
                s.spawn(move || {
                    let keys: Vec<u64> = (0..32).map(|i| t * 32 + i).collect();
                    for window in keys.chunks(6) {
                        c.read_ahead(window.iter().copied());
                        for k in window {
                            assert_eq!(*c.get(k).unwrap().unwrap(), value(*k, VALUE));
                        }
                    }
                });
            }
        });
        assert!(
            probe.peak() <= BUDGET + 2 * ONE_VALUE,
            "memory reached {} with two threads reading ahead: budget {BUDGET}, one value {ONE_VALUE}",
            probe.peak()
        );
    }
}

// ------------------------------------------------------------- No copies on hits

/// **No copies on hits**: `get` of a value in memory returns the same
/// shared handle every time, and asks nothing of the backend.
#[test]
fn a_hit_shares_the_value_and_does_no_io() {
    let ops = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&ops);
    let backend = Hooked::new(Arc::new(MemoryBackend::new()), move |_op: &Op<'_>| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let c: Bytes = builder(BUDGET).open_backend(Arc::new(backend)).unwrap();
    c.insert(1, value(1, VALUE)).unwrap();
    let before = ops.load(Ordering::SeqCst);
    let a = c.get(&1).unwrap().unwrap();
    let b = c.get(&1).unwrap().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "two hits gave two copies");
    assert_eq!(
        ops.load(Ordering::SeqCst),
        before,
        "a hit went to the backend"
    );
}

// ------------------------------------------------------------------ Write-behind

/// A chest whose writer thread's first value write is held at a gate, and
/// then fails; every other write passes.
fn failing_writer() -> (Arc<MemoryBackend>, Arc<Gate>, Bytes) {
    let store = Arc::new(MemoryBackend::new());
    let gate = Gate::closed();
    let fail = Arc::new(AtomicBool::new(true));
    let (g, f) = (Arc::clone(&gate), Arc::clone(&fail));
    let backend = Hooked::new(store.clone(), move |op: &Op<'_>| {
        if is_value(op) && on_thread(WRITER) && f.swap(false, Ordering::SeqCst) {
            g.pass();
            return Err(Hooked::failure(op, "the disk is dying"));
        }
        Ok(())
    });
    let c: Bytes = builder(BUDGET)
        .writer_threads(1)
        .open_backend(Arc::new(backend))
        .unwrap();
    // Past the point where eviction starts (budget - budget/16): one batch
    // is handed to the writer, which then waits at the gate.
    let mut k = 0;
    while c.memory_usage() <= BUDGET - BUDGET / 16 {
        c.insert(k, value(k, 4096)).unwrap();
        k += 1;
    }
    gate.wait_arrived(1);
    (store, gate, c)
}

fn reopen_and_check(store: Arc<MemoryBackend>, count: u64) {
    let c: Bytes = builder(BUDGET).open_backend(store).unwrap();
    assert_eq!(c.len() as u64, count);
    for k in 0..count {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 4096), "key {k}");
    }
}

/// **Write-behind**: a background write that fails reaches the next
/// `flush` as `Error::Write` naming its keys, even though the flush writes
/// those values itself and commits; the flush after it returns `Ok`, and
/// nothing is lost.
#[test]
fn write_behind_failure_reaches_the_next_flush() {
    let (store, gate, c) = failing_writer();
    let count = c.len() as u64;
    gate.release();
    let err = c.flush().expect_err("the background write failed");
    let write = err
        .errors()
        .iter()
        .find(|e| matches!(e, Error::Write { .. }))
        .unwrap_or_else(|| panic!("no Error::Write in {err}"));
    assert_eq!(write.kind(), ErrorKind::Store, "{write}");
    assert!(!write.keys().is_empty());
    for key in write.keys() {
        assert!(key.parse::<u64>().is_ok_and(|k| k < count), "{key}");
    }
    c.flush().expect("nothing failed since");
    drop(c);
    reopen_and_check(store, count);
}

/// **Write-behind**: the same failure reaches `close` when it is the next call.
#[test]
fn write_behind_failure_reaches_close() {
    let (store, gate, c) = failing_writer();
    let count = c.len() as u64;
    gate.release();
    let err = c.close().expect_err("the background write failed");
    assert!(
        err.errors()
            .iter()
            .any(|e| matches!(e, Error::Write { .. })),
        "{err}"
    );
    reopen_and_check(store, count);
}

/// **Write-behind** / **Nothing lost silently**: a failed write of a packed
/// object names every key it held (`Error::keys`), and every one of them
/// stays in memory.
#[test]
fn write_behind_failed_packed_write_names_every_key() {
    let fail = Arc::new(AtomicBool::new(true));
    let f = Arc::clone(&fail);
    let backend = Hooked::new(Arc::new(MemoryBackend::new()), move |op: &Op<'_>| {
        if is_value(op) && f.load(Ordering::SeqCst) {
            return Err(Hooked::failure(op, "no space left on device"));
        }
        Ok(())
    });
    let c: Bytes = builder(64 << 10)
        .writer_threads(0)
        .open_backend(Arc::new(backend))
        .unwrap();
    let mut k = 0;
    let err = loop {
        match c.insert(k, value(k, 100)) {
            Ok(()) => k += 1,
            Err(e) => break e,
        }
        assert!(k < 10_000, "no write failed");
    };
    let keys = err.keys();
    assert!(
        keys.len() > 1,
        "one packed write holds several values: {err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(keys[0]) && msg.contains("no space left"),
        "{msg}"
    );
    for key in &keys {
        let key: u64 = key.parse().unwrap();
        assert_eq!(*c.get(&key).unwrap().unwrap(), value(key, 100));
    }
    fail.store(false, Ordering::SeqCst);
    c.flush().unwrap();
    assert_eq!(c.len() as u64, k + 1);
}

// ------------------------------------------------------------------ Nothing lost silently

/// **Nothing lost silently**: a value the serializer refuses stays in
/// memory, the error names its key and `stats().errors` counts it; the
/// other values are committed by the flush.
#[test]
fn nothing_lost_when_a_value_cannot_be_serialized() {
    #[derive(Debug)]
    struct NoEmpty;
    impl chest_core::Serializer<Vec<u8>> for NoEmpty {
        fn name(&self) -> &str {
            "no-empty"
        }
        fn serialize(&self, v: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), chest_core::BoxError> {
            if v.is_empty() {
                return Err("empty values cannot be written".into());
            }
            out.extend_from_slice(v);
            Ok(())
        }
        fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, chest_core::BoxError> {
            Ok(bytes.to_vec())
        }
    }
    let store = Arc::new(MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .serializer(NoEmpty)
        .memory_budget(BUDGET)
        .open_backend(store.clone())
        .unwrap();
    c.insert(1, vec![]).unwrap();
    c.insert(2, value(2, 10)).unwrap();
    let err = c.flush().expect_err("key 1 cannot be written");
    assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
    assert_eq!(err.keys(), ["1"]);
    assert_eq!(c.stats().errors, 1);
    assert_eq!(*c.get(&1).unwrap().unwrap(), Vec::<u8>::new());
    drop(c);
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .serializer(NoEmpty)
        .open_backend(store)
        .unwrap();
    assert_eq!(c.keys(), [2], "the flush committed the others");
}

// ------------------------------------------------------------------ Durability

/// **Durability**: a reopen sees the state of the last completed flush,
/// not the changes after it (a chest dropped without flushing).
#[test]
fn durability_reopen_sees_the_last_completed_flush() {
    let store = Arc::new(MemoryBackend::new());
    // No flush on drop: the changes after the flush stay unflushed.
    let c: Bytes = builder(64 << 10)
        .flush_on_drop(false)
        .open_backend(store.clone())
        .unwrap();
    for k in 0..40 {
        c.insert(k, value(k, 4096)).unwrap();
    }
    c.flush().unwrap();
    c.insert(100, value(100, 10)).unwrap();
    c.remove(&0).unwrap();
    drop(c);
    let c: Bytes = builder(64 << 10).open_backend(store).unwrap();
    assert_eq!(c.len(), 40);
    assert!(c.contains_key(&0) && !c.contains_key(&100));
    assert_eq!(*c.get(&7).unwrap().unwrap(), value(7, 4096));
}

/// **Durability**: when removed values' space comes back is the same every
/// time for the same calls (it used to depend on which shards the keys'
/// hashes chose), and as the README says: a flush moves the live values out
/// of a segment less than half live, and the old segment goes at the third
/// flush after the removes (two newer manifests must not name it; a flush
/// with nothing changed still commits to free it). A segment at least half
/// live keeps its removed values' bytes.
#[test]
fn durability_space_after_a_remove_comes_back_the_same_way_every_time() {
    let mut seen: Option<Vec<BTreeMap<String, usize>>> = None;
    for _run in 0..8 {
        let store = Arc::new(MemoryBackend::new());
        let c: Bytes = builder(BUDGET).open_backend(store.clone()).unwrap();
        for k in 0..64 {
            c.insert(k, value(k, 100)).unwrap();
        }
        let mut steps = Vec::new();
        c.flush().unwrap();
        steps.push(listing(&store));
        // 32 of 64: the segment stays half live, and whole.
        for k in (0..64).filter(|k| k % 2 == 0) {
            c.remove(&k).unwrap();
        }
        c.flush().unwrap();
        steps.push(listing(&store));
        // 8 more: less than half live, compacted by the next flush.
        for k in (0..64).filter(|k| k % 8 == 1) {
            c.remove(&k).unwrap();
        }
        for _ in 0..4 {
            c.flush().unwrap();
            steps.push(listing(&store));
        }
        let data = |l: &BTreeMap<String, usize>| -> Vec<usize> {
            l.iter()
                .filter(|(n, _)| n.starts_with("data/"))
                .map(|(_, &len)| len)
                .collect()
        };
        let manifests =
            |l: &BTreeMap<String, usize>| l.keys().filter(|n| n.starts_with("manifest")).count();
        // One packed segment of 64 records (100 bytes and a checksum each).
        assert_eq!(data(&steps[0]), [64 * 104], "{steps:#?}");
        // Half removed: the segment stays; the manifest before is kept.
        assert_eq!(data(&steps[1]), [64 * 104], "{steps:#?}");
        assert_eq!(manifests(&steps[1]), 2, "{steps:#?}");
        // Compacted: the 24 live values in a new segment beside the old...
        assert_eq!(data(&steps[2]), [64 * 104, 24 * 104], "{steps:#?}");
        assert_eq!(data(&steps[3]), [64 * 104, 24 * 104], "{steps:#?}");
        // ...which goes at the third flush after the removes; then nothing changes.
        assert_eq!(data(&steps[4]), [24 * 104], "{steps:#?}");
        assert_eq!(steps[4], steps[5], "{steps:#?}");
        for step in &steps[1..] {
            assert_eq!(
                manifests(step),
                2,
                "the newest and the one before: {steps:#?}"
            );
        }
        // A manifest's size depends on where each value sits in its segment
        // (offsets are LEB128), which the shards' hashing decides: the
        // objects and the data's sizes must match, the manifests' names.
        let shape: Vec<BTreeMap<String, usize>> = steps
            .iter()
            .map(|l| {
                l.iter()
                    .map(|(n, &len)| (n.clone(), if n.starts_with("manifest") { 0 } else { len }))
                    .collect()
            })
            .collect();
        match &seen {
            None => seen = Some(shape),
            Some(first) => assert_eq!(first, &shape, "the same calls left another store"),
        }
    }
}

/// A store whose durable write is a plain write then a `sync` (not atomic
/// under a machine crash), over the crash simulator.
#[derive(Debug)]
struct PlainDurable(Arc<chest_core::testing::crash::CrashBackend>);

impl Backend for PlainDurable {
    fn location(&self) -> &str {
        self.0.location()
    }
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<bytes::Bytes>,
        opts: chest_core::PutOptions,
    ) -> chest_core::BackendResult<Option<chest_core::ObjectVersion>> {
        let plain = chest_core::PutOptions {
            durable: false,
            ..opts.clone()
        };
        let version = self.0.put_opts(name, parts, plain)?;
        if opts.durable {
            self.0.sync()?;
        }
        Ok(version)
    }
    fn get_opts(
        &self,
        name: &str,
        opts: chest_core::GetOptions,
    ) -> chest_core::BackendResult<chest_core::GetResult> {
        self.0.get_opts(name, opts)
    }
    fn delete(&self, name: &str) -> chest_core::BackendResult<()> {
        self.0.delete(name)
    }
    fn list(&self, prefix: &str) -> chest_core::BackendResult<Vec<String>> {
        self.0.list(prefix)
    }
    fn sync(&self) -> chest_core::BackendResult<()> {
        self.0.sync()
    }
}

/// **Durability** (machine crash): a power loss at any step of creating a
/// chest and its first flush, on a store whose `put_durable` is `put` +
/// `sync` and whose files can be left empty or cut short, leaves a location
/// that opens for writing, holding nothing or the first flush's state —
/// never refused as foreign, never "no manifest is readable".
#[test]
fn durability_a_power_loss_right_after_creation_leaves_a_chest_that_opens() {
    use chest_core::testing::crash::{CrashBackend, Semantics};
    let crash = Arc::new(CrashBackend::new(Semantics::TornFiles));
    crash.capture_every_step(true);
    let c: Bytes = builder(BUDGET)
        .open_backend(Arc::new(PlainDurable(Arc::clone(&crash))))
        .unwrap();
    for k in 0..8 {
        c.insert(k, value(k, 100)).unwrap();
    }
    c.close().unwrap();
    let snapshots = crash.take_snapshots();
    assert!(snapshots.len() > 4, "{} steps", snapshots.len());
    let mut images = 0;
    for snapshot in &snapshots {
        for seed in 0..64 {
            let image = snapshot.crash(seed);
            images += 1;
            let store = Arc::new(image.to_memory_backend().unwrap());
            let c: Bytes = builder(BUDGET)
                .open_backend(store)
                .unwrap_or_else(|e| panic!("unopenable: {e}\n{image}"));
            let n = c.len() as u64;
            assert!(n == 0 || n == 8, "{n} keys\n{image}");
            for k in 0..n {
                assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 100), "{image}");
            }
            // And it works on: the next flush commits.
            c.insert(100, value(100, 10)).unwrap();
            c.close().unwrap_or_else(|e| panic!("{e}\n{image}"));
        }
    }
    assert!(images > 256);
}

// ------------------------------------------------------------------ Only its own

/// **Only its own**: a location that holds objects but no chest is refused
/// for writing and left exactly as it was.
#[test]
fn only_its_own_a_foreign_location_is_refused_and_untouched() {
    let store = Arc::new(MemoryBackend::new());
    store
        .put("photos/cat.jpg", bytes::Bytes::from_static(b"meow"))
        .unwrap();
    store
        .put("data/00000001", bytes::Bytes::from_static(b"not ours"))
        .unwrap();
    let before = listing(&store);
    let err = builder(BUDGET).open_backend(store.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAChest, "{err}");
    assert_eq!(listing(&store), before);
}

// ------------------------------------------------------------------ Integrity

/// **Integrity**: a stored value whose bytes changed is an error naming the
/// key and the object, never a panic or wrong data.
#[test]
fn integrity_a_damaged_value_is_an_error_naming_the_key() {
    let store = Arc::new(MemoryBackend::new());
    let c: Bytes = builder(64 << 10).open_backend(store.clone()).unwrap();
    c.insert(7, value(7, 200 << 10)).unwrap();
    c.close().unwrap();
    let name = store
        .list("data/")
        .unwrap()
        .into_iter()
        .next()
        .expect("the value is stored");
    let mut bytes = store.get(&name).unwrap().to_vec();
    bytes[1000] ^= 0xff;
    store.put(&name, bytes.into()).unwrap();
    let c: Bytes = builder(64 << 10).open_backend(store).unwrap();
    let err = c.get(&7).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(err.key(), Some("7"));
    assert!(err.to_string().contains(&name), "{err}");
}

// ------------------------------------------------------------------ One writer

/// **One writer**: a second writable open of a chest that is open for
/// writing is refused, saying it is locked; a reader opens beside it.
#[test]
fn one_writer_a_second_writer_is_refused() {
    let name = format!("memory://guarantees-one-writer-{}", std::process::id());
    let first: Bytes = builder(BUDGET).open(name.as_str()).unwrap();
    first.insert(1, value(1, 10)).unwrap();
    first.flush().unwrap();
    let err = builder(BUDGET).open(name.as_str()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let reader: Bytes = builder(BUDGET).read_only(true).open(name.as_str()).unwrap();
    assert_eq!(*reader.get(&1).unwrap().unwrap(), value(1, 10));
}

// ------------------------------------------------------------------ Drop

/// **Drop**: a chest dropped without `close` whose flush fails cannot
/// return the error, but the loss is loud: an error-level event names the
/// location, the lost keys and the cause, and `Stats::lost_on_drop` counts
/// the values.
#[test]
fn drop_whose_flush_fails_is_loud() {
    let store = Arc::new(MemoryBackend::new());
    let fail = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&fail);
    let backend = Hooked::new(store.clone(), move |op: &Op<'_>| {
        if matches!(op, Op::Put(_)) && f.load(Ordering::SeqCst) {
            return Err(Hooked::failure(op, "read-only file system"));
        }
        Ok(())
    });
    let lost_before = builder(BUDGET)
        .open("memory://")
        .unwrap()
        .stats()
        .lost_on_drop;
    let out = common::logs::capture(tracing::Level::ERROR, || {
        let c: Bytes = builder(BUDGET)
            .writer_threads(0)
            .open_backend(Arc::new(backend))
            .unwrap();
        for k in 0..17 {
            c.insert(k, value(k, 100)).unwrap();
        }
        fail.store(true, Ordering::SeqCst);
        drop(c);
    });
    assert!(out.contains("ERROR"), "no error event: {out:?}");
    assert!(out.contains("lost_values=17"), "{out}");
    assert!(out.contains("read-only file system"), "the cause: {out}");
    assert!(out.contains("keys="), "the keys: {out}");
    let lost_after = builder(BUDGET)
        .open("memory://")
        .unwrap()
        .stats()
        .lost_on_drop;
    assert!(
        lost_after >= lost_before + 17,
        "{lost_before} -> {lost_after}"
    );
    // And the loss is real: the location holds the state of before.
    let c: Bytes = builder(BUDGET).open_backend(store).unwrap();
    assert!(c.is_empty());
}
