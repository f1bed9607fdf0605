//! The shared conformance suite through the zstd layer: around a fresh
//! `MemoryBackend` and around a fresh directory (`chest-fs`), each with the
//! default options and with compression forced on and small frames (the
//! suite's data is random, which the default options store raw).

use std::sync::Arc;

use chest_core::testing::{KeepAlive, Location, Target};
use chest_core::{Backend, MemoryBackend, Result};
use chest_fs::{FsBackend, FsOptions};
use chest_zstd::{ZstdBackend, ZstdOptions};
use tempfile::TempDir;

/// Default options, or compression of everything in frames of 16 KiB.
fn options(forced: bool) -> ZstdOptions {
    if forced {
        ZstdOptions {
            max_ratio: f64::INFINITY,
            frame_size: 16 << 10,
            ..ZstdOptions::default()
        }
    } else {
        ZstdOptions::default()
    }
}

/// zstd around fresh in-memory stores.
struct MemTarget {
    forced: bool,
}

struct MemLocation {
    mem: MemoryBackend,
    forced: bool,
}

impl Target for MemTarget {
    // See the crate docs: a range of an object replaced meanwhile may mix versions.
    fn ranged_reads_atomic_under_overwrite(&self) -> bool {
        false
    }

    fn fresh(&self) -> Box<dyn Location> {
        Box::new(MemLocation {
            mem: MemoryBackend::new(),
            forced: self.forced,
        })
    }
}

impl Location for MemLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(ZstdBackend::new(
            Arc::new(self.mem.clone()),
            options(self.forced),
        )))
    }
}

/// zstd around fresh temporary directories.
struct FsTarget {
    forced: bool,
}

struct FsLocation {
    dir: Arc<TempDir>,
    forced: bool,
}

impl Target for FsTarget {
    fn ranged_reads_atomic_under_overwrite(&self) -> bool {
        false
    }

    fn fresh(&self) -> Box<dyn Location> {
        Box::new(FsLocation {
            dir: Arc::new(tempfile::tempdir().expect("create a temporary directory")),
            forced: self.forced,
        })
    }
}

impl Location for FsLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        let backend = FsBackend::open(self.dir.path().join("store"), FsOptions::default())?;
        let inner = Arc::new(KeepAlive::new(
            Arc::new(backend),
            Arc::clone(&self.dir) as _,
        ));
        Ok(Arc::new(ZstdBackend::new(inner, options(self.forced))))
    }
}

/// zstd around a `MemoryBackend`, default options.
mod memory {
    use super::*;
    chest_core::conformance_tests!(MemTarget { forced: false });
}

/// zstd around a `MemoryBackend`, everything compressed in 16 KiB frames.
mod memory_forced {
    use super::*;
    chest_core::conformance_tests!(MemTarget { forced: true });
}

/// zstd around a directory, default options.
mod fs {
    use super::*;
    chest_core::conformance_tests!(FsTarget { forced: false });
}

/// zstd around a directory, everything compressed in 16 KiB frames.
mod fs_forced {
    use super::*;
    chest_core::conformance_tests!(FsTarget { forced: true });
}
