//! W1, large values: 2 GiB × scale of 1 MiB values into a chest with a
//! 256 MiB × scale budget (at least 16 MiB) on a local directory, then
//! `flush`; reopen with the same budget and `get` every key in random order.
//! Two chests: the default, durable one (`fsync=flush`: the flush makes
//! everything durable) and one on `file://…?fsync=never` (never fsynced).
//! Baseline: one file per value, `std::fs::write` (not fsynced), then
//! `std::fs::read` in the same order; the files+fsync figure (every file
//! fsynced after the writes) is the durable one's baseline, for information.
//!
//! Goals: durable write time ≤ the plain files' time, `fsync=never` write
//! time ≤ 0.8 × it, read time ≤ 1.15 × the files'; peak RSS ≤ budget +
//! 64 MiB; insert p99 ≤ 1 ms while values spill (every `insert` is timed).

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use chest::{Chest, ChestBuilder, Raw};
use serde_json::Value;

use super::{no_such_side, params_json, time_goal, Side};
use crate::common::{
    dir_size, measured, remove_dir, report_latencies, shuffled, stats_json, timed, Ctx, Latencies,
    Phase, Report, Result, Values, MIB,
};
use crate::report::{figures, latency_rows, peak_row, Row};

const ID: &str = "W1";
/// Goal: durable (`fsync=flush`) write time ≤ 1 × the plain files' time.
const DURABLE_FACTOR: f64 = 1.0;
/// Goal: `fsync=never` write time ≤ 0.8 × the plain files' time.
const NEVER_FACTOR: f64 = 0.8;
/// Goal: read time ≤ 1.15 × the files' read time.
const READ_FACTOR: f64 = 1.15;
/// Goal: insert p99 while values spill, in µs.
pub const INSERT_P99_US: f64 = 1000.0;

pub struct Params {
    pub values: u64,
    pub value_len: usize,
    pub budget: usize,
}

impl Params {
    pub fn new(ctx: &Ctx) -> Self {
        let value_len = MIB;
        Self {
            values: ctx.count(2048.0, 1),
            value_len,
            budget: ((256.0 * MIB as f64 * ctx.scale) as usize).max(16 * MIB),
        }
    }

    pub fn json(&self) -> Value {
        params_json(&[
            ("values", self.values as f64),
            ("value_bytes", self.value_len as f64),
            ("budget_bytes", self.budget as f64),
        ])
    }

    pub fn total_bytes(&self) -> u64 {
        self.values * self.value_len as u64
    }

    /// The inserts made before the memory tier is full; every later one
    /// makes room by spilling (its latency is the one the goal is about).
    pub fn fits(&self) -> usize {
        self.budget / self.value_len
    }
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    match side {
        Side::Chest => run_chest(ctx, Side::Chest, ""),
        Side::ChestNoFsync => run_chest(ctx, Side::ChestNoFsync, "?fsync=never"),
        Side::Files => run_files(ctx),
        _ => Err(no_such_side(ID, side)),
    }
}

type RawChest = Chest<u64, Vec<u8>, Raw>;

fn open(loc: &str, budget: usize) -> Result<RawChest> {
    Ok(ChestBuilder::new()
        .serializer(Raw)
        .memory_budget(budget)
        .open(loc)?)
}

/// The chest at `file://<dir><query>`.
fn run_chest(ctx: &Ctx, side: Side, query: &str) -> Result<Report> {
    let p = Params::new(ctx);
    let values = Values::new(p.value_len, ctx.seed);
    let dir = ctx.fresh_dir(&format!("w1-{}-{}", side.name(), ctx.rep))?;
    let loc = format!("{}{query}", file_url(&dir)?);
    let mut report = Report::new(ID, side.name(), ctx);
    report.info("location", loc.as_str());
    let report = chest_write_read(ctx, &p, &values, &dir, &loc, report);
    remove_dir(&dir);
    report
}

fn run_files(ctx: &Ctx) -> Result<Report> {
    let p = Params::new(ctx);
    let values = Values::new(p.value_len, ctx.seed);
    let dir = ctx.fresh_dir(&format!("w1-files-{}", ctx.rep))?;
    let report = Report::new(ID, Side::Files.name(), ctx);
    let report = files_write_read(ctx, &p, &values, &dir, report);
    remove_dir(&dir);
    report
}

/// `dir` as a `file://` URL (percent-encoded), to which a query can be appended.
pub fn file_url(dir: &Path) -> Result<String> {
    let url = url::Url::from_directory_path(dir)
        .map_err(|()| format!("not an absolute directory: {}", dir.display()))?;
    Ok(url.to_string())
}

/// The chest's side of W1 (and W5) at `loc`, whose files are in `dir`:
/// insert every value and flush, then reopen and get every key in random
/// order. Every `insert` is timed (the value is made before the clock starts).
pub fn chest_write_read(
    ctx: &Ctx,
    p: &Params,
    values: &Values,
    dir: &Path,
    loc: &str,
    mut report: Report,
) -> Result<Report> {
    let order = shuffled(p.values, ctx.seed ^ u64::from(ctx.rep));
    let mut flush_secs = 0.0;
    let mut lat = Latencies::with_capacity(p.values as usize);
    let (stats, secs, peak) = measured(|| {
        let c = open(loc, p.budget)?;
        for k in 0..p.values {
            let v = values.make(k);
            let t = Instant::now();
            c.insert(k, v)?;
            lat.push(t.elapsed());
        }
        let ((), f) = timed(|| Ok(c.flush()?))?;
        flush_secs = f;
        let stats = c.stats();
        c.close()?;
        Ok(stats)
    })?;
    report
        .phases
        .push(Phase::mb_per_s("write", p.total_bytes(), secs).with_peak(peak));
    report.info("write_flush_seconds", flush_secs);
    report.info("write_stats", stats_json(&stats));
    report_latencies(&mut report, "insert", &lat, p.fits());
    report.info("bytes_on_disk", dir_size(dir));

    let (stats, secs, peak) = measured(|| {
        let c = open(loc, p.budget)?;
        for &k in &order {
            values.verify_get(&c, k)?;
        }
        let stats = c.stats();
        c.close()?;
        Ok(stats)
    })?;
    report
        .phases
        .push(Phase::mb_per_s("read", p.total_bytes(), secs).with_peak(peak));
    report.info("read_stats", stats_json(&stats));
    Ok(report)
}

/// The baseline of W1 in `dir`: one file per value with `std::fs::write`
/// (each call timed, as the chest's inserts are), then `std::fs::read` in
/// the chest's random order.
pub fn files_write_read(
    ctx: &Ctx,
    p: &Params,
    values: &Values,
    dir: &Path,
    mut report: Report,
) -> Result<Report> {
    let order = shuffled(p.values, ctx.seed ^ u64::from(ctx.rep));
    let path = |k: u64| dir.join(format!("{k:016x}"));

    let mut lat = Latencies::with_capacity(p.values as usize);
    let ((), secs, peak) = measured(|| {
        for k in 0..p.values {
            let v = values.make(k);
            let t = Instant::now();
            std::fs::write(path(k), v)?;
            lat.push(t.elapsed());
        }
        Ok(())
    })?;
    report
        .phases
        .push(Phase::mb_per_s("write", p.total_bytes(), secs).with_peak(peak));
    report_latencies(&mut report, "write", &lat, p.fits());

    // Not part of the baseline's figure: what making the files durable would
    // add (the chest's flush fsyncs what it wrote). It also leaves the page
    // cache clean before the reads, as the chest's flush does.
    let ((), sync_secs) = timed(|| {
        for k in 0..p.values {
            File::open(path(k))?.sync_all()?;
        }
        File::open(dir)?.sync_all()?;
        Ok(())
    })?;
    report.phases.push(Phase::mb_per_s(
        "write+fsync",
        p.total_bytes(),
        secs + sync_secs,
    ));
    report.info("fsync_seconds", sync_secs);
    report.info("bytes_on_disk", dir_size(dir));

    let ((), secs, peak) = measured(|| {
        for &k in &order {
            let v = std::fs::read(path(k))?;
            values.verify(k, &v, "files")?;
        }
        Ok(())
    })?;
    report
        .phases
        .push(Phase::mb_per_s("read", p.total_bytes(), secs).with_peak(peak));
    Ok(report)
}

pub fn rows(ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let p = Params::new(ctx);
    let chest = Side::Chest.name();
    let never = Side::ChestNoFsync.name();
    let files = Side::Files.name();
    let mut rows = Vec::new();
    for (side, label, factor) in [
        (chest, "insert+flush (fsync=flush) / write", DURABLE_FACTOR),
        (never, "insert+flush (fsync=never) / write", NEVER_FACTOR),
    ] {
        let need = time_goal(factor);
        let row = Row::new(ID, label, "MB/s")
            .chest(figures(reports, side, "write"))
            .baseline(files, figures(reports, files, "write"));
        let holds = row.ratio.map(|r| r >= need);
        rows.push(row.goal(format!("≥ {need:.2} (time ≤ {factor}×)"), holds));
    }
    rows.push(
        Row::new(
            ID,
            "insert+flush (fsync=flush) / write+fsync (info)",
            "MB/s",
        )
        .chest(figures(reports, chest, "write"))
        .baseline("files+fsync", figures(reports, files, "write+fsync")),
    );
    let need = time_goal(READ_FACTOR);
    let row = Row::new(ID, "reopen+get / read", "MB/s")
        .chest(figures(reports, chest, "read"))
        .baseline(files, figures(reports, files, "read"));
    let holds = row.ratio.map(|r| r >= need);
    rows.push(row.goal(format!("≥ {need:.2} (time ≤ {READ_FACTOR}×)"), holds));
    rows.push(
        Row::new(ID, "reopen+get (fsync=never) / read (info)", "MB/s")
            .chest(figures(reports, never, "read"))
            .baseline(files, figures(reports, files, "read")),
    );
    rows.extend(latency_rows(
        ID,
        "insert latency",
        reports,
        (chest, "insert"),
        Some((files, "write", "files: write")),
        INSERT_P99_US,
    ));
    rows.push(peak_row(
        ID,
        "peak RSS (lower is better)",
        p.budget,
        reports,
        chest,
        files,
    ));
    rows.push(peak_row(
        ID,
        "peak RSS, fsync=never (lower is better)",
        p.budget,
        reports,
        never,
        files,
    ));
    rows
}
