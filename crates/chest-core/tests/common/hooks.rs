//! Ready-made hooks over [`Hooked`](super::Hooked): gates on the writes and
//! reads of values ([`ValueGates`]), and on the writes of values by the
//! background writers apart from the others' ([`Writes`]).

use std::sync::Arc;

use chest_core::{Backend, Chest, MemoryBackend};

use super::{
    failure, hooked_over, on_thread, value, value_get, value_put, Gate, Switch, LEN, WRITER,
};

/// Every write of a value passes `puts`, every read of one `gets`, whatever
/// the thread: [`Gate::hold_next`] holds the next one, [`Gate::arrived`]
/// counts them.
pub struct ValueGates {
    pub puts: Arc<Gate>,
    pub gets: Arc<Gate>,
}

impl ValueGates {
    /// `store` (clones share its objects) behind the gates.
    pub fn over(store: &MemoryBackend) -> (Arc<Self>, Arc<dyn Backend>) {
        Self::over_backend(Arc::new(store.clone()))
    }

    /// [`ValueGates::over`] any backend.
    pub fn over_backend(inner: Arc<dyn Backend>) -> (Arc<Self>, Arc<dyn Backend>) {
        let gates = Arc::new(Self {
            puts: Gate::new(),
            gets: Gate::new(),
        });
        let g = Arc::clone(&gates);
        let backend = hooked_over(inner, move |op| {
            if value_put(op) {
                g.puts.pass();
            } else if value_get(op) {
                g.gets.pass();
            }
            Ok(())
        });
        (gates, backend)
    }
}

/// Writes of values by the background writers (`chest-writer`) pass
/// `writer`, those of any other thread (a flush, an insert writing a heavy
/// value) pass `others`; once let through, they fail while `fail` is on
/// ("no space left on device").
pub struct Writes {
    pub writer: Arc<Gate>,
    pub others: Arc<Gate>,
    pub fail: Switch,
}

impl Writes {
    /// `inner` behind the gates.
    pub fn over(inner: Arc<dyn Backend>) -> (Arc<Self>, Arc<dyn Backend>) {
        let writes = Arc::new(Self {
            writer: Gate::new(),
            others: Gate::new(),
            fail: Switch::default(),
        });
        let w = Arc::clone(&writes);
        let backend = hooked_over(inner, move |op| {
            if !value_put(op) {
                return Ok(());
            }
            if on_thread(WRITER) {
                w.writer.pass();
            } else {
                w.others.pass();
            }
            if w.fail.is_on() {
                return Err(failure(op, "no space left on device"));
            }
            Ok(())
        });
        (writes, backend)
    }

    /// A fresh memory store behind the gates.
    pub fn new() -> (Arc<Self>, Arc<dyn Backend>) {
        Self::over(Arc::new(MemoryBackend::new()))
    }

    /// Holds the writer, fills a chest of [`open_weighed`](super::open_weighed)
    /// with the 16 values of [`LEN`] that fill its budget, and waits until the
    /// writer holds its first batch (the coldest values, from key 0).
    pub fn fill_with_first_batch_held(&self, c: &Chest<u64, Vec<u8>>) {
        self.writer.hold();
        for k in 0..16 {
            c.insert(k, value(k, LEN)).unwrap();
        }
        self.writer.wait_held(1);
    }

    /// Lets every held write through when dropped (see [`Gate::release_on_drop`]).
    pub fn release_on_drop(&self) -> ReleaseBoth<'_> {
        ReleaseBoth(self)
    }
}

/// Opens both gates of a [`Writes`] when dropped.
pub struct ReleaseBoth<'a>(&'a Writes);

impl Drop for ReleaseBoth<'_> {
    fn drop(&mut self) {
        self.0.writer.release();
        self.0.others.release();
    }
}
