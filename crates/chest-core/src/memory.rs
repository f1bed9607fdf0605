//! [`MemoryBackend`]: objects in a process-local map, for tests and examples.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use bytes::Bytes;

use crate::backend::{check_name, check_range, Backend, BackendResult};
use crate::error::BackendError;

/// Objects held in memory. Clones share the same objects, so a clone
/// "reopens" the store. Named stores (`memory://name`) live as long as the process.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    location: Arc<str>,
    objects: Arc<RwLock<BTreeMap<String, Bytes>>>,
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
                objects: Arc::default(),
            })
            .clone()
    }

    /// Total bytes stored.
    pub fn stored_bytes(&self) -> u64 {
        self.read().values().map(|b| b.len() as u64).sum()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Bytes>> {
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

    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        check_name(&self.location, name)?;
        self.write().insert(name.to_string(), data);
        Ok(())
    }

    fn get(&self, name: &str) -> BackendResult<Bytes> {
        check_name(&self.location, name)?;
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))
    }

    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        let all = self.get(name)?;
        check_range(&self.location, name, &range, all.len() as u64)?;
        Ok(all.slice(range.start as usize..range.end as usize))
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        check_name(&self.location, name)?;
        self.write().remove(name);
        Ok(())
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        Ok(self
            .read()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
}
