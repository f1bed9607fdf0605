//! [`PyValue`]: a Python value as the chest holds it — the object, and its
//! weight, taken under the GIL when the value came in (see
//! [`crate::weigher`]). The chest's weigher reads the weight: it never takes
//! the GIL, so no lock of the chest is ever held while waiting for it.

use pyo3::prelude::*;

/// A Python object and its weight.
pub struct PyValue {
    pub obj: Py<PyAny>,
    pub weight: usize,
}

/// The chest's weigher of [`PyValue`]s.
pub fn weight_of(value: &PyValue) -> usize {
    value.weight
}
