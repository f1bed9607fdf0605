//! [`MemoryBackend`]: objects in a process-local map, for tests and examples.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use bytes::Bytes;

use crate::backend::{
    check_name, join_parts, slice_whole, Backend, BackendResult, GetOptions, GetResult,
    ObjectVersion, PutMode, PutOptions, SingleWriter,
};
use crate::error::BackendError;

/// Objects held in memory. Clones share the same objects, so a clone
/// "reopens" the store. Named stores (`memory://name`) live as long as the process.
///
/// Conditional writes ([`PutMode`]) are atomic. A named store is
/// shared by everything in the process that opens its name, so a chest
/// keeps it to one writer with a lease ([`SingleWriter::Lease`]); an
/// anonymous one is private to whoever holds its clones
/// ([`SingleWriter::Held`]).
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    location: Arc<str>,
    named: bool,
    objects: Arc<RwLock<Objects>>,
}

/// The objects, each with its version; `next` is the next version.
#[derive(Debug, Default)]
struct Objects {
    map: BTreeMap<String, (Bytes, u64)>,
    next: u64,
}

impl Objects {
    fn insert(&mut self, name: &str, data: Bytes) -> u64 {
        self.next += 1;
        self.map.insert(name.to_string(), (data, self.next));
        self.next
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A new, empty, anonymous store.
    pub fn new() -> Self {
        Self {
            location: Arc::from("memory://"),
            named: false,
            objects: Arc::default(),
        }
    }

    /// The process-wide store called `name` (`memory://name`), created empty
    /// on first use. Every call with the same name shares the same objects.
    pub fn named(name: &str) -> Self {
        static NAMED: OnceLock<Mutex<HashMap<String, MemoryBackend>>> = OnceLock::new();
        let mut named = NAMED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        named
            .entry(name.to_string())
            .or_insert_with(|| Self {
                location: Arc::from(format!("memory://{name}")),
                named: true,
                objects: Arc::default(),
            })
            .clone()
    }

    /// Total bytes stored.
    pub fn stored_bytes(&self) -> u64 {
        self.read().map.values().map(|(b, _)| b.len() as u64).sum()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn not_found(&self, name: &str) -> BackendError {
        BackendError::NotFound {
            location: self.location.to_string(),
            name: name.to_string(),
        }
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> &str {
        &self.location
    }

    /// Every write is atomic under the store's lock; a condition is checked
    /// under it too. Versions are a counter of the store's writes.
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        check_name(&self.location, name)?;
        let data = join_parts(parts);
        let mut objects = self.write();
        let current = objects.map.get(name).map(|(_, v)| *v);
        let refused = match (&opts.mode, current) {
            (PutMode::Overwrite, _) => None,
            (PutMode::Create, Some(v)) => Some(format!("it exists (version {v})")),
            (PutMode::Create, None) => None,
            (PutMode::Update(want), None) => Some(format!(
                "it does not exist (expected version {})",
                want.as_str()
            )),
            (PutMode::Update(want), Some(v)) => (want.as_str() != v.to_string())
                .then(|| format!("it is at version {v}, not {}", want.as_str())),
        };
        if let Some(detail) = refused {
            return Err(BackendError::Conflict {
                location: self.location.to_string(),
                name: name.to_string(),
                detail,
            });
        }
        Ok(Some(ObjectVersion::new(
            objects.insert(name, data).to_string(),
        )))
    }

    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        check_name(&self.location, name)?;
        let (all, version) = self
            .read()
            .map
            .get(name)
            .map(|(b, v)| (b.clone(), *v))
            .ok_or_else(|| self.not_found(name))?;
        Ok(GetResult {
            data: slice_whole(&self.location, name, all, opts.range)?,
            version: Some(ObjectVersion::new(version.to_string())),
        })
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        check_name(&self.location, name)?;
        self.write().map.remove(name);
        Ok(())
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        Ok(self
            .read()
            .map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// Nothing to do: the store is not persistent.
    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }

    fn single_writer(&self) -> BackendResult<SingleWriter> {
        Ok(if self.named {
            SingleWriter::Lease
        } else {
            SingleWriter::Held
        })
    }
}
