//! A chest [`Backend`] layer that stores every object zstd-compressed, around
//! any other backend: `zstd+file:///data/c1?level=3`, `zstd+memory://`, or in
//! code [`ZstdBackend::new`] around a backend of your own.
//!
//! ```
//! use std::sync::Arc;
//! use chest_core::{Backend, BackendExt, MemoryBackend};
//! use chest_zstd::{ZstdBackend, ZstdOptions};
//!
//! let mem = MemoryBackend::new();
//! let zstd = ZstdBackend::new(Arc::new(mem.clone()), ZstdOptions::default());
//! let text = "the quick brown fox jumps over the lazy dog. ".repeat(10_000);
//! zstd.put("notes/fox", text.clone().into())?;
//!
//! assert!(mem.stored_bytes() < text.len() as u64 / 50);   // 450 KB stored in a few KB
//! assert_eq!(zstd.get("notes/fox")?, text.as_bytes());
//! assert_eq!(&zstd.get_range("notes/fox", 4..9)?[..], b"quick");
//! assert_eq!(&mem.get("notes/fox")?[..4], b"CHZS");      // the inner store holds the compressed form
//! # Ok::<(), chest_core::BackendError>(())
//! ```
//!
//! Through a URL, once this crate is linked into the program (the `chest`
//! facade does that with its `zstd` feature):
//!
//! ```
//! use chest_zstd as _; // registers the `zstd+` layer
//!
//! let c: chest_core::Chest<u32, String> =
//!     chest_core::Chest::builder().memory_budget(1 << 10).open("zstd+memory://?level=6")?;
//! for i in 0..100 {
//!     c.insert(i, format!("value number {i} ").repeat(20))?;
//! }
//! assert_eq!(*c.get(&42)?.unwrap(), "value number 42 ".repeat(20));
//! assert!(c.stats().spills > 0);
//! # Ok::<(), chest_core::Error>(())
//! ```
//!
//! # Query keys
//!
//! This table is the reference for the query keys of `zstd+<url>` (the
//! README links here). The layer takes these three from the URL's query and
//! leaves every other key to the inner store's URL, so
//! `zstd+file:///data/c1?level=9&fsync=never` compresses at level 9 over a
//! `file://` store that never fsyncs. One of these keys given twice, or a
//! value out of its range, is an error ([`ZstdOptions`] set in code are
//! clamped instead).
//!
//! | query key | values | default |
//! | --- | --- | --- |
//! | `level` | the zstd level, an integer in zstd's range ([`zstd::compression_level_range`]: −131072 to 22 in zstd 1.5.7): 1 fast to 22 small, negative levels faster still, 0 zstd's default (3) | `3` ([`DEFAULT_LEVEL`]) |
//! | `frame_size` | uncompressed bytes per independently compressed frame (see [What is stored](#what-is-stored)): a size as in every chest URL ([`chest_core::registry::parse_size`]: bytes, or with `b`, `k`/`KB`/`KiB`, `m`/`MB`/`MiB`, `g`/`GB`/`GiB`, binary, any case); 1 KiB to 1 GiB ([`MIN_FRAME_SIZE`], [`MAX_FRAME_SIZE`]). Smaller frames make ranged reads cheaper, larger ones compress a little better | `256k` ([`DEFAULT_FRAME_SIZE`]) |
//! | `threads` | 1 to 64 ([`MAX_THREADS`]): threads that (de)compress the frames of one object (see [Threads](#threads)); 1 keeps the work on the calling thread | the CPUs, at most 8 |
//!
//! [`ZstdOptions::max_ratio`] (default 0.95: an object that compression
//! would not shrink by at least 5% is stored raw) and
//! [`ZstdOptions::checksum`] (default `true`) have no query key.
//!
//! # What is stored
//!
//! Every object starts with a small header ([`MAGIC`] `b"CHZS"`, a format
//! version, a mode byte and the uncompressed length), so an object written
//! without the layer and read through it (or the reverse) is a clear error
//! rather than garbage. Data that does not compress (ratio worse than
//! [`ZstdOptions::max_ratio`]) is stored raw behind the header. Compressed
//! data is cut into independent zstd frames of at most
//! [`ZstdOptions::frame_size`] uncompressed bytes with an index of their
//! sizes in the header, so [`get_range`](chest_core::BackendExt::get_range) reads and
//! decompresses only the frames it needs, and large objects are
//! (de)compressed on several threads. An object written from parts
//! ([`put_parts`](chest_core::BackendExt::put_parts), as a chest packs several values into
//! one object) ends a frame at the end of every part, so a packed value's
//! frames are its own. The full layout (format version 2; version 1, with
//! frames of one size, is still read) is described on [`MAGIC`].
//!
//! # Threads
//!
//! The frames of one object (on `put`, `get`, and ranged reads spanning
//! several frames), or of all objects of one `put_many` batch, are
//! (de)compressed on up to [`ZstdOptions::threads`] threads (query key
//! `threads`): the calling thread and helpers
//! of one small pool shared by every zstd layer of the process, each taking
//! the next frame, so frames of unequal cost spread evenly. Each frame is
//! decompressed straight into its place in the returned buffer; compressed
//! frames are copied once, into the stored object. Objects under 512 KiB
//! or of one frame stay on the calling thread.
//!
//! # Limits
//!
//! A ranged read ([`get_range`](chest_core::BackendExt::get_range)) reads the
//! object's header and then its frames in separate requests of the inner
//! store. If another thread or process replaces the object in between, the
//! read can fail with a `Corrupt` error or, for an object stored raw, join
//! bytes of the two versions. Whole reads are one request and always see one
//! version. A chest is not affected: it never replaces an object it may read
//! (every value and every manifest gets a new name). Making ranged reads of
//! replaced objects atomic needs a version id in the header or conditional
//! reads in the `Backend` trait.
//!
//! # Counters
//!
//! [`Backend::counters`] reports `zstd.bytes_in` (uncompressed bytes
//! written), `zstd.bytes_out` (bytes stored, headers included),
//! `zstd.objects_compressed` and `zstd.objects_raw`, followed by the inner
//! backend's counters.
#![warn(missing_docs)]

mod backend;
mod codec;
mod config;
mod data;
mod decode;
mod encode;
mod format;
mod pool;

use std::sync::Arc;

use chest_core::registry::Layer;
use chest_core::Backend;
use url::Url;

pub use backend::{is_zstd_object, ObjectInfo, ZstdBackend};
pub use config::{
    ZstdOptions, DEFAULT_FRAME_SIZE, DEFAULT_LEVEL, MAX_FRAME_SIZE, MAX_THREADS, MIN_FRAME_SIZE,
};
pub use format::{MAGIC, VERSION};

use config::PARAMS;

fn wrap(url: &Url, inner: Arc<dyn Backend>) -> chest_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(ZstdBackend::from_url(url, inner)?))
}

chest_core::inventory::submit! {
    Layer { name: "zstd", params: PARAMS, wrap }
}
