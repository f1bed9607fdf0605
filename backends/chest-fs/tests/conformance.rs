//! The shared conformance suite over fresh temporary directories.
//!
//! The suite may drop a location before it is done with the backend it
//! opened (`target.fresh().open()`), so each opened backend shares ownership
//! of its temporary directory.

use std::sync::Arc;

use chest_core::conformance::{KeepAlive, Location, Target};
use chest_core::{Backend, Result};
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
        Ok(Arc::new(KeepAlive::new(
            Arc::new(backend),
            Arc::clone(&self.dir) as _,
        )))
    }
}

chest_core::conformance_tests!(FsTarget { fsync: false });

/// The same suite with `fsync` on: every put durable when it returns.
mod fsync {
    use super::*;

    chest_core::conformance_tests!(FsTarget { fsync: true });
}
