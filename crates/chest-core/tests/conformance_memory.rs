//! The conformance suite over the in-memory backend.
#![cfg(feature = "conformance")]

chest_core::conformance_tests!(chest_core::conformance::MemoryTarget);
