//! The kit shared by the chest's test binaries (each includes it with
//! `mod common;` and uses what it needs):
//!
//! - a hookable backend: [`hooked`] wraps a [`MemoryBackend`] in
//!   [`Hooked`], whose hook sees every operation and lets it through,
//!   fails it ([`failure`]), holds it (on a [`Gate`]) or panics;
//! - [`Gate`] (from `chest_core::testing`): hold, release, wait until
//!   arrived or held, count; [`HANG`], the one bound on a wait (it turns a
//!   hang into a failure; it never orders anything);
//! - fixtures: [`value`], [`open`], [`open_weighed`] (the write-behind
//!   setting: [`LEN`], [`BUDGET`]), [`check`], [`snapshot`], [`until`],
//!   [`finishes`], [`bounded`], [`Switch`], [`Touchy`] (a serializer that
//!   panics on cue);
//! - ready-made hooks in [`hooks`]: gates on the writes and reads of
//!   values, and on the background writers' writes;
//! - the test doubles a hook cannot replace, in [`doubles`];
//! - what the chest logs while a closure runs: [`logs::capture`].
//!
//! It needs the `testing` feature (for `Hooked`): run the tests with
//! `cargo test -p chest-core --all-features`.
#![allow(dead_code)]

#[cfg(not(feature = "testing"))]
compile_error!(
    "chest-core's tests need the `testing` feature: cargo test -p chest-core --all-features"
);

pub mod doubles;
pub mod hooks;
pub mod logs;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub use chest_core::testing::gate::{Gate, HANG};
pub use chest_core::testing::hooked::{Hooked, Op};
use chest_core::BackendExt;
use chest_core::{
    Backend, BackendError, BackendResult, BoxError, Cbor, Chest, ChestBuilder, MemoryBackend,
    Serializer,
};

/// The name of the chest's background writer threads.
pub const WRITER: &str = "chest-writer";
/// The name of the chest's background reader threads (read-ahead).
pub const READER: &str = "chest-reader";

/// Whether the calling thread is named `name`.
pub fn on_thread(name: &str) -> bool {
    std::thread::current().name() == Some(name)
}

/// A write of a value object (`data/…`).
pub fn value_put(op: &Op<'_>) -> bool {
    matches!(op, Op::Put(n) if n.starts_with("data/"))
}

/// A read of a value object (`data/…`).
pub fn value_get(op: &Op<'_>) -> bool {
    matches!(op, Op::Get(n) if n.starts_with("data/"))
}

/// The error a hook returns to fail `op` (`detail`: the cause, e.g.
/// "no space left on device").
pub fn failure(op: &Op<'_>, detail: &str) -> BackendError {
    Hooked::failure(op, detail)
}

/// `store` (clones of a memory backend share its objects) behind a hook
/// that sees each operation first.
pub fn hooked(
    store: &MemoryBackend,
    hook: impl Fn(&Op<'_>) -> BackendResult<()> + Send + Sync + 'static,
) -> Arc<dyn Backend> {
    hooked_over(Arc::new(store.clone()), hook)
}

/// [`hooked`] over any backend (e.g. a [`doubles::Shaped`] one).
pub fn hooked_over(
    inner: Arc<dyn Backend>,
    hook: impl Fn(&Op<'_>) -> BackendResult<()> + Send + Sync + 'static,
) -> Arc<dyn Backend> {
    Arc::new(Hooked::new(inner, hook))
}

/// An on/off switch shared between a test and a hook, weigher or serializer.
#[derive(Debug, Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn on(&self) {
        self.set(true);
    }
    pub fn off(&self) {
        self.set(false);
    }
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Turns it off; whether it was on (a one-shot).
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// Values of 64 KiB (weighed by their length, plus the chest's own
/// bookkeeping of a hundred or so bytes each) in a budget of 1 MiB and room
/// for that bookkeeping ([`open_weighed`]): the writer is handed a batch
/// (the two coldest values) once memory passes the high mark (the budget
/// less 1/16), i.e. by the 16th insert, which fills the budget; the 17th
/// goes over it.
pub const LEN: usize = 64 << 10;
/// See [`LEN`].
pub const BUDGET: usize = (1 << 20) + 16 * 256;

/// A chest within [`BUDGET`] whose values weigh their length.
pub fn open_weighed(backend: &Arc<dyn Backend>) -> Chest<u64, Vec<u8>> {
    ChestBuilder::<u64, Vec<u8>>::with_weigher(Vec::len)
        .memory_budget(BUDGET)
        .open_backend(Arc::clone(backend))
        .unwrap()
}

/// The value of key `k`, `len` bytes long: a pattern that differs by key.
pub fn value(k: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k as usize * 31 + i) as u8).collect()
}

/// A chest of `u64` to `Vec<u8>` over `backend`, within `budget`.
pub fn open(backend: &Arc<dyn Backend>, budget: usize) -> Chest<u64, Vec<u8>> {
    ChestBuilder::<u64, Vec<u8>>::new()
        .memory_budget(budget)
        .open_backend(Arc::clone(backend))
        .unwrap()
}

/// The invariant check of the chest's state (`quiescent`: no background
/// work may be left); panics naming what broke.
pub fn check<S: Serializer<Vec<u8>>>(c: &Chest<u64, Vec<u8>, S>, quiescent: bool) {
    if let Err(e) = c.check_invariants(quiescent) {
        panic!("invariant broken: {e}");
    }
}

/// A copy of every object: the state a crash right now would leave on a
/// store where every completed write is durable.
pub fn snapshot(store: &MemoryBackend) -> Arc<dyn Backend> {
    let copy = MemoryBackend::new();
    for name in store.list("").unwrap() {
        copy.put(&name, store.get(&name).unwrap()).unwrap();
    }
    Arc::new(copy)
}

/// Polls `done` until it holds (a bounded wait for another thread's step,
/// or a timer's).
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on another thread of the scope; returns its result, or panics
/// if it does not finish within [`HANG`] (it waited for something held).
pub fn finishes<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> T {
    let (tx, rx) = mpsc::channel();
    let _ = s.spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(HANG)
        .expect("the call waited for a held operation")
}

/// Runs `f` on a thread of its own; its result, or a failure if it takes
/// longer than [`HANG`] (`what`: the call, for the message).
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what}: no answer within {HANG:?}"))
}

/// CBOR, but panics while its switch is on (a serializer bug).
pub struct Touchy(pub Switch);

impl Serializer<Vec<u8>> for Touchy {
    fn name(&self) -> &str {
        "cbor"
    }
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), BoxError> {
        if self.0.is_on() {
            panic!("serializer bug");
        }
        Serializer::<Vec<u8>>::serialize(&Cbor, value, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, BoxError> {
        Serializer::<Vec<u8>>::deserialize(&Cbor, bytes)
    }
}
