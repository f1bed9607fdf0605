//! How much memory a Python value takes, as the chest's budget counts it:
//! `nbytes` where a value has it (numpy arrays), `memory_usage(deep=True)`
//! summed for pandas objects, else `sys.getsizeof`; or the user's own
//! `weigher(value) -> int`. A value is weighed once, under the GIL, when it
//! comes in — from the caller, or from a load — and carries its weight
//! ([`PyValue`](crate::value::PyValue)), so the chest never needs the GIL to
//! weigh.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{intern, PyTypeInfo};

/// The weigher of a chest: the user's callable, or the default.
pub struct Weigher {
    user: Option<Py<PyAny>>,
}

impl Weigher {
    pub fn new(user: Option<Py<PyAny>>) -> Self {
        Self { user }
    }

    /// The weight of `value` (the user's weigher's error, as it raised it).
    pub fn weigh(&self, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        match &self.user {
            Some(w) => w.bind(value.py()).call1((value,))?.extract::<usize>(),
            None => default_weight(value),
        }
    }
}

/// The default weight of a value (see the [module](self)).
pub fn default_weight(value: &Bound<'_, PyAny>) -> PyResult<usize> {
    let py = value.py();
    if PyBytes::is_exact_type_of(value) {
        // sys.getsizeof(b"") is 33.
        return Ok(value.len()? + 33);
    }
    if let Ok(n) = value.getattr(intern!(py, "nbytes")) {
        if let Ok(n) = n.extract::<usize>() {
            return Ok(n);
        }
    }
    if let Ok(usage) = value.getattr(intern!(py, "memory_usage")) {
        if value.hasattr(intern!(py, "dtypes"))? {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("deep", true)?;
            let usage = usage.call((), Some(&kwargs))?;
            let total = match usage.extract::<usize>() {
                Ok(n) => n,
                Err(_) => usage.call_method0("sum")?.extract::<usize>()?,
            };
            return Ok(total);
        }
    }
    py.import(intern!(py, "sys"))?
        .getattr(intern!(py, "getsizeof"))?
        .call1((value,))?
        .extract()
}

/// The weight the chest gives `value` by default: `nbytes` (numpy),
/// pandas' deep memory usage, else `sys.getsizeof`.
#[pyfunction]
pub fn weight(value: &Bound<'_, PyAny>) -> PyResult<usize> {
    default_weight(value)
}
