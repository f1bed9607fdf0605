//! chest: a dictionary that spills to disk.
pub use chest_core::*;
