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

// Rust allocations of the extension (read buffers, records being written)
// come from mimalloc, which keeps freed memory for the next allocation:
// with the system allocator, every large value read or written took fresh
// pages from the kernel (and their page faults) each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
