//! chest-fs: the local-directory [`Backend`](chest_core::Backend) of
//! [chest](https://docs.rs/chest).
//!
//! An [`FsBackend`] keeps each object in its own file under one directory.
//! Linking this crate registers the `file` URL scheme (and plain paths,
//! which the registry turns into `file://` URLs) and the store of temporary
//! chests:
//!
//! | URL | store |
//! | --- | --- |
//! | `file:///abs/dir`, `/abs/dir`, `rel/dir` | the directory, created if missing |
//! | (none: [`Chest::temp`](chest_core::Chest::temp)) | a new directory under the system's temporary directory, removed on drop; never fsynced |
//!
//! ```
//! use bytes::Bytes;
//! use chest_core::{Backend, BackendExt};
//! use chest_fs::{FsBackend, FsOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = FsBackend::open(dir.path().join("c1"), FsOptions::default())?;
//! store.put("data/00000001", Bytes::from_static(b"hello"))?;
//! store.put(".odd name", Bytes::from_static(b"x"))?;
//! assert_eq!(&store.get_range("data/00000001", 1..4)?[..], b"ell");
//! assert_eq!(store.list("")?, [".odd name", "data/00000001"]);
//! assert!(dir.path().join("c1/data/00000001").is_file()); // readable layout
//! assert!(dir.path().join("c1/%2Eodd%20name").is_file()); // escaped
//!
//! // A second writer is refused while the first one is open.
//! let err = FsBackend::open(dir.path().join("c1"), FsOptions::default()).unwrap_err();
//! assert!(err.to_string().contains("in use by another writer"));
//! drop(store);
//! assert!(FsBackend::open(dir.path().join("c1"), FsOptions::default()).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Query keys
//!
//! This table is the reference for the query keys of `file://` URLs (the
//! README links here); [`open_url`] reads them into [`FsOptions`]. Values
//! are taken in any case; any other key or value is an error.
//!
//! | query key | values | default |
//! | --- | --- | --- |
//! | `fsync` | when writes are made durable (see [Durability](#durability)): `flush`, each [`sync`](chest_core::Backend::sync) (every chest flush) fsyncs what was written since the last one; `always` (or `true`, `1`, `yes`, `on`), every object fsynced as it is written, before `put` returns; `never` (or `false`, `0`, `no`, `off`), nothing ever fsynced: scratch data (a crash of the process is still safe) | `flush` |
//! | `mmap` | `true` (or `1`, `yes`, `on`): on Unix, ranged reads (a chest's values packed into segments) copy out of files mapped into memory, without a system call each; the pages read count in the process's resident memory, outside a chest's budget, and a file cut short by another program, or a disk error, ends the process (`SIGBUS`) instead of returning an error ([`FsOptions::mmap`]); ignored elsewhere. `false` (or `0`, `no`, `off`): reads with `pread` | `false` |
//!
//! `fsync` and `mmap` combine: `file:///scratch/c1?fsync=never&mmap=true`.
//!
//! # On-disk layout
//!
//! ```text
//! <dir>/
//!   .chest.lock          the lock file (holds the writer's pid)
//!   .tmp-<pid>-<n>       a put in progress (removed when it ends or fails,
//!                        and by the next writer after a crash)
//!   chest                object "chest" (a chest's marker)
//!   manifest.00000000000000a1  object "manifest.00000000000000a1"
//!   data/00000001        object "data/00000001"
//!   %2Ehidden            object ".hidden"
//!   with%20space/x       object "with space/x"
//! ```
//!
//! Each `/`-separated component of an object name is one path component
//! (see [`names`]): kept as it is when it is made of `[A-Za-z0-9_.-]` and
//! does not start with `.`, otherwise escaped byte by byte as `%XX`. The
//! escaping is reversible, so [`list`](chest_core::Backend::list) returns the
//! exact names; files that no name escapes to (anything starting with `.`,
//! files of other programs) are ignored. A component longer than 255 bytes
//! once escaped is refused with
//! [`InvalidName`](chest_core::BackendError::InvalidName), and so is a name
//! that needs a directory where an object already is (`a/b` while `a`
//! exists, or `a` while `a/b` exists): in a directory a name cannot be a
//! file and a folder at once. Deleting an object removes the directories it
//! leaves empty.
//!
//! # Locking
//!
//! A writer holds an exclusive lock on `<dir>/.chest.lock` (an advisory
//! `flock`-style lock, [`File::try_lock`](std::fs::File::try_lock)); a
//! read-only store holds a shared one. A second writer — in another process,
//! or another `FsBackend` in this one — is refused with
//! [`BackendError::Locked`](chest_core::BackendError::Locked), naming the
//! holder's pid; so is a reader while a writer holds the directory, and a
//! writer while readers do. The lock lives as long as the backend and is
//! released when it is dropped (or when its process dies, even by a crash).
//! Locks on network file systems are only as good as the file system's
//! support for them. A reader that cannot create the lock file (read-only
//! media) reads without a lock.
//!
//! # Durability
//!
//! A `put` writes a temporary file in the directory and renames it over the
//! object, so a reader (and a crash of the process) sees the old or the new
//! bytes, never a mix; a failed write (a full disk, an I/O error) returns
//! [`BackendError::Io`](chest_core::BackendError::Io) naming the object's
//! path and leaves the old object, if any, in place.
//!
//! - With `?fsync=flush` (the default), nothing is fsynced as it is written;
//!   [`sync`](chest_core::Backend::sync) (which a chest calls at every flush)
//!   fsyncs every file written and every directory changed since the last
//!   sync, and [`put_durable`](chest_core::BackendExt::put_durable) (a chest's
//!   manifests) fsyncs the temporary file before the rename and the
//!   directory after it. After a crash of the machine (power loss, kernel panic), writes
//!   since the last sync may be lost, and some file systems may then show a
//!   recently replaced object empty or truncated.
//! - With `?fsync=never`, nothing is ever fsynced (not even by `put_durable`): a crash of the process is
//!   safe (every write is a rename), a crash of the machine may lose the
//!   chest's recent writes. For scratch data and caches.
//! - With `?fsync=always` (or `true`), a `put` fsyncs the file before the rename
//!   and its directory after it: an object is durable when `put` returns,
//!   and a crash never leaves it half-written. Deletions are made durable by
//!   `sync`.
//!
//! Temporary stores never fsync.
//!
//! # Limits
//!
//! On a case-insensitive file system (the default on macOS and Windows),
//! names that differ only in case share one file. Windows' reserved names
//! (`CON`, `NUL`, ...) are not escaped.
#![warn(missing_docs)]

mod backend;
mod config;
mod lock;
pub mod names;
mod reads;

use std::sync::Arc;

use chest_core::registry::{OpenOptions, OpenedBackend, Scheme, TempStore};
#[cfg(doc)]
use chest_core::Error;
use url::Url;

pub use backend::{FsBackend, TEMP_PREFIX};
pub use config::{FsOptions, QUERY_KEYS};
pub use lock::LOCK_FILE;

/// Opens the directory a `file://` URL names (the `file` scheme's factory).
///
/// The query keys `fsync` and `mmap` are described in the
/// [crate docs' table](crate#query-keys); any other key or value is an
/// [`Error::InvalidUrl`]. The store is persistent.
pub fn open_url(url: &Url, opts: &OpenOptions) -> chest_core::Result<OpenedBackend> {
    let (path, options) = config::from_url(url, opts)?;
    Ok(OpenedBackend {
        backend: Arc::new(FsBackend::open(&path, options)?),
        persistent: true,
    })
}

/// Opens a new temporary store ([`FsBackend::temp`]), not persistent: its
/// directory is removed when the backend is dropped.
pub fn open_temp() -> chest_core::Result<OpenedBackend> {
    Ok(OpenedBackend {
        backend: Arc::new(FsBackend::temp()?),
        persistent: false,
    })
}

chest_core::inventory::submit! { Scheme { name: "file", open: open_url } }
chest_core::inventory::submit! { TempStore { open: open_temp } }
