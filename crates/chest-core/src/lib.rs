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

#[cfg(feature = "tokio")]
mod async_chest;
pub mod backend;
mod budget;
mod builder;
mod bulk;
mod chest;
mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod crew;
mod entry;
pub mod error;
mod evict;
mod flush;
mod guard;
mod index;
mod invariants;
mod load;
mod location;
pub mod memory;
#[cfg(feature = "json")]
pub mod raw;
mod readahead;
mod recover;
pub mod registry;
pub mod serializer;
mod shard;
mod stats;
mod store;
mod upsert;
pub mod weigh;
mod writer;

#[cfg(feature = "tokio")]
pub use async_chest::AsyncChest;
pub use backend::{Backend, BackendResult, ObjectVersion, PutIf, SingleWriter};
pub use builder::ChestBuilder;
pub use chest::Chest;
pub use config::{
    Admission, EvictionPolicy, Key, OpenMode, Weigher, DEFAULT_BUDGET, DEFAULT_LEASE_TTL,
    DEFAULT_READER_GRACE,
};
pub use error::{BackendError, BoxError, Error, ErrorKind, Result};
pub use location::{redact_url, IntoLocation, REDACTED};
pub use memory::MemoryBackend;
#[cfg(feature = "json")]
pub use raw::{RawChest, RawKey};
#[cfg(feature = "json")]
pub use serializer::Json;
pub use serializer::{Cbor, Raw, Serializer};
pub use stats::Stats;
pub use weigh::Weigh;

#[doc(hidden)]
pub use inventory;
