//! The chest's errors as Python exceptions: [`ChestError`], with the
//! error's `kind` (`"corrupt"`, `"locked"`, `"serialize"`, ...), the `keys`
//! it names and the message that says what happened and where.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;

pyo3::create_exception!(
    chest,
    ChestError,
    PyException,
    "An error of a chest: `kind` says what went wrong (a snake_case name of \
     the Rust `ErrorKind`: \"corrupt\", \"locked\", \"serialize\", ...; \
     \"many\" for several errors at once, whose own kinds are in `kinds`), \
     `keys` the keys it concerns (every key of a failed write), `location` \
     the store it is about (or None), and the message where (the key, the \
     object, the location)."
);

/// `CamelCase` → `snake_case`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Python exception of a chest error.
pub fn to_py(py: Python<'_>, e: chest::Error) -> PyErr {
    let err = ChestError::new_err(e.to_string());
    let value = err.value(py);
    let kind = snake(&format!("{:?}", e.kind()));
    let keys = e.keys().into_iter().map(str::to_owned).collect::<Vec<_>>();
    // Setting attributes on a fresh exception object cannot fail but for
    // memory; the message stands either way.
    let _ = value.setattr("kind", kind);
    // The kind of each error a failure gathers (several writes of a flush).
    let kinds = e
        .errors()
        .iter()
        .map(|e| snake(&format!("{:?}", e.kind())))
        .collect::<Vec<_>>();
    if let Ok(kinds) = PyList::new(py, kinds) {
        let _ = value.setattr("kinds", kinds);
    }
    if let Ok(keys) = PyList::new(py, keys) {
        let _ = value.setattr("keys", keys);
    }
    // The store it is about (a URL or the path as given), or None.
    let _ = value.setattr("location", e.location().map(str::to_owned));
    err
}
