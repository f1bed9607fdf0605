//! A backend of your own: the six required methods of `Backend`, over a
//! sorted map shared by every handle. A store with a client of its own (a
//! database, a key-value service) puts its calls in the same six places;
//! everything else a chest asks (`put`, `get_range`, `put_durable`, ...)
//! comes from `BackendExt`, and the conformance suite at the bottom holds
//! it to the whole contract (`cargo test --example custom_backend`).
//!
//! ```text
//! cargo run --example custom_backend
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use chest::backend::{check_name, join_parts, refuse_conditional, refuse_versioned, slice_whole};
use chest::{
    Backend, BackendError, BackendResult, Chest, GetOptions, GetResult, ObjectVersion, PutOptions,
};

/// Objects in a sorted map; clones share it, as handles on one location.
#[derive(Debug, Clone, Default)]
struct MapStore(Arc<RwLock<BTreeMap<String, Bytes>>>);

impl Backend for MapStore {
    fn location(&self) -> &str {
        "map://"
    }

    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        check_name(self.location(), name)?;
        // No versions here: a chest then trusts its user to open one writer.
        refuse_conditional(self.location(), name, &opts)?;
        let data = join_parts(parts); // the object is the parts' concatenation
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), data);
        Ok(None)
    }

    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        check_name(self.location(), name)?;
        refuse_versioned(self.location(), name, &opts)?;
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let all = map
            .get(name)
            .cloned()
            .ok_or_else(|| BackendError::NotFound {
                location: self.location().to_string(),
                name: name.to_string(),
            })?;
        // The range asked for, checked against the object's length.
        Ok(GetResult::data(slice_whole(
            self.location(),
            name,
            all,
            opts.range,
        )?))
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        check_name(self.location(), name)?;
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let under = map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix));
        Ok(under.map(|(k, _)| k.clone()).collect())
    }

    /// Nothing outlives the process here, so there is nothing to make durable.
    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }
}

fn main() -> chest::Result<()> {
    let store = MapStore::default();
    let c: Chest<u32, Vec<u8>> = Chest::builder()
        .memory_budget(1 << 20)
        .open_backend(Arc::new(store.clone()))?;
    for i in 0..64 {
        c.insert(i, vec![i as u8; 64 << 10])?; // 4 MiB in all: most of it spills
    }
    c.flush()?;
    assert_eq!(*c.get(&7)?.expect("inserted"), vec![7u8; 64 << 10]);
    println!(
        "{} objects in the map store after a flush",
        store.list("")?.len()
    );
    Ok(())
}

#[cfg(test)]
mod conformance {
    use super::MapStore;
    use chest::testing::{Location, Target};

    struct Maps;
    impl Target for Maps {
        fn fresh(&self) -> Box<dyn Location> {
            Box::new(Place(MapStore::default()))
        }
    }
    struct Place(MapStore);
    impl Location for Place {
        fn open(&self) -> chest::Result<std::sync::Arc<dyn chest::Backend>> {
            Ok(std::sync::Arc::new(self.0.clone()))
        }
    }

    chest::conformance_tests!(Maps);
}
