//! The Python package `chest` (distribution `chest-rs`): this crate is its
//! extension module `chest._chest`, the chest's Rust core as a Python class
//! (`class::PyChest`); the pure-Python package beside it (`python/chest/`)
//! makes it a `MutableMapping`.
//!
//! - `key`: Python keys in canonical form, stored as plain CBOR;
//! - `serializer`: pickle (protocol 5, out-of-band buffers), raw bytes, or
//!   the user's own, and the zero-copy read-only buffer;
//! - `weigher`: how much memory a Python value takes;
//! - `value`: a Python value with its weight, as the chest holds it;
//! - `errors`: the chest's errors as `chest.ChestError`;
//! - `class`: the class, and how it treats the GIL.

mod class;
mod errors;
mod key;
mod serializer;
mod value;
mod weigher;

use pyo3::prelude::*;

#[pymodule]
fn _chest(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<class::PyChest>()?;
    m.add_class::<serializer::StoredBuffer>()?;
    m.add_class::<serializer::LoadedBuffer>()?;
    m.add("ChestError", m.py().get_type::<errors::ChestError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(weigher::weight, m)?)?;
    Ok(())
}

// The extension's Rust allocations use the system allocator, the one the
// interpreter and numpy use: a value loaded from the store lives in memory
// that the values it pushes out (the user's arrays) gave back to that same
// allocator. With a second allocator (mimalloc was tried), each keeps what
// the other freed: a dask-shaped run (P4) peaked at 600 MiB of RSS for a
// 256 MiB target, 430 MiB without. The store keeps its write buffers for the
// next writes instead (`memory_budget` in the core says how much).
