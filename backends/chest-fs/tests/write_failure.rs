//! A write that fails half-way (a full disk, a file size limit) surfaces as
//! an error naming the object's path and leaves no partial object behind.
#![cfg(unix)]

use std::fs;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use chest_core::BackendExt;
use chest_core::{Backend, BackendError};
use chest_fs::{FsBackend, FsOptions, TEMP_PREFIX};

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

fn expect_write_error(result: Result<(), BackendError>, object: &str) -> String {
    match result {
        Err(e @ BackendError::Io { op: "write", .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(object),
                "the error should name {object}: {msg}"
            );
            msg
        }
        other => panic!("expected a write error, got {other:?}"),
    }
}

const CHILD_ENV: &str = "CHEST_FS_TEST_FSIZE_CHILD_DIR";
const LIMIT: u64 = 64 << 10;

/// The child: with a file size limit of 64 KiB (the kernel then fails writes
/// past it, as on a full disk), a large put fails and a small one works.
fn child(dir: &Path) {
    // SAFETY: plain libc calls; SIGXFSZ would otherwise kill the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: LIMIT as libc::rlim_t,
            rlim_max: LIMIT as libc::rlim_t,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    for fsync in [false, true] {
        let b = FsBackend::open(
            dir,
            FsOptions {
                fsync,
                ..FsOptions::default()
            },
        )
        .unwrap();
        b.put("obj", Bytes::from(vec![1u8; 1000])).unwrap();
        let msg = expect_write_error(b.put("obj", Bytes::from(vec![2u8; 1 << 20])), "obj");
        let msg2 = expect_write_error(b.put("fresh/new", Bytes::from(vec![3u8; 1 << 20])), "new");
        assert!(leftovers(dir).is_empty());
        assert_eq!(b.get("obj").unwrap(), Bytes::from(vec![1u8; 1000]));
        b.put("small", Bytes::from(vec![4u8; 10])).unwrap();
        println!("CHILD: {msg} | {msg2}");
    }
}

#[test]
fn failed_write_leaves_the_old_object() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "failed_write_leaves_the_old_object",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("CHILD: ").count(), 2, "{stdout}");
    let b = FsBackend::open(dir.path(), FsOptions::default()).unwrap();
    assert_eq!(b.list("").unwrap(), vec!["obj", "small"]);
    assert_eq!(b.get("obj").unwrap(), Bytes::from(vec![1u8; 1000]));
    assert!(leftovers(dir.path()).is_empty());
    assert!(!dir.path().join("fresh").exists());
}

/// Fills a real small file system until it is full. Runs only when
/// `CHEST_FS_FULL_DIR` names an empty directory on one (e.g. a 4 MiB tmpfs:
/// `mount -t tmpfs -o size=4m tmpfs /mnt/small`).
#[test]
#[ignore = "needs CHEST_FS_FULL_DIR on a small file system; scripts/test.sh mounts one and runs it"]
fn full_disk() {
    let dir = std::env::var_os("CHEST_FS_FULL_DIR")
        .expect("set CHEST_FS_FULL_DIR to an empty directory on a small file system");
    let dir = Path::new(&dir);
    let b = FsBackend::open(dir, FsOptions::default()).unwrap();
    let object = |i: u32| Bytes::from(vec![i as u8; 300_000]);
    let mut stored = 0;
    let err = loop {
        match b.put(&format!("data/{stored:08x}"), object(stored)) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100_000, "the file system never filled up");
    };
    let name = format!("data/{stored:08x}");
    match &err {
        BackendError::Io { op, source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
            assert_eq!(*op, "write");
            assert!(err.to_string().contains(&name), "{err}");
            assert_eq!(err.kind(), chest_core::ErrorKind::Full, "{err}");
            assert!(!err.is_temporary(), "{err}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    eprintln!("full after {stored} objects: {err}");
    assert!(leftovers(dir).is_empty());
    let names = b.list("").unwrap();
    assert_eq!(
        names.len(),
        stored as usize,
        "no partial object under {name}"
    );
    for (i, n) in names.iter().enumerate() {
        assert_eq!(b.get(n).unwrap(), object(i as u32));
    }
    b.sync().unwrap();
    // Room again after a delete.
    b.delete("data/00000000").unwrap();
    b.put(&name, object(stored)).unwrap();
    for n in b.list("").unwrap() {
        b.delete(&n).unwrap();
    }
}
