//! The writer lease: one writer at a time on a shared store, under the
//! failures a review of the lease found (each failed before its fix): a
//! manifest write that fails without landing, a renewal that lands but
//! reports an error, a reader whose listed manifests vanish, a reader beside
//! a writer that reopens, a chest created between `CreateNew`'s first look
//! and its lease, a chest created while an open looks, and a drop during a
//! renewal wait. Over `memory://name` stores, with
//! [`LeaseFaults`](common::doubles::LeaseFaults) injecting the failures
//! and holding a manifest write at its gate (no sleeps decide a race).

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chest_core::testing::single_writer::expire_lease;
use chest_core::BackendExt;
use chest_core::{Backend, Chest, ChestBuilder, ErrorKind, MemoryBackend, OpenMode};
use common::doubles::{LeaseFaults, MANIFEST_FAILS, MANIFEST_HELD};
use common::until;

/// A named memory store of this process (shared by every handle on the name).
fn named(tag: &str) -> (String, Arc<dyn Backend>) {
    let name = format!("review-{tag}-{}", std::process::id());
    (name.clone(), Arc::new(MemoryBackend::named(&name)))
}

/// A writer over `b`, budget 1 MiB.
fn writer(b: Arc<dyn Backend>) -> chest_core::Result<Chest<u64, Vec<u8>>> {
    ChestBuilder::new().memory_budget(1 << 20).open_backend(b)
}

/// A's manifest write fails without landing; A's next commit (gated, in
/// flight while its lease expires) must not land above B's fence: A is
/// fenced, B's flushes succeed, and every key the next open finds reads.
#[test]
fn a_fenced_writers_commit_leaves_no_gap_above_the_new_holders_fence() {
    let (name, raw) = named("gap");
    let hook = LeaseFaults::new(Arc::clone(&raw));
    let a = writer(hook.clone() as Arc<dyn Backend>).unwrap();
    a.insert(1, b"one".to_vec()).unwrap();
    a.flush().unwrap();
    hook.manifest_mode.store(MANIFEST_FAILS, Ordering::SeqCst);
    a.insert(2, vec![2; 300_000]).unwrap();
    assert!(a.flush().is_err(), "injected failure");
    hook.gate.hold();
    let _release = hook.gate.release_on_drop();
    hook.manifest_mode.store(MANIFEST_HELD, Ordering::SeqCst);
    let mut report = Vec::new();
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            a.insert(3, vec![3; 300_000]).unwrap();
            a.flush()
        });
        hook.gate.wait_held(1);
        expire_lease(&*raw);
        let b = writer(Arc::new(MemoryBackend::named(&name))).expect("B takes over");
        report.push(format!("B opened with keys {:?}", b.len()));
        hook.gate.release();
        report.push(format!(
            "A's flush: {:?}",
            t.join().unwrap().map_err(|e| e.kind())
        ));
        b.insert(4, b"four".to_vec()).unwrap();
        let bf = b.flush();
        report.push(format!(
            "B's flush (the legit holder): {:?}",
            bf.as_ref().map_err(|e| e.to_string())
        ));
        drop(b);
    });
    drop(a);
    let names = raw.list("manifest").unwrap();
    report.push(format!("manifests: {names:?}"));
    eprintln!("{}", report.join("\n"));
    // A, fenced, keeps its lease to expire (its last manifest write was
    // refused, not lost); expire it as time would.
    if raw.get_versioned("lease").is_ok() {
        expire_lease(&*raw);
    }
    let c = writer(Arc::new(MemoryBackend::named(&name))).unwrap();
    let mut keys: Vec<u64> = c.iter_keys().collect();
    keys.sort_unstable();
    report.push(format!("C's keys: {keys:?}"));
    let mut bad = Vec::new();
    for k in keys {
        if let Err(e) = c.get(&k) {
            bad.push(format!("key {k}: {e}"));
        }
    }
    report.push(format!("unreadable: {bad:?}"));
    let r = report.join("\n");
    assert!(bad.is_empty(), "{r}");
    assert!(r.contains("B's flush (the legit holder): Ok"), "{r}");
}

/// A renewal that reaches the store but reports an error (a timeout) does
/// not fence the only writer: the next renewal finds its own record.
#[test]
fn a_renewal_that_landed_but_reported_an_error_keeps_the_lease() {
    let (_name, raw) = named("renew");
    let hook = LeaseFaults::new(raw);
    let a: Chest<u64, Vec<u8>> = ChestBuilder::new()
        .lease_ttl(Duration::from_millis(1200))
        .open_backend(hook.clone() as Arc<dyn Backend>)
        .unwrap();
    let before = hook.lease_puts.load(Ordering::SeqCst);
    hook.renewal_fails.store(1, Ordering::SeqCst);
    // The failing renewal, then one more.
    until("two renewals", || {
        hook.lease_puts.load(Ordering::SeqCst) >= before + 2
    });
    a.insert(1, vec![1; 300_000]).unwrap();
    a.flush().expect("the only writer, after one lost answer");
}

/// A reader opening while the writer flushes twice (every manifest it
/// listed is gone by the time it reads them) lists again: it never opens an
/// empty chest.
#[test]
fn a_reader_whose_listed_manifests_vanish_lists_again_and_never_opens_empty() {
    let (name, raw) = named("reader");
    let w = Arc::new(writer(Arc::clone(&raw)).unwrap());
    for k in 0..10 {
        w.insert(k, vec![k as u8; 100]).unwrap();
    }
    w.flush().unwrap();
    w.insert(0, vec![9; 100]).unwrap();
    w.flush().unwrap();
    let hook = LeaseFaults::new(Arc::new(MemoryBackend::named(&name)));
    let w2 = Arc::clone(&w);
    *hook.after_list.lock().unwrap() = Some(Box::new(move || {
        for i in 0..2 {
            w2.insert(100 + i, vec![1; 10]).unwrap();
            w2.flush().unwrap();
        }
    }));
    let r: Chest<u64, Vec<u8>> = ChestBuilder::new()
        .read_only(true)
        .open_backend(hook as Arc<dyn Backend>)
        .unwrap();
    assert!(r.len() >= 10, "reader opened with {} keys", r.len());
}

/// The reader grace survives the writer's close: the next writer's open
/// spares the objects of the manifests still within it.
#[test]
fn a_readers_grace_survives_the_writer_reopening() {
    let (name, raw) = named("grace");
    let w = writer(Arc::clone(&raw)).unwrap();
    for k in 0..4 {
        w.insert(k, vec![k as u8; 20_000]).unwrap();
    }
    w.flush().unwrap();
    let r: Chest<u64, Vec<u8>> = ChestBuilder::new()
        .read_only(true)
        .open_backend(Arc::new(MemoryBackend::named(&name)))
        .unwrap();
    for k in 0..4 {
        w.insert(k, vec![0xff; 30_000]).unwrap();
    }
    w.flush().unwrap();
    w.insert(9, vec![1; 10]).unwrap();
    w.flush().unwrap();
    w.close().unwrap();
    let w = writer(Arc::new(MemoryBackend::named(&name))).unwrap(); // default grace
    let got = r.get(&1).map_err(|e| e.kind());
    drop(w);
    assert_eq!(
        got.map(|v| v.map(|v| v[0])),
        Ok(Some(1)),
        "within the 60 s grace"
    );
}

/// CreateNew: another writer creates and closes the chest between the first
/// look and the lease; the open still fails with AlreadyExists.
#[test]
fn create_new_refuses_a_chest_created_between_its_look_and_its_lease() {
    let (name, raw) = named("createnew");
    let hook = LeaseFaults::new(raw);
    let n2 = name.clone();
    *hook.at_claim.lock().unwrap() = Some(Box::new(move || {
        let other = writer(Arc::new(MemoryBackend::named(&n2))).unwrap();
        other.insert(7, b"seven".to_vec()).unwrap();
        other.close().unwrap();
    }));
    let r = ChestBuilder::<u64, Vec<u8>>::new()
        .mode(OpenMode::CreateNew)
        .open_backend(hook as Arc<dyn Backend>);
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
        Ok(c) => panic!("CreateNew opened an existing chest with {} keys", c.len()),
    }
}

/// Dropping a writer stops its lease renewer at once, not at the end of the
/// renewer's wait (ttl / 6: here 20 s, far beyond the bound).
#[test]
fn a_drop_stops_the_lease_renewer_at_once() {
    for i in 0..4 {
        let (_n, raw) = named(&format!("drop{i}"));
        let c = ChestBuilder::<u64, Vec<u8>>::new()
            .lease_ttl(Duration::from_secs(120))
            .open_backend(raw)
            .unwrap();
        let t = Instant::now();
        drop(c);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(10), "a drop took {took:?}");
    }
}

/// Another process creates the chest (marker, values, manifest, lease) just
/// after this open found no marker: the open must not take the location for
/// a foreign one. It looks again and finds a chest held by another writer.
#[test]
fn a_chest_created_while_an_open_looks_is_found_held_not_foreign() {
    let (name, raw) = named("appearing");
    let hook = LeaseFaults::new(raw);
    type Held = Arc<Mutex<Option<Chest<u64, Vec<u8>>>>>;
    let other: Held = Arc::default();
    let (n2, keep) = (name.clone(), Arc::clone(&other));
    *hook.after_marker_read.lock().unwrap() = Some(Box::new(move || {
        let c = writer(Arc::new(MemoryBackend::named(&n2))).unwrap();
        c.insert(1, vec![1; 300_000]).unwrap();
        c.flush().unwrap();
        *keep.lock().unwrap() = Some(c);
    }));
    let err = writer(hook as Arc<dyn Backend>).expect_err("the other writer holds it");
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(other.lock().unwrap().is_some(), "the hook ran");
}
