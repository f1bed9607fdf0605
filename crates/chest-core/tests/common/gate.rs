//! A memory backend whose reads of values (`data/…`) can be held and made
//! to fail or panic, for ordering races deterministically — never with
//! sleeps; a bounded wait ([`HANG`]) only turns a hang into a failure.
//!
//! The gate acts on the reads made by one named thread (the *gated*
//! thread: a chest's background reader, or a test's own thread), and can
//! also fail every read.

use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chest_core::{Backend, BackendError, BackendResult, MemoryBackend};

/// How long a test waits for something that must happen before it calls it
/// a hang (a liveness bound, not an ordering device).
pub const HANG: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
pub struct GateState {
    /// Reads of values by the gated thread wait while this is set.
    pub hold: bool,
    /// Reads held now.
    pub blocked: usize,
    /// Reads of values by the gated thread fail.
    pub fail_gated: bool,
    /// Reads of values by any thread fail.
    pub fail_all: bool,
    /// Reads of values by the gated thread panic.
    pub panic_gated: bool,
    /// Reads of values that reached the inner backend.
    pub reads: usize,
}

#[derive(Debug)]
pub struct Gate {
    inner: MemoryBackend,
    /// The name of the gated thread.
    thread: &'static str,
    /// Declares that large values are packed into segments (as a local
    /// directory does), rather than written as objects of their own.
    packs: bool,
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Gate {
    /// A gate on the reads of the thread named `thread`.
    pub fn new(thread: &'static str) -> Arc<Self> {
        Self::with_packing(thread, false)
    }

    /// [`Gate::new`], the backend packing large values into segments if `packs`.
    pub fn with_packing(thread: &'static str, packs: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryBackend::default(),
            thread,
            packs,
            state: Mutex::default(),
            cv: Condvar::new(),
        })
    }

    pub fn set(&self, f: impl FnOnce(&mut GateState)) {
        f(&mut self.state.lock().unwrap());
        self.cv.notify_all();
    }

    /// Reads of values that reached the inner backend so far.
    pub fn reads(&self) -> usize {
        self.state.lock().unwrap().reads
    }

    /// Waits until `n` reads of the gated thread are held.
    pub fn wait_blocked(&self, n: usize) {
        let s = self.state.lock().unwrap();
        let (_s, timeout) = self
            .cv
            .wait_timeout_while(s, HANG, |s| s.blocked < n)
            .unwrap();
        assert!(!timeout.timed_out(), "the held reads never came ({n})");
    }

    fn gate(&self, name: &str) -> BackendResult<()> {
        if !name.starts_with("data/") {
            return Ok(());
        }
        let gated = std::thread::current().name() == Some(self.thread);
        let mut s = self.state.lock().unwrap();
        if gated && s.hold {
            s.blocked += 1;
            self.cv.notify_all();
            s = self.cv.wait_while(s, |s| s.hold).unwrap();
            s.blocked -= 1;
        }
        if gated && s.panic_gated {
            drop(s);
            panic!("the backend panicked on a read of {name}");
        }
        if s.fail_all || (gated && s.fail_gated) {
            return Err(BackendError::Io {
                location: "gate://".into(),
                op: "read",
                path: name.into(),
                source: std::io::Error::other("the disk went away"),
            });
        }
        s.reads += 1;
        Ok(())
    }
}

/// Lets every held read through when dropped, so that a failed assertion
/// ends the test instead of hanging it.
pub struct Release<'a>(pub &'a Gate);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.set(|s| s.hold = false);
    }
}

impl Backend for Gate {
    fn location(&self) -> &str {
        "gate://"
    }
    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.inner.put(name, data)
    }
    fn get(&self, name: &str) -> BackendResult<Bytes> {
        self.gate(name)?;
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        self.gate(name)?;
        self.inner.get_range(name, range)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.inner.list(prefix)
    }
    fn packs_large_values(&self) -> bool {
        self.packs
    }
}
