//! Records: how a value's bytes sit in an object, and where.
//!
//! A record is the serialized value followed by its CRC-32 (4 bytes,
//! little-endian). A large value is one object holding one record (a
//! *whole* object); small values written together are packed into one
//! *segment* object.

use std::num::NonZeroU32;

use bytes::Bytes;

use crate::backend::BackendResult;
use crate::error::{BackendError, BoxError};
use crate::value::serializer::Serializer;

/// `Loc::len` of a record that fills its whole object (a large value).
pub(crate) const WHOLE: u32 = u32::MAX;
/// Prefix of every value object.
pub(crate) const DATA_PREFIX: &str = "data/";
pub(crate) const CRC_LEN: usize = 4;

/// Where a value's record lives: 12 bytes, so a spilled key costs little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub obj: NonZeroU32,
    /// Offset of the record in the object.
    pub offset: u32,
    /// Length of the serialized value (without its checksum), or [`WHOLE`].
    pub len: u32,
}

/// Bytes a record takes in its object (a whole object counts as 0: it dies whole).
pub(crate) fn record_bytes(loc: Loc) -> u64 {
    if loc.len == WHOLE {
        0
    } else {
        u64::from(loc.len) + CRC_LEN as u64
    }
}

/// The name of value object `id`: `data/` and 8 lowercase hex digits.
/// Made on the stack: it names the object of every read, where `format!`
/// took 3% of the time of W2's reads, and a `String` an allocation.
pub(crate) fn object_name(id: NonZeroU32) -> ObjectName {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = ObjectName::new();
    name.push_str(DATA_PREFIX);
    let id = id.get();
    for shift in (0..8).rev() {
        name.push(char::from(HEX[((id >> (shift * 4)) & 0xf) as usize]));
    }
    name
}

/// A value object's name (see [`object_name`]), a `&str` by deref.
pub(crate) type ObjectName = arrayvec::ArrayString<{ DATA_PREFIX.len() + 8 }>;

/// The id of a value object's name; `None` for any name the chest did not
/// make (so that nothing else is ever taken for one of its objects).
pub(crate) fn parse_object_name(name: &str) -> Option<NonZeroU32> {
    let hex = name.strip_prefix(DATA_PREFIX)?;
    if hex.len() != 8 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    NonZeroU32::new(u32::from_str_radix(hex, 16).ok()?)
}

/// Serialized values waiting to be written as one segment.
#[derive(Default)]
pub(crate) struct SegmentBuf {
    pub bytes: Vec<u8>,
    /// (offset, len) of each record.
    pub records: Vec<(u32, u32)>,
}

impl SegmentBuf {
    /// Starts a record; the caller appends the value's bytes to `self.bytes`.
    pub fn begin(&self) -> usize {
        self.bytes.len()
    }

    /// Seals the record begun at `start` with its checksum.
    pub fn seal(&mut self, start: usize) {
        let crc = crc32fast::hash(&self.bytes[start..]);
        let len = (self.bytes.len() - start) as u32;
        self.bytes.extend_from_slice(&crc.to_le_bytes());
        self.records.push((start as u32, len));
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A large value's record, ready to be written: its bytes and checksum.
pub(crate) enum WholeRecord {
    /// A serialized buffer with its checksum appended.
    Owned(Vec<u8>),
    /// Bytes shared with the value itself (not copied), and their checksum.
    Shared(Bytes, [u8; CRC_LEN]),
}

impl WholeRecord {
    /// Bytes of the record, checksum included.
    pub fn len(&self) -> usize {
        match self {
            WholeRecord::Owned(v) => v.len(),
            WholeRecord::Shared(b, _) => b.len() + CRC_LEN,
        }
    }

    /// The record as parts to write one after the other (no copy). Returns
    /// a second handle on the buffer of an owned record, to take it back
    /// once written ([`WriteBuffers::reclaim`](super::buffers::WriteBuffers::reclaim)).
    pub fn into_parts(self, parts: &mut Vec<Bytes>) -> Option<Bytes> {
        match self {
            WholeRecord::Owned(v) => {
                let bytes = Bytes::from(v);
                parts.push(bytes.clone());
                Some(bytes)
            }
            WholeRecord::Shared(b, crc) => {
                parts.push(b);
                parts.push(Bytes::copy_from_slice(&crc));
                None
            }
        }
    }
}

/// Appends the checksum to a serialized large value, making it a record.
pub(crate) fn seal_whole(mut bytes: Vec<u8>) -> WholeRecord {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    WholeRecord::Owned(bytes)
}

/// A record of a value's own bytes, checksummed in place.
pub(crate) fn seal_shared(bytes: Bytes) -> WholeRecord {
    let crc = crc32fast::hash(&bytes);
    WholeRecord::Shared(bytes, crc.to_le_bytes())
}

/// Why a record could not be read.
pub(crate) enum ReadError {
    Backend(BackendError),
    Corrupt(String),
}

/// What to read for a record: its object, and the range (`None`: all of it).
pub(crate) fn request(loc: Loc) -> (ObjectName, Option<std::ops::Range<u64>>) {
    let name = object_name(loc.obj);
    if loc.len == WHOLE {
        (name, None)
    } else {
        let start = u64::from(loc.offset);
        (
            name,
            Some(start..start + u64::from(loc.len) + CRC_LEN as u64),
        )
    }
}

/// Checks a record read from the backend (its checksum, its length).
pub(crate) fn check(record: BackendResult<Bytes>) -> Result<Checked, ReadError> {
    let record = record.map_err(|e| match e {
        BackendError::RangeOutOfBounds { size, .. } => {
            ReadError::Corrupt(format!("the object is truncated ({size} bytes)"))
        }
        BackendError::Corrupt { detail, .. } => ReadError::Corrupt(detail),
        e => ReadError::Backend(e),
    })?;
    if record.len() < CRC_LEN {
        return Err(ReadError::Corrupt(format!(
            "the record is {} bytes, shorter than its checksum",
            record.len()
        )));
    }
    let (value, crc) = record.split_at(record.len() - CRC_LEN);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32fast::hash(value);
    if stored != actual {
        return Err(ReadError::Corrupt(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        )));
    }
    let len = value.len();
    Ok(Checked { record, len })
}

/// A record whose checksum [`check`] found right: the record as read, and
/// how much of it is the value (the rest is the checksum).
pub(crate) struct Checked {
    record: Bytes,
    len: usize,
}

impl Checked {
    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The value's bytes, borrowed.
    pub fn value(&self) -> &[u8] {
        &self.record[..self.len]
    }

    /// The value's bytes, as a `Bytes`.
    pub fn into_bytes(self) -> Bytes {
        self.record.slice(..self.len)
    }

    /// The value, deserialized by `serializer`. A record that nothing else
    /// holds (what a read of a file gives) becomes the `Vec` that
    /// [`Serializer::deserialize_vec`] takes: shortened to the value in
    /// place, with no allocation (a `Bytes` made from a `Vec` cannot be
    /// shortened without moving it into a shared allocation first: a
    /// `malloc` and a `free` per read of a small value, before this). A
    /// record shared with others (a backend's cache) is sliced.
    pub fn deserialize<V, S: Serializer<V> + ?Sized>(self, serializer: &S) -> Result<V, BoxError> {
        if self.record.is_unique() {
            let mut value = Vec::from(self.record);
            value.truncate(self.len);
            if value.capacity() > self.len + self.len / 8 + 64 {
                // A record cut from a larger buffer (a network read's)
                // would keep all of it: the value gets its own size.
                value.shrink_to_fit();
            }
            serializer.deserialize_vec(value)
        } else {
            serializer.deserialize_owned(self.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of(value: &[u8]) -> Vec<u8> {
        let mut record = value.to_vec();
        record.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
        record
    }

    #[test]
    fn a_record_nothing_else_holds_becomes_the_value_without_a_copy() {
        let record = record_of(b"a small value");
        let at = record.as_ptr();
        let checked = check(Ok(Bytes::from(record))).ok().unwrap();
        assert_eq!(checked.value(), b"a small value");
        let value: Vec<u8> = checked.deserialize(&crate::Raw).unwrap();
        assert_eq!(value, b"a small value");
        assert_eq!(value.as_ptr(), at, "the record's own buffer");
    }

    #[test]
    fn a_record_cut_from_a_larger_buffer_does_not_keep_it() {
        let mut buffer = vec![0u8; 1 << 16];
        let record = record_of(b"in a large buffer");
        buffer[100..100 + record.len()].copy_from_slice(&record);
        let mut bytes = Bytes::from(buffer);
        let cut = bytes.split_off(100).split_to(record.len());
        drop(bytes);
        let value: Vec<u8> = check(Ok(cut))
            .ok()
            .unwrap()
            .deserialize(&crate::Raw)
            .unwrap();
        assert_eq!(value, b"in a large buffer");
        assert!(value.capacity() < 1024, "capacity {}", value.capacity());
    }

    #[test]
    fn a_record_shared_with_others_is_copied_out_and_left_whole() {
        let record = Bytes::from(record_of(b"shared"));
        let other = record.clone();
        let checked = check(Ok(record)).ok().unwrap();
        let value: Vec<u8> = checked.deserialize(&crate::Raw).unwrap();
        assert_eq!(value, b"shared");
        assert_eq!(other, Bytes::from(record_of(b"shared")));
        // A serializer without `deserialize_vec` of its own gets the value's bytes.
        let checked = check(Ok(Bytes::from(record_of(&[0x63, b'a', b'b', b'c']))))
            .ok()
            .unwrap();
        let text: String = checked.deserialize(&crate::Cbor).unwrap();
        assert_eq!(text, "abc");
    }

    #[test]
    fn a_record_whose_checksum_is_wrong_is_corrupt() {
        let mut record = record_of(b"value");
        record[0] ^= 1;
        assert!(matches!(
            check(Ok(Bytes::from(record))),
            Err(ReadError::Corrupt(_))
        ));
        assert!(matches!(
            check(Ok(Bytes::from_static(b"abc"))),
            Err(ReadError::Corrupt(_))
        ));
    }

    #[test]
    fn only_the_chests_own_names_are_object_names() {
        let id = NonZeroU32::new(0x1a2b).unwrap();
        assert_eq!(&object_name(id), "data/00001a2b");
        assert_eq!(&object_name(NonZeroU32::MAX), "data/ffffffff");
        assert_eq!(
            &*object_name(NonZeroU32::new(0x9c0f_e3d7).unwrap()),
            "data/9c0fe3d7"
        );
        assert_eq!(parse_object_name(&object_name(id)), Some(id));
        for other in [
            "data/results.csv",
            "data/0000001A",
            "data/00000000",
            "data/+0000001",
            "data/000000001",
            "data/x/00000001",
            "manifest",
            "data/",
        ] {
            assert_eq!(parse_object_name(other), None, "{other}");
        }
    }
}
