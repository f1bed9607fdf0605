//! `AsyncChest` from tokio programs: current-thread and multi-thread
//! runtimes, many tasks spilling through one chest at once.
#![cfg(feature = "tokio")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use chest_core::{AsyncChest, Chest, ErrorKind};

fn value(k: u64) -> Vec<u8> {
    (0..2000).map(|i| (k as usize + i) as u8).collect()
}

async fn many_tasks(c: AsyncChest<u64, Vec<u8>>) {
    let tasks: Vec<_> = (0..32u64)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let k = t * 100 + i;
                    c.insert(k, value(k)).await.unwrap();
                }
                for i in 0..20 {
                    let k = t * 100 + i;
                    assert_eq!(*c.get(k).await.unwrap().unwrap(), value(k), "key {k}");
                    c.update(k, |v| v.push(1)).await.unwrap().unwrap();
                }
                c.update_or_insert(10_000, move |n| n.push(t as u8), Vec::new)
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let chest = c.chest();
    assert_eq!(chest.len(), 32 * 20 + 1);
    assert!(chest.memory_usage() <= 64 << 10, "the budget holds");
    assert!(chest.stats().spills > 0 && chest.stats().loads > 0);
    assert_eq!(c.get(10_000).await.unwrap().unwrap().len(), 32);
    let mut expected = value(5);
    expected.push(1);
    assert_eq!(*c.get(5).await.unwrap().unwrap(), expected);
    // Read ahead in the background, then read: every value right.
    let window: Vec<u64> = (0..20).map(|i| 3 * 100 + i).collect();
    c.read_ahead(window.clone()).await;
    for &k in &window {
        let mut expected = value(k);
        expected.push(1);
        assert_eq!(*c.get(k).await.unwrap().unwrap(), expected, "key {k}");
    }
    assert!(c.take(5).await.unwrap().is_some());
    assert!(!c.remove(5).await.unwrap());
    chest.check_invariants(true).unwrap();
    // What `chest()` returns counts as a call in flight: `close` waits for it.
    drop(chest);
    c.close().await.unwrap();
}

fn open(name: &str) -> AsyncChest<u64, Vec<u8>> {
    let chest: Chest<u64, Vec<u8>> = Chest::builder()
        .memory_budget(64 << 10)
        .open(format!("memory://{name}"))
        .unwrap();
    AsyncChest::new(chest)
}

#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime() {
    many_tasks(open("async-current")).await;
    let again: Chest<u64, Vec<u8>> = Chest::open("memory://async-current").unwrap();
    assert_eq!(again.len(), 32 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime() {
    many_tasks(open("async-multi")).await;
}

/// A weigher that blocks, once, on the first value starting with
/// [`GATED`], until the test opens the gate: a call held inside the chest.
struct Gate {
    armed: AtomicBool,
    entered: Barrier,
    release: Barrier,
}

const GATED: u8 = 0xAA;

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            armed: AtomicBool::new(true),
            entered: Barrier::new(2),
            release: Barrier::new(2),
        })
    }

    fn weigher(self: &Arc<Self>) -> impl Fn(&Vec<u8>) -> usize + Send + Sync + 'static {
        let gate = Arc::clone(self);
        move |v: &Vec<u8>| {
            if v.first() == Some(&GATED) && gate.armed.swap(false, Ordering::SeqCst) {
                gate.entered.wait();
                gate.release.wait();
            }
            v.len() + 16
        }
    }

    /// Waits (on the blocking pool) until the gated call is in the weigher.
    async fn entered(self: &Arc<Self>) {
        let gate = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            gate.entered.wait();
        })
        .await
        .unwrap();
    }
}

fn reopen(url: &str) -> chest_core::Result<Chest<u64, Vec<u8>>> {
    Chest::open(url)
}

/// Issue 18: `close` returned `Ok` while a call whose future was dropped
/// (as `tokio::time::timeout` drops it) still ran on the blocking pool
/// holding the chest, so a reopen right after failed (the chest's writer
/// lease, like a directory's lock, was still held) and the chest was not
/// closed by `close` (only flushed: the call's change, made after, was
/// left to the drop). `close` now waits for every call in flight, then
/// closes the chest. The chest does not flush on drop, so that only
/// `close` can make the cancelled call's insert durable.
#[tokio::test(flavor = "current_thread")]
async fn close_waits_for_a_cancelled_call() {
    let url = "memory://async-close-cancelled";
    let gate = Gate::new();
    let chest: Chest<u64, Vec<u8>> = Chest::builder()
        .weigher(gate.weigher())
        .flush_on_drop(false)
        .open(url)
        .unwrap();
    // `memory://name` keeps to one writer: a second writable open is refused.
    let second = reopen(url).unwrap_err();
    assert_eq!(second.kind(), ErrorKind::Locked, "{second}");
    let c = AsyncChest::new(chest);
    c.insert(1, vec![1; 100]).await.unwrap();
    tokio::select! {
        _ = c.insert(2, vec![GATED; 100]) => panic!("the gated insert cannot end before the gate opens"),
        () = gate.entered() => {}
    }
    // The insert's future is dropped; its call goes on, holding the chest.
    let mut closing = std::pin::pin!(c.close());
    tokio::select! {
        biased;
        _ = &mut closing => panic!("close cannot end before the call it waits for"),
        () = std::future::ready(()) => {} // `close` is under way
    }
    let held = reopen(url).unwrap_err();
    assert_eq!(
        held.kind(),
        ErrorKind::Locked,
        "the call holds the chest: {held}"
    );
    // The gate is opened from this thread directly (the gated call reaches
    // it without needing this thread), so that the reopen below follows
    // the call's end as closely as it can.
    gate.release.wait();
    closing.await.unwrap();
    let again = reopen(url).expect("close released the chest: it reopens at once");
    assert_eq!(
        again.len(),
        2,
        "close flushed after the cancelled insert ended"
    );
    again.close().unwrap();
}

/// `close` through one handle closes the chest every clone shares: the
/// location reopens at once although a clone is alive, and every call on
/// that clone then returns an error (not a panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_closes_the_chest_of_every_clone() {
    let url = "memory://async-close-clones";
    let c = open("async-close-clones");
    let other = c.clone();
    c.insert(1, value(1)).await.unwrap();
    c.close().await.unwrap();
    let again = reopen(url).expect("close released the chest although a clone is alive");
    assert_eq!(again.len(), 1);
    for err in [
        other.insert(2, value(2)).await.unwrap_err(),
        other.get(1).await.unwrap_err(),
        other.remove(1).await.unwrap_err(),
        other.update(1, |v| v.push(0)).await.unwrap_err(),
        other.prefetch(vec![1]).await.unwrap_err(),
        other.flush().await.unwrap_err(),
        other.try_chest().unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
        assert!(err.to_string().contains("closed"), "{err}");
    }
    assert_eq!(other.read_ahead(vec![1]).await, 0);
    // Closing again (through any clone) is not an error: the chest is closed.
    other.close().await.unwrap();
    again.close().unwrap();
}
