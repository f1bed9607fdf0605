//! # chest: a dictionary that spills to disk
//!
//! A [`Chest`] is a map whose in-memory tier is bounded by a byte budget.
//! When the values in memory outgrow it, the coldest are serialized and
//! written to a backend (a local directory by default; object storage and
//! compression through other backends), and loaded back when asked for. A
//! chest at a persistent location survives the process and is reopened
//! from its URL.
//!
//! ```
//! use chest::Chest;
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("my-chest");
//! # let path = path.to_str().unwrap();
//! // at most 1 MiB of values in memory; the rest in a local directory
//! let c: Chest<String, Vec<f64>> = Chest::builder().memory_budget(1 << 20).open(path)?;
//! c.insert("x".to_string(), vec![1.0, 2.0, 3.0])?;
//! assert_eq!(&**c.get("x")?.unwrap(), &[1.0, 2.0, 3.0]);
//! c.close()?;                                      // flush; errors are returned
//!
//! let c2: Chest<String, Vec<f64>> = Chest::open(path)?;   // same keys back
//! assert!(c2.contains_key("x"));
//!
//! let t: Chest<(u32, String), Vec<u8>> = Chest::temp()?;  // removed on drop
//! t.insert((1, "a".into()), vec![0; 10])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Locations
//!
//! | location | store | feature |
//! | --- | --- | --- |
//! | `file:///abs/dir`, or a plain path | local directory | `fs` (default) |
//! | `memory://` / `memory://name` | in-process (anonymous / shared by name) | always |
//! | none ([`Chest::temp`]) | a temporary directory, removed on drop | `fs` |
//! | `zstd+<any of these>?level=3` | that store, every object zstd-compressed | `zstd` (default) |
//! | `s3://bucket/prefix?endpoint=http://127.0.0.1:3900&region=garage` | S3-compatible object storage | `s3` |
//!
//! Backends register their URL schemes when they are linked; a program can
//! add its own with [`registry::register_scheme`].
#![warn(missing_docs)]

pub use chest_core::*;

/// The local-directory backend (`file://` URLs, plain paths, temporary chests).
#[cfg(feature = "fs")]
pub use chest_fs as fs;

/// The compression layer (`zstd+<url>`), around any backend.
#[cfg(feature = "zstd")]
pub use chest_zstd as zstd;

/// The S3-compatible object storage backend (`s3://bucket/prefix`).
#[cfg(feature = "s3")]
pub use chest_s3 as s3;
