//! W5, compressible values: W1 with values that compress about 4:1
//! (little-endian `u32` counters with noise), through `zstd+file://`.
//! Measured against the same chest on plain `file://` (the "uncompressed
//! W1" of the goal) and W1's raw baseline (one file per value) on the same,
//! uncompressed bytes. Goals: faster than uncompressed, and bytes on disk
//! ≤ 0.3 × raw.
//!
//! Needs the `zstd` feature (default on), which links the `zstd+` layer.

use serde_json::Value;

use super::w1::{self, chest_write_read, files_write_read, Params};
use super::{no_such_side, Side};
use crate::common::{location, remove_dir, Ctx, Phase, Report, Result, Values, MIB};
use crate::report::{figures, Row};

const ID: &str = "W5";
/// Goal: bytes on disk ≤ 0.3 × the raw bytes.
const DISK_GOAL: f64 = 0.3;

pub fn params(ctx: &Ctx) -> Value {
    let mut v = Params::new(ctx).json();
    v["values_compress"] = "about 4:1 (u32 counters with noise)".into();
    v
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    if !cfg!(feature = "zstd") {
        return Err("W5 needs chest-bench built with the `zstd` feature".into());
    }
    let p = Params::new(ctx);
    let values = Values::compressible(p.value_len, ctx.seed);
    let dir = ctx.fresh_dir(&format!("w5-{}-{}", side.name(), ctx.rep))?;
    let report = Report::new(ID, side.name(), ctx);
    let raw = p.total_bytes() as f64;
    let report = match side {
        Side::Chest => {
            let loc = format!("zstd+file://{}", location(&dir)?);
            chest_write_read(ctx, &p, &values, &dir, &loc, report)
        }
        Side::Plain => chest_write_read(ctx, &p, &values, &dir, &location(&dir)?, report),
        Side::Files => files_write_read(ctx, &p, &values, &dir, report),
        _ => Err(no_such_side(ID, side)),
    };
    remove_dir(&dir);
    let mut report = report?;
    let on_disk = report.info.get("bytes_on_disk").and_then(Value::as_f64);
    if let Some(b) = on_disk {
        report
            .phases
            .push(Phase::figure("bytes on disk", b / MIB as f64, "MiB"));
        report.info("bytes_on_disk_per_raw", b / raw);
    }
    Ok(report)
}

pub fn rows(ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let p = Params::new(ctx);
    let zstd = Side::Chest.name();
    let plain = Side::Plain.name();
    let files = Side::Files.name();
    let mut rows = Vec::new();
    for (phase, label) in [("write", "insert+flush"), ("read", "reopen+get")] {
        let row = Row::new(ID, label, "MB/s")
            .chest(figures(reports, zstd, phase))
            .baseline(plain, figures(reports, plain, phase));
        let holds = row.ratio.map(|r| r > 1.0);
        rows.push(row.goal("> 1.00 (faster than uncompressed)", holds));
        rows.push(
            Row::new(ID, label, "MB/s")
                .chest(figures(reports, zstd, phase))
                .baseline(files, figures(reports, files, phase)),
        );
    }
    let raw_mib = p.total_bytes() as f64 / MIB as f64;
    let disk = Row::new(ID, "bytes on disk (lower is better)", "MiB")
        .chest(figures(reports, zstd, "bytes on disk"))
        .baseline(files, figures(reports, files, "bytes on disk"));
    let share = disk.chest.map(|c| c / raw_mib);
    let mut disk = disk.goal(
        format!("≤ {DISK_GOAL} × raw"),
        share.map(|s| s <= DISK_GOAL),
    );
    disk.ratio = share;
    rows.push(disk);
    rows.push(w1::peak_row(ID, p.budget, reports, zstd, files));
    rows
}
