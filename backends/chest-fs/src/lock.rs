//! The directory lock: an advisory lock on `<dir>/.chest.lock`.

use std::fs::{File, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use chest_core::BackendError;

/// Name of the lock file inside the store directory.
pub const LOCK_FILE: &str = ".chest.lock";

/// A held lock; released (and, for a writer, its pid cleared) on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    exclusive: bool,
}

impl DirLock {
    /// Takes the exclusive (writer) or shared (reader) lock of `root`.
    ///
    /// A reader of a directory it cannot create the lock file in (read-only
    /// media, another user's directory) goes without a lock: `Ok(None)`.
    pub(crate) fn acquire(
        root: &Path,
        location: &str,
        exclusive: bool,
    ) -> Result<Option<DirLock>, BackendError> {
        let path = root.join(LOCK_FILE);
        let io = |op: &'static str, source: std::io::Error| BackendError::Io {
            location: location.to_string(),
            op,
            path: path.display().to_string(),
            source,
        };
        let mut file = if exclusive {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io("open lock file", e))?
        } else {
            match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    match File::options()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                    {
                        Ok(f) => f,
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
                            ) =>
                        {
                            return Ok(None)
                        }
                        Err(e) => return Err(io("create lock file", e)),
                    }
                }
                Err(e) => return Err(io("open lock file", e)),
            }
        };
        let locked = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(BackendError::Locked {
                    location: location.to_string(),
                    detail: held_by(&mut file, &path, exclusive),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io("lock", e)),
        }
        if exclusive {
            // Best effort: the pid only makes the message of a refused
            // opener more helpful; the lock itself is what protects.
            let pid = std::process::id();
            let _ = file
                .set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()));
        }
        Ok(Some(DirLock { file, exclusive }))
    }
}

/// The message for a refused opener: who holds the directory.
fn held_by(file: &mut File, path: &Path, exclusive: bool) -> String {
    let mut text = String::new();
    let pid = file
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    let whose = match pid {
        Some(pid) if pid == std::process::id() => format!(" (pid {pid}, this very process)"),
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    };
    let lock = path.display();
    match (exclusive, pid) {
        (true, None) => format!(
            "the directory is in use by another writer or by readers; close them first \
             (lock file {lock})"
        ),
        (true, Some(_)) => format!(
            "the directory is in use by another writer{whose}; close it first (lock file {lock})"
        ),
        (false, _) => format!(
            "the directory is in use by another writer{whose}, so it cannot be opened \
             read-only now (lock file {lock})"
        ),
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if self.exclusive {
            let _ = self.file.set_len(0);
        }
        let _ = self.file.unlock();
    }
}
