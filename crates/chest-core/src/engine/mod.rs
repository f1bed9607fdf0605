//! The engine: what a chest holds ([`inner`]) and the jobs behind the API — eviction ([`evict`]), the
//! background writers ([`writer`]) and readers ([`readahead`]) on one
//! [`crew`], loads of spilled values ([`load`]), flush and compaction
//! ([`flush`]), recovery at open ([`recover`]), the invariant check
//! ([`invariants`]), the catching of panics in user code ([`guard`]), and
//! the size of the windows of loads on probation ([`window`]).

pub(crate) mod crew;
pub(crate) mod evict;
pub(crate) mod flush;
pub(crate) mod guard;
pub(crate) mod inner;
pub(crate) mod invariants;
pub(crate) mod load;
pub(crate) mod locks;
pub(crate) mod read_queue;
pub(crate) mod readahead;
pub(crate) mod recover;
pub(crate) mod window;
pub(crate) mod write_queue;
pub(crate) mod writer;
