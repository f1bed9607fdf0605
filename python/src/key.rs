//! [`PyKey`]: a Python key as the chest stores it — `None`, `int` (any
//! size), `float`, `str`, `bytes` and tuples of them, in one canonical form
//! so that keys Python considers equal are one key, and written to the
//! manifest as plain CBOR that Rust and the `chest` command read back.
//!
//! Canonical form (Python's own equality: `True == 1 == 1.0`):
//! - `bool` becomes the `int` it equals (`True` is the key `1`);
//! - a `float` with an integral value becomes that `int` (`2.0` is `2`);
//!   `-0.0` is `0`; NaN is refused (it is not equal to itself, so it could
//!   never be found again);
//! - an `int` outside the 64-bit range is kept exactly (sign and magnitude).
//!
//! CBOR: `None` is null, an `int` an integer (a bignum tag beyond the
//! 64-bit range CBOR integers cover), a `float` a float, a `str` a text
//! string, `bytes` a byte string, a tuple an array. So a chest whose keys
//! are `str` reads back in Rust as `Chest<String, _>`, one keyed by `int` as
//! `Chest<i64, _>`.

use std::fmt;
use std::hash::{Hash, Hasher};

use ciborium::value::{Integer, Value};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString, PyTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key of a Python chest, in canonical form (see the [module](self)).
#[derive(Clone, PartialEq, Eq)]
pub enum PyKey {
    None,
    Int(i64),
    /// An integer outside `i64`: its sign and its magnitude, big-endian,
    /// without leading zeros.
    Big {
        negative: bool,
        magnitude: Vec<u8>,
    },
    /// A float that is not integral: infinite or with a fraction (never NaN).
    Float(Float),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<PyKey>),
}

/// A float key's value, equal by its bits (never NaN, never integral: see
/// [`float_value`]).
#[derive(Clone, Copy)]
pub struct Float(f64);

impl PartialEq for Float {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Float {}

impl Hash for PyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            PyKey::None => {}
            PyKey::Int(i) => i.hash(state),
            PyKey::Big {
                negative,
                magnitude,
            } => {
                negative.hash(state);
                magnitude.hash(state);
            }
            PyKey::Float(f) => f.0.to_bits().hash(state),
            PyKey::Str(s) => s.hash(state),
            PyKey::Bytes(b) => b.hash(state),
            PyKey::Tuple(t) => t.hash(state),
        }
    }
}

/// What a key may be, for the errors that refuse others.
const KEY_TYPES: &str = "None, bool, int, float, str, bytes, or tuples of them";

impl PyKey {
    /// The key for a Python object, or a `TypeError` naming the types that
    /// work (a `ValueError` for NaN).
    pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        // The most common keys first: str, then int.
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(PyKey::Str(s.to_str()?.to_owned()));
        }
        if obj.is_instance_of::<PyBool>() {
            return Ok(PyKey::Int(i64::from(obj.is_truthy()?)));
        }
        if let Ok(i) = obj.cast::<PyInt>() {
            return match i.extract::<i64>() {
                Ok(v) => Ok(PyKey::Int(v)),
                Err(_) => big_from_py(i),
            };
        }
        if obj.is_none() {
            return Ok(PyKey::None);
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            return float_value(f.value());
        }
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(PyKey::Bytes(b.as_bytes().to_vec()));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return t
                .iter()
                .map(|item| Self::from_py(&item))
                .collect::<PyResult<Vec<_>>>()
                .map(PyKey::Tuple);
        }
        Err(PyTypeError::new_err(format!(
            "a chest key must be {KEY_TYPES}; got {}",
            obj.get_type().name()?
        )))
    }

    /// The Python object of this key (its canonical form: `True` comes back as `1`).
    pub fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            PyKey::None => py.None().into_bound(py),
            PyKey::Int(i) => i.into_pyobject(py)?.into_any(),
            PyKey::Big {
                negative,
                magnitude,
            } => {
                let int = py.get_type::<PyInt>();
                let v = int.call_method1("from_bytes", (PyBytes::new(py, magnitude), "big"))?;
                if *negative {
                    v.neg()?
                } else {
                    v
                }
            }
            PyKey::Float(f) => PyFloat::new(py, f.0).into_any(),
            PyKey::Str(s) => PyString::new(py, s).into_any(),
            PyKey::Bytes(b) => PyBytes::new(py, b).into_any(),
            PyKey::Tuple(items) => {
                let items = items
                    .iter()
                    .map(|k| k.to_py(py))
                    .collect::<PyResult<Vec<_>>>()?;
                PyTuple::new(py, items)?.into_any()
            }
        })
    }

    /// The key of a CBOR value read from a manifest, in canonical form.
    fn from_value(v: Value) -> Result<Self, String> {
        Ok(match v {
            Value::Null => PyKey::None,
            Value::Bool(b) => PyKey::Int(i64::from(b)),
            Value::Integer(i) => int_key(i128::from(i)),
            Value::Float(f) => float_value(f).map_err(|e| e.to_string())?,
            Value::Text(s) => PyKey::Str(s),
            Value::Bytes(b) => PyKey::Bytes(b),
            Value::Array(items) => PyKey::Tuple(
                items
                    .into_iter()
                    .map(Self::from_value)
                    .collect::<Result<_, _>>()?,
            ),
            // Bignums: tag 2 is n, tag 3 is -1 - n.
            Value::Tag(tag @ (2 | 3), inner) => match *inner {
                Value::Bytes(b) => {
                    let n = trim(b);
                    if tag == 2 {
                        big_key(false, n)
                    } else {
                        big_key(true, add_one(n))
                    }
                }
                other => return Err(format!("a bignum of {other:?}")),
            },
            other => {
                return Err(format!(
                    "{other:?} is not a key Python can hold ({KEY_TYPES})"
                ))
            }
        })
    }

    /// The CBOR value of the key.
    fn to_value(&self) -> Value {
        match self {
            PyKey::None => Value::Null,
            PyKey::Int(i) => Value::Integer(Integer::from(*i)),
            PyKey::Big {
                negative,
                magnitude,
            } => {
                // Within CBOR's integers (-2^64 ..= 2^64 - 1): an integer.
                if magnitude.len() <= 8 {
                    let mut be = [0u8; 8];
                    be[8 - magnitude.len()..].copy_from_slice(magnitude);
                    let m = i128::from(u64::from_be_bytes(be));
                    let v = if *negative { -m } else { m };
                    if let Ok(i) = Integer::try_from(v) {
                        return Value::Integer(i);
                    }
                }
                if *negative {
                    Value::Tag(3, Box::new(Value::Bytes(sub_one(magnitude.clone()))))
                } else {
                    Value::Tag(2, Box::new(Value::Bytes(magnitude.clone())))
                }
            }
            PyKey::Float(f) => Value::Float(f.0),
            PyKey::Str(s) => Value::Text(s.clone()),
            PyKey::Bytes(b) => Value::Bytes(b.clone()),
            PyKey::Tuple(items) => Value::Array(items.iter().map(Self::to_value).collect()),
        }
    }
}

/// The key of a Python int outside `i64`.
fn big_from_py(i: &Bound<'_, PyInt>) -> PyResult<PyKey> {
    let negative = i.lt(0)?;
    let abs = i.call_method0("__abs__")?;
    let bits: usize = abs.call_method0("bit_length")?.extract()?;
    let bytes = abs.call_method1("to_bytes", (bits.div_ceil(8), "big"))?;
    let magnitude = bytes.cast::<PyBytes>()?.as_bytes().to_vec();
    Ok(big_key(negative, trim(magnitude)))
}

/// The canonical key of sign and magnitude: `Int` where it fits.
fn big_key(negative: bool, magnitude: Vec<u8>) -> PyKey {
    if magnitude.len() <= 16 {
        let mut be = [0u8; 16];
        be[16 - magnitude.len()..].copy_from_slice(&magnitude);
        let m = u128::from_be_bytes(be);
        if let Ok(m) = i128::try_from(m) {
            let v = if negative { -m } else { m };
            if let Ok(v) = i64::try_from(v) {
                return PyKey::Int(v);
            }
        }
    }
    PyKey::Big {
        negative: negative && !magnitude.is_empty(),
        magnitude,
    }
}

/// The canonical key of an integer read from CBOR.
fn int_key(v: i128) -> PyKey {
    match i64::try_from(v) {
        Ok(i) => PyKey::Int(i),
        Err(_) => big_key(v < 0, trim(v.unsigned_abs().to_be_bytes().to_vec())),
    }
}

/// The canonical key of a float: the int it equals when integral.
fn float_value(v: f64) -> PyResult<PyKey> {
    if v.is_nan() {
        return Err(PyValueError::new_err(
            "NaN cannot be a chest key: it is not equal to itself, so it could never be found",
        ));
    }
    if v.is_finite() && v.fract() == 0.0 {
        if v.abs() < 9.2e18 {
            return Ok(PyKey::Int(v as i64));
        }
        // Beyond i64: the exact integer of the float (its mantissa shifted).
        let bits = v.abs().to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i32 - 1075;
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let mut magnitude = mantissa.to_be_bytes().to_vec();
        let (bytes, shift) = (exponent / 8, exponent % 8);
        magnitude = shl_bits(magnitude, shift as u32);
        magnitude.extend(std::iter::repeat_n(0, bytes as usize));
        return Ok(big_key(v < 0.0, trim(magnitude)));
    }
    Ok(PyKey::Float(Float(v)))
}

/// `magnitude << shift` (shift < 8), big-endian.
fn shl_bits(magnitude: Vec<u8>, shift: u32) -> Vec<u8> {
    if shift == 0 {
        return magnitude;
    }
    let mut out = vec![0u8; magnitude.len() + 1];
    for (i, b) in magnitude.iter().enumerate() {
        out[i] |= b >> (8 - shift);
        out[i + 1] |= b << shift;
    }
    trim(out)
}

/// Drops leading zero bytes.
fn trim(mut b: Vec<u8>) -> Vec<u8> {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    b.drain(..zeros);
    b
}

/// `n + 1`, big-endian.
fn add_one(mut n: Vec<u8>) -> Vec<u8> {
    for byte in n.iter_mut().rev() {
        let (v, carry) = byte.overflowing_add(1);
        *byte = v;
        if !carry {
            return n;
        }
    }
    n.insert(0, 1);
    n
}

/// `n - 1`, big-endian, for `n > 0`.
fn sub_one(mut n: Vec<u8>) -> Vec<u8> {
    for byte in n.iter_mut().rev() {
        let (v, borrow) = byte.overflowing_sub(1);
        *byte = v;
        if !borrow {
            break;
        }
    }
    trim(n)
}

impl Serialize for PyKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PyKey::Str(v) => s.serialize_str(v),
            PyKey::Int(i) => s.serialize_i64(*i),
            other => other.to_value().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for PyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PyKey::from_value(v).map_err(serde::de::Error::custom)
    }
}

/// Python's `repr` of the key, as errors show it.
impl fmt::Debug for PyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyKey::None => f.write_str("None"),
            PyKey::Int(i) => write!(f, "{i}"),
            PyKey::Big {
                negative,
                magnitude,
            } => {
                // Decimal digits of the magnitude, by repeated division.
                let mut digits = Vec::new();
                let mut n = magnitude.clone();
                while !n.is_empty() {
                    let mut rem = 0u32;
                    for b in n.iter_mut() {
                        let cur = (rem << 8) | u32::from(*b);
                        *b = (cur / 10) as u8;
                        rem = cur % 10;
                    }
                    digits.push(char::from(b'0' + rem as u8));
                    n = trim(n);
                }
                if *negative {
                    f.write_str("-")?;
                }
                f.write_str(&digits.iter().rev().collect::<String>())
            }
            PyKey::Float(Float(v)) if v.is_infinite() => {
                f.write_str(if *v > 0.0 { "inf" } else { "-inf" })
            }
            PyKey::Float(Float(v)) => write!(f, "{v:?}"),
            PyKey::Str(s) => {
                f.write_str("'")?;
                for c in s.chars() {
                    match c {
                        '\\' => f.write_str("\\\\")?,
                        '\'' => f.write_str("\\'")?,
                        c if c.is_control() => write!(f, "{}", c.escape_default())?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("'")
            }
            PyKey::Bytes(b) => {
                f.write_str("b'")?;
                for &c in b {
                    match c {
                        b'\\' => f.write_str("\\\\")?,
                        b'\'' => f.write_str("\\'")?,
                        0x20..=0x7e => write!(f, "{}", c as char)?,
                        _ => write!(f, "\\x{c:02x}")?,
                    }
                }
                f.write_str("'")
            }
            PyKey::Tuple(items) => {
                f.write_str("(")?;
                for (i, k) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}")?;
                }
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}
