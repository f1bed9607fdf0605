//! [`ZstdBackend`]: the type, what it reports of a stored object, and its
//! [`Backend`] implementation (the writes encode through [`crate::encode`],
//! the reads decode through [`crate::decode`]).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use chest_core::backend::{check_range, slice_whole};
use chest_core::{
    Backend, BackendError, BackendExt, BackendResult, Capabilities, GetOptions, GetResult,
    ObjectVersion, PutOptions, SingleWriter,
};
use url::Url;

use crate::config::{options_from_url, ZstdOptions, MAX_FRAME_SIZE, MAX_THREADS, MIN_FRAME_SIZE};
use crate::data::Data;
use crate::encode::Encoded;
use crate::format::{Header, Kind, MAGIC};

/// Objects (or ranges, or batches of objects) at least this large are
/// (de)compressed on several threads, when they have several frames.
pub(crate) const PARALLEL_FROM: usize = 512 << 10;

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
    pub(crate) inner: Arc<dyn Backend>,
    pub(crate) location: String,
    pub(crate) opts: ZstdOptions,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) objects_compressed: AtomicU64,
    pub(crate) objects_raw: AtomicU64,
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

/// A mutex's guard, poisoned or not (what it guards stays consistent: each
/// slot is written once).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

    pub(crate) fn threads_for(&self, len: usize) -> usize {
        if len >= PARALLEL_FROM {
            self.opts.threads
        } else {
            1
        }
    }

    pub(crate) fn other(
        &self,
        message: String,
        source: Option<chest_core::BoxError>,
    ) -> BackendError {
        BackendError::Other {
            location: self.location.clone(),
            message,
            source,
        }
    }

    pub(crate) fn count(&self, data_len: usize, stored_len: usize, compressed: bool) {
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

impl ZstdBackend {
    /// Bytes `range` of an object: only the frames it covers are read and
    /// decompressed.
    fn range_of(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
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
}

// A layer: the compiler checks that it forwards every method (a default
// would silently weaken the store underneath; see `Backend`'s "Layers").
#[deny(clippy::missing_trait_methods)]
impl Backend for ZstdBackend {
    fn location(&self) -> &str {
        &self.location
    }

    /// The inner backend's: packed values are compressed as one object, in
    /// frames, so a ranged read still decompresses only its own frames.
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// Compresses the parts as one object without joining them first, and
    /// writes the result in one piece, with `opts` as given (a condition
    /// and a version are the compressed object's). A frame ends at the end
    /// of every part (runs of parts under 4 KiB share frames, and only
    /// those are copied together), so a ranged read of one part
    /// decompresses its own frames only: a chest's packed values and their
    /// checksums.
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        let data = Data::parts(parts.iter().map(|p| &p[..]));
        let len = data.len();
        let encoded = self.encode_data(name, data)?;
        drop(parts);
        let stored = encoded.bytes.len();
        let version = self.inner.put_opts(name, vec![encoded.bytes], opts)?;
        self.count(len, stored, encoded.compressed);
        Ok(version)
    }

    /// Each object is compressed from its parts as `put_opts` does. On a
    /// store that writes one object at a time (write concurrency 1), each
    /// object is written as soon as it is compressed, while the frames of
    /// the next ones are compressed on the other threads; otherwise the
    /// batch is compressed, then handed to the inner `put_many` at once.
    fn put_many(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
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
        if self.inner.capabilities().write_concurrency <= 1 {
            let written: Mutex<Vec<(usize, usize, bool)>> = Mutex::new(Vec::new());
            let sink = |o: usize, e: Encoded| {
                let (stored, compressed) = (e.bytes.len(), e.compressed);
                self.inner
                    .put_opts(&objects[o].0, vec![e.bytes], PutOptions::default())?;
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
        let stored: Vec<(String, Vec<Bytes>)> = objects
            .into_iter()
            .zip(encoded)
            .map(|((name, _), e)| (name, vec![e.bytes]))
            .collect();
        let stored_lens: Vec<usize> = stored.iter().map(|(_, b)| b[0].len()).collect();
        self.inner.put_many(stored)?;
        for ((len, compressed), stored) in lens.into_iter().zip(compressed).zip(stored_lens) {
            self.count(len, stored, compressed);
        }
        Ok(())
    }

    /// A whole object is read from the inner store (with the inner
    /// object's version, the version of the compressed bytes, if asked)
    /// and decoded; a range decompresses only the frames it covers. A
    /// versioned range decodes the whole object.
    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        match opts.range {
            Some(range) if !opts.version => Ok(GetResult::data(self.range_of(name, range)?)),
            range => {
                let stored = self.inner.get_opts(
                    name,
                    GetOptions {
                        range: None,
                        version: opts.version,
                    },
                )?;
                let whole = self.decode_whole(name, stored.data)?;
                Ok(GetResult {
                    data: slice_whole(&self.location, name, whole, range)?,
                    version: stored.version,
                })
            }
        }
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
                Some(range) => self.range_of(&name, range),
                None => match fetched.next() {
                    Some(stored) => stored.and_then(|stored| self.decode_whole(&name, stored)),
                    None => self.get(&name),
                },
            })
            .collect()
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

    fn single_writer(&self) -> BackendResult<SingleWriter> {
        self.inner.single_writer()
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
