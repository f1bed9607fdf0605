//! [`Serializer`]: how values become bytes. CBOR ([`Cbor`]) is the default;
//! [`Json`], [`Raw`] bytes and [`Pod`] arrays of numbers stand beside it,
//! and users can plug in their own.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BoxError;

/// Turns values into bytes and back.
///
/// The [`name`](Serializer::name) is recorded in the chest's manifest; a chest
/// reopened with a serializer of another name is refused, so bytes are never
/// decoded with the wrong codec.
///
/// ```
/// use chest_core::{BoxError, Serializer};
///
/// /// Little-endian f64s, no framing: far faster than CBOR for numeric arrays.
/// struct F64Le;
///
/// impl Serializer<Vec<f64>> for F64Le {
///     fn name(&self) -> &str { "f64le" }
///     fn serialize(&self, v: &Vec<f64>, out: &mut Vec<u8>) -> Result<(), BoxError> {
///         out.reserve(v.len() * 8);
///         for x in v { out.extend_from_slice(&x.to_le_bytes()); }
///         Ok(())
///     }
///     fn deserialize(&self, bytes: &[u8]) -> Result<Vec<f64>, BoxError> {
///         if !bytes.len().is_multiple_of(8) { return Err("length is not a multiple of 8".into()); }
///         Ok(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect())
///     }
/// }
///
/// let mut buf = Vec::new();
/// F64Le.serialize(&vec![1.5, -2.0], &mut buf).unwrap();
/// assert_eq!(F64Le.deserialize(&buf).unwrap(), vec![1.5, -2.0]);
/// ```
pub trait Serializer<V>: Send + Sync + 'static {
    /// A stable name for this format, recorded in the manifest.
    fn name(&self) -> &str;

    /// Appends the bytes of `value` to `out`.
    fn serialize(&self, value: &V, out: &mut Vec<u8>) -> Result<(), BoxError>;

    /// Reads a value back from the bytes [`serialize`](Serializer::serialize) wrote.
    fn deserialize(&self, bytes: &[u8]) -> Result<V, BoxError>;

    /// Like [`deserialize`](Serializer::deserialize), from an owned buffer
    /// that a serializer may keep instead of copying (the chest calls this
    /// one). The default borrows it for `deserialize`.
    fn deserialize_owned(&self, bytes: bytes::Bytes) -> Result<V, BoxError> {
        self.deserialize(&bytes)
    }

    /// Like [`deserialize_owned`](Serializer::deserialize_owned), from a
    /// `Vec` that nothing else holds (the chest calls this one when the
    /// store's read gave it one: a read of a file does). A serializer
    /// whose values are byte vectors takes it as the value, with no
    /// allocation or copy ([`Raw`] does). The default hands it to
    /// `deserialize_owned` as a `Bytes`.
    fn deserialize_vec(&self, bytes: Vec<u8>) -> Result<V, BoxError> {
        self.deserialize_owned(bytes::Bytes::from(bytes))
    }

    /// Runs `f`, in which the chest serializes several values one after the
    /// other (a batch being spilled, or flushed), calling
    /// [`serialize`](Serializer::serialize) only inside it. A serializer
    /// that needs a context for each call — an interpreter's lock, say — can
    /// take it here once for the batch. The default just runs `f`.
    fn around_batch<R>(&self, f: impl FnOnce() -> R) -> R
    where
        Self: Sized,
    {
        f()
    }

    /// The value's serialized form as bytes that share the value itself,
    /// when a value is its own encoding (as with [`Raw`]): the chest then
    /// checksums and writes those bytes in place, with no copy. `None` (the
    /// default): the chest calls [`serialize`](Serializer::serialize).
    /// Must equal what `serialize` would write.
    fn shared_bytes(&self, value: &std::sync::Arc<V>) -> Option<bytes::Bytes>
    where
        V: Send + Sync + 'static,
    {
        let _ = value;
        None
    }
}

/// CBOR through `ciborium`: compact, self-describing, any `serde` type. The default.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cbor;

impl<V: Serialize + DeserializeOwned> Serializer<V> for Cbor {
    fn name(&self) -> &str {
        "cbor"
    }

    fn serialize(&self, value: &V, out: &mut Vec<u8>) -> Result<(), BoxError> {
        ciborium::into_writer(value, out).map_err(Into::into)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<V, BoxError> {
        thread_local! {
            // `ciborium::from_reader` zeroes a 4 KiB scratch buffer per call.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 4096]);
        }
        SCRATCH
            .with(|scratch| match scratch.try_borrow_mut() {
                Ok(mut scratch) => ciborium::de::from_reader_with_buffer(bytes, &mut scratch),
                // Re-entered (a value deserializing another chest's value): a fresh one.
                Err(_) => ciborium::from_reader(bytes),
            })
            .map_err(Into::into)
    }
}

/// JSON through `serde_json`: readable objects, larger and slower than CBOR
/// (feature `json`).
#[cfg(feature = "json")]
#[derive(Debug, Default, Clone, Copy)]
pub struct Json;

#[cfg(feature = "json")]
impl<V: Serialize + DeserializeOwned> Serializer<V> for Json {
    fn name(&self) -> &str {
        "json"
    }

    fn serialize(&self, value: &V, out: &mut Vec<u8>) -> Result<(), BoxError> {
        serde_json::to_writer(out, value).map_err(Into::into)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<V, BoxError> {
        serde_json::from_slice(bytes).map_err(Into::into)
    }
}

/// The value's own bytes, unchanged: for `Vec<u8>`, `Box<[u8]>`, `bytes::Bytes`.
/// The fastest serializer; use it when values already are bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Raw;

impl<V> Serializer<V> for Raw
where
    V: AsRef<[u8]> + From<Vec<u8>>,
{
    fn name(&self) -> &str {
        "raw"
    }

    fn serialize(&self, value: &V, out: &mut Vec<u8>) -> Result<(), BoxError> {
        out.extend_from_slice(value.as_ref());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<V, BoxError> {
        Ok(V::from(bytes.to_vec()))
    }

    fn deserialize_owned(&self, bytes: bytes::Bytes) -> Result<V, BoxError> {
        // Reuses the buffer when nothing else shares it.
        Ok(V::from(Vec::from(bytes)))
    }

    fn deserialize_vec(&self, bytes: Vec<u8>) -> Result<V, BoxError> {
        Ok(V::from(bytes))
    }

    /// The value's own bytes, shared with it (no copy).
    fn shared_bytes(&self, value: &std::sync::Arc<V>) -> Option<bytes::Bytes>
    where
        V: Send + Sync + 'static,
    {
        Some(bytes::Bytes::from_owner(SharedValue(
            std::sync::Arc::clone(value),
        )))
    }
}

/// A value shared as its own bytes (see [`Serializer::shared_bytes`]).
struct SharedValue<V>(std::sync::Arc<V>);

impl<V: AsRef<[u8]>> AsRef<[u8]> for SharedValue<V> {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

/// Arrays of plain numbers — `Vec<f64>`, `Vec<u32>`, any `Vec<T>` of a
/// [`bytemuck::Pod`] type — stored as their own bytes: written without a
/// copy (the chest checksums and writes the vector's memory in place), read
/// back with one. Far faster than CBOR for numeric arrays, and what the
/// stored bytes are is plain: the elements in this machine's byte order.
///
/// The name recorded in the manifest says the element type and the byte
/// order (`pod:f64:le`), so a chest of `Vec<f64>` is not reopened as one of
/// `Vec<u64>`.
///
/// ```
/// use chest_core::{Chest, Pod};
///
/// let c: Chest<u32, Vec<f64>, Pod<f64>> = Chest::builder()
///     .memory_budget(1 << 20)
///     .serializer(Pod::new())
///     .open("memory://")?;
/// c.insert(1, vec![0.5; 100_000])?;      // 800 KB: spilled at once, without a copy
/// assert_eq!(c.get(&1)?.unwrap()[99_999], 0.5);
/// # Ok::<(), chest_core::Error>(())
/// ```
pub struct Pod<T> {
    name: String,
    _elements: std::marker::PhantomData<fn() -> T>,
}

impl<T> Pod<T> {
    /// The serializer of `Vec<T>`.
    pub fn new() -> Self {
        let element = std::any::type_name::<T>();
        let order = if cfg!(target_endian = "little") {
            "le"
        } else {
            "be"
        };
        Self {
            name: format!("pod:{element}:{order}"),
            _elements: std::marker::PhantomData,
        }
    }
}

impl<T> Clone for Pod<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            _elements: std::marker::PhantomData,
        }
    }
}

impl<T> Default for Pod<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Pod<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pod").field(&self.name).finish()
    }
}

impl<T: bytemuck::Pod + Send + Sync> Serializer<Vec<T>> for Pod<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn serialize(&self, value: &Vec<T>, out: &mut Vec<u8>) -> Result<(), BoxError> {
        out.extend_from_slice(bytemuck::cast_slice(value));
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<T>, BoxError> {
        let size = std::mem::size_of::<T>();
        if size == 0 || !bytes.len().is_multiple_of(size) {
            return Err(format!(
                "{} bytes are not a whole number of {}-byte elements ({})",
                bytes.len(),
                size,
                self.name
            )
            .into());
        }
        // Zeroed pages from the allocator, then one copy (the stored bytes
        // need not be aligned for `T`).
        let mut v: Vec<T> = bytemuck::zeroed_vec(bytes.len() / size);
        bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
        Ok(v)
    }

    /// The vector's own memory, shared (no copy).
    fn shared_bytes(&self, value: &std::sync::Arc<Vec<T>>) -> Option<bytes::Bytes> {
        Some(bytes::Bytes::from_owner(SharedPod(std::sync::Arc::clone(
            value,
        ))))
    }
}

/// A vector of plain numbers shared as its bytes (see [`Pod`]).
struct SharedPod<T>(std::sync::Arc<Vec<T>>);

impl<T: bytemuck::Pod> AsRef<[u8]> for SharedPod<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<S: Serializer<V>, V: PartialEq + std::fmt::Debug>(s: &S, v: V) {
        let mut buf = Vec::new();
        s.serialize(&v, &mut buf).unwrap();
        assert_eq!(s.deserialize(&buf).unwrap(), v);
    }

    #[test]
    fn built_in_serializers_round_trip() {
        round_trip(&Cbor, vec![1.0f64, 2.5]);
        round_trip(&Cbor, (3u32, "x".to_string()));
        #[cfg(feature = "json")]
        round_trip(&Json, vec!["a".to_string()]);
        round_trip(&Raw, vec![0u8, 255, 7]);
        round_trip(&Raw, bytes::Bytes::from_static(b"raw"));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(Serializer::<Vec<f64>>::deserialize(&Cbor, &[0xff, 0x00]).is_err());
        #[cfg(feature = "json")]
        assert!(Serializer::<Vec<f64>>::deserialize(&Json, b"{").is_err());
    }

    #[test]
    fn raw_shares_the_value_as_its_encoding() {
        let v = std::sync::Arc::new(vec![7u8; 1 << 20]);
        let shared = Serializer::<Vec<u8>>::shared_bytes(&Raw, &v).unwrap();
        let mut serialized = Vec::new();
        Raw.serialize(&*v, &mut serialized).unwrap();
        assert_eq!(&shared[..], &serialized[..], "the same bytes as serialize");
        assert_eq!(shared.as_ptr(), v.as_ptr(), "not a copy");
        assert!(Serializer::<Vec<u8>>::shared_bytes(&Cbor, &v).is_none());
    }

    #[test]
    fn pod_arrays_round_trip_and_share_their_memory() {
        let pod = Pod::<f64>::new();
        let v = std::sync::Arc::new(vec![1.5f64, -2.25, f64::MAX, 0.0]);
        let mut out = Vec::new();
        pod.serialize(&v, &mut out).unwrap();
        assert_eq!(out.len(), 32);
        let shared = pod.shared_bytes(&v).unwrap();
        assert_eq!(
            &shared[..],
            &out[..],
            "shared bytes are what serialize writes"
        );
        assert_eq!(shared.as_ptr(), v.as_ptr() as *const u8, "not a copy");
        // Unaligned stored bytes read back too.
        let mut unaligned = vec![0u8];
        unaligned.extend_from_slice(&out);
        assert_eq!(pod.deserialize(&unaligned[1..]).unwrap(), *v);
        let small = Pod::<u16>::new();
        assert_eq!(small.deserialize(&[1, 0, 2, 0]).unwrap(), vec![1u16, 2]);
    }

    #[test]
    fn pod_refuses_a_partial_element_and_names_its_type() {
        let pod = Pod::<u32>::new();
        let err = pod.deserialize(&[0; 7]).unwrap_err().to_string();
        assert!(err.contains("7 bytes") && err.contains("4-byte"), "{err}");
        assert_ne!(
            Serializer::<Vec<u32>>::name(&pod),
            Serializer::<Vec<f32>>::name(&Pod::<f32>::new()),
            "a chest of one element type is not reopened as another"
        );
        assert!(Serializer::<Vec<u32>>::name(&pod).starts_with("pod:u32:"));
    }
}
