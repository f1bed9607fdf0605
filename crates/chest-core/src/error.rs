//! Error types: [`BackendError`] for the byte-object layer, [`Error`] for the chest.

use std::error::Error as StdError;

/// A boxed error from user code (a serializer, a backend factory).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Result of chest operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a [`Backend`](crate::Backend). Every variant names the store
/// (`location`, usually its URL) and, where there is one, the object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The object does not exist.
    #[error("object {name:?} not found in {location}")]
    NotFound {
        /// The store.
        location: String,
        /// The object name.
        name: String,
    },
    /// The object name cannot be stored by this backend.
    #[error("invalid object name {name:?} for {location}: {reason}")]
    InvalidName {
        /// The store.
        location: String,
        /// The object name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A ranged read asked for bytes past the end of the object.
    #[error(
        "range {start}..{end} is out of bounds for object {name:?} ({size} bytes) in {location}"
    )]
    RangeOutOfBounds {
        /// The store.
        location: String,
        /// The object name.
        name: String,
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// Actual size of the object.
        size: u64,
    },
    /// The object's bytes are damaged (a layer could not decode them).
    #[error("object {name:?} in {location} is corrupt: {detail}")]
    Corrupt {
        /// The store.
        location: String,
        /// The object name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Another process (or another handle in this one) holds the store for writing.
    #[error("{location} is locked by another writer: {detail}")]
    Locked {
        /// The store.
        location: String,
        /// What holds it, as far as it is known.
        detail: String,
    },
    /// A conditional write ([`BackendExt::put_if`](crate::BackendExt::put_if))
    /// found its condition false: the object exists, or is at another
    /// version. Nothing was written.
    #[error("{location}: conditional write of {name:?} refused: {detail}")]
    Conflict {
        /// The store.
        location: String,
        /// The object name.
        name: String,
        /// What was found instead.
        detail: String,
    },
    /// The store cannot do this operation.
    #[error("{location} does not support {operation}")]
    Unsupported {
        /// The store.
        location: String,
        /// What was asked.
        operation: String,
    },
    /// The store does not exist and was not to be created (a missing bucket,
    /// a missing directory opened read-only).
    #[error("{location} does not exist: {detail}")]
    MissingStore {
        /// The store.
        location: String,
        /// Details.
        detail: String,
    },
    /// An I/O error of the local file system.
    #[error("{op} {path} failed (store {location}): {source}")]
    Io {
        /// The store.
        location: String,
        /// What was being done ("write", "rename", "read", ...).
        op: &'static str,
        /// The file or object involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store refused the credentials or the operation (HTTP 401 / 403,
    /// a permission error).
    #[error("{location}: {message}")]
    Denied {
        /// The store.
        location: String,
        /// What was refused, naming the object where there is one.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store could not be reached (connection refused, DNS, timeout).
    #[error("{location}: {message}")]
    Unreachable {
        /// The store.
        location: String,
        /// What failed, naming the endpoint.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other failure of the store (a server error, a protocol failure).
    #[error("{location}: {message}")]
    Other {
        /// The store.
        location: String,
        /// What failed, naming the object where there is one.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl BackendError {
    /// `true` for [`BackendError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// The store the error is about (its [`location`](crate::Backend::location)),
    /// whatever the variant.
    pub fn location(&self) -> &str {
        match self {
            BackendError::NotFound { location, .. }
            | BackendError::InvalidName { location, .. }
            | BackendError::RangeOutOfBounds { location, .. }
            | BackendError::Corrupt { location, .. }
            | BackendError::Locked { location, .. }
            | BackendError::Conflict { location, .. }
            | BackendError::Unsupported { location, .. }
            | BackendError::MissingStore { location, .. }
            | BackendError::Io { location, .. }
            | BackendError::Denied { location, .. }
            | BackendError::Unreachable { location, .. }
            | BackendError::Other { location, .. } => location,
        }
    }

    /// The object the error is about, where it names one (for an I/O
    /// error, the file or object involved).
    pub fn object(&self) -> Option<&str> {
        match self {
            BackendError::NotFound { name, .. }
            | BackendError::InvalidName { name, .. }
            | BackendError::RangeOutOfBounds { name, .. }
            | BackendError::Corrupt { name, .. }
            | BackendError::Conflict { name, .. } => Some(name),
            BackendError::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// An error of a [`Chest`](crate::Chest) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A value could not be serialized; it stays in memory.
    #[error("cannot serialize the value of key {key} (it stays in memory): {source}")]
    Serialize {
        /// The key, as `Debug` prints it.
        key: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// A stored value could not be deserialized.
    #[error(
        "cannot deserialize the value of key {key} from object {object:?} in {location}: {source}"
    )]
    Deserialize {
        /// The key, as `Debug` prints it.
        key: String,
        /// The object holding it.
        object: String,
        /// The store.
        location: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// A stored value failed its checksum or is truncated.
    #[error("corrupt value for key {key} in object {object:?} of {location}: {detail}")]
    Corrupt {
        /// The key, as `Debug` prints it.
        key: String,
        /// The object holding it.
        object: String,
        /// The store.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// A key could not be encoded or decoded (keys are stored as CBOR).
    #[error("cannot encode or decode key {key}: {detail}")]
    Key {
        /// The key, as `Debug` prints it (or `<undecodable>`).
        key: String,
        /// What failed.
        detail: String,
    },
    /// The manifest (the persisted key index) is unreadable or of another format.
    #[error("manifest of {location} is unusable: {detail}")]
    Manifest {
        /// The store.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// The chest was written with another serializer than the one it is opened with.
    #[error("{location} was written with serializer {stored:?}, but is opened with {requested:?}")]
    SerializerMismatch {
        /// The store.
        location: String,
        /// The serializer recorded in the manifest.
        stored: String,
        /// The serializer of this chest.
        requested: String,
    },
    /// A URL could not be understood.
    #[error("invalid chest URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// No backend is registered for the URL's scheme.
    #[error("no backend registered for scheme {scheme:?} (URL {url:?}); registered: {known}")]
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The URL as given.
        url: String,
        /// The schemes that are registered.
        known: String,
    },
    /// A write was attempted on a chest opened read-only.
    #[error("{location} is opened read-only")]
    ReadOnly {
        /// The store.
        location: String,
    },
    /// A writable open of a location that holds objects but no chest: it is
    /// left untouched (nothing there is written or deleted).
    #[error(
        "{location} holds objects but no chest (no manifest, no chest marker): {found}; \
         refusing to use it, to leave them untouched — open an empty location or a chest"
    )]
    NotAChest {
        /// The location.
        location: String,
        /// Some of the names found there.
        found: String,
    },
    /// [`OpenMode::CreateNew`](crate::OpenMode::CreateNew) on a location that already holds a chest.
    #[error("{location} already holds a chest (asked to create a new one)")]
    AlreadyExists {
        /// The location.
        location: String,
    },
    /// [`OpenMode::MustExist`](crate::OpenMode::MustExist) on a location that holds no chest.
    #[error("{location} holds no chest (asked to open an existing one)")]
    NoChest {
        /// The location.
        location: String,
    },
    /// User code called by the chest (a serializer, deserializer or weigher)
    /// panicked. The chest stays consistent: the value concerned stays where
    /// it was (in memory if it was there), and the panic becomes this error.
    #[error("the {what} panicked on the value of key {key}: {message}")]
    Panicked {
        /// What panicked: "serializer", "deserializer", "weigher", or "backend"
        /// (a write by a background writer; the key is the first of its batch).
        what: &'static str,
        /// The key, as `Debug` prints it.
        key: String,
        /// The panic's message, if it had one.
        message: String,
    },
    /// A panic left the chest in a state it cannot vouch for (a shard's lock
    /// was poisoned by a panic the chest could not catch, e.g. in a key's
    /// `Hash` or in a backend). It refuses further changes and does not
    /// flush on drop, so the last durable state stays as it was; reopen it.
    #[error(
        "{location}: a panic left this chest in an unknown state; it refuses changes \
         (the last flushed state is intact: reopen the chest)"
    )]
    Poisoned {
        /// The store.
        location: String,
    },
    /// This chest's writer lease was lost (not renewed in time, or taken
    /// over by another writer after it expired): the chest is fenced, and
    /// every write fails with this error. Nothing another writer wrote is
    /// touched; this chest's unflushed changes are lost with it.
    #[error(
        "{location}: this chest is no longer the writer ({reason}); it refuses every write \
         (reopen it to continue from the current state)"
    )]
    Fenced {
        /// The store.
        location: String,
        /// How the lease was lost.
        reason: String,
    },
    /// A read-only chest found an object of its snapshot deleted: a writer
    /// has moved on and removed what the manifest this chest read names.
    #[error(
        "{location}: the value of key {key} is gone from object {object:?}: this read-only \
         chest's snapshot is stale (a writer has moved on); reopen it to read the current state"
    )]
    StaleSnapshot {
        /// The store.
        location: String,
        /// The key, as `Debug` prints it.
        key: String,
        /// The missing object.
        object: String,
    },
    /// The store cannot keep a chest to one writer (an S3 server that ignores
    /// conditional writes), so the chest refuses to open it for writing.
    #[error("{location}: cannot open for writing: {reason}")]
    NoSingleWriter {
        /// The store.
        location: String,
        /// Why, and how to opt out.
        reason: String,
    },
    /// Writing would take the chest's stored bytes past its cap
    /// ([`ChestBuilder::max_spill`](crate::ChestBuilder::max_spill)): nothing
    /// was written, the values stay in memory (the error names them, wrapped
    /// in [`Error::Write`]), and spilling goes on once stored bytes are
    /// freed (values removed, overwritten, or loaded and deleted).
    #[error(
        "{location}: spilling {needed} B more would take the stored bytes from {stored} B \
         past the cap of {max_spill} B (max_spill); the values stay in memory"
    )]
    SpillFull {
        /// The store.
        location: String,
        /// The cap.
        max_spill: u64,
        /// Bytes stored (and being written) when the write was refused.
        stored: u64,
        /// Bytes the refused write needed.
        needed: u64,
    },
    /// The chest was closed ([`AsyncChest::close`](crate::AsyncChest) through
    /// this handle or a clone of it): no call runs on it any more.
    #[error("{location} is closed ({operation} after close); reopen it to go on")]
    Closed {
        /// The store.
        location: String,
        /// The call that was refused.
        operation: String,
    },
    /// A spilled value could not be read from the backend (a `get`,
    /// `update` or `prefetch` of it): the backend failed (I/O, network,
    /// access), and nothing changed. Its kind, and whether trying again may
    /// help, are those of `source`.
    #[error("cannot read the value of key {key}: {source}")]
    Read {
        /// The key, as `Debug` prints it.
        key: String,
        /// What failed (an [`Error::Backend`]).
        #[source]
        source: Box<Error>,
    },
    /// Values could not be written to the backend (by an eviction, in the
    /// background or not, or by a flush); they stay in memory, dirty, and
    /// are written again by a later eviction or flush. Its kind is that of
    /// `source`. One failed write may hold several values (small values are
    /// packed into one object): `keys` names every one of them, and
    /// [`Error::keys`] gives them to code that maps failures back to keys.
    #[error(
        "cannot write the value{} of key{} {} (kept in memory): {source}",
        plural(.keys.len()),
        plural(.keys.len()),
        key_list(.keys)
    )]
    Write {
        /// Every key whose value the failed write held, as `Debug` prints
        /// them (at least one).
        keys: Vec<String>,
        /// What failed (usually [`Error::Backend`]).
        #[source]
        source: Box<Error>,
    },
    /// Several errors, e.g. one per value a `flush` could not write.
    #[error("{}", many(.0))]
    Many(Vec<Error>),
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// How many keys a message names before it says how many more there are
/// (every one is in [`Error::keys`]).
const KEYS_SHOWN: usize = 8;

fn key_list(keys: &[String]) -> String {
    match keys {
        [] => "(none)".to_string(),
        [one] => one.clone(),
        _ if keys.len() <= KEYS_SHOWN => {
            let (last, rest) = keys.split_last().expect("two or more");
            format!("{} and {last}", rest.join(", "))
        }
        _ => format!(
            "{} and {} more",
            keys[..KEYS_SHOWN].join(", "),
            keys.len() - KEYS_SHOWN
        ),
    }
}

fn many(errors: &[Error]) -> String {
    match errors {
        [] => "no errors".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{} errors; the first: {first}", rest.len() + 1),
    }
}

/// What kind of failure an [`Error`] or a [`BackendError`] is, for code
/// that reacts to it rather than prints it: each kind is something a caller
/// does differently (opendal's error kinds and object_store's variants are
/// the models). Whether trying the same call again may help is the other
/// half, [`Error::is_temporary`]; the message says what and where.
///
/// | kind | what a caller does |
/// | --- | --- |
/// | `NotFound` | the object is not there: treat as absent |
/// | `NoChest` | nothing at the location: create it, or fix the location |
/// | `AlreadyExists` | a chest is there: open it instead |
/// | `NotAChest` | foreign objects there: use another location |
/// | `Corrupt` | stored bytes are damaged: restore from elsewhere |
/// | `Serialize`, `Deserialize` | the value or the type: fix the serializer or the type |
/// | `Locked` | another writer holds it: wait, or open read-only |
/// | `Fenced` | this handle lost its lease: reopen |
/// | `Conflict` | a conditional write lost a race: read again and retry |
/// | `ReadOnly` | open the chest for writing |
/// | `Closed` | this handle no longer works (closed, or a panic poisoned it): reopen |
/// | `StaleSnapshot` | a writer moved on: reopen to read the current state |
/// | `Full` | no room (a full disk, the spill cap): make room |
/// | `Denied` | credentials or permissions |
/// | `Unreachable` | the network or the endpoint |
/// | `Unsupported` | the store cannot do it (conditional writes, one writer): another store or option |
/// | `InvalidInput` | a URL, a scheme, a name, a serializer that does not match |
/// | `Panicked` | user code (a serializer, a weigher) panicked on a value |
/// | `Store` | any other failure of the store (a local I/O error, a server error) |
/// | `Many` | several errors: see [`Error::errors`] |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An object the operation needed does not exist.
    NotFound,
    /// The location holds no chest ([`Error::NoChest`]), or does not exist
    /// at all ([`BackendError::MissingStore`]: a missing bucket, a missing
    /// directory opened read-only).
    NoChest,
    /// Asked to create a chest where one exists.
    AlreadyExists,
    /// The location holds objects that are not a chest.
    NotAChest,
    /// Stored bytes are damaged: a checksum failed, an object is truncated
    /// or missing under a key, a manifest is unreadable.
    Corrupt,
    /// A value or key could not be serialized.
    Serialize,
    /// A stored value or key could not be deserialized (or not as the type asked for).
    Deserialize,
    /// Another writer holds the location.
    Locked,
    /// This chest lost its writer lease to another writer and refuses to
    /// write ([`Error::Fenced`]).
    Fenced,
    /// A conditional write found its condition false (another writer got
    /// there first).
    Conflict,
    /// The chest or store is opened read-only.
    ReadOnly,
    /// The chest no longer takes calls: it was closed ([`Error::Closed`]),
    /// or a panic left it refusing changes ([`Error::Poisoned`]). Reopen it.
    Closed,
    /// A read-only chest's snapshot is gone: the writer deleted an object
    /// it named ([`Error::StaleSnapshot`]); reopen to read the current state.
    StaleSnapshot,
    /// No room: the local disk is full, or spilling would pass the cap on
    /// stored bytes ([`Error::SpillFull`]).
    Full,
    /// The store refused the credentials or the operation.
    Denied,
    /// The store could not be reached.
    Unreachable,
    /// The store cannot do what was asked: a conditional write, or keeping
    /// a chest to one writer ([`Error::NoSingleWriter`]).
    Unsupported,
    /// Something given was not usable: a URL, a scheme, an object name, a
    /// serializer that does not match the stored one.
    InvalidInput,
    /// User code (serializer, deserializer, weigher) panicked.
    Panicked,
    /// Any other failure of the store: a local I/O error, a server error, a
    /// protocol failure ([`Error::is_temporary`] says whether a retry may
    /// help).
    Store,
    /// Several errors ([`Error::Many`]); see [`Error::errors`].
    Many,
}

impl BackendError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::NotFound { .. } => ErrorKind::NotFound,
            BackendError::InvalidName { .. } => ErrorKind::InvalidInput,
            BackendError::RangeOutOfBounds { .. } | BackendError::Corrupt { .. } => {
                ErrorKind::Corrupt
            }
            BackendError::Locked { .. } => ErrorKind::Locked,
            BackendError::Conflict { .. } => ErrorKind::Conflict,
            BackendError::Unsupported { .. } => ErrorKind::Unsupported,
            BackendError::MissingStore { .. } => ErrorKind::NoChest,
            BackendError::Io { source, .. } if is_full(source) => ErrorKind::Full,
            BackendError::Io { .. } | BackendError::Other { .. } => ErrorKind::Store,
            BackendError::Denied { .. } => ErrorKind::Denied,
            BackendError::Unreachable { .. } => ErrorKind::Unreachable,
        }
    }

    /// Whether trying again, unchanged, may succeed: an unreachable store,
    /// server and protocol failures, interrupted or timed-out I/O, a lock
    /// another writer may release. Not: refused credentials, a missing
    /// object or store, damage, a full disk, bad input.
    pub fn is_temporary(&self) -> bool {
        use std::io::ErrorKind as Io;
        match self {
            BackendError::Other { .. }
            | BackendError::Unreachable { .. }
            | BackendError::Locked { .. } => true,
            BackendError::Io { source, .. } => matches!(
                source.kind(),
                Io::Interrupted | Io::TimedOut | Io::WouldBlock | Io::ResourceBusy
            ),
            _ => false,
        }
    }
}

/// A local I/O error that says the disk (or a quota) is full.
fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl Error {
    /// What kind of failure this is.
    ///
    /// ```
    /// use chest_core::{Chest, ErrorKind};
    ///
    /// let c: Chest<u32, String> = Chest::builder().read_only(true).open("memory://doc-kind")?;
    /// let err = c.insert(1, "one".into()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ReadOnly);
    /// assert!(!err.is_temporary());
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Backend(e) => e.kind(),
            Error::Serialize { .. } => ErrorKind::Serialize,
            Error::Deserialize { .. } => ErrorKind::Deserialize,
            Error::Corrupt { .. } | Error::Manifest { .. } => ErrorKind::Corrupt,
            Error::Key { .. } => ErrorKind::Deserialize,
            Error::SerializerMismatch { .. }
            | Error::InvalidUrl { .. }
            | Error::UnknownScheme { .. } => ErrorKind::InvalidInput,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::NotAChest { .. } => ErrorKind::NotAChest,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::NoChest { .. } => ErrorKind::NoChest,
            Error::Panicked { .. } => ErrorKind::Panicked,
            Error::Poisoned { .. } | Error::Closed { .. } => ErrorKind::Closed,
            Error::Fenced { .. } => ErrorKind::Fenced,
            Error::StaleSnapshot { .. } => ErrorKind::StaleSnapshot,
            Error::NoSingleWriter { .. } => ErrorKind::Unsupported,
            Error::SpillFull { .. } => ErrorKind::Full,
            Error::Write { source, .. } | Error::Read { source, .. } => source.kind(),
            Error::Many(_) => ErrorKind::Many,
        }
    }

    /// Whether trying again, unchanged, may succeed (see
    /// [`BackendError::is_temporary`]); for [`Error::Many`], whether every
    /// one of them may.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Backend(e) => e.is_temporary(),
            Error::Write { source, .. } | Error::Read { source, .. } => source.is_temporary(),
            Error::Many(errors) => !errors.is_empty() && errors.iter().all(Error::is_temporary),
            // Room is made as stored values are removed or replaced.
            Error::SpillFull { .. } => true,
            _ => false,
        }
    }

    /// The store this error is about (its location, as a URL or as given
    /// to `open`), where there is one: with [`key`](Error::key) and
    /// [`BackendError::object`], the context of an error as data, for logs
    /// and for code that handles several chests.
    ///
    /// ```
    /// use chest_core::{Chest, ErrorKind};
    ///
    /// let c: Chest<u32, String> = Chest::builder().read_only(true).open("memory://doc-location")?;
    /// let err = c.insert(1, "one".into()).unwrap_err();
    /// assert_eq!(err.location(), Some("memory://doc-location"));
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn location(&self) -> Option<&str> {
        match self {
            Error::Backend(e) => Some(e.location()),
            Error::Deserialize { location, .. }
            | Error::Corrupt { location, .. }
            | Error::Manifest { location, .. }
            | Error::SerializerMismatch { location, .. }
            | Error::ReadOnly { location }
            | Error::NotAChest { location, .. }
            | Error::AlreadyExists { location }
            | Error::NoChest { location }
            | Error::Poisoned { location }
            | Error::Fenced { location, .. }
            | Error::StaleSnapshot { location, .. }
            | Error::NoSingleWriter { location, .. }
            | Error::SpillFull { location, .. }
            | Error::Closed { location, .. } => Some(location),
            Error::InvalidUrl { url, .. } | Error::UnknownScheme { url, .. } => Some(url),
            Error::Read { source, .. } | Error::Write { source, .. } => source.location(),
            Error::Many(errors) => errors.iter().find_map(Error::location),
            Error::Serialize { .. } | Error::Key { .. } | Error::Panicked { .. } => None,
        }
    }

    /// The key this error is about, as `Debug` prints it, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Serialize { key, .. }
            | Error::Deserialize { key, .. }
            | Error::Corrupt { key, .. }
            | Error::Key { key, .. }
            | Error::Panicked { key, .. }
            | Error::StaleSnapshot { key, .. }
            | Error::Read { key, .. } => Some(key),
            Error::Write { keys, .. } => keys.first().map(String::as_str),
            _ => None,
        }
    }

    /// Every key this error is about, as `Debug` prints them: all the
    /// values of a failed write ([`Error::Write`]: a packed object holds
    /// several), the one key of an error that names one
    /// ([`key`](Error::key)), the keys of each error of [`Error::Many`].
    ///
    /// ```
    /// use chest_core::Error;
    ///
    /// let e = Error::Many(vec![
    ///     Error::Write { keys: vec!["1".into(), "2".into()], source: Box::new(Error::ReadOnly { location: "memory://".into() }) },
    ///     Error::Key { key: "3".into(), detail: "cannot encode".into() },
    /// ]);
    /// assert_eq!(e.keys(), ["1", "2", "3"]);
    /// ```
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Error::Write { keys, .. } => keys.iter().map(String::as_str).collect(),
            Error::Many(errors) => errors.iter().flat_map(Error::keys).collect(),
            one => one.key().into_iter().collect(),
        }
    }

    /// The errors this one holds: those of [`Error::Many`], or itself.
    /// With [`key`](Error::key), maps a flush's failures back to their keys.
    pub fn errors(&self) -> &[Error] {
        match self {
            Error::Many(errors) => errors,
            one => std::slice::from_ref(one),
        }
    }
}
