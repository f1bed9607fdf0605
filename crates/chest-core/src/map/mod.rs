//! The map: the states of an entry and what guards each move ([`entry`]),
//! the shards ([`shard`]) with their policy ([`policy`]: the eviction
//! order and the admission of loaded values), the compact key index
//! ([`index`]) and its hash table of positions ([`positions`]), the memory
//! budget's counters and rules ([`budget`]) and the count of changes not
//! yet flushed ([`changes`]). Pure data structures: no I/O, no threads.

pub(crate) mod budget;
pub(crate) mod changes;
pub(crate) mod entry;
pub(crate) mod index;
pub(crate) mod policy;
pub(crate) mod positions;
pub(crate) mod shard;
