//! The conformance suite over the in-memory backend: anonymous stores
//! (private to their handles) and named ones (shared, so kept to one writer
//! with a lease).
#![cfg(feature = "testing")]

chest_core::conformance_tests!(chest_core::testing::MemoryTarget);

mod named {
    chest_core::conformance_tests!(chest_core::testing::NamedMemoryTarget);
}
