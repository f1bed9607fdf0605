//! What the tests of every crate of the workspace share (feature `testing`):
//!
//! - the conformance suite every backend runs, in two parts:
//!   [`backend_contract`] checks the [`Backend`] semantics directly;
//!   [`chest_behaviour`] runs a [`Chest`](crate::Chest) over the backend
//!   (and [`single_writer`] its lease, where the backend offers one);
//! - the crash simulator ([`crash`]): every image a crash can leave;
//! - the kit for ordering races without sleeps: [`hooked::Hooked`] (a
//!   backend whose hook sees every operation) and [`gate::Gate`] (holds
//!   the threads that reach it until the test lets them through);
//! - [`servers`]: the S3 servers the tests run against, and how a suite
//!   skips (loudly) without them;
//! - [`traces`]: access traces, the yardsticks of eviction (Belady, LRU,
//!   the popularity oracle) and a chest replaying a trace.
//!
//! A backend crate runs the whole suite with one macro call in an
//! integration test:
//!
//! ```ignore
//! struct FsTarget;
//! impl chest_core::testing::Target for FsTarget { /* ... */ }
//! chest_core::conformance_tests!(FsTarget);
//! ```
//!
//! Each check becomes its own `#[test]`, so a failure names the check.

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::Result;

pub mod backend_contract;
pub mod chest_behaviour;
pub mod crash;
pub mod gate;
pub mod hooked;
pub mod servers;
pub mod single_writer;
pub mod traces;

/// A kind of store under test: hands out fresh, empty locations.
pub trait Target: Send + Sync {
    /// A new, empty location (a new directory, bucket prefix, ...).
    fn fresh(&self) -> Box<dyn Location>;

    /// Whether a ranged read of an object that another thread replaces at
    /// the same time comes whole from one version (the trait's contract).
    /// A backend that documents otherwise (the zstd layer reads a range in
    /// several requests) returns `false`, and the concurrency check then
    /// reads such an object only whole. Chests never replace an object they
    /// may read: every value and every manifest gets a new name.
    fn ranged_reads_atomic_under_overwrite(&self) -> bool {
        true
    }

    /// Whether the backend's conditional writes are atomic, so that it
    /// answers [`SingleWriter::Lease`](crate::SingleWriter::Lease) and a
    /// chest keeps it to one writer with a lease: then the
    /// [`single_writer`] checks run. Either way they check that the backend
    /// answers accordingly.
    fn conditional_writes(&self) -> bool {
        false
    }
}

/// One location of a [`Target`].
///
/// The suite drops every handle (and the chest over it) before it opens the
/// next one, so a backend that locks its store must release the lock on drop.
/// A `Location` may be dropped while a backend it opened is still in use
/// (`target.fresh().open()`): such a backend must keep what it needs alive
/// (e.g. share ownership of a temporary directory).
pub trait Location: Send + Sync {
    /// Opens the store at this location for writing.
    fn open(&self) -> Result<Arc<dyn Backend>>;
}

/// A backend that keeps something alive as long as it is used (e.g. the
/// temporary directory it lives in), for [`Location`]s that may be dropped
/// before the backends they opened. Every call goes to the wrapped backend.
pub struct KeepAlive {
    backend: Arc<dyn Backend>,
    _guard: Arc<dyn std::any::Any + Send + Sync>,
}

impl KeepAlive {
    /// `backend`, keeping `guard` alive with it.
    pub fn new(backend: Arc<dyn Backend>, guard: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        Self {
            backend,
            _guard: guard,
        }
    }
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

// A layer: the compiler checks that it forwards every method (a default
// would silently weaken the store underneath; see `Backend`'s "Layers").
#[deny(clippy::missing_trait_methods)]
impl Backend for KeepAlive {
    fn location(&self) -> &str {
        self.backend.location()
    }
    fn capabilities(&self) -> crate::Capabilities {
        self.backend.capabilities()
    }
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<bytes::Bytes>,
        opts: crate::PutOptions,
    ) -> crate::BackendResult<Option<crate::ObjectVersion>> {
        self.backend.put_opts(name, parts, opts)
    }
    fn put_many(&self, objects: Vec<(String, Vec<bytes::Bytes>)>) -> crate::BackendResult<()> {
        self.backend.put_many(objects)
    }
    fn get_opts(
        &self,
        name: &str,
        opts: crate::GetOptions,
    ) -> crate::BackendResult<crate::GetResult> {
        self.backend.get_opts(name, opts)
    }
    fn get_many(
        &self,
        requests: Vec<(String, Option<std::ops::Range<u64>>)>,
    ) -> Vec<crate::BackendResult<bytes::Bytes>> {
        self.backend.get_many(requests)
    }
    fn delete(&self, name: &str) -> crate::BackendResult<()> {
        self.backend.delete(name)
    }
    fn list(&self, prefix: &str) -> crate::BackendResult<Vec<String>> {
        self.backend.list(prefix)
    }
    fn sync(&self) -> crate::BackendResult<()> {
        self.backend.sync()
    }
    fn counters(&self) -> Vec<(String, u64)> {
        self.backend.counters()
    }
    fn single_writer(&self) -> crate::BackendResult<crate::SingleWriter> {
        self.backend.single_writer()
    }
}

/// `len` incompressible bytes, the same for the same `seed` (xorshift): test
/// data for the suite and for backends' own tests.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A [`Target`] of in-memory stores, the reference for the suite itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryTarget;

/// A [`Target`] of named in-memory stores (`memory://<unique name>`),
/// shared by every handle of a location like a bucket prefix, so a chest
/// keeps each to one writer with a lease.
#[derive(Debug, Default, Clone, Copy)]
pub struct NamedMemoryTarget;

impl Target for NamedMemoryTarget {
    fn fresh(&self) -> Box<dyn Location> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(NamedMemoryLocation(format!(
            "conformance-{}-{n}",
            std::process::id()
        )))
    }

    fn conditional_writes(&self) -> bool {
        true
    }
}

struct NamedMemoryLocation(String);

impl Location for NamedMemoryLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(crate::MemoryBackend::named(&self.0)))
    }
}

impl Target for MemoryTarget {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(MemoryLocation(crate::MemoryBackend::new()))
    }
}

struct MemoryLocation(crate::MemoryBackend);

impl Location for MemoryLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(self.0.clone()))
    }
}

/// Expands to one `#[test]` per conformance check, each run against `$target`
/// (an expression implementing [`Target`], evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($target:expr) => {
        $crate::conformance_tests!(@each $target;
            backend_contract: round_trip, empty_object, large_object, overwrite,
                get_missing, delete_missing, get_range, get_many_in_order, list_prefixes, odd_names,
                invalid_names, put_many_round_trip, put_many_failure_leaves_whole_objects,
                put_durable_round_trip, put_parts_round_trip, get_many_mixed, sync_keeps_exact_contents,
                list_after_deletes, range_edges, reports, threads_share_a_store,
                works_inside_an_async_runtime;
            chest_behaviour: spill_under_budget, reopen_after_flush, iter_visits_every_key,
                prefetch_loads_spilled_values,
                read_ahead_loads_spilled_values,
                overwrite_spilled,
                remove_spilled, mutate_spilled_persists, unserializable_stays_in_memory,
                heavier_than_budget, clean_values_not_rewritten, loads_are_kept_on_second_read,
                loads_are_kept_when_wanted_more_than_what_they_push_out, garbage_is_compacted, corrupt_value_names_key,
                threads_hammer, model_against_hashmap;
            single_writer: conditions_are_kept_or_refused, conditional_writes,
                conditional_writes_race, second_writer_refused,
                writers_race_to_open, taken_over_writer_is_fenced, paused_writer_cannot_commit,
                reader_keeps_its_snapshot
        );
    };
    (@each $target:expr; $($module:ident: $($check:ident),+);+ $(;)?) => {
        $($(
            #[test]
            fn $check() {
                $crate::testing::$module::$check(&$target);
            }
        )+)+
    };
}
