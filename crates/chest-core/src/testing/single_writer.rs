//! One writer per location: the conditional writes of the [`Backend`]
//! contract ([`BackendExt::put_if`], [`BackendExt::get_versioned`]) and, over
//! them, the writer lease of a chest — a second writer refused, a writer
//! whose lease was taken over fenced, a paused writer's late commit refused.
//!
//! A target declares with [`Target::conditional_writes`] whether its
//! backend answers [`SingleWriter::Lease`]; the checks hold it to that
//! answer either way (a backend that does not declare it must not claim it),
//! and run the lease checks where it does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;

use super::gate::Gate;
use super::hooked::{Hooked, Op};
use super::Target;
use crate::backend::BackendExt;
use crate::backend::BackendResult;
use crate::backend::{Backend, GetOptions, ObjectVersion, PutMode, PutOptions, SingleWriter};
use crate::error::BackendError;
use crate::{Chest, ChestBuilder, ErrorKind};

/// The name of the lease object (see the store's `lease` module).
const LEASE: &str = "lease";

/// Whether `target` may run the lease checks: its declaration, checked
/// against its backend's answer.
fn declared(target: &dyn Target, b: &dyn Backend) -> bool {
    let answer = b.single_writer().expect("single_writer");
    if target.conditional_writes() {
        assert_eq!(
            answer,
            SingleWriter::Lease,
            "the target declares atomic conditional writes, but its backend answers {answer:?}"
        );
        true
    } else {
        assert_ne!(
            answer,
            SingleWriter::Lease,
            "the backend answers SingleWriter::Lease: declare `conditional_writes() -> true` \
             for its target so the lease checks run"
        );
        false
    }
}

fn conflict<T: std::fmt::Debug>(r: BackendResult<T>, what: &str) {
    match r {
        Err(BackendError::Conflict { .. }) => {}
        other => panic!("{what}: expected a Conflict, got {other:?}"),
    }
}

/// A store that does not offer a lease keeps a condition or refuses it
/// (rule R12): a conditional write either holds to its condition (a
/// second create is a `Conflict`, a compare-and-swap takes the current
/// version only) or is `Unsupported` and writes nothing; a versioned read
/// gives a version or is `Unsupported`, never bytes without one; a server
/// that ignores conditions is refused, not trusted. Stores answering
/// `Lease` are held to more by [`conditional_writes`].
pub fn conditions_are_kept_or_refused(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    if declared(target, &*b) {
        return;
    }
    let unsupported = |r: &BackendResult<Option<ObjectVersion>>| {
        matches!(r, Err(BackendError::Unsupported { .. }))
    };
    let created = b.put_opts(
        "cond/x",
        vec![Bytes::from_static(b"one")],
        PutOptions::durable_if(PutMode::Create),
    );
    if unsupported(&created) {
        assert!(
            b.get("cond/x").unwrap_err().is_not_found(),
            "a refused conditional write wrote the object"
        );
        b.put("cond/x", Bytes::from_static(b"one")).unwrap();
        let update = b.put_opts(
            "cond/x",
            vec![Bytes::from_static(b"two")],
            PutOptions::durable_if(PutMode::Update(ObjectVersion::new("any"))),
        );
        assert!(
            unsupported(&update),
            "create refused, update not: {update:?}"
        );
        assert_eq!(b.get("cond/x").unwrap(), Bytes::from_static(b"one"));
    } else {
        let v1 = created
            .expect("a conditional create of a new name")
            .expect("a conditional write returns the new version");
        conflict(
            b.put_if("cond/x", Bytes::from_static(b"two"), PutMode::Create),
            "a second create",
        );
        let v2 = b
            .put_if(
                "cond/x",
                Bytes::from_static(b"two"),
                PutMode::Update(v1.clone()),
            )
            .unwrap();
        conflict(
            b.put_if("cond/x", Bytes::from_static(b"three"), PutMode::Update(v1)),
            "a stale version",
        );
        assert_eq!(
            b.get_versioned("cond/x").unwrap(),
            (Bytes::from_static(b"two"), v2)
        );
    }
    match b.get_opts("cond/x", GetOptions::versioned()) {
        Ok(read) => assert!(
            read.version.is_some(),
            "a versioned read gave bytes without a version"
        ),
        Err(BackendError::Unsupported { .. }) => {}
        Err(e) => panic!("a versioned read of an object: {e}"),
    }
}

/// `put_if` and `get_versioned` do what they say: create-only refuses an
/// existing object, compare-and-swap refuses a wrong, stale or missing
/// version and takes the current one, and a refused write changes nothing.
pub fn conditional_writes(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    if !declared(target, &*b) {
        return;
    }
    let (one, two, three) = (
        Bytes::from_static(b"one"),
        Bytes::from_static(b"two"),
        Bytes::from_static(b"three"),
    );
    let v1 = b.put_if("cas/x", one.clone(), PutMode::Create).unwrap();
    let (got, v) = b.get_versioned("cas/x").unwrap();
    assert_eq!((&got, &v), (&one, &v1), "get_versioned after a create");
    conflict(
        b.put_if("cas/x", two.clone(), PutMode::Create),
        "a second create",
    );
    let wrong = PutMode::Update(ObjectVersion::new("\"not-a-version-of-this-object\""));
    conflict(b.put_if("cas/x", two.clone(), wrong), "a wrong version");
    assert_eq!(
        b.get("cas/x").unwrap(),
        one,
        "refused writes change nothing"
    );
    let v2 = b
        .put_if("cas/x", two.clone(), PutMode::Update(v1.clone()))
        .unwrap();
    assert_ne!(v1, v2, "a new object is a new version");
    conflict(
        b.put_if("cas/x", three.clone(), PutMode::Update(v1)),
        "a stale version",
    );
    assert_eq!(b.get_versioned("cas/x").unwrap(), (two.clone(), v2.clone()));
    conflict(
        b.put_if("cas/missing", three.clone(), PutMode::Update(v2.clone())),
        "a version of a missing object",
    );
    assert!(b.get("cas/missing").unwrap_err().is_not_found());
    // A plain put makes a new version too: compare-and-swap sees it.
    b.put("cas/x", three.clone()).unwrap();
    conflict(
        b.put_if("cas/x", one, PutMode::Update(v2)),
        "a version replaced by a put",
    );
    b.delete("cas/x").unwrap();
    b.put_if("cas/x", three, PutMode::Create)
        .expect("create-only after a delete");
    assert!(matches!(
        b.get_versioned("cas/none"),
        Err(BackendError::NotFound { .. })
    ));
}

/// Eight threads, each with a handle of its own, race a create-only write
/// of one name, then a compare-and-swap from one version, for several
/// rounds: every time exactly one wins.
pub fn conditional_writes_race(target: &dyn Target) {
    const THREADS: usize = 8;
    const ROUNDS: usize = 4;
    let loc = target.fresh();
    if !declared(target, &*loc.open().unwrap()) {
        return;
    }
    let handles: Vec<Arc<dyn Backend>> = (0..THREADS).map(|_| loc.open().unwrap()).collect();
    for round in 0..ROUNDS {
        let name = format!("race/{round}");
        let winners = race(&handles, &name, "create", |_| PutMode::Create);
        assert_eq!(
            winners.len(),
            1,
            "round {round}: creates that won: {winners:?}"
        );
        let (got, version) = handles[0].get_versioned(&name).unwrap();
        assert_eq!(got, Bytes::from(format!("create by {}", winners[0])));
        let winners = race(&handles, &name, "swap", |_| {
            PutMode::Update(version.clone())
        });
        assert_eq!(
            winners.len(),
            1,
            "round {round}: swaps that won: {winners:?}"
        );
        assert_eq!(
            handles[0].get(&name).unwrap(),
            Bytes::from(format!("swap by {}", winners[0]))
        );
    }
}

/// Every handle, on a thread of its own and released at once, writes
/// `"<what> by <thread>"` to `name` under `condition(thread)`; returns the
/// threads whose write was accepted.
fn race(
    handles: &[Arc<dyn Backend>],
    name: &str,
    what: &str,
    condition: impl Fn(usize) -> PutMode + Sync,
) -> Vec<usize> {
    let start = Barrier::new(handles.len());
    std::thread::scope(|s| {
        let tasks: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(t, b)| {
                let (start, condition) = (&start, &condition);
                s.spawn(move || {
                    start.wait();
                    let data = Bytes::from(format!("{what} by {t}"));
                    match b.put_if(name, data, condition(t)) {
                        Ok(_) => Some(t),
                        Err(BackendError::Conflict { .. }) => None,
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                })
            })
            .collect();
        tasks
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect()
    })
}

fn writer(b: Arc<dyn Backend>) -> crate::Result<Chest<u64, Vec<u8>>> {
    ChestBuilder::new().memory_budget(1 << 20).open_backend(b)
}

fn reader(b: Arc<dyn Backend>) -> crate::Result<Chest<u64, Vec<u8>>> {
    ChestBuilder::new().read_only(true).open_backend(b)
}

/// A second writer is refused with [`ErrorKind::Locked`], naming the
/// holder's process; readers open beside the writer; once the writer
/// closes, the next one opens at once (the lease was released).
pub fn second_writer_refused(target: &dyn Target) {
    let loc = target.fresh();
    let first = loc.open().unwrap();
    if !declared(target, &*first) {
        return;
    }
    let a = writer(first).unwrap();
    a.insert(1, b"one".to_vec()).unwrap();
    a.flush().unwrap();
    let err = writer(loc.open().unwrap()).expect_err("a second writer while the first is open");
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "the error names the holder: {msg}"
    );
    let r = reader(loc.open().unwrap()).expect("a reader beside the writer");
    assert_eq!(
        r.get(&1).unwrap().map(|v| v.to_vec()),
        Some(b"one".to_vec())
    );
    drop(r);
    a.close().unwrap();
    let b = writer(loc.open().unwrap()).expect("the next writer after close");
    assert_eq!(
        b.get(&1).unwrap().map(|v| v.to_vec()),
        Some(b"one".to_vec())
    );
}

/// Eight threads, each with a handle of its own, race to open one location
/// for writing: exactly one opens, the others are refused with `Locked`.
pub fn writers_race_to_open(target: &dyn Target) {
    const THREADS: usize = 8;
    let loc = target.fresh();
    if !declared(target, &*loc.open().unwrap()) {
        return;
    }
    let handles: Vec<Arc<dyn Backend>> = (0..THREADS).map(|_| loc.open().unwrap()).collect();
    let start = Barrier::new(THREADS);
    let opened: Vec<_> = std::thread::scope(|s| {
        let tasks: Vec<_> = handles
            .into_iter()
            .map(|b| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    writer(b)
                })
            })
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut winners = 0;
    for r in &opened {
        match r {
            Ok(_) => winners += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Locked, "{e}"),
        }
    }
    assert_eq!(winners, 1, "writers that opened");
}

/// Rewrites the lease record as expired (its holder paused past its
/// deadline, as another process sees it), by compare-and-swap, retrying if
/// the holder renews meanwhile.
pub fn expire_lease(b: &dyn Backend) {
    for _ in 0..100 {
        let (bytes, version) = b.get_versioned(LEASE).expect("read the lease");
        let mut record: ciborium::Value =
            ciborium::from_reader(&bytes[..]).expect("a lease record");
        let fields = record.as_map_mut().expect("a lease record is a map");
        for (k, v) in fields.iter_mut() {
            if k.as_text() == Some("expires_ms") {
                *v = ciborium::Value::Integer(1u8.into());
            }
        }
        let mut out = Vec::new();
        ciborium::into_writer(&record, &mut out).unwrap();
        match b.put_if(LEASE, Bytes::from(out), PutMode::Update(version)) {
            Ok(_) => return,
            Err(BackendError::Conflict { .. }) => continue,
            Err(e) => panic!("rewriting the lease: {e}"),
        }
    }
    panic!("the lease kept changing under the test");
}

/// A writer whose lease expired and was taken over is fenced: its writes
/// fail with [`ErrorKind::Fenced`] and change nothing of the new holder's;
/// the new holder has the state of the last commit before the takeover.
pub fn taken_over_writer_is_fenced(target: &dyn Target) {
    let loc = target.fresh();
    let first = loc.open().unwrap();
    if !declared(target, &*first) {
        return;
    }
    let a = writer(Arc::clone(&first)).unwrap();
    a.insert(1, b"one".to_vec()).unwrap();
    a.flush().unwrap();
    // The lease of `a` expires (as if its process had paused): `b` takes
    // it over.
    expire_lease(&*first);
    let b = writer(loc.open().unwrap()).expect("take over an expired lease");
    assert_eq!(
        b.get(&1).unwrap().map(|v| v.to_vec()),
        Some(b"one".to_vec())
    );
    b.insert(2, b"two".to_vec()).unwrap();
    b.flush().unwrap();
    // `a` wakes up: its writes fail, and say why.
    let _ = a.insert(3, vec![3; 300_000]);
    let err = a.flush().expect_err("a fenced writer's flush");
    assert!(
        err.errors().iter().any(|e| e.kind() == ErrorKind::Fenced),
        "expected Fenced: {err}"
    );
    drop(a);
    b.close().unwrap();
    let c = writer(loc.open().unwrap()).unwrap();
    let mut keys: Vec<u64> = c.iter_keys().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [1, 2],
        "the new holder's state, nothing of the fenced writer's"
    );
    assert_eq!(
        c.get(&2).unwrap().map(|v| v.to_vec()),
        Some(b"two".to_vec())
    );
}

/// A writer paused in the middle of a commit (its manifest write on the
/// way) while its lease expires and another writer takes over: when it
/// wakes, before the new holder has committed anything, its commit is
/// refused ([`ErrorKind::Fenced`]) by the new holder's fence, so it neither
/// replaces the new holder's manifest nor names the objects the new holder
/// removed; the new holder then commits, and its state is intact.
pub fn paused_writer_cannot_commit(target: &dyn Target) {
    let loc = target.fresh();
    let raw = loc.open().unwrap();
    if !declared(target, &*raw) {
        return;
    }
    // Once armed, the writes of manifests wait at the gate (a paused
    // writer's commit in flight).
    let gate = Gate::closed();
    let armed = Arc::new(AtomicBool::new(false));
    let hooked = Hooked::new(Arc::clone(&raw), {
        let (gate, armed) = (Arc::clone(&gate), Arc::clone(&armed));
        move |op: &Op<'_>| {
            if matches!(op, Op::Put(name) if name.starts_with("manifest"))
                && armed.load(Ordering::SeqCst)
            {
                gate.pass();
            }
            Ok(())
        }
    });
    let _release = gate.release_on_drop();
    let a = writer(Arc::new(hooked)).unwrap();
    a.insert(1, b"one".to_vec()).unwrap();
    a.flush().unwrap();
    armed.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        let paused = s.spawn(|| {
            a.insert(2, vec![2; 300_000]).unwrap();
            a.flush()
        });
        gate.wait_held(1);
        // While `a` is paused, its lease expires and `b` takes over.
        expire_lease(&*raw);
        let b = writer(loc.open().unwrap()).expect("take over the paused writer's lease");
        assert_eq!(b.len(), 1, "the new holder starts from the last commit");
        // `a` wakes before `b` has committed anything of its own: only `b`'s
        // fence stands in the way of its late commit.
        gate.release();
        let err = paused
            .join()
            .unwrap()
            .expect_err("the paused writer's commit");
        assert!(
            err.errors().iter().any(|e| e.kind() == ErrorKind::Fenced),
            "expected Fenced: {err}"
        );
        b.insert(3, b"three".to_vec()).unwrap();
        b.flush()
            .expect("the new holder commits after the late commit was refused");
        drop(b);
    });
    assert_eq!(gate.arrived(), 1, "one manifest write was held");
    drop(a);
    let c = writer(loc.open().unwrap()).unwrap();
    let mut keys: Vec<u64> = c.iter_keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, [1, 3], "the new holder's state");
    assert_eq!(
        c.get(&1).unwrap().map(|v| v.to_vec()),
        Some(b"one".to_vec())
    );
    assert_eq!(
        c.get(&3).unwrap().map(|v| v.to_vec()),
        Some(b"three".to_vec())
    );
}

/// A read-only chest beside a writer reads the snapshot it opened: the
/// objects the writer's later flushes no longer name stay for the reader
/// grace period. Once they are gone (here: a writer with no grace period
/// reopens and removes them), the reader's read of one fails with
/// [`ErrorKind::StaleSnapshot`], naming the key, not as damage.
pub fn reader_keeps_its_snapshot(target: &dyn Target) {
    const KEYS: u64 = 12;
    let loc = target.fresh();
    let first = loc.open().unwrap();
    if !declared(target, &*first) {
        return;
    }
    let old = |k: u64| vec![k as u8; 20_000 + k as usize];
    let new = |k: u64| vec![k as u8 ^ 0xff; 30_000 + k as usize];
    let w = writer(first).unwrap();
    for k in 0..KEYS {
        w.insert(k, old(k)).unwrap();
    }
    w.flush().unwrap();
    let r = ChestBuilder::<u64, Vec<u8>>::new()
        .read_only(true)
        .memory_budget(1 << 20)
        .open_backend(loc.open().unwrap())
        .unwrap();
    // The writer replaces every value and flushes twice: without a grace
    // period, the first flush's objects would go now.
    for k in 0..KEYS {
        w.insert(k, new(k)).unwrap();
    }
    w.flush().unwrap();
    w.insert(KEYS, vec![1; 10]).unwrap();
    w.flush().unwrap();
    for k in 0..KEYS / 2 {
        assert_eq!(
            r.get(&k).unwrap().map(|v| v.to_vec()),
            Some(old(k)),
            "key {k}"
        );
    }
    w.close().unwrap();
    // A writer that keeps nothing for readers removes them at open.
    let w = ChestBuilder::<u64, Vec<u8>>::new()
        .reader_grace(Duration::ZERO)
        .open_backend(loc.open().unwrap())
        .unwrap();
    assert_eq!(w.get(&0).unwrap().map(|v| v.to_vec()), Some(new(0)));
    let err = r.get(&(KEYS - 1)).expect_err("a value of a removed object");
    assert_eq!(err.kind(), ErrorKind::StaleSnapshot, "{err}");
    assert_eq!(err.key(), Some(&*format!("{}", KEYS - 1)));
    assert!(err.to_string().contains("reopen"), "{err}");
    drop(r);
    let r = reader(loc.open().unwrap()).unwrap();
    assert_eq!(
        r.get(&(KEYS - 1)).unwrap().map(|v| v.to_vec()),
        Some(new(KEYS - 1))
    );
}
