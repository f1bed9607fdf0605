//! [`AsyncChest`]: a chest for async code (feature `tokio`). Every call
//! that may do I/O or wait runs on tokio's blocking pool, so it never
//! blocks an executor thread; a `get` served from memory answers at once.
//!
//! # Calls in flight and `close`
//!
//! The handles (an [`AsyncChest`] and its clones) share one [`Shared`]: the
//! chest, and under one mutex a [`State`] holding the [`Phase`], the count
//! of calls in flight and the wakers of closers waiting on them. A call
//! counts from the moment it starts (before its work goes to the blocking
//! pool) until that work ends: the work owns a [`Use`] (a clone of the
//! chest's `Arc` and the count's share), so a call whose future is dropped
//! (by `tokio::time::timeout`, an aborted task, a `select!`) still counts
//! until its work, which tokio cannot stop, ends. A `Use` lets go of the
//! chest before it leaves the count, so when the count is 0 nothing but
//! the `State` holds the chest. The phases:
//!
//! - [`Phase::Open`]: calls start (the count goes up) and end (down).
//! - [`Phase::Closing`]: the first `close`, through any handle, moved the
//!   state here; no call starts any more (each returns
//!   [`closed`](Shared::closed)'s error, `read_ahead` 0, `chest` panics).
//!   A task of the closer's waits, without holding a thread, until the
//!   count is 0 (the last `Use` wakes it), takes the chest out and runs
//!   [`Chest::close`] on the blocking pool: the chest is flushed, its errors
//!   are returned to the closer, and its lock or lease is released.
//! - [`Phase::Closed`]: that close is over (or failed, or panicked). A
//!   later `close` returns `Ok(())` at once; one that came during
//!   `Closing` waited for this phase, so every `close` returns only once
//!   the chest is closed.
//!
//! No I/O and no user code run under the state's mutex. The closer's work
//! is a spawned task, so the chest is closed even if the `close` future is
//! dropped (its errors are then lost, as a drop's are).

use std::fmt::Debug;
use std::future::poll_fn;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::api::chest::Chest;
use crate::config::Key;
use crate::engine::locks::lock;
use crate::error::{Error, Result};
use crate::value::serializer::{Cbor, Serializer};

/// A handle to a [`Chest`] for async code: cheap to clone, `Send + Sync`,
/// usable from multi-thread and current-thread tokio runtimes. Each call
/// that may read or write the backend (or wait for another thread's I/O)
/// runs on tokio's blocking pool (`spawn_blocking`); a panic there
/// (in user code the chest does not catch) resumes in the caller.
///
/// Clones share one chest, and [`close`](AsyncChest::close) through any of
/// them closes it for all: it waits for the calls in flight (those whose
/// futures were dropped included), closes the chest, and from then on
/// every call on any clone returns an error.
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
    shared: Arc<Shared<K, V, S>>,
}

/// What the handles of one chest share (see the module's comment).
struct Shared<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> {
    state: Mutex<State<K, V, S>>,
    /// The chest's location, for the error of a call after `close`.
    location: String,
}

struct State<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> {
    phase: Phase,
    /// The chest, until the closer takes it out (then no call is in flight).
    chest: Option<Arc<Chest<K, V, S>>>,
    /// Calls in flight: the [`Use`]s alive.
    calls: usize,
    /// Closers waiting for `calls` to reach 0, or for [`Phase::Closed`].
    waiters: Vec<Waker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Closing,
    Closed,
}

/// One call in flight: the chest, kept open until it is dropped.
struct Use<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> {
    // Fields drop in order: the chest's `Arc` before the count goes down.
    chest: Arc<Chest<K, V, S>>,
    _count: Count<K, V, S>,
}

/// A call's share of [`State::calls`]; dropping it ends the call.
struct Count<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static>(Arc<Shared<K, V, S>>);

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Deref for Use<K, V, S> {
    type Target = Chest<K, V, S>;

    fn deref(&self) -> &Chest<K, V, S> {
        &self.chest
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Debug for Use<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.chest.fmt(f)
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Drop for Count<K, V, S> {
    fn drop(&mut self) {
        let wake = {
            let mut state = lock(&self.0.state);
            state.calls -= 1;
            if state.calls == 0 && state.phase != Phase::Open {
                std::mem::take(&mut state.waiters)
            } else {
                Vec::new()
            }
        };
        wake.into_iter().for_each(Waker::wake);
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Shared<K, V, S> {
    /// Starts a call: the chest, counted in flight; an error once closed.
    fn start(self: &Arc<Self>, operation: &str) -> Result<Use<K, V, S>> {
        let mut state = lock(&self.state);
        match (&state.chest, state.phase) {
            (Some(chest), Phase::Open) => {
                let chest = Arc::clone(chest);
                state.calls += 1;
                Ok(Use {
                    chest,
                    _count: Count(Arc::clone(self)),
                })
            }
            _ => Err(self.closed(operation)),
        }
    }

    /// The error of a call on a closed (or closing) chest.
    fn closed(&self, operation: &str) -> Error {
        Error::Closed {
            location: self.location.clone(),
            operation: format!("`{operation}`"),
        }
    }

    /// Waits, without holding a thread, until `ready` says the state is as
    /// wanted; woken by the last call's end and by the end of a close.
    async fn until<T>(&self, mut ready: impl FnMut(&mut State<K, V, S>) -> Option<T>) -> T {
        poll_fn(|cx| {
            let mut state = lock(&self.state);
            match ready(&mut state) {
                Some(out) => Poll::Ready(out),
                None => {
                    if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        state.waiters.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The closer's work (state `Closing`): waits for the calls in flight,
    /// then closes the chest on the blocking pool. Its caller holds a
    /// [`MarkClosed`], so whatever happens here (an error, a panic, the task
    /// dropped at a runtime's shutdown), the phase becomes `Closed`.
    async fn finish_close(&self) -> Result<()> {
        let chest = self
            .until(|state| (state.calls == 0).then(|| state.chest.take()))
            .await;
        let Some(chest) = chest else {
            return Ok(());
        };
        blocking(move || match Arc::try_unwrap(chest) {
            Ok(chest) => chest.close(),
            // No `Use` is left, and each let go of the chest before leaving the count.
            Err(_) => unreachable!("a call holds the chest although none is in flight"),
        })
        .await
    }
}

/// Moves the state to [`Phase::Closed`] and wakes the closers waiting, when dropped.
struct MarkClosed<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static>(
    Arc<Shared<K, V, S>>,
);

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Drop for MarkClosed<K, V, S> {
    fn drop(&mut self) {
        let wake = {
            let mut state = lock(&self.0.state);
            state.phase = Phase::Closed;
            std::mem::take(&mut state.waiters)
        };
        wake.into_iter().for_each(Waker::wake);
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Clone for AsyncChest<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V> + 'static> Debug for AsyncChest<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Through a call, so that `close` never finds the chest held.
        match self.shared.start("fmt") {
            Ok(chest) => f.debug_tuple("AsyncChest").field(&chest).finish(),
            Err(_) => f
                .debug_tuple("AsyncChest")
                .field(&format_args!("closed: {}", self.shared.location))
                .finish(),
        }
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
        let location = chest.location().to_string();
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    phase: Phase::Open,
                    chest: Some(Arc::new(chest)),
                    calls: 0,
                    waiters: Vec::new(),
                }),
                location,
            }),
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
    /// `stats`, ...). What it returns counts as a call in flight until it
    /// is dropped: [`close`](AsyncChest::close) (through any clone) waits
    /// for it, so do not hold it across a `close`.
    ///
    /// # Panics
    ///
    /// If the chest is closed; [`try_chest`](AsyncChest::try_chest) returns
    /// an error instead.
    pub fn chest(&self) -> impl Deref<Target = Chest<K, V, S>> + Debug + '_ {
        match self.try_chest() {
            Ok(chest) => chest,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`chest`](AsyncChest::chest), or an error if the chest is closed.
    pub fn try_chest(&self) -> Result<impl Deref<Target = Chest<K, V, S>> + Debug + '_> {
        self.shared.start("chest")
    }

    /// [`Chest::insert`].
    pub async fn insert(&self, key: K, value: V) -> Result<()> {
        let c = self.shared.start("insert")?;
        blocking(move || c.insert(key, value)).await
    }

    /// [`Chest::get`]: from memory at once, or loaded on the blocking pool.
    pub async fn get(&self, key: K) -> Result<Option<Arc<V>>> {
        let c = self.shared.start("get")?;
        if let Some(v) = c.get_in_memory(&key) {
            return Ok(Some(v));
        }
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
        let c = self.shared.start("update")?;
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
        let c = self.shared.start("update_or_insert")?;
        blocking(move || c.update_or_insert(key, f, default)).await
    }

    /// [`Chest::get_or_insert_with`].
    pub async fn get_or_insert_with(
        &self,
        key: K,
        make: impl FnOnce() -> V + Send + 'static,
    ) -> Result<Arc<V>> {
        let c = self.shared.start("get_or_insert_with")?;
        blocking(move || c.get_or_insert_with(key, make)).await
    }

    /// [`Chest::remove`].
    pub async fn remove(&self, key: K) -> Result<bool> {
        let c = self.shared.start("remove")?;
        blocking(move || c.remove(&key)).await
    }

    /// [`Chest::take`].
    pub async fn take(&self, key: K) -> Result<Option<Arc<V>>> {
        let c = self.shared.start("take")?;
        blocking(move || c.take(&key)).await
    }

    /// [`Chest::prefetch`].
    pub async fn prefetch(&self, keys: Vec<K>) -> Result<usize> {
        let c = self.shared.start("prefetch")?;
        blocking(move || c.prefetch(keys.iter())).await
    }

    /// [`Chest::read_ahead`]: returns once the loads are handed to the
    /// chest's reader threads (making room for them may write); 0 once the
    /// chest is closed.
    pub async fn read_ahead(&self, keys: Vec<K>) -> usize {
        let Ok(c) = self.shared.start("read_ahead") else {
            return 0;
        };
        blocking(move || c.read_ahead(keys)).await
    }

    /// [`Chest::flush`].
    pub async fn flush(&self) -> Result<()> {
        let c = self.shared.start("flush")?;
        blocking(move || c.flush()).await
    }

    /// Closes the chest this handle and its clones share, and returns once
    /// it is closed: no call starts any more (each returns an error), the
    /// calls in flight end (those whose futures were dropped included: their
    /// work on the blocking pool goes on), then [`Chest::close`] flushes it
    /// and releases its location (a lock, a lease), so it can be reopened
    /// at once. Returns the errors of that close; a `close` after another
    /// (through any clone) waits for it to end and returns `Ok(())`. The
    /// chest is closed even if this future is dropped (its errors are then
    /// lost). It never blocks an executor thread.
    pub async fn close(self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        drop(self);
        let first = {
            let mut state = lock(&shared.state);
            let first = state.phase == Phase::Open;
            if first {
                state.phase = Phase::Closing;
            }
            first
        };
        if !first {
            shared
                .until(|state| (state.phase == Phase::Closed).then_some(()))
                .await;
            return Ok(());
        }
        // Made here, so that even a task dropped unpolled ends in `Closed`.
        let closed = MarkClosed(Arc::clone(&shared));
        let work = async move {
            let _closed = closed;
            shared.finish_close().await
        };
        match tokio::spawn(work).await {
            Ok(out) => out,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("a chest task was cancelled: {e}"),
            },
        }
    }
}
