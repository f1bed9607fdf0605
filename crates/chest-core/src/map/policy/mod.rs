//! The memory tier's policy, in units a shard calls under its lock (no I/O,
//! no locks or threads of their own), each in its own file with its unit
//! tests:
//!
//! - which resident value leaves first ([`EvictionPolicy`](crate::EvictionPolicy)):
//!   [`lru`] (a CLOCK queue; with counts, the least wanted of the few
//!   coldest) or [`largest`] (a priority queue by weight);
//! - whether a value `get` loads stays ([`Admission`](crate::Admission)):
//!   by counts ([`frequency`]: TinyLFU's rule, the default), on its second
//!   read ([`doorkeeper`]), or always.
//!
//! The shard owns the state and passes its index where a unit needs to look
//! at an entry (whether it may be evicted, its tick, its count).

pub(crate) mod climber;
pub(crate) mod cost;
pub(crate) mod doorkeeper;
pub(crate) mod frequency;
pub(crate) mod largest;
pub(crate) mod lru;
