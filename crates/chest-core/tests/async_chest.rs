//! `AsyncChest` from tokio programs: current-thread and multi-thread
//! runtimes, many tasks spilling through one chest at once.
#![cfg(feature = "tokio")]

use chest_core::{AsyncChest, Chest};

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
