//! The directory lock: an advisory lock on `<dir>/.chest.lock`.

use std::fs::{File, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use chest_core::BackendError;

/// Name of the lock file inside the store directory.
pub const LOCK_FILE: &str = ".chest.lock";

/// A held lock; released (and, for a writer, its pid cleared) on drop.
///
/// A lock file this open created is removed again by
/// [`DirLock::remove_if_unused`] when the store wrote nothing (a folder that
/// was not a chest is left as it was). So that a removal never splits the
/// lock, an opener checks after locking that the file it locked is still
/// the one at the path, and starts over if it is not (it was removed
/// between its open and its lock).
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    exclusive: bool,
    path: std::path::PathBuf,
    /// This open created the lock file.
    created: bool,
}

/// Attempts at taking a lock whose file another opener keeps removing.
const ATTEMPTS: usize = 16;

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
        for _ in 0..ATTEMPTS {
            match Self::try_acquire(root, location, exclusive)? {
                Taken::Lock(lock) => return Ok(lock),
                Taken::Again => continue,
            }
        }
        Err(BackendError::Locked {
            location: location.to_string(),
            detail: format!(
                "its lock file {} was removed {ATTEMPTS} times while this open took it",
                root.join(LOCK_FILE).display()
            ),
        })
    }

    /// One attempt of [`DirLock::acquire`].
    fn try_acquire(root: &Path, location: &str, exclusive: bool) -> Result<Taken, BackendError> {
        let path = root.join(LOCK_FILE);
        let io = |op: &'static str, source: std::io::Error| BackendError::Io {
            location: location.to_string(),
            op,
            path: path.display().to_string(),
            source,
        };
        let create_new = || {
            File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
        };
        let (mut file, created) = match File::options().read(true).write(exclusive).open(&path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == ErrorKind::NotFound => match create_new() {
                Ok(f) => (f, true),
                // Created by another opener since: take it.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(Taken::Again),
                Err(e)
                    if !exclusive
                        && matches!(
                            e.kind(),
                            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
                        ) =>
                {
                    return Ok(Taken::Lock(None))
                }
                Err(e) => return Err(io("create lock file", e)),
            },
            Err(e) => return Err(io("open lock file", e)),
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
        if !still_at(&file, &path) {
            // Removed (by an opener that wrote nothing) between our open and
            // our lock: a new opener would lock another file. Start over.
            return Ok(Taken::Again);
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
        Ok(Taken::Lock(Some(DirLock {
            file,
            exclusive,
            path,
            created,
        })))
    }

    /// Removes the lock file if this open created it, for a store that
    /// wrote nothing: the directory is left as it was found. A reader does
    /// so only if no other reader holds the file (it must take the lock
    /// exclusively first); openers that opened the file meanwhile find it
    /// gone once they lock it, and start over.
    pub(crate) fn remove_if_unused(&mut self) {
        if !self.created {
            return;
        }
        if !self.exclusive && self.file.try_lock().is_err() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one attempt at the lock gave.
enum Taken {
    Lock(Option<DirLock>),
    /// The file changed under the attempt: try again.
    Again,
}

/// Whether `file` (locked) is still the lock file at `path`.
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `file` (locked) is still the lock file at `path`: elsewhere an
/// open file cannot be removed, so it is.
#[cfg(not(unix))]
fn still_at(_file: &File, _path: &Path) -> bool {
    true
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_removed_and_made_again_is_not_the_one_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let old = File::create(&path).unwrap();
        assert!(still_at(&old, &path));
        std::fs::remove_file(&path).unwrap();
        assert!(!still_at(&old, &path), "removed");
        let new = File::create(&path).unwrap();
        assert!(!still_at(&old, &path), "replaced by another file");
        assert!(still_at(&new, &path));
    }

    #[test]
    fn an_opener_that_opened_a_removed_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        // A first opener creates the file and leaves without writing.
        let mut first = DirLock::acquire(dir.path(), "test", true).unwrap().unwrap();
        assert!(first.created);
        // A second opener opened it before the removal (it holds the old file)...
        let stale = File::open(dir.path().join(LOCK_FILE)).unwrap();
        first.remove_if_unused();
        drop(first);
        // ...and would lock the removed file: the check sends it back.
        stale.try_lock_shared().unwrap();
        assert!(!still_at(&stale, &dir.path().join(LOCK_FILE)));
        let again = DirLock::acquire(dir.path(), "test", true).unwrap().unwrap();
        assert!(again.created && dir.path().join(LOCK_FILE).exists());
    }
}
