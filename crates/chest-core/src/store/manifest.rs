//! The manifest format: the persisted key index of a chest. Every flush
//! writes a new, numbered manifest (see [`super::commit`]).
//!
//! Format (version 2, little-endian):
//! ```text
//! magic    8 bytes  "CHESTMAN"
//! version  u32      2
//! serializer name   u16 length + UTF-8
//! next object id    u32
//! objects  u32 count, then per object: id u32, size u64
//! entries  u64 count, then per entry: key length (LEB128), key (CBOR),
//!          object id (LEB128), offset u32, length (LEB128)
//! checksum u32      CRC-32 of every byte before it
//! ```
//!
//! Version 1 (written before 2026-12-06, still read) stored an entry's
//! object id and length as `u32` too: 12 bytes where version 2 takes about
//! 7 for a small value (a million keys: a manifest of 12 MB instead of 18,
//! built in memory at every flush). The offset stays a `u32`: in a segment
//! of 8 MiB most offsets need 4 bytes of LEB128 anyway, and a fixed field
//! decodes without a loop.

use foldhash::{HashMap, HashMapExt};
use std::num::NonZeroU32;

use super::record::{record_bytes, Loc, WHOLE};

const MAGIC: &[u8; 8] = b"CHESTMAN";
/// The version written.
const VERSION: u32 = 2;
/// The version of `u32` entry fields, still read.
const VERSION_FIXED: u32 = 1;
/// Magic of objects written by the zstd layer (`chest-zstd`).
const ZSTD_MAGIC: &[u8; 4] = b"CHZS";

/// A decoded manifest. Entries stay in the manifest's bytes and are decoded
/// as they are walked, so opening a large chest makes no per-key allocation
/// beyond the index itself.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    pub serializer: String,
    pub next_object: u32,
    /// Object id → size in bytes.
    pub objects: HashMap<u32, u64>,
    /// Number of entries.
    pub len: usize,
    /// Object id → what its entries hold, counted while the entries are
    /// checked (so opening walks them once less).
    pub named: HashMap<u32, Named>,
    /// The manifest's bytes, where its entries start, and their format.
    bytes: bytes::Bytes,
    entries_at: usize,
    version: u32,
}

impl Manifest {
    /// Every entry: the key (CBOR) and its location. Checked by `decode`.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], Loc)> + '_ {
        let body = &self.bytes[..self.bytes.len() - 4];
        let mut r = Reader {
            bytes: body,
            pos: self.entries_at,
        };
        let version = self.version;
        std::iter::from_fn(move || {
            let (key, obj, offset, len) = r.entry(version)?;
            Some((
                key,
                Loc {
                    obj: NonZeroU32::new(obj)?,
                    offset,
                    len,
                },
            ))
        })
        .take(self.len)
    }
}

/// What a manifest's entries hold of one object.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Named {
    /// Entries naming it.
    pub records: u32,
    /// Bytes of its records (value and checksum) the entries name.
    pub bytes: u64,
    /// Whether an entry names it whole (a value of its own).
    pub whole: bool,
}

/// Size of an object named by an entry, not yet looked up.
const UNSIZED: u64 = u64::MAX;

/// Builds a manifest entry by entry. The size of every object an entry names
/// is recorded while that entry is known to be live (see
/// [`Store::size_objects`](super::Store::size_objects)), so an object that
/// dies while the flush goes on is still listed.
#[derive(Default)]
pub(crate) struct ManifestWriter {
    entries: Vec<u8>,
    count: u64,
    /// Objects named by the entries → their sizes ([`UNSIZED`] until looked up).
    objects: HashMap<u32, u64>,
}

impl ManifestWriter {
    /// Ids of the objects named whose sizes are not known yet.
    pub fn unsized_objects(&self) -> impl Iterator<Item = u32> + '_ {
        self.objects
            .iter()
            .filter(|(_, &s)| s == UNSIZED)
            .map(|(&id, _)| id)
    }

    /// Records the size of object `id`.
    pub fn set_size(&mut self, id: u32, size: u64) {
        self.objects.insert(id, size);
    }

    /// Makes room for `total` entries in all, sized like the ones pushed so
    /// far, at once: a manifest of a million keys grows in one step rather
    /// than by doubling (each doubling of a heap buffer can hold the old
    /// one and the new one at the same time). Nothing to go by before the
    /// first entry.
    pub fn reserve_for(&mut self, total: usize) {
        let count = self.count as usize;
        if count == 0 || total <= count {
            return;
        }
        let per_entry = self.entries.len().div_ceil(count);
        self.entries
            .reserve_exact((total - count).saturating_mul(per_entry + 1) + 64);
    }

    pub fn push(&mut self, key: &[u8], loc: Loc) {
        let mut head = [0u8; 10];
        let used = leb128(key.len() as u64, &mut head);
        self.entries.extend_from_slice(&head[..used]);
        self.entries.extend_from_slice(key);
        // Two LEB128 u32 and a u32 take at most 14 bytes.
        let mut tail = [0u8; 14];
        let mut used = leb128(u64::from(loc.obj.get()), &mut tail);
        tail[used..used + 4].copy_from_slice(&loc.offset.to_le_bytes());
        used += 4;
        used += leb128(u64::from(loc.len), &mut tail[used..]);
        self.entries.extend_from_slice(&tail[..used]);
        self.objects.entry(loc.obj.get()).or_insert(UNSIZED);
        self.count += 1;
    }

    /// The manifest's bytes, or the id of an object whose size was never
    /// recorded (a bug: such a manifest could not be opened again).
    pub fn finish(self, serializer: &str, next_object: u32) -> std::result::Result<Vec<u8>, u32> {
        if let Some(id) = self.unsized_objects().next() {
            return Err(id);
        }
        let objects = &self.objects;
        let mut head = Vec::with_capacity(64 + objects.len() * 12);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        let name = serializer.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        head.extend_from_slice(&(name.len() as u16).to_le_bytes());
        head.extend_from_slice(name);
        head.extend_from_slice(&next_object.to_le_bytes());
        head.extend_from_slice(&(objects.len() as u32).to_le_bytes());
        let mut ids: Vec<_> = objects.iter().collect();
        ids.sort_unstable();
        for (id, size) in ids {
            head.extend_from_slice(&id.to_le_bytes());
            head.extend_from_slice(&size.to_le_bytes());
        }
        head.extend_from_slice(&self.count.to_le_bytes());
        // The entries' buffer becomes the manifest (the head moved in
        // front): a manifest of a million keys is not held twice.
        let mut buf = self.entries;
        buf.reserve_exact(head.len() + 4);
        buf.splice(0..0, head);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok(buf)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn entry(&mut self, version: u32) -> Option<(&'a [u8], u32, u32, u32)> {
        let key_len = usize::try_from(self.varint()?).ok()?;
        let key = self.take(key_len)?;
        if version == VERSION_FIXED {
            return Some((key, self.u32()?, self.u32()?, self.u32()?));
        }
        let obj = u32::try_from(self.varint()?).ok()?;
        let offset = self.u32()?;
        let len = u32::try_from(self.varint()?).ok()?;
        Some((key, obj, offset, len))
    }

    #[inline]
    fn varint(&mut self) -> Option<u64> {
        let (bytes, mut pos) = (self.bytes, self.pos);
        let mut n = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *bytes.get(pos)?;
            pos += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                self.pos = pos;
                return Some(n);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
}

/// Writes `n` as LEB128 at the start of `out` (room for 10 bytes, or 5
/// for a `u32`); returns how many bytes it took.
fn leb128(mut n: u64, out: &mut [u8]) -> usize {
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out[i] = byte;
            return i + 1;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

/// Why a manifest could not be decoded.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Damaged: empty, truncated, failed its checksum, or inconsistent. A
    /// manifest torn by a power loss looks like this; an older one may do.
    Damaged(String),
    /// Whole, but not for this build or this URL (another format version,
    /// written through another layer): never to be skipped over.
    Foreign(String),
}

#[cfg(test)]
impl DecodeError {
    pub fn detail(&self) -> &str {
        match self {
            DecodeError::Damaged(d) | DecodeError::Foreign(d) => d,
        }
    }
}

/// Decodes a manifest, checking magic, version, checksum and every entry.
pub(crate) fn decode(bytes: bytes::Bytes) -> std::result::Result<Manifest, DecodeError> {
    let bad = DecodeError::Damaged;
    if bytes.starts_with(ZSTD_MAGIC) {
        return Err(DecodeError::Foreign(
            "it was written through the zstd layer; open the chest with a `zstd+` URL".into(),
        ));
    }
    if bytes.is_empty() {
        return Err(bad("the manifest is empty".into()));
    }
    if bytes.len() < MAGIC.len() + 8 || !bytes.starts_with(MAGIC) {
        return Err(bad(format!(
            "not a chest manifest ({} bytes, does not start with {:?}); was it written through another layer such as `zstd+`?",
            bytes.len(),
            std::str::from_utf8(MAGIC).unwrap_or_default()
        )));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| bad("truncated".into()))?);
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(bad(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the manifest is corrupt or truncated"
        )));
    }
    let mut r = Reader {
        bytes: body,
        pos: MAGIC.len(),
    };
    let truncated = || bad("truncated".into());
    let version = r.u32().ok_or_else(truncated)?;
    if version != VERSION && version != VERSION_FIXED {
        return Err(DecodeError::Foreign(format!(
            "format version {version}; this build reads versions {VERSION_FIXED} and {VERSION}"
        )));
    }
    let name_len = r.u16().ok_or_else(truncated)? as usize;
    let serializer = String::from_utf8(r.take(name_len).ok_or_else(truncated)?.to_vec())
        .map_err(|_| bad("serializer name is not UTF-8".into()))?;
    let next_object = r.u32().ok_or_else(truncated)?;
    let n_objects = r.u32().ok_or_else(truncated)? as usize;
    let mut objects = HashMap::with_capacity(n_objects.min(body.len() / 12));
    for _ in 0..n_objects {
        let id = r.u32().ok_or_else(truncated)?;
        let size = r.u64().ok_or_else(truncated)?;
        objects.insert(id, size);
    }
    let n_entries = r.u64().ok_or_else(truncated)?;
    let entries_at = r.pos;
    let mut named: HashMap<u32, Named> = HashMap::with_capacity(objects.len());
    for _ in 0..n_entries {
        let (_, obj, offset, len) = r.entry(version).ok_or_else(truncated)?;
        let Some(id) = NonZeroU32::new(obj).filter(|_| objects.contains_key(&obj)) else {
            return Err(bad(format!(
                "an entry names object {obj}, which the manifest does not list"
            )));
        };
        let n = named.entry(obj).or_default();
        n.records += 1;
        n.bytes += record_bytes(Loc {
            obj: id,
            offset,
            len,
        });
        n.whole |= len == WHOLE;
    }
    if r.pos != body.len() {
        return Err(bad(format!("{} trailing bytes", body.len() - r.pos)));
    }
    Ok(Manifest {
        serializer,
        next_object,
        objects,
        len: usize::try_from(n_entries).map_err(|_| truncated())?,
        named,
        bytes,
        entries_at,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ManifestWriter::default();
        let loc = |obj, offset, len| Loc {
            obj: NonZeroU32::new(obj).unwrap(),
            offset,
            len,
        };
        w.push(b"k1", loc(1, 0, 10));
        w.push(&[7u8; 300], loc(2, 0, super::super::record::WHOLE));
        assert_eq!(w.unsized_objects().count(), 2);
        w.set_size(1, 100);
        assert_eq!(w.unsized_objects().collect::<Vec<_>>(), [2]);
        w.set_size(2, 5000);
        w.finish("cbor", 3).unwrap()
    }

    #[test]
    fn an_unsized_object_is_refused() {
        let mut w = ManifestWriter::default();
        let loc = Loc {
            obj: NonZeroU32::new(9).unwrap(),
            offset: 0,
            len: 1,
        };
        w.push(b"k", loc);
        assert_eq!(w.finish("cbor", 10), Err(9));
    }

    #[test]
    fn round_trip() {
        let m = decode(sample().into()).unwrap();
        assert_eq!(m.serializer, "cbor");
        assert_eq!(m.next_object, 3);
        assert_eq!(m.objects.len(), 2);
        let entries: Vec<_> = m.entries().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, b"k1");
        assert_eq!(entries[0].1.len, 10);
        assert_eq!(entries[1].0, &[7u8; 300][..]);
        assert_eq!(entries[1].1.len, super::super::record::WHOLE);
        // What the entries hold of each object, counted while checking them.
        let one = Named {
            records: 1,
            bytes: record_bytes(entries[0].1),
            whole: false,
        };
        assert!(one.bytes > 10, "the record's checksum counts too");
        assert_eq!(m.named[&1], one);
        let two = Named {
            records: 1,
            bytes: 0,
            whole: true,
        };
        assert_eq!(m.named[&2], two);
    }

    /// A manifest as version 1 wrote it: entries' object id, offset and
    /// length as three `u32`.
    fn version_1(version: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(MAGIC);
        m.extend_from_slice(&version.to_le_bytes());
        m.extend_from_slice(&4u16.to_le_bytes());
        m.extend_from_slice(b"cbor");
        m.extend_from_slice(&8u32.to_le_bytes()); // next object
        m.extend_from_slice(&1u32.to_le_bytes()); // one object
        m.extend_from_slice(&7u32.to_le_bytes());
        m.extend_from_slice(&5000u64.to_le_bytes());
        m.extend_from_slice(&2u64.to_le_bytes()); // two entries
        for (key, offset, len) in [(&b"a"[..], 0u32, 100u32), (&b"bc"[..], 100, 4000)] {
            m.push(key.len() as u8);
            m.extend_from_slice(key);
            for n in [7u32, offset, len] {
                m.extend_from_slice(&n.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&m);
        m.extend_from_slice(&crc.to_le_bytes());
        m
    }

    #[test]
    fn a_version_1_manifest_is_still_read() {
        let m = decode(version_1(1).into()).unwrap();
        assert_eq!(
            (m.serializer.as_str(), m.next_object, m.len),
            ("cbor", 8, 2)
        );
        let entries: Vec<_> = m
            .entries()
            .map(|(k, l)| (k.to_vec(), l.obj.get(), l.offset, l.len))
            .collect();
        assert_eq!(
            entries,
            [(b"a".to_vec(), 7, 0, 100), (b"bc".to_vec(), 7, 100, 4000)]
        );
        // A version this build does not know is foreign, not damage.
        let err = decode(version_1(3).into()).unwrap_err();
        assert!(matches!(err, DecodeError::Foreign(_)), "{err:?}");
    }

    #[test]
    fn entries_take_a_byte_per_small_field_but_the_offset() {
        let mut w = ManifestWriter::default();
        let loc = Loc {
            obj: NonZeroU32::new(200).unwrap(),
            offset: 1_000_000,
            len: 100,
        };
        w.push(&[0x1a, 0, 1, 0, 0], loc);
        // Key length 1, key 5, object 2, offset 4, length 1.
        assert_eq!(w.entries.len(), 13);
        w.set_size(200, 2_000_000);
        let m = decode(w.finish("cbor", 201).unwrap().into()).unwrap();
        let (key, back) = m.entries().next().unwrap();
        assert_eq!(key, [0x1a, 0, 1, 0, 0]);
        assert_eq!(
            (back.obj.get(), back.offset, back.len),
            (200, 1_000_000, 100)
        );
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_detected() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x55;
            assert!(decode(bad.into()).is_err(), "flip at {i} undetected");
            // A torn write (any prefix) is damage, never taken for another format.
            assert!(
                matches!(
                    decode(good[..i].to_vec().into()),
                    Err(DecodeError::Damaged(_))
                ),
                "truncation at {i} not seen as damage"
            );
        }
    }

    #[test]
    fn zstd_objects_get_a_hint() {
        let err = decode(bytes::Bytes::from_static(b"CHZS\x01....")).unwrap_err();
        assert!(matches!(err, DecodeError::Foreign(_)), "{err:?}");
        assert!(err.detail().contains("zstd+"), "{err:?}");
    }
}
