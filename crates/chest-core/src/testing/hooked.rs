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
use crate::backend::{Backend, ObjectVersion, PutIf, SingleWriter};
use crate::error::BackendError;

/// One operation on the store, as the hook sees it. A call on several
/// objects (`put_many`, `get_many`) shows one operation per object, all
/// before any of them is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op<'a> {
    /// A write of the named object (any of the `put` methods).
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
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.check(Op::Put(name))?;
        self.inner.put(name, data)
    }
    fn put_many(&self, objects: Vec<(String, Bytes)>) -> BackendResult<()> {
        for (name, _) in &objects {
            self.check(Op::Put(name))?;
        }
        self.inner.put_many(objects)
    }
    fn put_durable(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.check(Op::Put(name))?;
        self.inner.put_durable(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.check(Op::Get(name))?;
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.check(Op::Get(name))?;
        self.inner.get_range(name, range)
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
    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }
    fn read_cost(&self) -> crate::ReadCost {
        self.inner.read_cost()
    }
    fn counters(&self) -> Vec<(String, u64)> {
        self.inner.counters()
    }
    fn put_parts(&self, name: &str, parts: Vec<Bytes>) -> BackendResult<()> {
        self.check(Op::Put(name))?;
        self.inner.put_parts(name, parts)
    }
    fn put_many_parts(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        for (name, _) in &objects {
            self.check(Op::Put(name))?;
        }
        self.inner.put_many_parts(objects)
    }
    fn packs_large_values(&self) -> bool {
        self.inner.packs_large_values()
    }
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        self.inner.single_writer()
    }
    fn get_versioned(&self, name: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        self.check(Op::Get(name))?;
        self.inner.get_versioned(name)
    }
    fn put_if(&self, name: &str, data: Bytes, condition: PutIf) -> BackendResult<ObjectVersion> {
        self.check(Op::Put(name))?;
        self.inner.put_if(name, data, condition)
    }
}
