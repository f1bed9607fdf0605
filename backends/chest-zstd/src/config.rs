//! What a [`ZstdBackend`](crate::ZstdBackend) is told: [`ZstdOptions`], its
//! limits, and the query keys of a `zstd+…` URL that set them.

use url::Url;

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

/// How a [`ZstdBackend`](crate::ZstdBackend) compresses.
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

/// Reads `level`, `frame_size` and `threads` from a `zstd+…` URL's query
/// (the other keys are the inner store's), through the query grammar every
/// chest URL shares ([`chest_core::registry::parse_size`] for the frame size).
pub(crate) fn options_from_url(url: &Url) -> chest_core::Result<ZstdOptions> {
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
pub(crate) const PARAMS: &[&str] = &["level", "frame_size", "threads"];
