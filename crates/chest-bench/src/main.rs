//! chest-bench: the benchmark program of chest. It runs the workloads of
//! WORKLOADS.md, each against its baseline in the same run, and prints the
//! chest's figure, the baseline's, their ratio and whether the goal holds;
//! the same goes to a JSON file with every repetition's raw numbers.
//!
//! The workloads, what each figure means and its goal are in
//! `crates/chest-bench/WORKLOADS.md`.
//!
//! ```text
//! cargo run --release -p chest-bench -- all --scale 0.05
//! cargo run --release -p chest-bench -- w2 --repeat 5 --json w2.json
//! scripts/garage.sh start && . "$(scripts/garage.sh env-file)" && \
//!     cargo run --release -p chest-bench -- w6 w5-s3 --scale 0.25
//! ```
//!
//! W6 and W5-s3 need an S3-compatible server named in `CHEST_S3_URL` (with
//! `AWS_*` credentials), as the env file of `scripts/garage.sh` sets them:
//! without one, `w6` and `w5-s3` are errors, and `all` and `w5` skip them
//! with a note.
//!
//! Every side of every repetition runs in a child process of this binary
//! (the hidden `__run` subcommand, which prints one JSON line), so that its
//! peak resident memory is its own and the chest never shares a heap with a
//! baseline. Sides alternate their order from one repetition to the next,
//! so that drift in the machine's load hits both; the table shows medians.

mod common;
mod py_mirror;
mod report;
mod workloads;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use common::{Ctx, Report, Result};
use report::Row;
use workloads::{Side, Workload};

#[derive(Parser, Debug)]
#[command(
    name = "chest-bench",
    about = "Benchmarks chest against real baselines (the workloads of WORKLOADS.md).",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,

    /// Which workloads: `all`, or any of w1 w2 w3 w4 w5 w5-s3 w6 w7 (w5 needs the `zstd`
    /// feature; w6 the `s3` feature and a server in CHEST_S3_URL, w5-s3 both; `w5`
    /// includes w5-s3, and `all` and `w5` skip what has no server).
    #[arg(value_enum, default_value = "all")]
    workloads: Vec<Which>,

    #[command(flatten)]
    opts: Opts,

    /// Repetitions of each workload (the table shows medians) [default: 3, or 1 above scale 2].
    #[arg(long)]
    repeat: Option<u32>,

    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/chest-bench.json")]
    json: PathBuf,
}

#[derive(Args, Debug, Clone)]
struct Opts {
    /// Multiplies the sizes of WORKLOADS.md (0.05: a quick run in under a minute).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,

    /// Scratch directory [default: a new temporary directory, removed at the end].
    #[arg(long)]
    dir: Option<PathBuf>,

    /// Seed of the values, the key orders and the random reads.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Subcommand, Debug)]
enum Child {
    /// Runs one side of one workload once and prints its report as one JSON line.
    #[command(name = "__run", hide = true)]
    Run {
        workload: Workload,
        side: Side,
        #[arg(long)]
        rep: u32,
        #[command(flatten)]
        opts: Opts,
    },
    /// The Rust side of the Python benchmark (python/bench/pybench.py):
    /// `count` values of `size` bytes (`bytes`: `Vec<u8>` through `Raw`;
    /// `f64`: `Vec<f64>` through `Pod`) into a chest at `dir` with
    /// `budget`, flush; reopen, read every key shuffled. Prints one JSON line.
    #[command(name = "__py-mirror", hide = true)]
    PyMirror {
        kind: String,
        size: usize,
        count: usize,
        budget: usize,
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    W1,
    W2,
    W3,
    W4,
    W5,
    #[value(name = "w5-s3")]
    W5S3,
    W6,
    W7,
}

impl Which {
    fn workloads(self) -> Vec<Workload> {
        match self {
            Which::All => Workload::all(),
            Which::W1 => vec![Workload::W1],
            Which::W2 => vec![Workload::W2],
            Which::W3 => vec![Workload::W3],
            Which::W4 => vec![Workload::W4],
            Which::W5 => vec![Workload::W5, Workload::W5S3],
            Which::W5S3 => vec![Workload::W5S3],
            Which::W6 => vec![Workload::W6],
            Which::W7 => vec![Workload::W7],
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.child {
        Some(Child::Run {
            workload,
            side,
            rep,
            opts,
        }) => run_child(workload, side, rep, &opts),
        Some(Child::PyMirror {
            kind,
            size,
            count,
            budget,
            dir,
        }) => py_mirror::run(&kind, size, count, budget, &dir),
        None => run_all(&cli),
    };
    if let Err(e) = outcome {
        eprintln!("chest-bench: {e}");
        std::process::exit(1);
    }
}

/// In the child: run one side, print the report.
fn run_child(w: Workload, side: Side, rep: u32, opts: &Opts) -> Result<()> {
    let dir = opts.dir.clone().ok_or("a child run needs --dir")?;
    let ctx = Ctx {
        scale: opts.scale,
        dir,
        rep,
        seed: opts.seed,
    };
    let report = w.run(side, &ctx)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    writeln!(out)?;
    Ok(())
}

/// In the parent: one child process for one side of one repetition.
fn spawn(w: Workload, side: Side, ctx: &Ctx) -> Report {
    let fail = |error: String| Report {
        workload: w.id().into(),
        side: side.name().into(),
        rep: ctx.rep,
        phases: Vec::new(),
        info: Default::default(),
        error: Some(error),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find this program: {e}")),
    };
    let output = Command::new(exe)
        .arg("__run")
        .arg(value_name(w))
        .arg(value_name(side))
        .args(["--rep", &ctx.rep.to_string()])
        .args(["--scale", &ctx.scale.to_string()])
        .args(["--seed", &ctx.seed.to_string()])
        .arg("--dir")
        .arg(&ctx.dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return fail(format!("cannot start a child run: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return fail(format!("the child run failed ({})", output.status));
    }
    match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => serde_json::from_str(line)
            .unwrap_or_else(|e| fail(format!("unreadable report ({e}): {line}"))),
        None => fail("the child run printed no report".into()),
    }
}

/// How clap spells a value on the command line.
fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn summary(r: &Report) -> String {
    if let Some(e) = &r.error {
        return format!("ERROR {e}");
    }
    r.phases
        .iter()
        .map(|p| format!("{} {} {}", p.name, report::fmt_num(p.value), p.unit))
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_all(cli: &Cli) -> Result<()> {
    let opts = &cli.opts;
    if !(opts.scale > 0.0 && opts.scale.is_finite()) {
        return Err("--scale must be a positive number".into());
    }
    let repeat = cli
        .repeat
        .unwrap_or(if opts.scale > 2.0 { 1 } else { 3 })
        .max(1);
    let mut chosen: Vec<Workload> = Vec::new();
    for which in &cli.workloads {
        for w in which.workloads() {
            if !chosen.contains(&w) {
                chosen.push(w);
            }
        }
    }
    // A workload that cannot run here (W6 without a server): an error if
    // asked for by its own name, else (in `all`, or W5-s3 in `w5`) skipped
    // with a note.
    for &w in &chosen {
        if let Some(why) = w.unavailable() {
            if cli.workloads.iter().any(|&which| which.workloads() == [w]) {
                return Err(format!("{}: {why}", w.id()).into());
            }
        }
    }
    let mut skipped = Vec::new();
    chosen.retain(|&w| match w.unavailable() {
        Some(why) => {
            skipped.push((w, why));
            false
        }
        None => true,
    });
    // The scratch directory: given, or a temporary one removed at the end.
    let (_temp, dir) = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (None, d.canonicalize()?)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("chest-bench-")
                .tempdir_in(std::env::temp_dir())?;
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = report::git_commit();
    let date = report::now_utc();
    let load_start = report::load_average();
    println!(
        "chest-bench: scale {}, {repeat} repetition(s), {cores} cores, commit {commit}, scratch {}",
        opts.scale,
        dir.display()
    );
    for (w, why) in &skipped {
        println!("\n{} ({}): skipped: {why}", w.id(), w.title());
    }

    let mut all_rows: Vec<Row> = Vec::new();
    let mut json_workloads = Vec::new();
    for &w in &chosen {
        let base = Ctx {
            scale: opts.scale,
            dir: dir.clone(),
            rep: 0,
            seed: opts.seed,
        };
        println!("\n{} ({}): {}", w.id(), w.title(), w.params(&base));
        let mut reports = Vec::new();
        if let Some(setup) = w.setup() {
            let r = spawn(w, setup, &base);
            println!("  setup: {}", summary(&r));
            reports.push(r);
        }
        for rep in 0..repeat {
            let ctx = Ctx {
                rep,
                ..base.clone()
            };
            // Alternate the order of the sides against drift in the machine's load.
            let mut sides = w.sides().to_vec();
            let turn = rep as usize % sides.len();
            sides.rotate_left(turn);
            for side in sides {
                let r = spawn(w, side, &ctx);
                println!("  rep {rep} {:<13} {}", side.name(), summary(&r));
                reports.push(r);
            }
        }
        for d in w.setup_dirs() {
            common::remove_dir(&dir.join(d));
        }
        let rows = w.rows(&base, &reports);
        json_workloads.push(json!({
            "id": w.id(),
            "title": w.title(),
            "params": w.params(&base),
            "rows": rows,
            "runs": reports,
        }));
        all_rows.extend(rows);
    }

    let notes = notes();
    println!("\n{}", report::table(&all_rows));
    for n in &notes {
        println!("- {}", n.as_str().unwrap_or_default());
    }
    for (w, why) in &skipped {
        println!("- {} was skipped: {why}", w.id());
    }
    let skipped: Vec<Value> = skipped
        .iter()
        .map(|(w, why)| json!({ "id": w.id(), "title": w.title(), "reason": why }))
        .collect();
    let doc = json!({
        "tool": "chest-bench",
        "commit": commit,
        "git_dirty": report::git_dirty(),
        "date": date,
        "cores": cores,
        "scale": opts.scale,
        "repeat": repeat,
        "seed": opts.seed,
        "load_average_start": load_start,
        "load_average_end": report::load_average(),
        "ratio": "chest / baseline; for throughput (MB/s, ops/s) > 1 means the chest is faster",
        "notes": notes,
        "workloads": json_workloads,
        "skipped": skipped,
    });
    if let Some(parent) = cli.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cli.json, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("\nJSON: {}", cli.json.display());
    Ok(())
}

fn notes() -> Vec<Value> {
    [
        "ratio = chest / baseline. For throughput (MB/s, ops/s) > 1 means the chest is faster; \
         figures are medians over the repetitions, each side in its own process, \
         sides alternating their order per repetition.",
        "Chests are Chest<u64, Vec<u8>, chest::Raw> (raw bytes, no serialization), \
         since the baselines store raw bytes too; values are incompressible (seeded PRNG), \
         except in W5.",
        "Reads may hit the page cache, for both sides alike (the cache is not dropped: \
         that needs root and disturbs the machine).",
        "W1: 'chest' is the default, durable chest (fsync=flush: its flush fsyncs what it \
         wrote); 'chest-nofsync' is the same on file://…?fsync=never. 'files' is \
         std::fs::write of one file per value, not fsynced; 'files+fsync' adds an fsync of \
         every file and the directory (info, the durable chest's like-for-like).",
        "Insert latency: every insert (W1, W6; std::fs::write for W1's files) is timed on its \
         own, the value made before the clock starts; p50/p99/max are over the inserts made \
         after the memory tier is full (from budget / value size on), so that values spill; \
         figures over all inserts are in the JSON. With few inserts (small --scale), p99 is \
         about the max.",
        "W2: every side is durable once, at the end of its insert phase (chest flush; \
         redb Durability::None then Immediate on the last commit; fjall persist(SyncAll)); \
         keys inserted in ascending order; the read phase includes the reopen. \
         'redb' and 'fjall' run with their caches set to the chest's budget (equal \
         memory: the goal); 'redb-default' and 'fjall-default' (info) at their default \
         caches (redb's, 1 GiB, holds the whole data set). \
         'chest-mmap' (info) is the same chest on file://…?mmap=true: reads from mapped \
         segment files, whose pages count in its peak RSS (outside the budget). \
         'random pread of its records' (info) is the floor of a read path with a system \
         call per value: as many preads of one record at random offsets of the chest's own \
         segment files, in its process after it closed.",
        "W3: 1 thread: chest time ≤ 1.5 × the Mutex<HashMap>'s; 2 threads: chest throughput \
         ≥ 2 × its throughput.",
        "W5: values compress about 4:1; 'chest' goes through zstd+file:// (default level 3, \
         frames of 256 KiB, checksums). 'zstd' is the zstd crate on the same values with the \
         layer's level, frame size and checksum, on as many threads as the layer uses for one \
         value (values spread over them), compressing into memory then decompressing in the \
         chest's read order and checking; 'zstd-1' is the same on one thread (info); \
         'chest-plain' the same chest on plain file:// (info). Bytes stored: the chest's \
         directory (W5-s3: the objects under the side's prefix), ratio of the raw bytes.",
        "W6: the chest goes through s3:// at CHEST_S3_URL, under a prefix of its own per side \
         and repetition (deleted afterwards); 'object_store' is the object_store crate directly, \
         built with chest-s3's settings (endpoint, region, path-style, http, timeouts, retries, \
         connection reuse), putting and getting the same 4 MiB objects with chest-s3's \
         concurrency (8, buffer_unordered); 'object_store-1' does it one at a time (info). \
         The chest reads in windows of 4 keys: `read_ahead` of the window after next (a \
         concurrent batch of GETs in the background; 8 keys on their way), then `get` of \
         each key of this one. The chest's stats (spills, objects, s3_* counters) \
         and its insert stalls (inserts over 1 ms) are in the JSON. W5-s3 runs the same chest \
         side on compressible values through zstd+s3:// and plain s3://.",
        "W7: the chest (Admission::Frequency, memory://, values weighed by their length) replays \
         synthetic traces of gets over values all spilled first: 50,000 keys x scale, \
         1,000,000 gets x scale; ratios are its loads over Belady's (the offline optimum) \
         or the popularity oracle's on the same trace, the first 20% of the trace and every \
         key's first get not counted (chest_core::testing::traces). The grid of WORKLOADS.md \
         is the ignored test w7_grid in crates/chest-core/tests/eviction_quality.rs.",
        "Peak RSS is VmHWM of the side's child process per phase (reset between phases; the \
         row shows the highest), so it includes the key index and the benchmark's own few \
         MiB; the goal is peak ≤ budget + 64 MiB.",
    ]
    .into_iter()
    .map(Value::from)
    .collect()
}
