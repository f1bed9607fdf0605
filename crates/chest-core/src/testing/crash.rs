//! [`CrashBackend`]: an in-memory backend that models a machine crash, in the
//! manner of SQLite's crash-test VFS.
//!
//! The backend keeps two states: the *live* one, which every read sees (as a
//! running process does), and the *durable* one, which is what a power loss
//! would leave. Between them is the list of *pending* operations: puts and
//! deletes that completed but were not yet made durable.
//! [`sync`](Backend::sync) makes every pending operation durable;
//! [`put_durable`](BackendExt::put_durable) makes its one object durable at once
//! and leaves the others pending.
//!
//! Every mutating call (a `put`, a `put_durable`, a `delete`, a `sync`, each
//! object of a `put_many`) is one numbered *step*. With
//! [`capture_every_step`](CrashBackend::capture_every_step) the backend takes
//! a [`Snapshot`] (durable state + pending operations) after every step,
//! tagged with the step number and with a *phase*: a number the test sets
//! ([`set_phase`](CrashBackend::set_phase)) to record what it was doing, e.g.
//! which flushes had completed. A snapshot turns into any number of crash
//! [`CrashImage`]s ([`Snapshot::crash`]): for each pending operation, a seeded
//! random [`Fate`] decides what the power loss left of it. An image becomes a
//! fresh [`MemoryBackend`] (or a new [`CrashBackend`]) to reopen a chest on.
//!
//! What a pending operation can become depends on the [`Semantics`]:
//!
//! - [`Semantics::TornFiles`], a local file system whose writes are not
//!   fsynced: a put may be lost, applied, or applied with the object left
//!   empty or cut to a prefix of its bytes (the rename reached the disk, the
//!   file's data did not). A delete is applied or not.
//! - [`Semantics::AtomicObjects`]: every pending operation is lost or applied
//!   whole (a journaling file system that orders data before metadata, or an
//!   object store that acknowledges before replicating).
//! - [`Semantics::DurableObjects`], S3: a completed put or delete is durable
//!   at once; nothing is ever pending, and a crash loses only what was in the
//!   process. This models a crash of the process rather than of the machine.
//!
//! Not modelled: reordering or tearing *within* one object beyond a prefix
//! (sector-level garbage, bit rot); a put that fails or a disk that fills up
//! (see the `faults` tests); ordering constraints between pending operations
//! (each one's fate is chosen independently, the harshest choice); directory
//! metadata as a separate thing (an object is its name and bytes); list
//! consistency lags of eventually consistent stores; and concurrent writers.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::backend::memory::MemoryBackend;
use crate::backend::BackendExt;
use crate::backend::{
    check_name, join_parts, refuse_conditional, refuse_versioned, slice_whole, Backend,
    BackendResult, Capabilities, GetOptions, GetResult, ObjectVersion, PutOptions,
};
use crate::error::BackendError;

/// A tiny, fast, seedable pseudo-random generator (splitmix64): the same seed
/// gives the same sequence on every platform, so a failing case replays.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for tests, and never loops.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `range` (its start if the range is empty).
    pub fn in_range(&mut self, range: Range<u64>) -> u64 {
        range.start + self.below(range.end.saturating_sub(range.start))
    }

    /// `true` with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a crash can leave of the operations that were not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Semantics {
    /// A local file system without fsync of the data: a pending put may be
    /// lost, applied, or applied but left empty or truncated; a pending
    /// delete is applied or not.
    TornFiles,
    /// Every pending operation is lost or applied whole, never torn.
    AtomicObjects,
    /// A completed put or delete is durable at once (S3): nothing is pending,
    /// so a crash image is the live state. Models a crash of the process.
    DurableObjects,
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Semantics::TornFiles => "torn files",
            Semantics::AtomicObjects => "atomic objects",
            Semantics::DurableObjects => "durable objects",
        })
    }
}

/// A completed operation that is not durable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingOp {
    /// `data` was stored under `name`.
    Put {
        /// The object's name.
        name: String,
        /// Its new bytes.
        data: Bytes,
    },
    /// The object `name` was deleted.
    Delete {
        /// The object's name.
        name: String,
    },
}

impl PendingOp {
    /// The name of the object the operation changed.
    pub fn name(&self) -> &str {
        match self {
            PendingOp::Put { name, .. } | PendingOp::Delete { name } => name,
        }
    }
}

impl fmt::Display for PendingOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PendingOp::Put { name, data } => write!(f, "put {name} ({} bytes)", data.len()),
            PendingOp::Delete { name } => write!(f, "delete {name}"),
        }
    }
}

/// What a crash left of one pending operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not applied: the object is as it was before the operation.
    Lost,
    /// Applied whole.
    Applied,
    /// A put whose name reached the disk but whose bytes did not: the object
    /// exists and is empty.
    Empty,
    /// A put of which only the first `n` bytes reached the disk (`n` is less
    /// than the object's length).
    Truncated(usize),
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Lost => f.write_str("lost"),
            Fate::Applied => f.write_str("applied"),
            Fate::Empty => f.write_str("applied, empty"),
            Fate::Truncated(n) => write!(f, "applied, truncated to {n} bytes"),
        }
    }
}

/// One mutating call of a [`CrashBackend`], as recorded in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A `put` (or one object of a `put_many`).
    Put {
        /// The object's name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A `put_durable`.
    PutDurable {
        /// The object's name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A `delete`.
    Delete {
        /// The object's name.
        name: String,
    },
    /// A `sync`.
    Sync,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Put { name, len } => write!(f, "put {name} ({len} bytes)"),
            Step::PutDurable { name, len } => write!(f, "put_durable {name} ({len} bytes)"),
            Step::Delete { name } => write!(f, "delete {name}"),
            Step::Sync => f.write_str("sync"),
        }
    }
}

/// The state of a [`CrashBackend`] right after one step: what was durable,
/// and what was pending. Cheap to keep: object bytes are shared.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Number of the step just done (1 for the first mutating call; 0 for a
    /// snapshot taken before any).
    pub step: u64,
    /// The step just done (`None` for step 0).
    pub last: Option<Step>,
    /// The phase the test had set when the snapshot was taken.
    pub phase: u64,
    /// What a crash may leave of the pending operations.
    pub semantics: Semantics,
    durable: BTreeMap<String, Bytes>,
    pending: Vec<PendingOp>,
}

impl Snapshot {
    /// The durable objects.
    pub fn durable(&self) -> &BTreeMap<String, Bytes> {
        &self.durable
    }

    /// The operations that completed but were not durable, oldest first.
    pub fn pending(&self) -> &[PendingOp] {
        &self.pending
    }

    /// The objects a crash at this point leaves, choosing each pending
    /// operation's fate at random from `seed` (the same seed, the same image).
    pub fn crash(&self, seed: u64) -> CrashImage {
        let mut rng = SplitMix64::new(seed ^ self.step.wrapping_mul(0xD134_2543_DE82_EF95));
        let mut objects = self.durable.clone();
        let mut fates = Vec::with_capacity(self.pending.len());
        for op in &self.pending {
            let fate = match op {
                PendingOp::Put { name, data } => {
                    let fate = self.put_fate(&mut rng, data.len());
                    let kept = match fate {
                        Fate::Lost => None,
                        Fate::Applied => Some(data.clone()),
                        Fate::Empty => Some(Bytes::new()),
                        Fate::Truncated(n) => Some(data.slice(..n.min(data.len()))),
                    };
                    if let Some(bytes) = kept {
                        objects.insert(name.clone(), bytes);
                    }
                    fate
                }
                PendingOp::Delete { name } => {
                    if rng.percent(50) {
                        objects.remove(name);
                        Fate::Applied
                    } else {
                        Fate::Lost
                    }
                }
            };
            fates.push((op.clone(), fate));
        }
        CrashImage {
            step: self.step,
            phase: self.phase,
            seed,
            semantics: self.semantics,
            objects,
            fates,
        }
    }

    /// The objects a crash leaves if every pending operation was applied
    /// whole: what a crash of the process alone (not the machine) leaves.
    pub fn live(&self) -> CrashImage {
        let mut objects = self.durable.clone();
        for op in &self.pending {
            apply(&mut objects, op);
        }
        CrashImage {
            step: self.step,
            phase: self.phase,
            seed: 0,
            semantics: self.semantics,
            objects,
            fates: self
                .pending
                .iter()
                .map(|op| (op.clone(), Fate::Applied))
                .collect(),
        }
    }

    fn put_fate(&self, rng: &mut SplitMix64, len: usize) -> Fate {
        match self.semantics {
            Semantics::DurableObjects => Fate::Applied,
            Semantics::AtomicObjects => {
                if rng.percent(50) {
                    Fate::Applied
                } else {
                    Fate::Lost
                }
            }
            Semantics::TornFiles => match rng.below(6) {
                0 | 1 => Fate::Lost,
                2 | 3 => Fate::Applied,
                4 => Fate::Empty,
                _ if len <= 1 => Fate::Empty,
                // A strict, non-empty prefix.
                _ => Fate::Truncated(rng.in_range(1..len as u64) as usize),
            },
        }
    }
}

/// The objects left by one simulated crash, and how each pending operation
/// fared. Reopen a chest on it with [`to_memory_backend`](Self::to_memory_backend).
#[derive(Debug, Clone)]
pub struct CrashImage {
    /// The step after which the crash happened.
    pub step: u64,
    /// The phase the test had set at that step.
    pub phase: u64,
    /// The seed that chose the fates.
    pub seed: u64,
    /// The semantics of the store that crashed.
    pub semantics: Semantics,
    objects: BTreeMap<String, Bytes>,
    fates: Vec<(PendingOp, Fate)>,
}

impl CrashImage {
    /// The objects the crash left.
    pub fn objects(&self) -> &BTreeMap<String, Bytes> {
        &self.objects
    }

    /// Each pending operation at the crash, oldest first, with what became of it.
    pub fn fates(&self) -> &[(PendingOp, Fate)] {
        &self.fates
    }

    /// Whether some pending put was left empty or truncated.
    pub fn is_torn(&self) -> bool {
        self.fates
            .iter()
            .any(|(_, f)| matches!(f, Fate::Empty | Fate::Truncated(_)))
    }

    /// A new, anonymous [`MemoryBackend`] holding the image's objects.
    pub fn to_memory_backend(&self) -> BackendResult<MemoryBackend> {
        let backend = MemoryBackend::new();
        for (name, data) in &self.objects {
            backend.put(name, data.clone())?;
        }
        Ok(backend)
    }

    /// A new [`CrashBackend`] whose durable state is the image's objects, to
    /// crash again during recovery.
    pub fn to_crash_backend(&self, semantics: Semantics) -> CrashBackend {
        CrashBackend::with_objects(self.objects.clone(), semantics)
    }
}

impl fmt::Display for CrashImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash after step {} (phase {}, seed {:#x}): {} objects",
            self.step,
            self.phase,
            self.seed,
            self.objects.len()
        )?;
        if self.fates.is_empty() {
            return f.write_str(", nothing pending");
        }
        f.write_str("; pending:")?;
        for (op, fate) in &self.fates {
            write!(f, "\n    {op}: {fate}")?;
        }
        Ok(())
    }
}

fn apply(objects: &mut BTreeMap<String, Bytes>, op: &PendingOp) {
    match op {
        PendingOp::Put { name, data } => {
            objects.insert(name.clone(), data.clone());
        }
        PendingOp::Delete { name } => {
            objects.remove(name);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<String, Bytes>,
    durable: BTreeMap<String, Bytes>,
    pending: Vec<PendingOp>,
    step: u64,
    capture: bool,
    snapshots: Vec<Snapshot>,
}

/// An in-memory [`Backend`] that models what a machine crash leaves: see the
/// [module documentation](self).
///
/// ```
/// use std::sync::Arc;
/// use chest_core::testing::crash::{CrashBackend, Semantics};
/// use chest_core::{Backend, ChestBuilder};
///
/// let backend = Arc::new(CrashBackend::new(Semantics::TornFiles));
/// backend.capture_every_step(true);
/// let c = ChestBuilder::<u32, Vec<u8>>::new().open_backend(backend.clone())?;
/// c.insert(1, vec![1; 10])?;
/// backend.set_phase(1); // flush 1 in progress
/// c.close()?;
/// for snapshot in backend.take_snapshots() {
///     let image = snapshot.crash(42);
///     let reopened = ChestBuilder::<u32, Vec<u8>>::new()
///         .open_backend(Arc::new(image.to_memory_backend()?));
///     // ... check it holds nothing, or key 1
/// #   let _ = reopened;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CrashBackend {
    location: String,
    semantics: Semantics,
    phase: Arc<AtomicU64>,
    state: Mutex<State>,
}

impl CrashBackend {
    /// An empty store with the given semantics.
    pub fn new(semantics: Semantics) -> Self {
        Self::with_objects(BTreeMap::new(), semantics)
    }

    /// A store whose durable (and live) state is `objects`, nothing pending.
    pub fn with_objects(objects: BTreeMap<String, Bytes>, semantics: Semantics) -> Self {
        Self {
            location: "crash://".to_string(),
            semantics,
            phase: Arc::default(),
            state: Mutex::new(State {
                live: objects.clone(),
                durable: objects,
                ..State::default()
            }),
        }
    }

    /// What a crash may leave of pending operations.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// When `on`, a [`Snapshot`] is taken after every step from now on,
    /// collected for [`take_snapshots`](Self::take_snapshots).
    pub fn capture_every_step(&self, on: bool) {
        self.state().capture = on;
    }

    /// The snapshots captured so far (emptying the list).
    pub fn take_snapshots(&self) -> Vec<Snapshot> {
        std::mem::take(&mut self.state().snapshots)
    }

    /// A snapshot of the state now (not added to the captured ones).
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        self.snapshot_of(&state, None)
    }

    /// Sets the phase recorded in the snapshots taken from now on.
    pub fn set_phase(&self, phase: u64) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// The phase, shared: a test may hand it to code that sets it.
    pub fn phase_handle(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.phase)
    }

    /// Number of steps (mutating calls) so far.
    pub fn steps(&self) -> u64 {
        self.state().step
    }

    /// Number of operations not yet durable.
    pub fn pending_len(&self) -> usize {
        self.state().pending.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot_of(&self, state: &State, last: Option<Step>) -> Snapshot {
        Snapshot {
            step: state.step,
            last,
            phase: self.phase.load(Ordering::SeqCst),
            semantics: self.semantics,
            durable: state.durable.clone(),
            pending: state.pending.clone(),
        }
    }

    /// Counts a step that was just applied and captures a snapshot if asked.
    fn stepped(&self, state: &mut State, step: Step) {
        state.step += 1;
        if state.capture {
            let snapshot = self.snapshot_of(state, Some(step));
            state.snapshots.push(snapshot);
        }
    }

    /// Records a completed operation: durable at once on durable stores,
    /// pending otherwise.
    fn record(&self, state: &mut State, op: PendingOp) {
        if self.semantics == Semantics::DurableObjects {
            apply(&mut state.durable, &op);
        } else {
            state.pending.push(op);
        }
    }

    fn not_found(&self, name: &str) -> BackendError {
        BackendError::NotFound {
            location: self.location.clone(),
            name: name.to_string(),
        }
    }
}

impl CrashBackend {
    /// A plain write: live at once, durable once synced.
    fn put_plain(&self, name: &str, data: Bytes) {
        let mut state = self.state();
        let len = data.len();
        state.live.insert(name.to_string(), data.clone());
        self.record(
            &mut state,
            PendingOp::Put {
                name: name.to_string(),
                data,
            },
        );
        self.stepped(
            &mut state,
            Step::Put {
                name: name.to_string(),
                len,
            },
        );
    }

    /// A durable write: live and durable at once, whole.
    fn put_durable_now(&self, name: &str, data: Bytes) {
        let mut state = self.state();
        let len = data.len();
        state.live.insert(name.to_string(), data.clone());
        state.durable.insert(name.to_string(), data);
        // Earlier pending operations on this name are superseded: a crash
        // can no longer bring them back over the durable bytes.
        state.pending.retain(|op| op.name() != name);
        self.stepped(
            &mut state,
            Step::PutDurable {
                name: name.to_string(),
                len,
            },
        );
    }
}

impl Backend for CrashBackend {
    fn location(&self) -> &str {
        &self.location
    }

    /// Like the directory it models, a store of torn files packs large
    /// values (so the crash cases cover packed segments of large records).
    fn capabilities(&self) -> Capabilities {
        Capabilities::DEFAULT.with_packs_large_values(self.semantics == Semantics::TornFiles)
    }

    /// One step per object (`put_many` keeps the default: one step per
    /// object of a batch). No conditional writes: a chest trusts its user
    /// to open one writer here.
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        check_name(&self.location, name)?;
        refuse_conditional(&self.location, name, &opts)?;
        let data = join_parts(parts);
        if opts.durable {
            self.put_durable_now(name, data);
        } else {
            self.put_plain(name, data);
        }
        Ok(None)
    }

    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        check_name(&self.location, name)?;
        refuse_versioned(&self.location, name, &opts)?;
        let all = self
            .state()
            .live
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))?;
        Ok(GetResult::data(slice_whole(
            &self.location,
            name,
            all,
            opts.range,
        )?))
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        check_name(&self.location, name)?;
        let mut state = self.state();
        state.live.remove(name);
        self.record(
            &mut state,
            PendingOp::Delete {
                name: name.to_string(),
            },
        );
        self.stepped(
            &mut state,
            Step::Delete {
                name: name.to_string(),
            },
        );
        Ok(())
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        Ok(self
            .state()
            .live
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn sync(&self) -> BackendResult<()> {
        let mut state = self.state();
        let pending = std::mem::take(&mut state.pending);
        for op in &pending {
            apply(&mut state.durable, op);
        }
        self.stepped(&mut state, Step::Sync);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn pending_until_sync() {
        let c = CrashBackend::new(Semantics::AtomicObjects);
        c.capture_every_step(true);
        c.put("a", b("one")).unwrap();
        assert_eq!(c.get("a").unwrap(), b("one"));
        c.sync().unwrap();
        c.delete("a").unwrap();
        assert!(c.get("a").unwrap_err().is_not_found());
        let shots = c.take_snapshots();
        assert_eq!(shots.len(), 3);
        assert_eq!(shots[0].pending().len(), 1);
        assert!(shots[0].durable().is_empty());
        assert_eq!(shots[1].durable().get("a"), Some(&b("one")));
        assert!(shots[1].pending().is_empty());
        assert_eq!(shots[2].pending().len(), 1);
        assert_eq!(shots[2].live().objects().len(), 0);
        // Over many seeds, the pending delete is sometimes applied, sometimes not.
        let kept = (0..64)
            .filter(|&s| shots[2].crash(s).objects().contains_key("a"))
            .count();
        assert!(kept > 0 && kept < 64, "{kept}");
    }

    #[test]
    fn put_durable_survives_and_supersedes() {
        let c = CrashBackend::new(Semantics::TornFiles);
        c.put("m", b("old")).unwrap();
        c.put("x", b("data")).unwrap();
        c.put_durable("m", b("new")).unwrap();
        let shot = c.snapshot();
        assert_eq!(shot.pending().len(), 1);
        for seed in 0..64 {
            let image = shot.crash(seed);
            assert_eq!(image.objects().get("m"), Some(&b("new")));
        }
    }

    #[test]
    fn torn_puts_leave_prefixes() {
        let c = CrashBackend::new(Semantics::TornFiles);
        c.put("a", Bytes::from(vec![7u8; 100])).unwrap();
        let shot = c.snapshot();
        let mut seen = [false; 4];
        for seed in 0..256 {
            let image = shot.crash(seed);
            let fate = image.fates()[0].1;
            let obj = image.objects().get("a");
            match fate {
                Fate::Lost => assert!(obj.is_none()),
                Fate::Applied => assert_eq!(obj.map(Bytes::len), Some(100)),
                Fate::Empty => assert_eq!(obj.map(Bytes::len), Some(0)),
                Fate::Truncated(n) => {
                    assert!(n > 0 && n < 100);
                    assert_eq!(obj.map(Bytes::len), Some(n));
                }
            }
            seen[match fate {
                Fate::Lost => 0,
                Fate::Applied => 1,
                Fate::Empty => 2,
                Fate::Truncated(_) => 3,
            }] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn atomic_never_tears_and_durable_never_pends() {
        let atomic = CrashBackend::new(Semantics::AtomicObjects);
        atomic.put("a", Bytes::from(vec![1u8; 50])).unwrap();
        let shot = atomic.snapshot();
        assert!((0..128).all(|s| !shot.crash(s).is_torn()));
        let durable = CrashBackend::new(Semantics::DurableObjects);
        durable.put("a", b("x")).unwrap();
        assert_eq!(durable.pending_len(), 0);
        assert_eq!(
            durable.snapshot().crash(1).objects().get("a"),
            Some(&b("x"))
        );
    }

    #[test]
    fn phase_and_steps_are_recorded() {
        let c = CrashBackend::new(Semantics::AtomicObjects);
        c.capture_every_step(true);
        c.put_many(vec![("a".into(), vec![b("1")]), ("b".into(), vec![b("2")])])
            .unwrap();
        c.set_phase(7);
        c.sync().unwrap();
        let shots = c.take_snapshots();
        let steps: Vec<_> = shots.iter().map(|s| (s.step, s.phase)).collect();
        assert_eq!(steps, [(1, 0), (2, 0), (3, 7)]);
        assert_eq!(shots[2].last, Some(Step::Sync));
        assert_eq!(c.steps(), 3);
    }
}
