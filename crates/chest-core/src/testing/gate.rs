//! [`Gate`]: holds the threads that reach it until the test lets them
//! through, and counts them — for ordering races deterministically, never
//! with sleeps. A hook of a [`Hooked`](crate::testing::hooked::Hooked)
//! backend calls [`Gate::pass`] to hold an operation; a weigher or a
//! serializer can call it to hold a value on its way in or out.
//!
//! ```
//! use std::sync::Arc;
//! use chest_core::testing::gate::Gate;
//!
//! let gate = Gate::closed();
//! let held = std::thread::spawn({
//!     let gate = Arc::clone(&gate);
//!     move || gate.pass() // waits here until released
//! });
//! gate.wait_held(1); // the thread is at the gate: order the race here
//! gate.release();
//! held.join().unwrap();
//! assert_eq!(gate.arrived(), 1);
//! ```

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The one bound on a wait in the tests: it turns a hang into a failure
/// and never orders anything (a gate does).
pub const HANG: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct State {
    /// Every caller waits while this is set.
    closed: bool,
    /// The next caller (one only) waits until [`Gate::release`].
    next: bool,
    /// Calls to [`Gate::release`] so far.
    releases: usize,
    /// Callers so far.
    arrived: usize,
    /// Callers waiting now.
    held: usize,
}

/// Holds the callers of [`Gate::pass`] while closed (or the next one, once
/// armed by [`Gate::hold_next`]), and counts them.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

impl Gate {
    /// An open gate: callers pass (and are counted).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A closed gate: callers wait until [`Gate::release`].
    pub fn closed() -> Arc<Self> {
        let g = Self::new();
        g.hold();
        g
    }

    /// Closes the gate: every caller from now on waits.
    pub fn hold(&self) {
        self.state.lock().unwrap().closed = true;
        self.changed.notify_all();
    }

    /// Holds the next caller only (the others pass), until [`Gate::release`].
    pub fn hold_next(&self) {
        self.state.lock().unwrap().next = true;
        self.changed.notify_all();
    }

    /// Opens the gate: every held caller goes on, and later ones pass.
    pub fn release(&self) {
        let mut s = self.state.lock().unwrap();
        s.closed = false;
        s.next = false;
        s.releases += 1;
        self.changed.notify_all();
    }

    /// A guard that opens the gate when dropped, so that a failed assertion
    /// ends the test instead of hanging it on a held thread.
    pub fn release_on_drop(&self) -> Release<'_> {
        Release(self)
    }

    /// Called by the operation to order: counts it, and waits while the
    /// gate holds it (at most [`HANG`], then panics: a hang is a failure).
    pub fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.arrived += 1;
        let once = std::mem::take(&mut s.next);
        if s.closed || once {
            s.held += 1;
            self.changed.notify_all();
            let release = s.releases;
            let (mut s, timeout) = self
                .changed
                .wait_timeout_while(s, HANG, |s| s.closed || (once && s.releases == release))
                .unwrap();
            s.held -= 1;
            drop(s);
            assert!(!timeout.timed_out(), "a held operation was never released");
        }
    }

    /// Callers so far.
    pub fn arrived(&self) -> usize {
        self.state.lock().unwrap().arrived
    }

    /// Callers held now.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held
    }

    /// Waits until `n` callers have arrived in all.
    pub fn wait_arrived(&self, n: usize) {
        self.wait("the operations never came", |s| s.arrived >= n);
    }

    /// Waits until `n` callers are held at once.
    pub fn wait_held(&self, n: usize) {
        self.wait("the held operations never came", |s| s.held >= n);
    }

    fn wait(&self, what: &str, done: impl Fn(&State) -> bool) {
        let s = self.state.lock().unwrap();
        let (s, timeout) = self
            .changed
            .wait_timeout_while(s, HANG, |s| !done(s))
            .unwrap();
        drop(s);
        assert!(!timeout.timed_out(), "{what}");
    }
}

/// Opens its gate when dropped (see [`Gate::release_on_drop`]).
pub struct Release<'a>(&'a Gate);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}
