//! FsBackend behaviour beyond the shared contract: layout, names, failures,
//! cleanup, durability bookkeeping.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use chest_core::BackendExt;
use chest_core::{Backend, BackendError};
use chest_fs::{FsBackend, FsOptions, LOCK_FILE, TEMP_PREFIX};
use proptest::prelude::*;

fn open(dir: &Path) -> FsBackend {
    FsBackend::open(dir, FsOptions::default()).unwrap()
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.insert(format!("{rel}/"));
            } else {
                out.insert(rel);
            }
        }
    }
    out
}

fn temp_files(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
        })
        .collect()
}

fn counter(b: &FsBackend, name: &str) -> u64 {
    b.counters().into_iter().find(|(k, _)| k == name).unwrap().1
}

#[test]
fn layout_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("manifest", "m".into()).unwrap();
    b.put("data/00000001", "d".into()).unwrap();
    b.put(".hidden", "h".into()).unwrap();
    b.put("with space/ü", "s".into()).unwrap();
    let expect: BTreeSet<String> = [
        LOCK_FILE,
        "manifest",
        "data/",
        "data/00000001",
        "%2Ehidden",
        "with%20space/",
        "with%20space/%C3%BC",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(tree(dir.path()), expect);
    assert_eq!(
        b.object_path("with space/ü").unwrap(),
        dir.path().join("with%20space/%C3%BC")
    );
    assert_eq!(
        b.location(),
        url::Url::from_directory_path(dir.path()).unwrap().as_str()
    );
}

#[test]
fn no_temp_files_are_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    for i in 0..200u32 {
        let o = i % 50;
        b.put(
            &format!("d{}/o{o}", o % 7),
            Bytes::from(vec![i as u8; 1000 + i as usize]),
        )
        .unwrap();
    }
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(b.list("").unwrap().len(), 50);
    // The last write of o10 was i = 160.
    assert_eq!(b.get("d3/o10").unwrap(), Bytes::from(vec![160u8; 1160]));
}

#[test]
fn stale_temp_files_are_removed_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(format!("{TEMP_PREFIX}999999-1"));
    fs::write(&stale, "half-written").unwrap();
    let b = FsBackend::open(
        dir.path(),
        FsOptions {
            read_only: true,
            ..FsOptions::default()
        },
    )
    .unwrap();
    assert!(stale.exists(), "a reader must not touch anything");
    assert!(b.list("").unwrap().is_empty());
    drop(b);
    let _w = open(dir.path());
    assert!(!stale.exists());
}

#[test]
fn foreign_files_are_not_objects() {
    let dir = tempfile::tempdir().unwrap();
    for f in [".DS_Store", "%41", "a b", "lower%2e", "bad%zz"] {
        fs::write(dir.path().join(f), "x").unwrap();
    }
    fs::create_dir(dir.path().join(".git")).unwrap();
    fs::write(dir.path().join(".git/config"), "x").unwrap();
    let b = open(dir.path());
    b.put("real", "r".into()).unwrap();
    assert_eq!(b.list("").unwrap(), vec!["real"]);
}

#[test]
fn parent_that_is_an_object_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("a", "old".into()).unwrap();
    match b.put("a/b/c", Bytes::from(vec![1u8; 50_000])) {
        Err(e @ BackendError::InvalidName { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("\"a\"") && msg.contains("a/b/c"), "{msg}");
        }
        other => panic!("expected InvalidName, got {other:?}"),
    }
    assert_eq!(&b.get("a").unwrap()[..], b"old");
    assert_eq!(b.list("").unwrap(), vec!["a"]);
    assert!(temp_files(dir.path()).is_empty());
    assert!(b.get("a/b/c").unwrap_err().is_not_found());
    b.delete("a/b/c").unwrap();
}

#[test]
fn object_where_a_folder_is_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("a/b", "inner".into()).unwrap();
    match b.put("a", "outer".into()) {
        Err(e @ BackendError::InvalidName { .. }) => assert!(e.to_string().contains("a/"), "{e}"),
        other => panic!("expected InvalidName, got {other:?}"),
    }
    assert!(b.get("a").unwrap_err().is_not_found());
    assert!(matches!(
        b.get_range("a", 0..0),
        Err(BackendError::NotFound { .. })
    ));
    b.delete("a").unwrap(); // not an object: nothing to delete
    assert_eq!(&b.get("a/b").unwrap()[..], b"inner");
    assert!(temp_files(dir.path()).is_empty());
    // Once "a/b" is gone, its directory goes too and "a" can be an object.
    b.delete("a/b").unwrap();
    assert!(!dir.path().join("a").exists());
    b.put("a", "outer".into()).unwrap();
    assert_eq!(b.list("").unwrap(), vec!["a"]);
}

#[test]
fn empty_directory_left_by_someone_else_does_not_block_a_put() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("x")).unwrap();
    let b = open(dir.path());
    b.put("x", "1".into()).unwrap();
    assert_eq!(&b.get("x").unwrap()[..], b"1");
}

#[test]
fn delete_prunes_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("p/q/r/s", "1".into()).unwrap();
    b.put("p/t", "2".into()).unwrap();
    b.delete("p/q/r/s").unwrap();
    assert_eq!(
        tree(dir.path()),
        [LOCK_FILE, "p/", "p/t"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    b.delete("p/t").unwrap();
    assert_eq!(
        tree(dir.path()),
        [LOCK_FILE.to_string()].into_iter().collect()
    );
    assert!(dir.path().exists());
}

#[test]
fn too_long_components_are_invalid_names() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let ok = "x".repeat(255);
    b.put(&ok, "1".into()).unwrap();
    assert_eq!(b.list("").unwrap(), vec![ok.clone()]);
    for name in ["y".repeat(256), format!("d/{}", "é".repeat(50))] {
        match b.put(&name, "1".into()) {
            Err(e @ BackendError::InvalidName { .. }) => {
                assert!(e.to_string().contains("255"), "{e}")
            }
            other => panic!("expected InvalidName, got {other:?}"),
        }
        assert!(matches!(
            b.get(&name),
            Err(BackendError::InvalidName { .. })
        ));
    }
    assert!(b.list(&format!("{}/", "y".repeat(300))).unwrap().is_empty());
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn odd_prefixes_list_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("a/b", "1".into()).unwrap();
    for p in ["/", "/a", "a//", "a/b/", "a/b/c", "b"] {
        assert!(b.list(p).unwrap().is_empty(), "{p:?}");
    }
    assert_eq!(b.list("a/").unwrap(), vec!["a/b"]);
    assert_eq!(b.list("a/b").unwrap(), vec!["a/b"]);
}

#[test]
fn read_only_store() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let w = open(dir.path());
        w.put("k", "v".into()).unwrap();
        w
    });
    let r = FsBackend::open(
        dir.path(),
        FsOptions {
            read_only: true,
            create: true,
            ..FsOptions::default()
        },
    )
    .unwrap();
    assert_eq!(&r.get("k").unwrap()[..], b"v");
    for result in [
        r.put("k", "w".into()),
        r.delete("k"),
        r.put("new", "w".into()),
    ] {
        match result {
            Err(e @ BackendError::Other { .. }) => {
                assert!(e.to_string().contains("read-only"), "{e}")
            }
            other => panic!("expected a read-only error, got {other:?}"),
        }
    }
    r.sync().unwrap();
    assert_eq!(&r.get("k").unwrap()[..], b"v");
}

#[test]
fn missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("a/b/c");
    for opts in [
        FsOptions {
            create: false,
            ..FsOptions::default()
        },
        FsOptions {
            read_only: true,
            create: true,
            ..FsOptions::default()
        },
    ] {
        match FsBackend::open(&missing, opts) {
            Err(e @ BackendError::MissingStore { .. }) => {
                assert!(e.to_string().contains("a/b/c"), "{e}")
            }
            other => panic!("expected MissingStore, got {other:?}"),
        }
    }
    assert!(!dir.path().join("a").exists());
    let b = FsBackend::open(&missing, FsOptions::default()).unwrap();
    assert_eq!(b.path(), missing);
    assert!(missing.is_dir());
}

#[test]
fn a_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, "x").unwrap();
    let err = FsBackend::open(&file, FsOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn relative_paths_are_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    assert!(b.path().is_absolute());
    assert!(b.location().starts_with("file:///"));
}

#[test]
fn sync_fsyncs_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("a/1", "1".into()).unwrap();
    b.put("a/2", "2".into()).unwrap();
    b.put("b/1", "3".into()).unwrap();
    assert_eq!(counter(&b, "fs.fsyncs"), 0);
    b.sync().unwrap();
    // 3 files + dirs a, b and the root.
    assert_eq!(counter(&b, "fs.fsyncs"), 6);
    b.sync().unwrap();
    assert_eq!(counter(&b, "fs.fsyncs"), 7, "only the root is synced again");
    b.put("a/3", "4".into()).unwrap();
    b.delete("a/3").unwrap();
    b.sync().unwrap();
    // The deleted file is forgotten; dir a and the root are synced.
    assert_eq!(counter(&b, "fs.fsyncs"), 9);
}

#[test]
fn fsync_puts_are_durable_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(
        dir.path(),
        FsOptions {
            fsync: true,
            ..FsOptions::default()
        },
    )
    .unwrap();
    b.put("x/y/z", "1".into()).unwrap();
    // file, its directory, and the parents of the two new directories.
    assert_eq!(counter(&b, "fs.fsyncs"), 4);
    b.put("x/y/w", "1".into()).unwrap();
    assert_eq!(counter(&b, "fs.fsyncs"), 6);
}

#[test]
fn counters_count_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("o", Bytes::from(vec![0u8; 1000])).unwrap();
    b.get("o").unwrap();
    b.get_range("o", 10..20).unwrap();
    assert_eq!(counter(&b, "fs.bytes_written"), 1000);
    assert_eq!(counter(&b, "fs.bytes_read"), 1010);
}

#[test]
fn concurrent_puts_and_deletes_in_one_directory() {
    // Deletes prune directories that concurrent puts are about to use.
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    std::thread::scope(|s| {
        for t in 0..4 {
            let b = &b;
            s.spawn(move || {
                for i in 0..300 {
                    let name = format!("shared/sub/{t}-{i}");
                    b.put(&name, Bytes::from(vec![t as u8; 64])).unwrap();
                    assert_eq!(b.get(&name).unwrap().len(), 64);
                    b.delete(&name).unwrap();
                }
                b.put(&format!("shared/sub/{t}-last"), "x".into()).unwrap();
            });
        }
    });
    assert_eq!(b.list("shared/").unwrap().len(), 4);
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn concurrent_overwrites_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put("o", Bytes::from(vec![0u8; 100_000])).unwrap();
    std::thread::scope(|s| {
        for t in 1..=3u8 {
            let b = &b;
            s.spawn(move || {
                for _ in 0..50 {
                    b.put("o", Bytes::from(vec![t; 100_000])).unwrap();
                }
            });
        }
        let b = &b;
        s.spawn(move || {
            for _ in 0..200 {
                let v = b.get("o").unwrap();
                assert_eq!(v.len(), 100_000);
                assert!(v.iter().all(|&x| x == v[0]), "a torn read");
            }
        });
    });
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec("[^/\u{0}]{1,12}", 1..4).prop_map(|c| c.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any name round-trips through put, list, get, get_range and delete,
    /// and leaves nothing behind.
    #[test]
    fn names_round_trip(name in name_strategy(), len in 0usize..300) {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let data = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>());
        b.put(&name, data.clone()).unwrap();
        prop_assert_eq!(b.list("").unwrap(), vec![name.clone()]);
        prop_assert_eq!(b.get(&name).unwrap(), data.clone());
        let mid = len as u64 / 3..len as u64;
        prop_assert_eq!(b.get_range(&name, mid.clone()).unwrap(), data.slice(mid.start as usize..));
        prop_assert!(b.object_path(&name).unwrap().is_file());
        b.delete(&name).unwrap();
        prop_assert!(b.list("").unwrap().is_empty());
        prop_assert_eq!(tree(dir.path()), [LOCK_FILE.to_string()].into_iter().collect());
    }

    /// Listing by any prefix gives exactly the matching names, sorted.
    #[test]
    fn list_matches_a_filter(names in prop::collection::btree_set("[ab.%/ ]{1,6}", 1..12), cut in 0usize..6) {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let mut stored = Vec::new();
        for n in &names {
            match b.put(n, "x".into()) {
                Ok(()) => stored.push(n.clone()),
                // Empty components, or a file/folder clash with an earlier name.
                Err(BackendError::InvalidName { .. }) => {}
                Err(e) => panic!("{n:?}: {e}"),
            }
        }
        stored.sort();
        prop_assert_eq!(b.list("").unwrap(), stored.clone());
        for n in &stored {
            let prefix: String = n.chars().take(cut).collect();
            let expect: Vec<String> = stored.iter().filter(|s| s.starts_with(&prefix)).cloned().collect();
            prop_assert_eq!(b.list(&prefix).unwrap(), expect, "prefix {:?}", prefix);
        }
        prop_assert!(temp_files(dir.path()).is_empty());
    }
}

/// Range reads keep the file open; a replaced or deleted object must not be
/// read through a stale handle.
#[test]
fn range_reads_see_replacements_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(dir.path(), FsOptions::default()).unwrap();
    b.put("seg/1", Bytes::from(vec![1u8; 1000])).unwrap();
    assert_eq!(&b.get_range("seg/1", 10..20).unwrap()[..], &[1u8; 10]);
    b.put("seg/1", Bytes::from(vec![2u8; 50])).unwrap();
    assert_eq!(&b.get_range("seg/1", 10..20).unwrap()[..], &[2u8; 10]);
    assert!(matches!(
        b.get_range("seg/1", 40..60),
        Err(BackendError::RangeOutOfBounds { size: 50, .. })
    ));
    b.delete("seg/1").unwrap();
    assert!(b.get_range("seg/1", 0..1).unwrap_err().is_not_found());
    // Many objects: the handle cache stays bounded and correct.
    for i in 0..600u32 {
        b.put(&format!("many/{i}"), Bytes::from(i.to_le_bytes().to_vec()))
            .unwrap();
    }
    for i in (0..600u32).rev().chain(0..600) {
        assert_eq!(
            &b.get_range(&format!("many/{i}"), 0..4).unwrap()[..],
            &i.to_le_bytes()
        );
    }
}

#[test]
fn mapped_reads_keep_the_bytes_they_read() {
    // With `mmap`, a ranged read is a slice of the mapped file. A `put`
    // renames a new file over the object and a `delete` unlinks it: a slice
    // read before keeps the bytes it had, and later reads see the change.
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::open(
        dir.path(),
        FsOptions {
            mmap: true,
            ..FsOptions::default()
        },
    )
    .unwrap();
    assert!(b.options().mmap);
    let file = dir.path().join("data/1");
    b.put("data/1", Bytes::from(vec![1u8; 10_000])).unwrap();
    let old = b.get_range("data/1", 100..200).unwrap();
    assert_eq!(&old[..], &[1u8; 100][..]);
    assert_eq!(mappings_of(&file), ["mapped"], "the read maps the file");
    b.put("data/1", Bytes::from(vec![2u8; 50])).unwrap();
    assert_eq!(&old[..], &[1u8; 100][..]);
    assert_eq!(&b.get_range("data/1", 10..50).unwrap()[..], &[2u8; 40][..]);
    // The replaced file's map is gone (a slice read from it holds none),
    // and the new file is mapped.
    assert_eq!(mappings_of(&file), ["mapped"]);
    assert!(matches!(
        b.get_range("data/1", 100..200),
        Err(BackendError::RangeOutOfBounds { .. })
    ));
    let replaced = b.get_range("data/1", 0..50).unwrap();
    b.delete("data/1").unwrap();
    assert_eq!(&old[..], &[1u8; 100][..]);
    assert_eq!(&replaced[..], &[2u8; 50][..]);
    assert!(matches!(
        b.get_range("data/1", 0..1),
        Err(BackendError::NotFound { .. })
    ));
    // An empty object cannot be mapped, and has nothing to read.
    b.put("data/2", Bytes::new()).unwrap();
    assert!(b.get_range("data/2", 0..0).unwrap().is_empty());
    assert!(matches!(
        b.get_range("data/2", 0..1),
        Err(BackendError::RangeOutOfBounds { .. })
    ));
    assert_eq!(counter(&b, "fs.bytes_read"), 100 + 40 + 50);
    assert!(
        mappings_of(&file).is_empty(),
        "the deleted file is unmapped"
    );

    // Without the option, reads do not map.
    let plain = tempfile::tempdir().unwrap();
    let p = open(plain.path());
    p.put("data/1", Bytes::from(vec![3u8; 10_000])).unwrap();
    assert_eq!(&p.get_range("data/1", 0..10).unwrap()[..], &[3u8; 10][..]);
    assert!(mappings_of(&plain.path().join("data/1")).is_empty());
}

/// The process's maps of `file`, from `/proc/self/maps`: "mapped", or
/// "deleted" for a map of a file since removed or replaced. Elsewhere than
/// Linux, as the test expects ("mapped" for a live map, none once gone).
fn mappings_of(file: &Path) -> Vec<&'static str> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    let file = file.to_str().unwrap();
    fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(file)?.1;
            Some(if rest.contains("(deleted)") {
                "deleted"
            } else {
                "mapped"
            })
        })
        .collect()
}
