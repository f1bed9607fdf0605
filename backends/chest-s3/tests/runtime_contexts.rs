//! The blocking backend works from plain threads, from async code calling it
//! directly (current-thread and multi-thread runtimes, as in `#[tokio::main]`),
//! and from `spawn_blocking`; it can be dropped anywhere. Against the real
//! test server (`CHEST_S3_URL`); without it these tests skip, saying so
//! (fail under `CHEST_REQUIRE_SERVERS=1`).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use chest_core::{Backend, BackendExt};
use chest_s3::S3Backend;

/// A fresh prefix of the test server `base`.
fn open(base: &str, tag: &str) -> S3Backend {
    S3Backend::open_url(&common::fresh(base, tag)).unwrap()
}

fn round_trip(b: &dyn Backend, who: &str) {
    let data = Bytes::from(format!("written by {who}").repeat(100));
    b.put(&format!("{who}/x"), data.clone()).unwrap();
    assert_eq!(b.get(&format!("{who}/x")).unwrap(), data);
    assert_eq!(
        b.get_range(&format!("{who}/x"), 3..10).unwrap(),
        data.slice(3..10)
    );
    assert_eq!(
        b.list(&format!("{who}/")).unwrap(),
        vec![format!("{who}/x")]
    );
}

#[test]
fn from_plain_threads() {
    let Some(base) = common::s3_url() else { return };
    let b = Arc::new(open(&base, "threads"));
    std::thread::scope(|s| {
        for t in 0..6 {
            let b = Arc::clone(&b);
            s.spawn(move || round_trip(&*b, &format!("t{t}")));
        }
    });
    assert_eq!(b.list("").unwrap().len(), 6);
}

#[tokio::test(flavor = "current_thread")]
async fn directly_from_a_current_thread_runtime() {
    let Some(base) = common::s3_url() else { return };
    // `Handle::block_on` or `block_in_place` would panic here.
    let b = open(&base, "current-thread");
    round_trip(&b, "ct");
    drop(b); // dropping the backend's runtime inside async code must not panic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directly_from_a_multi_thread_runtime() {
    let Some(base) = common::s3_url() else { return };
    let b = open(&base, "multi-thread");
    round_trip(&b, "mt");
    let b = Arc::new(b);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { round_trip(&*b, &format!("task{i}")) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_spawn_blocking() {
    let Some(base) = common::s3_url() else { return };
    let b = Arc::new(
        tokio::task::spawn_blocking(move || open(&base, "spawn-blocking"))
            .await
            .unwrap(),
    );
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let b = Arc::clone(&b);
            tokio::task::spawn_blocking(move || round_trip(&*b, &format!("sb{i}")))
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    // The last handle goes away on a blocking thread.
    tokio::task::spawn_blocking(move || drop(b)).await.unwrap();
}

#[test]
fn a_program_with_its_own_runtime() {
    let Some(base) = common::s3_url() else { return };
    // What `#[tokio::main]` expands to: a runtime blocking on an async main.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = open(&base, "tokio-main");
        round_trip(&b, "main");
        let b = Arc::new(b);
        let b2 = Arc::clone(&b);
        tokio::task::spawn_blocking(move || round_trip(&*b2, "main-blocking"))
            .await
            .unwrap();
    });
}
