//! The stored object format of the zstd layer (documented on [`MAGIC`]).

/// The four bytes every object written by the zstd layer starts with. An
/// object without them is refused when read through the layer, and chest's
/// manifest reader recognises them in a chest opened without `zstd+`.
///
/// The layout of a stored object (all integers little-endian):
///
/// ```text
/// offset  size  field
///      0     4  magic b"CHZS"
///      4     1  format version: 2 (written), 1 (still read)
///      5     1  mode: 0 = raw (stored as is), 1 = zstd frames
///      6     2  flags, zero (a reader refuses bits it does not know)
///      8     8  uncompressed length L, u64
/// -- mode 0 (raw), versions 1 and 2: the L bytes follow; object size = 16 + L
/// -- mode 1 (frames), version 2: frames of variable uncompressed size
///     16     4  dictionary id, u32 (0 = none; other values are reserved)
///     20     4  frame size F, u32: no frame holds more than F uncompressed bytes
///               (1 ≤ F ≤ 2^30)
///     24     4  frame count N, u32, with ceil(L / F) ≤ N ≤ L
///     28    8N  for each frame: uncompressed size u32 (1..=F), then
///               compressed size u32 (≥ 1); the uncompressed sizes add up to L
///  28+8N     …  the N frames, each an independent zstd frame carrying its
///               content size and (by default) a content checksum
/// -- mode 1 (frames), version 1: frames of F bytes each (the last may be shorter)
///     16     4  dictionary id, u32 (0 = none)
///     20     4  frame size F, u32
///     24     4  frame count N = ceil(L / F), u32
///     28    4N  compressed size of each frame, u32
///  28+4N     …  the N frames
/// ```
///
/// Frame `i` holds the uncompressed bytes from the sum of the sizes of the
/// frames before it, so a ranged read finds its first and last frames by a
/// binary search over those sums. Version 2 lets a frame end anywhere: an
/// object written from parts (`put_parts`, as a chest packs several values
/// and their checksums into one object) ends a frame at the end of every part
/// (runs of parts under 4 KiB share frames) and every F bytes within a part,
/// so a value packed at any offset is read by decompressing only its own
/// frames. A writer writes frames objects as version 2 and raw objects
/// (the same in both) as version 1; a reader refuses versions,
/// modes and flags it does not know, and headers whose numbers do not add
/// up, before allocating anything from them.
///
/// Independent frames let a ranged read fetch and decompress only the frames
/// it needs, and let large objects be compressed and decompressed on several
/// threads. The stored bytes depend only on the data, its parts, the level,
/// F and the checksum setting, never on the number of threads.
pub const MAGIC: &[u8; 4] = b"CHZS";
/// The format version this crate writes (it reads this one and version 1).
pub const VERSION: u8 = 2;
/// The first format version: frames of a fixed size (read, no longer written).
pub(crate) const VERSION_1: u8 = 1;

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
    /// `version` 1: frames of `frame_size` bytes, an index of compressed
    /// sizes; 2: frames of up to `frame_size` bytes, an index of both sizes.
    Frames {
        version: u8,
        frame_size: u32,
        count: u32,
    },
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

/// Bytes of one index entry in a frames object of format `version`.
fn entry_len(version: u8) -> u64 {
    if version == VERSION_1 {
        4
    } else {
        8
    }
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
        if version != VERSION && version != VERSION_1 {
            return Err(Fault::Unsupported(format!(
                "format version {version}; this chest-zstd reads versions {VERSION_1} and {VERSION} \
                 (written by a newer chest-zstd?)"
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
                let least = len.div_ceil(u64::from(frame_size));
                let count_ok = if version == VERSION_1 {
                    u64::from(count) == least
                } else {
                    // Every frame holds at least one byte.
                    (least..=len).contains(&u64::from(count))
                };
                if !count_ok {
                    return Err(Fault::Corrupt(format!(
                        "{count} frames cannot hold {len} bytes in frames of {}{frame_size}",
                        if version == VERSION_1 { "" } else { "up to " }
                    )));
                }
                Kind::Frames {
                    version,
                    frame_size,
                    count,
                }
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
            Kind::Frames { version, count, .. } => {
                FRAMES_FIXED_LEN as u64 + entry_len(version) * u64::from(count)
            }
        }
    }
}

/// Writes the header of a raw object. Raw objects are the same in both
/// versions, so they are stamped version 1: a chest-zstd that reads only
/// version 1 still reads them.
pub(crate) fn write_raw_header(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION_1, MODE_RAW, 0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Writes the header of a frames object with the index of `frames`, each
/// frame's (uncompressed, compressed) size.
pub(crate) fn write_frames_header(
    out: &mut Vec<u8>,
    len: u64,
    frame_size: u32,
    frames: &[(u32, u32)],
) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, MODE_FRAMES, 0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&frame_size.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for (plain, packed) in frames {
        out.extend_from_slice(&plain.to_le_bytes());
        out.extend_from_slice(&packed.to_le_bytes());
    }
}

/// Where each frame of a frames object lies.
#[derive(Debug)]
pub(crate) struct Layout {
    pub len: u64,
    /// Object offsets: frame `i` is `offsets[i]..offsets[i + 1]`.
    pub offsets: Vec<u64>,
    /// Uncompressed offsets: frame `i` holds bytes `starts[i]..starts[i + 1]`
    /// (`starts[count] == len`).
    pub starts: Vec<u64>,
}

impl Layout {
    /// Reads the index (`index` = the bytes after the fixed header, at least
    /// the whole index).
    pub fn parse(header: &Header, index: &[u8]) -> Result<Layout, Fault> {
        let Kind::Frames {
            version,
            frame_size,
            count,
        } = header.kind
        else {
            return Err(Fault::Corrupt("not a frames object".into()));
        };
        let count = count as usize;
        let entry = entry_len(version) as usize;
        if index.len() < entry * count {
            return Err(Fault::Corrupt(format!(
                "truncated frame index ({} of {} bytes)",
                index.len(),
                entry * count
            )));
        }
        let frame_size = u64::from(frame_size);
        let mut offsets = Vec::with_capacity(count + 1);
        let mut starts = Vec::with_capacity(count + 1);
        let mut at = header.data_start();
        let mut start = 0u64;
        offsets.push(at);
        starts.push(start);
        for i in 0..count {
            let (plain, size) = if version == VERSION_1 {
                ((header.len - start).min(frame_size), u32_at(index, 4 * i))
            } else {
                (u64::from(u32_at(index, 8 * i)), u32_at(index, 8 * i + 4))
            };
            if size == 0 {
                return Err(Fault::Corrupt(format!("frame {i} has size 0 in the index")));
            }
            if plain == 0 || plain > frame_size {
                return Err(Fault::Corrupt(format!(
                    "frame {i} holds {plain} bytes, outside 1..={frame_size}"
                )));
            }
            if plain > u64::from(size) * MAX_EXPANSION {
                return Err(Fault::Corrupt(format!(
                    "frame {i} claims {plain} bytes from {size} compressed bytes"
                )));
            }
            // No overflow: at most 2^32 frames of at most 2^32 bytes each.
            at += u64::from(size);
            start += plain;
            if start > header.len {
                return Err(Fault::Corrupt(format!(
                    "the frame index holds more than the {} bytes of the header",
                    header.len
                )));
            }
            offsets.push(at);
            starts.push(start);
        }
        if start != header.len {
            return Err(Fault::Corrupt(format!(
                "the frame index holds {start} bytes, the header says {}",
                header.len
            )));
        }
        Ok(Layout {
            len: header.len,
            offsets,
            starts,
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
        // Fits: the header's length fits in usize.
        (self.starts[i + 1] - self.starts[i]) as usize
    }

    /// The frames `first..last` holding the uncompressed bytes `range`
    /// (non-empty, within the length).
    pub fn frames_for(&self, range: std::ops::Range<u64>) -> std::ops::Range<usize> {
        debug_assert!(range.start < range.end && range.end <= self.len);
        // The last frame starting at or before range.start, and the first
        // starting at or after range.end.
        let first = self.starts.partition_point(|&s| s <= range.start) - 1;
        let last = self.starts.partition_point(|&s| s < range.end);
        first..last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 frames header with index `sizes`.
    fn v1_header(len: u64, frame_size: u32, count: u32, sizes: &[u32]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&[VERSION_1, MODE_FRAMES, 0, 0]);
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&frame_size.to_le_bytes());
        v.extend_from_slice(&count.to_le_bytes());
        for s in sizes {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    fn v2_header(len: u64, frame_size: u32, frames: &[(u32, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frames_header(&mut v, len, frame_size, frames);
        v
    }

    fn layout(v: &[u8]) -> Result<Layout, Fault> {
        Layout::parse(&Header::parse(v)?, &v[FRAMES_FIXED_LEN..])
    }

    #[test]
    fn raw_header_round_trip() {
        let mut v = Vec::new();
        write_raw_header(&mut v, 42);
        assert_eq!(v.len(), BASE_LEN);
        assert_eq!(v[4], VERSION_1, "raw objects are written as version 1");
        let h = Header::parse(&v).unwrap();
        assert_eq!(h.len, 42);
        assert_eq!(h.kind, Kind::Raw);
        assert_eq!(h.data_start(), 16);
        v[4] = VERSION; // raw objects read the same in both versions
        assert_eq!(Header::parse(&v).unwrap().kind, Kind::Raw);
    }

    #[test]
    fn v1_frames_header() {
        let v = v1_header(2500, 1000, 3, &[10, 20, 5]);
        let h = Header::parse(&v).unwrap();
        assert_eq!(
            h.kind,
            Kind::Frames {
                version: 1,
                frame_size: 1000,
                count: 3
            }
        );
        assert_eq!(h.data_start(), 40);
        let l = layout(&v).unwrap();
        assert_eq!(l.offsets, vec![40, 50, 70, 75]);
        assert_eq!(l.starts, vec![0, 1000, 2000, 2500]);
        assert_eq!((l.frame_len(0), l.frame_len(2)), (1000, 500));
        assert_eq!(l.frames_for(0..1), 0..1);
        assert_eq!(l.frames_for(999..1001), 0..2);
        assert_eq!(l.frames_for(1000..2000), 1..2);
        assert_eq!(l.frames_for(1000..2001), 1..3);
        assert_eq!(l.frames_for(0..2500), 0..3);
    }

    #[test]
    fn v2_frames_header() {
        let v = v2_header(2008, 1000, &[(1000, 10), (4, 9), (1000, 20), (4, 9)]);
        let h = Header::parse(&v).unwrap();
        assert_eq!(
            h.kind,
            Kind::Frames {
                version: 2,
                frame_size: 1000,
                count: 4
            }
        );
        assert_eq!(h.data_start(), 28 + 32);
        let l = layout(&v).unwrap();
        assert_eq!(l.offsets, vec![60, 70, 79, 99, 108]);
        assert_eq!(l.starts, vec![0, 1000, 1004, 2004, 2008]);
        assert_eq!(l.frame_len(1), 4);
        assert_eq!(l.frames_for(1004..2004), 2..3);
        assert_eq!(l.frames_for(1004..2008), 2..4);
        assert_eq!(l.frames_for(1000..1004), 1..2);
        assert_eq!(l.frames_for(1003..1005), 1..3);
        assert_eq!(l.frames_for(2007..2008), 3..4);
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
        for version in [0, 3, 9, 255] {
            v[4] = version;
            assert!(matches!(Header::parse(&v), Err(Fault::Unsupported(_))));
        }
        v[4] = VERSION;
        v[5] = 7;
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        // v1: the count must be ceil(len / F).
        let v = v1_header(2500, 1000, 2, &[1, 1]);
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        // More than 2^16:1.
        let v = v1_header(1 << 40, 1 << 30, 1 << 10, &[1; 1 << 10]);
        assert!(matches!(layout(&v), Err(Fault::Corrupt(_))));
        // v2: too few frames for F, more frames than bytes.
        let v = v2_header(2001, 1000, &[(1000, 1), (1001, 1)]);
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        let v = v2_header(2, 1000, &[(1, 1), (1, 1), (1, 1)]);
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        // Frame size 0 or over the limit.
        for f in [0, MAX_FRAME + 1, u32::MAX] {
            let v = v2_header(10, f, &[(10, 1)]);
            assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
        }
        // Sizes that do not add up: short, long, a frame over F, a frame of
        // 0 bytes, a compressed size of 0.
        for frames in [
            &[(1000, 5), (999, 5)][..],
            &[(1000, 5), (1000, 5), (1, 5)],
            &[(1001, 5), (999, 5)],
            &[(1000, 5), (0, 5), (1000, 5)],
            &[(1000, 5), (1000, 0)],
        ] {
            let v = v2_header(2000, 1000, frames);
            assert!(matches!(layout(&v), Err(Fault::Corrupt(_))), "{frames:?}");
        }
        let mut v = v2_header(2000, 1000, &[(1000, 5), (1000, 5)]);
        assert!(layout(&v).is_ok());
        v.truncate(v.len() - 1);
        assert!(
            matches!(layout(&v), Err(Fault::Corrupt(_))),
            "truncated index"
        );
        // More than 2^16:1 in one frame.
        let v = v2_header(1 << 20, 1 << 20, &[(1 << 20, 1)]);
        assert!(matches!(layout(&v), Err(Fault::Corrupt(_))), "ratio");
        // A count of 2^32 - 1 frames is refused before anything is allocated
        // for it: the header's length cannot hold them, or the index is short.
        let mut v = v2_header(1 << 40, MAX_FRAME, &[]);
        v[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Header::parse(&v).is_ok());
        assert!(matches!(layout(&v), Err(Fault::Corrupt(_))));
        v[8..16].copy_from_slice(&(u64::MAX >> 1).to_le_bytes());
        assert!(matches!(Header::parse(&v), Err(Fault::Corrupt(_))));
    }
}
