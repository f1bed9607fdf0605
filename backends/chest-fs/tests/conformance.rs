//! The shared conformance suite over fresh temporary directories.
//!
//! The suite may drop a location before it is done with the backend it
//! opened (`target.fresh().open()`), so each opened backend shares ownership
//! of its temporary directory.

use std::sync::Arc;

use chest_core::testing::{KeepAlive, Location, Target};
use chest_core::{Backend, Result};
use chest_fs::{FsBackend, FsOptions};
use tempfile::TempDir;

/// Hands out fresh temporary directories, with or without `fsync`, with
/// ranges read through maps or not.
struct FsTarget {
    fsync: bool,
    mmap: bool,
}

/// One temporary directory, removed when the location and every backend
/// opened on it are dropped.
struct FsLocation {
    dir: Arc<TempDir>,
    fsync: bool,
    mmap: bool,
}

impl Target for FsTarget {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(FsLocation {
            dir: Arc::new(tempfile::tempdir().expect("create a temporary directory")),
            fsync: self.fsync,
            mmap: self.mmap,
        })
    }
}

impl Location for FsLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        let opts = FsOptions {
            fsync: self.fsync,
            mmap: self.mmap,
            ..FsOptions::default()
        };
        // A subdirectory, so `create` is exercised too.
        let backend = FsBackend::open(self.dir.path().join("store"), opts)?;
        Ok(Arc::new(KeepAlive::new(
            Arc::new(backend),
            Arc::clone(&self.dir) as _,
        )))
    }
}

chest_core::conformance_tests!(FsTarget {
    fsync: false,
    mmap: false
});

/// The same suite with `fsync` on: every put durable when it returns.
mod fsync {
    use super::*;

    chest_core::conformance_tests!(FsTarget {
        fsync: true,
        mmap: false
    });
}

/// The same suite with ranges read from files mapped into memory.
mod mmap {
    use super::*;

    chest_core::conformance_tests!(FsTarget {
        fsync: false,
        mmap: true
    });
}
