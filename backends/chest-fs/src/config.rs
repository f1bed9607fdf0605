//! How an [`FsBackend`](crate::FsBackend) is opened: [`FsOptions`], and
//! the `file://` URL that gives them (its query keys through the core's
//! one query grammar, [`Query`]).

use std::path::PathBuf;

use chest_core::registry::{parse_bool, OpenOptions, Query};
#[cfg(doc)]
use chest_core::Backend;
use chest_core::Error;
use url::Url;

/// The query keys a `file://` URL may carry (see the
/// [crate docs' table](crate#query-keys)).
pub const QUERY_KEYS: &[&str] = &["fsync", "mmap"];

/// How to open an [`FsBackend`](crate::FsBackend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsOptions {
    /// Create the directory (and its parents) if it does not exist. Ignored
    /// when `read_only`.
    pub create: bool,
    /// Only read: take the shared lock, refuse `put` and `delete`.
    pub read_only: bool,
    /// Make every `put` durable before it returns: fsync the file before
    /// the rename and its directory after. Without it, writes become durable
    /// at the next [`Backend::sync`].
    pub fsync: bool,
    /// Whether [`Backend::sync`] (called by every chest flush) fsyncs what
    /// was written since the last one. `false` never fsyncs: for scratch
    /// data that need not survive a machine crash (a process crash is still
    /// safe: writes are renames).
    pub sync_on_flush: bool,
    /// On Unix, read ranges of objects (a chest's values packed into
    /// segments) by copying them out of files mapped into memory instead of
    /// with a system call each: 1.6 × the random reads of small values in
    /// one run of W2. But the pages read count in the process's resident
    /// memory (outside a chest's budget) until the kernel reclaims them,
    /// and a file cut short underneath the store by another program, or a
    /// disk error while a page is read, ends the process with `SIGBUS`
    /// instead of an error. Off by default; ignored elsewhere (Windows
    /// refuses to replace a mapped file).
    pub mmap: bool,
}

impl Default for FsOptions {
    /// Create if missing, writable, no per-put fsync.
    fn default() -> Self {
        Self {
            create: true,
            read_only: false,
            fsync: false,
            sync_on_flush: true,
            mmap: false,
        }
    }
}

/// The directory and the options a `file://` URL names, opened as `opts`
/// says (create, read only). Errors: [`Error::InvalidUrl`] for a URL that
/// is not a local path, an unknown query key or a value not understood.
pub(crate) fn from_url(url: &Url, opts: &OpenOptions) -> chest_core::Result<(PathBuf, FsOptions)> {
    let path = url.to_file_path().map_err(|()| Error::InvalidUrl {
        url: url.to_string(),
        reason: "not a local directory: a file URL needs an absolute path and no host \
                 (or `localhost`)"
            .into(),
    })?;
    let query = Query::parse(url, QUERY_KEYS)?;
    let (fsync, sync_on_flush) = query
        .get_with("fsync", |v| match v.trim().to_ascii_lowercase().as_str() {
            "flush" => Ok((false, true)),
            "always" => Ok((true, true)),
            "never" => Ok((false, false)),
            other => match parse_bool(other) {
                Ok(true) => Ok((true, true)),
                Ok(false) => Ok((false, false)),
                Err(_) => Err("use always, flush or never".into()),
            },
        })?
        .unwrap_or((false, true));
    let mmap = query.get_bool("mmap")?.unwrap_or(false);
    Ok((
        path,
        FsOptions {
            create: opts.create,
            read_only: opts.read_only,
            fsync,
            sync_on_flush,
            mmap,
        },
    ))
}
