//! W1, large values: 2 GiB × scale of 1 MiB values into a chest with a
//! 256 MiB × scale budget (at least 16 MiB) on a local directory, then
//! `flush`; reopen with the same budget and `get` every key in random order.
//! Baseline: one file per value, `std::fs::write`, then `std::fs::read` in
//! the same order.

use std::fs::File;
use std::path::Path;

use chest::{Chest, ChestBuilder, Raw};
use serde_json::Value;

use super::{no_such_side, params_json, time_goal, Side};
use crate::common::{
    dir_size, location, measured, remove_dir, shuffled, stats_json, timed, Ctx, Phase, Report,
    Result, Values, MIB,
};
use crate::report::{figures, peaks_mib, Row};

const ID: &str = "W1";
/// Goal: chest time ≤ 1.15 × baseline time, both phases.
const TIME_FACTOR: f64 = 1.15;

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
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    match side {
        Side::Chest => run_chest(ctx),
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

fn run_chest(ctx: &Ctx) -> Result<Report> {
    let p = Params::new(ctx);
    let values = Values::new(p.value_len, ctx.seed);
    let dir = ctx.fresh_dir(&format!("w1-chest-{}", ctx.rep))?;
    let loc = location(&dir)?;
    let report = Report::new(ID, Side::Chest.name(), ctx);
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

/// The chest's side of W1 (and W5) at `loc`, whose files are in `dir`:
/// insert every value and flush, then reopen and get every key in random order.
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
    let (stats, secs, peak) = measured(|| {
        let c = open(loc, p.budget)?;
        for k in 0..p.values {
            c.insert(k, values.make(k))?;
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

/// The baseline of W1 (and W5) in `dir`: one file per value with
/// `std::fs::write`, then `std::fs::read` in the chest's random order.
pub fn files_write_read(
    ctx: &Ctx,
    p: &Params,
    values: &Values,
    dir: &Path,
    mut report: Report,
) -> Result<Report> {
    let order = shuffled(p.values, ctx.seed ^ u64::from(ctx.rep));
    let path = |k: u64| dir.join(format!("{k:016x}"));

    let ((), secs, peak) = measured(|| {
        for k in 0..p.values {
            std::fs::write(path(k), values.make(k))?;
        }
        Ok(())
    })?;
    report
        .phases
        .push(Phase::mb_per_s("write", p.total_bytes(), secs).with_peak(peak));

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
    let need = time_goal(TIME_FACTOR);
    let chest = Side::Chest.name();
    let files = Side::Files.name();
    let mut rows = Vec::new();
    for (phase, label) in [
        ("write", "insert+flush / write"),
        ("read", "reopen+get / read"),
    ] {
        let row = Row::new(ID, label, "MB/s")
            .chest(figures(reports, chest, phase))
            .baseline(files, figures(reports, files, phase));
        let holds = row.ratio.map(|r| r >= need);
        rows.push(row.goal(format!("≥ {need:.2} (time ≤ {TIME_FACTOR}×)"), holds));
    }
    rows.push(
        Row::new(ID, "insert+flush / write+fsync (info)", "MB/s")
            .chest(figures(reports, chest, "write"))
            .baseline("files+fsync", figures(reports, files, "write+fsync")),
    );
    rows.push(peak_row(ID, p.budget, reports, chest, files));
    rows
}

/// The peak-RSS row of W1 and W2: the chest's against budget + 64 MiB.
pub fn peak_row(id: &str, budget: usize, reports: &[Report], chest: &str, base: &str) -> Row {
    let limit = (budget + 64 * MIB) as f64 / MIB as f64;
    let row = Row::new(id, "peak RSS (lower is better)", "MiB")
        .chest(peaks_mib(reports, chest))
        .baseline(base, peaks_mib(reports, base));
    let holds = row.chest.map(|c| c <= limit);
    let mut row = row.goal(format!("≤ {limit:.0} (budget+64)"), holds);
    row.ratio = None;
    row.ratio_raw.clear();
    row
}
