//! Findings of a review of the core (each failed before its fix): a failed
//! write or a compaction must not drop a durable key from the manifest, the
//! fallback manifest's objects must still exist, an undeletable orphan must
//! not make a chest unopenable, a panicking `update` of a heavy value must
//! not leave it marked as being evicted, and a backend panic in a commit
//! must end the flush.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chest_core::{Backend, BackendError, BackendResult, ChestBuilder, MemoryBackend};

/// A memory backend whose puts of value objects (`data/…`) fail on demand.
#[derive(Debug)]
struct Flaky {
    inner: MemoryBackend,
    fail_data_puts: AtomicBool,
}

impl Flaky {
    fn new(inner: MemoryBackend) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_data_puts: AtomicBool::new(false),
        })
    }
    fn check(&self, name: &str) -> BackendResult<()> {
        if name.starts_with("data/") && self.fail_data_puts.load(Ordering::SeqCst) {
            return Err(BackendError::Io {
                location: "flaky://".into(),
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

impl Backend for Flaky {
    fn location(&self) -> &str {
        "flaky://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.check(name)?;
        self.inner.put(name, data)
    }
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.check(name)?;
        self.inner.put_durable(name, data)
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
    fn sync(&self) -> BackendResult<()> {
        self.inner.sync()
    }
}

fn builder() -> ChestBuilder<u32, Vec<u8>> {
    ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(1 << 20)
        .shards(4)
}

/// Finding 1: compaction drops the stored copy of a resident, clean,
/// unchanged value; if rewriting it then fails, the flush's manifest omits
/// the key. A crash after that flush loses a key that nobody changed.
#[test]
fn compaction_then_failed_write_drops_an_unchanged_key() {
    let mem = MemoryBackend::new();
    let b = Flaky::new(mem.clone());
    // One shard: the flush writes one segment for all ten values.
    let c = builder().shards(1).open_backend(b.clone()).unwrap();
    for i in 0..10u32 {
        c.insert(i, vec![i as u8; 100]).unwrap();
    }
    c.flush().unwrap(); // one segment, 10 records, all resident and clean
    for i in 1..10u32 {
        c.remove(&i).unwrap(); // the segment is now sparse (1 live of 10)
    }
    b.fail_data_puts.store(true, Ordering::SeqCst);
    let flushed = c.flush();
    assert!(flushed.is_err(), "the rewrite of key 0 failed");
    std::mem::forget(c); // crash after the flush returned
    let again = builder().open_backend(Flaky::new(mem)).unwrap();
    assert!(
        again.contains_key(&0),
        "key 0 (never changed, durable before) is gone after reopen"
    );
    assert_eq!(again.get(&0).unwrap().unwrap()[0], 0);
}

/// Finding 2: commit N deletes objects that manifest N-1 names, yet N-1 is
/// kept as the fallback when N is damaged. Falling back gives keys whose
/// objects are gone.
#[test]
fn fallback_manifest_names_deleted_objects() {
    let mem = MemoryBackend::new();
    let c = builder().open_backend(Arc::new(mem.clone())).unwrap();
    c.insert(7, vec![1; 100]).unwrap();
    c.flush().unwrap(); // manifest 1: key 7 -> object A
    c.insert(7, vec![2; 100]).unwrap();
    c.flush().unwrap(); // manifest 2: key 7 -> object B
    std::mem::forget(c); // a crash: manifests 1 and 2 are there
                         // Tear the newest manifest (what the fallback exists for).
    let mut names = mem.list("manifest").unwrap();
    names.sort();
    let newest = names.last().unwrap().clone();
    let bytes = mem.get(&newest).unwrap();
    mem.put(&newest, bytes.slice(..bytes.len() / 2)).unwrap();
    let again = builder().open_backend(Arc::new(mem.clone())).unwrap();
    assert!(!again.damaged_manifests().is_empty());
    // The fallback says key 7 -> A: it must be readable (the old value).
    let got = again.get(&7);
    assert!(
        matches!(got, Ok(Some(ref v)) if v[0] == 1),
        "fallback manifest unreadable: {got:?}"
    );
}

/// Finding 3: `update` of a value heavier than the budget whose closure
/// panics: `take_one` has already marked it evicting and counted it in
/// `inflight`; `resume_unwind` drops the victim, so the value is stuck
/// (out of the queue, evicting forever) and `inflight` leaks.
#[test]
fn panicking_update_of_heavy_value_leaks_evicting_and_inflight() {
    let c = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(64 << 10)
        .open("memory://")
        .unwrap();
    c.insert(1, vec![1; 100 << 10]).unwrap(); // heavier than the budget: straight to the backend
    let r = catch_unwind(AssertUnwindSafe(|| c.update(&1, |_v| panic!("user bug"))));
    assert!(r.is_err());
    c.check_invariants(true).unwrap();
}

/// Same, without a panic: the weigher fails after `f` ran (`weighed?`
/// returns before the heavy victim is written).
#[test]
fn failing_weigher_in_update_of_heavy_value_leaks_evicting() {
    let fail = Arc::new(AtomicBool::new(false));
    let f2 = fail.clone();
    let c = ChestBuilder::<u32, Vec<u8>>::with_weigher(move |v: &Vec<u8>| {
        if f2.load(Ordering::SeqCst) && v.len() == 1 {
            panic!("weigher bug")
        }
        v.len()
    })
    .memory_budget(64 << 10)
    .open("memory://")
    .unwrap();
    c.insert(1, vec![1; 100 << 10]).unwrap();
    fail.store(true, Ordering::SeqCst);
    let r = c.update(&1, |v| v.truncate(1));
    assert!(r.is_err());
    fail.store(false, Ordering::SeqCst);
    c.check_invariants(true).unwrap();
}

/// Finding 1b: the general case. A key whose new value cannot be written at
/// flush time is left out of the manifest, and the commit deletes the
/// object of its previous durable value (it died before the flush began).
/// After a crash the key is gone entirely: less than the last completed flush.
#[test]
fn failed_write_at_flush_drops_the_previous_durable_version() {
    let mem = MemoryBackend::new();
    let b = Flaky::new(mem.clone());
    let c = builder().open_backend(b.clone()).unwrap();
    c.insert(0, vec![1; 100]).unwrap();
    c.flush().unwrap(); // last completed flush: 0 -> [1; 100]
    c.insert(0, vec![2; 100]).unwrap();
    b.fail_data_puts.store(true, Ordering::SeqCst);
    assert!(c.flush().is_err());
    std::mem::forget(c); // crash
    let again = builder().open_backend(Flaky::new(mem)).unwrap();
    assert!(
        again.contains_key(&0),
        "key 0 lost: neither the old nor the new value is durable"
    );
}

/// A backend whose `delete` always fails (no delete permission, retention).
#[derive(Debug)]
struct NoDelete(MemoryBackend);
impl Backend for NoDelete {
    fn location(&self) -> &str {
        "nodelete://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.0.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.0.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.0.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        Err(BackendError::Io {
            location: "nodelete://".into(),
            op: "delete",
            path: name.into(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        })
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.0.list(prefix)
    }
}

/// Finding 4: one orphan that cannot be deleted makes open fail
/// (`remove_orphans` propagates the delete error), though the chest is intact.
#[test]
fn undeletable_orphan_makes_the_chest_unopenable() {
    let mem = MemoryBackend::new();
    let c = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(64 << 10)
        .open_backend(Arc::new(NoDelete(mem.clone())))
        .unwrap();
    c.insert(1, vec![1; 10]).unwrap();
    c.flush().unwrap();
    c.insert(2, vec![2; 100 << 10]).unwrap(); // heavy: written now, not in any manifest
    std::mem::forget(c); // crash: data/… of key 2 is an orphan
    let again = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(64 << 10)
        .open_backend(Arc::new(NoDelete(mem)));
    assert!(again.is_ok(), "open failed: {:?}", again.err());
}

/// A backend whose `sync` panics once.
#[derive(Debug)]
struct PanicSync(MemoryBackend, AtomicBool);
impl Backend for PanicSync {
    fn location(&self) -> &str {
        "panicsync://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.0.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.0.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.0.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.0.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.0.list(prefix)
    }
    fn sync(&self) -> BackendResult<()> {
        if self.1.swap(false, Ordering::SeqCst) {
            panic!("backend bug in sync");
        }
        Ok(())
    }
}

/// Finding 5: `Flushing.ended` is set before `Store::commit`; a backend
/// panic inside commit leaves `Table::flushing` true, and the next flush
/// trips `debug_assert!(!t.flushing)` (debug) / runs with a stale flag.
#[test]
fn backend_panic_in_commit_leaves_the_store_flushing() {
    let b = Arc::new(PanicSync(MemoryBackend::new(), AtomicBool::new(false)));
    let c = builder().open_backend(b.clone()).unwrap();
    c.insert(1, vec![1; 10]).unwrap();
    b.1.store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| c.flush())).is_err());
    c.insert(2, vec![2; 10]).unwrap();
    let second = catch_unwind(AssertUnwindSafe(|| c.flush()));
    assert!(
        matches!(second, Ok(Ok(()))),
        "the flush after a backend panic failed"
    );
}

/// Finding 6: the segments a compaction empties die during the compacting
/// flush, so the manifest before it may name them and the next commit
/// cannot delete them yet; `has_garbage` asked only whether it could, so the
/// next flush with no changes returned without committing, and so did every
/// later one: the garbage stayed until something changed (the conformance
/// check `garbage_is_compacted` failed whenever no other object happened to
/// die between the flushes, as when the keys of each segment sat in one shard).
#[test]
fn segments_a_compaction_empties_are_deleted_by_flushes_with_no_changes() {
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
