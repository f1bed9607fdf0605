//! The map API beyond insert/get/update/remove: atomic upserts, replace and
//! take, bulk operations, the stats, and the errors' kinds and keys.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use chest_core::BackendExt;
use chest_core::{Backend, Chest, ChestBuilder, MemoryBackend};
use common::{check, value};

fn chest(budget: usize) -> (Arc<MemoryBackend>, Chest<u64, Vec<u8>>) {
    let b = Arc::new(MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(budget)
        .open_backend(b.clone())
        .unwrap();
    (b, c)
}

#[test]
fn get_or_insert_with_inserts_once_under_contention() {
    let (_, c) = chest(1 << 20);
    let made = AtomicUsize::new(0);
    let start = Barrier::new(8);
    let got: Vec<Arc<Vec<u8>>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    c.get_or_insert_with(5, || {
                        made.fetch_add(1, Ordering::SeqCst);
                        value(5, 100)
                    })
                    .unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(made.load(Ordering::SeqCst), 1, "made more than once");
    assert!(got.iter().all(|v| **v == value(5, 100)));
    assert_eq!(c.len(), 1);
    check(&c, true);
}

#[test]
fn get_or_insert_with_loads_a_spilled_value_instead_of_making_one() {
    let (_, c) = chest(4000);
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    let v = c
        .get_or_insert_with(0, || unreachable!("key 0 exists (spilled)"))
        .unwrap();
    assert_eq!(*v, value(0, 1000));
    // Heavier than the budget: made, stored, and not kept in memory.
    let heavy = c.get_or_insert_with(99, || value(99, 10_000)).unwrap();
    assert_eq!(heavy.len(), 10_000);
    assert!(c.memory_usage() <= 4000);
    assert_eq!(*c.get(&99).unwrap().unwrap(), value(99, 10_000));
    check(&c, true);
}

#[test]
fn update_or_insert_counts_exactly_across_threads() {
    let b = Arc::new(MemoryBackend::new());
    let c: Chest<u64, u64> = ChestBuilder::new()
        .memory_budget(64) // counters spill and load all the time
        .open_backend(b.clone())
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let c = &c;
            s.spawn(move || {
                for i in 0..500u64 {
                    c.update_or_insert((i + t) % 10, |n| *n += 1, || 0).unwrap();
                }
            });
        }
    });
    let total: u64 = (0..10).map(|k| *c.get(&k).unwrap().unwrap()).sum();
    assert_eq!(total, 2000);
    c.check_invariants(true).unwrap();
    c.close().unwrap();
    let c: Chest<u64, u64> = ChestBuilder::new().open_backend(b).unwrap();
    assert_eq!(
        (0..10).map(|k| *c.get(&k).unwrap().unwrap()).sum::<u64>(),
        2000
    );
}

#[test]
fn replace_and_take_return_the_old_value() {
    let (b, c) = chest(4000);
    for k in 0..10 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    // Key 0 is spilled by now, key 9 resident.
    assert_eq!(
        c.replace(0, value(100, 10)).unwrap().as_deref(),
        Some(&value(0, 1000))
    );
    assert_eq!(
        c.replace(9, value(109, 10)).unwrap().as_deref(),
        Some(&value(9, 1000))
    );
    assert_eq!(c.replace(50, value(50, 10)).unwrap(), None);
    assert_eq!(*c.get(&0).unwrap().unwrap(), value(100, 10));
    assert_eq!(c.take(&1).unwrap().as_deref(), Some(&value(1, 1000)));
    assert_eq!(c.take(&1).unwrap(), None);
    assert!(!c.contains_key(&1));
    assert_eq!(c.len(), 10);
    check(&c, true);
    c.close().unwrap();
    let c = ChestBuilder::<u64, Vec<u8>>::new().open_backend(b).unwrap();
    assert_eq!(c.len(), 10);
    assert_eq!(*c.get(&50).unwrap().unwrap(), value(50, 10));
    assert!(c.get(&1).unwrap().is_none());
}

/// `extend`, `iter_keys`, `values`, `retain` and `clear` see and change
/// every key, in memory or spilled; a cleared chest is durable and its
/// objects go.
#[test]
fn bulk_operations_cover_every_key_and_clear_is_durable() {
    let (b, c) = chest(8000);
    c.extend((0..100).map(|k| (k, value(k, 500)))).unwrap();
    assert_eq!(c.len(), 100);
    let mut keys: Vec<u64> = c.iter_keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..100).collect::<Vec<_>>());
    let total: usize = c.values().map(|v| v.unwrap().len()).sum();
    assert_eq!(total, 100 * 500);
    c.retain(|k, v| k % 3 == 0 && v.len() == 500).unwrap();
    assert_eq!(c.len(), 34);
    assert!(c.iter_keys().all(|k| k % 3 == 0));
    check(&c, true);
    c.flush().unwrap();
    c.clear().unwrap();
    assert_eq!(c.len(), 0);
    assert_eq!(c.memory_usage(), 0);
    assert!(c.iter_keys().next().is_none());
    check(&c, true);
    // Cleared is durable, and the objects go once no kept manifest names them.
    c.flush().unwrap();
    c.flush().unwrap();
    c.close().unwrap();
    assert!(b.list("data/").unwrap().is_empty(), "{:?}", b.list("data/"));
    let c = ChestBuilder::<u64, Vec<u8>>::new().open_backend(b).unwrap();
    assert!(c.is_empty());
}

/// Errors have kinds, say whether they are temporary, and a flush's
/// failures map back to their keys.
#[test]
fn errors_carry_their_store_and_object_as_data() {
    use chest_core::{BackendError, ErrorKind};
    use std::sync::Arc;

    let b = MemoryBackend::named("errors-context");
    let missing = b.get("data/00000007").unwrap_err();
    assert_eq!(missing.location(), "memory://errors-context");
    assert_eq!(missing.object(), Some("data/00000007"));
    let locked = BackendError::Locked {
        location: "file:///data/c1".into(),
        detail: "pid 12".into(),
    };
    assert_eq!(
        (locked.location(), locked.object()),
        ("file:///data/c1", None)
    );

    // A chest error names its store whether it comes from the chest or
    // from the store under it, and through a failed write too.
    b.put("notes.txt", bytes::Bytes::from_static(b"x")).unwrap();
    let foreign = ChestBuilder::<u64, Vec<u8>>::new()
        .open_backend(Arc::new(b.clone()))
        .unwrap_err();
    assert_eq!(foreign.kind(), ErrorKind::NotAChest);
    assert_eq!(foreign.location(), Some("memory://errors-context"));
    let wrapped = chest_core::Error::Write {
        keys: vec!["1".into()],
        source: Box::new(chest_core::Error::Backend(missing)),
    };
    assert_eq!(wrapped.location(), Some("memory://errors-context"));
    assert_eq!(wrapped.key(), Some("1"));
    assert_eq!(
        chest_core::Error::Many(vec![wrapped]).location(),
        Some("memory://errors-context")
    );
}

#[test]
fn errors_have_kinds_and_name_their_keys() {
    use chest_core::{BoxError, ErrorKind, Serializer};

    let b = Arc::new(MemoryBackend::new());
    b.put("notes.txt", bytes::Bytes::from_static(b"x")).unwrap();
    let err = ChestBuilder::<u64, Vec<u8>>::new()
        .open_backend(b)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAChest);
    assert!(!err.is_temporary());

    let err = Chest::<u64, String>::open("nope://x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // A flush's failures map back to their keys.
    struct Picky;
    impl Serializer<Vec<u8>> for Picky {
        fn name(&self) -> &str {
            "picky"
        }
        fn serialize(&self, v: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), BoxError> {
            if v.first() == Some(&0) {
                return Err("values starting with 0 are refused".into());
            }
            out.extend_from_slice(v);
            Ok(())
        }
        fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, BoxError> {
            Ok(bytes.to_vec())
        }
    }
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .serializer(Picky)
        .open("memory://")
        .unwrap();
    for k in 0..4u64 {
        c.insert(k, vec![(k % 2) as u8; 10]).unwrap();
    }
    let err = c.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Many);
    let mut keys: Vec<&str> = err.errors().iter().filter_map(|e| e.key()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["0", "2"]);
    assert!(err
        .errors()
        .iter()
        .all(|e| e.kind() == ErrorKind::Serialize));
}

/// The stats count what happened: hits, misses, loads, spills, bytes
/// written, memory and residency; they print.
#[test]
fn stats_count_what_happened() {
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(8 << 10)
        .open("memory://")
        .unwrap();
    for i in 0..20 {
        c.insert(i, vec![0; 1000]).unwrap();
    }
    let _ = c.get(&19).unwrap();
    let _ = c.get(&0).unwrap();
    let s = c.stats();
    assert_eq!(s.len, 20);
    assert!(s.hits >= 1 && s.misses >= 1 && s.loads >= 1, "{s:?}");
    assert!(s.spills >= 10 && s.bytes_written >= 10_000, "{s:?}");
    assert!(s.memory_usage <= 8 << 10 && s.resident < 20, "{s:?}");
    let text = s.to_string();
    assert!(text.contains("spills"), "{text}");
}
