//! The conformance suite every backend runs (feature `conformance`).
//!
//! Two parts: [`backend_contract`] checks the [`Backend`] semantics directly;
//! [`chest_behaviour`] runs a [`Chest`](crate::Chest) over the backend. A
//! backend crate runs all of it with one macro call in an integration test:
//!
//! ```ignore
//! struct FsTarget;
//! impl chest_core::conformance::Target for FsTarget { /* ... */ }
//! chest_core::conformance_tests!(FsTarget);
//! ```
//!
//! Each check becomes its own `#[test]`, so a failure names the check.

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::Result;

pub mod backend_contract;
pub mod chest_behaviour;

/// A kind of store under test: hands out fresh, empty locations.
pub trait Target: Send + Sync {
    /// A new, empty location (a new directory, bucket prefix, ...).
    fn fresh(&self) -> Box<dyn Location>;
}

/// One location of a [`Target`].
///
/// The suite drops every handle (and the chest over it) before it opens the
/// next one, so a backend that locks its store must release the lock on drop.
/// A `Location` may be dropped while a backend it opened is still in use
/// (`target.fresh().open()`): such a backend must keep what it needs alive
/// (e.g. share ownership of a temporary directory).
pub trait Location: Send + Sync {
    /// Opens the store at this location for writing.
    fn open(&self) -> Result<Arc<dyn Backend>>;
}

/// `len` incompressible bytes, the same for the same `seed` (xorshift): test
/// data for the suite and for backends' own tests.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A [`Target`] of in-memory stores, the reference for the suite itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryTarget;

impl Target for MemoryTarget {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(MemoryLocation(crate::MemoryBackend::new()))
    }
}

struct MemoryLocation(crate::MemoryBackend);

impl Location for MemoryLocation {
    fn open(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(self.0.clone()))
    }
}

/// Expands to one `#[test]` per conformance check, each run against `$target`
/// (an expression implementing [`Target`], evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($target:expr) => {
        $crate::conformance_tests!(@each $target;
            backend_contract: round_trip, empty_object, large_object, overwrite,
                get_missing, delete_missing, get_range, get_many_in_order, list_prefixes, odd_names,
                invalid_names;
            chest_behaviour: spill_under_budget, reopen_after_flush, iter_visits_every_key,
                prefetch_loads_spilled_values,
                overwrite_spilled,
                remove_spilled, mutate_spilled_persists, unserializable_stays_in_memory,
                heavier_than_budget, clean_values_not_rewritten, garbage_is_compacted, corrupt_value_names_key,
                threads_hammer, model_against_hashmap
        );
    };
    (@each $target:expr; $($module:ident: $($check:ident),+);+ $(;)?) => {
        $($(
            #[test]
            fn $check() {
                $crate::conformance::$module::$check(&$target);
            }
        )+)+
    };
}
