//! [`BackendExt`]: the conveniences every caller of a store uses, written
//! once over the required core of [`Backend`] and implemented for every
//! backend. A backend cannot override them, so a layer cannot forget to
//! forward one.

use std::ops::Range;

use bytes::Bytes;

use super::checks::unsupported;
use super::{Backend, BackendResult, GetOptions, ObjectVersion, PutMode, PutOptions};

/// Reads and writes in the shapes callers use, each one call of the
/// [`Backend`] core. Implemented for every backend (`dyn Backend`
/// included); bring it into scope to call them.
///
/// ```
/// use chest_core::{Backend, BackendExt, MemoryBackend};
/// use bytes::Bytes;
///
/// let store = MemoryBackend::new();
/// store.put("greeting", Bytes::from_static(b"hello, world"))?;
/// assert_eq!(store.get("greeting")?, "hello, world");
/// assert_eq!(store.get_range("greeting", 7..12)?, "world");
/// # Ok::<(), chest_core::BackendError>(())
/// ```
pub trait BackendExt: Backend {
    /// Stores `data` under `name`, replacing any previous object: a
    /// [`put_opts`](Backend::put_opts) with the default options (atomic,
    /// visible on return, durable after a later [`sync`](Backend::sync)).
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.put_opts(name, vec![data], PutOptions::default())
            .map(drop)
    }

    /// Stores one object made of `parts`, in order, as [`put`](Self::put)
    /// stores their concatenation; a store that writes parts one after the
    /// other saves a copy of every byte.
    fn put_parts(&self, name: &str, parts: Vec<Bytes>) -> BackendResult<()> {
        self.put_opts(name, parts, PutOptions::default()).map(drop)
    }

    /// Stores `data` under `name` and makes it durable before returning
    /// ([`PutOptions::durable`]): how a chest commits its manifests.
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.put_opts(name, vec![data], PutOptions::durable())
            .map(drop)
    }

    /// A durable write under a condition ([`PutMode::Create`] or
    /// [`PutMode::Update`]); returns the new object's version. A condition
    /// that does not hold is [`BackendError::Conflict`](crate::BackendError::Conflict);
    /// a store without conditional writes answers
    /// [`BackendError::Unsupported`](crate::BackendError::Unsupported).
    fn put_if(&self, name: &str, data: Bytes, mode: PutMode) -> BackendResult<ObjectVersion> {
        match self.put_opts(name, vec![data], PutOptions::durable_if(mode))? {
            Some(version) => Ok(version),
            None => Err(unsupported(
                self.location(),
                format!("conditional write of {name:?} (the store gave no version)"),
            )),
        }
    }

    /// Reads a whole object.
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        Ok(self.get_opts(name, GetOptions::default())?.data)
    }

    /// Reads bytes `range` of an object: exactly `range.end - range.start`
    /// bytes, or [`BackendError::RangeOutOfBounds`](crate::BackendError::RangeOutOfBounds).
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        Ok(self.get_opts(name, GetOptions::range(range))?.data)
    }

    /// Reads a whole object with its version, for a later
    /// [`put_if`](Self::put_if) with [`PutMode::Update`]. A store without
    /// versions answers [`BackendError::Unsupported`](crate::BackendError::Unsupported).
    fn get_versioned(&self, name: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        let read = self.get_opts(name, GetOptions::versioned())?;
        match read.version {
            Some(version) => Ok((read.data, version)),
            None => Err(unsupported(
                self.location(),
                format!("versioned read of {name:?} (the store gave no version)"),
            )),
        }
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}
