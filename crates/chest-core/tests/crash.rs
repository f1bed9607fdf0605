//! Randomized crash test (after SQLite's crash VFS and redb's crash tests).
//!
//! Each case runs a random sequence of inserts, overwrites, updates, removes,
//! reads, flushes and reopens on a chest over a [`CrashBackend`], with a small
//! memory budget so values spill, both packed into segments and as objects of
//! their own. A model `HashMap` follows along, and every `flush` (and the
//! flush of `close` or drop) records the model's state. The backend captures
//! its state after every mutating call; each of those is turned into a crash
//! image (a random fate for every write not yet durable) and a chest is
//! reopened on it. The reopened chest must open, every value must read back,
//! and its contents must equal the state of the last flush that had
//! completed, or of the flush in progress at the crash. On a sample of the
//! images, the recovered chest is then closed and opened once more and must
//! still hold the same; on some of those, recovery itself runs on a crash
//! backend and a crash after each of its steps must leave the recovered
//! contents too.
//!
//! Three stores are modelled ([`Semantics`]): a file system whose unsynced
//! writes may be lost or torn, one whose writes are lost or applied whole,
//! and an S3-like store where every completed write is durable (a crash of
//! the process only).
//!
//! Environment: `CHEST_CRASH_CASES` (cases per semantics; by default 500
//! torn, 350 atomic, 150 durable),
//! `CHEST_CRASH_SEED` (run that one seed, printing every failure),
//! `CHEST_CRASH_IMAGES` (crash images made of each step, default 1, or 16
//! when replaying one seed),
//! `CHEST_CRASH_SHOW` (failures printed in full per test, default 3).
//!
//! A seed replays the same operations and the same crash fates, but the
//! chest seeds its hash tables at random in each process, so its eviction
//! order, and thus the exact backend steps, can differ from run to run. So a
//! replay of one seed tries 16 fates per step: a failure of a seed shows
//! again, if not always at the same step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use chest_core::testing::crash::{CrashBackend, CrashImage, Semantics, Snapshot, SplitMix64};
use chest_core::testing::noise;
use chest_core::{Backend, BackendError, Chest, ChestBuilder, Error, Raw};

type Model = HashMap<u64, Vec<u8>>;
/// The chest under test: raw bytes, so that debug builds spend their time on
/// the store rather than on serializing.
type TestChest = Chest<u64, Vec<u8>, Raw>;

/// Keys are drawn from `0..KEYS`, so they get overwritten and removed.
const KEYS: u64 = 16;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The chest's tuning for one case.
#[derive(Debug, Clone, Copy)]
struct Params {
    budget: usize,
    large: usize,
    segment: usize,
    shards: usize,
}

impl Params {
    fn random(rng: &mut SplitMix64) -> Self {
        Self {
            budget: rng.in_range(1024..6 << 10) as usize,
            large: rng.in_range(128..1024) as usize,
            // The builder's smallest segment.
            segment: 4 << 10,
            shards: 1 << rng.below(4),
        }
    }

    fn open(&self, backend: Arc<dyn Backend>) -> chest_core::Result<TestChest> {
        ChestBuilder::<u64, Vec<u8>>::new()
            .memory_budget(self.budget)
            .large_value_bytes(self.large)
            .segment_bytes(self.segment)
            .shards(self.shards)
            .serializer(Raw)
            .open_backend(backend)
    }
}

/// A value: small (packed), medium, large (an object of its own), or heavier
/// than the whole budget (written at once).
fn value(rng: &mut SplitMix64, p: &Params) -> Vec<u8> {
    let len = match rng.below(100) {
        0..40 => rng.below(64),
        40..70 => rng.in_range(64..p.large as u64),
        70..95 => rng.in_range(p.large as u64..3 * p.large as u64),
        _ => rng.in_range(p.budget as u64..p.budget as u64 + 2048),
    };
    noise(rng.next_u64(), len as usize)
}

/// A change made by `update`, applied alike to the chest and the model.
#[derive(Debug, Clone)]
enum Change {
    Append(Vec<u8>),
    Halve,
    Flip(usize),
    Replace(Vec<u8>),
}

impl Change {
    fn apply(&self, v: &mut Vec<u8>) {
        match self {
            Change::Append(more) => v.extend_from_slice(more),
            Change::Halve => v.truncate(v.len() / 2),
            Change::Flip(at) => {
                if !v.is_empty() {
                    let i = at % v.len();
                    v[i] ^= 0xA5;
                }
            }
            Change::Replace(new) => v.clone_from(new),
        }
    }
}

/// The phase a case sets on the backend: `2 × completed flushes`, plus one
/// while a flush is in progress.
fn candidates(phase: u64, flushes: &[Model]) -> Vec<&Model> {
    let done = (phase / 2) as usize;
    let mut c = vec![&flushes[done]];
    if phase % 2 == 1 {
        c.push(&flushes[done + 1]);
    }
    c
}

/// One run of operations; what it leaves to check.
struct Run {
    params: Params,
    snapshots: Vec<Snapshot>,
    /// The model at each flush; `[0]` is the empty chest.
    flushes: Vec<Model>,
    ops: usize,
    /// Values spilled (by every chest of the run).
    spills: u64,
}

/// A case's run failed before any crash (a bug without a crash).
fn live_failure(seed: u64, what: String) -> Failure {
    Failure {
        seed,
        step: 0,
        kind: "live: error or wrong result (no crash)".into(),
        detail: what,
    }
}

fn flush_with(
    backend: &CrashBackend,
    flushes: &mut Vec<Model>,
    model: &Model,
    f: impl FnOnce() -> chest_core::Result<()>,
) -> chest_core::Result<()> {
    let done = flushes.len() as u64 - 1;
    flushes.push(model.clone());
    backend.set_phase(2 * done + 1);
    let r = f();
    backend.set_phase(2 * (done + 1));
    r
}

fn run(seed: u64, semantics: Semantics) -> Result<Run, Failure> {
    let mut rng = SplitMix64::new(seed);
    let p = Params::random(&mut rng);
    let backend = Arc::new(CrashBackend::new(semantics));
    backend.capture_every_step(true);
    let fail = |what: String| live_failure(seed, what);
    let mut chest = Some(
        p.open(backend.clone())
            .map_err(|e| fail(format!("open: {e}")))?,
    );
    let mut model = Model::new();
    let mut flushes = vec![Model::new()];
    let mut spills = 0;
    let ops = rng.in_range(8..40) as usize;
    for i in 0..ops {
        let Some(c) = chest.as_ref() else {
            unreachable!("the chest is reopened at once")
        };
        let existing = |rng: &mut SplitMix64, model: &Model| {
            let mut keys: Vec<u64> = model.keys().copied().collect();
            keys.sort_unstable();
            if keys.is_empty() || rng.percent(15) {
                rng.below(KEYS)
            } else {
                keys[rng.below(keys.len() as u64) as usize]
            }
        };
        let op = rng.below(100);
        match op {
            // insert (new key or overwrite)
            0..35 => {
                let k = rng.below(KEYS);
                let v = value(&mut rng, &p);
                model.insert(k, v.clone());
                c.insert(k, v)
                    .map_err(|e| fail(format!("op {i}: insert {k}: {e}")))?;
            }
            // overwrite a present key
            35..45 => {
                let k = existing(&mut rng, &model);
                let v = value(&mut rng, &p);
                model.insert(k, v.clone());
                c.insert(k, v)
                    .map_err(|e| fail(format!("op {i}: overwrite {k}: {e}")))?;
            }
            // update in place
            45..60 => {
                let k = existing(&mut rng, &model);
                let change = match rng.below(4) {
                    0 => Change::Append(noise(rng.next_u64(), rng.below(p.large as u64) as usize)),
                    1 => Change::Halve,
                    2 => Change::Flip(rng.below(1 << 16) as usize),
                    _ => Change::Replace(value(&mut rng, &p)),
                };
                let present = model.get_mut(&k).map(|v| change.apply(v)).is_some();
                let got = c
                    .update(&k, |v| change.apply(v))
                    .map_err(|e| fail(format!("op {i}: update {k}: {e}")))?;
                if got.is_some() != present {
                    return Err(fail(format!(
                        "op {i}: update {k} found it {}, the model {}",
                        got.is_some(),
                        present
                    )));
                }
            }
            // remove
            60..72 => {
                let k = existing(&mut rng, &model);
                let present = model.remove(&k).is_some();
                let got = c
                    .remove(&k)
                    .map_err(|e| fail(format!("op {i}: remove {k}: {e}")))?;
                if got != present {
                    return Err(fail(format!(
                        "op {i}: remove {k} returned {got}, the model {present}"
                    )));
                }
            }
            // read (loads spilled values, evicts others)
            72..84 => {
                let k = existing(&mut rng, &model);
                let got = c
                    .get(&k)
                    .map_err(|e| fail(format!("op {i}: get {k}: {e}")))?;
                if got.as_deref() != model.get(&k) {
                    return Err(fail(format!("op {i}: get {k} differs from the model")));
                }
            }
            // flush
            84..96 => flush_with(&backend, &mut flushes, &model, || c.flush())
                .map_err(|e| fail(format!("op {i}: flush: {e}")))?,
            // close (or drop) and reopen: a clean restart
            _ => {
                let Some(c) = chest.take() else {
                    unreachable!()
                };
                spills += c.stats().spills;
                let close = rng.percent(50);
                flush_with(&backend, &mut flushes, &model, || {
                    if close {
                        c.close()
                    } else {
                        drop(c);
                        Ok(())
                    }
                })
                .map_err(|e| fail(format!("op {i}: close: {e}")))?;
                let c = p
                    .open(backend.clone())
                    .map_err(|e| fail(format!("op {i}: reopen: {e}")))?;
                if c.len() != model.len() {
                    return Err(fail(format!(
                        "op {i}: reopened with {} keys, the model has {}",
                        c.len(),
                        model.len()
                    )));
                }
                chest = Some(c);
            }
        }
    }
    // The end: close (or drop), which flushes too.
    if let Some(c) = chest.take() {
        spills += c.stats().spills;
        let close = rng.percent(50);
        flush_with(&backend, &mut flushes, &model, || {
            if close {
                c.close()
            } else {
                drop(c);
                Ok(())
            }
        })
        .map_err(|e| fail(format!("close: {e}")))?;
    }
    Ok(Run {
        params: p,
        snapshots: backend.take_snapshots(),
        flushes,
        ops,
        spills,
    })
}

/// A failed check, with what is needed to replay it.
#[derive(Debug)]
struct Failure {
    seed: u64,
    step: u64,
    kind: String,
    detail: String,
}

/// The kind of an error, for the summary.
fn error_kind(e: &Error) -> String {
    match e {
        Error::Manifest { .. } => "manifest error".into(),
        Error::Corrupt { detail, .. } if detail.contains("missing") => "missing object".into(),
        Error::Corrupt { .. } => "corrupt record (checksum)".into(),
        Error::Deserialize { .. } => "undecodable value".into(),
        Error::Backend(BackendError::NotFound { .. }) => "missing object".into(),
        Error::Backend(BackendError::RangeOutOfBounds { .. }) => "range out of bounds".into(),
        Error::Backend(_) => "backend error".into(),
        Error::Read { source, .. } => error_kind(source),
        Error::Key { .. } => "undecodable key".into(),
        Error::Many(errors) => errors.first().map_or("no error".into(), error_kind),
        other => format!("{other:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("other")
            .to_string(),
    }
}

/// What the reopened chest holds; every read must succeed.
fn read_all(c: &TestChest, when: &str) -> Result<Model, (String, String)> {
    let mut keys = c.keys();
    keys.sort_unstable();
    if keys.len() != c.len() {
        return Err((
            format!("{when}: len differs from keys"),
            format!("len {} but {} keys", c.len(), keys.len()),
        ));
    }
    let mut got = Model::new();
    for k in keys {
        match c.get(&k) {
            Ok(Some(v)) => {
                got.insert(k, v.to_vec());
            }
            Ok(None) => {
                return Err((
                    format!("{when}: listed key absent"),
                    format!("key {k} is listed but get gives None"),
                ))
            }
            Err(e) => {
                return Err((
                    format!("{when}: read: {}", error_kind(&e)),
                    format!("get {k}: {e}"),
                ))
            }
        }
    }
    Ok(got)
}

/// How `got` differs from `want`, in a few lines.
fn diff(got: &Model, want: &Model) -> String {
    let mut out = String::new();
    let keys: BTreeMap<u64, ()> = got.keys().chain(want.keys()).map(|&k| (k, ())).collect();
    for &k in keys.keys() {
        match (got.get(&k), want.get(&k)) {
            (Some(_), None) => {
                let _ = write!(out, " +{k}");
            }
            (None, Some(w)) => {
                let _ = write!(out, " -{k}({}B)", w.len());
            }
            (Some(g), Some(w)) if g != w => {
                let _ = write!(out, " ~{k}({}B, want {}B)", g.len(), w.len());
            }
            _ => {}
        }
    }
    out
}

fn classify(got: &Model, want: &Model) -> &'static str {
    let missing = want.keys().any(|k| !got.contains_key(k));
    let extra = got.keys().any(|k| !want.contains_key(k));
    let changed = got.iter().any(|(k, v)| want.get(k).is_some_and(|w| w != v));
    match (missing, extra, changed) {
        _ if got.is_empty() => "contents: everything lost",
        (true, false, false) => "contents: keys lost",
        (false, true, false) => "contents: removed keys back",
        (false, false, true) => "contents: wrong values",
        _ => "contents: mixed state",
    }
}

/// How hard an image is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Reopen, read every value, compare.
    Once,
    /// Then close, open again and compare: recovery's own writes are durable.
    Twice,
    /// As `Twice`, with recovery (open, reads, close) on a crash backend
    /// whose every step is crashed in turn: a crash during recovery loses
    /// nothing either.
    CrashInRecovery,
}

/// A failed check: its kind (for the summary) and details.
type CheckError = (String, String);

/// Opens a chest on `backend` and reads all of it.
fn open_and_read(
    backend: Arc<dyn Backend>,
    p: &Params,
    when: &str,
) -> Result<(TestChest, Model), CheckError> {
    let c = p
        .open(backend)
        .map_err(|e| (format!("{when}: open: {}", error_kind(&e)), e.to_string()))?;
    let got = read_all(&c, when)?;
    Ok((c, got))
}

/// Reopens a chest on `image` and checks it against the candidates.
fn check(image: &CrashImage, p: &Params, want: &[&Model], depth: Depth) -> Result<(), CheckError> {
    let crash = match depth {
        Depth::CrashInRecovery => {
            let crash = Arc::new(image.to_crash_backend(image.semantics));
            crash.capture_every_step(true);
            Some(crash)
        }
        Depth::Once | Depth::Twice => None,
    };
    let backend: Arc<dyn Backend> = match &crash {
        Some(crash) => crash.clone(),
        None => Arc::new(
            image
                .to_memory_backend()
                .map_err(|e| ("image".to_string(), e.to_string()))?,
        ),
    };
    let (c, got) = open_and_read(Arc::clone(&backend), p, "reopen")?;
    if !want.iter().any(|w| **w == got) {
        let mut detail = String::new();
        for (w, name) in want
            .iter()
            .zip(["last completed flush", "flush in progress"])
        {
            let _ = write!(
                detail,
                "\n    vs {name} ({} keys):{}",
                w.len(),
                diff(&got, w)
            );
        }
        return Err((classify(&got, want[want.len() - 1]).to_string(), detail));
    }
    if depth == Depth::Once {
        return Ok(());
    }
    c.close().map_err(|e| {
        (
            format!("close after recovery: {}", error_kind(&e)),
            e.to_string(),
        )
    })?;
    if let Some(crash) = &crash {
        crash.capture_every_step(false);
    }
    let (again, got_again) = open_and_read(backend, p, "second open")?;
    drop(again);
    if got_again != got {
        return Err((
            "second open differs".into(),
            format!("\n    vs first reopen:{}", diff(&got_again, &got)),
        ));
    }
    let Some(crash) = crash else {
        return Ok(());
    };
    for snapshot in crash.take_snapshots() {
        let second = snapshot.crash(image.seed.rotate_left(17) ^ 0x5EED);
        let last = snapshot
            .last
            .as_ref()
            .map_or(String::new(), ToString::to_string);
        let context = |detail: String| {
            format!(
                "{detail}\n  during recovery, after its step {}: {last}\n  second {second}",
                snapshot.step
            )
        };
        let backend = Arc::new(
            second
                .to_memory_backend()
                .map_err(|e| ("image".to_string(), e.to_string()))?,
        );
        let (c, got_after) = open_and_read(backend, p, "crash in recovery")
            .map_err(|(kind, detail)| (kind, context(detail)))?;
        drop(c);
        if got_after != got {
            return Err((
                format!("crash in recovery: {}", classify(&got_after, &got)),
                context(format!(
                    "\n    vs the recovered state:{}",
                    diff(&got_after, &got)
                )),
            ));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    cases: u64,
    ops: u64,
    steps: u64,
    flushes: u64,
    spills: u64,
    images: u64,
    torn_images: u64,
    /// Images identical to the one checked just before.
    skipped: u64,
    /// Images also closed and reopened a second time.
    twice: u64,
    /// Images whose recovery was crashed at every step.
    recovery_crashes: u64,
    failures: Vec<Failure>,
}

fn run_cases(test: &str, semantics: Semantics, default_cases: u64, salt: u64) {
    let start = Instant::now();
    let one = env_u64("CHEST_CRASH_SEED");
    let cases = env_u64("CHEST_CRASH_CASES").unwrap_or(default_cases);
    let per_step = match semantics {
        // Nothing is ever pending: every image of a step is the same.
        Semantics::DurableObjects => 1,
        Semantics::TornFiles | Semantics::AtomicObjects => {
            // A replay tries more fates: see the top of the file.
            let default = if one.is_some() { 16 } else { 1 };
            env_u64("CHEST_CRASH_IMAGES").unwrap_or(default).max(1)
        }
    };
    let show = if one.is_some() {
        usize::MAX
    } else {
        env_u64("CHEST_CRASH_SHOW").unwrap_or(3) as usize
    };
    let seeds: Vec<u64> = match one {
        Some(seed) => vec![seed],
        None => (0..cases).collect(),
    };
    let mut t = Tally::default();
    for seed in seeds {
        t.cases += 1;
        let run = match run(seed, semantics) {
            Ok(run) => run,
            Err(f) => {
                t.failures.push(f);
                continue;
            }
        };
        t.ops += run.ops as u64;
        t.steps += run.snapshots.len() as u64;
        t.spills += run.spills;
        t.flushes += run.flushes.len() as u64 - 1;
        for variant in 0..per_step {
            let image_seed = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt ^ (variant << 48);
            let mut previous: Option<CrashImage> = None;
            for snapshot in &run.snapshots {
                let image = snapshot.crash(image_seed);
                // The same objects in the same phase were just checked (e.g.
                // after a `sync` of a store where nothing is pending).
                if previous
                    .as_ref()
                    .is_some_and(|p| p.phase == image.phase && p.objects() == image.objects())
                {
                    t.skipped += 1;
                    continue;
                }
                t.images += 1;
                t.torn_images += u64::from(image.is_torn());
                let want = candidates(snapshot.phase, &run.flushes);
                // Opening more than once costs: check recovery on a sample
                // (chosen from the seed and step, so that a replay does the same).
                let depth = match (seed ^ variant).wrapping_add(snapshot.step) % 8 {
                    0 => Depth::CrashInRecovery,
                    1 | 2 => Depth::Twice,
                    _ => Depth::Once,
                };
                t.twice += u64::from(depth != Depth::Once);
                t.recovery_crashes += u64::from(depth == Depth::CrashInRecovery);
                if let Err((kind, detail)) = check(&image, &run.params, &want, depth) {
                    let last = snapshot
                        .last
                        .as_ref()
                        .map_or(String::new(), ToString::to_string);
                    t.failures.push(Failure {
                        seed,
                        step: snapshot.step,
                        kind,
                        detail: format!(
                            "{detail}\n  step {}: {last}\n  {image}\n  chest: {:?}",
                            snapshot.step, run.params
                        ),
                    });
                }
                previous = Some(image);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut kinds: BTreeMap<&str, (usize, &Failure)> = BTreeMap::new();
    for f in &t.failures {
        kinds.entry(f.kind.as_str()).or_insert((0, f)).0 += 1;
    }
    for f in t.failures.iter().take(show) {
        eprintln!(
            "FAILURE [{semantics}] seed {} step {}: {}: {}\n  replay: CHEST_CRASH_SEED={} cargo test -p chest-core --features testing --test crash {test}",
            f.seed, f.step, f.kind, f.detail, f.seed
        );
    }
    for (kind, (n, f)) in &kinds {
        eprintln!(
            "  [{semantics}] {n:>6} × {kind} (e.g. seed {} step {})",
            f.seed, f.step
        );
    }
    let failed_seeds: BTreeSet<u64> = t.failures.iter().map(|f| f.seed).collect();
    eprintln!(
        "crash [{semantics}]: {} cases ({} ops, {} flushes, {} spills, {} backend steps); \
         {} images checked ({} torn, {} reopened twice, {} with every recovery step crashed, \
         {} duplicates skipped); failures: {} (in {} cases); {secs:.1} s",
        t.cases,
        t.ops,
        t.flushes,
        t.spills,
        t.steps,
        t.images,
        t.torn_images,
        t.twice,
        t.recovery_crashes,
        t.skipped,
        t.failures.len(),
        failed_seeds.len()
    );
    assert!(
        t.failures.is_empty(),
        "[{semantics}] {} crash images failed their check (in {} of {} cases); see above",
        t.failures.len(),
        failed_seeds.len(),
        t.cases
    );
}

/// A local directory whose writes are not fsynced: puts may be lost, or left
/// empty or truncated.
#[test]
fn crash_torn_files() {
    run_cases("crash_torn_files", Semantics::TornFiles, 500, 1);
}

/// Pending writes are lost or applied whole.
#[test]
fn crash_atomic_objects() {
    run_cases("crash_atomic_objects", Semantics::AtomicObjects, 350, 2);
}

/// S3-like: every completed write is durable; a crash of the process.
#[test]
fn crash_durable_objects() {
    run_cases("crash_durable_objects", Semantics::DurableObjects, 150, 3);
}
