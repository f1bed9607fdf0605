//! [`AsyncChest`]: a chest for async code (feature `tokio`). Every call
//! that may do I/O or wait runs on tokio's blocking pool, so it never
//! blocks an executor thread; a `get` served from memory answers at once.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crate::chest::{Chest, Key};
use crate::error::Result;
use crate::serializer::{Cbor, Serializer};

/// A handle to a [`Chest`] for async code: cheap to clone, `Send + Sync`,
/// usable from multi-thread and current-thread tokio runtimes. Each call
/// that may read or write the backend (or wait for another thread's I/O)
/// runs on tokio's blocking pool (`spawn_blocking`); a panic there
/// (in user code the chest does not catch) resumes in the caller.
///
/// ```
/// use chest_core::{AsyncChest, Chest};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chest_core::Result<()> {
/// let chest: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(64 << 10).open("memory://")?;
/// let c = AsyncChest::new(chest);
/// for i in 0..100 {
///     c.insert(i, vec![i as u8; 4096]).await?;      // spills without blocking the runtime
/// }
/// assert_eq!(c.get(7).await?.unwrap()[0], 7);      // loaded on the blocking pool
/// c.update(7, |v| v.push(1)).await?;
/// c.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct AsyncChest<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static = Cbor> {
    inner: Arc<Chest<K, V, S>>,
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Clone for AsyncChest<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Debug for AsyncChest<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AsyncChest").field(&self.inner).finish()
    }
}

/// Runs `f` on the blocking pool; a panic in it resumes here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("a chest task was cancelled: {e}"),
        },
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> AsyncChest<K, V, S> {
    /// Wraps an open chest (see [`open`](AsyncChest::open) to open one
    /// without blocking the runtime).
    pub fn new(chest: Chest<K, V, S>) -> Self {
        Self {
            inner: Arc::new(chest),
        }
    }

    /// Opens the chest at `location` with `builder`, on the blocking pool
    /// (opening reads the manifest and may remove a crash's leftovers).
    ///
    /// ```
    /// use chest_core::{AsyncChest, Chest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> chest_core::Result<()> {
    /// let c: AsyncChest<u32, String> = AsyncChest::open(Chest::builder(), "memory://doc-async-open").await?;
    /// c.insert(1, "one".into()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(
        builder: crate::ChestBuilder<K, V, S>,
        location: impl crate::IntoLocation + Send + 'static,
    ) -> Result<Self>
    where
        S: Send,
    {
        let chest = blocking(move || builder.open(location)).await?;
        Ok(Self::new(chest))
    }

    /// The chest itself, for calls that do no I/O (`len`, `contains_key`,
    /// `stats`, ...).
    pub fn chest(&self) -> &Chest<K, V, S> {
        &self.inner
    }

    /// [`Chest::insert`].
    pub async fn insert(&self, key: K, value: V) -> Result<()> {
        let c = Arc::clone(&self.inner);
        blocking(move || c.insert(key, value)).await
    }

    /// [`Chest::get`]: from memory at once, or loaded on the blocking pool.
    pub async fn get(&self, key: K) -> Result<Option<Arc<V>>> {
        if let Some(v) = self.inner.get_resident(&key) {
            return Ok(Some(v));
        }
        let c = Arc::clone(&self.inner);
        blocking(move || c.get(&key)).await
    }

    /// [`Chest::update`].
    pub async fn update<R: Send + 'static>(
        &self,
        key: K,
        f: impl FnOnce(&mut V) -> R + Send + 'static,
    ) -> Result<Option<R>>
    where
        V: Clone,
    {
        let c = Arc::clone(&self.inner);
        blocking(move || c.update(&key, f)).await
    }

    /// [`Chest::update_or_insert`].
    pub async fn update_or_insert<R: Send + 'static>(
        &self,
        key: K,
        f: impl FnOnce(&mut V) -> R + Send + 'static,
        default: impl FnOnce() -> V + Send + 'static,
    ) -> Result<R>
    where
        V: Clone,
    {
        let c = Arc::clone(&self.inner);
        blocking(move || c.update_or_insert(key, f, default)).await
    }

    /// [`Chest::get_or_insert_with`].
    pub async fn get_or_insert_with(
        &self,
        key: K,
        make: impl FnOnce() -> V + Send + 'static,
    ) -> Result<Arc<V>> {
        let c = Arc::clone(&self.inner);
        blocking(move || c.get_or_insert_with(key, make)).await
    }

    /// [`Chest::remove`].
    pub async fn remove(&self, key: K) -> Result<bool> {
        let c = Arc::clone(&self.inner);
        blocking(move || c.remove(&key)).await
    }

    /// [`Chest::take`].
    pub async fn take(&self, key: K) -> Result<Option<Arc<V>>> {
        let c = Arc::clone(&self.inner);
        blocking(move || c.take(&key)).await
    }

    /// [`Chest::prefetch`].
    pub async fn prefetch(&self, keys: Vec<K>) -> Result<usize> {
        let c = Arc::clone(&self.inner);
        blocking(move || c.prefetch(keys.iter())).await
    }

    /// [`Chest::read_ahead`]: returns once the loads are handed to the
    /// chest's reader threads (making room for them may write).
    pub async fn read_ahead(&self, keys: Vec<K>) -> usize {
        let c = Arc::clone(&self.inner);
        blocking(move || c.read_ahead(keys)).await
    }

    /// [`Chest::flush`].
    pub async fn flush(&self) -> Result<()> {
        let c = Arc::clone(&self.inner);
        blocking(move || c.flush()).await
    }

    /// Flushes (as [`Chest::close`] does) and, if this is the last handle,
    /// closes the chest; other handles keep it open.
    pub async fn close(self) -> Result<()> {
        blocking(move || match Arc::try_unwrap(self.inner) {
            Ok(chest) => chest.close(),
            Err(shared) => shared.flush(),
        })
        .await
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    /// The value of `key` if it is in memory now; no I/O, no waiting on a load.
    pub(crate) fn get_resident<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.inner.shard(key);
        let tick = shard.tick();
        match shard.map.get_mut(key) {
            Some(crate::entry::Slot::Resident(r)) => {
                r.tick = tick;
                crate::stats::Counters::add(&self.inner.counters.hits, 1);
                Some(Arc::clone(&r.value))
            }
            _ => None,
        }
    }
}
