//! The chest reports open, flush, eviction batches and loads through `tracing`.

mod common;

use chest_core::ChestBuilder;

#[test]
fn open_flush_eviction_and_loads_are_traced() {
    let out = common::logs::capture(tracing::Level::TRACE, || {
        let c = ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(4000)
            .open("memory://tracing")
            .unwrap();
        for k in 0..20 {
            c.insert(k, vec![k as u8; 1000]).unwrap();
        }
        c.get(&0).unwrap();
        c.close().unwrap();
    });
    for needle in [
        "chest.open",
        "opened",
        "chest.evict",
        "batch written",
        "chest.load",
        "chest.flush",
        "flushed",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
}
