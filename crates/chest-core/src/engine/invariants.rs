//! The chest's consistency check, run by the tests between phases and, in
//! debug builds, after every flush (foyer's sanity checks are the model).

use foldhash::{HashMap, HashMapExt};

use crate::config::Key;
use crate::engine::inner::Inner;
use crate::map::entry::Slot;
use crate::value::serializer::Serializer;

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// Checks the chest's invariants, holding every shard's lock at once:
    /// - every key is in the shard its hash picks, and `len` counts them;
    /// - memory usage is the sum of the resident values' weights;
    /// - every resident value that is neither pinned nor being evicted is in
    ///   its shard's eviction order (largest first: exactly those; LRU may
    ///   also hold stale copies, dropped when met — see `shard::Order`);
    /// - every stored copy an entry names is in a live object of the store,
    ///   which counts at least that many live records.
    ///
    /// - the values marked as being evicted weigh no more than the bytes
    ///   counted in flight (which also count victims replaced or removed
    ///   while their batch is written, until it is placed).
    ///
    /// With `quiescent` (no call of the chest in progress, as between the
    /// phases of a test) the background reads and writes are waited for first; then
    /// also: no batch is queued or being written, nothing is in flight, no
    /// value is marked as being evicted or loaded, and the store's live
    /// objects are exactly those the entries name, with exactly their
    /// number of records.
    ///
    /// Returns what is wrong. For tests; it costs a pass over every key.
    pub(crate) fn check_invariants(&self, quiescent: bool) -> Result<(), String> {
        if quiescent {
            // Reads ahead first: making room for them may hand the writers a batch.
            self.wait_read();
            let reserved = self.budget.reserved();
            if reserved != 0 {
                return Err(format!(
                    "{reserved} bytes still reserved for loads with no load on its way"
                ));
            }
            self.wait_written();
            if !self.writes_idle() {
                return Err("a batch is still queued or being written".into());
            }
        }
        let shards: Vec<_> = (0..self.shards.len()).map(|i| self.lock_shard(i)).collect();
        let mut len = 0;
        let mut usage = 0;
        let mut resident = 0;
        let mut evicting = 0;
        let mut refs: HashMap<u32, u32> = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            shard.check_order().map_err(|e| format!("shard {i}: {e}"))?;
            shard.map.check().map_err(|e| format!("shard {i}: {e}"))?;
            for (key, slot) in shard.map.iter() {
                len += 1;
                if self.shard_of(key) != i {
                    return Err(format!("key {key:?} is in shard {i}, not its own"));
                }
                if let Some(loc) = slot.stored() {
                    *refs.entry(loc.obj.get()).or_default() += 1;
                }
                match slot {
                    Slot::Resident(r) => {
                        usage += r.weight;
                        resident += 1;
                        if r.evicting {
                            evicting += r.weight;
                        }
                        if quiescent && r.evicting {
                            return Err(format!("key {key:?} is still marked as being evicted"));
                        }
                    }
                    Slot::Loading(_) if quiescent => {
                        return Err(format!("key {key:?} is still marked as being loaded"));
                    }
                    Slot::Loading(_) | Slot::Spilled(_) => {}
                }
            }
        }
        if len != self.len() {
            return Err(format!("{len} keys, but len() says {}", self.len()));
        }
        if usage != self.budget.usage() {
            return Err(format!(
                "resident values weigh {usage}, but memory_usage() says {}",
                self.memory_usage()
            ));
        }
        if resident != self.budget.resident() {
            return Err(format!(
                "{resident} values resident, but the counter says {}",
                self.budget.resident()
            ));
        }
        let inflight = self.budget.inflight();
        if quiescent && inflight != 0 {
            return Err(format!("{inflight} bytes still counted in flight"));
        }
        if evicting > inflight {
            return Err(format!(
                "values being evicted weigh {evicting}, but only {inflight} bytes are in flight"
            ));
        }
        self.store.check_refs(&refs, quiescent)
    }
}
