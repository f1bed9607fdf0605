//! [`PySerializer`]: how Python values become the bytes the chest stores,
//! and [`StoredBuffer`], the read-only buffer object that hands stored bytes
//! to Python without a copy.
//!
//! Formats (the name is recorded in the manifest; a chest reopened with
//! another is refused):
//! - `"pickle"`: pickle protocol 5 with out-of-band buffers, so the data of
//!   a numpy array is not copied into the pickle stream. The record is
//!   `n: u32 LE`, the `n` buffer lengths (`u64 LE` each), the stream's
//!   length (`u64 LE`), the stream, then the buffers back to back. Written
//!   with one copy (a Python array is mutable: see [`Held`]); read back
//!   without one when the load owns the record's memory (the usual case):
//!   the stream is unpickled in place and each buffer becomes a writable
//!   [`LoadedBuffer`], so arrays come back writeable and share the loaded
//!   memory; otherwise each buffer is copied once into a `bytearray`.
//! - `"raw"`: bytes-like values (anything with the buffer protocol) stored
//!   as they are; read back as a [`StoredBuffer`] over the stored bytes.
//! - a custom `(name, dumps, loads)`: `dumps(value)` returns a bytes-like
//!   object, `loads(bytes)` the value.

use bytes::Bytes;
use chest::{BoxError, Serializer};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};
use std::os::raw::c_int;
use std::sync::Arc;

use crate::value::PyValue;
use crate::weigher::Weigher;

/// Bytes from which a value's copy is made with the GIL released.
const LARGE_COPY: usize = 64 << 10;

/// How values are encoded (see the [module](self)).
enum Codec {
    Pickle {
        dumps: Py<PyAny>,
        loads: Py<PyAny>,
        /// The pickle stream of `bytes(<out-of-band buffer 0>)`: a large
        /// `bytes` value is written as this stream and its own data as the
        /// one buffer (see [`bytes_record_stream`]).
        bytes_stream: Vec<u8>,
    },
    Raw,
    Custom {
        dumps: Py<PyAny>,
        loads: Py<PyAny>,
    },
}

/// A chest's serializer of Python values. It takes the GIL only around the
/// Python work, and the chest calls it with none of its own locks held. A
/// value it loads is weighed then, under the same GIL.
pub struct PySerializer {
    name: String,
    codec: Codec,
    weigher: Arc<Weigher>,
}

impl PySerializer {
    /// The serializer the Python argument names: `"pickle"`, `"raw"`, or a
    /// `(name, dumps, loads)` tuple.
    pub fn from_py(spec: &Bound<'_, PyAny>, weigher: Arc<Weigher>) -> PyResult<Self> {
        let py = spec.py();
        if let Ok(name) = spec.extract::<String>() {
            return match name.as_str() {
                "pickle" => {
                    let pickle = py.import("pickle")?;
                    Ok(Self {
                        name,
                        codec: Codec::Pickle {
                            dumps: pickle.getattr("dumps")?.unbind(),
                            loads: pickle.getattr("loads")?.unbind(),
                            bytes_stream: bytes_record_stream(py)?,
                        },
                        weigher,
                    })
                }
                "raw" => Ok(Self {
                    name,
                    codec: Codec::Raw,
                    weigher,
                }),
                other => Err(PyValueError::new_err(format!(
                    "unknown serializer {other:?}: use \"pickle\", \"raw\" or a (name, dumps, loads) tuple"
                ))),
            };
        }
        let (name, dumps, loads): (String, Bound<'_, PyAny>, Bound<'_, PyAny>) =
            spec.extract().map_err(|_| {
                PyTypeError::new_err(
                    "serializer must be \"pickle\", \"raw\" or a (name, dumps, loads) tuple",
                )
            })?;
        if name == "pickle" || name == "raw" || name.is_empty() {
            return Err(PyValueError::new_err(format!(
                "a custom serializer needs a name of its own, not {name:?}"
            )));
        }
        if !dumps.is_callable() || !loads.is_callable() {
            return Err(PyTypeError::new_err(
                "a custom serializer's dumps and loads must be callable",
            ));
        }
        Ok(Self {
            name,
            codec: Codec::Custom {
                dumps: dumps.unbind(),
                loads: loads.unbind(),
            },
            weigher,
        })
    }
}

impl PySerializer {
    /// A value just loaded, weighed (under the GIL it was loaded with).
    fn loaded(&self, obj: Bound<'_, PyAny>) -> PyResult<PyValue> {
        let weight = self.weigher.weigh(&obj)?;
        Ok(PyValue {
            obj: obj.unbind(),
            weight,
        })
    }
}

/// The bytes of a bytes-like object, as a buffer of bytes: a numpy array
/// of any dtype is viewed as its bytes (C-contiguous only).
fn contiguous_bytes(obj: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    let viewed;
    let obj = match PyBuffer::<u8>::get(obj) {
        Ok(buf) if buf.is_c_contiguous() => return Ok(buf),
        _ => {
            // Another item format (a float array): its bytes, through a memoryview.
            let view = obj
                .py()
                .import("builtins")?
                .getattr("memoryview")?
                .call1((obj,))?;
            if !view.getattr("c_contiguous")?.is_truthy()? {
                return Err(PyValueError::new_err(
                    "the raw serializer stores contiguous buffers only: make a contiguous copy first",
                ));
            }
            viewed = view.call_method1("cast", ("B",))?;
            &viewed
        }
    };
    PyBuffer::<u8>::get(obj)
}

/// The pickle stream (protocol 5) that rebuilds a `bytes` object from its
/// one out-of-band buffer: `bytes(buffers[0])`. Pickling a large `bytes`
/// value puts its data in the stream (a copy of the value, under the GIL);
/// this stream with the value's own data as the buffer is the same record
/// format, read back by any protocol-5 unpickler given the buffer, and
/// written with one copy (the value's, without the GIL) instead of two.
fn bytes_record_stream(py: Python<'_>) -> PyResult<Vec<u8>> {
    let code = c"
import pickle

class _Bytes:
    def __reduce_ex__(self, protocol):
        return (bytes, (pickle.PickleBuffer(b''),))

stream = pickle.dumps(_Bytes(), protocol=5, buffer_callback=lambda b: False)
";
    let scope = PyDict::new(py);
    py.run(code, Some(&scope), None)?;
    let stream = scope
        .get_item("stream")?
        .ok_or_else(|| PyValueError::new_err("no stream"))?;
    Ok(stream.cast::<PyBytes>()?.as_bytes().to_vec())
}

/// A Python error as the chest reports it (its type and message).
fn boxed(e: PyErr) -> BoxError {
    e.to_string().into()
}

/// Reads a little-endian integer of `N` bytes at `*at`, advancing it.
fn take<const N: usize>(bytes: &[u8], at: &mut usize) -> Result<[u8; N], BoxError> {
    let end = at
        .checked_add(N)
        .filter(|&e| e <= bytes.len())
        .ok_or("a truncated pickle record")?;
    let out = bytes[*at..end].try_into().expect("N bytes");
    *at = end;
    Ok(out)
}

impl Serializer<PyValue> for PySerializer {
    fn name(&self) -> &str {
        &self.name
    }

    /// The GIL, taken once for a batch of values (a writer thread taking it
    /// for each value and the caller taking it back between its calls hand
    /// it over thousands of times a second).
    fn around_batch<R>(&self, f: impl FnOnce() -> R) -> R {
        Python::attach(|_| f())
    }

    fn serialize(&self, value: &PyValue, out: &mut Vec<u8>) -> Result<(), BoxError> {
        // The Python work under the GIL; the copy of the bytes (the bulk of
        // the time for a large array) without it, the memory held alive and
        // exported meanwhile.
        let held = Python::attach(|py| -> PyResult<Held> {
            let value = value.obj.bind(py);
            match &self.codec {
                Codec::Raw => Held::of(value, Vec::new()),
                Codec::Custom { dumps, .. } => {
                    Held::of(&dumps.bind(py).call1((value,))?, Vec::new())
                }
                Codec::Pickle { bytes_stream, .. }
                    if value.is_exact_instance_of::<PyBytes>() && value.len()? >= LARGE_COPY =>
                {
                    // The record of `bytes(buffers[0])`, the buffer being
                    // the value's own data (see `bytes_record_stream`).
                    let len = value.len()? as u64;
                    let mut header = Vec::with_capacity(20 + bytes_stream.len());
                    header.extend_from_slice(&1u32.to_le_bytes());
                    header.extend_from_slice(&len.to_le_bytes());
                    header.extend_from_slice(&(bytes_stream.len() as u64).to_le_bytes());
                    header.extend_from_slice(bytes_stream);
                    Held::of(value, header)
                }
                Codec::Pickle { dumps, .. } => {
                    let buffers = PyList::empty(py);
                    let kwargs = PyDict::new(py);
                    kwargs.set_item("protocol", 5)?;
                    kwargs.set_item("buffer_callback", buffers.getattr("append")?)?;
                    let stream = dumps.bind(py).call((value,), Some(&kwargs))?;
                    let raws = buffers
                        .iter()
                        .map(|b| contiguous_bytes(&b.call_method0("raw")?))
                        .collect::<PyResult<Vec<_>>>()?;
                    let n = u32::try_from(raws.len())
                        .map_err(|_| PyValueError::new_err("too many pickle buffers"))?;
                    let mut header = Vec::with_capacity(4 + 8 * raws.len() + 8);
                    header.extend_from_slice(&n.to_le_bytes());
                    for b in &raws {
                        header.extend_from_slice(&(b.len_bytes() as u64).to_le_bytes());
                    }
                    let mut held = Held::of(&stream, header)?;
                    let stream_len = held.len() as u64;
                    held.header.extend_from_slice(&stream_len.to_le_bytes());
                    for b in raws {
                        held.push_buffer(b);
                    }
                    Ok(held)
                }
            }
        })
        .map_err(boxed)?;
        if held.len() >= LARGE_COPY {
            // Released for a large copy, even inside a batch that holds it.
            Python::attach(|py| py.detach(|| held.copy_to(out)));
        } else {
            held.copy_to(out);
        }
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<PyValue, BoxError> {
        self.deserialize_owned(Bytes::copy_from_slice(bytes))
    }

    fn deserialize_owned(&self, bytes: Bytes) -> Result<PyValue, BoxError> {
        match &self.codec {
            Codec::Raw => Python::attach(|py| {
                let obj = Bound::new(py, StoredBuffer { bytes })?.into_any();
                self.loaded(obj)
            })
            .map_err(boxed),
            Codec::Custom { loads, .. } => Python::attach(|py| {
                let obj = loads.bind(py).call1((PyBytes::new(py, &bytes),))?;
                self.loaded(obj)
            })
            .map_err(boxed),
            Codec::Pickle { loads, .. } => {
                let mut at = 0;
                let n = u32::from_le_bytes(take::<4>(&bytes, &mut at)?) as usize;
                if n > bytes.len() / 8 {
                    return Err("a pickle record with more buffers than bytes".into());
                }
                let lens = (0..n)
                    .map(|_| take::<8>(&bytes, &mut at).map(u64::from_le_bytes))
                    .collect::<Result<Vec<_>, _>>()?;
                let stream_len = u64::from_le_bytes(take::<8>(&bytes, &mut at)?);
                let mut spans = Vec::with_capacity(n + 1);
                for len in std::iter::once(stream_len).chain(lens) {
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|l| at.checked_add(l))
                        .filter(|&e| e <= bytes.len())
                        .ok_or("a truncated pickle record")?;
                    spans.push(at..end);
                    at = end;
                }
                if at != bytes.len() {
                    return Err("a pickle record with bytes after its buffers".into());
                }
                if n > 0 {
                    // The record's memory is this read's alone (the usual
                    // case): its buffers become writable Python buffers in
                    // place, with no copy.
                    match bytes.try_into_mut() {
                        Ok(all) => return self.unpickle_in_place(loads, all, &spans),
                        Err(shared) => return self.unpickle_copied(loads, shared, &spans),
                    }
                }
                self.unpickle_copied(loads, bytes, &spans)
            }
        }
    }
}

impl PySerializer {
    /// Unpickles a record whose memory this call owns: the stream is read in
    /// place, each out-of-band buffer handed to Python as a writable
    /// [`LoadedBuffer`] over its part of the record.
    fn unpickle_in_place(
        &self,
        loads: &Py<PyAny>,
        mut all: bytes::BytesMut,
        spans: &[std::ops::Range<usize>],
    ) -> Result<PyValue, BoxError> {
        let _header = all.split_to(spans[0].start);
        let stream = all.split_to(spans[0].len()).freeze();
        let parts: Vec<bytes::BytesMut> = spans[1..]
            .iter()
            .map(|span| all.split_to(span.len()))
            .collect();
        Python::attach(|py| {
            let stream = Py::new(py, StoredBuffer { bytes: stream })?;
            let buffers = PyList::empty(py);
            for data in parts {
                buffers.append(Py::new(py, LoadedBuffer { data })?)?;
            }
            let kwargs = PyDict::new(py);
            kwargs.set_item("buffers", buffers)?;
            let obj = loads.bind(py).call((stream,), Some(&kwargs))?;
            self.loaded(obj)
        })
        .map_err(boxed)
    }

    /// Unpickles a record whose memory is shared: each out-of-band buffer is
    /// copied into a new `bytearray` (writable, the result's own).
    fn unpickle_copied(
        &self,
        loads: &Py<PyAny>,
        bytes: Bytes,
        spans: &[std::ops::Range<usize>],
    ) -> Result<PyValue, BoxError> {
        // Fresh bytearrays under the GIL, filled without it (no
        // one else can see them yet), unpickled under it again.
        let (stream, arrays) = Python::attach(|py| -> PyResult<_> {
            let stream = Py::new(
                py,
                StoredBuffer {
                    bytes: bytes.slice(spans[0].clone()),
                },
            )?;
            let arrays = spans[1..]
                .iter()
                .map(|span| Unfilled::new(py, span.len()))
                .collect::<PyResult<Vec<_>>>()?;
            Ok((stream, arrays))
        })
        .map_err(boxed)?;
        for (array, span) in arrays.iter().zip(&spans[1..]) {
            array.fill(&bytes[span.clone()]);
        }
        Python::attach(|py| {
            let buffers = PyList::empty(py);
            for array in arrays {
                buffers.append(array.into_object())?;
            }
            let kwargs = PyDict::new(py);
            kwargs.set_item("buffers", buffers)?;
            let obj = loads.bind(py).call((stream,), Some(&kwargs))?;
            self.loaded(obj)
        })
        .map_err(boxed)
    }
}

/// The memory of Python objects a serialized value is made of (a pickle
/// stream and the buffers it refers to, or a bytes-like value), held
/// alive and exported so that it can be copied without the GIL, in order
/// after a small header.
struct Held {
    header: Vec<u8>,
    /// Keeps the first span's object alive (a bytes object or a buffer's exporter).
    _object: Option<Py<PyAny>>,
    /// Exported buffers (released, under the GIL, when dropped).
    buffers: Vec<PyBuffer<u8>>,
    /// The spans to copy, in order: pointers into the memory held above.
    spans: Vec<(*const u8, usize)>,
}

// SAFETY: the pointers are into memory that `_object` and `buffers` keep
// alive and unmoved (a bytes object's data never moves; an exported buffer
// stays valid until released), and they are only read.
unsafe impl Send for Held {}

impl Held {
    /// The bytes of a bytes-like object, after `header`.
    fn of(obj: &Bound<'_, PyAny>, header: Vec<u8>) -> PyResult<Self> {
        let mut held = Held {
            header,
            _object: None,
            buffers: Vec::new(),
            spans: Vec::new(),
        };
        if let Ok(b) = obj.cast::<PyBytes>() {
            let data = b.as_bytes();
            held.spans.push((data.as_ptr(), data.len()));
            held._object = Some(obj.clone().unbind());
        } else {
            held.push_buffer(contiguous_bytes(obj)?);
        }
        Ok(held)
    }

    fn push_buffer(&mut self, buf: PyBuffer<u8>) {
        self.spans
            .push((buf.buf_ptr() as *const u8, buf.len_bytes()));
        self.buffers.push(buf);
    }

    /// Bytes of the spans.
    fn len(&self) -> usize {
        self.spans.iter().map(|&(_, len)| len).sum()
    }

    /// Appends the header and every span to `out`.
    fn copy_to(self, out: &mut Vec<u8>) {
        out.reserve(self.header.len() + self.len());
        out.extend_from_slice(&self.header);
        for &(ptr, len) in &self.spans {
            // SAFETY: see `Held`'s `Send`.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
        }
        // The buffers are released here, taking the GIL for a moment.
    }
}

/// A new `bytearray` of a given size, filled without the GIL before anyone
/// else sees it.
struct Unfilled {
    array: Py<PyByteArray>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `ptr` is the data of `array`, which nothing else refers to until
// `into_object`, and which does not move while it is not resized.
unsafe impl Send for Unfilled {}

impl Unfilled {
    fn new(py: Python<'_>, len: usize) -> PyResult<Self> {
        let size = ffi::Py_ssize_t::try_from(len)
            .map_err(|_| PyValueError::new_err("a buffer too large for a bytearray"))?;
        // Uninitialised (`PyByteArray::new_with` would zero it first: a
        // pass over every byte for nothing, as `fill` writes them all).
        // SAFETY: the GIL is held; a null pointer asks for uninitialised contents.
        let raw = unsafe { ffi::PyByteArray_FromStringAndSize(std::ptr::null(), size) };
        // SAFETY: a new reference, or null with the error set.
        let array = unsafe { Bound::from_owned_ptr_or_err(py, raw)? }.cast_into::<PyByteArray>()?;
        // SAFETY: the array is ours alone, and `len` bytes long.
        let ptr = unsafe { ffi::PyByteArray_AsString(array.as_ptr()) } as *mut u8;
        Ok(Self {
            array: array.unbind(),
            ptr,
            len,
        })
    }

    fn fill(&self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len(), self.len);
        // SAFETY: see `Unfilled`'s `Send`; the lengths match.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, self.len) };
    }

    fn into_object(self) -> Py<PyByteArray> {
        self.array
    }
}

/// Fills `view` with `len` bytes at `ptr`, owned by `owner` (a reference to
/// which the view takes, so the memory outlives it): the `__getbuffer__` of
/// [`LoadedBuffer`] (writable) and [`StoredBuffer`] (read-only).
///
/// # Safety
/// `view` is the one Python passed; `ptr..ptr + len` is memory of `owner`
/// that neither moves nor is freed while `owner` lives.
unsafe fn export(
    owner: &Bound<'_, PyAny>,
    view: *mut ffi::Py_buffer,
    ptr: *mut u8,
    len: usize,
    readonly: bool,
    flags: c_int,
) -> PyResult<()> {
    // SAFETY: the caller's; PyBuffer_FillInfo refuses a writable request
    // of read-only memory with BufferError.
    let filled = unsafe {
        ffi::PyBuffer_FillInfo(
            view,
            owner.as_ptr(),
            ptr as *mut _,
            len as ffi::Py_ssize_t,
            c_int::from(readonly),
            flags,
        )
    };
    if filled == -1 {
        return Err(PyErr::fetch(owner.py()));
    }
    Ok(())
}

/// Part of a loaded record that this load owns alone, as a writable Python
/// buffer: an array unpickled over it is writable and shares its memory (no
/// copy). Kept alive by what refers to it (the array's base).
#[pyclass(module = "chest._chest", name = "LoadedBuffer")]
pub struct LoadedBuffer {
    data: bytes::BytesMut,
}

#[pymethods]
impl LoadedBuffer {
    /// # Safety
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let mut this = slf.borrow_mut();
            (this.data.as_mut_ptr(), this.data.len())
        };
        // SAFETY: the memory lives as long as `slf` and is never moved
        // (never resized).
        unsafe { export(slf.as_any(), view, ptr, len, false, flags) }
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }
}

/// Stored bytes as a read-only Python buffer, shared with the chest's read
/// without a copy: `bytes(b)`, `memoryview(b)`, `numpy.frombuffer(b, ...)`
/// and `len(b)` work on it. What the `"raw"` serializer's values come back as.
#[pyclass(frozen, module = "chest._chest", name = "StoredBuffer")]
pub struct StoredBuffer {
    bytes: Bytes,
}

#[pymethods]
impl StoredBuffer {
    /// # Safety
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let bytes = &slf.get().bytes;
        // SAFETY: the bytes live as long as `slf` and never move.
        unsafe {
            export(
                slf.as_any(),
                view,
                bytes.as_ptr() as *mut u8,
                bytes.len(),
                true,
                flags,
            )
        }
    }

    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.bytes)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(o) = other.cast::<StoredBuffer>() {
            return o.get().bytes == self.bytes;
        }
        match contiguous_bytes(other) {
            // SAFETY: the buffer is C-contiguous, of `len_bytes` bytes, and valid while held.
            Ok(buf) => unsafe {
                std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes())
                    == &self.bytes[..]
            },
            Err(_) => false,
        }
    }

    fn __repr__(&self) -> String {
        format!("<chest.StoredBuffer of {} bytes>", self.bytes.len())
    }
}
