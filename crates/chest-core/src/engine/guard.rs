//! Calls into user code (serializers, weighers, update closures) that may
//! panic: a panic becomes an [`Error::Panicked`] where the chest can carry
//! on consistently.

use std::any::Any;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};

/// Runs `f`; a panic becomes [`Error::Panicked`] naming `what` and `key`.
///
/// `AssertUnwindSafe` is sound here: on a panic the chest discards whatever
/// `f` was producing (a buffer, a weight, a value) and keeps its own state,
/// which `f` cannot reach.
pub(crate) fn catch<R, Q: Debug + ?Sized>(
    what: &'static str,
    key: &Q,
    f: impl FnOnce() -> R,
) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Error::Panicked {
        what,
        key: format!("{key:?}"),
        message: panic_message(&*payload),
    })
}

/// The message of a panic's payload, if it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}
