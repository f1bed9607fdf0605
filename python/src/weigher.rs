//! How much memory a Python value takes, as the chest's budget counts it:
//! `nbytes` where a value has it (numpy arrays), `memory_usage(deep=True)`
//! summed for pandas objects, else `sys.getsizeof`; or the user's own
//! `weigher(value) -> int`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{intern, PyTypeInfo};

/// A weigher for the chest: the user's callable, or the default.
pub fn weigher(user: Option<Py<PyAny>>) -> impl Fn(&Py<PyAny>) -> usize + Send + Sync + 'static {
    move |value: &Py<PyAny>| {
        let weight = Python::attach(|py| {
            let value = value.bind(py);
            match &user {
                Some(w) => w.bind(py).call1((value,))?.extract::<usize>(),
                None => default_weight(value),
            }
        });
        // The chest turns a panic in a weigher into an error naming the key.
        weight.unwrap_or_else(|e| panic!("{e}"))
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
