//! Ranged reads: the open read handles of recently read objects, and how a
//! range is read through one — a `pread` into a new buffer, or, with
//! [`FsOptions::mmap`](crate::FsOptions::mmap) on Unix, a copy out of the
//! file mapped into memory (no system call once the pages are mapped).
//!
//! # Why a map is safe here
//!
//! Mapping a file is sound only while nobody truncates or rewrites it. This
//! store never does either to an object: a `put` writes a new temporary
//! file and renames it over the name, and a `delete` unlinks it, so a map
//! keeps showing the bytes the object had when it was mapped (the old inode
//! lives on while mapped). Another program that writes into a chest's files
//! in place (or into the file an object's symbolic link points to) breaks
//! that, as it breaks every promise of the chest; with a map, a file cut
//! short underneath it, or a disk error while a page is read, ends the
//! process with `SIGBUS` instead of an error. That is why mapping is an
//! option. The bytes read are copied out of the map, so nothing handed out
//! keeps a file mapped (or a deleted file's space taken), and a fault can
//! only happen inside the read. Only the cached handles hold maps, at most
//! [`MAX_HANDLES`] of them.
//!
//! Not on Windows, which refuses to replace or delete a mapped file: there
//! (and wherever a file cannot be mapped) reads use the file itself.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use memmap2::Mmap;

/// How many open read handles the store keeps: segments of packed values
/// are read many times, a few bytes at a time, and opening (or mapping) the
/// file costs more than the read.
const MAX_HANDLES: usize = 256;

/// An object open for ranged reads.
#[derive(Clone)]
pub(crate) enum Handle {
    /// The file and its size: read with `pread`.
    File(Arc<File>, u64),
    /// The whole file mapped: read by slicing.
    Map(Arc<Mmap>),
}

impl Handle {
    /// Opens `file` of `size` bytes for reads: mapped if `mmap`, on Unix,
    /// and not empty (an empty file cannot be mapped, and has nothing to
    /// read). A file that cannot be mapped (some FUSE file systems, the
    /// address space or the count of maps exhausted) is read with `pread`.
    pub fn new(file: File, size: u64, mmap: bool) -> Self {
        if mmap && cfg!(unix) && size > 0 {
            // SAFETY: the store never truncates or rewrites an object's
            // file in place (see the module's docs); a `put` renames a new
            // file over it, which leaves this map's inode as it was.
            if let Ok(map) = unsafe { Mmap::map(&file) } {
                return Handle::Map(Arc::new(map));
            }
        }
        Handle::File(Arc::new(file), size)
    }

    /// The object's size when it was opened.
    pub fn size(&self) -> u64 {
        match self {
            Handle::File(_, size) => *size,
            Handle::Map(map) => map.len() as u64,
        }
    }

    /// Reads `range`, which the caller checked against [`size`](Handle::size).
    pub fn read(&self, range: Range<u64>) -> io::Result<Bytes> {
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "range too long"))?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        match self {
            Handle::File(file, _) => Ok(Bytes::from(read_range(file, len, range.start)?)),
            Handle::Map(map) => {
                let start = usize::try_from(range.start)
                    .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "offset out of range"))?;
                // Copied out: a slice sharing the map would keep the whole
                // file mapped for as long as a value holds it.
                Ok(Bytes::copy_from_slice(&map[start..start + len]))
            }
        }
    }
}

/// The open handles, by object name.
pub(crate) struct Handles {
    open: Mutex<HashMap<String, Handle, foldhash::fast::RandomState>>,
}

impl Handles {
    pub fn new() -> Self {
        Self {
            open: Mutex::new(HashMap::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Handle, foldhash::fast::RandomState>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handle of `name`, opened by `open` if it is not open yet. Opened
    /// under the lock, so a `put` or `delete` that [`forget`](Handles::forget)s
    /// the handle after replacing the file cannot race a stale one in. Looked
    /// up by name: a hit costs no path.
    pub fn get_or_open<E>(
        &self,
        name: &str,
        open: impl FnOnce() -> Result<Handle, E>,
    ) -> Result<Handle, E> {
        let mut handles = self.lock();
        if let Some(handle) = handles.get(name) {
            return Ok(handle.clone());
        }
        let handle = open()?;
        if handles.len() >= MAX_HANDLES {
            let victim = handles.keys().next().cloned();
            if let Some(victim) = victim {
                handles.remove(&victim);
            }
        }
        handles.insert(name.to_string(), handle.clone());
        Ok(handle)
    }

    /// Forgets the handle of a replaced or deleted object.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }
}

/// Reads `len` bytes at `offset` into a new buffer, without filling it
/// with zeros first (on Unix: `pread` into the buffer's spare capacity).
#[cfg(unix)]
fn read_range(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let at = offset + done as u64;
        let at = libc::off_t::try_from(at)
            .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "offset out of range"))?;
        // SAFETY: the pointer and length describe the vector's spare
        // capacity, which `pread` writes at most `len - done` bytes into;
        // only the bytes it reports written are then counted as initialized.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.spare_capacity_mut().as_mut_ptr().cast(),
                len - done,
                at,
            )
        };
        match n {
            n if n > 0 => unsafe { buf.set_len(done + n as usize) },
            0 => return Err(io::Error::from(ErrorKind::UnexpectedEof)),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}

#[cfg(not(unix))]
fn read_range(mut file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}
