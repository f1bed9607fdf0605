//! The spill store: decides how values become objects, reads them back with
//! their checksums, tracks which objects are still live, commits manifests,
//! and deletes dead objects once no durable manifest can name them.
//!
//! Objects are never overwritten: a new version of a value goes into a new
//! object, so the last durable manifest always points at intact bytes.
//!
//! Object lifecycle (all under the table lock):
//! - *born* by a write, live with the number of records it holds;
//! - each [`Store::release`] drops one record; at zero the object is *dead*:
//!   deleted soon (by [`Store::reap`]) if no manifest can name it (born since
//!   the last flush began, and no flush is running); otherwise kept while a
//!   retained manifest may name it. Two manifests are retained, the newest
//!   and the one before it (the fallback if the newest is found damaged), so
//!   a dead object goes when a commit leaves both retained manifests younger
//!   than its death: it died before the *previous* committed flush began.

mod buffers;
mod commit;
mod compact;
mod lease;
pub(crate) mod manifest;
mod record;

use foldhash::{HashMap, HashSet, HashSetExt};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::BackendExt;
use crate::backend::{Backend, SingleWriter};
use crate::error::{Error, Result};
use buffers::WriteBuffers;
use commit::Manifests;
pub(crate) use commit::{Found, Loaded};
use lease::Lease;
use manifest::{Manifest, ManifestWriter};
pub(crate) use record::{
    object_name, seal_shared, seal_whole, Checked, Loc, ReadError, SegmentBuf, WholeRecord, WHOLE,
};
use record::{parse_object_name, record_bytes, DATA_PREFIX};

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
    /// Live objects; changed only by [`Table::insert`] and [`Table::remove`],
    /// which keep `stored` their total size.
    objects: HashMap<u32, ObjectInfo>,
    /// Bytes of the live objects.
    stored: u64,
    /// Bytes of the writes under way (see [`Store::reserve`]).
    reserved: u64,
    /// Dead objects that a durable manifest may still name: (id, epoch of death).
    /// With the instant of death: with a reader grace period (see
    /// [`Store::set_reader_grace`]) a dead object also outlives that.
    dead: Vec<(u32, u64, Instant)>,
    /// Dead objects no manifest can name, to delete at the next
    /// [`Store::reap`] (outside any shard lock).
    unnamed: Vec<u32>,
    /// Bumped when a flush starts and when it ends.
    epoch: u64,
    /// The epoch in which the flush of the older retained manifest began
    /// (0: the manifest read at open, or none): objects that died before
    /// it are named by no retained manifest.
    prev_begin: u64,
    flushing: bool,
}

impl Table {
    fn insert(&mut self, id: u32, info: ObjectInfo) {
        self.stored += info.size;
        if let Some(old) = self.objects.insert(id, info) {
            debug_assert!(false, "object {id} registered twice");
            self.stored -= old.size;
        }
    }

    fn remove(&mut self, id: u32) -> Option<ObjectInfo> {
        let info = self.objects.remove(&id)?;
        self.stored -= info.size;
        Some(info)
    }
}

/// Room reserved under the cap for one write ([`Store::reserve`]); given
/// back when dropped (the write failed, or its objects are registered).
struct Reservation<'a> {
    store: &'a Store,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.store.table().reserved -= self.bytes;
        }
    }
}

/// Largest object [`Store::write_wholes`] packs records into (offsets are
/// `u32`).
const PACKED_MAX: usize = 1 << 31;

/// The spill store of one chest.
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
    next_object: AtomicU32,
    table: Mutex<Table>,
    manifests: Mutex<Manifests>,
    /// Set when `Table::unnamed` has objects to delete.
    reapable: AtomicBool,
    /// The writer lease, on a store that keeps to one writer with one
    /// (see `lease`); checked before every write and delete.
    lease: OnceLock<Lease>,
    /// How long a dead object outlives its death at least, for readers
    /// still on an older manifest, on a store that readers may share with
    /// this writer (`shared`).
    grace: Duration,
    /// The store is shared with readers beside this writer: a chest keeps it
    /// to one writer with a lease ([`SingleWriter::Lease`]). (Over a
    /// [`SingleWriter::Trusted`] store nothing is known of other processes,
    /// and dead objects go at once.)
    shared: AtomicBool,
    /// Superseded manifests kept for readers until the grace period ends.
    retired: Mutex<Vec<(String, Instant)>>,
    /// The cap on stored bytes (`max_spill`), if any.
    max_stored: Option<u64>,
    /// Buffers of written records, kept for the next ones.
    buffers: WriteBuffers,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.get() {
            if self.manifests().uncertain.is_some() {
                // A manifest write may still land: leave the lease to expire,
                // so the next writer fences this one off first.
                lease.keep_on_drop();
            }
        }
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            next_object: AtomicU32::new(1),
            table: Mutex::default(),
            manifests: Mutex::default(),
            reapable: AtomicBool::new(false),
            lease: OnceLock::new(),
            grace: Duration::ZERO,
            shared: AtomicBool::new(false),
            retired: Mutex::new(Vec::new()),
            max_stored: None,
            buffers: WriteBuffers::default(),
        }
    }

    /// Keeps up to `bytes` of written records' buffers for the next
    /// records ([`Store::buffer`]). Set before the store is used.
    pub fn set_buffer_cache(&mut self, bytes: usize) {
        self.buffers = WriteBuffers::new(bytes);
    }

    /// An empty buffer with room for `capacity` bytes to serialize records
    /// into: one a past write left, if one is large enough.
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        self.buffers.take(capacity)
    }

    /// Caps the bytes of live objects: a write that would pass it is
    /// refused ([`Error::SpillFull`]). Set before the store is used.
    pub fn set_max_stored(&mut self, max: Option<u64>) {
        self.max_stored = max;
    }

    /// Bytes of the live objects the store holds (what the cap counts).
    pub fn stored_bytes(&self) -> u64 {
        self.table().stored
    }

    /// Reserves room under the cap for a write of `bytes`, or refuses it.
    fn reserve(&self, bytes: u64) -> Result<Reservation<'_>> {
        let mut t = self.table();
        if let Some(max) = self.max_stored {
            let taken = t.stored + t.reserved;
            if taken.saturating_add(bytes) > max {
                return Err(Error::SpillFull {
                    location: self.location().to_string(),
                    max_spill: max,
                    stored: taken,
                    needed: bytes,
                });
            }
        }
        t.reserved += bytes;
        Ok(Reservation { store: self, bytes })
    }

    /// Dead objects stay at least `grace` after they die (beyond the two
    /// retained manifests) on a store that readers may share with this
    /// writer, so a read-only chest on an older manifest can still read
    /// them for that long. Set before the store is used.
    pub fn set_reader_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// The grace period that applies (zero where no reader can be beside
    /// this writer).
    fn grace(&self) -> Duration {
        if self.shared.load(Ordering::Relaxed) {
            self.grace
        } else {
            Duration::ZERO
        }
    }

    /// Makes this store the location's one writer, as its backend keeps to
    /// one ([`Backend::single_writer`]): with a lease if it takes one.
    /// Returns the record of an expired lease it took over (its holder may
    /// still be running, so the caller fences it off with
    /// [`Store::fence`] before deleting anything).
    pub fn claim(&self, ttl: Duration) -> Result<Option<lease::Record>> {
        let answer = self.backend.single_writer()?;
        self.shared
            .store(answer == SingleWriter::Lease, Ordering::Relaxed);
        match answer {
            SingleWriter::Held | SingleWriter::Trusted => Ok(None),
            SingleWriter::Unavailable(reason) => Err(Error::NoSingleWriter {
                location: self.location().to_string(),
                reason,
            }),
            SingleWriter::Lease => {
                let acquired = Lease::acquire(Arc::clone(&self.backend), ttl)?;
                self.next_object
                    .fetch_max(acquired.ids_floor, Ordering::Relaxed);
                let expired = acquired.expired;
                // `claim` runs once, at open, before any other use.
                let _ = self.lease.set(acquired.lease);
                Ok(expired)
            }
        }
    }

    /// Whether the location holds a newer manifest than the one this store
    /// read or last committed (a read-only chest's snapshot is then stale).
    pub fn snapshot_is_stale(&self) -> bool {
        let current = self.manifests().current;
        commit::newest(&*self.backend).is_ok_and(|newest| newest > current)
    }

    /// The id the next new object gets.
    pub fn next_object(&self) -> u32 {
        self.next_object.load(Ordering::Relaxed)
    }

    /// Fails with [`Error::Fenced`] once this store has lost its lease.
    pub fn writable(&self) -> Result<()> {
        match self.lease.get() {
            Some(lease) => lease.check(),
            None => Ok(()),
        }
    }

    /// The epoch of the writer lease held (`None`: no lease).
    pub fn lease_epoch(&self) -> Option<u64> {
        self.lease.get().map(Lease::epoch)
    }

    /// After taking over an expired lease: writes a manifest of this
    /// writer's own (a copy of the newest one, `raw`) under the next
    /// number, so that a late commit of the previous holder finds its number
    /// taken. `Ok(false)`: a newer manifest appeared meanwhile (that
    /// holder's last commit); discover again and fence again.
    pub fn fence(&self, raw: Bytes) -> Result<bool> {
        self.writable()?;
        let mut known = self.manifests();
        commit::fence(&*self.backend, &mut known, raw)
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

    fn manifests(&self) -> MutexGuard<'_, Manifests> {
        self.manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn alloc(&self) -> Result<NonZeroU32> {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        let id = NonZeroU32::new(id)
            .filter(|_| id != u32::MAX)
            .ok_or_else(|| Error::Manifest {
                location: self.location().to_string(),
                detail: "object ids are exhausted; copy the chest to a new location".into(),
            })?;
        if let Some(lease) = self.lease.get() {
            lease.reserve_ids(id.get().saturating_add(1))?;
        }
        Ok(id)
    }

    fn register(&self, id: NonZeroU32, size: u64, records: u32, whole: bool) {
        let mut t = self.table();
        let born = t.epoch;
        t.insert(
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
        self.write_segment_capped(seg, true)
    }

    /// [`Store::write_segment`], within the cap on stored bytes or not (a
    /// compaction's copy, which frees more than it writes, is not held to it).
    pub(crate) fn write_segment_capped(&self, seg: SegmentBuf, capped: bool) -> Result<Vec<Loc>> {
        self.writable()?;
        let size = seg.bytes.len() as u64;
        let _room = if capped {
            Some(self.reserve(size)?)
        } else {
            None
        };
        let id = self.alloc()?;
        let bytes = Bytes::from(seg.bytes);
        let written = self.backend.put(&object_name(id), bytes.clone());
        self.buffers.reclaim(bytes);
        written?;
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

    /// Writes several records (from [`seal_whole`] or [`seal_shared`]) as
    /// objects of their own, through [`Backend::put_many`] so the
    /// backend may write them at once, and without joining a shared value's
    /// bytes with its checksum.
    /// On failure, none counts as written.
    ///
    /// On a backend that [packs large values](Capabilities::packs_large_values)
    /// (a local directory), several records go into one object instead,
    /// written part by part with no joined copy, each a record of a segment.
    pub fn write_wholes(&self, records: Vec<WholeRecord>) -> Result<Vec<Loc>> {
        self.writable()?;
        let total: usize = records.iter().map(WholeRecord::len).sum();
        let _room = self.reserve(total as u64)?;
        if records.len() > 1 && self.backend.capabilities().packs_large_values && total < PACKED_MAX
        {
            return self.write_packed(records);
        }
        let ids = records
            .iter()
            .map(|_| self.alloc())
            .collect::<Result<Vec<_>>>()?;
        let sizes: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
        let mut buffers = Vec::with_capacity(records.len());
        let objects = ids
            .iter()
            .zip(records)
            .map(|(id, r)| {
                let mut parts = Vec::with_capacity(2);
                buffers.extend(r.into_parts(&mut parts));
                (object_name(*id).to_string(), parts)
            })
            .collect();
        let written = self.backend.put_many(objects);
        for b in buffers {
            self.buffers.reclaim(b);
        }
        if let Err(e) = written {
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

    /// Writes sealed records as one object (a segment of large records).
    fn write_packed(&self, records: Vec<WholeRecord>) -> Result<Vec<Loc>> {
        let id = self.alloc()?;
        let mut locs = Vec::with_capacity(records.len());
        let mut offset = 0usize;
        let mut parts: Vec<Bytes> = Vec::with_capacity(records.len() * 2);
        let mut buffers = Vec::with_capacity(records.len());
        for r in records {
            // Checked by the caller: the whole object is under 4 GiB.
            let len = r.len();
            locs.push(Loc {
                obj: id,
                offset: offset as u32,
                len: (len - record::CRC_LEN) as u32,
            });
            offset += len;
            buffers.extend(r.into_parts(&mut parts));
        }
        let written = self.backend.put_parts(&object_name(id), parts);
        for b in buffers {
            self.buffers.reclaim(b);
        }
        if let Err(e) = written {
            // Possibly written: garbage now, removed by the next open if
            // this delete fails too.
            let _ = self.backend.delete(&object_name(id));
            return Err(e.into());
        }
        self.register(id, offset as u64, locs.len() as u32, false);
        Ok(locs)
    }

    /// Bytes of the value stored at `loc` (without its checksum), as far as
    /// the object table knows (0 for an object it does not know).
    pub fn value_len(&self, loc: Loc) -> usize {
        if loc.len != WHOLE {
            return loc.len as usize;
        }
        let size = self
            .table()
            .objects
            .get(&loc.obj.get())
            .map_or(0, |o| o.size);
        (size as usize).saturating_sub(record::CRC_LEN)
    }

    /// Reads a record and checks its checksum.
    pub fn read(&self, loc: Loc) -> std::result::Result<Checked, ReadError> {
        let record = match record::request(loc) {
            (name, Some(range)) => self.backend.get_range(&name, range),
            (name, None) => self.backend.get(&name),
        };
        record::check(record)
    }

    /// Reads several records at once (as far as the backend can).
    pub fn read_many(&self, locs: &[Loc]) -> Vec<std::result::Result<Checked, ReadError>> {
        let requests = locs
            .iter()
            .map(|&loc| {
                let (name, range) = record::request(loc);
                (name.to_string(), range)
            })
            .collect();
        self.backend
            .get_many(requests)
            .into_iter()
            .map(record::check)
            .collect()
    }

    /// An entry no longer refers to `loc`. When its object has no live record
    /// left, it is deleted: by the next [`Store::reap`] if no manifest can
    /// name it, otherwise after the next manifest is durable. No I/O here:
    /// this is called under shard locks.
    pub fn release(&self, loc: Loc) {
        let mut t = self.table();
        let id = loc.obj.get();
        let Some(info) = t.objects.get_mut(&id) else {
            debug_assert!(false, "released a record of object {id}, which is not live");
            return;
        };
        debug_assert!(info.live_records > 0);
        info.live_records = info.live_records.saturating_sub(1);
        info.live_bytes = info.live_bytes.saturating_sub(record_bytes(loc));
        if info.live_records > 0 {
            return;
        }
        let born = info.born;
        t.remove(id);
        if !t.flushing && born == t.epoch {
            // Never named by a manifest: nothing refers to it any more.
            t.unnamed.push(id);
            self.reapable.store(true, Ordering::Release);
        } else {
            let epoch = t.epoch;
            t.dead.push((id, epoch, Instant::now()));
        }
    }

    /// Deletes the dead objects no manifest can name. Called by the chest
    /// with no shard lock held; cheap when there is nothing to delete. A
    /// failed delete only leaves garbage that the next open removes.
    pub fn reap(&self) {
        // Read before it is swapped: a swap writes the cache line even when
        // nothing changes, and every insert and every batch calls this.
        if !self.reapable.load(Ordering::Relaxed) || !self.reapable.swap(false, Ordering::Acquire) {
            return;
        }
        let ids = std::mem::take(&mut self.table().unnamed);
        if self.writable().is_err() {
            // Fenced: this store deletes nothing any more (its objects are
            // garbage the next writer removes).
            return;
        }
        for id in ids.into_iter().filter_map(NonZeroU32::new) {
            let _ = self.backend.delete(&object_name(id));
        }
    }

    /// Whether the next commit would bring dead objects closer to deletion
    /// (a flush with no changes then still commits, to free them). It
    /// deletes those that died before the newest manifest's flush began
    /// (once their grace is over); and those that died since, which that
    /// manifest may name, wait for it to be superseded: the next commit
    /// does that, the one after deletes them.
    ///
    /// (Asking only for the first kind kept the segments a compaction
    /// emptied for ever: they die during the compacting flush, so the next
    /// flush found nothing its commit would delete and did not commit, and
    /// no later flush with no changes did either.)
    pub fn has_garbage(&self) -> bool {
        let t = self.table();
        let (before, now) = (t.prev_begin, Instant::now());
        t.dead
            .iter()
            .any(|&(_, died, at)| died >= before || at + self.grace() <= now)
    }

    /// Marks the start of a flush; returns its epoch. Every flush that
    /// begins must end with [`Store::commit`] or [`Store::abort_flush`].
    pub fn begin_flush(&self) -> u64 {
        let mut t = self.table();
        debug_assert!(!t.flushing, "flushes are serialized by the chest");
        t.epoch += 1;
        t.flushing = true;
        t.epoch
    }

    /// Ends a flush that commits nothing.
    pub fn abort_flush(&self) {
        let mut t = self.table();
        if t.flushing {
            t.flushing = false;
            t.epoch += 1;
        }
    }

    /// Records in `w` the sizes of the objects its entries name that it
    /// does not know yet. Called while the entries that name them are held
    /// (under their shard's lock), so those objects are live.
    pub fn size_objects(&self, w: &mut ManifestWriter) {
        let ids: Vec<u32> = w.unsized_objects().collect();
        if ids.is_empty() {
            return;
        }
        let t = self.table();
        for id in ids {
            if let Some(o) = t.objects.get(&id) {
                w.set_size(id, o.size);
            }
        }
    }

    /// Writes the manifest of the entries `w` collected, makes it durable,
    /// then deletes the manifests it supersedes and the objects neither it
    /// nor the manifest before it can name.
    pub fn commit(&self, epoch: u64, w: ManifestWriter, serializer: &str) -> Result<()> {
        let next_object = self.next_object.load(Ordering::Relaxed);
        let written = match w.finish(serializer, next_object) {
            Ok(bytes) => self.writable().and_then(|()| {
                let mut known = self.manifests();
                let conditional = self.lease.get().is_some();
                let mut written = commit::commit(&*self.backend, &mut known, bytes, conditional);
                if let (Ok(_), Some(lease)) = (&written, self.lease.get()) {
                    // The manifest's number may have been free only because
                    // a newer holder already deleted it: the commit counts
                    // only if the lease is still this chest's.
                    if let Err(e) = lease.confirm() {
                        written = Err(e);
                    }
                }
                if let (Err(Error::Fenced { reason, .. }), Some(lease)) =
                    (&written, self.lease.get())
                {
                    lease.fence(reason.clone());
                }
                written
            }),
            Err(id) => Err(Error::Manifest {
                location: self.location().to_string(),
                detail: format!(
                    "internal error: an entry names object {id}, whose size is unknown; \
                     the manifest was not written"
                ),
            }),
        };
        let doomed: Vec<u32> = {
            let mut t = self.table();
            t.flushing = false;
            t.epoch += 1;
            if written.is_ok() {
                let before = t.prev_begin;
                let (now, grace) = (Instant::now(), self.grace());
                let (doomed, kept) = t
                    .dead
                    .drain(..)
                    .partition(|&(_, died, at)| died < before && at + grace <= now);
                t.dead = kept;
                t.prev_begin = epoch;
                doomed.into_iter().map(|(id, _, _)| id).collect()
            } else {
                Vec::new()
            }
        };
        let old_manifests = written?;
        if self.writable().is_err() {
            // The lease may be someone else's by now: delete nothing, and
            // keep the dead objects listed (a later commit may still go).
            let now = Instant::now();
            self.table()
                .dead
                .extend(doomed.into_iter().map(|id| (id, 0, now)));
            return Ok(());
        }
        for id in doomed.into_iter().filter_map(NonZeroU32::new) {
            // A failed delete leaves garbage that the next open removes.
            let _ = self.backend.delete(&object_name(id));
        }
        // Superseded manifests go once readers beside this writer have had
        // the grace period to move on from them.
        let doomed_manifests: Vec<String> = {
            let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            retired.extend(old_manifests.into_iter().map(|name| (name, now)));
            let grace = self.grace();
            let (go, stay) = retired.drain(..).partition(|(_, at)| *at + grace <= now);
            *retired = stay;
            go.into_iter().map(|(name, _)| name).collect()
        };
        for name in doomed_manifests {
            if self.backend.delete(&name).is_err() {
                if let Some(seq) = commit::parse_manifest_name(&name) {
                    self.manifests().others.push(seq);
                }
            }
        }
        Ok(())
    }

    /// Finds what the location holds: a chest (with its newest readable
    /// manifest), nothing, or something else (an error).
    pub fn discover(&self) -> Result<Found> {
        let mut known = self.manifests();
        commit::discover(&*self.backend, &mut known)
    }

    /// Whether the object of `loc` was written after the last committed
    /// flush began (or, with none since open, after the open): the newest
    /// durable manifest does not name it.
    pub fn written_since_commit(&self, loc: Loc) -> bool {
        let t = self.table();
        t.objects
            .get(&loc.obj.get())
            .is_some_and(|o| o.born > t.prev_begin)
    }

    /// Makes the location a new chest: writes its marker, then commits its
    /// empty creation manifest (see `commit::create`), both durably.
    pub fn create(&self, serializer: &str) -> Result<()> {
        self.writable()?;
        commit::create(&*self.backend)?;
        let epoch = self.begin_flush();
        self.commit(epoch, ManifestWriter::default(), serializer)
    }

    /// What was found torn of a creation a crash cut short (see
    /// `commit::Manifests::torn_creation`), to report as damaged.
    pub fn torn_creation(&self) -> Vec<String> {
        self.manifests().torn_creation.clone()
    }

    /// Adopts a loaded manifest: its objects become live with the number of
    /// entries naming them.
    pub fn adopt(&self, m: &Manifest) {
        let mut t = self.table();
        for (&id, &size) in &m.objects {
            let manifest::Named {
                records,
                bytes,
                whole,
            } = m.named.get(&id).copied().unwrap_or_default();
            t.insert(
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
            t.remove(id);
            t.dead.push((id, 0, Instant::now()));
        }
        t.epoch = 1;
        t.prev_begin = 0;
        let max_id = m.objects.keys().copied().max().unwrap_or(0);
        // `fetch_max`: never below the ids an earlier lease holder reserved.
        self.next_object.fetch_max(
            m.next_object.max(max_id.saturating_add(1)).max(1),
            Ordering::Relaxed,
        );
    }

    /// Spares the objects of the manifest kept before the adopted one (the
    /// fallback): they count as dead since open, deleted once two newer
    /// manifests are durable.
    pub fn adopt_previous(&self, previous: &Manifest) {
        let mut t = self.table();
        for &id in previous.objects.keys() {
            if !t.objects.contains_key(&id) {
                t.dead.push((id, 0, Instant::now()));
            }
        }
    }

    /// Deletes the chest's value objects that no retained manifest names
    /// (left by a crash between a spill and the next flush). Only names the
    /// chest makes (`data/` and 8 hex digits) are ever deleted; a failed
    /// delete leaves garbage for a later open, it does not fail this one.
    /// Returns how many were deleted.
    pub fn remove_orphans(&self) -> Result<usize> {
        self.writable()?;
        let names = self.backend.list(DATA_PREFIX)?;
        let ids: Vec<NonZeroU32> = names.iter().filter_map(|n| parse_object_name(n)).collect();
        if let Some(max) = ids.iter().map(|id| id.get()).max() {
            // New objects never reuse a name that exists, even one that
            // could not be deleted below.
            self.next_object
                .fetch_max(max.saturating_add(1), Ordering::Relaxed);
        }
        // Readers beside the writer may still be on an older manifest that
        // is still here (within its grace period): its objects stay too.
        let mut older: HashSet<u32> = HashSet::new();
        if self.shared.load(Ordering::Relaxed) && !self.grace.is_zero() {
            let others = self.manifests().others.clone();
            for seq in others {
                let Ok(bytes) = self.backend.get(&commit::manifest_name(seq)) else {
                    continue;
                };
                if let Ok(m) = manifest::decode(bytes) {
                    older.extend(m.objects.keys().copied());
                }
            }
        }
        let orphans: Vec<NonZeroU32> = {
            let t = self.table();
            let mut spared: HashSet<u32> = t.dead.iter().map(|&(id, _, _)| id).collect();
            spared.extend(older);
            ids.into_iter()
                .filter(|id| !t.objects.contains_key(&id.get()) && !spared.contains(&id.get()))
                .collect()
        };
        Ok(orphans
            .into_iter()
            .filter(|&id| self.backend.delete(&object_name(id)).is_ok())
            .count())
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

    /// Checks that `refs` (object id → number of entries naming it, from
    /// every shard) matches the object table: every named object is live
    /// with at least that many records, exactly that many if `exact` (no
    /// write or load is in progress). For the chest's invariant check.
    pub fn check_refs(
        &self,
        refs: &HashMap<u32, u32>,
        exact: bool,
    ) -> std::result::Result<(), String> {
        let t = self.table();
        for (&id, &n) in refs {
            let Some(o) = t.objects.get(&id) else {
                return Err(format!("{n} entries name object {id}, which is not live"));
            };
            if o.live_records < n || (exact && o.live_records != n) {
                return Err(format!(
                    "object {id} has {} live records, but {n} entries name it",
                    o.live_records
                ));
            }
        }
        if exact {
            if let Some((id, o)) = t.objects.iter().find(|(id, _)| !refs.contains_key(id)) {
                return Err(format!(
                    "object {id} is live ({} records) but no entry names it",
                    o.live_records
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    /// A backend that copies what it is given (as a file or a network
    /// backend does), so the buffers written are free again after a write.
    #[derive(Debug)]
    struct Copying(MemoryBackend);

    impl Backend for Copying {
        fn location(&self) -> &str {
            self.0.location()
        }
        fn put_opts(
            &self,
            name: &str,
            parts: Vec<Bytes>,
            opts: crate::backend::PutOptions,
        ) -> crate::backend::BackendResult<Option<crate::backend::ObjectVersion>> {
            let copies = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
            self.0.put_opts(name, copies, opts)
        }
        fn get_opts(
            &self,
            name: &str,
            opts: crate::backend::GetOptions,
        ) -> crate::backend::BackendResult<crate::backend::GetResult> {
            self.0.get_opts(name, opts)
        }
        fn delete(&self, name: &str) -> crate::backend::BackendResult<()> {
            self.0.delete(name)
        }
        fn list(&self, prefix: &str) -> crate::backend::BackendResult<Vec<String>> {
            self.0.list(prefix)
        }
        fn sync(&self) -> crate::backend::BackendResult<()> {
            self.0.sync()
        }
    }

    fn with_buffers(backend: Arc<dyn Backend>) -> Store {
        let mut store = Store::new(backend);
        store.set_buffer_cache(1 << 20);
        store
    }

    /// A whole record of `n` bytes of `fill` in a buffer from the store;
    /// returns it and where its buffer is.
    fn record_in_store_buffer(store: &Store, n: usize, fill: u8) -> (WholeRecord, *const u8) {
        let mut buf = store.buffer(n + 4);
        buf.resize(n, fill);
        let at = buf.as_ptr();
        (seal_whole(buf), at)
    }

    #[test]
    fn a_written_records_buffer_serves_the_next_record() {
        let store = with_buffers(Arc::new(Copying(MemoryBackend::new())));
        let (record, at) = record_in_store_buffer(&store, 1000, 7);
        let locs = store.write_wholes(vec![record]).unwrap();
        let (record, again) = record_in_store_buffer(&store, 1000, 8);
        assert_eq!(again, at, "the same allocation, taken back after the write");
        let second = store.write_wholes(vec![record]).unwrap();
        assert_eq!(
            &store.read(locs[0]).ok().unwrap().into_bytes()[..],
            &[7; 1000][..]
        );
        assert_eq!(
            &store.read(second[0]).ok().unwrap().into_bytes()[..],
            &[8; 1000][..]
        );
        // A segment's buffer too.
        let mut seg = SegmentBuf {
            bytes: store.buffer(100),
            ..SegmentBuf::default()
        };
        let at = seg.bytes.as_ptr();
        seg.bytes.extend_from_slice(b"small value");
        seg.seal(0);
        let loc = store.write_segment(seg).unwrap()[0];
        let next = store.buffer(10);
        assert_eq!(next.as_ptr(), at);
        assert_eq!(
            &store.read(loc).ok().unwrap().into_bytes()[..],
            b"small value"
        );
    }

    #[test]
    fn a_buffer_the_backend_keeps_is_never_handed_out_again() {
        // memory:// keeps the very bytes it is given.
        let store = with_buffers(Arc::new(MemoryBackend::new()));
        let (record, at) = record_in_store_buffer(&store, 1000, 7);
        let loc = store.write_wholes(vec![record]).unwrap()[0];
        let (record, next) = record_in_store_buffer(&store, 1000, 9);
        assert_ne!(next, at);
        store.write_wholes(vec![record]).unwrap();
        assert_eq!(
            &store.read(loc).ok().unwrap().into_bytes()[..],
            &[7; 1000][..]
        );
    }

    fn capped(max: u64) -> Store {
        let mut store = Store::new(Arc::new(MemoryBackend::new()));
        store.set_max_stored(Some(max));
        store
    }

    #[test]
    fn writes_under_way_count_against_the_cap_until_they_settle() {
        let store = capped(100);
        let a = store.reserve(60).unwrap();
        let err = store.reserve(50).err().expect("60 reserved + 50 > 100");
        assert!(matches!(
            err,
            Error::SpillFull {
                stored: 60,
                needed: 50,
                max_spill: 100,
                ..
            }
        ));
        drop(a);
        assert!(
            store.reserve(100).is_ok(),
            "a failed write gives its room back"
        );
    }

    #[test]
    fn stored_bytes_follow_the_live_objects() {
        let store = capped(1000);
        let id = |n| NonZeroU32::new(n).unwrap();
        store.register(id(1), 300, 1, true);
        store.register(id(2), 500, 2, false);
        assert_eq!(store.stored_bytes(), 800);
        assert!(store.reserve(201).is_err());
        store.release(Loc {
            obj: id(1),
            offset: 0,
            len: record::WHOLE,
        });
        assert_eq!(
            store.stored_bytes(),
            500,
            "the object died with its last record"
        );
        assert!(store.reserve(500).is_ok());
    }
}
