//! A chest [`Backend`] layer that stores every object zstd-compressed, around
//! any other backend: `zstd+file:///data/c1?level=3`, `zstd+memory://`, or in
//! code [`ZstdBackend::new`] around a backend of your own.
//!
//! ```
//! use std::sync::Arc;
//! use chest_core::{Backend, MemoryBackend};
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
//! sizes in the header, so [`get_range`](Backend::get_range) reads and
//! decompresses only the frames it needs, and large objects are
//! (de)compressed on several threads. An object written from parts
//! ([`put_parts`](Backend::put_parts), as a chest packs several values into
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
//! A ranged read ([`get_range`](chest_core::Backend::get_range)) reads the
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

mod codec;
mod data;
mod format;
mod pool;

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use chest_core::backend::check_range;
use chest_core::registry::Layer;
use chest_core::{Backend, BackendError, BackendResult, ObjectVersion, PutIf, SingleWriter};
use url::Url;

use data::Data;
use format::{Fault, Header, Kind, Layout};
pub use format::{MAGIC, VERSION};

/// The default compression level (zstd's own default).
pub const DEFAULT_LEVEL: i32 = 3;
/// The default uncompressed size of one frame: 256 KiB.
pub const DEFAULT_FRAME_SIZE: usize = 256 << 10;
/// The smallest frame size; smaller requests are raised to it.
pub const MIN_FRAME_SIZE: usize = 1 << 10;
/// The largest frame size (1 GiB); larger requests are lowered to it.
pub const MAX_FRAME_SIZE: usize = 1 << 30;
/// The most threads one object is (de)compressed on; larger
/// [`ZstdOptions::threads`] are lowered to it.
pub const MAX_THREADS: usize = 64;

/// Bytes read first by a ranged read: the header, the frame index of objects
/// up to about 1 GiB (with the default frame size), and often the data too.
const PROBE: u64 = 16 << 10;
/// Objects at least this large whose first frame does not shrink are tested
/// on samples before their other frames are compressed.
const SAMPLE_FROM: usize = 256 << 10;
/// Size of each sample window, and how many are taken.
const SAMPLE_WINDOW: usize = 32 << 10;
const SAMPLE_WINDOWS: usize = 4;
/// Objects (or ranges, or batches of objects) at least this large are
/// (de)compressed on several threads, when they have several frames.
const PARALLEL_FROM: usize = 512 << 10;

/// How a [`ZstdBackend`] compresses.
///
/// ```
/// let opts = chest_zstd::ZstdOptions { level: 9, ..Default::default() };
/// assert_eq!(opts.frame_size, chest_zstd::DEFAULT_FRAME_SIZE);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ZstdOptions {
    /// zstd level: 1 (fast) to 22 (small), negative levels are faster still;
    /// 0 means zstd's default (3). Default [`DEFAULT_LEVEL`]. Out-of-range
    /// levels are clamped to what zstd supports.
    pub level: i32,
    /// Uncompressed bytes per independent frame (default
    /// [`DEFAULT_FRAME_SIZE`]). Smaller frames make ranged reads cheaper,
    /// larger ones compress a little better. Clamped to
    /// [`MIN_FRAME_SIZE`]..=[`MAX_FRAME_SIZE`].
    pub frame_size: usize,
    /// Store an object raw when compression would leave more than this
    /// fraction of its size (default 0.95: compression must save at least 5%).
    /// `0.0` never compresses; `f64::INFINITY` always compresses, even data
    /// that grows. When the first frame of a large object does not shrink,
    /// a few 32 KiB samples of the object are tried at a fast level, and if
    /// they do not shrink either the rest is not compressed: incompressible
    /// data costs little more than one frame per thread.
    pub max_ratio: f64,
    /// Threads that (de)compress the frames of one object, or of one
    /// `put_many` batch, at once: the calling thread and up to `threads - 1`
    /// helpers from a pool shared by all zstd layers of the process (started
    /// once, as many as the largest setting asks for, never one per call).
    /// Used for objects and ranges of at least 512 KiB with two frames or
    /// more. Default: the number of CPUs, at most 8; 1 keeps everything on
    /// the calling thread. URL query key `threads`.
    pub threads: usize,
    /// Give every frame zstd's content checksum (default `true`), so damaged
    /// compressed bytes are an error instead of wrong data.
    pub checksum: bool,
}

impl Default for ZstdOptions {
    fn default() -> Self {
        Self {
            level: DEFAULT_LEVEL,
            frame_size: DEFAULT_FRAME_SIZE,
            max_ratio: 0.95,
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
            checksum: true,
        }
    }
}

impl ZstdOptions {
    /// The default options with compression level `level`.
    pub fn with_level(level: i32) -> Self {
        Self {
            level,
            ..Self::default()
        }
    }
}

/// How one object is stored, as [`ZstdBackend::object_info`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `true` if the data is zstd-compressed, `false` if stored raw.
    pub compressed: bool,
    /// Length of the data, uncompressed.
    pub len: u64,
    /// Size of the object in the inner backend, header included.
    pub stored_len: u64,
    /// Number of zstd frames (0 when raw).
    pub frames: u32,
    /// Uncompressed bytes per frame, at most (0 when raw): frames end earlier
    /// at the end of a part written by `put_parts`, and at the end of the data.
    pub frame_size: u32,
}

/// `true` if `bytes` (an object, or its first four bytes or more) starts with
/// the header of the zstd layer.
///
/// ```
/// assert!(chest_zstd::is_zstd_object(b"CHZS\x02\x01..."));
/// assert!(!chest_zstd::is_zstd_object(b"CHESTMAN"));
/// ```
pub fn is_zstd_object(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// A [`Backend`] that compresses every object with zstd before handing it to
/// an inner backend, and decompresses on the way back.
///
/// Names, listing, deletion and `sync` pass straight through; the location is
/// `zstd+` followed by the inner backend's location.
pub struct ZstdBackend {
    inner: Arc<dyn Backend>,
    location: String,
    opts: ZstdOptions,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    objects_compressed: AtomicU64,
    objects_raw: AtomicU64,
}

impl fmt::Debug for ZstdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZstdBackend")
            .field("location", &self.location)
            .field("opts", &self.opts)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// One object of a batch being encoded: its frames as they are compressed.
struct Plan<'a> {
    name: &'a str,
    data: Data<'a>,
    /// Frame `f` holds `data[bounds[f]..bounds[f + 1]]`.
    bounds: Vec<usize>,
    /// Store it raw (nothing to compress, or it does not compress).
    raw: AtomicBool,
    /// Jobs of this object not yet done.
    remaining: AtomicUsize,
    frames: Vec<Mutex<Option<std::io::Result<Vec<u8>>>>>,
    /// Set once the object is assembled: the object, or `None` once given
    /// to the sink.
    done: Mutex<Option<BackendResult<Option<Encoded>>>>,
}

/// Where [`ZstdBackend::encode_batch`] hands each object (by its index in
/// the batch) as soon as it is encoded.
type Sink<'a> = &'a (dyn Fn(usize, Encoded) -> BackendResult<()> + Sync);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The result of encoding one object, for the counters.
struct Encoded {
    bytes: Bytes,
    compressed: bool,
}

impl ZstdBackend {
    /// Wraps `inner`: objects are compressed on `put` and decompressed on
    /// `get`. Out-of-range options are clamped (see [`ZstdOptions`]).
    pub fn new(inner: Arc<dyn Backend>, opts: ZstdOptions) -> Self {
        let levels = zstd::compression_level_range();
        let opts = ZstdOptions {
            level: opts.level.clamp(*levels.start(), *levels.end()),
            frame_size: opts.frame_size.clamp(MIN_FRAME_SIZE, MAX_FRAME_SIZE),
            max_ratio: if opts.max_ratio.is_nan() {
                0.0
            } else {
                opts.max_ratio
            },
            threads: opts.threads.clamp(1, MAX_THREADS),
            checksum: opts.checksum,
        };
        Self {
            location: format!("zstd+{}", inner.location()),
            inner,
            opts,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            objects_compressed: AtomicU64::new(0),
            objects_raw: AtomicU64::new(0),
        }
    }

    /// Wraps `inner` as the URL `zstd+…?level=N&frame_size=N&threads=N` asks
    /// (the function registered for the `zstd+` layer). Query keys other than
    /// `level`, `frame_size` and `threads` are left to the inner backend.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let url = url::Url::parse("zstd+memory://?level=abc").unwrap();
    /// let err = chest_zstd::ZstdBackend::from_url(&url, Arc::new(chest_core::MemoryBackend::new()))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("level"), "{err}");
    /// ```
    pub fn from_url(url: &Url, inner: Arc<dyn Backend>) -> chest_core::Result<Self> {
        Ok(Self::new(inner, options_from_url(url)?))
    }

    /// The backend this one wraps.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// The options in force (after clamping).
    pub fn options(&self) -> &ZstdOptions {
        &self.opts
    }

    /// How the object `name` is stored, reading only its header.
    pub fn object_info(&self, name: &str) -> BackendResult<ObjectInfo> {
        let prefix = self.probe(name)?;
        let header = Header::parse(&prefix).map_err(|f| self.fault(name, f))?;
        Ok(match header.kind {
            Kind::Raw => ObjectInfo {
                compressed: false,
                len: header.len,
                stored_len: header.len.saturating_add(header.data_start()),
                frames: 0,
                frame_size: 0,
            },
            Kind::Frames {
                frame_size, count, ..
            } => {
                let layout = self.layout(name, &header, &prefix)?;
                ObjectInfo {
                    compressed: true,
                    len: header.len,
                    stored_len: layout.object_len(),
                    frames: count,
                    frame_size,
                }
            }
        })
    }

    fn threads_for(&self, len: usize) -> usize {
        if len >= PARALLEL_FROM {
            self.opts.threads
        } else {
            1
        }
    }

    fn other(&self, message: String, source: Option<chest_core::BoxError>) -> BackendError {
        BackendError::Other {
            location: self.location.clone(),
            message,
            source,
        }
    }

    /// Decodes a whole stored object.
    fn decode_whole(&self, name: &str, stored: Bytes) -> BackendResult<Bytes> {
        let header = Header::parse(&stored).map_err(|f| self.fault(name, f))?;
        match header.kind {
            Kind::Raw => {
                // A damaged length near 2^64 must not wrap into a match.
                let expect = header.data_start().checked_add(header.len);
                if expect != Some(stored.len() as u64) {
                    return Err(self.fault(
                        name,
                        Fault::Corrupt(format!(
                            "the header says {} bytes of data, the object holds {}",
                            header.len,
                            (stored.len() as u64).saturating_sub(header.data_start())
                        )),
                    ));
                }
                Ok(stored.slice(header.data_start() as usize..))
            }
            Kind::Frames { .. } => {
                let layout = self.layout(name, &header, &stored)?;
                if layout.object_len() != stored.len() as u64 {
                    return Err(self.fault(
                        name,
                        Fault::Corrupt(format!(
                            "the frame index adds up to {} bytes, the object holds {}",
                            layout.object_len(),
                            stored.len()
                        )),
                    ));
                }
                let data = &stored[header.data_start() as usize..];
                self.decompress(name, &layout, data, 0, layout.count())
                    .map(Bytes::from)
            }
        }
    }

    /// The error for an object that cannot be decoded.
    fn fault(&self, name: &str, fault: Fault) -> BackendError {
        let inner = self.inner.location();
        let message = match fault {
            Fault::Foreign => format!(
                "object {name:?} in {inner} was not written through the zstd layer \
                 (it does not start with {:?}; opened with zstd+ but written without it?)",
                String::from_utf8_lossy(MAGIC)
            ),
            Fault::Corrupt(detail) => {
                return BackendError::Corrupt {
                    location: inner.to_string(),
                    name: name.to_string(),
                    detail: format!("zstd layer: {detail}"),
                }
            }
            Fault::Unsupported(detail) => {
                format!("object {name:?} in {inner} cannot be read by this version of the zstd layer: {detail}")
            }
        };
        self.other(message, None)
    }

    /// A ranged read of the inner object that must succeed in full: running
    /// past its end means the object is truncated.
    fn inner_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.inner.get_range(name, range).map_err(|e| match e {
            BackendError::RangeOutOfBounds {
                start, end, size, ..
            } => self.fault(
                name,
                Fault::Corrupt(format!(
                    "truncated: bytes {start}..{end} are needed, the stored object has {size}"
                )),
            ),
            e => e,
        })
    }

    /// The first [`PROBE`] bytes of an object, or all of it if it is shorter.
    fn probe(&self, name: &str) -> BackendResult<Bytes> {
        match self.inner.get_range(name, 0..PROBE) {
            Ok(b) if b.len() as u64 == PROBE => Ok(b),
            // Shorter than the probe (or a backend that clips ranges): read it whole.
            Ok(_) | Err(BackendError::RangeOutOfBounds { .. }) => self.inner.get(name),
            Err(e) => Err(e),
        }
    }

    /// The frame layout of an object, given its header and first bytes.
    fn layout(&self, name: &str, header: &Header, prefix: &Bytes) -> BackendResult<Layout> {
        let index_end = header.data_start();
        let index = if index_end <= prefix.len() as u64 {
            prefix.slice(format::FRAMES_FIXED_LEN..index_end as usize)
        } else {
            // Fetched before anything is allocated from the header's numbers.
            let rest = self.inner_range(name, prefix.len() as u64..index_end)?;
            let mut index =
                Vec::with_capacity(prefix.len() - format::FRAMES_FIXED_LEN + rest.len());
            index.extend_from_slice(&prefix[format::FRAMES_FIXED_LEN..]);
            index.extend_from_slice(&rest);
            Bytes::from(index)
        };
        Layout::parse(header, &index).map_err(|f| self.fault(name, f))
    }

    /// Bytes `range` of the stored object, using `prefix` (its first bytes) where it reaches.
    fn stored_range(&self, name: &str, prefix: &Bytes, range: Range<u64>) -> BackendResult<Bytes> {
        let have = prefix.len() as u64;
        if range.end <= have {
            Ok(prefix.slice(range.start as usize..range.end as usize))
        } else if range.start >= have {
            self.inner_range(name, range)
        } else {
            let rest = self.inner_range(name, have..range.end)?;
            let mut v = Vec::with_capacity(prefix.len() - range.start as usize + rest.len());
            v.extend_from_slice(&prefix[range.start as usize..]);
            v.extend_from_slice(&rest);
            Ok(Bytes::from(v))
        }
    }

    /// Decompresses frames `first..last` of an object whose stored bytes
    /// `layout.offsets[first]..layout.offsets[last]` are `stored`.
    fn decompress(
        &self,
        name: &str,
        layout: &Layout,
        stored: &[u8],
        first: usize,
        last: usize,
    ) -> BackendResult<Vec<u8>> {
        let base = layout.offsets[first];
        let frames: Vec<&[u8]> = (first..last)
            .map(|i| {
                let a = (layout.offsets[i] - base) as usize;
                let b = (layout.offsets[i + 1] - base) as usize;
                &stored[a..b]
            })
            .collect();
        let lens: Vec<usize> = (first..last).map(|i| layout.frame_len(i)).collect();
        let len: usize = lens.iter().sum();
        let mut out = vec![0u8; len];
        codec::decompress_frames(&frames, &mut out, &lens, first, self.threads_for(len))
            .map_err(|e| self.fault(name, Fault::Corrupt(e)))?;
        Ok(out)
    }

    /// Turns `data` into the stored form: compressed frames, or raw.
    fn encode(&self, name: &str, data: &[u8]) -> BackendResult<Encoded> {
        self.encode_data(name, Data::one(data))
    }

    fn encode_data(&self, name: &str, data: Data<'_>) -> BackendResult<Encoded> {
        let mut encoded = self.encode_batch(vec![(name, data)], None)?;
        Ok(encoded.pop().expect("one object in, one out"))
    }

    /// Encodes several objects. Their frames, all together, are compressed
    /// on up to [`ZstdOptions::threads`] threads (each thread takes the next
    /// frame), each into its own buffer; the thread that finishes an
    /// object's last frame assembles the object (one copy of the compressed
    /// bytes) and, with a `sink`, hands it over there and then — so writing
    /// one object overlaps compressing the next. Returns the objects not
    /// given to a sink (all of them without one), in order; the first error
    /// (in object order) fails the whole batch.
    ///
    /// Raw or compressed: an object is stored raw if compressing all of it
    /// leaves more than `max_ratio` of its size. A large object whose first
    /// frame does not shrink enough is also tested on a few samples at a
    /// fast level; if they do not shrink either, its other frames are not
    /// compressed (those already started are dropped) and it is stored raw.
    fn encode_batch<'a>(
        &self,
        objects: Vec<(&'a str, Data<'a>)>,
        sink: Option<Sink<'_>>,
    ) -> BackendResult<Vec<Encoded>> {
        let (level, checksum, max_ratio) =
            (self.opts.level, self.opts.checksum, self.opts.max_ratio);
        let mut plans = Vec::with_capacity(objects.len());
        // (object, frame); an object stored raw without trying has one job
        // with frame `usize::MAX`.
        let mut jobs: Vec<(usize, usize)> = Vec::new();
        let mut compressed_bytes = 0usize;
        for (o, (name, data)) in objects.into_iter().enumerate() {
            let len = data.len();
            let bounds = if max_ratio <= 0.0 {
                vec![0]
            } else {
                data.frame_bounds(self.opts.frame_size)
            };
            let count = bounds.len() - 1;
            if u32::try_from(count).is_err() {
                return Err(self.other(
                    format!("object {name:?} ({len} bytes) needs more than 2^32 frames; raise the frame size"),
                    None,
                ));
            }
            if count == 0 {
                jobs.push((o, usize::MAX));
            } else {
                jobs.extend((0..count).map(|f| (o, f)));
                compressed_bytes += len;
            }
            plans.push(Plan {
                name,
                data,
                bounds,
                raw: AtomicBool::new(count == 0),
                remaining: AtomicUsize::new(count.max(1)),
                frames: (0..count).map(|_| Mutex::new(None)).collect(),
                done: Mutex::new(None),
            });
        }
        let failed = AtomicBool::new(false);
        let job = |j: usize| {
            let (o, f) = jobs[j];
            let plan = &plans[o];
            if f != usize::MAX
                && !plan.raw.load(Ordering::Relaxed)
                && !failed.load(Ordering::Relaxed)
            {
                let part = plan.data.slice(plan.bounds[f]..plan.bounds[f + 1]);
                let mut result = codec::compress_frame(&part, level, checksum);
                match &result {
                    Ok(frame)
                        if f == 0
                            && plan.data.len() >= SAMPLE_FROM
                            && frame.len() as f64 > max_ratio * part.len() as f64 =>
                    {
                        match self.looks_incompressible(&plan.data) {
                            Ok(true) => plan.raw.store(true, Ordering::Relaxed),
                            Ok(false) => {}
                            Err(e) => result = Err(e),
                        }
                    }
                    _ => {}
                }
                *lock(&plan.frames[f]) = Some(result);
            }
            if plan.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !failed.load(Ordering::Relaxed)
            {
                // This thread finished the object's last frame.
                let finished = self.assemble(plan).and_then(|encoded| match sink {
                    Some(sink) => sink(o, encoded).map(|()| None),
                    None => Ok(Some(encoded)),
                });
                if finished.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *lock(&plan.done) = Some(finished);
            }
        };
        let threads = self.threads_for(compressed_bytes);
        pool::run(jobs.len(), threads, &job)
            .map_err(|_| self.other("a compression thread panicked".into(), None))?;
        let mut out = Vec::with_capacity(plans.len());
        let mut unfinished = None;
        for plan in plans {
            match plan
                .done
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
            {
                Some(Ok(Some(encoded))) => out.push(encoded),
                Some(Ok(None)) => {}
                Some(Err(e)) => return Err(e),
                None => unfinished = unfinished.or(Some(plan.name)),
            }
        }
        match unfinished {
            // Skipped after another object's error, which is returned above.
            Some(name) => Err(self.other(format!("object {name:?} was not encoded"), None)),
            None => Ok(out),
        }
    }

    /// The stored form of an object whose frames are all compressed (or
    /// which is to be stored raw), taking the frames out of `plan`.
    fn assemble(&self, plan: &Plan<'_>) -> BackendResult<Encoded> {
        let data = &plan.data;
        if plan.raw.load(Ordering::Relaxed) {
            return Ok(self.encode_raw(data));
        }
        let mut frames = Vec::with_capacity(plan.frames.len());
        for slot in &plan.frames {
            match lock(slot).take() {
                Some(Ok(frame)) => frames.push(frame),
                Some(Err(e)) => {
                    return Err(self.other(
                        format!(
                            "cannot compress object {:?} ({} bytes): {e}",
                            plan.name,
                            data.len()
                        ),
                        Some(Box::new(e)),
                    ))
                }
                None => unreachable!("an object is assembled once all its frames are done"),
            }
        }
        let count = frames.len();
        let index_len = format::FRAMES_FIXED_LEN + 8 * count;
        let stored = index_len + frames.iter().map(Vec::len).sum::<usize>();
        // A frame is at most a little larger than its data (≤ 1 GiB), so its
        // size fits the index's u32.
        if stored as f64 > self.opts.max_ratio * (data.len() + format::BASE_LEN) as f64
            || frames.iter().any(|f| u32::try_from(f.len()).is_err())
        {
            return Ok(self.encode_raw(data));
        }
        // Frames hold at most the frame size (≤ 1 GiB), so both sizes fit.
        let sizes: Vec<(u32, u32)> = frames
            .iter()
            .zip(plan.bounds.windows(2))
            .map(|(f, b)| ((b[1] - b[0]) as u32, f.len() as u32))
            .collect();
        let mut out = Vec::with_capacity(stored);
        format::write_frames_header(
            &mut out,
            data.len() as u64,
            self.opts.frame_size as u32,
            &sizes,
        );
        debug_assert_eq!(out.len(), index_len);
        for frame in frames {
            out.extend_from_slice(&frame);
        }
        Ok(Encoded {
            bytes: Bytes::from(out),
            compressed: true,
        })
    }

    fn encode_raw(&self, data: &Data<'_>) -> Encoded {
        let mut out = Vec::with_capacity(format::BASE_LEN + data.len());
        format::write_raw_header(&mut out, data.len() as u64);
        data.extend_into(&mut out);
        Encoded {
            bytes: Bytes::from(out),
            compressed: false,
        }
    }

    /// A quick look before compressing a large object: compresses a few
    /// windows spread over it at a fast level; if they do not shrink enough,
    /// the object is stored raw without compressing the rest.
    fn looks_incompressible(&self, data: &Data<'_>) -> std::io::Result<bool> {
        if data.len() < SAMPLE_FROM {
            return Ok(false);
        }
        let step = (data.len() - SAMPLE_WINDOW) / (SAMPLE_WINDOWS - 1);
        let level = self.opts.level.min(1);
        let mut packed = 0usize;
        for i in 0..SAMPLE_WINDOWS {
            let start = i * step;
            packed += codec::compressed_len(&data.slice(start..start + SAMPLE_WINDOW), level)?;
        }
        Ok(packed as f64 > self.opts.max_ratio * (SAMPLE_WINDOW * SAMPLE_WINDOWS) as f64)
    }

    fn count(&self, data_len: usize, stored_len: usize, compressed: bool) {
        self.bytes_in.fetch_add(data_len as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(stored_len as u64, Ordering::Relaxed);
        let objects = if compressed {
            &self.objects_compressed
        } else {
            &self.objects_raw
        };
        objects.fetch_add(1, Ordering::Relaxed);
    }
}

impl Backend for ZstdBackend {
    fn location(&self) -> &str {
        &self.location
    }

    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        let encoded = self.encode(name, &data)?;
        let (len, stored) = (data.len(), encoded.bytes.len());
        drop(data);
        self.inner.put(name, encoded.bytes)?;
        self.count(len, stored, encoded.compressed);
        Ok(())
    }

    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        let encoded = self.encode(name, &data)?;
        let (len, stored) = (data.len(), encoded.bytes.len());
        drop(data);
        self.inner.put_durable(name, encoded.bytes)?;
        self.count(len, stored, encoded.compressed);
        Ok(())
    }

    /// On a store that writes one object at a time
    /// ([`write_concurrency`](Backend::write_concurrency) 1), each object is
    /// written as soon as it is compressed, while the frames of the next
    /// ones are compressed on the other threads; otherwise the batch is
    /// compressed, then handed to the inner `put_many` at once.
    fn put_many(&self, objects: Vec<(String, Bytes)>) -> BackendResult<()> {
        self.put_many_parts(
            objects
                .into_iter()
                .map(|(name, data)| (name, vec![data]))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> BackendResult<Bytes> {
        let stored = self.inner.get(name)?;
        self.decode_whole(name, stored)
    }

    fn single_writer(&self) -> BackendResult<SingleWriter> {
        self.inner.single_writer()
    }

    /// The inner backend's hint: packed values are compressed as one object,
    /// in frames, so a ranged read still decompresses only its own frames.
    fn packs_large_values(&self) -> bool {
        self.inner.packs_large_values()
    }

    /// Each object is compressed from its parts as
    /// [`put_parts`](Backend::put_parts) does (no joined copy), the batch as
    /// [`put_many`](Backend::put_many) does it.
    fn put_many_parts(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        let datas = || {
            objects
                .iter()
                .map(|(n, parts)| (n.as_str(), Data::parts(parts.iter().map(|p| &p[..]))))
                .collect()
        };
        let lens: Vec<usize> = objects
            .iter()
            .map(|(_, parts)| parts.iter().map(Bytes::len).sum())
            .collect();
        if self.inner.write_concurrency() <= 1 {
            let written: Mutex<Vec<(usize, usize, bool)>> = Mutex::new(Vec::new());
            let sink = |o: usize, e: Encoded| {
                let (stored, compressed) = (e.bytes.len(), e.compressed);
                self.inner.put(&objects[o].0, e.bytes)?;
                lock(&written).push((lens[o], stored, compressed));
                Ok(())
            };
            self.encode_batch(datas(), Some(&sink))?;
            for (len, stored, compressed) in
                written.into_inner().unwrap_or_else(PoisonError::into_inner)
            {
                self.count(len, stored, compressed);
            }
            return Ok(());
        }
        let encoded = self.encode_batch(datas(), None)?;
        let compressed: Vec<bool> = encoded.iter().map(|e| e.compressed).collect();
        let stored: Vec<(String, Bytes)> = objects
            .into_iter()
            .zip(encoded)
            .map(|((name, _), e)| (name, e.bytes))
            .collect();
        let stored_lens: Vec<usize> = stored.iter().map(|(_, b)| b.len()).collect();
        self.inner.put_many(stored)?;
        for ((len, compressed), stored) in lens.into_iter().zip(compressed).zip(stored_lens) {
            self.count(len, stored, compressed);
        }
        Ok(())
    }

    /// Compresses the parts as one object without joining them first, and
    /// puts the result in one piece. A frame ends at the end of every part
    /// (runs of parts under 4 KiB share frames, and only those are copied
    /// together), so a ranged read of one part decompresses its own frames
    /// only: a chest's packed values and their checksums.
    fn put_parts(&self, name: &str, parts: Vec<Bytes>) -> BackendResult<()> {
        let data = Data::parts(parts.iter().map(|p| &p[..]));
        let len = data.len();
        let encoded = self.encode_data(name, data)?;
        drop(parts);
        let stored = encoded.bytes.len();
        self.inner.put(name, encoded.bytes)?;
        self.count(len, stored, encoded.compressed);
        Ok(())
    }

    /// The inner object's version: the version of the compressed bytes.
    fn get_versioned(&self, name: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        let (stored, version) = self.inner.get_versioned(name)?;
        Ok((self.decode_whole(name, stored)?, version))
    }

    fn put_if(&self, name: &str, data: Bytes, condition: PutIf) -> BackendResult<ObjectVersion> {
        let encoded = self.encode(name, &data)?;
        let (len, stored) = (data.len(), encoded.bytes.len());
        drop(data);
        let version = self.inner.put_if(name, encoded.bytes, condition)?;
        self.count(len, stored, encoded.compressed);
        Ok(version)
    }

    /// Whole objects are fetched through the inner `get_many` (concurrently
    /// where it can) and decoded here; ranges are read one by one.
    fn get_many(&self, requests: Vec<(String, Option<Range<u64>>)>) -> Vec<BackendResult<Bytes>> {
        let wholes: Vec<(String, Option<Range<u64>>)> = requests
            .iter()
            .filter(|(_, range)| range.is_none())
            .cloned()
            .collect();
        let mut fetched = self.inner.get_many(wholes).into_iter();
        requests
            .into_iter()
            .map(|(name, range)| match range {
                Some(range) => self.get_range(&name, range),
                None => match fetched.next() {
                    Some(stored) => stored.and_then(|stored| self.decode_whole(&name, stored)),
                    None => self.get(&name),
                },
            })
            .collect()
    }

    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        let prefix = self.probe(name)?;
        let header = Header::parse(&prefix).map_err(|f| self.fault(name, f))?;
        check_range(&self.location, name, &range, header.len)?;
        match header.kind {
            Kind::Raw => {
                let start = header.data_start();
                self.stored_range(name, &prefix, start + range.start..start + range.end)
            }
            Kind::Frames { .. } => {
                let layout = self.layout(name, &header, &prefix)?;
                if range.start == range.end {
                    return Ok(Bytes::new());
                }
                let frames = layout.frames_for(range.clone());
                let (first, last) = (frames.start, frames.end);
                let stored =
                    self.stored_range(name, &prefix, layout.offsets[first]..layout.offsets[last])?;
                let out = self.decompress(name, &layout, &stored, first, last)?;
                let skip = (range.start - layout.starts[first]) as usize;
                let out = Bytes::from(out);
                Ok(out.slice(skip..skip + (range.end - range.start) as usize))
            }
        }
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.inner.list(prefix)
    }

    fn sync(&self) -> BackendResult<()> {
        self.inner.sync()
    }

    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let mut c = vec![
            (
                "zstd.bytes_in".to_string(),
                self.bytes_in.load(Ordering::Relaxed),
            ),
            (
                "zstd.bytes_out".to_string(),
                self.bytes_out.load(Ordering::Relaxed),
            ),
            (
                "zstd.objects_compressed".to_string(),
                self.objects_compressed.load(Ordering::Relaxed),
            ),
            (
                "zstd.objects_raw".to_string(),
                self.objects_raw.load(Ordering::Relaxed),
            ),
        ];
        c.extend(self.inner.counters());
        c
    }
}

/// Reads `level`, `frame_size` and `threads` from a `zstd+…` URL's query
/// (the other keys are the inner store's), through the query grammar every
/// chest URL shares ([`chest_core::registry::parse_size`] for the frame size).
fn options_from_url(url: &Url) -> chest_core::Result<ZstdOptions> {
    let query = chest_core::registry::Query::parse_some(url, PARAMS)?;
    let mut opts = ZstdOptions::default();
    let levels = zstd::compression_level_range();
    if let Some(level) = query.get_with("level", |v| {
        v.trim()
            .parse()
            .ok()
            .filter(|l| levels.contains(l))
            .ok_or_else(|| {
                format!(
                    "the zstd level must be an integer in {}..={} (1 fast .. 22 small, negative faster still)",
                    levels.start(),
                    levels.end()
                )
            })
    })? {
        opts.level = level;
    }
    if let Some(threads) = query.get_with("threads", |v| {
        v.trim()
            .parse()
            .ok()
            .filter(|t| (1..=MAX_THREADS).contains(t))
            .ok_or_else(|| format!("expected a number of threads from 1 to {MAX_THREADS}"))
    })? {
        opts.threads = threads;
    }
    if let Some(frame_size) = query.get_with("frame_size", |v| {
        chest_core::registry::parse_size(v)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|s| (MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(s))
            .ok_or_else(|| {
                format!(
                    "expected a size between {MIN_FRAME_SIZE} and {MAX_FRAME_SIZE} bytes \
                     (256k, 1MiB, ... accepted)"
                )
            })
    })? {
        opts.frame_size = frame_size;
    }
    Ok(opts)
}

/// Query keys of `zstd+` URLs, removed from the inner URL.
const PARAMS: &[&str] = &["level", "frame_size", "threads"];

fn wrap(url: &Url, inner: Arc<dyn Backend>) -> chest_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(ZstdBackend::from_url(url, inner)?))
}

chest_core::inventory::submit! {
    Layer { name: "zstd", params: PARAMS, wrap }
}
