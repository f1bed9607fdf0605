//! chest-core: the map, the spill store and the traits behind
//! [`chest`](https://docs.rs/chest).
//!
//! A [`Chest`] is a dictionary whose values live in memory up to a byte
//! budget; beyond it, the coldest values are serialized (by a [`Serializer`])
//! and written to a [`Backend`], and loaded back when asked for. Keys are
//! always in memory (about 40 bytes each plus the key), so `len`,
//! `contains_key` and `keys` never do I/O.
//!
//! Layers, top to bottom: [`Chest`] (key index, memory tier, eviction order)
//! → the spill store (packs small values into segments, writes large ones
//! alone, checksums every record, keeps the manifest) → [`Backend`] (named
//! byte objects). Backends are chosen by URL through the [`registry`].
//!
//! ```
//! use chest_core::Chest;
//!
//! let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(64 << 10).open("memory://")?;
//! for i in 0..100 {
//!     c.insert(i, vec![i as u8; 4096])?;       // 400 KiB into a 64 KiB budget
//! }
//! assert!(c.memory_usage() <= 64 << 10);
//! assert_eq!(c.get(&7)?.unwrap()[0], 7);       // loaded back from the backend
//! assert!(c.stats().spills > 0);
//! # Ok::<(), chest_core::Error>(())
//! ```
#![warn(missing_docs)]

// The layers, top to bottom (imports run downwards):
// api/     `Chest` and every public method, the builder, upserts, bulk calls,
//          the async handle, the typeless view for tools
// engine/  eviction, write-behind, the crew of background threads, loads,
//          read-ahead, flush, recovery at open, the invariant check
// map/     entry states, shards, the key index, the budget's counters, the
//          change count
// store/   records, segments, manifests, commit, lease, compaction
// backend/ the `Backend` trait, the memory backend, the URL registry, locations
// value/   serializers and weighers
// config.rs, error.rs, stats.rs: shared by all of them.
// testing/ (feature `testing`) the conformance suite, the crash simulator,
//          the hooked backend and gates the tests of every crate share.
mod api;
pub mod backend;
mod config;
mod engine;
pub mod error;
mod map;
mod stats;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod value;

#[cfg(feature = "json")]
pub use api::raw;
pub use backend::{memory, registry};
pub use value::{serializer, weigh};

#[cfg(feature = "tokio")]
pub use api::async_chest::AsyncChest;
pub use api::builder::ChestBuilder;
pub use api::chest::Chest;
pub use backend::location::{redact_url, IntoLocation, REDACTED};
pub use backend::memory::MemoryBackend;
pub use backend::{
    Backend, BackendExt, BackendResult, Capabilities, GetOptions, GetResult, ObjectVersion,
    PutMode, PutOptions, ReadCost, SingleWriter,
};
pub use config::{
    Admission, EvictionPolicy, Key, OpenMode, Weigher, DEFAULT_BUDGET, DEFAULT_LEASE_TTL,
    DEFAULT_READER_GRACE,
};
pub use error::{BackendError, BoxError, Error, ErrorKind, Result};
#[cfg(feature = "json")]
pub use raw::{RawChest, RawKey};
#[cfg(feature = "json")]
pub use serializer::Json;
pub use serializer::{Cbor, Pod, Raw, Serializer};
pub use stats::Stats;
pub use weigh::Weigh;

#[doc(hidden)]
pub use inventory;
