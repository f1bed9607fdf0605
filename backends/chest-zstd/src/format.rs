//! The stored object format of the zstd layer (documented on [`MAGIC`]).

/// The four bytes every object written by the zstd layer starts with. An
/// object without them is refused when read through the layer, and chest's
/// manifest reader recognises them in a chest opened without `zstd+`.
///
/// The layout of a stored object:
///
/// ```text
/// offset  size  field
///      0     4  magic b"CHZS"
///      4     1  format version (1)
///      5     1  mode: 0 = raw (stored as is), 1 = zstd frames
///      6     2  flags, zero (a reader refuses bits it does not know)
///      8     8  uncompressed length, u64 LE
/// -- mode 0 (raw): the bytes follow; object size = 16 + length
/// -- mode 1 (frames):
///     16     4  dictionary id, u32 LE (0 = none; other values are reserved)
///     20     4  frame size F, u32 LE: uncompressed bytes per frame (the last may be shorter)
///     24     4  frame count N = ceil(length / F), u32 LE
///     28    4N  compressed size of each frame, u32 LE
///  28+4N     …  the N frames, each an independent zstd frame carrying its
///               content size and (by default) a content checksum
/// ```
///
/// Independent frames let a ranged read fetch and decompress only the frames
/// it needs, and let large objects be compressed and decompressed on several
/// threads.
pub const MAGIC: &[u8; 4] = b"CHZS";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;

pub(crate) const MODE_RAW: u8 = 0;
pub(crate) const MODE_FRAMES: u8 = 1;
/// Size of the part common to both modes.
pub(crate) const BASE_LEN: usize = 16;
/// Size of the fixed part of a frames header (before the index).
pub(crate) const FRAMES_FIXED_LEN: usize = 28;
/// Largest frame size written or accepted.
pub(crate) const MAX_FRAME: u32 = 1 << 30;
/// zstd cannot expand data by more than about 32768:1 (a 128 KiB block needs
/// at least 4 bytes); anything claiming more is corrupt. Checked before
/// allocating, so a damaged header cannot ask for a giant buffer.
pub(crate) const MAX_EXPANSION: u64 = 1 << 16;

/// Why an object could not be decoded.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The object does not start with [`MAGIC`]: it was written without the layer.
    Foreign,
    /// The object is damaged or truncated.
    Corrupt(String),
    /// The object uses a format version or feature this crate does not read.
    Unsupported(String),
}

/// How an object is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Raw,
    Frames { frame_size: u32, count: u32 },
}

/// The decoded fixed header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub len: u64,
    pub kind: Kind,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Header {
    /// Parses the fixed header from a prefix of the object (at least
    /// [`FRAMES_FIXED_LEN`] bytes, or the whole object if shorter).
    pub fn parse(prefix: &[u8]) -> Result<Header, Fault> {
        let magic_len = prefix.len().min(MAGIC.len());
        if prefix[..magic_len] != MAGIC[..magic_len] || prefix.len() < MAGIC.len() {
            return Err(Fault::Foreign);
        }
        if prefix.len() < BASE_LEN {
            return Err(Fault::Corrupt(format!(
                "truncated: {} bytes, shorter than the {BASE_LEN}-byte header",
                prefix.len()
            )));
        }
        let version = prefix[4];
        if version != VERSION {
            return Err(Fault::Unsupported(format!(
                "format version {version}; this chest-zstd reads version {VERSION} (written by a newer chest-zstd?)"
            )));
        }
        let flags = u16::from_le_bytes([prefix[6], prefix[7]]);
        if flags != 0 {
            return Err(Fault::Unsupported(format!(
                "unknown header flags {flags:#06x} (written by a newer chest-zstd?)"
            )));
        }
        let len = u64_at(prefix, 8);
        let kind = match prefix[5] {
            MODE_RAW => Kind::Raw,
            MODE_FRAMES => {
                if prefix.len() < FRAMES_FIXED_LEN {
                    return Err(Fault::Corrupt(format!(
                        "truncated: {} bytes, shorter than the {FRAMES_FIXED_LEN}-byte header",
                        prefix.len()
                    )));
                }
                let dict = u32_at(prefix, 16);
                if dict != 0 {
                    return Err(Fault::Unsupported(format!(
                        "compressed with zstd dictionary {dict}, which this chest-zstd cannot use"
                    )));
                }
                let frame_size = u32_at(prefix, 20);
                let count = u32_at(prefix, 24);
                if frame_size == 0 || frame_size > MAX_FRAME {
                    return Err(Fault::Corrupt(format!("invalid frame size {frame_size}")));
                }
                let expect = len.div_ceil(u64::from(frame_size));
                if u64::from(count) != expect {
                    return Err(Fault::Corrupt(format!(
                        "{count} frames cannot hold {len} bytes in frames of {frame_size}"
                    )));
                }
                Kind::Frames { frame_size, count }
            }
            mode => return Err(Fault::Corrupt(format!("unknown storage mode {mode}"))),
        };
        if usize::try_from(len).is_err() {
            return Err(Fault::Corrupt(format!(
                "length {len} does not fit in memory"
            )));
        }
        Ok(Header { len, kind })
    }

    /// Bytes before the data: the fixed header and, for frames, the index.
    pub fn data_start(&self) -> u64 {
        match self.kind {
            Kind::Raw => BASE_LEN as u64,
            Kind::Frames { count, .. } => FRAMES_FIXED_LEN as u64 + 4 * u64::from(count),
        }
    }
}

/// Writes the header of a raw object.
pub(crate) fn write_raw_header(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, MODE_RAW, 0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Writes the header of a frames object with a zeroed index (filled in by
/// [`fill_index`] once the frames are compressed).
pub(crate) fn write_frames_header(out: &mut Vec<u8>, len: u64, frame_size: u32, count: u32) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, MODE_FRAMES, 0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&frame_size.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.resize(out.len() + 4 * count as usize, 0);
}

/// Writes the compressed frame sizes into the index of a frames header.
pub(crate) fn fill_index(out: &mut [u8], sizes: &[u32]) {
    for (i, s) in sizes.iter().enumerate() {
        let at = FRAMES_FIXED_LEN + 4 * i;
        out[at..at + 4].copy_from_slice(&s.to_le_bytes());
    }
}

/// Where each frame of a frames object lies.
#[derive(Debug)]
pub(crate) struct Layout {
    pub len: u64,
    pub frame_size: u64,
    /// Object offsets: frame `i` is `offsets[i]..offsets[i + 1]`.
    pub offsets: Vec<u64>,
}

impl Layout {
    /// Reads the index (`index` = the `4 * count` bytes after the fixed header).
    pub fn parse(header: &Header, index: &[u8]) -> Result<Layout, Fault> {
        let Kind::Frames { frame_size, count } = header.kind else {
            return Err(Fault::Corrupt("not a frames object".into()));
        };
        let count = count as usize;
        if index.len() < 4 * count {
            return Err(Fault::Corrupt(format!(
                "truncated frame index ({} of {} bytes)",
                index.len(),
                4 * count
            )));
        }
        let mut offsets = Vec::with_capacity(count + 1);
        let mut at = header.data_start();
        offsets.push(at);
        for i in 0..count {
            let size = u32_at(index, 4 * i);
            if size == 0 {
                return Err(Fault::Corrupt(format!("frame {i} has size 0 in the index")));
            }
            at = at
                .checked_add(u64::from(size))
                .ok_or_else(|| Fault::Corrupt("the frame index overflows".into()))?;
            offsets.push(at);
        }
        let compressed = at - header.data_start();
        if header.len > compressed.saturating_mul(MAX_EXPANSION) {
            return Err(Fault::Corrupt(format!(
                "{} bytes claimed from {compressed} compressed bytes",
                header.len
            )));
        }
        Ok(Layout {
            len: header.len,
            frame_size: u64::from(frame_size),
            offsets,
        })
    }

    /// Size of the whole object.
    pub fn object_len(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Number of frames.
    pub fn count(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Uncompressed bytes of frame `i`.
    pub fn frame_len(&self, i: usize) -> usize {
        let start = i as u64 * self.frame_size;
        // Fits: the header's length fits in usize and frames never exceed it.
        (self.len - start).min(self.frame_size) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_header_round_trip() {
        let mut v = Vec::new();
        write_raw_header(&mut v, 42);
        assert_eq!(v.len(), BASE_LEN);
        let h = Header::parse(&v).unwrap();
        assert_eq!(h.len, 42);
        assert_eq!(h.kind, Kind::Raw);
        assert_eq!(h.data_start(), 16);
    }

    #[test]
    fn frames_header_round_trip() {
        let mut v = Vec::new();
        write_frames_header(&mut v, 2500, 1000, 3);
        fill_index(&mut v, &[10, 20, 5]);
        let h = Header::parse(&v).unwrap();
        assert_eq!(
            h.kind,
            Kind::Frames {
                frame_size: 1000,
                count: 3
            }
        );
        assert_eq!(h.data_start(), 40);
        let l = Layout::parse(&h, &v[28..]).unwrap();
        assert_eq!(l.offsets, vec![40, 50, 70, 75]);
        assert_eq!((l.frame_len(0), l.frame_len(2)), (1000, 500));
    }

    #[test]
    fn bad_headers() {
        assert!(matches!(Header::parse(b""), Err(Fault::Foreign)));
        assert!(matches!(Header::parse(b"CH"), Err(Fault::Foreign)));
        assert!(matches!(
            Header::parse(b"hello world, not ours"),
            Err(Fault::Foreign)
        ));
        assert!(matches!(Header::parse(b"CHZS\x01"), Err(Fault::Corrupt(_))));
        let mut v = Vec::new();
        write_raw_header(&mut v, 1);
        v[4] = 9;
        assert!(matches!(Header::parse(&v), Err(Fault::Unsupported(_))));
        v[4] = VERSION;
        v[5] = 7;
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        let mut v = Vec::new();
        write_frames_header(&mut v, 2500, 1000, 2); // needs 3 frames
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        let mut v = Vec::new();
        write_frames_header(&mut v, 1 << 40, 1 << 30, 1 << 10);
        fill_index(&mut v, &[1; 1 << 10]);
        let h = Header::parse(&v).unwrap();
        assert!(matches!(
            Layout::parse(&h, &v[28..]),
            Err(Fault::Corrupt(_))
        ));
    }
}
