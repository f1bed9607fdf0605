//! Reading objects back: a whole object decoded, or a range of one read
//! through its frame index (a probe of the first bytes, then only the
//! frames the range needs).

use std::ops::Range;

use bytes::Bytes;
use chest_core::BackendExt;
use chest_core::{BackendError, BackendResult};

use crate::backend::ZstdBackend;
use crate::codec;
use crate::format::{self, Fault, Header, Kind, Layout, MAGIC};

/// Bytes read first by a ranged read: the header, the frame index of objects
/// up to about 1 GiB (with the default frame size), and often the data too.
const PROBE: u64 = 16 << 10;
impl ZstdBackend {
    /// Decodes a whole stored object.
    pub(crate) fn decode_whole(&self, name: &str, stored: Bytes) -> BackendResult<Bytes> {
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
    pub(crate) fn fault(&self, name: &str, fault: Fault) -> BackendError {
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
    pub(crate) fn probe(&self, name: &str) -> BackendResult<Bytes> {
        match self.inner.get_range(name, 0..PROBE) {
            Ok(b) if b.len() as u64 == PROBE => Ok(b),
            // Shorter than the probe (or a backend that clips ranges): read it whole.
            Ok(_) | Err(BackendError::RangeOutOfBounds { .. }) => self.inner.get(name),
            Err(e) => Err(e),
        }
    }

    /// The frame layout of an object, given its header and first bytes.
    pub(crate) fn layout(
        &self,
        name: &str,
        header: &Header,
        prefix: &Bytes,
    ) -> BackendResult<Layout> {
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
    pub(crate) fn stored_range(
        &self,
        name: &str,
        prefix: &Bytes,
        range: Range<u64>,
    ) -> BackendResult<Bytes> {
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
    pub(crate) fn decompress(
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
}
