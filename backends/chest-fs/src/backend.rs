//! [`FsBackend`]: objects as files in a directory.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use chest_core::backend::{check_name, check_range, refuse_conditional, refuse_versioned};
use chest_core::{
    Backend, BackendError, BackendResult, Capabilities, GetOptions, GetResult, ObjectVersion,
    PutOptions, ReadCost, SingleWriter,
};
use tempfile::TempDir;

use crate::config::FsOptions;
use crate::lock::DirLock;
use crate::reads::{Handle, Handles};

use crate::names::{decode_component, encode_component};

/// Prefix of the temporary files a `put` writes before renaming them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// How many written files may wait for the next [`Backend::sync`] before a
/// `put` fsyncs them itself (keeps the bookkeeping bounded).
const MAX_DIRTY_FILES: usize = 16_384;

/// How often a `put` retries its rename when a concurrent `delete` removes
/// the (empty) parent directory it has just created.
const INSTALL_ATTEMPTS: usize = 16;

/// Numbers the temporary files of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Files and directories changed since the last sync.
#[derive(Debug, Default)]
struct Dirty {
    files: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
}

#[derive(Debug, Default)]
struct Counters {
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
    fsyncs: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A [`Backend`] over a local directory: one file per object.
///
/// See the [crate documentation](crate) for the layout, the lock and the
/// durability guarantees.
pub struct FsBackend {
    root: PathBuf,
    location: String,
    opts: FsOptions,
    dirty: Mutex<Dirty>,
    /// Open handles (and sizes) of recently range-read objects.
    handles: Handles,
    counters: Counters,
    /// Dropped before `temp`, so the lock is released before the directory goes.
    lock: Option<DirLock>,
    /// Whether this store wrote or removed anything: if not, the lock file
    /// it created goes when it is dropped (see [`DirLock::remove_if_unused`]).
    changed: AtomicBool,
    temp: Option<TempDir>,
}

impl fmt::Debug for FsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsBackend")
            .field("root", &self.root)
            .field("read_only", &self.opts.read_only)
            .field("fsync", &self.opts.fsync)
            .field("sync_on_flush", &self.opts.sync_on_flush)
            .field("mmap", &self.opts.mmap)
            .field("temporary", &self.temp.is_some())
            .finish()
    }
}

/// The `file://` URL of a directory.
fn dir_url(root: &Path) -> String {
    url::Url::from_directory_path(root)
        .map(String::from)
        .unwrap_or_else(|()| format!("file://{}", root.display()))
}

impl FsBackend {
    /// Opens the store in directory `path` (relative paths are resolved
    /// against the current directory), taking its lock: exclusive for a
    /// writer, shared for `read_only`.
    ///
    /// Errors: [`BackendError::MissingStore`] if the directory does not exist
    /// and is not to be created; [`BackendError::Locked`] if another writer
    /// (or, for a writer, any other opener) holds it; [`BackendError::Io`]
    /// for file system failures.
    ///
    /// A writer removes temporary files a crashed writer left behind.
    pub fn open(path: impl AsRef<Path>, opts: FsOptions) -> Result<Self, BackendError> {
        Self::open_inner(path.as_ref(), opts, None)
    }

    /// A new store in a fresh temporary directory, removed (with everything
    /// in it) when the backend is dropped. It never fsyncs.
    pub fn temp() -> Result<Self, BackendError> {
        let dir = tempfile::Builder::new()
            .prefix("chest-")
            .tempdir()
            .map_err(|source| BackendError::Io {
                location: "(temporary store)".into(),
                op: "create a temporary directory in",
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
        let path = dir.path().to_path_buf();
        let opts = FsOptions {
            create: false,
            read_only: false,
            fsync: false,
            sync_on_flush: false,
            mmap: false,
        };
        Self::open_inner(&path, opts, Some(dir))
    }

    fn open_inner(
        path: &Path,
        opts: FsOptions,
        temp: Option<TempDir>,
    ) -> Result<Self, BackendError> {
        let root = std::path::absolute(path).map_err(|source| BackendError::Io {
            location: path.display().to_string(),
            op: "resolve",
            path: path.display().to_string(),
            source,
        })?;
        let location = dir_url(&root);
        let io = |op: &'static str, source: io::Error| BackendError::Io {
            location: location.clone(),
            op,
            path: root.display().to_string(),
            source,
        };
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BackendError::Other {
                    location: location.clone(),
                    message: format!("{} exists but is not a directory", root.display()),
                    source: None,
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if opts.create && !opts.read_only {
                    fs::create_dir_all(&root).map_err(|e| io("create directory", e))?;
                } else {
                    let hint = if opts.read_only {
                        "a read-only open never creates it"
                    } else {
                        "open with `create` to make it"
                    };
                    return Err(BackendError::MissingStore {
                        location,
                        detail: format!("the directory {} does not exist ({hint})", root.display()),
                    });
                }
            }
            Err(e) => return Err(io("open directory", e)),
        }
        let lock = DirLock::acquire(&root, &location, !opts.read_only)?;
        let backend = Self {
            root,
            location,
            opts,
            dirty: Mutex::default(),
            handles: Handles::new(),
            counters: Counters::default(),
            lock,
            changed: AtomicBool::new(false),
            temp,
        };
        if !opts.read_only {
            backend.remove_stale_temp_files();
        }
        Ok(backend)
    }

    /// The store's directory (absolute).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The options the store was opened with.
    pub fn options(&self) -> FsOptions {
        self.opts
    }

    /// `true` for a store made by [`FsBackend::temp`], whose directory is
    /// removed on drop.
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }

    /// The file an object is (or would be) stored in. Refuses names the
    /// backend cannot store with [`BackendError::InvalidName`].
    pub fn object_path(&self, name: &str) -> BackendResult<PathBuf> {
        check_name(&self.location, name)?;
        let mut path = self.root.clone();
        for component in name.split('/') {
            let encoded =
                encode_component(component).map_err(|reason| self.invalid(name, reason))?;
            path.push(&*encoded);
        }
        Ok(path)
    }

    fn invalid(&self, name: &str, reason: String) -> BackendError {
        BackendError::InvalidName {
            location: self.location.clone(),
            name: name.to_string(),
            reason,
        }
    }

    fn io(&self, op: &'static str, path: &Path, source: io::Error) -> BackendError {
        BackendError::Io {
            location: self.location.clone(),
            op,
            path: path.display().to_string(),
            source,
        }
    }

    fn not_found(&self, name: &str) -> BackendError {
        BackendError::NotFound {
            location: self.location.clone(),
            name: name.to_string(),
        }
    }

    fn dirty(&self) -> MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether changes are tracked for [`Backend::sync`] (not for temporary
    /// stores, which are never synced, nor for read-only ones).
    fn tracks_dirty(&self) -> bool {
        self.temp.is_none() && !self.opts.read_only && self.opts.sync_on_flush
    }

    fn check_writable(&self, name: &str) -> BackendResult<()> {
        if self.opts.read_only {
            return Err(BackendError::Other {
                location: self.location.clone(),
                message: format!(
                    "cannot write or delete object {name:?}: the store is opened read-only"
                ),
                source: None,
            });
        }
        Ok(())
    }

    /// Removes the temporary files of writers that crashed. Only called with
    /// the exclusive lock held, so no live writer owns any of them.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
                && entry.file_type().is_ok_and(|t| t.is_file());
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes `data` to a new temporary file in the store's directory
    /// (fsynced if `fsync`), and returns its path. On failure, nothing is left.
    fn write_temp(&self, target: &Path, parts: &[Bytes], fsync: bool) -> BackendResult<PathBuf> {
        let pid = std::process::id();
        let mut attempts = 0;
        let (mut file, tmp) = loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self.root.join(format!("{TEMP_PREFIX}{pid}-{n}"));
            match File::options().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (f, tmp),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 64 => attempts += 1,
                Err(e) => return Err(self.io("create temporary file", &tmp, e)),
            }
        };
        let mut written = parts
            .iter()
            .try_for_each(|p| file.write_all(p))
            .map_err(|e| self.io("write", target, e));
        if written.is_ok() && fsync {
            written = file.sync_all().map_err(|e| self.io("fsync", target, e));
            Counters::add(&self.counters.fsyncs, 1);
        } else if written.is_ok() && self.tracks_dirty() {
            // The next `sync` will fsync this file: start its writeback now,
            // so that fsync finds little left to wait for.
            start_writeback(&file);
        }
        drop(file);
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Writes an object: temporary file, rename; `durable`: the file is
    /// fsynced before the rename and its directory after.
    fn put_object(&self, name: &str, parts: &[Bytes], durable: bool) -> BackendResult<()> {
        self.check_writable(name)?;
        self.changed.store(true, Ordering::Relaxed);
        let durable = durable && self.temp.is_none() && !self.opts.read_only;
        let target = self.object_path(name)?;
        let tmp = self.write_temp(&target, parts, durable)?;
        let installed = self.install(name, &tmp, &target);
        self.forget_handle(name);
        let created = match installed {
            Ok(created) => created,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let len: usize = parts.iter().map(Bytes::len).sum();
        Counters::add(&self.counters.bytes_written, len as u64);
        if !self.tracks_dirty() {
            return Ok(());
        }
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        let dirs = std::iter::once(parent).chain(
            created
                .iter()
                .filter_map(|d| d.parent().map(Path::to_path_buf)),
        );
        if durable {
            for dir in dirs {
                self.fsync_dir(&dir)?;
            }
            return Ok(());
        }
        let overflowing = {
            let mut dirty = self.dirty();
            dirty.files.insert(target);
            dirty.dirs.extend(dirs);
            dirty.files.len() >= MAX_DIRTY_FILES
        };
        if overflowing {
            self.sync_dirty()?;
        }
        Ok(())
    }

    /// Renames `tmp` to `target`, creating parent directories as needed.
    /// Returns the directories it created.
    fn install(&self, name: &str, tmp: &Path, target: &Path) -> BackendResult<Vec<PathBuf>> {
        let parent = target.parent().unwrap_or(&self.root);
        let mut created = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match fs::rename(tmp, target) {
                Ok(()) => return Ok(created),
                Err(e) => e,
            };
            if attempt >= INSTALL_ATTEMPTS {
                return Err(self.io("rename", target, err));
            }
            match err.kind() {
                ErrorKind::NotFound => {
                    if fs::symlink_metadata(tmp).is_err() {
                        // The temporary file itself vanished.
                        return Err(self.io("rename", tmp, err));
                    }
                    self.create_parents(name, parent, &mut created)?;
                }
                ErrorKind::NotADirectory => return Err(self.conflict(name, "rename", target, err)),
                ErrorKind::IsADirectory
                | ErrorKind::DirectoryNotEmpty
                | ErrorKind::AlreadyExists => {
                    let is_dir = fs::symlink_metadata(target).is_ok_and(|m| m.is_dir());
                    if !is_dir {
                        return Err(self.io("rename", target, err));
                    }
                    // An empty directory left behind is removed; one holding
                    // objects means the name is taken as a "folder".
                    if fs::remove_dir(target).is_err() {
                        return Err(self.invalid(
                            name,
                            format!(
                                "objects named {:?} exist, and a directory store cannot hold \
                                 both an object and objects below its name",
                                format!("{name}/…")
                            ),
                        ));
                    }
                }
                ErrorKind::InvalidFilename => {
                    return Err(
                        self.invalid(name, format!("the file system refuses the path: {err}"))
                    )
                }
                _ => return Err(self.io("rename", target, err)),
            }
        }
    }

    /// Creates the directories from the root down to `parent`. Returns early
    /// (for the caller to retry) if one vanishes meanwhile.
    fn create_parents(
        &self,
        name: &str,
        parent: &Path,
        created: &mut Vec<PathBuf>,
    ) -> BackendResult<()> {
        let Ok(rel) = parent.strip_prefix(&self.root) else {
            return fs::create_dir_all(parent).map_err(|e| self.io("create directory", parent, e));
        };
        let mut dir = self.root.clone();
        for component in rel.components() {
            dir.push(component);
            match fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => match fs::metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(self.conflict(name, "create directory", &dir, e)),
                    Err(_) => return Ok(()),
                },
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotADirectory => {
                    return Err(self.conflict(name, "create directory", &dir, e))
                }
                Err(e) if e.kind() == ErrorKind::InvalidFilename => {
                    return Err(self.invalid(name, format!("the file system refuses the path: {e}")))
                }
                Err(e) => return Err(self.io("create directory", &dir, e)),
            }
        }
        Ok(())
    }

    /// The error for a name one of whose prefixes is an object (a file
    /// where a directory would have to be).
    fn conflict(&self, name: &str, op: &'static str, path: &Path, err: io::Error) -> BackendError {
        let components: Vec<&str> = name.split('/').collect();
        for i in 1..components.len() {
            let prefix = components[..i].join("/");
            let is_object = self
                .object_path(&prefix)
                .is_ok_and(|p| fs::metadata(p).is_ok_and(|m| !m.is_dir()));
            if is_object {
                return self.invalid(
                    name,
                    format!(
                        "the object {prefix:?} exists, and a directory store cannot hold both \
                         an object and objects below its name ({:?})",
                        format!("{prefix}/…")
                    ),
                );
            }
        }
        self.io(op, path, err)
    }

    /// Forgets the cached read handle of a replaced or deleted object.
    fn forget_handle(&self, name: &str) {
        self.handles.forget(name);
    }

    /// Opens an object for reading: the file and its size.
    fn open_object(&self, name: &str, path: &Path) -> BackendResult<(File, u64)> {
        match File::open(path) {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| self.io("stat", path, e))?;
                if meta.is_dir() {
                    // Only a prefix of other objects' names.
                    return Err(self.not_found(name));
                }
                Ok((file, meta.len()))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
                ) =>
            {
                Err(self.not_found(name))
            }
            Err(e) => Err(self.io("open", path, e)),
        }
    }

    /// Removes the now-empty directories from `dir` up to (not including)
    /// the root. Returns the directories whose entries changed.
    fn prune_empty_dirs(&self, mut dir: &Path, changed: &mut Vec<PathBuf>) {
        while dir != self.root && dir.starts_with(&self.root) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(up) => {
                    changed.push(up.to_path_buf());
                    dir = up;
                }
                None => break,
            }
        }
    }

    fn fsync_file(&self, path: &Path) -> BackendResult<()> {
        #[cfg(unix)]
        let opened = File::open(path);
        #[cfg(not(unix))]
        let opened = File::options().write(true).open(path);
        match opened {
            Ok(f) => {
                Counters::add(&self.counters.fsyncs, 1);
                f.sync_all().map_err(|e| self.io("fsync", path, e))
            }
            // Deleted since it was written: nothing to make durable.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("open for fsync", path, e)),
        }
    }

    fn fsync_dir(&self, path: &Path) -> BackendResult<()> {
        #[cfg(unix)]
        {
            match File::open(path) {
                Ok(f) => {
                    Counters::add(&self.counters.fsyncs, 1);
                    f.sync_all()
                        .map_err(|e| self.io("fsync directory", path, e))
                }
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io("open directory for fsync", path, e)),
            }
        }
        #[cfg(not(unix))]
        {
            // Directories cannot be opened as files here; renames are
            // journaled by the file system.
            let _ = path;
            Ok(())
        }
    }

    /// Fsyncs everything written or changed since the last sync, then the root.
    fn sync_dirty(&self) -> BackendResult<()> {
        let mut taken = std::mem::take(&mut *self.dirty());
        taken.dirs.insert(self.root.clone());
        let result = taken
            .files
            .iter()
            .try_for_each(|f| self.fsync_file(f))
            .and_then(|()| taken.dirs.iter().try_for_each(|d| self.fsync_dir(d)));
        if result.is_err() {
            // Keep them for the next attempt.
            let mut dirty = self.dirty();
            dirty.files.extend(taken.files);
            dirty.dirs.extend(taken.dirs);
        }
        result
    }

    /// Lists the objects under `dir` (whose names start with `base`) into `out`.
    fn walk(
        &self,
        dir: PathBuf,
        base: String,
        prefix: &str,
        out: &mut Vec<String>,
    ) -> BackendResult<()> {
        let mut stack = vec![(dir, base)];
        while let Some((dir, base)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    continue
                }
                Err(e) => return Err(self.io("list", &dir, e)),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.io("list", &dir, e)),
                };
                let file_name = entry.file_name();
                let Some(decoded) = file_name.to_str().and_then(decode_component) else {
                    // Internal files (".chest.lock", ".tmp-…") and foreign ones.
                    continue;
                };
                let name = format!("{base}{decoded}");
                let file_type = match entry.file_type() {
                    Ok(t) => t,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.io("list", &entry.path(), e)),
                };
                let is_file = if file_type.is_symlink() {
                    // A link to a file is an object; links to directories
                    // are not followed (no cycles).
                    fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
                } else {
                    file_type.is_file()
                };
                if file_type.is_dir() {
                    let sub = format!("{name}/");
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        stack.push((entry.path(), sub));
                    }
                } else if is_file && name.starts_with(prefix) {
                    out.push(name);
                }
            }
        }
        Ok(())
    }

    /// A whole object, read in one go.
    fn get_whole(&self, name: &str) -> BackendResult<Bytes> {
        let path = self.object_path(name)?;
        let (mut file, size) = self.open_object(name, &path)?;
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut buf)
            .map_err(|e| self.io("read", &path, e))?;
        Counters::add(&self.counters.bytes_read, buf.len() as u64);
        Ok(Bytes::from(buf))
    }

    /// Bytes `range` of an object, through the cache of open handles.
    fn get_range_of(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        let handle = self.handles.get_or_open(name, || {
            let path = self.object_path(name)?;
            let (file, size) = self.open_object(name, &path)?;
            Ok::<_, BackendError>(Handle::new(file, size, self.opts.mmap))
        })?;
        check_range(&self.location, name, &range, handle.size())?;
        let len = range.end - range.start;
        let bytes = handle
            .read(range)
            .map_err(|e| match self.object_path(name) {
                Ok(path) => self.io("read", &path, e),
                Err(invalid) => invalid,
            })?;
        Counters::add(&self.counters.bytes_read, len);
        Ok(bytes)
    }
}

impl Drop for FsBackend {
    /// A store that wrote nothing leaves no lock file it created behind: a
    /// folder opened and refused (not a chest, no chest) stays as it was.
    fn drop(&mut self) {
        if !self.changed.load(Ordering::Relaxed) {
            if let Some(lock) = &mut self.lock {
                lock.remove_if_unused();
            }
        }
    }
}

impl Backend for FsBackend {
    fn location(&self) -> &str {
        &self.location
    }

    /// Values written together are packed into one file (one create,
    /// rename and fsync instead of one per value). A read costs about
    /// 100 µs to the first byte (a local SSD's random read, or a system
    /// call and a copy from the page cache, much less) and 1 GB/s: its
    /// latency is worth about 100 KB of transfer.
    fn capabilities(&self) -> Capabilities {
        Capabilities::DEFAULT
            .with_packs_large_values(true)
            .with_read_cost(ReadCost::new(
                std::time::Duration::from_micros(100),
                1_000_000_000,
            ))
    }

    /// The parts are written one after the other into a temporary file (no
    /// joined copy), renamed over the object. Durable
    /// ([`PutOptions::durable`]) with `?fsync=flush` or `always`: the file
    /// is fsynced before the rename and the directory after it; with
    /// `?fsync=never` (and for temporary stores) a durable write is a plain
    /// one, safe against a crash of the process only. No conditional
    /// writes: a writer holds the directory's lock instead.
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        refuse_conditional(&self.location, name, &opts)?;
        let fsync = self.opts.fsync || (opts.durable && self.opts.sync_on_flush);
        self.put_object(name, &parts, fsync)?;
        Ok(None)
    }

    /// [`SingleWriter::Held`]: a writer holds the directory's exclusive
    /// lock (see the crate docs), and a temporary store is private.
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        Ok(SingleWriter::Held)
    }

    /// A whole object is read in one go; a range through a cache of open
    /// handles (positioned reads, or a map with `?mmap=true`). No versions.
    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        refuse_versioned(&self.location, name, &opts)?;
        let data = match opts.range {
            None => self.get_whole(name)?,
            Some(range) => self.get_range_of(name, range)?,
        };
        Ok(GetResult::data(data))
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        self.check_writable(name)?;
        self.changed.store(true, Ordering::Relaxed);
        let path = self.object_path(name)?;
        let removed = fs::remove_file(&path);
        self.forget_handle(name);
        match removed {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(())
            }
            Err(e) => {
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    // Not an object, only a prefix of other objects' names.
                    return Ok(());
                }
                return Err(self.io("delete", &path, e));
            }
        }
        let parent = path.parent().unwrap_or(&self.root);
        let mut changed = vec![parent.to_path_buf()];
        self.prune_empty_dirs(parent, &mut changed);
        if self.tracks_dirty() {
            let mut dirty = self.dirty();
            dirty.files.remove(&path);
            dirty.dirs.extend(changed);
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        // Descend straight to the directory of the prefix's complete components.
        let (dir, base) = match prefix.rsplit_once('/') {
            None => (self.root.clone(), String::new()),
            Some((dirs, _)) => {
                let mut dir = self.root.clone();
                for component in dirs.split('/') {
                    match encode_component(component) {
                        Ok(encoded) => dir.push(&*encoded),
                        // No stored name has an empty or over-long component.
                        Err(_) => return Ok(Vec::new()),
                    }
                }
                (dir, format!("{dirs}/"))
            }
        };
        let mut names = Vec::new();
        self.walk(dir, base, prefix, &mut names)?;
        names.sort_unstable();
        Ok(names)
    }

    fn sync(&self) -> BackendResult<()> {
        if !self.tracks_dirty() {
            return Ok(());
        }
        self.sync_dirty()
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let c = &self.counters;
        vec![
            (
                "fs.bytes_written".into(),
                c.bytes_written.load(Ordering::Relaxed),
            ),
            ("fs.bytes_read".into(), c.bytes_read.load(Ordering::Relaxed)),
            ("fs.fsyncs".into(), c.fsyncs.load(Ordering::Relaxed)),
        ]
    }
}

/// Starts writing `file`'s dirty pages to the disk without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; nothing elsewhere).
/// Durability still comes from the fsync of `sync`; this only makes it short.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call; the
        // call reads no memory of ours. A failure only loses the head start.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}
