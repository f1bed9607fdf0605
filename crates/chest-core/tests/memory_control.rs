//! Memory on demand: what is in memory (`is_in_memory`, `keys_in_memory`),
//! one value moved out now (`spill`), the coldest values moved out until N
//! bytes are freed (`evict`), where a key's stored copy lives
//! (`stored_object`), and a budget that counts the weigher's answer only.
//! For callers that manage memory themselves: a worker's memory monitor,
//! the Python seed API's `move_to_disk` and `flush`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chest_core::BackendExt;
use chest_core::{
    Backend, BoxError, Chest, ChestBuilder, ErrorKind, MemoryBackend, Raw, Serializer,
};
use common::{failure, hooked, value, Op, Switch};

/// Raw bytes weighed by their length (no entry overhead), one shard (a
/// deterministic eviction order), evicting on the calling thread.
fn builder(budget: usize) -> ChestBuilder<u64, Vec<u8>, Raw> {
    ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .serializer(Raw)
        .count_entry_overhead(false)
        .memory_budget(budget)
        .shards(1)
        .writer_threads(0)
}

fn open(backend: Arc<dyn Backend>, budget: usize) -> Chest<u64, Vec<u8>, Raw> {
    builder(budget).open_backend(backend).unwrap()
}

/// A store that counts the writes of values.
fn counting() -> (Arc<AtomicUsize>, Arc<dyn Backend>) {
    let puts = Arc::new(AtomicUsize::new(0));
    let p = Arc::clone(&puts);
    let b = hooked(&MemoryBackend::new(), move |op| {
        if matches!(op, Op::Put(n) if n.starts_with("data/")) {
            p.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    });
    (puts, b)
}

fn sorted(mut keys: Vec<u64>) -> Vec<u64> {
    keys.sort_unstable();
    keys
}

#[test]
fn keys_in_memory_are_exactly_the_resident_ones() {
    let c = open(Arc::new(MemoryBackend::new()), 1 << 20);
    for k in 0..6 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    assert_eq!(sorted(c.keys_in_memory()), [0, 1, 2, 3, 4, 5]);
    assert!(c.spill(&2).unwrap());
    assert!(c.spill(&4).unwrap());
    assert_eq!(sorted(c.keys_in_memory()), [0, 1, 3, 5]);
    assert_eq!(c.len_in_memory(), 4);
    assert!(!c.is_in_memory(&2) && c.is_in_memory(&3));
    assert!(!c.is_in_memory(&99), "a key the chest does not hold");
    assert_eq!(c.len(), 6);
}

#[test]
fn a_spilled_value_leaves_memory_and_reads_back() {
    let (puts, b) = counting();
    let c = open(b, 1 << 20);
    c.insert(1, value(1, 5000)).unwrap();
    let usage = c.memory_usage();
    assert!(c.spill(&1).unwrap());
    assert_eq!(
        puts.load(Ordering::SeqCst),
        1,
        "written now, on this thread"
    );
    assert_eq!(c.memory_usage(), usage - 5000);
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 5000));
    assert!(!c.spill(&99).unwrap(), "a key the chest does not hold");
    c.spill(&1).unwrap();
    assert!(!c.spill(&1).unwrap(), "a value already out of memory");
}

#[test]
fn spilling_a_clean_value_writes_nothing() {
    let (puts, b) = counting();
    let c = open(b, 1 << 20);
    c.insert(1, value(1, 5000)).unwrap();
    c.flush().unwrap();
    let written = puts.load(Ordering::SeqCst);
    assert!(c.is_in_memory(&1));
    assert!(c.spill(&1).unwrap());
    assert_eq!(
        puts.load(Ordering::SeqCst),
        written,
        "the stored copy is current"
    );
    assert!(!c.is_in_memory(&1));
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 5000));
}

/// Raw bytes, refusing (with an error, not a panic) while the switch is on.
struct Refusing(Switch);

impl Serializer<Vec<u8>> for Refusing {
    fn name(&self) -> &str {
        "raw"
    }
    fn serialize(&self, v: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), BoxError> {
        if self.0.is_on() {
            return Err("this value cannot be serialized".into());
        }
        out.extend_from_slice(v);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, BoxError> {
        Ok(bytes.to_vec())
    }
}

#[test]
fn a_value_that_cannot_be_written_stays_in_memory_and_the_spill_says_why() {
    let refuse = Switch::default();
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .serializer(Refusing(refuse.clone()))
        .writer_threads(0)
        .open("memory://")
        .unwrap();
    c.insert(7, value(7, 100)).unwrap();
    refuse.on();
    let err = c.spill(&7).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
    assert_eq!(err.keys(), ["7"]);
    assert!(c.is_in_memory(&7));
    assert_eq!(*c.get(&7).unwrap().unwrap(), value(7, 100));
    // Asked again once it can be written: it goes.
    refuse.off();
    assert!(c.spill(&7).unwrap());
    assert!(!c.is_in_memory(&7));
    assert_eq!(*c.get(&7).unwrap().unwrap(), value(7, 100));
}

#[test]
fn evict_frees_at_least_what_is_asked_coldest_first() {
    let c = open(Arc::new(MemoryBackend::new()), 1 << 20);
    for k in 0..10 {
        c.insert(k, value(k, 10_000)).unwrap();
    }
    let freed = c.evict(25_000).unwrap();
    assert!((25_000..40_000).contains(&freed), "freed {freed}");
    assert_eq!(sorted(c.keys_in_memory()), [3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(c.memory_usage(), 70_000);
    // Everything: every key stays, every value reads back.
    assert_eq!(c.evict(usize::MAX).unwrap(), 70_000);
    assert!(c.keys_in_memory().is_empty());
    assert_eq!(c.memory_usage(), 0);
    for k in 0..10 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 10_000));
    }
    // Whatever the reads kept (under the admission in use) goes out again;
    // then nothing is left.
    c.evict(usize::MAX).unwrap();
    assert_eq!(c.evict(1).unwrap(), 0, "nothing left to evict");
}

#[test]
fn evict_with_a_failing_store_keeps_the_values_and_names_them() {
    let fail = Switch::default();
    let f = fail.clone();
    let b = hooked(&MemoryBackend::new(), move |op| match op {
        Op::Put(n) if n.starts_with("data/") && f.is_on() => {
            Err(failure(op, "no space left on device"))
        }
        _ => Ok(()),
    });
    let c = open(b, 1 << 20);
    for k in 0..4 {
        c.insert(k, value(k, 10_000)).unwrap();
    }
    fail.on();
    let err = c.evict(15_000).unwrap_err();
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(!err.keys().is_empty());
    assert_eq!(sorted(c.keys_in_memory()), [0, 1, 2, 3], "nothing lost");
    fail.off();
    assert!(c.evict(15_000).unwrap() >= 15_000);
}

#[test]
fn stored_object_names_the_object_that_holds_the_value() {
    let store = MemoryBackend::new();
    let c = open(Arc::new(store.clone()), 1 << 20);
    c.insert(1, value(1, 300 << 10)).unwrap(); // large: an object of its own
    c.insert(2, value(2, 100)).unwrap(); // small: packed in a segment
    assert_eq!(c.stored_object(&1), None, "not written yet");
    assert_eq!(c.stored_object(&99), None);
    c.flush().unwrap();
    for k in [1, 2] {
        let name = c.stored_object(&k).expect("written by the flush");
        assert!(name.starts_with("data/"), "{name}");
        let object = store.get(&name).unwrap();
        let v = value(k, if k == 1 { 300 << 10 } else { 100 });
        assert!(
            object.windows(v.len()).any(|w| w == &v[..]),
            "the object {name} holds the value of {k}"
        );
    }
    assert_ne!(c.stored_object(&1), c.stored_object(&2));
}

#[test]
fn without_the_entry_overhead_the_budget_counts_the_weigher_only() {
    let c = open(Arc::new(MemoryBackend::new()), 1 << 20);
    c.insert(1, vec![0; 1000]).unwrap();
    c.insert(2, vec![0; 234]).unwrap();
    assert_eq!(c.memory_usage(), 1234);
    let with: Chest<u64, Vec<u8>, Raw> = ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .serializer(Raw)
        .open("memory://")
        .unwrap();
    with.insert(1, vec![0; 1000]).unwrap();
    assert!(
        with.memory_usage() > 1000,
        "the default counts the entry too"
    );
}

/// [`open`], capped at `cap` stored bytes.
fn capped(backend: Arc<dyn Backend>, budget: usize, cap: u64) -> Chest<u64, Vec<u8>, Raw> {
    builder(budget)
        .max_spill(cap)
        .open_backend(backend)
        .unwrap()
}

#[test]
fn max_spill_keeps_the_values_in_memory_and_names_them() {
    let c = capped(Arc::new(MemoryBackend::new()), 64 << 10, 100 << 10);
    let mut refused = Vec::new();
    for k in 0..10 {
        if let Err(e) = c.insert(k, value(k, 30 << 10)) {
            assert_eq!(e.kind(), ErrorKind::Full, "{e}");
            assert!(e.is_temporary());
            assert!(e.to_string().contains("max_spill"), "{e}");
            refused.extend(e.keys().iter().map(|k| k.to_string()));
        }
    }
    assert!(
        !refused.is_empty(),
        "the cap was never reached: the test tests nothing"
    );
    let s = c.stats();
    assert!(s.stored_bytes <= 100 << 10, "{} stored", s.stored_bytes);
    assert!(s.stored_bytes > 0);
    assert!(
        c.memory_usage() > 64 << 10,
        "memory grows past the budget instead"
    );
    for k in 0..10 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 30 << 10), "key {k}");
    }
}

#[test]
fn spilling_resumes_when_stored_bytes_are_freed() {
    let c = capped(Arc::new(MemoryBackend::new()), 64 << 10, 100 << 10);
    for k in 0..10 {
        let _ = c.insert(k, value(k, 30 << 10));
    }
    let spilled: Vec<u64> = (0..10).filter(|k| !c.is_in_memory(k)).collect();
    assert!(!spilled.is_empty());
    for k in &spilled {
        c.remove(k).unwrap();
    }
    c.flush()
        .expect_err("the flush cannot write everything under the cap either");
    // Room again: the coldest values in memory can go.
    let freed = c.evict(30 << 10).unwrap();
    assert!(freed >= 30 << 10, "freed {freed}");
    assert!(c.stats().stored_bytes <= 100 << 10);
}

#[test]
fn a_value_heavier_than_the_cap_stays_in_memory() {
    let c = capped(Arc::new(MemoryBackend::new()), 16 << 10, 8 << 10);
    let err = c.insert(1, value(1, 64 << 10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Full, "{err}");
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 64 << 10));
    assert_eq!(c.stats().stored_bytes, 0);
}
