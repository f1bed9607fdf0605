//! A typeless view of a chest, for tools (the `chest` command): keys as
//! [`ciborium::Value`]s, values as the bytes their serializer wrote, for any
//! chest whatever its key and value types and its serializer.
//!
//! [`RawChest::open`] reads the newest readable manifest of a location
//! (read-only: a shared lock, nothing written, no orphan removed) and
//! answers from it: the keys with the size of each stored value
//! ([`RawChest::entries`]), one value's stored bytes ([`RawChest::get`]),
//! a check of every record's checksum ([`RawChest::verify`]) and figures
//! about the store ([`RawChest::info`]). The only write,
//! [`RawChest::remove`], opens the chest for writing as a
//! `Chest<RawKey, Bytes, Stored>`: a pass-through serializer that reports
//! the stored serializer's name, so the remaining values are never
//! decoded or rewritten.
//!
//! ```
//! use chest_core::raw::{RawChest, RawKey};
//! use chest_core::Chest;
//!
//! let c: Chest<(u32, String), Vec<u32>> = Chest::open("memory://doc-raw")?;
//! c.insert((1, "a".into()), vec![7])?;
//! c.close()?;
//!
//! let raw = RawChest::open("memory://doc-raw")?;
//! assert_eq!(raw.serializer(), Some("cbor"));
//! let key = RawKey::from_json(&serde_json::json!([1, "a"]))?;
//! let bytes = raw.get(&key)?.unwrap();
//! assert_eq!(ciborium::from_reader::<Vec<u32>, _>(&bytes[..]).unwrap(), vec![7]);
//! # Ok::<(), chest_core::Error>(())
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use ciborium::Value;
use serde::{Deserialize, Deserializer, Serialize};

use crate::api::builder::ChestBuilder;
use crate::api::chest::Chest;
use crate::backend::location::IntoLocation;
use crate::backend::registry::{self, OpenOptions};
use crate::config::OpenMode;
use crate::error::{BackendError, BoxError, Error, Result};
use crate::store::manifest::Manifest;
use crate::store::{object_name, Checked, Found, Loc, ReadError, Store, WHOLE};
use crate::value::serializer::Serializer;

/// Bytes of a record's checksum.
const CRC_LEN: u64 = 4;

/// A stored key as a generic CBOR value. Two keys are equal when their
/// canonical CBOR encodings are (maps compared with their entries sorted),
/// so a key given as JSON finds the key a program stored; it is written
/// back exactly as it was read.
#[derive(Clone)]
pub struct RawKey {
    value: Value,
    canonical: Vec<u8>,
}

impl RawKey {
    /// A key from a CBOR value.
    pub fn new(value: Value) -> Self {
        let mut canonical = Vec::new();
        // Encoding a `Value` into a `Vec` cannot fail.
        let _ = ciborium::into_writer(&canonicalize(&value), &mut canonical);
        Self { value, canonical }
    }

    /// A key from JSON: strings, integers, floats, booleans, null, arrays
    /// and objects become the CBOR values serde would have written for them
    /// (a Rust `(u32, String)` key is the JSON `[1, "a"]`, a struct key an
    /// object with its field names).
    pub fn from_json(json: &serde_json::Value) -> Result<Self> {
        Value::serialized(json)
            .map(Self::new)
            .map_err(|e| Error::Key {
                key: json.to_string(),
                detail: e.to_string(),
            })
    }

    /// The key as JSON (byte strings become arrays of numbers, tags are
    /// dropped, map keys that are not text are written as their JSON text).
    pub fn to_json(&self) -> serde_json::Value {
        to_json(&self.value)
    }

    /// The key's CBOR value.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// `v` with every map's entries sorted by their keys' encodings.
fn canonicalize(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(canonicalize).collect()),
        Value::Map(entries) => {
            let mut sorted: Vec<(Vec<u8>, Value, Value)> = entries
                .iter()
                .map(|(k, v)| {
                    let k = canonicalize(k);
                    let mut enc = Vec::new();
                    let _ = ciborium::into_writer(&k, &mut enc);
                    (enc, k, canonicalize(v))
                })
                .collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(sorted.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Tag(t, inner) => Value::Tag(*t, Box::new(canonicalize(inner))),
        other => other.clone(),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if let Ok(n) = i64::try_from(i) {
                J::from(n)
            } else if let Ok(n) = u64::try_from(i) {
                J::from(n)
            } else {
                J::String(i.to_string())
            }
        }
        Value::Bytes(b) => J::Array(b.iter().map(|&x| J::from(x)).collect()),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Text(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Null => J::Null,
        Value::Tag(_, inner) => to_json(inner),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let k = match k {
                        Value::Text(s) => s.clone(),
                        other => to_json(other).to_string(),
                    };
                    (k, to_json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

impl PartialEq for RawKey {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for RawKey {}

impl Hash for RawKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl fmt::Display for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl Serialize for RawKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Value::deserialize(d).map(Self::new)
    }
}

/// A pass-through serializer: the stored bytes, unchanged, under the name
/// of the serializer that wrote them (so a chest of any serializer opens).
#[derive(Debug, Clone)]
pub struct Stored {
    name: String,
}

impl Stored {
    /// Reports `name` as its name.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl Serializer<Bytes> for Stored {
    fn name(&self) -> &str {
        &self.name
    }

    fn serialize(&self, value: &Bytes, out: &mut Vec<u8>) -> std::result::Result<(), BoxError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Bytes, BoxError> {
        Ok(Bytes::copy_from_slice(bytes))
    }

    fn deserialize_owned(&self, bytes: Bytes) -> std::result::Result<Bytes, BoxError> {
        Ok(bytes)
    }
}

/// One key of a [`RawChest`] and where its value is stored.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The key.
    pub key: RawKey,
    /// Bytes of the stored value (as the serializer wrote it, before any
    /// compression by the backend; without its checksum).
    pub size: u64,
    /// The object holding it (`data/…`).
    pub object: String,
    loc: Loc,
}

/// Figures about a chest's store, from its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawInfo {
    /// The location.
    pub location: String,
    /// Number of keys.
    pub keys: usize,
    /// The serializer the values were written with (`None`: never flushed).
    pub serializer: Option<String>,
    /// Value objects the manifest lists.
    pub objects: usize,
    /// Bytes of those objects (before any compression by the backend).
    pub object_bytes: u64,
    /// Bytes of the live records in them (values and their checksums).
    pub live_bytes: u64,
    /// Bytes of the stored values alone.
    pub value_bytes: u64,
    /// Bytes of the keys (CBOR).
    pub key_bytes: u64,
    /// Newer manifests found damaged and skipped.
    pub damaged_manifests: Vec<String>,
    /// The manifests in the location, oldest first (`manifest.<flush
    /// number, 16 hex digits>`; the two newest are kept). The newest
    /// readable one holds the state of the last completed flush.
    pub manifests: Vec<String>,
}

impl RawInfo {
    /// Share of the objects' bytes that no key refers to (0 to 1).
    pub fn garbage_ratio(&self) -> f64 {
        if self.object_bytes == 0 {
            0.0
        } else {
            self.object_bytes.saturating_sub(self.live_bytes) as f64 / self.object_bytes as f64
        }
    }

    /// Approximate memory the key index takes when the chest is opened
    /// (about 40 bytes a key, plus the keys).
    pub fn index_memory(&self) -> u64 {
        self.keys as u64 * 40 + self.key_bytes
    }
}

/// A key whose value failed [`RawChest::verify`].
#[derive(Debug)]
pub struct Failure {
    /// The key.
    pub key: RawKey,
    /// What is wrong (a checksum mismatch, a missing object, a read error).
    pub error: Error,
}

/// A typeless, read-only view of a chest (see the [module](self)).
pub struct RawChest {
    store: Store,
    manifest: Option<Manifest>,
    skipped: Vec<String>,
}

impl fmt::Debug for RawChest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawChest")
            .field("location", &self.location())
            .field("len", &self.len())
            .finish()
    }
}

impl RawChest {
    /// Opens the chest at `location` for reading (a shared lock on a local
    /// directory; nothing is written). A location holding no chest is
    /// [`Error::NoChest`]; one holding something else [`Error::NotAChest`].
    pub fn open(location: impl IntoLocation) -> Result<Self> {
        let location = location.into_location()?;
        let opened = registry::open_backend(
            &location,
            &OpenOptions {
                read_only: true,
                create: false,
            },
        )?;
        let store = Store::new(opened.backend);
        let (manifest, skipped) = match store.discover()? {
            Found::Empty => {
                return Err(Error::NoChest {
                    location: store.location().to_string(),
                })
            }
            Found::Chest(None) => (None, Vec::new()),
            Found::Chest(Some(loaded)) => (
                Some(loaded.manifest),
                loaded.skipped.into_iter().map(|(_, d)| d).collect(),
            ),
        };
        Ok(Self {
            store,
            manifest,
            skipped,
        })
    }

    /// Where the chest lives.
    pub fn location(&self) -> &str {
        self.store.location()
    }

    /// The serializer the values were written with (`None`: never flushed).
    pub fn serializer(&self) -> Option<&str> {
        self.manifest.as_ref().map(|m| m.serializer.as_str())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.manifest.as_ref().map_or(0, |m| m.len)
    }

    /// `true` if the chest holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of the stored value at `loc`.
    fn value_size(&self, m: &Manifest, loc: Loc) -> u64 {
        if loc.len == WHOLE {
            m.objects
                .get(&loc.obj.get())
                .map_or(0, |s| s.saturating_sub(CRC_LEN))
        } else {
            u64::from(loc.len)
        }
    }

    /// Every key with the size and object of its stored value, in the
    /// manifest's order.
    pub fn entries(&self) -> Result<Vec<RawEntry>> {
        let Some(m) = &self.manifest else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(m.len);
        for (bytes, loc) in m.entries() {
            let key: RawKey = ciborium::from_reader(bytes).map_err(|e| Error::Key {
                key: "<undecodable>".into(),
                detail: format!("a key stored in {} is not CBOR: {e}", self.location()),
            })?;
            out.push(RawEntry {
                key,
                size: self.value_size(m, loc),
                object: object_name(loc.obj).to_string(),
                loc,
            });
        }
        Ok(out)
    }

    /// Figures about the store, from the manifest (no value is read).
    pub fn info(&self) -> RawInfo {
        let mut info = RawInfo {
            location: self.location().to_string(),
            keys: self.len(),
            serializer: self.serializer().map(str::to_string),
            damaged_manifests: self.skipped.clone(),
            ..RawInfo::default()
        };
        let mut manifests: Vec<String> = self
            .store
            .backend()
            .list("manifest")
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n == "manifest" || n.len() == "manifest.".len() + 16)
            .collect();
        manifests.sort();
        info.manifests = manifests;
        if let Some(m) = &self.manifest {
            info.objects = m.objects.len();
            info.object_bytes = m.objects.values().sum();
            for (key, loc) in m.entries() {
                info.key_bytes += key.len() as u64;
                let size = self.value_size(m, loc);
                info.value_bytes += size;
                info.live_bytes += size + CRC_LEN;
            }
        }
        info
    }

    /// The stored bytes of `key`'s value, exactly as its serializer wrote
    /// them (checksum checked); `None` if the chest has no such key.
    pub fn get(&self, key: &RawKey) -> Result<Option<Bytes>> {
        let Some(entry) = self.entries()?.into_iter().find(|e| &e.key == key) else {
            return Ok(None);
        };
        self.read(&entry).map(Some)
    }

    /// Reads one entry's value (checksum checked).
    pub fn read(&self, entry: &RawEntry) -> Result<Bytes> {
        let read = self.store.read(entry.loc);
        self.checked(entry, read)
    }

    fn checked(
        &self,
        entry: &RawEntry,
        read: std::result::Result<Checked, ReadError>,
    ) -> Result<Bytes> {
        let corrupt = |detail: String| Error::Corrupt {
            key: entry.key.to_string(),
            object: entry.object.clone(),
            location: self.location().to_string(),
            detail,
        };
        read.map_err(|e| match e {
            ReadError::Backend(BackendError::NotFound { .. }) => {
                corrupt("the object is missing".into())
            }
            ReadError::Backend(e) => Error::Read {
                key: entry.key.to_string(),
                source: Box::new(Error::Backend(e)),
            },
            ReadError::Corrupt(detail) => corrupt(detail),
        })
        .map(Checked::into_bytes)
    }

    /// Reads every value and checks its checksum; returns the keys that
    /// fail. `progress(done, total)` is called as it goes. Values are read
    /// in batches as wide as the backend reads at once (S3: concurrent GETs).
    pub fn verify(&self, mut progress: impl FnMut(usize, usize)) -> Result<Vec<Failure>> {
        let entries = self.entries()?;
        let total = entries.len();
        let window = self.store.backend().capabilities().write_concurrency.max(1);
        let mut failures = Vec::new();
        let mut done = 0;
        for chunk in entries.chunks(window) {
            let locs: Vec<Loc> = chunk.iter().map(|e| e.loc).collect();
            for (entry, read) in chunk.iter().zip(self.store.read_many(&locs)) {
                if let Err(error) = self.checked(entry, read) {
                    failures.push(Failure {
                        key: entry.key.clone(),
                        error,
                    });
                }
            }
            done += chunk.len();
            progress(done, total);
        }
        Ok(failures)
    }

    /// Opens the chest at `location` for writing as a typeless chest:
    /// values are the stored bytes under a pass-through serializer named
    /// like the stored one (`default_serializer` for a chest never
    /// flushed). Nothing is decoded or re-encoded.
    pub fn open_writable(
        location: impl IntoLocation,
        default_serializer: &str,
    ) -> Result<Chest<RawKey, Bytes, Stored>> {
        let location = location.into_location()?;
        let name = {
            let raw = Self::open(location.as_str())?;
            raw.serializer().unwrap_or(default_serializer).to_string()
        };
        ChestBuilder::<RawKey, Bytes>::with_weigher(|v: &Bytes| v.len())
            .memory_budget(64 << 20)
            .mode(OpenMode::MustExist)
            .serializer(Stored::new(name))
            .open(location)
    }

    /// Removes `keys` from the chest at `location` and flushes it. Returns,
    /// for each key, whether it was there.
    pub fn remove(location: impl IntoLocation, keys: &[RawKey]) -> Result<Vec<bool>> {
        let chest = Self::open_writable(location, "raw")?;
        let removed = keys
            .iter()
            .map(|k| chest.remove(k))
            .collect::<Result<Vec<_>>>()?;
        chest.close()?;
        Ok(removed)
    }
    /// Compacts the chest at `location`: every value packed in a segment
    /// that holds garbage (records no key refers to) is written again into
    /// new segments, and the objects no manifest needs any more are deleted
    /// (three flushes, as the two newest manifests are kept). Values alone
    /// in their objects are not moved. `progress(done, total)` is called as
    /// values move. Returns the figures before and after.
    pub fn compact(
        location: impl IntoLocation,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(RawInfo, RawInfo)> {
        let location = location.into_location()?;
        let (before, moving) = {
            let raw = Self::open(location.as_str())?;
            (raw.info(), raw.in_sparse_segments()?)
        };
        let chest = Self::open_writable(location.as_str(), "raw")?;
        for (done, key) in moving.iter().enumerate() {
            // Loaded as stored bytes and put back dirty: the flush writes it
            // into a new segment.
            if let Some(value) = chest.get(key)? {
                chest.insert(key.clone(), Bytes::clone(&value))?;
            }
            progress(done + 1, moving.len());
        }
        for _ in 0..3 {
            // Marked as changed, so that the flush runs even if nothing moved
            // (no other thread uses this chest: no shard lock is needed).
            chest.inner.bump();
            chest.flush()?;
        }
        chest.close()?;
        let after = Self::open(location.as_str())?.info();
        Ok((before, after))
    }

    /// The keys whose values are packed in segments that hold garbage.
    fn in_sparse_segments(&self) -> Result<Vec<RawKey>> {
        let Some(m) = &self.manifest else {
            return Ok(Vec::new());
        };
        let mut live: std::collections::HashMap<u32, u64> = Default::default();
        for (_, loc) in m.entries() {
            if loc.len != WHOLE {
                *live.entry(loc.obj.get()).or_default() += u64::from(loc.len) + CRC_LEN;
            }
        }
        let sparse: std::collections::HashSet<u32> = live
            .into_iter()
            .filter(|(id, bytes)| m.objects.get(id).is_some_and(|size| bytes < size))
            .map(|(id, _)| id)
            .collect();
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.loc.len != WHOLE && sparse.contains(&e.loc.obj.get()))
            .map(|e| e.key)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_find_stored_keys() {
        #[derive(Serialize, Deserialize, Hash, PartialEq, Eq, Clone, Debug)]
        struct K {
            a: u32,
            b: String,
        }
        let stored = |k: &K| {
            let mut buf = Vec::new();
            ciborium::into_writer(k, &mut buf).unwrap();
            ciborium::from_reader::<RawKey, _>(&buf[..]).unwrap()
        };
        let k = K {
            a: 1,
            b: "x".into(),
        };
        let from_json = RawKey::from_json(&serde_json::json!({"b": "x", "a": 1})).unwrap();
        assert_eq!(stored(&k), from_json);
        assert_eq!(from_json.to_json(), serde_json::json!({"b": "x", "a": 1}));
        assert_ne!(
            RawKey::from_json(&serde_json::json!([1, "a"])).unwrap(),
            RawKey::from_json(&serde_json::json!(["a", 1])).unwrap()
        );
    }

    #[test]
    fn any_serializer_opens_and_bytes_come_back_unchanged() {
        let c: Chest<u32, String, crate::Json> = Chest::builder()
            .serializer(crate::Json)
            .memory_budget(1)
            .open("memory://raw-json")
            .unwrap();
        for i in 0..10 {
            c.insert(i, format!("v{i}")).unwrap();
        }
        c.close().unwrap();
        let raw = RawChest::open("memory://raw-json").unwrap();
        assert_eq!(raw.serializer(), Some("json"));
        assert_eq!(raw.len(), 10);
        let k = RawKey::from_json(&serde_json::json!(3)).unwrap();
        assert_eq!(&raw.get(&k).unwrap().unwrap()[..], b"\"v3\"");
        assert!(raw.verify(|_, _| {}).unwrap().is_empty());
        let info = raw.info();
        assert_eq!(info.keys, 10);
        assert_eq!(info.value_bytes, 10 * 4);
        drop(raw);
        assert_eq!(
            RawChest::remove("memory://raw-json", &[k.clone(), k]).unwrap(),
            vec![true, false]
        );
        let c: Chest<u32, String, crate::Json> = Chest::builder()
            .serializer(crate::Json)
            .open("memory://raw-json")
            .unwrap();
        assert_eq!(c.len(), 9);
        assert_eq!(
            c.get(&4).unwrap().as_deref().map(String::as_str),
            Some("v4")
        );
    }
}
