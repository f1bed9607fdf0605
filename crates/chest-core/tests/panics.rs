//! Code that is not the chest's panicking — a serializer, a weigher, an
//! update closure, the backend, the caller's own thread — loses nothing and
//! leaves the chest consistent: the panic becomes an error for the caller
//! (or unwinds to it), the values stay in memory, the background threads
//! live on.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use chest_core::{Backend, ChestBuilder, Error, MemoryBackend};
use common::doubles::Shaped;
use common::hooks::Writes;
use common::{check, hooked, open, value, Op, Switch, Touchy, BUDGET, LEN};

/// A serializer that panics during a flush, then during eviction: the
/// error says it panicked, every value is still there (in memory, then
/// after a reopen), and the values spill later.
#[test]
fn a_serializer_panicking_in_a_flush_or_an_eviction_loses_nothing() {
    let panics = Switch::default();
    let b = Arc::new(MemoryBackend::new());
    let open_touchy = |budget| {
        ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(budget)
            .serializer(Touchy(panics.clone()))
            .open_backend(b.clone())
            .unwrap()
    };
    {
        let c = open_touchy(1 << 20);
        for k in 0..200 {
            c.insert(k, value(k, 100)).unwrap();
        }
        panics.on();
        let err = c.flush().unwrap_err();
        assert!(err.to_string().contains("serializer panicked"), "{err}");
        panics.off();
        c.close().unwrap();
    }
    let c = open_touchy(1 << 20);
    assert_eq!(c.len(), 200, "values lost after a panicking flush");
    for k in 0..200 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 100));
    }
    c.check_invariants(true).unwrap();

    // A panic during eviction: the values stay, counted, and spill later.
    let c2 = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(4000)
        .serializer(Touchy(panics.clone()))
        .open_backend(Arc::new(MemoryBackend::new()))
        .unwrap();
    panics.on();
    let mut errors = 0;
    for k in 0..10 {
        if let Err(e) = c2.insert(k, value(k, 1000)) {
            assert!(
                matches!(e, Error::Panicked { .. } | Error::Many(_)),
                "{e:?}"
            );
            errors += 1;
        }
    }
    assert!(errors > 0);
    if let Err(e) = c2.check_invariants(true) {
        panic!("{e}");
    }
    panics.off();
    c2.insert(99, value(99, 1000)).unwrap();
    c2.flush().unwrap();
    for k in 0..10 {
        assert_eq!(*c2.get(&k).unwrap().unwrap(), value(k, 1000));
    }
}

/// A serializer that panics on the writer thread: the panic becomes an
/// error for the caller, the values stay in memory, the writer lives on.
#[test]
fn a_serializer_panicking_on_the_writer_thread_loses_nothing() {
    let panics = Switch::default();
    let (w, b) = Writes::new();
    let open = || {
        ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
            .memory_budget(BUDGET)
            .serializer(Touchy(panics.clone()))
            .open_backend(Arc::clone(&b))
            .unwrap()
    };
    let c = open();
    let _release = w.release_on_drop();
    panics.on();
    w.writer.hold();
    for k in 0..16 {
        c.insert(k, value(k, LEN)).unwrap();
    }
    w.writer.release();
    let err = c.flush().unwrap_err();
    assert!(
        err.errors().iter().any(|e| matches!(
            e,
            Error::Panicked {
                what: "serializer",
                ..
            }
        )),
        "{err}"
    );
    check(&c, true);
    for k in 0..16 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
    panics.off();
    // The writer still works, and a flush writes the pinned values.
    for k in 16..40 {
        c.insert(k, value(k, LEN)).unwrap();
    }
    c.close().unwrap();
    let c = open();
    assert_eq!(c.len(), 40);
    for k in 0..40 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, LEN), "key {k}");
    }
}

/// A chest dropped while its thread unwinds from a panic of the caller's
/// code does not flush (its state may be half-changed): the last flush
/// stays as it was.
#[test]
fn a_chest_dropped_while_its_thread_panics_does_not_flush() {
    let shaped = Arc::new(Shaped::default());
    let b: Arc<dyn Backend> = shaped.clone();
    let c = open(&b, 1 << 20);
    c.insert(1, value(1, 10)).unwrap();
    c.flush().unwrap();
    let manifests = shaped.durable().len();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let c = c;
        c.insert(2, value(2, 10)).unwrap();
        panic!("the user's code fails");
    }));
    assert!(result.is_err());
    assert_eq!(shaped.durable().len(), manifests, "flushed while panicking");
    // The last flush is intact.
    let c = open(&b, 1 << 20);
    assert_eq!(c.len(), 1);
}

/// A weigher that panics fails the insert (`Error::Panicked`), which
/// changes nothing; an update closure that panics halfway keeps its partial
/// change. Either way the chest stays consistent.
#[test]
fn panicking_weigher_and_update_closure_leave_the_chest_consistent() {
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let c = ChestBuilder::<u64, Vec<u8>>::with_weigher(|v: &Vec<u8>| {
        assert!(v.first() != Some(&66), "weigher bug");
        v.len()
    })
    .memory_budget(5000)
    .open_backend(b.clone())
    .unwrap();
    for k in 0..20 {
        c.insert(k, value(k, 1000)).unwrap();
    }
    let err = c.insert(100, vec![66; 10]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Panicked {
                what: "weigher",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!c.contains_key(&100));
    check(&c, true);
    // A spilled value, updated by a closure that panics halfway.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        c.update(&0, |v| {
            v[0] = 1;
            v.push(9);
            panic!("closure bug");
        })
    }));
    assert!(panicked.is_err());
    check(&c, true);
    let mut expected = value(0, 1000);
    expected[0] = 1;
    expected.push(9);
    assert_eq!(
        *c.get(&0).unwrap().unwrap(),
        expected,
        "the partial change is kept"
    );
    c.close().unwrap();
    let c = open(&b, 5000);
    assert_eq!(*c.get(&0).unwrap().unwrap(), expected);
    assert_eq!(c.len(), 20);
}

/// An update closure that panics on a value heavier than the budget leaves
/// the chest consistent (the invariant check holds).
///
/// (A review found: `take_one` had already marked the value evicting and
/// counted it in `inflight`; `resume_unwind` dropped the victim, so the
/// value was stuck, out of the queue and evicting forever, and `inflight`
/// leaked.)
#[test]
fn an_update_panicking_on_a_value_heavier_than_the_budget_leaves_the_chest_consistent() {
    let c = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(64 << 10)
        .open("memory://")
        .unwrap();
    c.insert(1, vec![1; 100 << 10]).unwrap(); // heavier than the budget: straight to the backend
    let r = catch_unwind(AssertUnwindSafe(|| c.update(&1, |_v| panic!("user bug"))));
    assert!(r.is_err());
    c.check_invariants(true).unwrap();
}

/// The same with the weigher panicking after the update closure ran: the
/// update fails and the chest stays consistent.
///
/// (Before: `weighed?` returned before the heavy victim was written, and
/// left it marked evicting.)
#[test]
fn a_weigher_panicking_in_an_update_of_a_heavy_value_leaves_the_chest_consistent() {
    let fail = Switch::default();
    let f2 = fail.clone();
    let c = ChestBuilder::<u32, Vec<u8>>::with_weigher(move |v: &Vec<u8>| {
        if f2.is_on() && v.len() == 1 {
            panic!("weigher bug")
        }
        v.len()
    })
    .memory_budget(64 << 10)
    .open("memory://")
    .unwrap();
    c.insert(1, vec![1; 100 << 10]).unwrap();
    fail.on();
    let r = c.update(&1, |v| v.truncate(1));
    assert!(r.is_err());
    fail.off();
    c.check_invariants(true).unwrap();
}

/// A backend that panics inside a flush's commit ends that flush (the panic
/// reaches the caller) and the next flush works.
///
/// (Before: `Flushing.ended` was set before `Store::commit`; a backend panic
/// inside commit left `Table::flushing` true, and the next flush tripped
/// `debug_assert!(!t.flushing)` in debug builds, or ran with a stale flag.)
#[test]
fn a_backend_panicking_in_a_commit_ends_that_flush_and_the_next_one_works() {
    let panics = Switch::default();
    let p = panics.clone();
    let b = hooked(&MemoryBackend::new(), move |op| {
        if matches!(op, Op::Sync) && p.take() {
            panic!("backend bug in sync");
        }
        Ok(())
    });
    let c = ChestBuilder::<u32, Vec<u8>>::new()
        .memory_budget(1 << 20)
        .shards(4)
        .open_backend(b)
        .unwrap();
    c.insert(1, vec![1; 10]).unwrap();
    panics.on();
    assert!(catch_unwind(AssertUnwindSafe(|| c.flush())).is_err());
    c.insert(2, vec![2; 10]).unwrap();
    let second = catch_unwind(AssertUnwindSafe(|| c.flush()));
    assert!(
        matches!(second, Ok(Ok(()))),
        "the flush after a backend panic failed"
    );
}
