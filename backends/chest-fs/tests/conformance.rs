//! The shared conformance suite over fresh temporary directories.
//!
//! The suite may drop a location before it is done with the backend it
//! opened (`target.fresh().open()`), so each opened backend shares ownership
//! of its temporary directory.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chest_core::conformance::{Location, Target};
use chest_core::{Backend, BackendResult, Result};
use chest_fs::{FsBackend, FsOptions};
use tempfile::TempDir;

/// Hands out fresh temporary directories, with or without `fsync`.
struct FsTarget {
    fsync: bool,
}

/// One temporary directory, removed when the location and every backend
/// opened on it are dropped.
struct FsLocation {
    dir: Arc<TempDir>,
    fsync: bool,
}

/// An [`FsBackend`] that keeps its temporary directory alive.
#[derive(Debug)]
struct Kept {
    backend: FsBackend,
    _dir: Arc<TempDir>,
}

impl Target for FsTarget {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(FsLocation {
            dir: Arc::new(tempfile::tempdir().expect("create a temporary directory")),
            fsync: self.fsync,
        })
    }
}

impl Location for FsLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        let opts = FsOptions {
            fsync: self.fsync,
            ..FsOptions::default()
        };
        // A subdirectory, so `create` is exercised too.
        let backend = FsBackend::open(self.dir.path().join("store"), opts)?;
        Ok(Arc::new(Kept {
            backend,
            _dir: Arc::clone(&self.dir),
        }))
    }
}

impl Backend for Kept {
    fn location(&self) -> &str {
        self.backend.location()
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.backend.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.backend.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.backend.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.backend.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.backend.list(prefix)
    }
    fn sync(&self) -> BackendResult<()> {
        self.backend.sync()
    }
    fn counters(&self) -> Vec<(String, u64)> {
        self.backend.counters()
    }
}

chest_core::conformance_tests!(FsTarget { fsync: false });

/// The same suite with `fsync` on: every put durable when it returns.
mod fsync {
    use super::*;

    chest_core::conformance_tests!(FsTarget { fsync: true });
}
