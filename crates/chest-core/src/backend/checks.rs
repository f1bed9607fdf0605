//! Shared helpers of backends: the checks of names and ranges every store
//! makes the same way, and the joining of parts for stores that cannot
//! write them one after the other.

use std::ops::Range;

use bytes::Bytes;

use super::{BackendResult, GetOptions, PutOptions};
use crate::error::BackendError;

/// The parts of an object as one buffer (no copy for a single part).
pub fn join_parts(parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => {
            let mut joined = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in &parts {
                joined.extend_from_slice(p);
            }
            Bytes::from(joined)
        }
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

/// What a read of `range` gives of an object read whole (`None`: all of
/// it), checked as [`check_range`] checks: for stores that read whole
/// objects and slice them (no copy).
pub fn slice_whole(
    location: &str,
    name: &str,
    whole: Bytes,
    range: Option<Range<u64>>,
) -> BackendResult<Bytes> {
    match range {
        None => Ok(whole),
        Some(range) => {
            check_range(location, name, &range, whole.len() as u64)?;
            Ok(whole.slice(range.start as usize..range.end as usize))
        }
    }
}

/// For a store without versions: refuses a conditional write (rule R12:
/// refused, nothing written), lets any other through.
pub fn refuse_conditional(location: &str, name: &str, opts: &PutOptions) -> BackendResult<()> {
    if opts.mode.is_conditional() {
        return Err(unsupported(
            location,
            format!("conditional write of {name:?} (the store keeps no versions)"),
        ));
    }
    Ok(())
}

/// For a store without versions: refuses a versioned read (rule R12),
/// lets any other through.
pub fn refuse_versioned(location: &str, name: &str, opts: &GetOptions) -> BackendResult<()> {
    if opts.version {
        return Err(unsupported(
            location,
            format!("versioned read of {name:?} (the store keeps no versions)"),
        ));
    }
    Ok(())
}

/// The error of a store that cannot do what was asked: a conditional
/// write or a versioned read of a store without versions (see
/// [`Backend::single_writer`](super::Backend::single_writer)).
pub fn unsupported(location: &str, operation: String) -> BackendError {
    BackendError::Unsupported {
        location: location.to_string(),
        operation,
    }
}
