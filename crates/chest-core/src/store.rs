//! The spill store: decides how values become objects, reads them back with
//! their checksums, tracks which objects are still live, and deletes the dead
//! ones once no durable manifest refers to them.
//!
//! Values are stored as *records*: the serialized bytes followed by their
//! CRC-32 (4 bytes, little-endian). A large value is one object holding one
//! record; small values evicted together are packed into one *segment*
//! object. Objects are never overwritten: a new version of a value goes into
//! a new object, so the last durable manifest always points at intact bytes.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::backend::{Backend, BackendResult};
use crate::error::{BackendError, Error, Result};
use crate::manifest::{self, Manifest, ManifestWriter, MANIFEST};

/// `Loc::len` of a record that fills its whole object (a large value).
pub(crate) const WHOLE: u32 = u32::MAX;
/// Prefix of every value object.
pub(crate) const DATA_PREFIX: &str = "data/";
const CRC_LEN: usize = 4;

/// Where a value's record lives: 12 bytes, so a spilled key costs little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub obj: NonZeroU32,
    /// Offset of the record in the object.
    pub offset: u32,
    /// Length of the serialized value (without its checksum), or [`WHOLE`].
    pub len: u32,
}

/// Bytes a record takes in its object (a whole object counts as 0: it dies whole).
fn record_bytes(loc: Loc) -> u64 {
    if loc.len == WHOLE {
        0
    } else {
        u64::from(loc.len) + CRC_LEN as u64
    }
}

pub(crate) fn object_name(id: NonZeroU32) -> String {
    format!("{DATA_PREFIX}{:08x}", id.get())
}

fn parse_object_name(name: &str) -> Option<u32> {
    let hex = name.strip_prefix(DATA_PREFIX)?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok())?
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

/// Appends the checksum to a serialized large value, making it a record.
pub(crate) fn seal_whole(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[derive(Debug)]
struct ObjectInfo {
    size: u64,
    live_records: u32,
    /// Bytes of the live records (with their checksums).
    live_bytes: u64,
    /// One record filling the object (a large value), not a segment.
    whole: bool,
    /// The flush epoch in which the object was written.
    born: u64,
}

#[derive(Debug, Default)]
struct Table {
    objects: HashMap<u32, ObjectInfo>,
    /// Dead objects that a durable manifest may still name: (id, epoch of death).
    dead: Vec<(u32, u64)>,
    /// Bumped when a flush starts and when it ends.
    epoch: u64,
    flushing: bool,
}

/// Why a record could not be read.
pub(crate) enum ReadError {
    Backend(BackendError),
    Corrupt(String),
}

/// The spill store of one chest.
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
    next_object: AtomicU32,
    table: Mutex<Table>,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            next_object: AtomicU32::new(1),
            table: Mutex::default(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn location(&self) -> &str {
        self.backend.location()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn alloc(&self) -> Result<NonZeroU32> {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        NonZeroU32::new(id)
            .filter(|_| id != u32::MAX)
            .ok_or_else(|| Error::Manifest {
                location: self.location().to_string(),
                detail: "object ids are exhausted; copy the chest to a new location".into(),
            })
    }

    fn register(&self, id: NonZeroU32, size: u64, records: u32, whole: bool) {
        let mut t = self.table();
        let born = t.epoch;
        t.objects.insert(
            id.get(),
            ObjectInfo {
                size,
                live_records: records,
                live_bytes: size,
                whole,
                born,
            },
        );
    }

    /// Writes a segment of packed records; returns their locations in order.
    pub fn write_segment(&self, seg: SegmentBuf) -> Result<Vec<Loc>> {
        let id = self.alloc()?;
        let size = seg.bytes.len() as u64;
        self.backend.put(&object_name(id), Bytes::from(seg.bytes))?;
        self.register(id, size, seg.records.len() as u32, false);
        Ok(seg
            .records
            .into_iter()
            .map(|(offset, len)| Loc {
                obj: id,
                offset,
                len,
            })
            .collect())
    }

    /// Writes one record (from [`seal_whole`]) as its own object.
    pub fn write_whole(&self, record: Vec<u8>) -> Result<Loc> {
        let id = self.alloc()?;
        let size = record.len() as u64;
        self.backend.put(&object_name(id), Bytes::from(record))?;
        self.register(id, size, 1, true);
        Ok(Loc {
            obj: id,
            offset: 0,
            len: WHOLE,
        })
    }

    /// Writes several records (from [`seal_whole`]) as objects of their own,
    /// through [`Backend::put_many`] so the backend may write them at once.
    /// On failure, none counts as written.
    pub fn write_wholes(&self, records: Vec<Vec<u8>>) -> Result<Vec<Loc>> {
        let ids = records
            .iter()
            .map(|_| self.alloc())
            .collect::<Result<Vec<_>>>()?;
        let sizes: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
        let objects = ids
            .iter()
            .zip(records)
            .map(|(id, r)| (object_name(*id), Bytes::from(r)))
            .collect();
        if let Err(e) = self.backend.put_many(objects) {
            for id in &ids {
                // Some may have been written; they are garbage now (and
                // removed on the next open if this delete fails too).
                let _ = self.backend.delete(&object_name(*id));
            }
            return Err(e.into());
        }
        Ok(ids
            .into_iter()
            .zip(sizes)
            .map(|(id, size)| {
                self.register(id, size, 1, true);
                Loc {
                    obj: id,
                    offset: 0,
                    len: WHOLE,
                }
            })
            .collect())
    }

    /// What to read for a record: its object, and the range (`None`: all of it).
    fn request(loc: Loc) -> (String, Option<std::ops::Range<u64>>) {
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

    /// Reads a record and checks its checksum; returns the value's bytes.
    pub fn read(&self, loc: Loc) -> std::result::Result<Bytes, ReadError> {
        let record = match Self::request(loc) {
            (name, Some(range)) => self.backend.get_range(&name, range),
            (name, None) => self.backend.get(&name),
        };
        Self::check(record)
    }

    /// Reads several records at once (as far as the backend can).
    pub fn read_many(&self, locs: &[Loc]) -> Vec<std::result::Result<Bytes, ReadError>> {
        let requests = locs.iter().map(|&loc| Self::request(loc)).collect();
        self.backend
            .get_many(requests)
            .into_iter()
            .map(Self::check)
            .collect()
    }

    /// Checks a record read from the backend; returns the value's bytes.
    fn check(record: BackendResult<Bytes>) -> std::result::Result<Bytes, ReadError> {
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
        Ok(record.slice(..value.len()))
    }

    /// An entry no longer refers to `loc`. When its object has no live record
    /// left, it is deleted: at once if no manifest can name it, otherwise
    /// after the next manifest is durable.
    pub fn release(&self, loc: Loc) {
        let mut t = self.table();
        let id = loc.obj.get();
        let Some(info) = t.objects.get_mut(&id) else {
            return;
        };
        info.live_records = info.live_records.saturating_sub(1);
        info.live_bytes = info.live_bytes.saturating_sub(record_bytes(loc));
        if info.live_records > 0 {
            return;
        }
        let born = info.born;
        t.objects.remove(&id);
        if !t.flushing && born == t.epoch {
            drop(t);
            // Never named by a manifest: nothing refers to it any more. A
            // failed delete only leaves garbage that the next open removes.
            let _ = self.backend.delete(&object_name(loc.obj));
        } else {
            let epoch = t.epoch;
            t.dead.push((id, epoch));
        }
    }

    /// Whether dead objects wait for a flush to delete them.
    pub fn has_garbage(&self) -> bool {
        !self.table().dead.is_empty()
    }

    /// Marks the start of a flush; returns its epoch.
    pub fn begin_flush(&self) -> u64 {
        let mut t = self.table();
        t.epoch += 1;
        t.flushing = true;
        t.epoch
    }

    /// Sizes of the given live objects, for the manifest.
    pub fn object_sizes(&self, ids: impl IntoIterator<Item = u32>) -> HashMap<u32, u64> {
        let t = self.table();
        ids.into_iter()
            .filter_map(|id| t.objects.get(&id).map(|o| (id, o.size)))
            .collect()
    }

    /// The manifest's bytes for the entries `w` collected.
    pub fn finish_manifest(&self, w: ManifestWriter, serializer: &str) -> Vec<u8> {
        let sizes = self.object_sizes(w.objects.iter().copied());
        w.finish(serializer, self.next_object.load(Ordering::Relaxed), &sizes)
    }

    /// Writes the manifest, makes it durable, then deletes the objects that
    /// died before the flush of `epoch` began.
    pub fn commit(&self, epoch: u64, manifest: Vec<u8>) -> Result<()> {
        // Values first, then the manifest that names them: a crash never
        // leaves a durable manifest pointing at bytes that are not.
        let written = self
            .backend
            .sync()
            .and_then(|()| self.backend.put(MANIFEST, Bytes::from(manifest)))
            .and_then(|()| self.backend.sync());
        let doomed: Vec<u32> = {
            let mut t = self.table();
            t.flushing = false;
            t.epoch += 1;
            if written.is_ok() {
                let (doomed, kept) = t.dead.drain(..).partition(|&(_, died)| died < epoch);
                t.dead = kept;
                doomed.into_iter().map(|(id, _)| id).collect()
            } else {
                Vec::new()
            }
        };
        written?;
        for id in doomed {
            if let Some(id) = NonZeroU32::new(id) {
                // A failed delete leaves garbage that the next open removes.
                let _ = self.backend.delete(&object_name(id));
            }
        }
        Ok(())
    }

    /// Reads the manifest, if the store has one.
    pub fn load_manifest(&self) -> Result<Option<Manifest>> {
        let bytes = match self.backend.get(MANIFEST) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        manifest::decode(self.location(), bytes).map(Some)
    }

    /// Adopts a loaded manifest: its objects become live with the number of
    /// entries naming them.
    pub fn adopt(&self, m: &Manifest) {
        let mut live: HashMap<u32, (u32, u64, bool)> = HashMap::with_capacity(m.objects.len());
        for (_, loc) in m.entries() {
            let e = live.entry(loc.obj.get()).or_default();
            e.0 += 1;
            e.1 += record_bytes(loc);
            e.2 |= loc.len == WHOLE;
        }
        let mut t = self.table();
        for (&id, &size) in &m.objects {
            let (records, bytes, whole) = live.get(&id).copied().unwrap_or_default();
            t.objects.insert(
                id,
                ObjectInfo {
                    size,
                    live_records: records,
                    live_bytes: if whole { size } else { bytes },
                    whole,
                    born: 0,
                },
            );
        }
        // Objects listed but no longer named by any entry are garbage.
        let unnamed: Vec<u32> = t
            .objects
            .iter()
            .filter(|(_, o)| o.live_records == 0)
            .map(|(&id, _)| id)
            .collect();
        for id in unnamed {
            t.objects.remove(&id);
            t.dead.push((id, 0));
        }
        t.epoch = 1;
        let max_id = m.objects.keys().copied().max().unwrap_or(0);
        self.next_object.store(
            m.next_object.max(max_id.saturating_add(1)).max(1),
            Ordering::Relaxed,
        );
    }

    /// Deletes value objects that no manifest names (left by a crash between
    /// a spill and the next flush). Returns how many were removed.
    pub fn remove_orphans(&self) -> Result<usize> {
        let names = self.backend.list(DATA_PREFIX)?;
        let orphans: Vec<String> = {
            let t = self.table();
            names
                .into_iter()
                .filter(|n| parse_object_name(n).is_none_or(|id| !t.objects.contains_key(&id)))
                .collect()
        };
        for name in &orphans {
            self.backend.delete(name)?;
        }
        Ok(orphans.len())
    }

    /// Number of live value objects.
    pub fn object_count(&self) -> usize {
        self.table().objects.len()
    }

    /// Segments less than half of whose bytes are live: worth rewriting.
    pub fn sparse_segments(&self) -> HashSet<u32> {
        self.table()
            .objects
            .iter()
            .filter(|(_, o)| !o.whole && o.live_bytes * 2 < o.size)
            .map(|(&id, _)| id)
            .collect()
    }
}
