//! The `file` URL scheme and the temporary store, through the registry.

use chest_core::registry::{open_backend, open_temp, OpenOptions};
use chest_core::BackendExt;
use chest_core::{BackendError, Error};
// Link the crate, so that its registrations are in this binary (nothing
// else here names it).
use chest_fs as _;

fn url_of(path: &std::path::Path) -> String {
    url::Url::from_directory_path(path).unwrap().to_string()
}

#[test]
fn file_url_opens_a_persistent_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("c1");
    let url = url_of(&store);
    let opened = open_backend(&url, &OpenOptions::default()).unwrap();
    assert!(opened.persistent);
    assert_eq!(opened.backend.location(), url);
    opened.backend.put("data/1", "v".into()).unwrap();
    opened.backend.sync().unwrap();
    assert!(store.join("data/1").is_file());
    drop(opened);
    // Reopen by plain path.
    let again = open_backend(store.to_str().unwrap(), &OpenOptions::default()).unwrap();
    assert_eq!(&again.backend.get("data/1").unwrap()[..], b"v");
}

#[test]
fn fsync_query() {
    let dir = tempfile::tempdir().unwrap();
    // (fsyncs after the put, fsyncs after the put and a sync)
    let fsyncs = |url: &str| {
        let opened = open_backend(url, &OpenOptions::default()).unwrap();
        let count = || {
            opened
                .backend
                .counters()
                .into_iter()
                .find(|(k, _)| k == "fs.fsyncs")
                .unwrap()
                .1
        };
        opened.backend.put("a/b", "x".into()).unwrap();
        let after_put = count();
        opened.backend.sync().unwrap();
        (after_put, count())
    };
    let base = url_of(dir.path());
    let (put, sync) = fsyncs(&base);
    assert_eq!(put, 0, "no fsync on put by default");
    assert!(
        sync >= 2,
        "a sync (every flush) fsyncs file and directory: {sync}"
    );
    assert_eq!(fsyncs(&format!("{base}?fsync=flush")).0, 0);
    assert_eq!(fsyncs(&format!("{base}?fsync=never")), (0, 0));
    assert_eq!(fsyncs(&format!("{base}?fsync=false")), (0, 0));
    for always in ["always", "true", "1"] {
        let (put, _) = fsyncs(&format!("{base}?fsync={always}"));
        assert!(
            put >= 2,
            "fsync={always}: file and directory fsynced on put"
        );
    }
}

#[test]
fn bad_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = url_of(dir.path());
    for (url, needle) in [
        (format!("{base}?level=3"), "level"),
        (format!("{base}?fsync=maybe"), "maybe"),
    ] {
        match open_backend(&url, &OpenOptions::default()) {
            Err(e @ Error::InvalidUrl { .. }) => assert!(e.to_string().contains(needle), "{e}"),
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[test]
fn remote_hosts_are_refused() {
    match open_backend("file://example.com/data", &OpenOptions::default()) {
        Err(e @ Error::InvalidUrl { .. }) => assert!(e.to_string().contains("local"), "{e}"),
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
}

#[test]
fn open_options_are_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let missing = url_of(&dir.path().join("missing"));
    let no_create = OpenOptions {
        read_only: false,
        create: false,
    };
    assert!(matches!(
        open_backend(&missing, &no_create),
        Err(Error::Backend(BackendError::MissingStore { .. }))
    ));
    let read_only = OpenOptions {
        read_only: true,
        create: true,
    };
    assert!(matches!(
        open_backend(&missing, &read_only),
        Err(Error::Backend(BackendError::MissingStore { .. }))
    ));
    assert!(!dir.path().join("missing").exists());
    let present = url_of(dir.path());
    let ro = open_backend(&present, &read_only).unwrap();
    assert!(ro.backend.put("x", "1".into()).is_err());
}

#[test]
fn temp_store_is_removed_on_drop() {
    let opened = open_temp().unwrap();
    assert!(!opened.persistent);
    let location = opened.backend.location().to_string();
    let path = url::Url::parse(&location).unwrap().to_file_path().unwrap();
    assert!(path.is_dir());
    opened
        .backend
        .put("data/00000001", vec![7u8; 100_000].into())
        .unwrap();
    opened.backend.sync().unwrap();
    assert!(path.join("data/00000001").is_file());
    drop(opened);
    assert!(!path.exists(), "{} should be gone", path.display());
}

#[test]
fn temp_stores_are_distinct() {
    let a = open_temp().unwrap();
    let b = open_temp().unwrap();
    assert_ne!(a.backend.location(), b.backend.location());
    a.backend.put("k", "a".into()).unwrap();
    assert!(b.backend.list("").unwrap().is_empty());
}

#[test]
fn mmap_query() {
    let dir = tempfile::tempdir().unwrap();
    let base = url_of(dir.path());
    for (query, mapped) in [
        ("", false),
        ("?mmap=true", true),
        ("?mmap=1", true),
        ("?mmap=false", false),
        ("?fsync=never&mmap=on", true),
    ] {
        let opened = open_backend(&format!("{base}{query}"), &OpenOptions::default()).unwrap();
        let debug = format!("{:?}", opened.backend);
        assert!(
            debug.contains(&format!("mmap: {mapped}")),
            "{query}: {debug}"
        );
        opened.backend.put("data/1", "hello".into()).unwrap();
        assert_eq!(
            &opened.backend.get_range("data/1", 1..4).unwrap()[..],
            b"ell"
        );
    }
    match open_backend(&format!("{base}?mmap=maybe"), &OpenOptions::default()) {
        Err(Error::InvalidUrl { reason, .. }) => assert!(reason.contains("mmap"), "{reason}"),
        other => panic!(
            "expected an invalid URL, got {:?}",
            other.map(|o| o.persistent)
        ),
    }
}
