//! [`PyChest`]: the chest as a Python class (`chest._chest._Chest`), the
//! base of the pure-Python `chest.Chest` mapping.
//!
//! # Threads and the GIL
//! Every call that can do I/O or wait (a load, a spill, backpressure, a
//! flush) runs with the GIL released ([`Python::detach`]); the serializer
//! and weigher take it back only around their Python work, and the core
//! never calls them with one of its locks held (the core's `update`, whose
//! closure and weigher run under a shard lock, is not exposed). Values
//! dropped by the core without the GIL (evicted, replaced) are released by
//! PyO3 the next time a thread holds it. A call that only looks at memory
//! and takes a shard lock for a moment (`in`, `len`) keeps the GIL: no
//! thread holding a shard lock ever waits for the GIL.
//!
//! # Closing
//! `close` takes the chest out of the object and closes it with the GIL
//! released (its writers may need the GIL to pickle). A chest garbage
//! collected while open is closed the same way by the object's drop.

use std::sync::{Arc, RwLock};

use chest::{Admission, ChestBuilder, EvictionPolicy, OpenMode, Stats};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{to_py, ChestError};
use crate::key::PyKey;
use crate::serializer::PySerializer;
use crate::value::{weight_of, PyValue};
use crate::weigher::Weigher;

/// The Rust chest under a Python one.
type Core = chest::Chest<PyKey, PyValue, PySerializer>;

/// A chest of Python keys and values (see the [module](self)).
#[pyclass(frozen, subclass, module = "chest._chest", name = "_Chest")]
pub struct PyChest {
    /// `None` once closed.
    core: RwLock<Option<Arc<Core>>>,
    /// The chest's location (kept for messages after close).
    location: String,
    /// Whether the location is a temporary directory, removed on close.
    temporary: bool,
    /// Whether close (and drop) flush the chest.
    flush_on_close: bool,
    /// Weighs the values that come in (under the GIL, before the chest sees them).
    weigher: Arc<Weigher>,
}

fn open_mode(mode: &str) -> PyResult<OpenMode> {
    Ok(match mode {
        "open_or_create" => OpenMode::OpenOrCreate,
        "create" => OpenMode::CreateNew,
        "open" => OpenMode::MustExist,
        other => {
            return Err(PyValueError::new_err(format!(
                "mode must be \"open_or_create\", \"create\" or \"open\", not {other:?}"
            )))
        }
    })
}

/// The admission named by `admission` (`keep_loaded=True` is
/// `"every_read"`; the two may not disagree).
fn admission_of(admission: Option<&str>, keep_loaded: bool) -> PyResult<Admission> {
    let named = match admission {
        None => None,
        Some("frequency") => Some(Admission::Frequency),
        Some("second_read") => Some(Admission::SecondRead),
        Some("every_read") => Some(Admission::EveryRead),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "admission must be \"frequency\", \"second_read\" or \"every_read\", not {other:?}"
            )))
        }
    };
    match (named, keep_loaded) {
        (Some(a), true) if a != Admission::EveryRead => Err(PyValueError::new_err(format!(
            "keep_loaded=True keeps every read (admission=\"every_read\"), not admission={:?}",
            admission.unwrap_or_default()
        ))),
        (_, true) => Ok(Admission::EveryRead),
        (Some(a), false) => Ok(a),
        (None, false) => Ok(Admission::default()),
    }
}

fn policy(name: &str) -> PyResult<EvictionPolicy> {
    Ok(match name {
        "lru" => EvictionPolicy::LeastRecentlyUsed,
        "largest" => EvictionPolicy::LargestFirst,
        other => {
            return Err(PyValueError::new_err(format!(
                "eviction must be \"lru\" or \"largest\", not {other:?}"
            )))
        }
    })
}

impl PyChest {
    /// The value of `key`: from memory with the GIL held (no I/O, no wait),
    /// else loaded with the GIL released.
    fn lookup(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let k = PyKey::from_py(key)?;
        let core = self.core()?;
        if let Some(v) = core.get_in_memory(&k) {
            return Ok(Some(v.obj.clone_ref(py)));
        }
        Ok(run(py, &core, |c| c.get(&k))?.map(|v| v.obj.clone_ref(py)))
    }

    /// The open chest, or the error that says it is closed.
    fn core(&self) -> PyResult<Arc<Core>> {
        self.core
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| closed_error(&self.location))
    }
}

/// The error of a call on a closed chest (kind `"closed"`).
fn closed_error(location: &str) -> PyErr {
    let err = ChestError::new_err(format!(
        "{} is closed; open it again to go on",
        chest::redact_url(location)
    ));
    Python::attach(|py| {
        let _ = err.value(py).setattr("kind", "closed");
        let _ = err.value(py).setattr("keys", PyList::empty(py));
    });
    err
}

/// Runs `f` on the chest with the GIL released, turning its error into the
/// Python exception.
fn run<T: Send>(
    py: Python<'_>,
    core: &Core,
    f: impl FnOnce(&Core) -> chest::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| f(core)).map_err(|e| to_py(py, e))
}

/// Removes every object of the store at `location`, and a local store's
/// directory.
fn remove_store(location: &str) -> chest::Result<()> {
    match chest::registry::delete_all(location) {
        Ok(_) => {}
        // Already gone (a temporary chest removes its directory itself).
        Err(e)
            if matches!(
                e.kind(),
                chest::ErrorKind::NoChest | chest::ErrorKind::NotFound
            ) => {}
        Err(e) => return Err(e),
    }
    if let Ok(url) = url::Url::parse(location) {
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(chest::Error::Backend(chest::BackendError::Io {
                            location: location.to_string(),
                            op: "remove the directory",
                            path: path.display().to_string(),
                            source: e,
                        }))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Keys as a Python list.
fn key_list<'py>(py: Python<'py>, keys: &[PyKey]) -> PyResult<Bound<'py, PyList>> {
    let items = keys
        .iter()
        .map(|k| k.to_py(py))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("len", s.len)?;
    d.set_item("resident", s.resident)?;
    d.set_item("memory_usage", s.memory_usage)?;
    d.set_item("memory_budget", s.memory_budget)?;
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    d.set_item("loads", s.loads)?;
    d.set_item("spills", s.spills)?;
    d.set_item("evictions", s.evictions)?;
    d.set_item("bytes_written", s.bytes_written)?;
    d.set_item("bytes_read", s.bytes_read)?;
    d.set_item("errors", s.errors)?;
    d.set_item("objects", s.objects)?;
    d.set_item("stored_bytes", s.stored_bytes)?;
    d.set_item("lost_on_drop", s.lost_on_drop)?;
    let backend = PyDict::new(py);
    for (name, n) in &s.backend {
        backend.set_item(name, n)?;
    }
    d.set_item("backend", backend)?;
    Ok(d)
}

#[pymethods]
impl PyChest {
    #[new]
    #[pyo3(signature = (
        location = None,
        *,
        memory_budget = None,
        serializer = None,
        weigher = None,
        mode = "open_or_create",
        read_only = false,
        eviction = "lru",
        writer_threads = None,
        flush_on_drop = true,
        count_overhead = true,
        keep_loaded = false,
        admission = None,
        eviction_batch = None,
        shards = None,
        max_spill = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        location: Option<&Bound<'_, PyAny>>,
        memory_budget: Option<usize>,
        serializer: Option<&Bound<'_, PyAny>>,
        weigher: Option<Py<PyAny>>,
        mode: &str,
        read_only: bool,
        eviction: &str,
        writer_threads: Option<usize>,
        flush_on_drop: bool,
        count_overhead: bool,
        keep_loaded: bool,
        admission: Option<&str>,
        eviction_batch: Option<usize>,
        shards: Option<usize>,
        max_spill: Option<u64>,
    ) -> PyResult<Self> {
        let weigher = Arc::new(Weigher::new(weigher));
        let serializer = match serializer {
            Some(s) => PySerializer::from_py(s, Arc::clone(&weigher))?,
            None => PySerializer::from_py(
                &pyo3::types::PyString::new(py, "pickle"),
                Arc::clone(&weigher),
            )?,
        };
        // A path-like location (pathlib.Path) is its string.
        let location: Option<String> = match location {
            None => None,
            Some(l) => Some(
                py.import("os")?
                    .getattr("fspath")?
                    .call1((l,))
                    .unwrap_or_else(|_| l.clone())
                    .extract()?,
            ),
        };
        let mut builder = ChestBuilder::<PyKey, PyValue>::with_weigher(weight_of)
            .serializer(serializer)
            .mode(open_mode(mode)?)
            .read_only(read_only)
            .eviction_policy(policy(eviction)?)
            .flush_on_drop(flush_on_drop)
            .count_entry_overhead(count_overhead);
        builder = builder.admission(admission_of(admission, keep_loaded)?);
        if let Some(b) = memory_budget {
            builder = builder.memory_budget(b);
        }
        if let Some(m) = max_spill {
            builder = builder.max_spill(m);
        }
        if let Some(n) = shards {
            builder = builder.shards(n);
        }
        if let Some(b) = eviction_batch {
            builder = builder.eviction_batch(b);
        }
        // Background writers pickle under the GIL the caller needs too (a
        // batch at a time): on a local store, where a write is quick, the
        // inserting thread writes (small inserts ~10% faster than with a
        // writer thread); on object storage, the core's default (two
        // writers overlapping the network).
        let remote = location
            .as_deref()
            .is_some_and(|l| l.starts_with("s3://") || l.contains("+s3://"));
        match writer_threads {
            Some(t) => builder = builder.writer_threads(t),
            None if !remote => builder = builder.writer_threads(0),
            None => {}
        }
        let temporary = location.is_none();
        let core = py
            .detach(|| match &location {
                Some(l) => builder.open(l.as_str()),
                None => builder.temp(),
            })
            .map_err(|e| to_py(py, e))?;
        Ok(Self {
            location: core.location().to_string(),
            core: RwLock::new(Some(Arc::new(core))),
            temporary,
            flush_on_close: flush_on_drop,
            weigher,
        })
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.lookup(py, key)? {
            Some(v) => Ok(v),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// The value of `key`, or `default` if the chest has no such key.
    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match self.lookup(py, key)? {
            Some(v) => Ok(v),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = PyKey::from_py(key)?;
        // Weighed here, under the GIL (the user's weigher's error as it raised it).
        let value = PyValue {
            weight: self.weigher.weigh(value)?,
            obj: value.clone().unbind(),
        };
        run(py, &*self.core()?, |c| c.insert(k, value))
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = PyKey::from_py(key)?;
        if run(py, &*self.core()?, |c| c.remove(&k))? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// Removes `key` and returns its value (loaded if it was spilled); if
    /// the chest has no such key, returns `default`, or raises `KeyError`
    /// when none is given.
    #[pyo3(signature = (key, *default))]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        let k = PyKey::from_py(key)?;
        match run(py, &*self.core()?, |c| c.take(&k))? {
            Some(v) => Ok(v.obj.clone_ref(py)),
            None => match default.get_item(0) {
                Ok(d) => Ok(d.unbind()),
                Err(_) => Err(PyKeyError::new_err(key.clone().unbind())),
            },
        }
    }

    /// Whether the chest has `key` (keys are always in memory: no I/O). A
    /// key of a type no chest holds raises `TypeError`, as an unhashable
    /// key does with a dict.
    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = PyKey::from_py(key)?;
        Ok(self.core()?.contains_key(&k))
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.core()?.len())
    }

    /// The keys, as a list taken now (later changes do not show in it).
    fn _keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        key_list(py, &self.core()?.keys())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self._keys(py)?.try_iter().map(Bound::into_any)
    }

    /// The values of `keys` in order, loading the spilled ones together
    /// (concurrently where the store allows); `default` for a missing key.
    #[pyo3(signature = (keys, default = None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let keys = keys
            .try_iter()?
            .map(|k| PyKey::from_py(&k?))
            .collect::<PyResult<Vec<_>>>()?;
        let core = self.core()?;
        let values = run(py, &core, |c| {
            c.prefetch(keys.iter())?;
            keys.iter()
                .map(|k| c.get(k))
                .collect::<chest::Result<Vec<_>>>()
        })?;
        let default = default.unwrap_or_else(|| py.None());
        let items = values
            .into_iter()
            .map(|v| v.map_or_else(|| default.clone_ref(py), |v| v.obj.clone_ref(py)));
        PyList::new(py, items)
    }

    /// Loads the spilled values of `keys` into memory now, together, and
    /// keeps them there (as far as the budget allows). Returns how many
    /// were loaded.
    fn prefetch(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let keys = keys
            .try_iter()?
            .map(|k| PyKey::from_py(&k?))
            .collect::<PyResult<Vec<_>>>()?;
        run(py, &*self.core()?, |c| c.prefetch(keys.iter()))
    }

    /// Starts loading the spilled values of `keys` in the background and
    /// returns at once (how many loads were started); a later get of one
    /// waits for its load.
    fn read_ahead(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let keys = keys
            .try_iter()?
            .map(|k| PyKey::from_py(&k?))
            .collect::<PyResult<Vec<_>>>()?;
        let core = self.core()?;
        Ok(py.detach(|| core.read_ahead(keys)))
    }

    /// Whether `key`'s value is in memory now (reading it does no I/O).
    fn in_memory(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = PyKey::from_py(key)?;
        Ok(self.core()?.is_in_memory(&k))
    }

    /// `key`'s value if it is in memory now, else `default`: never reads
    /// the store (a key that is spilled, or absent, gives `default`). A
    /// value returned counts as a hit, as `chest[key]` would.
    #[pyo3(signature = (key, default = None))]
    fn get_in_memory(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = PyKey::from_py(key)?;
        match self.core()?.get_in_memory(&k) {
            Some(v) => Ok(v.obj.clone_ref(py)),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// How many values are in memory now (no I/O).
    fn len_in_memory(&self) -> PyResult<usize> {
        Ok(self.core()?.len_in_memory())
    }

    /// Bytes of the objects the chest's store holds (what `max_spill` caps).
    #[getter]
    fn stored_bytes(&self) -> PyResult<u64> {
        Ok(self.core()?.stats().stored_bytes)
    }

    /// The keys whose values are in memory now, as a list.
    fn keys_in_memory<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        key_list(py, &self.core()?.keys_in_memory())
    }

    /// Moves `key`'s value out of memory now, writing it first if its
    /// stored copy is not current. Returns whether it was in memory. A
    /// value that cannot be written stays in memory and raises `ChestError`.
    fn spill(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = PyKey::from_py(key)?;
        run(py, &*self.core()?, |c| c.spill(&k))
    }

    /// Moves the coldest values out of memory until at least `nbytes` are
    /// freed (or nothing more can be): returns the bytes freed. Values
    /// whose write fails stay in memory and raise `ChestError`.
    fn evict(&self, py: Python<'_>, nbytes: usize) -> PyResult<usize> {
        run(py, &*self.core()?, |c| c.evict(nbytes))
    }

    /// The name of the stored object that holds `key`'s stored copy (a
    /// file under the chest's directory for a local chest), or `None` if
    /// the value is only in memory. The object holds checksummed records,
    /// not the bare pickle.
    fn stored_object(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let k = PyKey::from_py(key)?;
        Ok(self.core()?.stored_object(&k))
    }

    /// Removes every key.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        run(py, &*self.core()?, |c| c.clear())
    }

    /// Writes every change to the store and commits it: after `flush`
    /// returns, a crash or a kill loses nothing of it.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        run(py, &*self.core()?, |c| c.flush())
    }

    /// Flushes (a chest at a given location, unless it was opened with
    /// `flush_on_drop=False`) and closes the chest; a temporary chest's
    /// directory is removed. Calls after it raise `ChestError`; closing
    /// again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.core.write().unwrap_or_else(|e| e.into_inner()).take();
        let Some(core) = taken else {
            return Ok(());
        };
        if !self.flush_on_close {
            // Released without a flush (the chest's drop does not flush it).
            py.detach(move || drop(core));
            return Ok(());
        }
        py.detach(|| match Arc::try_unwrap(core) {
            Ok(core) => core.close(),
            // A call of another thread still holds it: flush now; its drop
            // finishes the close when that call returns.
            Err(core) => core.flush(),
        })
        .map_err(|e| to_py(py, e))
    }

    /// Deletes the chest: closes it without flushing, then removes every
    /// object of its store (a local chest's directory with them). What it
    /// held is gone for good. Dropping a closed chest removes its store too.
    #[pyo3(name = "drop")]
    fn drop_chest(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.core.write().unwrap_or_else(|e| e.into_inner()).take();
        let location = self.location.clone();
        py.detach(move || {
            if let Some(core) = taken {
                // Nothing left to flush: the drop writes nothing worth keeping.
                let _ = core.clear();
                drop(core);
            }
            remove_store(&location)
        })
        .map_err(|e| to_py(py, e))
    }

    /// Whether the chest was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.core
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// The chest's location, as a URL (credentials removed).
    #[getter]
    fn location(&self) -> String {
        chest::redact_url(&self.location).into_owned()
    }

    /// Whether the chest lives in a temporary directory removed on close.
    #[getter]
    fn temporary(&self) -> bool {
        self.temporary
    }

    /// Bytes of memory the values in memory take, as the budget counts them.
    #[getter]
    fn memory_usage(&self) -> PyResult<usize> {
        Ok(self.core()?.memory_usage())
    }

    /// The memory budget, in bytes.
    #[getter]
    fn memory_budget(&self) -> PyResult<usize> {
        Ok(self.core()?.memory_budget())
    }

    /// A snapshot of the chest's counters, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.core()?.stats();
        stats_dict(py, &s)
    }
}

impl Drop for PyChest {
    fn drop(&mut self) {
        let taken = self
            .core
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(core) = taken {
            // The chest's drop flushes and stops its writers, which may need
            // the GIL: release it meanwhile.
            Python::attach(|py| py.detach(move || drop(core)));
        }
    }
}
