//! The test doubles that a hook of [`Hooked`](super::Hooked) cannot
//! replace, each once: [`Shaped`] declares what the store can do (pack
//! large values, write several objects at once) and tells durable writes
//! from plain ones; [`LeaseFaults`] acts after an operation (a write that
//! lands and then reports an error; a step run after a listing or a look
//! at the marker) and at `single_writer`.

use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chest_core::{
    Backend, BackendError, BackendResult, MemoryBackend, ObjectVersion, PutIf, SingleWriter,
};

use super::Gate;

/// A memory backend (clones share its objects) that declares packing and
/// write concurrency as asked, and records the names it was asked to write
/// durably (`put_durable`) and plainly.
#[derive(Debug, Default)]
pub struct Shaped {
    pub inner: MemoryBackend,
    /// Large values are packed into segments (as a local directory does).
    pub packs: bool,
    /// [`Backend::write_concurrency`] (0: the memory backend's).
    pub write_concurrency: usize,
    pub durable_puts: Mutex<Vec<String>>,
    pub plain_puts: Mutex<Vec<String>>,
}

impl Shaped {
    /// A store that packs large values into segments.
    pub fn packing() -> Arc<Self> {
        Arc::new(Self {
            packs: true,
            ..Self::default()
        })
    }

    /// A store that writes `n` objects at once.
    pub fn wide(n: usize) -> Arc<Self> {
        Arc::new(Self {
            write_concurrency: n,
            ..Self::default()
        })
    }

    /// The names written with `put_durable` so far.
    pub fn durable(&self) -> Vec<String> {
        self.durable_puts.lock().unwrap().clone()
    }

    /// The names written plainly so far.
    pub fn plain(&self) -> Vec<String> {
        self.plain_puts.lock().unwrap().clone()
    }
}

// Not a forwarding layer: the defaults are kept on purpose, so that a
// batch written through `put_many` or `put_parts` reaches `put` and is
// recorded there.
impl Backend for Shaped {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.plain_puts.lock().unwrap().push(name.to_string());
        self.inner.put(name, data)
    }
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.durable_puts.lock().unwrap().push(name.to_string());
        self.inner.put_durable(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.inner.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.inner.list(prefix)
    }
    fn sync(&self) -> BackendResult<()> {
        self.inner.sync()
    }
    fn write_concurrency(&self) -> usize {
        match self.write_concurrency {
            0 => self.inner.write_concurrency(),
            n => n,
        }
    }
    fn read_cost(&self) -> chest_core::ReadCost {
        self.inner.read_cost()
    }
    fn packs_large_values(&self) -> bool {
        self.packs
    }
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        self.inner.single_writer()
    }
    fn get_versioned(&self, name: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        self.inner.get_versioned(name)
    }
    fn put_if(&self, name: &str, data: Bytes, condition: PutIf) -> BackendResult<ObjectVersion> {
        self.inner.put_if(name, data, condition)
    }
}

/// A step a [`LeaseFaults`] runs once, after an operation.
pub type Step = Box<dyn FnOnce() + Send>;

/// How [`LeaseFaults`] answers the next conditional write of a manifest.
pub const MANIFEST_PASSES: u8 = 0;
/// ...fails without writing anything.
pub const MANIFEST_FAILS: u8 = 1;
/// ...waits at [`LeaseFaults::gate`] first.
pub const MANIFEST_HELD: u8 = 2;

/// A backend over a named store for the writer lease's failures: the next
/// conditional write of a manifest passes, fails or is held (a one-shot
/// mode); the next renewal of the lease lands and then reports an error;
/// one-shot steps run after `list("manifest")`, after the read of the
/// marker (`chest`) and at `single_writer`.
pub struct LeaseFaults {
    inner: Arc<dyn Backend>,
    /// One of `MANIFEST_*`, for the next conditional write of a manifest.
    pub manifest_mode: AtomicU8,
    /// The next write of the lease lands, then reports an error.
    pub renewal_fails: AtomicU8,
    /// Holds the manifest write in mode [`MANIFEST_HELD`] (open unless closed).
    pub gate: Arc<Gate>,
    pub after_list: Mutex<Option<Step>>,
    pub at_claim: Mutex<Option<Step>>,
    pub after_marker_read: Mutex<Option<Step>>,
    /// Writes of the lease so far.
    pub lease_puts: AtomicUsize,
}

impl std::fmt::Debug for LeaseFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl LeaseFaults {
    pub fn new(inner: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            manifest_mode: AtomicU8::new(MANIFEST_PASSES),
            renewal_fails: AtomicU8::new(0),
            gate: Gate::new(),
            after_list: Mutex::new(None),
            at_claim: Mutex::new(None),
            after_marker_read: Mutex::new(None),
            lease_puts: AtomicUsize::new(0),
        })
    }

    fn run(step: &Mutex<Option<Step>>) {
        let step = step.lock().unwrap().take();
        if let Some(step) = step {
            step();
        }
    }
}

fn timed_out(name: &str) -> BackendError {
    BackendError::Io {
        location: "test".into(),
        op: "conditional put",
        path: name.into(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out (injected)"),
    }
}

impl Backend for LeaseFaults {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn put(&self, n: &str, d: Bytes) -> BackendResult<()> {
        self.inner.put(n, d)
    }
    fn put_many(&self, o: Vec<(String, Bytes)>) -> BackendResult<()> {
        self.inner.put_many(o)
    }
    fn put_durable(&self, n: &str, d: Bytes) -> BackendResult<()> {
        self.inner.put_durable(n, d)
    }
    fn get(&self, n: &str) -> BackendResult<Bytes> {
        let r = self.inner.get(n);
        if n == "chest" {
            Self::run(&self.after_marker_read);
        }
        r
    }
    fn get_range(&self, n: &str, r: Range<u64>) -> BackendResult<Bytes> {
        self.inner.get_range(n, r)
    }
    fn delete(&self, n: &str) -> BackendResult<()> {
        self.inner.delete(n)
    }
    fn list(&self, p: &str) -> BackendResult<Vec<String>> {
        let r = self.inner.list(p);
        if p == "manifest" {
            Self::run(&self.after_list);
        }
        r
    }
    fn sync(&self) -> BackendResult<()> {
        self.inner.sync()
    }
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        Self::run(&self.at_claim);
        self.inner.single_writer()
    }
    fn get_versioned(&self, n: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        self.inner.get_versioned(n)
    }
    fn put_if(&self, n: &str, d: Bytes, c: PutIf) -> BackendResult<ObjectVersion> {
        if n.starts_with("manifest") {
            match self.manifest_mode.swap(MANIFEST_PASSES, Ordering::SeqCst) {
                MANIFEST_FAILS => return Err(timed_out(n)),
                MANIFEST_HELD => self.gate.pass(),
                _ => {}
            }
        }
        if n == "lease" {
            self.lease_puts.fetch_add(1, Ordering::SeqCst);
            if self.renewal_fails.swap(0, Ordering::SeqCst) == 1 {
                let _ = self.inner.put_if(n, d, c)?;
                return Err(timed_out(n));
            }
        }
        self.inner.put_if(n, d, c)
    }
}
