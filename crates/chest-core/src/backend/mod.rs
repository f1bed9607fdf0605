//! The [`Backend`] trait: a flat namespace of named byte objects, the
//! lowest layer of a chest; [`BackendExt`], the conveniences over it; and
//! the stores the core carries itself ([`memory`]) and finds by URL
//! ([`registry`]).

mod capabilities;
mod checks;
mod ext;
pub(crate) mod location;
pub mod memory;
mod options;
pub mod registry;

use std::fmt::Debug;
use std::ops::Range;

use bytes::Bytes;

use crate::error::BackendError;

pub use capabilities::{Capabilities, ReadCost, SingleWriter};
pub use checks::{
    check_name, check_range, join_parts, refuse_conditional, refuse_versioned, slice_whole,
    unsupported,
};
pub use ext::BackendExt;
pub use options::{GetOptions, GetResult, ObjectVersion, PutMode, PutOptions};

/// Result of backend operations.
pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// A store of named byte objects, the lowest layer of a chest.
///
/// A backend is a flat namespace: each name maps to one immutable byte
/// string (an *object*), which a write replaces as a whole. There are no
/// directories, no appends and no partial writes. Everything a chest stores
/// goes through this trait, so the contract below is what the spill store
/// relies on; the [conformance suite](crate::testing) (feature `testing`)
/// checks it against every backend, and a new backend runs that suite with
/// one `conformance_tests!` call.
///
/// # What to implement
///
/// Six methods are required: [`location`](Backend::location),
/// [`put_opts`](Backend::put_opts), [`get_opts`](Backend::get_opts),
/// [`delete`](Backend::delete), [`list`](Backend::list) and
/// [`sync`](Backend::sync). The other five have defaults right for a store
/// that does nothing more natively: batches one object after another
/// ([`put_many`](Backend::put_many), [`get_many`](Backend::get_many)),
/// [`Capabilities::DEFAULT`], no [`counters`](Backend::counters), and no
/// claim to keep a chest to one writer ([`SingleWriter::Trusted`]). A store
/// overrides what it does better. What callers use besides (`put`, `get`,
/// `get_range`, `put_durable`, `put_parts`, `put_if`, `get_versioned`) is
/// [`BackendExt`], written once over these methods for every backend. The
/// workspace's `examples/custom_backend.rs` is a whole backend in one
/// screen, passing the suite.
///
/// # The contract
///
/// Each rule once, with the conformance checks (`testing::backend_contract`,
/// `testing::single_writer`) that hold every backend to it.
///
/// **R1. Exactly the name given.** Object names are UTF-8 strings of
/// `/`-separated, non-empty components without NUL (like S3 keys;
/// [`check_name`] checks the shape). An object written under `name` is read
/// by `name` and listed as `name`, byte for byte: a backend never
/// case-folds, Unicode-normalizes, percent-decodes, trims or resolves
/// `.`/`..`; two different names are two different objects. How it encodes
/// names internally is its own business. — `odd_names`, `list_prefixes`.
///
/// **R2. Or a clear refusal.** A name it cannot store faithfully (a
/// component too long for the file system, a key the service refuses, or
/// on a directory store both `a` and `a/b`) is refused with
/// [`BackendError::InvalidName`] saying why, all or nothing: a refused write
/// writes nothing and changes no other object. Reading or deleting a
/// malformed name is `InvalidName` too. — `invalid_names`, `odd_names`,
/// `put_many_failure_leaves_whole_objects`, `get_many_mixed`.
///
/// **R3. A prefix is not an object.** When `a/b` exists and `a` does not,
/// reading `a` is [`BackendError::NotFound`], deleting `a` succeeds and
/// removes nothing, and `list` never reports `a` or `a/`. —
/// `list_after_deletes`.
///
/// **R4. Its own files stay its own.** A backend may keep files or objects
/// of its own beside the objects (a lock file, temporary files of a write
/// in progress), but they never appear in `list` and never collide with a
/// name a caller can write. — `list("")` is exactly what was written:
/// `sync_keeps_exact_contents`, `list_after_deletes`,
/// `put_many_round_trip`, `odd_names`.
///
/// **R5. One location, one namespace.** Names are relative to the store's
/// location (a directory, a bucket and prefix): a store sees only its own
/// objects, and a fresh location is empty. — `odd_names`,
/// `delete_missing`, `sync_keeps_exact_contents`.
///
/// **R6. Whole objects only.** A write replaces an object atomically. A
/// reader (whole, ranged or batched, on any thread) sees the old bytes or
/// the new bytes, never a prefix of them, a mix of two versions, or an
/// empty object in between; a ranged read returns bytes of one version. A
/// write that fails, and a crash of the process during a write, leave the
/// old object or the new one whole (for a new name: nothing, or the whole
/// object). A backend that uploads large objects in parts (S3 multipart)
/// makes the object visible only once complete. An object may have any
/// length, `0` included: an empty object is distinct from a missing one.
/// — `threads_share_a_store` (reads against writes of different lengths),
/// `empty_object`, `round_trip`, `large_object`; under a crash, the chest's
/// crash simulation (`tests/crash.rs` over `testing::crash`) and the kill
/// loop (`tests/kill_loop.rs`, real processes on `file://`).
///
/// **R7. Read after write.** Once a write or a delete has returned, every
/// call that starts later, on any thread and through any handle open on the
/// same location, sees its effect (or a later one's). — `round_trip`,
/// `overwrite`, `delete_missing`, `list_after_deletes`,
/// `threads_share_a_store`; a reopened handle: `sync_keeps_exact_contents`.
///
/// **R8. Concurrent writers of one name.** Two writes of one name at once
/// leave one of the two objects whole; a write and a delete at once leave
/// the write's object whole or nothing. — `threads_share_a_store`.
///
/// **R9. Durability.** A completed write or delete of a persistent store
/// survives a crash of the process. Surviving a crash of the machine needs
/// more: [`sync`](Backend::sync) makes every completed write durable, a
/// write with [`PutOptions::durable`] makes its object durable before it
/// returns, atomically (a crash leaves the old or the new bytes whole,
/// never an empty or torn object). What a machine crash leaves of a write
/// not made durable depends on the store: object stores keep it whole once
/// it returned; a local file system can lose it, or keep the new name with
/// the file empty or cut short. The chest writes nothing it depends on
/// without making it durable: values are synced before the manifest that
/// names them, manifests and markers are written durable. A store
/// configured never to make writes durable (`fsync=never`, a temporary
/// store) says so in its own documentation, and there `sync` and durable
/// writes give what plain writes give. —
/// `sync_keeps_exact_contents`, `put_durable_round_trip`,
/// `crash_durable_objects`; torn files: `testing::crash`
/// (`Semantics::TornFiles`); on a real crash: the kill loop.
///
/// **R10. Threads.** A backend is `Send + Sync`, and every method may be
/// called from several threads at once through one handle (an
/// `Arc<dyn Backend>`), on the same names or different ones; each call
/// behaves as if it ran alone at some moment between its start and its
/// return. Methods block the calling thread until done, and work from any
/// thread, including one running inside an async runtime: a backend over
/// an async client runs its own runtime rather than blocking on the
/// caller's. — `threads_share_a_store`, `works_inside_an_async_runtime`.
///
/// **R11. Errors say where.** Every error names the store (its
/// [`location`](Backend::location)) and, where there is one, the object.
/// [`BackendError::NotFound`] and [`BackendError::RangeOutOfBounds`] are
/// answers about the data, for the caller to act on; other variants are
/// failures of the store, after which a retry may succeed. An error other
/// than `InvalidName` or `Conflict` leaves it unknown whether a write
/// happened (a connection can fail after the server stored the object). —
/// `get_missing`, `range_edges`, `get_many_mixed`.
///
/// **R12. Conditional writes and versions.** A store whose
/// [`single_writer`](Backend::single_writer) is [`SingleWriter::Lease`]
/// writes under [`PutMode::Create`] and [`PutMode::Update`] atomically (of
/// several racing on one name with one condition, at most one succeeds),
/// returns the new version, and reads versions ([`GetOptions::version`]).
/// A condition that does not hold is [`BackendError::Conflict`], the object
/// unchanged. Every other store keeps a condition or refuses it: one that
/// cannot keep it (a local directory; an S3 server that ignores
/// conditions) answers [`BackendError::Unsupported`] and writes nothing,
/// and a store without versions answers a versioned read so too
/// ([`refuse_conditional`] and [`refuse_versioned`] do both). —
/// `conditional_writes`, `conditional_writes_race`,
/// `second_writer_refused`, `writers_race_to_open`,
/// `taken_over_writer_is_fenced`, `paused_writer_cannot_commit`,
/// `reader_keeps_its_snapshot`; every store: `conditions_are_kept_or_refused`.
///
/// **R13. Layers forward everything.** A backend that wraps another
/// (compression, a guard that keeps a temporary directory alive, a test's
/// hook) implements every method, including those with a default, and
/// forwards what it does not change: a default would silently turn the
/// inner store's concurrent batches, its capabilities or its lease into
/// something weaker. Put `#[deny(clippy::missing_trait_methods)]` on the
/// `impl Backend` of a layer. — the compiler, not the suite: `cargo clippy`
/// (run in CI) refuses a layer that leaves a method to its default,
/// including one added to this trait later (chest-zstd, the `testing`
/// wrappers).
///
/// The methods' own rules follow in their docs, each with its checks.
pub trait Backend: Send + Sync + Debug {
    /// Where this store lives, for messages: usually its URL
    /// (`file:///data/c1`, `s3://bucket/prefix at http://127.0.0.1:3900`).
    /// Never empty, the same for the life of the handle, and never
    /// containing credentials (it is printed in errors and logs). —
    /// `reports`.
    fn location(&self) -> &str;

    /// What the store does natively (see [`Capabilities`]): the default is
    /// [`Capabilities::DEFAULT`]. Constant while the backend is open. —
    /// `reports`.
    fn capabilities(&self) -> Capabilities {
        Capabilities::DEFAULT
    }

    /// Writes one object made of `parts`, in order (the object is their
    /// concatenation; one part is the usual case), under `name`, as
    /// `opts` says: replacing any object or under a condition
    /// ([`PutOptions::mode`], R12), durable on return or after a later
    /// `sync` ([`PutOptions::durable`], R9). Atomic (R6), visible on return
    /// (R7). A store that can write the parts without joining them first
    /// (a file written part after part, a request body of several buffers)
    /// saves a copy of every byte; [`join_parts`] joins them otherwise.
    ///
    /// Returns the new object's version when the write was conditional
    /// (required then, R12), and may return it otherwise.
    ///
    /// — `round_trip`, `overwrite`, `empty_object`, `large_object`,
    /// `put_parts_round_trip`, `put_durable_round_trip`.
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>>;

    /// Writes several objects, each made of its parts, each as an
    /// unconditional [`put_opts`](Backend::put_opts) with the default
    /// options would.
    ///
    /// A backend may write them concurrently (about
    /// [`Capabilities::write_concurrency`] at once) and in any order, so
    /// another thread may see a later object of the batch before an earlier
    /// one. `Ok(())`: every object is written. An error: some objects may be
    /// written and others not, each written one whole and each other one as
    /// before (R6); the error describes a failed object or summarizes
    /// several. An empty batch succeeds and does nothing; a name given twice
    /// stores one of its objects. The default writes them one after another,
    /// stopping at the first error.
    ///
    /// — `put_many_round_trip`, `put_many_failure_leaves_whole_objects`.
    fn put_many(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        for (name, parts) in objects {
            self.put_opts(&name, parts, PutOptions::default())?;
        }
        Ok(())
    }

    /// Reads an object, whole or bytes `opts.range` of it, with its version
    /// if `opts.version` asks (R12).
    ///
    /// - A whole read gives exactly the bytes of one completed write (R6).
    /// - A range (start inclusive, end exclusive) gives exactly
    ///   `end - start` bytes of one version, never fewer: it is not clipped
    ///   to the object's end as HTTP ranges are. `start <= end <= len` is
    ///   valid, an empty range included (also `len..len`, and `0..0` of an
    ///   empty object); `end > len` or `start > end` is
    ///   [`BackendError::RangeOutOfBounds`] with the requested `start`,
    ///   `end` and the object's `size` ([`check_range`]). A backend reads no
    ///   more than it needs (a ranged request, a positioned read): packed
    ///   values are read this way, a few bytes at a time.
    /// - A missing object is [`BackendError::NotFound`], whatever the range.
    ///   A layer that decodes what it stored reports damaged bytes as
    ///   [`BackendError::Corrupt`].
    ///
    /// — `round_trip`, `get_missing`, `get_range`, `range_edges`,
    /// `large_object`.
    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult>;

    /// Reads several objects (`None`) or ranges of them (`Some(range)`);
    /// a backend may read them at once. The default reads them one after
    /// another.
    ///
    /// Exactly one result per request, in the order of the requests, each
    /// what [`get_opts`](Backend::get_opts) would give for it at some moment
    /// during the call (not a snapshot of several objects). Failures are per
    /// request: a missing object, an out-of-bounds range or an invalid name
    /// fails its own request and no other; an error of the store as a whole
    /// is repeated in every result. The same object may be requested several
    /// times; no requests give no results.
    ///
    /// — `get_many_in_order`, `get_many_mixed`.
    fn get_many(&self, requests: Vec<(String, Option<Range<u64>>)>) -> Vec<BackendResult<Bytes>> {
        requests
            .into_iter()
            .map(|(name, range)| {
                self.get_opts(
                    &name,
                    GetOptions {
                        range,
                        version: false,
                    },
                )
                .map(|r| r.data)
            })
            .collect()
    }

    /// Deletes an object; deleting a name that is not an object (never
    /// written, already deleted, only a prefix of other names, R3) succeeds
    /// and changes nothing. A reader at the same time sees the whole object
    /// or `NotFound`. Durable as a write is: against a crash of the machine
    /// only after a later `sync` (which may otherwise bring the object back,
    /// whole).
    ///
    /// — `delete_missing`, `list_after_deletes`.
    fn delete(&self, name: &str) -> BackendResult<()>;

    /// Names of all objects whose name starts with `prefix`, sorted.
    ///
    /// - **Every** object whose name starts with `prefix` as a plain string
    ///   prefix (`a` matches `a/1` and `ab`); `""` lists the whole store. No
    ///   limit and no pages.
    /// - **Only** object names: never a "directory" or common prefix
    ///   (`a/`), never the backend's own files (R4), no duplicates.
    /// - **Sorted** in ascending byte order (`str`'s `Ord`).
    /// - Any string is a valid prefix; one nothing matches gives an empty
    ///   list.
    /// - Reflects every write and delete that completed before the call;
    ///   with writes running meanwhile, it includes every name that exists
    ///   for the whole call and nothing that never existed.
    ///
    /// — `list_prefixes`, `list_after_deletes`.
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>>;

    /// A durability barrier (R9): every write and delete that completed
    /// before `sync` was called, on any thread, is durable when it returns
    /// `Ok(())`. On a local directory: fsync of the files written and the
    /// directories changed since the last `sync`. A store where a completed
    /// write is already durable (S3), or that is not persistent at all
    /// (memory), does nothing.
    ///
    /// It changes nothing that can be read; with nothing to do it succeeds;
    /// on an error, which writes are durable is unknown, and a later `sync`
    /// that succeeds covers them all.
    ///
    /// — `sync_keeps_exact_contents`.
    fn sync(&self) -> BackendResult<()>;

    /// Counters of the store itself, shown in the chest's
    /// [`Stats`](crate::Stats) (e.g. bytes before and after compression).
    ///
    /// Each is a `(name, value)` pair: names are unique in the list, stable
    /// (the same names in the same order on every call), and begin with the
    /// backend's kind (`fs.bytes_written`, `zstd.bytes_in`, `s3_requests`);
    /// values are totals since the handle was opened, so they never
    /// decrease. Reading them is cheap (no I/O). A layer lists its own
    /// counters first, then the inner ones. The default: none. — `reports`.
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// How this store keeps a chest to one writer (see [`SingleWriter`]).
    ///
    /// Asked once by every chest opened for writing, before it writes
    /// anything; never by a read-only one. A backend may find out with a few
    /// requests the first time (S3: whether the server honours conditional
    /// writes) and answers the same afterwards. [`SingleWriter::Lease`]
    /// promises conditional writes and versions (R12). The default,
    /// [`SingleWriter::Trusted`], makes no claim: the chest relies on its
    /// user to open one writer at a time. — `testing::single_writer`.
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        Ok(SingleWriter::Trusted)
    }
}
