//! The facade over local directories: URLs and paths, reopening, a second
//! process, corruption on disk, temporary chests, and a crash between flushes.

use std::path::{Path, PathBuf};
use std::process::Command;

use chest::{Chest, Error};

use chest_core::testing::noise as bytes;

fn url_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[test]
fn file_url_and_plain_path_open_the_same_chest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c1");
    let c: Chest<String, Vec<f64>> = Chest::builder()
        .memory_budget(1 << 16)
        .open(url_of(&path))
        .unwrap();
    for i in 0..100 {
        c.insert(format!("k{i}"), vec![i as f64; 500]).unwrap();
    }
    c.close().unwrap();
    let c: Chest<String, Vec<f64>> = Chest::open(path.to_str().unwrap()).unwrap();
    assert_eq!(c.len(), 100);
    assert_eq!(c.get("k42").unwrap().unwrap()[499], 42.0);
    assert!(c.location().starts_with("file://"), "{}", c.location());
}

#[test]
fn tuple_and_struct_keys() {
    #[derive(serde::Serialize, serde::Deserialize, Hash, PartialEq, Eq, Clone, Debug)]
    struct Tile {
        x: i32,
        y: i32,
        layer: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().to_str().unwrap().to_string();
    let c: Chest<(u32, String), Vec<u8>> = Chest::builder().memory_budget(4096).open(&loc).unwrap();
    c.insert((1, "a".into()), bytes(1, 3000)).unwrap();
    c.insert((2, "b".into()), bytes(2, 3000)).unwrap();
    c.close().unwrap();
    let c: Chest<(u32, String), Vec<u8>> = Chest::open(&loc).unwrap();
    assert_eq!(
        *c.get(&(2, "b".to_string())).unwrap().unwrap(),
        bytes(2, 3000)
    );
    drop(c);

    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().to_str().unwrap().to_string();
    let t = Tile {
        x: -3,
        y: 7,
        layer: "roads".into(),
    };
    let c: Chest<Tile, String> = Chest::open(&loc).unwrap();
    c.insert(t.clone(), "tile".into()).unwrap();
    c.close().unwrap();
    let c: Chest<Tile, String> = Chest::open(&loc).unwrap();
    assert_eq!(c.get(&t).unwrap().unwrap().as_str(), "tile");
}

/// Run by `second_writer_process_is_refused` in a child process: tries to
/// open the directory given in `CHEST_CHILD_DIR` and prints the outcome.
#[test]
#[ignore = "run in a child process by second_writer_process_is_refused"]
fn child_opens_chest() {
    let dir = std::env::var("CHEST_CHILD_DIR").expect("CHEST_CHILD_DIR");
    match Chest::<u64, Vec<u8>>::open(&dir) {
        Ok(_) => println!("CHILD-OPENED"),
        Err(e) => println!("CHILD-ERROR: {e}"),
    }
}

fn run_child(test: &str, dir: &Path, extra: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CHEST_CHILD_DIR", dir);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn second_writer_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c: Chest<u64, Vec<u8>> = Chest::open(dir.path().to_str().unwrap()).unwrap();
    c.insert(1, vec![1]).unwrap();
    let out = run_child("child_opens_chest", dir.path(), &[]);
    assert!(
        out.contains("CHILD-ERROR"),
        "the second process must be refused:\n{out}"
    );
    assert!(
        out.to_lowercase().contains("lock"),
        "the error must say the chest is locked:\n{out}"
    );
    // In this process too.
    let err = Chest::<u64, Vec<u8>>::open(dir.path().to_str().unwrap()).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("lock"), "{err}");
    c.close().unwrap();
    // Released: now the child can open it.
    let out = run_child("child_opens_chest", dir.path(), &[]);
    assert!(out.contains("CHILD-OPENED"), "{out}");
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn corrupt_file_on_disk_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().to_str().unwrap().to_string();
    let c: Chest<String, Vec<u8>> = Chest::builder().memory_budget(1 << 20).open(&loc).unwrap();
    c.insert("precious/results-2026".into(), bytes(5, 2 << 20))
        .unwrap();
    c.close().unwrap();
    let files = data_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let mut raw = std::fs::read(&files[0]).unwrap();
    raw[1_000_000] ^= 0x40;
    std::fs::write(&files[0], &raw).unwrap();

    let c: Chest<String, Vec<u8>> = Chest::open(&loc).unwrap();
    let err = c.get("precious/results-2026").unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("precious/results-2026") && msg.contains("checksum"),
        "{msg}"
    );
    drop(c);

    std::fs::remove_file(&files[0]).unwrap();
    let c: Chest<String, Vec<u8>> = Chest::open(&loc).unwrap();
    let msg = c.get("precious/results-2026").unwrap_err().to_string();
    assert!(
        msg.contains("precious/results-2026") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn corrupt_manifest_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().to_str().unwrap().to_string();
    let c: Chest<u64, Vec<u8>> = Chest::open(&loc).unwrap();
    c.insert(1, vec![1, 2, 3]).unwrap();
    c.close().unwrap();
    // Its manifests: the creation's and the flush's (the one before the
    // newest is the fallback when the newest is damaged; both are here).
    let manifests: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("manifest.")
        })
        .collect();
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    for manifest in &manifests {
        let mut raw = std::fs::read(manifest).unwrap();
        let n = raw.len();
        raw[n - 6] ^= 1;
        std::fs::write(manifest, &raw).unwrap();
    }
    let err = Chest::<u64, Vec<u8>>::open(&loc).unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn serializer_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().to_str().unwrap().to_string();
    let c: Chest<u64, Vec<u8>> = Chest::open(&loc).unwrap();
    c.insert(1, vec![1]).unwrap();
    c.close().unwrap();
    let err = chest::ChestBuilder::<u64, Vec<u8>>::new()
        .serializer(chest::Raw)
        .open(&loc)
        .unwrap_err();
    assert!(matches!(err, Error::SerializerMismatch { .. }), "{err}");
    // The refused open left the chest as it was.
    let c: Chest<u64, Vec<u8>> = Chest::open(&loc).unwrap();
    assert_eq!(*c.get(&1).unwrap().unwrap(), vec![1]);
}

#[test]
fn temp_chest_is_removed_on_drop() {
    let c: Chest<u64, Vec<u8>> = Chest::builder().memory_budget(1 << 12).temp().unwrap();
    let url = url::Url::parse(c.location()).unwrap();
    let path = url.to_file_path().unwrap();
    for i in 0..50 {
        c.insert(i, bytes(i, 1000)).unwrap();
    }
    assert!(
        !data_files(&path).is_empty(),
        "values must have spilled into {path:?}"
    );
    drop(c);
    assert!(!path.exists(), "{path:?} must be removed with the chest");
}

#[test]
fn read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().to_str().unwrap().to_string();
    let c: Chest<u64, Vec<u8>> = Chest::open(&loc).unwrap();
    c.insert(1, vec![9]).unwrap();
    c.close().unwrap();
    let r: Chest<u64, Vec<u8>> = Chest::builder().read_only(true).open(&loc).unwrap();
    assert_eq!(*r.get(&1).unwrap().unwrap(), vec![9]);
    assert!(matches!(r.insert(2, vec![]), Err(Error::ReadOnly { .. })));
    assert!(matches!(r.flush(), Err(Error::ReadOnly { .. })));
}

/// Run by `crash_after_flush_keeps_flushed_state` in a child process: writes
/// and flushes a first state, writes more (spilling), then aborts.
#[test]
#[ignore = "run in a child process by crash_after_flush_keeps_flushed_state"]
fn child_writes_then_crashes() {
    let dir = std::env::var("CHEST_CHILD_DIR").expect("CHEST_CHILD_DIR");
    let c: Chest<u64, Vec<u8>> = Chest::builder().memory_budget(64 << 10).open(&dir).unwrap();
    for i in 0..100 {
        c.insert(i, bytes(i, 4000)).unwrap();
    }
    c.flush().unwrap();
    for i in 0..100 {
        c.insert(i, bytes(i + 500, 3000)).unwrap(); // new versions, mostly spilled
    }
    for i in 100..300 {
        c.insert(i, bytes(i, 4000)).unwrap();
    }
    c.remove(&5).unwrap();
    println!("CHILD-ABORTING");
    std::process::abort();
}

#[test]
fn crash_after_flush_keeps_flushed_state() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("child_writes_then_crashes", dir.path(), &[]);
    assert!(out.contains("CHILD-ABORTING"), "{out}");
    let before = data_files(dir.path()).len();
    let c: Chest<u64, Vec<u8>> = Chest::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(c.len(), 100, "the state of the last flush, no more");
    for i in 0..100 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), bytes(i, 4000), "key {i}");
    }
    let after = data_files(dir.path()).len();
    assert!(
        after < before,
        "objects written after the flush are removed on open ({before} -> {after})"
    );
}

#[test]
fn a_chest_opens_from_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by path");
    let c: Chest<u64, String> = Chest::open(&path).unwrap();
    c.insert(1, "one".into()).unwrap();
    c.close().unwrap();
    assert!(
        path.join("chest").is_file(),
        "the marker is in the directory"
    );
    let c: Chest<u64, String> = Chest::open(path.as_path()).unwrap();
    assert_eq!(
        c.get(&1).unwrap().as_deref().map(String::as_str),
        Some("one")
    );
    drop(c);
    // The same directory through its URL and as a plain string.
    let url = url::Url::from_directory_path(&path).unwrap();
    let c: Chest<u64, String> = Chest::open(&url).unwrap();
    assert_eq!(c.len(), 1);
    drop(c);
    let c: Chest<u64, String> = Chest::open(path.to_str().unwrap()).unwrap();
    assert_eq!(c.len(), 1);
}

#[test]
fn mapped_reads_through_compaction_corruption_and_reopen() {
    // `?mmap=true`: values packed into segments are read out of mapped
    // files, through compaction (which reads them and deletes the sparse
    // segments), a reopen, and a corrupted file (a clear error, as without
    // maps).
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?mmap=true", url_of(dir.path()));
    let open =
        || -> Chest<u64, Vec<u8>> { Chest::builder().memory_budget(64 << 10).open(&url).unwrap() };
    let c = open();
    for k in 0..2000u64 {
        c.insert(k, bytes(k, 300)).unwrap();
    }
    c.flush().unwrap();
    for k in (0..2000u64).step_by(7) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), bytes(k, 300), "key {k}");
    }
    // Most of every segment dies: the next flush compacts them.
    for k in 0..2000u64 {
        if k % 5 != 0 {
            assert!(c.remove(&k).unwrap());
        }
    }
    let before = data_files(dir.path());
    c.flush().unwrap();
    // Nothing was dirty: new segments come from compaction (the old ones
    // go once no manifest names them).
    let after = data_files(dir.path());
    assert!(after.iter().any(|f| !before.contains(f)), "compacted");
    for k in (0..2000u64).step_by(5) {
        assert_eq!(*c.get(&k).unwrap().unwrap(), bytes(k, 300), "key {k}");
    }
    assert!(c.stats().loads > 0, "{:?}", c.stats());
    c.close().unwrap();

    let c = open();
    assert_eq!(c.len(), 400);
    for k in 0..2000u64 {
        let got = c.get(&k).unwrap();
        assert_eq!(got.is_some(), k % 5 == 0, "key {k}");
        if let Some(v) = got {
            assert_eq!(*v, bytes(k, 300), "key {k}");
        }
    }
    drop(c);

    // One byte flipped in every segment (same length): a checksum error
    // naming a key, not a crash.
    for file in data_files(dir.path()) {
        let mut raw = std::fs::read(&file).unwrap();
        let at = raw.len() / 2;
        raw[at] ^= 0x40;
        std::fs::write(&file, &raw).unwrap();
    }
    let c = open();
    let errors: Vec<Error> = (0..2000u64)
        .step_by(5)
        .filter_map(|k| c.get(&k).err())
        .collect();
    assert!(
        !errors.is_empty(),
        "a flipped byte in every segment is found"
    );
    for e in &errors {
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}

/// A folder that is not a chest is refused, for writing and for reading, and
/// left exactly as it was: not even the lock file of the refused open stays.
#[test]
fn a_folder_that_is_not_a_chest_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("holiday.jpg"), b"jpeg").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data").join("00000001"), b"not ours").unwrap();
    let listing = || {
        let mut names: Vec<String> = walk(dir.path())
            .into_iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let err = Chest::<u32, Vec<u8>>::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAChest { .. }), "{err}");
    assert_eq!(listing(), before);
    let err = Chest::<u32, Vec<u8>>::builder()
        .read_only(true)
        .open(dir.path())
        .unwrap_err();
    assert_eq!(err.kind(), chest::ErrorKind::NotAChest, "{err}");
    assert_eq!(listing(), before);
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
