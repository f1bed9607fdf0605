//! What a write or a read asks of a store, and what a read gives back:
//! the arguments of [`Backend::put_opts`](super::Backend::put_opts) and
//! [`Backend::get_opts`](super::Backend::get_opts).

use std::ops::Range;

use bytes::Bytes;

/// How [`Backend::put_opts`](super::Backend::put_opts) writes an object.
///
/// ```
/// use chest_core::backend::{PutMode, PutOptions};
///
/// // A plain write: replace whatever is there; durable after a later sync.
/// assert_eq!(PutOptions::default().mode, PutMode::Overwrite);
/// // A manifest commit: durable before the call returns.
/// assert!(PutOptions::durable().durable);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Whether the write replaces any object, or only under a condition.
    pub mode: PutMode,
    /// Whether the object is durable (survives a crash of the machine)
    /// when the call returns, rather than after a later
    /// [`sync`](super::Backend::sync), as far as the store's durability
    /// settings promise.
    pub durable: bool,
}

impl PutOptions {
    /// An unconditional write, durable before it returns.
    pub fn durable() -> Self {
        Self {
            mode: PutMode::Overwrite,
            durable: true,
        }
    }

    /// A durable write under `mode`: what a conditional write of the
    /// chest's lease or manifest asks.
    pub fn durable_if(mode: PutMode) -> Self {
        Self {
            mode,
            durable: true,
        }
    }
}

/// The condition of a write ([`PutOptions::mode`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace any object of the name, or create it.
    #[default]
    Overwrite,
    /// Only if no object has the name (create-only).
    Create,
    /// Only if the object exists and is still at this version
    /// (compare-and-swap).
    Update(ObjectVersion),
}

impl PutMode {
    /// Whether the write is conditional (`Create` or `Update`).
    pub fn is_conditional(&self) -> bool {
        !matches!(self, PutMode::Overwrite)
    }
}

/// What [`Backend::get_opts`](super::Backend::get_opts) reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Bytes `start..end` of the object (start inclusive, end exclusive);
    /// `None` for the whole object.
    pub range: Option<Range<u64>>,
    /// Whether the object's [`ObjectVersion`] is wanted with its bytes.
    pub version: bool,
}

impl GetOptions {
    /// The whole object and its version.
    pub fn versioned() -> Self {
        Self {
            range: None,
            version: true,
        }
    }

    /// Bytes `range` of the object.
    pub fn range(range: Range<u64>) -> Self {
        Self {
            range: Some(range),
            version: false,
        }
    }
}

/// What [`Backend::get_opts`](super::Backend::get_opts) read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    /// The bytes asked for.
    pub data: Bytes,
    /// The object's version: present when [`GetOptions::version`] asked
    /// for it (a store may give it unasked).
    pub version: Option<ObjectVersion>,
}

impl GetResult {
    /// Bytes read without a version.
    pub fn data(data: Bytes) -> Self {
        Self {
            data,
            version: None,
        }
    }
}

/// The version of an object, as a conditional write returns it and a
/// versioned read gives it (an ETag on S3; opaque to the chest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion(String);

impl ObjectVersion {
    /// A version from the store's own token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The store's token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
