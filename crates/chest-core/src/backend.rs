//! The [`Backend`] trait: a flat namespace of named byte objects.

use std::fmt::Debug;
use std::ops::Range;

use bytes::Bytes;

use crate::error::BackendError;

/// Result of backend operations.
pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// A store of named byte objects, the lowest layer of a chest.
///
/// Object names are UTF-8 strings of `/`-separated, non-empty components
/// (like S3 keys). A backend must store any such name safely or refuse it with
/// [`BackendError::InvalidName`]; the spill store itself only uses names made
/// of `[a-z0-9_./-]`.
///
/// Semantics every implementation holds to (checked by the conformance suite):
/// - `put` replaces an object atomically: a reader sees the old or the new
///   bytes, never a mix, and a crash leaves one of them.
/// - `get` of a missing object is [`BackendError::NotFound`].
/// - `delete` of a missing object succeeds.
/// - `list(prefix)` returns every name starting with `prefix`, sorted.
///
/// The trait is blocking; backends over async clients run their own runtime.
pub trait Backend: Send + Sync + Debug {
    /// Where this store lives, for messages (usually its URL).
    fn location(&self) -> &str;

    /// Stores `data` under `name`, replacing any previous object.
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()>;

    /// Stores several objects; backends may write them concurrently. The
    /// default writes them one after another. On error, some may be written.
    fn put_many(&self, objects: Vec<(String, Bytes)>) -> BackendResult<()> {
        for (name, data) in objects {
            self.put(&name, data)?;
        }
        Ok(())
    }

    /// Stores `data` under `name` and makes that object durable before
    /// returning, as far as the store's durability settings promise (a store
    /// opened to never fsync says what it gives up). On a local directory:
    /// write a temporary file, fsync it, rename it over the object, fsync the
    /// directory; a crash at any point leaves the old or the new bytes whole,
    /// never an empty or torn object. A chest commits its manifests this way.
    ///
    /// The default calls [`put`](Backend::put) then [`sync`](Backend::sync).
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.put(name, data)?;
        self.sync()
    }

    /// Reads a whole object.
    fn get(&self, name: &str) -> BackendResult<Bytes>;

    /// Reads `range` (in bytes) of an object. A range reaching past the end is
    /// [`BackendError::RangeOutOfBounds`].
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes>;

    /// Reads several objects (`None`) or ranges of them, in order; backends
    /// may read them at once. The default reads them one after another.
    fn get_many(&self, requests: Vec<(String, Option<Range<u64>>)>) -> Vec<BackendResult<Bytes>> {
        requests
            .into_iter()
            .map(|(name, range)| match range {
                Some(range) => self.get_range(&name, range),
                None => self.get(&name),
            })
            .collect()
    }

    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, name: &str) -> BackendResult<()>;

    /// Names of all objects whose name starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>>;

    /// Makes every completed `put` and `delete` durable (e.g. fsync of the
    /// directory). The default does nothing, for stores where a completed
    /// write is already durable.
    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }

    /// How many objects [`put_many`](Backend::put_many) writes at once. A
    /// chest evicts in batches big enough to use it (default 1: one at a time).
    fn write_concurrency(&self) -> usize {
        1
    }

    /// Counters of the store itself, shown in the chest's
    /// [`Stats`](crate::Stats) (e.g. bytes before and after compression).
    /// A layer includes the counters of the backend it wraps.
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// Checks the shape of an object name: non-empty `/`-separated components.
/// Backends call it to refuse names uniformly.
pub fn check_name(location: &str, name: &str) -> BackendResult<()> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name.split('/').any(str::is_empty) {
        Some("a `/`-separated component is empty")
    } else if name.contains('\0') {
        Some("the name contains a NUL character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BackendError::InvalidName {
            location: location.to_string(),
            name: name.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// Checks `range` against an object of `size` bytes.
pub fn check_range(location: &str, name: &str, range: &Range<u64>, size: u64) -> BackendResult<()> {
    if range.start > range.end || range.end > size {
        return Err(BackendError::RangeOutOfBounds {
            location: location.to_string(),
            name: name.to_string(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}
