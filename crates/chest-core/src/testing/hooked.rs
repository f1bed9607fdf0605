//! [`Hooked`]: a backend wrapper that shows every operation to a hook
//! first, which lets it through, fails it, holds it (by blocking on a gate
//! of the test's own) or panics — for tests that order races
//! deterministically and make a store fail on cue, with no sleeps.
//!
//! ```
//! use std::sync::Arc;
//! use chest_core::testing::hooked::{Hooked, Op};
//! use chest_core::{Backend, BackendError, Chest, MemoryBackend};
//!
//! // Every write of a value object fails, as on a full disk.
//! let backend = Hooked::new(Arc::new(MemoryBackend::new()), |op: &Op<'_>| match op {
//!     Op::Put(name) if name.starts_with("data/") => Err(Hooked::failure(op, "disk full")),
//!     _ => Ok(()),
//! });
//! let c: Chest<u32, Vec<u8>> = Chest::builder()
//!     .memory_budget(8 << 10)
//!     .writer_threads(0)
//!     .open_backend(Arc::new(backend))?;
//! c.insert(1, vec![1; 6000])?;
//! let err = c.insert(2, vec![2; 6000]).unwrap_err();  // the spill failed...
//! assert!(err.keys().contains(&"1"));                  // ...naming its keys
//! assert_eq!(*c.get(&1)?.unwrap(), vec![1; 6000]);    // and they stay in memory
//! # Ok::<(), chest_core::Error>(())
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::BackendResult;
use crate::backend::{
    Backend, Capabilities, GetOptions, GetResult, ObjectVersion, PutOptions, SingleWriter,
};
use crate::error::BackendError;

/// One operation on the store, as the hook sees it. A call on several
/// objects (`put_many`, `get_many`) shows one operation per object, all
/// before any of them is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op<'a> {
    /// A write of the named object (`put_opts`, each object of `put_many`).
    Put(&'a str),
    /// A read of the named object, whole or in part.
    Get(&'a str),
    /// A delete of the named object.
    Delete(&'a str),
    /// A listing of the prefix.
    List(&'a str),
    /// [`Backend::sync`].
    Sync,
}

impl Op<'_> {
    /// The object (or prefix) the operation is on, if any.
    pub fn name(&self) -> Option<&str> {
        match *self {
            Op::Put(n) | Op::Get(n) | Op::Delete(n) | Op::List(n) => Some(n),
            Op::Sync => None,
        }
    }
}

/// What the hook answers: `Ok` lets the operation through, an error is
/// what the call returns (nothing is done). To hold an operation, the hook
/// blocks; to panic in the backend, it panics.
pub type Hook = dyn Fn(&Op<'_>) -> BackendResult<()> + Send + Sync;

/// A backend that shows every operation to a hook before doing it on the
/// backend it wraps (see the [module](self)).
pub struct Hooked {
    inner: Arc<dyn Backend>,
    hook: Box<Hook>,
}

impl Hooked {
    /// Wraps `inner`; `hook` sees each operation first.
    pub fn new(
        inner: Arc<dyn Backend>,
        hook: impl Fn(&Op<'_>) -> BackendResult<()> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            hook: Box::new(hook),
        }
    }

    /// An I/O error for `op`, as a local store would report a failure
    /// (`detail`: what failed, e.g. "disk full").
    pub fn failure(op: &Op<'_>, detail: &str) -> BackendError {
        BackendError::Io {
            location: "hooked".to_string(),
            op: "hooked operation",
            path: op.name().unwrap_or("(sync)").to_string(),
            source: std::io::Error::other(detail.to_string()),
        }
    }

    fn check(&self, op: Op<'_>) -> BackendResult<()> {
        (self.hook)(&op)
    }
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Hooked").field(&self.inner).finish()
    }
}

// A layer: the compiler checks that it forwards every method (a default
// would silently weaken the store underneath; see `Backend`'s "Layers").
#[deny(clippy::missing_trait_methods)]
impl Backend for Hooked {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        self.check(Op::Put(name))?;
        self.inner.put_opts(name, parts, opts)
    }
    fn put_many(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        for (name, _) in &objects {
            self.check(Op::Put(name))?;
        }
        self.inner.put_many(objects)
    }
    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        self.check(Op::Get(name))?;
        self.inner.get_opts(name, opts)
    }
    fn get_many(&self, requests: Vec<(String, Option<Range<u64>>)>) -> Vec<BackendResult<Bytes>> {
        let checks: Vec<BackendResult<()>> = requests
            .iter()
            .map(|(name, _)| self.check(Op::Get(name)))
            .collect();
        let passed: Vec<(String, Option<Range<u64>>)> = requests
            .iter()
            .zip(&checks)
            .filter(|(_, c)| c.is_ok())
            .map(|(r, _)| r.clone())
            .collect();
        let mut reads = self.inner.get_many(passed).into_iter();
        checks
            .into_iter()
            .map(|c| match c {
                Ok(()) => reads.next().expect("one read per request let through"),
                Err(e) => Err(e),
            })
            .collect()
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.check(Op::Delete(name))?;
        self.inner.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.check(Op::List(prefix))?;
        self.inner.list(prefix)
    }
    fn sync(&self) -> BackendResult<()> {
        self.check(Op::Sync)?;
        self.inner.sync()
    }
    fn counters(&self) -> Vec<(String, u64)> {
        self.inner.counters()
    }
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        self.inner.single_writer()
    }
}
