//! Write-behind: eviction batches are serialized and written by background
//! writer threads owned by the chest, so the call that evicts (an insert, a
//! load) returns while the backend works.
//!
//! # The bound, and backpressure
//!
//! Values being written stay resident until their batch is placed: they
//! are readable, updatable, and counted in `usage` (and in `inflight`).
//! So the bytes in flight count against the budget, and the budget holds
//! at the return of every call (within one value, as before): eviction
//! starts *ahead* of the budget, when `usage - inflight` passes the high
//! mark `budget - ahead` (`ahead` is one eviction batch, at most a quarter
//! of the budget; none when a batch is more than half the budget, as with
//! budgets of 128 KiB and less), and takes victims down to `high - batch`. While the
//! writers keep up, no call waits. When they fall behind, `usage` reaches
//! the budget: the call that finds `usage > budget` with bytes in flight
//! waits on the `placed` condition variable until a batch is placed (then
//! looks again), and stops waiting when nothing is in flight or a batch
//! submitted since it began failed (its values stay in memory; the error,
//! recorded before the batch counts as placed, is reported by that call). So the bytes
//! in flight are at most the budget, memory never grows without bound, and
//! no write is dropped.
//!
//! # Batches and errors
//!
//! A batch is numbered when it is submitted and stays in `unplaced` until
//! its outcomes are placed ([`Inner::place_all`]): `flush` waits for every
//! batch submitted before it began ([`Inner::wait_written`]), so its
//! manifest is taken after them and names no object whose write has not
//! completed. A failed write (or a serializer or backend panic, caught on
//! the writer thread) leaves its values resident and dirty, back in the
//! eviction queue (or pinned, if they cannot be serialized), and its error,
//! naming the key, waits in `errors` for the next call that returns errors
//! of the chest's writes: `insert` and the other writing calls, `flush`,
//! `close`. A flush that writes those values itself and commits still
//! returns them (the store failed; the caller must hear of it), and the
//! flush after it returns `Ok` if nothing failed since.
//!
//! # Threads
//!
//! Up to `Config::writers` threads (default 1; 2 on a backend with a
//! `write_concurrency` above 1), started when the first
//! batch is submitted; with 0, or if a thread cannot be started, the
//! evicting call writes its batch itself. A writer holds an `Arc` of the
//! chest's [`Inner`]; the [`Chest`](crate::Chest)'s drop (after its flush)
//! stops them, cancels the batches still queued (their values stay in
//! memory, as after a failed write) and joins them, so no thread outlives
//! its chest and none ever holds the last `Arc`.
//!
//! # Locks
//!
//! `WriteBehind::state` is a leaf: nothing else is locked while it is held.
//! A writer places outcomes under the shard locks (as any evicting call
//! did before), then takes `state` to mark the batch placed and wake the
//! waiters. A waiter checks `usage`/`inflight` while holding `state`, and
//! every placement that frees memory takes `state` before notifying, so a
//! wake-up between the check and the wait cannot be missed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, MutexGuard, PoisonError};

use crate::config::Key;
use crate::engine::crew::next_job;
use crate::engine::guard::panic_message;
use crate::engine::inner::Inner;
use crate::engine::locks::join;
use crate::engine::write_queue::{Job, Outcome, State, Victim};
use crate::error::{Error, Result};
use crate::map::budget::Marks;
use crate::value::serializer::Serializer;

/// The name of the writer threads.
pub(crate) const WRITER_THREAD: &str = "chest-writer";

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// The number of writer threads (resolved when the chest is made).
    fn writers(&self) -> usize {
        self.config.writers.unwrap_or(1)
    }

    /// Where eviction starts and where it stops (see [`crate::map::budget::marks`]).
    pub(crate) fn marks(&self) -> Marks {
        self.budget.marks(
            self.writers(),
            self.store.backend().capabilities().write_concurrency,
        )
    }

    /// Keeps memory within the budget: spills the coldest values when
    /// memory taken less what is on its way out passes the high mark, and,
    /// while memory taken is over the budget and writes are in flight,
    /// waits for them (backpressure). Errors of the writes are kept for
    /// [`Inner::report`]. Called with no lock held.
    pub(crate) fn enforce_budget(&self) {
        let b = &self.budget;
        let Marks { high, low } = self.marks();
        if b.unfreed() <= high && b.fits(0) {
            return;
        }
        // Batches from this one on that fail end the wait: their values stay
        // in memory, and retrying at once would fail again.
        let since = self.wb.state().next_seq;
        loop {
            if b.unfreed() > high {
                // Room reserved for loads on their way counts as taken.
                // Clean values go only as far as the budget needs.
                let victims = self.pick_victims(low.saturating_sub(b.reserved()), b.limit());
                if !victims.is_empty() {
                    self.submit(victims);
                }
            }
            let st = self.wb.state();
            // Nothing in flight: a batch whose values are placed counts
            // until it is marked placed, with its errors kept. (Loads on
            // their way are not waited for: a read ahead must not hold up
            // an insert; room was made for them.)
            let idle = b.inflight() == 0 && st.unplaced.is_empty();
            let failed = st.last_failed.is_some_and(|seq| seq >= since);
            if b.fits(0) || idle || failed {
                return;
            }
            // The writers are behind: wait for a batch to be placed.
            self.wait_placed(st, tracing::trace_span!("chest.backpressure"));
        }
    }

    /// Reserves room for `need` bytes of values about to be loaded together
    /// (a chunk of a prefetch or a read-ahead; see [`load_estimate`](crate::engine::load::load_estimate)), so
    /// that the values in memory plus those on their way stay within the
    /// budget ([`Budget::fits`](crate::map::budget::Budget::fits)). Evicts the
    /// coldest values for it, and waits (on this thread) while that is not
    /// enough and something on its way will free room or settle: a batch
    /// being written, or another chunk's reservation being installed.
    ///
    /// When nothing is on its way and there is still no room (every value
    /// in memory pinned or being loaded, or a write failed since this call
    /// began): a chunk of several values is refused (`false`: the caller
    /// loads it one value at a time), a single value (`one`) is reserved
    /// anyway — the one value per thread the budget allows beyond it, as a
    /// `get` miss takes. Every reservation is given back with
    /// [`Inner::unreserve`].
    pub(crate) fn reserve_load(&self, need: usize, one: bool) -> bool {
        let b = &self.budget;
        let high = self.marks().high;
        let since = self.wb.state().next_seq;
        loop {
            // Room under the high mark, so the eviction after the load has
            // nothing to do; when the loads on their way do not fit under
            // it, room under the budget (what they need, and no more).
            let want = b.reserved().saturating_add(need);
            let target = if want <= high {
                high - want
            } else {
                b.limit().saturating_sub(want)
            };
            if b.staying() > target {
                let victims = self.pick_victims(target, b.limit().saturating_sub(need));
                if !victims.is_empty() {
                    self.submit(victims);
                }
            }
            let st = self.wb.state();
            // Decided under `state`: two reservations cannot both take the
            // last room, and whatever frees room or settles a reservation
            // takes it before it notifies.
            if b.try_reserve(need) {
                return true;
            }
            let pending = b.inflight() > 0 || !st.unplaced.is_empty() || b.reserved() > 0;
            let failed = st.last_failed.is_some_and(|seq| seq >= since);
            if !pending || failed {
                if one {
                    b.force_reserve(need);
                }
                return one;
            }
            self.wait_placed(st, tracing::trace_span!("chest.load_room"));
        }
    }

    /// Waits once, in `span`, for something that frees room or settles a
    /// reservation: a batch placed, a reservation given back (each takes
    /// `state` before it notifies, so one between the caller's check, made
    /// holding `st`, and this wait is not missed).
    fn wait_placed(&self, st: MutexGuard<'_, State<K, V>>, span: tracing::Span) {
        let _entered = span.enter();
        drop(
            self.wb
                .placed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// Gives back `bytes` of a reservation made with
    /// [`Inner::reserve_load`] (the values are installed, or given up) and
    /// wakes the callers waiting for room.
    pub(crate) fn unreserve(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.budget.unreserve(bytes);
        self.wb.wake();
    }

    /// Hands a batch to the writers (or writes it now, if there are none).
    pub(crate) fn submit(&self, victims: Vec<Victim<K, V>>) {
        let mut st = self.wb.state();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.unplaced.insert(seq);
        let job = Job { seq, victims };
        if self.writers() == 0 || st.crew.stopping() {
            drop(st);
            return self.run_job(job);
        }
        let me = &self.me;
        let unstarted = st.crew.push(job, self.writers(), WRITER_THREAD, || {
            me.upgrade().map(|me| move || me.writer_loop())
        });
        drop(st);
        match unstarted {
            // No writer: this thread writes the batch.
            Some(job) => self.run_job(job),
            None => self.wb.work.notify_one(),
        }
    }

    /// A writer thread: writes batches until the chest stops it.
    fn writer_loop(self: Arc<Self>) {
        while let Some(job) = next_job(self.wb.state(), &self.wb.work, |st| &mut st.crew) {
            self.run_job(job);
        }
    }

    /// Writes and places one batch; keeps its errors for the caller. A
    /// panic (of a backend: serializer panics are caught closer) is one of
    /// them; the batch's guard has put its values back as not written.
    fn run_job(&self, job: Job<K, V>) {
        let first = job.victims.first().map(|v| format!("{:?}", v.key));
        let errors = catch_unwind(AssertUnwindSafe(|| self.write_victims(job.victims, true)))
            .unwrap_or_else(|payload| {
                let error = Error::Panicked {
                    what: "backend",
                    key: first.unwrap_or_default(),
                    message: panic_message(&*payload),
                };
                tracing::warn!(error = %error, "spill");
                crate::stats::Counters::add(&self.counters.errors, 1);
                vec![error]
            });
        self.finish_job(job.seq, errors);
    }

    /// Marks batch `seq` placed, keeps its errors, wakes the waiters.
    fn finish_job(&self, seq: u64, errors: Vec<Error>) {
        let mut st = self.wb.state();
        st.unplaced.remove(&seq);
        if !errors.is_empty() {
            st.last_failed = st.last_failed.max(Some(seq));
            self.wb.keep_errors(&mut st, errors);
        }
        drop(st);
        self.wb.placed.notify_all();
    }

    /// Waits until every batch submitted before this call is placed.
    pub(crate) fn wait_written(&self) {
        let mut st = self.wb.state();
        let before = st.next_seq;
        while st.unplaced.first().is_some_and(|&seq| seq < before) {
            st = self
                .wb
                .placed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether no batch is queued or being written (for the invariant check).
    pub(crate) fn writes_idle(&self) -> bool {
        self.wb.state().unplaced.is_empty()
    }

    /// The errors of background writes not yet reported (and forgets them).
    pub(crate) fn take_errors(&self) -> Vec<Error> {
        self.wb.take_errors()
    }

    /// Returns the errors of background writes not yet reported.
    pub(crate) fn report(&self) -> Result<()> {
        join(self.take_errors())
    }

    /// Stops the writers: batches still queued are cancelled (their values
    /// stay in memory, dirty), the one being written completes, and the
    /// threads are joined. Called by the chest's drop, after its flush.
    pub(crate) fn stop_writers(&self) {
        let (threads, queued) = self.wb.state().crew.stop();
        self.wb.work.notify_all();
        for job in queued {
            let outcomes = job.victims.iter().map(|_| Outcome::WriteFailed).collect();
            self.place_all(job.victims, outcomes, true);
            self.finish_job(job.seq, Vec::new());
        }
        for thread in threads {
            // A writer's panics are caught in `run_job`.
            let _ = thread.join();
        }
    }
}
