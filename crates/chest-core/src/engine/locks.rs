//! The locking helpers the engine's parts share.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};

/// Locks a mutex that no user code runs under (a panic there is a bug of
/// the chest's own, and the state it guards stays valid).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Several errors as one: none, the only one, or [`Error::Many`].
pub(crate) fn join(mut errors: Vec<Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}
