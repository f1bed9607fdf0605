//! The chest reports open, flush, eviction batches and loads through `tracing`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chest_core::ChestBuilder;

/// A writer into a shared buffer, for the `fmt` subscriber.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn open_flush_eviction_and_loads_are_traced() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
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
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
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
