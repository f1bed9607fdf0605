//! The process-kill loop: a child process writes to a chest from four threads
//! while a fifth flushes in a loop; the parent SIGKILLs it at a random moment,
//! reopens the chest and checks every key against a replay of the workload.
//!
//! # What the child records
//!
//! - `progress`: for each writer thread, an 8-byte counter at offset `8 * t`:
//!   the number of operations the thread has *started*, written (`pwrite`)
//!   before each operation begins. Operations with a higher index never ran.
//! - `log`: the flusher appends `start <n> <c0> <c1> <c2> <c3>` before its
//!   `n`-th `flush()` (the `c_t`: operations each writer had *completed* when
//!   the flush began) and `done <n>` after it returned `Ok`. Any error of the
//!   child is appended as `error ...` and the child aborts.
//!
//! Plain appends without fsync are enough: a killed process's writes are in
//! the page cache.
//!
//! # The rule checked after each kill (per key, no cross-key atomicity)
//!
//! Let `n` be the last flush with a `done` line, `c_t` the counters on its
//! `start` line (all 0 if no flush completed) and `P_t` the started-ops
//! counter of thread `t`. For a key owned by thread `t`, let `S(p)` be its
//! state (absent, or a value) after the first `p` operations of that thread.
//! The reopened chest must hold `S(p)` for some `c_t <= p <= P_t`:
//!
//! - ops `< c_t` returned before the flush began, so the flush covers them
//!   (or a later flush or spill overwrote them with a later state);
//! - op `c_t` may have been in progress when the flush began: either side;
//! - ops up to `P_t - 1` may have run (the last one in progress at the kill)
//!   and reached a later flush that completed without logging `done`;
//! - no other key may exist. `remove` or `update` of an absent key changes
//!   nothing (the child also checks their return values against its model).
//!
//! Every `get` must succeed. Then the parent writes a few more values,
//! flushes, closes and reopens once more: recovery must leave a usable chest.
//!
//! `CHEST_KILL_CYCLES` sets the cycles per URL kind (default 25),
//! `CHEST_KILL_SEED` the base seed (default: from the clock; printed).
//! `scripts/kill-loop.sh` runs the long version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chest::{Chest, Raw};

/// The child's argument: `<kind>,<seed>,<work dir>`.
const CHILD_ENV: &str = "CHEST_KILL_CHILD";
const CHILD_TEST: &str = "kill_loop_child";

const THREADS: usize = 4;
const KEYS_PER_THREAD: u64 = 64;
/// Thread `t` owns keys `t * KEY_STRIDE .. t * KEY_STRIDE + KEYS_PER_THREAD`.
const KEY_STRIDE: u64 = 1000;
/// Small, so values spill all the time.
const BUDGET: usize = 1 << 20;
const DEFAULT_CYCLES: u64 = 25;
/// The kill lands this long after the child is spawned.
const KILL_DELAY_MS: std::ops::Range<u64> = 20..400;
/// A child that is never killed stops writing after this long.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// Violations printed per cycle, and listed in the final panic.
const SHOWN: usize = 12;

type Store = Chest<u64, Vec<u8>, Raw>;

// ---------------------------------------------------------------------------
// Deterministic workload

/// splitmix64's finaliser: a good 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key_of(t: usize, i: u64) -> u64 {
    t as u64 * KEY_STRIDE + i
}

/// The writer thread that owns `key`, if any.
fn owner(key: u64) -> Option<usize> {
    let t = key / KEY_STRIDE;
    (t < THREADS as u64 && key % KEY_STRIDE < KEYS_PER_THREAD).then_some(t as usize)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Insert { key: u64, len: usize },
    Update { key: u64 },
    Remove { key: u64 },
}

impl Op {
    fn key(self) -> u64 {
        match self {
            Op::Insert { key, .. } | Op::Update { key } | Op::Remove { key } => key,
        }
    }
}

/// Operation `i` of writer thread `t`: a pure function of the seed, so the
/// parent replays any prefix without running the child's code.
fn op(seed: u64, t: usize, i: u64) -> Op {
    let h = mix(seed ^ mix(((t as u64) << 56) ^ i));
    let key = key_of(t, h % KEYS_PER_THREAD);
    let h2 = mix(h);
    match (h >> 16) % 100 {
        0..=54 => {
            let len = match h2 % 64 {
                // Heavier than the whole budget: written straight to the backend.
                0 => BUDGET + 64 * 1024 + (h2 >> 8) as usize % (256 * 1024),
                // ~100-300 KiB: packed, or objects of their own past 256 KiB.
                1..=15 => 100 * 1024 + (h2 >> 8) as usize % (200 * 1024),
                // Small: packed into segments.
                _ => HEADER + (h2 >> 8) as usize % (8 * 1024),
            };
            Op::Insert { key, len }
        }
        55..=79 => Op::Update { key },
        _ => Op::Remove { key },
    }
}

// A value: `KLV1`, key, insert op, length, update count, last update op (all
// little-endian), then bytes from a seeded generator; each update flips a
// byte every KiB and bumps the header. Any wrong byte is found by comparing
// with the value regenerated from the model.
const MAGIC: &[u8; 4] = b"KLV1";
const HEADER: usize = 4 + 8 + 8 + 4 + 4 + 8;
const NONE: u64 = u64::MAX;

fn value(seed: u64, key: u64, insert_op: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&insert_op.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&NONE.to_le_bytes());
    let mut x = mix(seed ^ mix(key) ^ mix(insert_op.rotate_left(23)));
    while v.len() < len {
        x = mix(x);
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..n]);
    }
    v
}

/// What `update` does to a value (in the child's closure and in the model).
fn mutate(v: &mut [u8], op: u64) {
    let count = u32::from_le_bytes(v[24..28].try_into().unwrap()) + 1;
    v[24..28].copy_from_slice(&count.to_le_bytes());
    v[28..36].copy_from_slice(&op.to_le_bytes());
    let b = (mix(op) as u8) | 1;
    for pos in (HEADER..v.len()).step_by(1024) {
        v[pos] ^= b;
    }
}

/// A key's state in the model: the insert that made its value, and the
/// updates since.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Desc {
    insert_op: u64,
    len: usize,
    updates: Vec<u64>,
}

type State = Option<Desc>;

impl Desc {
    fn bytes(&self, seed: u64, key: u64) -> Vec<u8> {
        let mut v = value(seed, key, self.insert_op, self.len);
        for &u in &self.updates {
            mutate(&mut v, u);
        }
        v
    }
}

impl fmt::Display for Desc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "value of op {} ({} B)", self.insert_op, self.len)?;
        if !self.updates.is_empty() {
            write!(f, " updated by ops {:?}", self.updates)?;
        }
        Ok(())
    }
}

fn show(s: &State) -> String {
    match s {
        None => "absent".into(),
        Some(d) => d.to_string(),
    }
}

/// A found value's header, for messages and to pick the model state to compare with.
struct Header {
    key: u64,
    insert_op: u64,
    len: u32,
    updates: u32,
    last_update: u64,
}

fn header(v: &[u8]) -> Option<Header> {
    if v.len() < HEADER || &v[..4] != MAGIC {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
    Some(Header {
        key: u64_at(4),
        insert_op: u64_at(12),
        len: u32_at(20),
        updates: u32_at(24),
        last_update: u64_at(28),
    })
}

fn show_found(v: &[u8]) -> String {
    match header(v) {
        None => format!(
            "{} B that are no value of this workload (starts {:02x?})",
            v.len(),
            &v[..v.len().min(16)]
        ),
        Some(h) => {
            let mut s = format!(
                "{} B, header: key {}, value of op {} ({} B)",
                v.len(),
                h.key,
                h.insert_op,
                h.len
            );
            if h.updates > 0 {
                s += &format!(" updated {} times, last by op {}", h.updates, h.last_update);
            }
            s
        }
    }
}

/// Replays the first `started` ops of thread `t`. For each of its keys: the
/// states allowed after a crash (the state after op prefix `p`, for every
/// `floor <= p <= started`), and the last few states before the floor (for
/// messages about stale values).
struct Allowed {
    allowed: Vec<State>,
    before: Vec<State>,
}

fn replay(seed: u64, t: usize, floor: u64, started: u64) -> HashMap<u64, Allowed> {
    assert!(
        floor <= started,
        "thread {t}: {floor} ops completed at a flush's start, but only {started} started"
    );
    let mut state: HashMap<u64, State> = HashMap::new();
    let mut out: HashMap<u64, Allowed> = (0..KEYS_PER_THREAD)
        .map(|i| {
            (
                key_of(t, i),
                Allowed {
                    allowed: Vec::new(),
                    before: Vec::new(),
                },
            )
        })
        .collect();
    for i in 0..=started {
        if i == floor {
            for (k, a) in out.iter_mut() {
                // The state at the floor is the first allowed one, not an earlier one.
                let s = state.get(k).cloned().flatten();
                if a.before.last() == Some(&s) {
                    a.before.pop();
                }
                a.allowed.push(s);
            }
        }
        if i == started {
            break;
        }
        let o = op(seed, t, i);
        let key = o.key();
        let s = state.entry(key).or_insert(None);
        let changed = match o {
            Op::Insert { len, .. } => {
                *s = Some(Desc {
                    insert_op: i,
                    len,
                    updates: Vec::new(),
                });
                true
            }
            Op::Update { .. } => match s {
                Some(d) => {
                    d.updates.push(i);
                    true
                }
                None => false,
            },
            Op::Remove { .. } => s.take().is_some(),
        };
        if changed {
            let a = out.get_mut(&key).unwrap();
            if i >= floor {
                a.allowed.push(s.clone());
            } else {
                a.before.push(s.clone());
                if a.before.len() > 4 {
                    a.before.remove(0);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The child

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A plain path to a local directory.
    File,
    /// `zstd+file:///dir`.
    Zstd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Zstd => "zstd",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "file" => Kind::File,
            "zstd" => Kind::Zstd,
            _ => panic!("unknown url kind {s:?}"),
        }
    }

    fn url(self, dir: &Path) -> String {
        match self {
            Kind::File => dir.display().to_string(),
            Kind::Zstd => format!("zstd+file://{}", dir.display()),
        }
    }
}

fn open_chest(url: &str) -> chest::Result<Store> {
    Chest::builder()
        .memory_budget(BUDGET)
        .serializer(Raw)
        .open(url)
}

/// Appends one line with one `write` (no buffering, no fsync).
fn append(log: &File, line: &str) {
    let mut f = log;
    f.write_all(format!("{line}\n").as_bytes())
        .expect("append to the kill-loop log");
}

/// Records an error of the child where the parent finds it, and dies.
fn child_fail(log: &File, what: String) -> ! {
    append(log, &format!("error {}", what.replace('\n', " | ")));
    eprintln!("kill-loop child: {what}");
    std::process::abort();
}

/// Run in a child process by the kill loops (does nothing without `CHEST_KILL_CHILD`).
#[test]
fn kill_loop_child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = arg.splitn(3, ',');
    let kind = Kind::parse(parts.next().unwrap());
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let work = Path::new(parts.next().unwrap()).to_path_buf();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join("log"))
        .unwrap();
    // A panic on any thread (of the chest or of this workload) fails the cycle.
    let hook_log = log.try_clone().unwrap();
    std::panic::set_hook(Box::new(move |info| {
        child_fail(&hook_log, format!("panic: {info}"))
    }));
    let progress = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(work.join("progress"))
        .unwrap();
    let chest = match open_chest(&kind.url(&work.join("chest"))) {
        Ok(c) => c,
        Err(e) => child_fail(&log, format!("open: {e}")),
    };
    let completed: [AtomicU64; THREADS] = Default::default();
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + CHILD_DEADLINE;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (chest, completed, progress, log) = (&chest, &completed, &progress, &log);
            s.spawn(move || {
                // The child's own model of which of its keys are present.
                let mut present = [false; KEYS_PER_THREAD as usize];
                let mut i = 0u64;
                while Instant::now() < deadline {
                    progress
                        .write_all_at(&(i + 1).to_le_bytes(), 8 * t as u64)
                        .unwrap();
                    let o = op(seed, t, i);
                    let key = o.key();
                    let slot = &mut present[(key % KEY_STRIDE) as usize];
                    let res = match o {
                        Op::Insert { len, .. } => {
                            *slot = true;
                            chest.insert(key, value(seed, key, i, len))
                        }
                        Op::Update { .. } => chest
                            .update(&key, |v| mutate(v, i))
                            .map(|r| {
                                if r.is_some() != *slot {
                                    child_fail(
                                        log,
                                        format!("thread {t} op {i}: update of key {key} returned {r:?}, but the model says present: {slot}"),
                                    );
                                }
                            }),
                        Op::Remove { .. } => chest.remove(&key).map(|r| {
                            if r != *slot {
                                child_fail(
                                    log,
                                    format!("thread {t} op {i}: remove of key {key} returned {r}, but the model says present: {slot}"),
                                );
                            }
                            *slot = false;
                        }),
                    };
                    if let Err(e) = res {
                        child_fail(log, format!("thread {t} op {i} ({o:?}): {e}"));
                    }
                    completed[t].store(i + 1, Ordering::Release);
                    i += 1;
                }
            });
        }
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let c: Vec<String> = completed
                    .iter()
                    .map(|c| c.load(Ordering::Acquire).to_string())
                    .collect();
                append(&log, &format!("start {n} {}", c.join(" ")));
                if let Err(e) = chest.flush() {
                    child_fail(&log, format!("flush {n}: {e}"));
                }
                append(&log, &format!("done {n}"));
            }
        });
        // Reached only if the parent never kills this child.
        while Instant::now() < deadline {
            std::thread::park_timeout(deadline - Instant::now());
        }
        stop.store(true, Ordering::Relaxed);
    });
}

// ---------------------------------------------------------------------------
// The parent

/// What the child's log says.
#[derive(Default)]
struct Log {
    /// The last flush that completed, and the counters at its start.
    last_done: Option<(u64, [u64; THREADS])>,
    flushes_started: u64,
    errors: Vec<String>,
}

fn read_log(path: &Path) -> Log {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut starts: HashMap<u64, [u64; THREADS]> = HashMap::new();
    let mut log = Log::default();
    for line in text.lines() {
        let mut w = line.split(' ');
        match w.next() {
            Some("start") => {
                let nums: Vec<u64> = w.filter_map(|x| x.parse().ok()).collect();
                // A line cut short by the kill has fewer numbers: ignore it.
                if nums.len() == THREADS + 1 {
                    starts.insert(nums[0], nums[1..].try_into().unwrap());
                    log.flushes_started = log.flushes_started.max(nums[0]);
                }
            }
            Some("done") => {
                if let Some(n) = w.next().and_then(|x| x.parse::<u64>().ok()) {
                    let c = *starts
                        .get(&n)
                        .unwrap_or_else(|| panic!("log: done {n} without its start"));
                    if log.last_done.is_none_or(|(m, _)| n > m) {
                        log.last_done = Some((n, c));
                    }
                }
            }
            Some("error") => log.errors.push(line.to_string()),
            _ => {}
        }
    }
    log
}

fn read_progress(path: &Path) -> [u64; THREADS] {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut p = [0; THREADS];
    for (t, p) in p.iter_mut().enumerate() {
        if let Some(b) = bytes.get(8 * t..8 * t + 8) {
            *p = u64::from_le_bytes(b.try_into().unwrap());
        }
    }
    p
}

/// Kills the child if the parent panics before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Figures {
    cycles: u64,
    killed: u64,
    /// Cycles whose child had started a flush, and had completed one.
    flushing: u64,
    after_flush: u64,
    keys_checked: u64,
    lost: u64,
    wrong: u64,
    extra: u64,
    unreadable: u64,
    unopenable: u64,
    child_errors: u64,
    after_recovery: u64,
    /// How many violations of each kind (messages with numbers and paths blanked).
    kinds: BTreeMap<String, u64>,
    violations: Vec<String>,
    shown_this_cycle: usize,
}

/// A message with the work directory and every number blanked, to count kinds.
fn normalize(msg: &str, work: &Path) -> String {
    let msg = msg.replace(&work.display().to_string(), "<dir>");
    let mut out = String::new();
    for c in msg.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('N') {
                out.push('N');
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Figures {
    fn violation(&mut self, ctx: &str, kind: String, what: String) {
        *self.kinds.entry(kind).or_default() += 1;
        let msg = format!("{ctx}: {what}");
        if self.shown_this_cycle < SHOWN {
            eprintln!("VIOLATION {msg}");
        }
        self.shown_this_cycle += 1;
        if self.violations.len() < SHOWN {
            self.violations.push(msg);
        }
    }

    fn failures(&self) -> u64 {
        self.lost
            + self.wrong
            + self.extra
            + self.unreadable
            + self.unopenable
            + self.child_errors
            + self.after_recovery
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

fn kill_loop(kind: Kind) {
    let cycles = env_u64("CHEST_KILL_CYCLES").unwrap_or(DEFAULT_CYCLES);
    let base_seed = env_u64("CHEST_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000_000
    });
    eprintln!(
        "kill loop ({}): {cycles} cycles, seed {base_seed} (CHEST_KILL_SEED={base_seed} replays the workloads and delays)",
        kind.name()
    );
    let kind_name = kind.name();
    let started = Instant::now();
    let mut fig = Figures::default();
    for cycle in 0..cycles {
        let seed = mix(base_seed ^ mix(cycle ^ ((kind as u64) << 32)));
        let ctx = format!("seed {base_seed} cycle {cycle} ({})", kind.name());
        fig.shown_this_cycle = 0;
        run_cycle(kind, seed, &ctx, &mut fig);
        fig.cycles += 1;
    }
    eprintln!(
        "kill loop ({}): cycles {}, killed {} ({} after a flush started, {} after one completed), keys checked {}, lost {}, wrong {}, unopenable {}, unreadable {}, extra {}, child errors {}, broken after recovery {} ({:.1} s)",
        kind.name(),
        fig.cycles,
        fig.killed,
        fig.flushing,
        fig.after_flush,
        fig.keys_checked,
        fig.lost,
        fig.wrong,
        fig.unopenable,
        fig.unreadable,
        fig.extra,
        fig.child_errors,
        fig.after_recovery,
        started.elapsed().as_secs_f64(),
    );
    for (kind, n) in &fig.kinds {
        eprintln!("kill loop ({}):   {n} x {kind}", kind_name);
    }
    assert!(
        fig.failures() == 0,
        "kill loop ({}): {} failures; the first:\n{}",
        kind.name(),
        fig.failures(),
        fig.violations.join("\n")
    );
}

fn run_cycle(kind: Kind, seed: u64, ctx: &str, fig: &mut Figures) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let url = kind.url(&work.join("chest"));
    let stderr_path = work.join("child.stderr");
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{},{seed},{}", kind.name(), work.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let delay =
        KILL_DELAY_MS.start + mix(seed ^ 0xde1a) % (KILL_DELAY_MS.end - KILL_DELAY_MS.start);
    std::thread::sleep(Duration::from_millis(delay));
    let exited = child.0.try_wait().unwrap();
    if exited.is_none() {
        child.0.kill().unwrap();
        fig.killed += 1;
    }
    let status = child.0.wait().unwrap();

    let log = read_log(&work.join("log"));
    let progress = read_progress(&work.join("progress"));
    if exited.is_some() || !log.errors.is_empty() {
        fig.child_errors += 1;
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        let first = log
            .errors
            .first()
            .map_or(status.to_string(), |e| normalize(e, work));
        fig.violation(
            ctx,
            format!("child error: {first}"),
            format!(
                "the child failed before the kill ({status}): {:?}\nits stderr ends:\n{tail}",
                log.errors
            ),
        );
    }
    if log.flushes_started > 0 {
        fig.flushing += 1;
    }
    let floor = match log.last_done {
        Some((_, c)) => {
            fig.after_flush += 1;
            c
        }
        None => [0; THREADS],
    };
    let flush_ctx = match log.last_done {
        Some((n, c)) => format!(
            "last completed flush #{n} of {} started, at ops {c:?}; ops started {progress:?}",
            log.flushes_started
        ),
        None => format!(
            "no completed flush ({} started); ops started {progress:?}",
            log.flushes_started
        ),
    };

    let chest = match open_chest(&url) {
        Ok(c) => c,
        Err(e) => {
            fig.unopenable += 1;
            fig.violation(
                ctx,
                format!("unopenable: {}", normalize(&e.to_string(), work)),
                format!("reopen of {url} failed: {e} ({flush_ctx})"),
            );
            return;
        }
    };

    // Keys nobody wrote.
    let keys = chest.keys();
    for &k in &keys {
        if owner(k).is_none() {
            fig.extra += 1;
            fig.violation(
                ctx,
                "extra key".into(),
                format!("key {k} is owned by no thread, found in the chest"),
            );
        }
    }

    // Every owned key against the replayed model.
    let mut found_state: HashMap<u64, Option<Vec<u8>>> = HashMap::new();
    let mut unreadable = false;
    for t in 0..THREADS {
        let model = replay(seed, t, floor[t], progress[t]);
        let mut by_key: Vec<_> = model.into_iter().collect();
        by_key.sort_by_key(|(k, _)| *k);
        for (key, a) in by_key {
            fig.keys_checked += 1;
            let found = match chest.get(&key) {
                Ok(v) => v.map(|v| v.to_vec()),
                Err(e) => {
                    fig.unreadable += 1;
                    unreadable = true;
                    fig.violation(
                        ctx,
                        format!("unreadable: {}", normalize(&e.to_string(), work)),
                        format!("key {key} (thread {t}): get failed: {e} ({flush_ctx})"),
                    );
                    continue;
                }
            };
            if let Some((kind, why)) = check_key(seed, key, found.as_deref(), &a) {
                let is_lost = found.is_none();
                if is_lost {
                    fig.lost += 1;
                } else {
                    fig.wrong += 1;
                }
                let allowed: Vec<String> = a.allowed.iter().map(show).collect();
                let before: Vec<String> = a.before.iter().map(show).collect();
                fig.violation(
                    ctx,
                    kind.to_string(),
                    format!(
                        "key {key} (thread {t}): {kind}: found {}; expected one of [{}] (states before those: [{}]); {why}{flush_ctx}",
                        found.as_deref().map_or("absent".into(), show_found),
                        allowed.join("; "),
                        before.join("; "),
                    ),
                );
            }
            found_state.insert(key, found);
        }
    }
    let present = found_state.values().filter(|v| v.is_some()).count();
    if unreadable {
        // The checks below would only repeat what is reported.
        return;
    }
    if chest.len() != keys.len() || keys.iter().filter(|k| owner(**k).is_some()).count() != present
    {
        fig.after_recovery += 1;
        fig.violation(
            ctx,
            "broken after recovery: len() and keys() disagree with get()".into(),
            format!(
                "len() {} and keys() ({} keys) disagree with the {present} owned keys get() finds",
                chest.len(),
                keys.len()
            ),
        );
    }

    // Recovery must leave a usable chest: write more, flush, close, reopen.
    if let Err(e) = continue_after_recovery(&url, chest, seed, &mut found_state) {
        fig.after_recovery += 1;
        fig.violation(
            ctx,
            format!("broken after recovery: {}", normalize(&e, work)),
            format!("after recovery: {e} ({flush_ctx})"),
        );
    }
}

/// `None` if `found` is one of the allowed states, else the kind of
/// violation and why.
fn check_key(
    seed: u64,
    key: u64,
    found: Option<&[u8]>,
    a: &Allowed,
) -> Option<(&'static str, String)> {
    let Some(v) = found else {
        return (!a.allowed.contains(&None)).then(|| ("lost", String::new()));
    };
    let Some(h) = header(v) else {
        return Some((
            "wrong value: garbage",
            "it is no value of this workload; ".into(),
        ));
    };
    if h.key != key {
        return Some((
            "wrong value: another key's",
            format!("it is a value of key {}; ", h.key),
        ));
    }
    let names = |d: &Desc| {
        d.insert_op == h.insert_op
            && d.updates.len() == h.updates as usize
            && d.updates.last().copied().unwrap_or(NONE) == h.last_update
    };
    let Some(d) = a.allowed.iter().flatten().find(|d| names(d)) else {
        return Some(if a.before.iter().flatten().any(names) {
            (
                "wrong value: stale",
                "it is older than the last completed flush; ".into(),
            )
        } else {
            (
                "wrong value: not a state of the key since the last completed flush",
                String::new(),
            )
        });
    };
    let expected = d.bytes(seed, key);
    if expected == v {
        return None;
    }
    let at = expected
        .iter()
        .zip(v)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(v.len()));
    Some((
        "wrong value: corrupt bytes",
        format!(
            "its header names an allowed state ({d}) but its bytes differ from offset {at} ({} B expected); ",
            expected.len()
        ),
    ))
}

/// Writes a few values over the recovered state, flushes, closes, reopens
/// and checks every key.
fn continue_after_recovery(
    url: &str,
    chest: Store,
    seed: u64,
    state: &mut HashMap<u64, Option<Vec<u8>>>,
) -> Result<(), String> {
    let post = mix(seed ^ 0x9057);
    for t in 0..THREADS {
        let h = mix(post ^ t as u64);
        let key = key_of(t, h % KEYS_PER_THREAD);
        let len = if t % 2 == 0 { 200 * 1024 } else { 3000 };
        let v = value(post, key, t as u64, len);
        chest
            .insert(key, v.clone())
            .map_err(|e| format!("insert {key}: {e}"))?;
        state.insert(key, Some(v));
        let key = key_of(t, (h >> 16) % KEYS_PER_THREAD);
        let r = chest
            .update(&key, |v| mutate(v, u64::MAX - 1))
            .map_err(|e| format!("update {key}: {e}"))?;
        let s = state.entry(key).or_insert(None);
        if let Some(v) = s {
            mutate(v, u64::MAX - 1);
        }
        if r.is_some() != s.is_some() {
            return Err(format!(
                "update {key} returned {r:?}, presence {}",
                s.is_some()
            ));
        }
        let key = key_of(t, (h >> 32) % KEYS_PER_THREAD);
        let r = chest
            .remove(&key)
            .map_err(|e| format!("remove {key}: {e}"))?;
        let was = state.insert(key, None).flatten().is_some();
        if r != was {
            return Err(format!("remove {key} returned {r}, presence {was}"));
        }
    }
    chest.flush().map_err(|e| format!("flush: {e}"))?;
    chest.close().map_err(|e| format!("close: {e}"))?;
    let chest = open_chest(url).map_err(|e| format!("second reopen: {e}"))?;
    let expected: BTreeSet<u64> = state
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|_| *k))
        .collect();
    let keys: BTreeSet<u64> = chest.keys().into_iter().collect();
    if keys != expected {
        return Err(format!(
            "second reopen: keys differ: missing {:?}, extra {:?}",
            expected.difference(&keys).collect::<Vec<_>>(),
            keys.difference(&expected).collect::<Vec<_>>()
        ));
    }
    for (key, v) in state.iter() {
        let found = chest
            .get(key)
            .map_err(|e| format!("second reopen: get {key}: {e}"))?;
        if found.as_deref() != v.as_ref() {
            return Err(format!(
                "second reopen: key {key}: found {}, expected {}",
                found.as_deref().map_or("absent".into(), |v| show_found(v)),
                v.as_deref().map_or("absent".into(), show_found)
            ));
        }
    }
    chest.close().map_err(|e| format!("final close: {e}"))
}

#[test]
fn kill_loop_file() {
    kill_loop(Kind::File);
}

#[test]
fn kill_loop_zstd() {
    kill_loop(Kind::Zstd);
}
