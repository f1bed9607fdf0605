//! The [`Backend`] trait: a flat namespace of named byte objects.

pub(crate) mod location;
pub mod memory;
pub mod registry;

use std::fmt::Debug;
use std::ops::Range;

use bytes::Bytes;

use crate::error::BackendError;

/// Result of backend operations.
pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// What reading an object back from a store costs, roughly: a fixed
/// latency, then its bytes at a bandwidth ([`Backend::read_cost`]). A hint
/// for which values a chest keeps in memory: what a value saves is how
/// often it is read times what a read of it costs, per byte of memory.
///
/// ```
/// use chest_core::ReadCost;
/// use std::time::Duration;
///
/// let disk = ReadCost::new(Duration::from_micros(100), 1_000_000_000);
/// // A read of 100 KB costs twice what its latency alone costs.
/// assert_eq!(disk.latency_bytes(), 100_000);
/// assert_eq!(ReadCost::BYTES.latency_bytes(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCost {
    /// Time to the first byte of a read.
    pub latency: std::time::Duration,
    /// Bytes per second once it flows (at least 1).
    pub bytes_per_sec: u64,
}

impl ReadCost {
    /// A read costs its bytes alone (no latency): the default hint, and
    /// the memory backend's.
    pub const BYTES: ReadCost = ReadCost {
        latency: std::time::Duration::ZERO,
        bytes_per_sec: u64::MAX,
    };

    /// A latency and a bandwidth in bytes per second (taken as at least 1).
    pub const fn new(latency: std::time::Duration, bytes_per_sec: u64) -> Self {
        Self {
            latency,
            bytes_per_sec: if bytes_per_sec == 0 { 1 } else { bytes_per_sec },
        }
    }

    /// The bytes a read moves in the time of its latency: below this size
    /// a read costs mostly its latency.
    pub fn latency_bytes(&self) -> u64 {
        let bytes = self.latency.as_secs_f64() * self.bytes_per_sec as f64;
        bytes.min(u64::MAX as f64) as u64
    }
}

/// A store of named byte objects, the lowest layer of a chest.
///
/// A backend is a flat namespace: each name maps to one immutable byte
/// string (an *object*), which a `put` replaces as a whole. There are no
/// directories, no appends and no partial writes. Everything a chest stores
/// goes through this trait, so the written contract below is what the spill
/// store relies on; the [conformance suite](crate::testing) (feature
/// `testing`) checks it against every backend, and a new backend should
/// run that suite with one `conformance_tests!` call.
///
/// # Names
///
/// Object names are UTF-8 strings of `/`-separated, non-empty components
/// without NUL (like S3 keys; [`check_name`] checks the shape). The spill
/// store itself only uses names made of `[a-z0-9_./-]`, but a backend must
/// hold to the following for every well-formed name:
///
/// - **Exactly the name given.** An object put under `name` is found by
///   `get(name)` and listed as `name`, byte for byte. A backend never
///   case-folds, Unicode-normalizes, percent-decodes, trims or resolves
///   `.`/`..`; two different names are two different objects. How it encodes
///   names internally (file names, keys under a prefix) is its own business.
/// - **Or a clear refusal.** A name it cannot store faithfully (a component
///   too long for the file system, a key the service refuses, or on a
///   directory store both `a` and `a/b`, which cannot be a file and a
///   directory at once) is refused with [`BackendError::InvalidName`] saying
///   why. Refusing is all or nothing: a refused `put` writes nothing and
///   changes no other object. Reading or deleting a malformed name (one
///   [`check_name`] refuses) is `InvalidName` too.
/// - **A prefix is not an object.** When `a/b` exists and `a` does not,
///   `get("a")` is [`BackendError::NotFound`], `delete("a")` succeeds and
///   removes nothing, and `list` never reports `a` or `a/`.
/// - **Its own files stay its own.** A backend may keep files or objects of
///   its own beside the objects (a lock file, temporary files of a `put` in
///   progress), but they never appear in [`list`](Backend::list) and never
///   collide with a name a caller can put.
/// - **One location, one namespace.** Names are relative to the store's
///   location (a directory, a bucket and prefix): a store sees only its own
///   objects, and a fresh location is empty.
///
/// # Atomicity and consistency
///
/// - **Whole objects only.** A `put` replaces an object atomically. A reader
///   (`get`, `get_range`, `get_many`, on any thread) sees the old bytes or the
///   new bytes, never a prefix of them, a mix of two versions, or an empty
///   object in between. A ranged read returns bytes of one version too. A
///   `put` that fails, and a crash of the process during a `put`, leave the
///   old object or the new one whole, or for a new name either nothing or
///   the whole object.
/// - **What a machine crash leaves of a `put` not made durable** (one no
///   [`sync`](Backend::sync) or [`put_durable`](Backend::put_durable) has
///   covered yet) depends on the store: object stores (S3) keep it whole
///   once it returned; a local file system can lose it, or — a file renamed
///   into place whose data had not reached the disk (ext4, XFS) — keep the
///   new name with the file empty or cut short. The chest writes nothing it
///   depends on with a plain `put` alone: values are synced before the
///   manifest that names them, the manifest and the marker go through
///   `put_durable`, and a newest manifest found torn anyway (a `put_durable`
///   that is `put` + `sync`, cut by the crash before the `sync`) is skipped
///   for the one before it.
/// - **Read after write.** Once `put` or `delete` has returned, every call
///   that starts later, on any thread and through any handle open on the same
///   location, sees its effect (or a later one's): `get` returns the new
///   bytes or [`BackendError::NotFound`], and `list` includes or omits the
///   name.
/// - **Concurrent writers of one name.** Two `put`s of the same name at once
///   leave one of the two objects whole; a `put` and a `delete` of the same
///   name at once leave the put's object whole or nothing.
///
/// # Durability
///
/// A completed `put` or `delete` of a persistent store survives a crash of
/// the process. Surviving a crash of the machine (power loss, kernel panic)
/// may need more: [`sync`](Backend::sync) makes every completed write
/// durable, [`put_durable`](Backend::put_durable) makes one object durable
/// before it returns. A store configured never to make writes durable (a
/// local directory opened with `fsync=never`, a temporary store) says so in
/// its own documentation, and there `sync` and `put_durable` give what `put`
/// gives. [`MemoryBackend`](crate::MemoryBackend) is not persistent at all.
///
/// # Threads
///
/// A backend is `Send + Sync`, and every method may be called from several
/// threads at once through one handle (typically an `Arc<dyn Backend>`), on
/// the same names or on different ones; each call behaves as if it ran alone
/// at some moment between its start and its return, with the guarantees
/// above. Calls on different names do not interfere. Methods block the
/// calling thread until they are done, and must work from any thread,
/// including one running inside an async runtime: a backend over an async
/// client runs its own runtime rather than blocking on the caller's.
///
/// # Errors
///
/// Every error names the store (its [`location`](Backend::location)) and,
/// where there is one, the object. [`BackendError::NotFound`] and
/// [`BackendError::RangeOutOfBounds`] are answers about the data, for the
/// caller to act on, not failures of the store; other variants
/// ([`Io`](BackendError::Io), [`Other`](BackendError::Other), ...) are
/// failures, after which a retry may succeed.
///
/// # Layers
///
/// A backend that wraps another (compression, a guard that keeps a temporary
/// directory alive) should implement every method, including those with a
/// default, and forward what it does not change: a default would silently
/// turn the inner backend's concurrent `put_many`, its `put_durable` or its
/// `sync` into something weaker. Put `#[deny(clippy::missing_trait_methods)]`
/// on the `impl Backend` of a layer: `cargo clippy` then refuses one that
/// leaves a method to its default, including a method added to this trait
/// later.
///
/// # The rules and their checks
///
/// Each rule above and in the methods' documentation, and the check of the
/// conformance suite (`testing::backend_contract`, `testing::single_writer`;
/// feature `testing`) that holds every backend to it:
///
/// | rule | checks |
/// | --- | --- |
/// | Names: exactly the name given | `odd_names`, `list_prefixes` |
/// | Names: or a clear refusal, all or nothing; reads and deletes of a malformed name refused too | `invalid_names`, `odd_names`, `put_many_failure_leaves_whole_objects`, `get_many_mixed` |
/// | A prefix is not an object | `list_after_deletes` (get, delete and list of prefixes) |
/// | Its own files stay its own | `list("")` is exactly what was written: `sync_keeps_exact_contents`, `list_after_deletes`, `put_many_round_trip`, `odd_names` |
/// | One location, one namespace: a fresh location is empty | `odd_names`, `delete_missing`, `sync_keeps_exact_contents` |
/// | Whole objects only: a reader sees one version whole | `threads_share_a_store` (`get`, `get_range`, `get_many` against `put`, `put_durable`, `put_many` of different lengths) |
/// | Whole objects only: a crash leaves one version whole | the chest's crash simulation (`tests/crash.rs` over `testing::crash`, every step and both crash semantics) and the kill loop (`tests/kill_loop.rs`, real processes on `file://`) |
/// | What a machine crash leaves of a `put` not made durable | `testing::crash` (`Semantics::TornFiles`), `crash_durable_objects` |
/// | Read after write, across threads and handles | `round_trip`, `overwrite`, `delete_missing`, `list_after_deletes`, `threads_share_a_store`; a reopened handle: `sync_keeps_exact_contents` |
/// | Concurrent writers of one name | `threads_share_a_store` |
/// | Durability: `sync`, `put_durable` | `sync_keeps_exact_contents`, `put_durable_round_trip`; on a real crash: the kill loop |
/// | Threads: one handle from many threads | `threads_share_a_store` |
/// | Threads: callable inside an async runtime | `works_inside_an_async_runtime` |
/// | Errors name the store and the object; `NotFound` and `RangeOutOfBounds` are answers | `get_missing`, `range_edges`, `get_many_mixed` |
/// | `put`: any length, the empty object distinct from a missing one | `empty_object`, `round_trip`, `large_object` |
/// | `put_many`: each object whole; a failure leaves each whole or as before; an empty batch | `put_many_round_trip`, `put_many_failure_leaves_whole_objects` |
/// | `get_range`: exact length, empty ranges, out of bounds, missing objects | `get_range`, `range_edges`, `large_object` |
/// | `get_many`: one result per request, in order, failures per request | `get_many_in_order`, `get_many_mixed` |
/// | `list`: every and only object names under a string prefix, sorted | `list_prefixes`, `list_after_deletes` |
/// | `put_parts`, `put_many_parts`: the concatenation, replacing whole | `put_parts_round_trip` |
/// | `location`, `write_concurrency`, `read_cost`, `counters` | `reports` |
/// | `single_writer`, `put_if`, `get_versioned` | `single_writer`: `conditional_writes`, `conditional_writes_race`, `second_writer_refused`, `writers_race_to_open`, `taken_over_writer_is_fenced`, `paused_writer_cannot_commit`, `reader_keeps_its_snapshot` |
/// | Layers forward every method | the compiler, not the suite: `#[deny(clippy::missing_trait_methods)]` on each layer's `impl Backend` (chest-zstd's, the `testing` wrappers), run by `cargo clippy` in CI |
pub trait Backend: Send + Sync + Debug {
    /// Where this store lives, for messages: usually its URL (`file:///data/c1`,
    /// `s3://bucket/prefix at http://127.0.0.1:3900`). Never empty, the same
    /// for the life of the handle, and never containing credentials (it is
    /// printed in errors and logs).
    fn location(&self) -> &str;

    /// Stores `data` under `name`, replacing any previous object of that name.
    ///
    /// - **Atomic.** Readers see the previous object or `data`, whole, never a
    ///   part; a crash during the call leaves one of them whole (for a new
    ///   name: nothing, or `data` whole). A backend that uploads large objects
    ///   in parts (S3 multipart) makes the object visible only once complete.
    /// - **Visible on return.** Every read that starts after `put` returns sees
    ///   `data` (or a later write), and `list` includes `name`.
    /// - **Durable** against a crash of the process on return; against a crash
    ///   of the machine only after a later [`sync`](Backend::sync) (or use
    ///   [`put_durable`](Backend::put_durable)), unless the store makes every
    ///   put durable (e.g. a directory opened with `fsync=always`).
    /// - Any length, `0` included: an empty object is an object, distinct
    ///   from a missing one.
    ///
    /// Errors: [`BackendError::InvalidName`] for a name the store refuses
    /// (nothing is written); any other error leaves the previous object or
    /// `data` whole (it may have been written: a connection can fail after the
    /// server stored the object).
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()>;

    /// Stores several objects, each as [`put`](Backend::put) would.
    ///
    /// A backend may write them concurrently (about
    /// [`write_concurrency`](Backend::write_concurrency) at once) and in any
    /// order, so another thread may see a later object of the batch before an
    /// earlier one. The default writes them one after another with `put`,
    /// stopping at the first error.
    ///
    /// - `Ok(())`: every object is written, as after a `put` of each.
    /// - An error: some objects may have been written and others not. Which
    ///   ones is unspecified, but each one written is whole (the atomicity of
    ///   `put` holds for each object), and each one not written still holds
    ///   its previous bytes (or is still missing). The error describes a
    ///   failed object, or summarizes several failures.
    /// - An empty batch succeeds and does nothing.
    /// - If a name appears twice, which of its objects is stored is
    ///   unspecified.
    ///
    /// Durability is that of `put`.
    fn put_many(&self, objects: Vec<(String, Bytes)>) -> BackendResult<()> {
        for (name, data) in objects {
            self.put(&name, data)?;
        }
        Ok(())
    }

    /// Stores `data` under `name`, as [`put`](Backend::put) does, and makes
    /// that object durable before returning, as far as the store's
    /// durability settings promise (a store opened to never fsync says what
    /// it gives up). On a local directory: write a temporary file, fsync it,
    /// rename it over the object, fsync the directory; a crash at any point
    /// leaves the old or the new bytes whole, never an empty or torn object.
    /// A chest commits its manifests this way.
    ///
    /// - **Atomic** as `put`, and visible on return as `put`.
    /// - **Durable on return:** after `Ok(())`, the object survives a crash of
    ///   the machine. Only this object is promised; a backend may make other
    ///   completed writes durable too (the default does).
    /// - On an error, the previous object or `data` is stored whole, also
    ///   after a crash; which one, and whether it is durable, is unknown.
    ///
    /// The default calls [`put`](Backend::put) then [`sync`](Backend::sync),
    /// which is right for a store whose `sync` is a barrier — but it is not
    /// atomic under a machine crash on a store whose `put` can be torn: a
    /// crash before the `sync` returns can leave the object empty or cut
    /// short (see "What a machine crash leaves" above). A store that can
    /// write an object atomically and durably (temporary file, fsync,
    /// rename, fsync of the directory) should override it; a store that can
    /// make one object durable more cheaply (one fsync of a file and its
    /// directory, rather than of everything written since the last `sync`)
    /// should override it.
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.put(name, data)?;
        self.sync()
    }

    /// Reads a whole object: exactly the bytes of the last completed `put` of
    /// `name` (or of a `put` running concurrently with this call), never a
    /// part of them.
    ///
    /// Errors: [`BackendError::NotFound`], naming the object, if there is no
    /// object `name` (never written, deleted, or only a prefix of other
    /// names); [`BackendError::InvalidName`] for a malformed name; a layer
    /// that decodes what it stored reports damaged bytes as
    /// [`BackendError::Corrupt`].
    fn get(&self, name: &str) -> BackendResult<Bytes>;

    /// Reads bytes `range` (start inclusive, end exclusive) of an object.
    ///
    /// - Returns exactly `range.end - range.start` bytes, taken from one
    ///   version of the object (as `get` would give, sliced), never fewer: a
    ///   range is not clipped to the object's end as HTTP ranges are.
    /// - A range with `start <= end <= len` (where `len` is the object's
    ///   length) is valid. An empty range (`start == end`) gives empty bytes,
    ///   also at the very end (`len..len`) and on an empty object (`0..0`).
    /// - A range with `end > len`, or with `start > end`, is
    ///   [`BackendError::RangeOutOfBounds`], carrying the requested `start`
    ///   and `end` and the object's `size`.
    /// - A missing object is [`BackendError::NotFound`], whatever the range,
    ///   an empty one included.
    ///
    /// A backend should read no more than it needs (a ranged request, a
    /// positioned read): segments of packed values are read this way, a few
    /// bytes at a time.
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes>;

    /// Reads several objects (`None`) or ranges of them (`Some(range)`);
    /// backends may read them at once. The default reads them one after
    /// another.
    ///
    /// - Exactly one result per request, in the order of the requests, even
    ///   when the backend runs them concurrently or out of order.
    /// - Each result is what [`get`](Backend::get) (for `None`) or
    ///   [`get_range`](Backend::get_range) (for `Some`) would give for that
    ///   request at some moment during the call, errors included.
    ///   Different requests may observe different moments: this is not a
    ///   snapshot of several objects.
    /// - Failures are per request: a missing object, an out-of-bounds range
    ///   or an invalid name fails its own request and no other. An error of
    ///   the store as a whole (e.g. its client shut down) is repeated in
    ///   every result.
    /// - The same object may be requested several times; an empty list of
    ///   requests gives an empty list of results.
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
    ///
    /// - On return, `get(name)` is [`BackendError::NotFound`] and `list`
    ///   omits `name`, for every call that starts later.
    /// - A reader running at the same time sees the whole object or
    ///   `NotFound`.
    /// - Deleting a name that is not an object (never written, already
    ///   deleted, or only a prefix of other names, like `a` when `a/b`
    ///   exists) succeeds and changes nothing.
    /// - Durable as a `put` is: against a crash of the machine only after a
    ///   later [`sync`](Backend::sync) (a crash before it may bring the object
    ///   back, whole).
    ///
    /// Errors: [`BackendError::InvalidName`] for a malformed name; failures
    /// of the store.
    fn delete(&self, name: &str) -> BackendResult<()>;

    /// Names of all objects whose name starts with `prefix`, sorted.
    ///
    /// - **Every** object whose name starts with `prefix`, as a plain string
    ///   prefix (not component by component: `a` matches `a/1` and `ab`);
    ///   `""` lists the whole store. No limit and no pages: the whole answer.
    /// - **Only** object names: never a "directory" or common prefix (`a/`),
    ///   never the backend's own files, no duplicates.
    /// - **Sorted** in ascending byte order (`str`'s `Ord`).
    /// - Any string is a valid prefix (a partial component, one ending in
    ///   `/`, one no name can start with): a prefix nothing matches gives an
    ///   empty list, not an error.
    /// - Reflects every `put` and `delete` that completed before the call.
    ///   With writes running at the same time, it includes every name that
    ///   exists for the whole call and nothing that never existed; names put
    ///   or deleted meanwhile may or may not be included.
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>>;

    /// A durability barrier: every `put`, `put_many` and `delete` that
    /// completed before `sync` was called, on any thread, is durable (survives
    /// a crash of the machine) when `sync` returns `Ok(())`. Writes running
    /// concurrently with `sync` may or may not be covered. On a local
    /// directory, e.g., fsync of the files written and of the directories
    /// changed since the last `sync`.
    ///
    /// - It changes nothing that can be read: the same objects, the same bytes.
    /// - With nothing to do (an empty store, or no write since the last
    ///   `sync`) it succeeds.
    /// - On an error, which writes are durable is unknown; a later `sync` that
    ///   succeeds covers them all.
    ///
    /// The default does nothing, for stores where a completed write is already
    /// durable (S3: an object is stored durably when its PUT returns) and for
    /// stores that are not persistent at all (memory).
    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }

    /// How many objects [`put_many`](Backend::put_many) writes at once. A
    /// chest evicts in batches big enough to use it (default 1: one at a time).
    ///
    /// A hint, not a limit: a `put_many` of any size is valid. It is at least
    /// 1 and does not change while the backend is open. A layer reports the
    /// concurrency of the backend it wraps.
    fn write_concurrency(&self) -> usize {
        1
    }

    /// What reading an object back costs, roughly: a hint for which
    /// values a chest keeps in memory (see [`ReadCost`]). The default,
    /// [`ReadCost::BYTES`], says a read costs its bytes alone; a store whose
    /// reads wait on a latency says so, and a chest then prefers keeping
    /// small values read often, each of which costs a read's latency to
    /// load again. Constant while the backend is open. A layer reports the
    /// cost of the backend it wraps.
    fn read_cost(&self) -> ReadCost {
        ReadCost::BYTES
    }

    /// Counters of the store itself, shown in the chest's
    /// [`Stats`](crate::Stats) (e.g. bytes before and after compression).
    /// A layer includes the counters of the backend it wraps.
    ///
    /// Each is a `(name, value)` pair: names are unique in the list, stable
    /// (the same names in the same order on every call), and begin with the
    /// backend's kind (`fs.bytes_written`, `zstd.bytes_in`, `s3_requests`);
    /// values are totals since the handle was opened, so they never decrease.
    /// Reading them is cheap (no I/O) and may happen at any time, from any
    /// thread. A layer lists its own counters first, then the inner ones.
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Writes one object made of `parts`, in order, as [`put`](Backend::put)
    /// writes one made of their concatenation (same atomicity, durability
    /// and errors). A store that can write the parts without joining them
    /// first (a file written part after part) saves a copy of every byte.
    ///
    /// The default joins the parts and calls `put`. A layer that transforms
    /// the bytes (compression) keeps the default: it must see the whole.
    fn put_parts(&self, name: &str, parts: Vec<Bytes>) -> BackendResult<()> {
        self.put(name, join_parts(parts))
    }

    /// Writes several objects, each made of parts, as
    /// [`put_many`](Backend::put_many) writes the objects made of their
    /// parts' concatenations (same guarantees). A store that sends parts
    /// without joining them (S3: one request body of several buffers) saves
    /// a copy of every byte. The default joins each object's parts (no copy
    /// for a single part) and calls `put_many`; a layer that transforms the
    /// bytes keeps it.
    fn put_many_parts(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        let joined = objects
            .into_iter()
            .map(|(name, parts)| (name, join_parts(parts)))
            .collect();
        self.put_many(joined)
    }

    /// A layout hint: whether a chest should pack large values written
    /// together into one object (through [`put_parts`](Backend::put_parts))
    /// rather than give each an object of its own. `true` suits a local
    /// directory: a file per value costs a create, a rename and an fsync
    /// each. `false` (the default) suits object storage, where objects of
    /// their own go up concurrently ([`put_many`](Backend::put_many)) and
    /// come back with plain GETs. A layer forwards the hint of the backend
    /// it wraps. It never changes while the backend is open.
    fn packs_large_values(&self) -> bool {
        false
    }

    /// How this store keeps a chest to one writer (see [`SingleWriter`]).
    ///
    /// Asked once by every chest opened for writing, before it writes
    /// anything; never by a read-only one. A backend may find out with a few
    /// requests the first time it is asked (S3: whether the server honours
    /// conditional writes) and must answer the same afterwards. A layer
    /// forwards the answer of the backend it wraps.
    ///
    /// The default, [`SingleWriter::Trusted`], makes no claim: the chest
    /// relies on its user to open one writer at a time.
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        Ok(SingleWriter::Trusted)
    }

    /// Reads a whole object with its [`ObjectVersion`], for a later
    /// [`put_if`](Backend::put_if) with [`PutIf::Version`].
    ///
    /// Required of a backend whose [`single_writer`](Backend::single_writer)
    /// is [`SingleWriter::Lease`]; the default is
    /// [`BackendError::Unsupported`]. Errors as for [`get`](Backend::get).
    fn get_versioned(&self, name: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        Err(BackendError::Unsupported {
            location: self.location().to_string(),
            operation: format!("versioned read of {name:?}"),
        })
    }

    /// Writes an object only if a condition holds, atomically: of several
    /// `put_if`s racing on one name with the same condition, at most one
    /// succeeds. Returns the new object's version.
    ///
    /// - [`PutIf::Absent`]: only if no object has the name.
    /// - [`PutIf::Version`]: only if the object exists and is still at that
    ///   version (compare-and-swap).
    ///
    /// A condition that does not hold is [`BackendError::Conflict`], and the
    /// object is unchanged. As for every write, an error other than
    /// `Conflict` leaves it unknown whether the write happened (a request
    /// retried after a lost answer may even report `Conflict` for its own
    /// first attempt): a caller that must know reads the object back.
    ///
    /// Required of a backend whose [`single_writer`](Backend::single_writer)
    /// is [`SingleWriter::Lease`]; the default is
    /// [`BackendError::Unsupported`]. The object is as durable as one written
    /// by [`put_durable`](Backend::put_durable).
    fn put_if(&self, name: &str, data: Bytes, condition: PutIf) -> BackendResult<ObjectVersion> {
        let _ = (data, condition);
        Err(BackendError::Unsupported {
            location: self.location().to_string(),
            operation: format!("conditional write of {name:?}"),
        })
    }
}

/// How a store keeps a chest to one writer at a time (the answer of
/// [`Backend::single_writer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SingleWriter {
    /// This handle already excludes every other writer: it holds a lock of
    /// the operating system on a directory, or the store is private to it.
    Held,
    /// The store's conditional writes ([`Backend::put_if`]) are atomic: a
    /// chest takes a writer lease with them, and makes its manifest commits
    /// conditional, so a second writer is refused and a writer that lost its
    /// lease is fenced.
    Lease,
    /// Nothing excludes a second writer, and the chest relies on its user
    /// to open one at a time (the default of a backend, and what an explicit
    /// opt-out such as `lock=none` on an `s3://` URL gives).
    Trusted,
    /// The store cannot exclude a second writer (a server that ignores
    /// conditional writes), and its user has not taken that on: a chest
    /// refuses to open it for writing. Says why, and how to opt out.
    Unavailable(String),
}

/// The version of an object, as [`Backend::get_versioned`] and
/// [`Backend::put_if`] return it (an ETag on S3; opaque to the chest).
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

/// The condition of a [`Backend::put_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutIf {
    /// Only if no object has the name (create-only).
    Absent,
    /// Only if the object is at this version (compare-and-swap).
    Version(ObjectVersion),
}

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
