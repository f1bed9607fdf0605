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
    Backend, BackendError, BackendResult, Capabilities, GetOptions, GetResult, MemoryBackend,
    ObjectVersion, PutOptions, SingleWriter,
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
    /// [`Capabilities::write_concurrency`] (0: the memory backend's).
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
// batch written through `put_many` reaches `put_opts` and is recorded there.
impl Backend for Shaped {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        inner
            .with_write_concurrency(match self.write_concurrency {
                0 => inner.write_concurrency,
                n => n,
            })
            .with_packs_large_values(self.packs)
    }
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        let record = if opts.durable {
            &self.durable_puts
        } else {
            &self.plain_puts
        };
        record.lock().unwrap().push(name.to_string());
        self.inner.put_opts(name, parts, opts)
    }
    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        self.inner.get_opts(name, opts)
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
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        self.inner.single_writer()
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
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn put_opts(
        &self,
        n: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        if !opts.mode.is_conditional() {
            return self.inner.put_opts(n, parts, opts);
        }
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
                let _ = self.inner.put_opts(n, parts, opts)?;
                return Err(timed_out(n));
            }
        }
        self.inner.put_opts(n, parts, opts)
    }
    fn put_many(&self, o: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        self.inner.put_many(o)
    }
    fn get_opts(&self, n: &str, opts: GetOptions) -> BackendResult<GetResult> {
        let whole = opts == GetOptions::default();
        let r = self.inner.get_opts(n, opts);
        if n == "chest" && whole {
            Self::run(&self.after_marker_read);
        }
        r
    }
    fn get_many(&self, requests: Vec<(String, Option<Range<u64>>)>) -> Vec<BackendResult<Bytes>> {
        self.inner.get_many(requests)
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
    fn counters(&self) -> Vec<(String, u64)> {
        self.inner.counters()
    }
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        Self::run(&self.at_claim);
        self.inner.single_writer()
    }
}
