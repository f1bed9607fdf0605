//! Fault injection: a backend whose writes fail (disk full, network down).
//! Values stay in memory, errors reach the caller, nothing is lost.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chest_core::{Backend, BackendError, BackendResult, ChestBuilder, Error, MemoryBackend};

#[derive(Debug)]
struct Flaky {
    inner: MemoryBackend,
    fail_puts: AtomicBool,
    puts: AtomicUsize,
}

impl Backend for Flaky {
    fn location(&self) -> &str {
        "flaky://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(BackendError::Io {
                location: "flaky://".into(),
                op: "write",
                path: name.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                ),
            });
        }
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.inner.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.inner.list(prefix)
    }
}

fn v(i: u64) -> Vec<u8> {
    vec![i as u8; 1000 + i as usize]
}

#[test]
fn failed_spills_keep_values_and_report_errors() {
    let backend = Arc::new(Flaky {
        inner: MemoryBackend::new(),
        fail_puts: AtomicBool::new(false),
        puts: AtomicUsize::new(0),
    });
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(16 << 10)
        .open_backend(backend.clone())
        .unwrap();
    for i in 0..10 {
        c.insert(i, v(i)).unwrap();
    }
    backend.fail_puts.store(true, Ordering::SeqCst);
    let mut errors = 0;
    for i in 10..60 {
        match c.insert(i, v(i)) {
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                let msg = e.to_string();
                assert!(msg.contains("no space left"), "{msg}");
            }
        }
    }
    assert!(errors > 0, "spill failures must reach the caller");
    assert!(c.stats().errors > 0);
    assert!(
        c.memory_usage() > 16 << 10,
        "values that could not be spilled stay in memory"
    );
    for i in 0..60 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), v(i), "key {i} lost");
    }
    let err = c.flush().unwrap_err();
    assert!(matches!(err, Error::Backend(_) | Error::Many(_)), "{err}");

    // The disk has room again: everything spills and flushes.
    backend.fail_puts.store(false, Ordering::SeqCst);
    c.insert(1000, v(1)).unwrap();
    assert!(c.memory_usage() <= (16 << 10) + 2000);
    c.close().unwrap();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(16 << 10)
        .open_backend(backend)
        .unwrap();
    assert_eq!(c.len(), 61);
    for i in 0..60 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), v(i), "key {i} after reopen");
    }
}

#[test]
fn failed_direct_write_of_a_huge_value_keeps_it() {
    let backend = Arc::new(Flaky {
        inner: MemoryBackend::new(),
        fail_puts: AtomicBool::new(false),
        puts: AtomicUsize::new(0),
    });
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(1 << 10)
        .open_backend(backend.clone())
        .unwrap();
    backend.fail_puts.store(true, Ordering::SeqCst);
    assert!(c.insert(1, vec![7; 10_000]).is_err());
    assert_eq!(c.get(&1).unwrap().unwrap().len(), 10_000);
    backend.fail_puts.store(false, Ordering::SeqCst);
    c.close().unwrap();
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .open_backend(backend)
        .unwrap();
    assert_eq!(c.get(&1).unwrap().unwrap().len(), 10_000);
}

#[test]
fn stats_count_what_happened() {
    let c = ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(8 << 10)
        .open("memory://")
        .unwrap();
    for i in 0..20 {
        c.insert(i, vec![0; 1000]).unwrap();
    }
    let _ = c.get(&19).unwrap();
    let _ = c.get(&0).unwrap();
    let s = c.stats();
    assert_eq!(s.len, 20);
    assert!(s.hits >= 1 && s.misses >= 1 && s.loads >= 1, "{s:?}");
    assert!(s.spills >= 10 && s.bytes_written >= 10_000, "{s:?}");
    assert!(s.memory_usage <= 8 << 10 && s.resident < 20, "{s:?}");
    let text = s.to_string();
    assert!(text.contains("spills"), "{text}");
}

#[test]
fn a_flush_without_changes_writes_nothing() {
    let backend = Arc::new(Flaky {
        inner: MemoryBackend::new(),
        fail_puts: AtomicBool::new(false),
        puts: AtomicUsize::new(0),
    });
    let open = || {
        ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(4 << 10)
            .open_backend(backend.clone())
            .unwrap()
    };
    let c = open();
    for i in 0..20 {
        c.insert(i, v(i)).unwrap();
    }
    c.flush().unwrap();
    let after_flush = backend.puts.load(Ordering::SeqCst);
    for i in 0..20 {
        c.get(&i).unwrap(); // loads and clean evictions: no writes
    }
    c.flush().unwrap();
    drop(c);
    assert_eq!(backend.puts.load(Ordering::SeqCst), after_flush);
    // Reopened and dropped unchanged: still nothing written.
    drop(open());
    assert_eq!(backend.puts.load(Ordering::SeqCst), after_flush);
    // A change is flushed.
    let c = open();
    c.remove(&3).unwrap();
    c.close().unwrap();
    assert!(backend.puts.load(Ordering::SeqCst) > after_flush);
    assert_eq!(open().len(), 19);
}
