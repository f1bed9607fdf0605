//! Open: find what the location holds, read the manifest (not the values),
//! rebuild the key index, and remove the chest's own orphaned objects.
//!
//! A location is one of: a chest (a manifest, or the marker of a chest
//! never flushed), empty (a new chest is created: its marker is written),
//! or something else — objects that are not a chest's — which is refused
//! and left untouched. Only names the chest makes are ever deleted.

use crate::backend::registry::OpenedBackend;
use crate::config::Key;
use crate::config::{Config, OpenMode, Weigher};
use crate::engine::inner::Inner;
use crate::error::{Error, Result};
use crate::map::entry::Slot;
use crate::map::index::Index;
use crate::store::manifest::ManifestWriter;
use crate::store::{Found, Loaded, Store};
use crate::value::serializer::Serializer;

/// Bytes of written records' buffers a chest keeps for the next writes:
/// an eighth of its memory budget, at most 64 MiB (memory beside the
/// budget's, as the builder documents).
pub(crate) fn write_buffer_cache(budget: usize) -> usize {
    (budget / 8).min(64 << 20)
}

/// How many times a writer that took over an expired lease tries to put its
/// fence in before the previous holder's commits.
const FENCE_TRIES: usize = 5;

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    pub(crate) fn from_parts(
        config: Config,
        serializer: S,
        weigher: Weigher<V>,
        opened: OpenedBackend,
    ) -> Result<Self> {
        let mut store = Store::new(opened.backend);
        store.set_reader_grace(config.reader_grace);
        store.set_max_stored(config.max_spill);
        store.set_buffer_cache(write_buffer_cache(config.budget));
        let mut chest = Self::new_empty(config, serializer, weigher, store, opened.persistent);
        let span = tracing::info_span!("chest.open", location = chest.location());
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let recovered = chest.recover();
        match &recovered {
            Ok(()) => tracing::info!(
                keys = chest.len(),
                objects = chest.store.object_count(),
                damaged_manifests = chest.skipped_manifests.len(),
                secs = started.elapsed().as_secs_f64(),
                "opened"
            ),
            Err(e) => tracing::warn!(error = %e, "open failed"),
        }
        // Not opened: it is dropped without a flush (only a `Chest`
        // flushes on drop), so an empty index never replaces the manifest
        // it could not read.
        recovered?;
        Ok(chest)
    }

    fn recover(&mut self) -> Result<()> {
        let location = || self.location().to_string();
        // Read-only first: a location that is not a chest is left untouched
        // (not even a lease is written into it).
        let mut found = self.store.discover()?;
        match (&found, self.config.mode) {
            (Found::Chest(_), OpenMode::CreateNew) => {
                return Err(Error::AlreadyExists {
                    location: location(),
                })
            }
            (Found::Empty, OpenMode::MustExist) => {
                return Err(Error::NoChest {
                    location: location(),
                })
            }
            _ => {}
        }
        if !self.config.read_only {
            found = self.claim(found)?;
            // Read again under the lease: another writer may have created a
            // chest here meanwhile.
            if let (Found::Chest(_), OpenMode::CreateNew) = (&found, self.config.mode) {
                return Err(Error::AlreadyExists {
                    location: self.location().to_string(),
                });
            }
        }
        match found {
            Found::Empty => {
                self.skipped_manifests = self.store.torn_creation();
                for damaged in &self.skipped_manifests {
                    tracing::warn!(manifest = %damaged, "a crash cut the chest's creation short");
                }
                if !self.config.read_only {
                    self.store.create(self.serializer.name())?;
                }
                return Ok(());
            }
            Found::Chest(None) => {}
            Found::Chest(Some(loaded)) => self.load_index(*loaded)?,
        }
        if !self.config.read_only {
            let removed = self.store.remove_orphans()?;
            if removed > 0 {
                tracing::info!(removed, "removed objects a crash left behind");
            }
        }
        Ok(())
    }

    /// Makes this chest the location's one writer (see `store::lease`).
    /// With a lease taken, the location is read again (its holder may have
    /// committed since `found` was read); after taking over an *expired*
    /// lease, whose holder may still be running, this writer's fence — a
    /// copy of the newest manifest under the next number — goes in before
    /// anything is deleted, so a late commit of the old holder fails.
    fn claim(&mut self, found: Found) -> Result<Found> {
        let Some(expired) = self.store.claim(self.config.lease_ttl)? else {
            if self.store.lease_epoch().is_none() {
                return Ok(found);
            }
            return self.store.discover();
        };
        tracing::warn!(
            previous = %expired.describe(),
            "took over an expired writer lease; fencing off its holder"
        );
        for _ in 0..FENCE_TRIES {
            let found = self.store.discover()?;
            let raw = match &found {
                Found::Empty => return Ok(found),
                Found::Chest(Some(loaded)) => loaded.raw.clone(),
                Found::Chest(None) => {
                    let next = self.store.next_object();
                    let bytes = ManifestWriter::default()
                        .finish(self.serializer.name(), next)
                        .expect("an empty manifest names no object");
                    bytes.into()
                }
            };
            if self.store.fence(raw)? {
                return Ok(found);
            }
        }
        Err(Error::Fenced {
            location: self.location().to_string(),
            reason: format!(
                "the previous writer ({}) kept committing while this chest took over its \
                 expired lease",
                expired.describe()
            ),
        })
    }

    /// Fills the shards from a manifest.
    fn load_index(&mut self, loaded: Loaded) -> Result<()> {
        let m = loaded.manifest;
        if m.serializer != self.serializer.name() {
            return Err(Error::SerializerMismatch {
                location: self.location().to_string(),
                stored: m.serializer,
                requested: self.serializer.name().to_string(),
            });
        }
        self.skipped_manifests = loaded.skipped.into_iter().map(|(_, d)| d).collect();
        for damaged in &self.skipped_manifests {
            tracing::warn!(manifest = %damaged, "skipped a damaged manifest for the one before it");
        }
        self.store.adopt(&m);
        if let Some(previous) = &loaded.previous {
            self.store.adopt_previous(previous);
        }
        // Decode the keys, sorted by shard; then fill each shard's table
        // from its own list (cache-friendly), on several threads.
        let n = self.shards.len();
        let per_shard = m.len / n + 1;
        let mut lists: Vec<Vec<(K, Slot<V>)>> = (0..n)
            .map(|_| Vec::with_capacity(per_shard + per_shard / 8))
            .collect();
        // One scratch buffer for every key (`from_reader` zeroes 4 KiB a call).
        let mut scratch = vec![0u8; 4096];
        for (bytes, loc) in m.entries() {
            let key: K =
                ciborium::de::from_reader_with_buffer(bytes, &mut scratch).map_err(|e| {
                    Error::Key {
                        key: cbor_text(bytes),
                        detail: format!(
                            "the keys stored in {} are not of the key type this chest is \
                             opened with ({}): {e}",
                            self.location(),
                            std::any::type_name::<K>()
                        ),
                    }
                })?;
            lists[self.shard_of(&key)].push((key, Slot::Spilled(loc)));
        }
        drop(m);
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .clamp(1, 4);
        let per_thread = n.div_ceil(threads);
        let this = &*self;
        std::thread::scope(|scope| {
            for (first, lists) in (0..n).step_by(per_thread).zip(lists.chunks_mut(per_thread)) {
                scope.spawn(move || {
                    let mut added = 0;
                    for (i, list) in (first..).zip(lists) {
                        // Each list becomes its shard's index as it is (no copy).
                        let index = Index::from_entries(std::mem::take(list));
                        let mut shard = this.lock_shard(i);
                        if shard.map.is_empty() {
                            added += index.len();
                            shard.map = index;
                        } else {
                            let mut index = index;
                            for (key, slot) in index.drain() {
                                added += usize::from(shard.map.insert(key, slot).is_none());
                            }
                        }
                    }
                    this.keys_added(added);
                });
            }
        });
        Ok(())
    }
}

/// A stored key as text for an error message (its CBOR as a generic value).
fn cbor_text(bytes: &[u8]) -> String {
    match ciborium::from_reader::<ciborium::Value, _>(bytes) {
        Ok(v) => format!("{v:?}"),
        Err(_) => "<undecodable>".to_string(),
    }
}
