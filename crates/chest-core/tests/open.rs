//! Opening a chest: the open modes, a location that is not a chest (refused
//! and left untouched), recovery (only the chest's own orphans removed, and
//! an orphan that cannot be deleted stops nothing), manifests (written
//! durably; a damaged newest falls back to one whose objects all exist; none
//! readable is an error, never an empty chest), the key type checked, and
//! locations of any kind.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use chest_core::BackendExt;
use chest_core::{Backend, Chest, ChestBuilder, Error, MemoryBackend, OpenMode};
use common::doubles::Shaped;
use common::{failure, hooked, open, value, Op};

/// A location holding objects but no chest is refused in every open mode,
/// naming what it found, and left exactly as it was.
#[test]
fn a_foreign_location_is_refused_in_every_mode_and_left_untouched() {
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

/// An open removes the chest's own orphans (objects a crash left behind),
/// and never a file someone else put in its folder.
#[test]
fn only_the_chests_own_orphans_are_removed() {
    let store = MemoryBackend::new();
    let b: Arc<dyn Backend> = Arc::new(store.clone());
    let c = open(&b, 1 << 20);
    c.insert(1, value(1, 100)).unwrap();
    c.close().unwrap();
    // Someone drops files into the chest's folder; a crash left an orphan.
    store
        .put("data/results.csv", Bytes::from_static(b"x"))
        .unwrap();
    store
        .put("data/0000abcd", Bytes::from_static(b"orphan"))
        .unwrap();
    let c = open(&b, 1 << 20);
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 100));
    drop(c);
    assert!(
        store.get("data/results.csv").is_ok(),
        "a foreign file was deleted"
    );
    assert!(
        store.get("data/0000abcd").unwrap_err().is_not_found(),
        "the orphan stays"
    );
}

/// An orphan that cannot be deleted (no delete permission, retention) does
/// not make an intact chest unopenable.
///
/// (A review found: `remove_orphans` propagated the delete error, and the
/// open failed.)
#[test]
fn an_orphan_that_cannot_be_deleted_does_not_stop_an_open() {
    let mem = MemoryBackend::new();
    let no_delete = || {
        hooked(&mem, |op| match op {
            Op::Delete(_) => Err(failure(op, "permission denied")),
            _ => Ok(()),
        })
    };
    let c = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(64 << 10)
        .open_backend(no_delete())
        .unwrap();
    c.insert(1, vec![1; 10]).unwrap();
    c.flush().unwrap();
    c.insert(2, vec![2; 100 << 10]).unwrap(); // heavy: written now, not in any manifest
    std::mem::forget(c); // crash: data/… of key 2 is an orphan
    let again = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(64 << 10)
        .open_backend(no_delete());
    assert!(again.is_ok(), "open failed: {:?}", again.err());
}

/// `MustExist` refuses an empty location and writes nothing there;
/// `CreateNew` creates, and refuses a chest that exists (even one created
/// and never flushed: its marker says so); `MustExist` then opens it.
#[test]
fn open_modes_require_create_or_refuse_a_chest_as_asked() {
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

/// Manifests are written durably (`put_durable`), the newest two kept; a
/// damaged newest one falls back to the one before (and is reported); with
/// no readable manifest at all the open fails and deletes nothing.
#[test]
fn manifests_are_durable_and_a_damaged_newest_falls_back() {
    let shaped = Arc::new(Shaped::default());
    let b: Arc<dyn Backend> = shaped.clone();
    let store = &shaped.inner;
    let c = open(&b, 1 << 20);
    c.insert(1, value(1, 10)).unwrap();
    c.flush().unwrap();
    c.insert(2, value(2, 10)).unwrap();
    c.close().unwrap();
    let durable = shaped.durable();
    let plain = shaped.plain();
    // The creation manifest, then one per flush.
    assert!(
        durable.iter().filter(|n| n.starts_with("manifest")).count() == 3,
        "{durable:?}"
    );
    assert!(
        !plain.iter().any(|n| n.starts_with("manifest")),
        "{plain:?}"
    );
    let mut manifests = store.list("manifest").unwrap();
    assert_eq!(
        manifests.len(),
        2,
        "the newest and the one before: {manifests:?}"
    );
    // A power loss tore the newest one (a store that does not honour put_durable).
    let newest = manifests.pop().unwrap();
    let whole = store.get(&newest).unwrap();
    store.put(&newest, whole.slice(..whole.len() / 2)).unwrap();
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
    assert_eq!(store.list("manifest").unwrap().len(), 2);
    // With no readable manifest at all, the open fails: never taken for empty.
    for name in store.list("manifest").unwrap() {
        store.put(&name, Bytes::new()).unwrap();
    }
    let err = ChestBuilder::<u64, Vec<u8>>::new()
        .open_backend(b.clone())
        .unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
    assert!(
        !store.list("data/").unwrap().is_empty(),
        "values were deleted"
    );
}

/// The manifest an open falls back to (the newest being damaged) names only
/// objects that still exist: its keys read, with their values of then.
///
/// (A review found: commit N deleted objects that manifest N-1 named, yet
/// N-1 was kept as the fallback; falling back gave keys whose objects were
/// gone.)
#[test]
fn the_fallback_manifest_names_only_objects_that_still_exist() {
    let builder = || {
        ChestBuilder::<u32, Vec<u8>>::new()
            .memory_budget(1 << 20)
            .shards(4)
    };
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

/// A chest opened with another key type than it was written with is an
/// `Error::Key` that names the type and shows a stored key.
#[test]
fn a_chest_opened_with_another_key_type_says_so() {
    let c: Chest<u64, String> = Chest::open("memory://map-api-key-type").unwrap();
    c.insert(7, "seven".into()).unwrap();
    c.close().unwrap();
    let err = Chest::<String, String>::open("memory://map-api-key-type").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Key { .. }), "{err:?}");
    assert!(
        msg.contains("not of the key type") && msg.contains("String"),
        "{msg}"
    );
    assert!(msg.contains('7'), "the stored key is shown: {msg}");
}

/// A built-in scheme whose crate is not linked names the feature to enable.
#[test]
fn an_unregistered_built_in_scheme_names_its_feature() {
    // chest-core alone registers no `s3` (the facade does, with its feature).
    let err = Chest::<u64, String>::open("s3://bucket/prefix").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnknownScheme { .. }), "{err:?}");
    assert!(msg.contains("`s3` feature"), "{msg}");
}

/// A location given as a `Url`, a `&str` or a `String` opens the same
/// chest; a named memory store takes one writer at a time.
#[test]
fn locations_of_any_kind_open_the_same_chest() {
    let url = url::Url::parse("memory://map-api-url").unwrap();
    let c: Chest<u64, String> = Chest::open(&url).unwrap();
    c.insert(1, "a".into()).unwrap();
    c.close().unwrap();
    let again: Chest<u64, String> = Chest::open(String::from("memory://map-api-url")).unwrap();
    assert_eq!(again.len(), 1);
    // One writer at a time on a named memory store: the second is refused
    // while the first is open, and welcome once it is closed.
    let err = Chest::<u64, String>::builder().open(&url).unwrap_err();
    assert_eq!(err.kind(), chest_core::ErrorKind::Locked, "{err}");
    drop(again);
    let again: Chest<u64, String> = Chest::builder().open(url).unwrap();
    assert_eq!(again.len(), 1);
}
