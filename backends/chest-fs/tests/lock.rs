//! The directory lock: one writer at a time, in this process or any other.

use std::path::Path;
use std::process::Command;

use chest_core::BackendError;
use chest_fs::{FsBackend, FsOptions, LOCK_FILE};

fn writer(dir: &Path) -> Result<FsBackend, BackendError> {
    FsBackend::open(dir, FsOptions::default())
}

fn reader(dir: &Path) -> Result<FsBackend, BackendError> {
    FsBackend::open(
        dir,
        FsOptions {
            read_only: true,
            ..FsOptions::default()
        },
    )
}

fn expect_locked(result: Result<FsBackend, BackendError>) -> String {
    match result {
        Err(e @ BackendError::Locked { .. }) => e.to_string(),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn second_writer_in_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = writer(dir.path()).unwrap();
    let msg = expect_locked(writer(dir.path()));
    let pid = std::process::id().to_string();
    assert!(msg.contains("in use by another writer"), "{msg}");
    assert!(
        msg.contains(&pid),
        "the message should name the holder's pid: {msg}"
    );
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    // The refused opener does not disturb the holder.
    first.put("x", "1".into()).unwrap();
    use chest_core::BackendExt;
    assert_eq!(&first.get("x").unwrap()[..], b"1");
}

#[test]
fn lock_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    use chest_core::BackendExt;
    writer(dir.path()).unwrap().put("x", "1".into()).unwrap();
    for _ in 0..3 {
        let w = writer(dir.path()).unwrap();
        expect_locked(writer(dir.path()));
        drop(w);
    }
    // The pid is cleared when the writer goes.
    let content = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert_eq!(content, "");
}

#[test]
fn readers_share_and_exclude_writers() {
    let dir = tempfile::tempdir().unwrap();
    drop(writer(dir.path()).unwrap());
    let r1 = reader(dir.path()).unwrap();
    let r2 = reader(dir.path()).unwrap();
    let msg = expect_locked(writer(dir.path()));
    assert!(msg.contains("in use"), "{msg}");
    drop((r1, r2));
    let w = writer(dir.path()).unwrap();
    // A reader while a writer holds the directory is refused too.
    let msg = expect_locked(reader(dir.path()));
    assert!(
        msg.contains("another writer") && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
    drop(w);
    reader(dir.path()).unwrap();
}

/// The files of a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_store_that_wrote_nothing_leaves_the_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("holiday.jpg"), b"jpeg").unwrap();
    let before = listing(dir.path());
    drop(writer(dir.path()).unwrap());
    assert_eq!(listing(dir.path()), before, "a writer that wrote nothing");
    drop(reader(dir.path()).unwrap());
    assert_eq!(listing(dir.path()), before, "a reader");
    // Two readers: the one that created the file leaves it to the other.
    let r1 = reader(dir.path()).unwrap();
    let r2 = reader(dir.path()).unwrap();
    drop(r1);
    expect_locked(writer(dir.path()));
    drop(r2);
    writer(dir.path()).unwrap();
}

#[test]
fn a_store_that_wrote_keeps_its_lock_file() {
    use chest_core::{Backend, BackendExt};
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path()).unwrap();
    w.put("x", "1".into()).unwrap();
    w.delete("x").unwrap();
    drop(w);
    assert_eq!(listing(dir.path()), [LOCK_FILE]);
}

#[test]
fn reader_of_a_fresh_directory_creates_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = reader(dir.path()).unwrap();
    assert!(dir.path().join(LOCK_FILE).exists());
    expect_locked(writer(dir.path()));
    drop(r);
}

#[test]
fn lock_lives_as_long_as_a_registry_opened_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let opts = chest_core::registry::OpenOptions::default();
    let opened = chest_core::registry::open_backend(url.as_str(), &opts).unwrap();
    let clone = opened.backend.clone();
    drop(opened);
    expect_locked(writer(dir.path()));
    drop(clone);
    writer(dir.path()).unwrap();
}

const CHILD_ENV: &str = "CHEST_FS_TEST_LOCK_CHILD_DIR";

/// Runs `second_process_is_refused` in a child process, which tries to open
/// `dir` for writing and reports what happened on stdout.
fn run_child(dir: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "second_process_is_refused",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD: ").map(|(_, report)| report))
        .unwrap_or_else(|| panic!("no report from the child: {stdout}"))
        .to_string()
}

#[test]
fn second_process_is_refused() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        // The child.
        match writer(Path::new(&dir)) {
            Ok(_) => println!("CHILD: opened"),
            Err(e @ BackendError::Locked { .. }) => println!("CHILD: locked: {e}"),
            Err(e) => println!("CHILD: error: {e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path()).unwrap();
    let report = run_child(dir.path());
    assert!(report.starts_with("locked: "), "{report}");
    assert!(report.contains("in use by another writer"), "{report}");
    assert!(
        report.contains(&format!("pid {}", std::process::id())),
        "the child should be told the parent's pid: {report}"
    );
    assert!(!report.contains("this very process"), "{report}");
    drop(w);
    assert_eq!(run_child(dir.path()), "opened");
}
