//! W5, compressible values: W1 (1 MiB values, 2 GiB × scale, budget
//! 256 MiB × scale) with values that compress about 4:1 (little-endian `u32`
//! counters with noise), through `zstd+file://`. The limit it is measured
//! against is the zstd library itself, in the same run: the `zstd` side
//! compresses the same values (made the same way) with the layer's level,
//! frame size and checksum setting, then decompresses them in the chest's
//! random read order and checks them, on as many threads as the layer uses
//! for one value; `zstd-1` does the same on one thread (info). The same
//! chest on plain `file://` (`chest-plain`) is there for information.
//! Goals: chest write ≥ 0.85 × zstd's compression speed, read ≥ 0.85 × its
//! decompression speed, bytes stored ≤ 0.3 × raw, peak RSS ≤ budget + 64 MiB.
//!
//! W5-s3 is W6's shape (4 MiB values, 1 GiB × scale, budget 128 MiB × scale)
//! with the same compressible values, through `zstd+s3://` against the same
//! chest on plain `s3://`: goal faster both ways, bytes stored ≤ 0.3 × raw
//! (what the server holds under the run's prefix, listed before cleanup).
//!
//! Needs the `zstd` feature (default on), which links the `zstd+` layer;
//! W5-s3 also the `s3` feature and a server in `CHEST_S3_URL`.

use serde_json::Value;

use super::w1::{chest_write_read, file_url, Params};
use super::{no_such_side, Side};
use crate::common::{remove_dir, Ctx, Phase, Report, Result, Values, MIB};
use crate::report::{figures, peak_row, Row};

const ID: &str = "W5";
const ID_S3: &str = "W5-s3";
/// Goal: bytes stored ≤ 0.3 × the raw bytes.
const STORED_GOAL: f64 = 0.3;
/// Goal: chest throughput ≥ 0.85 × zstd's own, both ways.
const ZSTD_GOAL: f64 = 0.85;

pub fn params(ctx: &Ctx) -> Value {
    let mut v = Params::new(ctx).json();
    v["values_compress"] = "about 4:1 (u32 counters with noise)".into();
    #[cfg(feature = "zstd")]
    {
        let o = chest::zstd::ZstdOptions::default();
        v["zstd_level"] = o.level.into();
        v["zstd_frame_size"] = o.frame_size.into();
        v["zstd_checksum"] = o.checksum.into();
        v["zstd_threads"] = o.threads.into();
    }
    v
}

pub fn params_s3(ctx: &Ctx) -> Value {
    let mut v = super::w6::Params::new(ctx).json();
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
    let mut report = Report::new(ID, side.name(), ctx);
    let raw = p.total_bytes() as f64;
    let report = match side {
        Side::Chest | Side::Plain => {
            let zstd = if side == Side::Chest { "zstd+" } else { "" };
            let loc = format!("{zstd}{}", file_url(&dir)?);
            report.info("location", loc.as_str());
            chest_write_read(ctx, &p, &values, &dir, &loc, report)
        }
        #[cfg(feature = "zstd")]
        Side::Zstd => {
            let threads = chest::zstd::ZstdOptions::default().threads;
            library::run(ctx, &p, &values, threads, report)
        }
        #[cfg(feature = "zstd")]
        Side::Zstd1 => library::run(ctx, &p, &values, 1, report),
        _ => Err(no_such_side(ID, side)),
    };
    remove_dir(&dir);
    let mut report = report?;
    let stored = report
        .info
        .get("bytes_stored")
        .or_else(|| report.info.get("bytes_on_disk"))
        .and_then(Value::as_f64);
    if let Some(b) = stored {
        report
            .phases
            .push(Phase::figure("bytes stored", b / MIB as f64, "MiB"));
        report.info("bytes_stored_per_raw", b / raw);
    }
    Ok(report)
}

pub fn rows(ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let p = Params::new(ctx);
    let chest = Side::Chest.name();
    let zstd = Side::Zstd.name();
    let zstd1 = Side::Zstd1.name();
    let plain = Side::Plain.name();
    let mut rows = Vec::new();
    for (phase, label) in [
        ("write", "insert+flush / zstd compress"),
        ("read", "reopen+get / zstd decompress"),
    ] {
        let row = Row::new(ID, label, "MB/s")
            .chest(figures(reports, chest, phase))
            .baseline(zstd, figures(reports, zstd, phase));
        let holds = row.ratio.map(|r| r >= ZSTD_GOAL);
        rows.push(row.goal(format!("≥ {ZSTD_GOAL:.2} (of the library)"), holds));
    }
    for (phase, label) in [
        ("write", "insert+flush / zstd compress, 1 thread (info)"),
        ("read", "reopen+get / zstd decompress, 1 thread (info)"),
    ] {
        rows.push(
            Row::new(ID, label, "MB/s")
                .chest(figures(reports, chest, phase))
                .baseline(zstd1, figures(reports, zstd1, phase)),
        );
    }
    for (phase, label) in [
        ("write", "insert+flush / plain file:// (info)"),
        ("read", "reopen+get / plain file:// (info)"),
    ] {
        rows.push(
            Row::new(ID, label, "MB/s")
                .chest(figures(reports, chest, phase))
                .baseline(plain, figures(reports, plain, phase)),
        );
    }
    rows.push(stored_row(ID, p.total_bytes(), reports, zstd));
    rows.push(peak_row(
        ID,
        "peak RSS (lower is better)",
        p.budget,
        reports,
        chest,
        plain,
    ));
    rows
}

/// Bytes stored by the chest against `raw` (goal ≤ 0.3 × raw; the ratio
/// column is the chest's bytes / raw), next to `base`'s bytes stored.
fn stored_row(id: &str, raw: u64, reports: &[Report], base: &str) -> Row {
    let raw_mib = raw as f64 / MIB as f64;
    let row = Row::new(id, "bytes stored (ratio: of raw)", "MiB")
        .chest(figures(reports, Side::Chest.name(), "bytes stored"))
        .baseline(base, figures(reports, base, "bytes stored"));
    let share = row.chest.map(|c| c / raw_mib);
    let mut row = row.goal(
        format!(
            "≤ {STORED_GOAL} × raw ({})",
            crate::report::fmt_num(raw_mib)
        ),
        share.map(|s| s <= STORED_GOAL),
    );
    row.ratio = share;
    row.ratio_raw = row.chest_raw.iter().map(|c| c / raw_mib).collect();
    row
}

/// W5-s3: one side, the chest through `zstd+s3://` or plain `s3://`.
pub fn run_s3(side: Side, ctx: &Ctx) -> Result<Report> {
    if !cfg!(feature = "zstd") {
        return Err("W5-s3 needs chest-bench built with the `zstd` feature".into());
    }
    let zstd = match side {
        Side::Chest => true,
        Side::Plain => false,
        _ => return Err(no_such_side(ID_S3, side)),
    };
    let mut report = super::w6::run_chest_s3(ID_S3, side, ctx, zstd)?;
    let raw = super::w6::Params::new(ctx).total_bytes() as f64;
    if let Some(b) = report.info.get("bytes_stored").and_then(Value::as_f64) {
        report
            .phases
            .push(Phase::figure("bytes stored", b / MIB as f64, "MiB"));
        report.info("bytes_stored_per_raw", b / raw);
    }
    Ok(report)
}

pub fn rows_s3(ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let p = super::w6::Params::new(ctx);
    let chest = Side::Chest.name();
    let plain = Side::Plain.name();
    let mut rows = Vec::new();
    for (phase, label) in [
        ("write", "insert+flush / plain s3://"),
        ("read", "reopen+get / plain s3://"),
    ] {
        let row = Row::new(ID_S3, label, "MB/s")
            .chest(figures(reports, chest, phase))
            .baseline(plain, figures(reports, plain, phase));
        let holds = row.ratio.map(|r| r > 1.0);
        rows.push(row.goal("> 1.00 (faster than plain s3://)", holds));
    }
    rows.push(stored_row(ID_S3, p.total_bytes(), reports, plain));
    rows.push(peak_row(
        ID_S3,
        "peak RSS (lower is better)",
        p.budget,
        reports,
        chest,
        plain,
    ));
    rows
}

#[cfg(feature = "zstd")]
mod library {
    //! The limit: the zstd library on the same values, without a chest.

    use std::io::Cursor;

    use zstd::bulk::{Compressor, Decompressor};
    use zstd::zstd_safe;

    use super::Params;
    use crate::common::{measured, shuffled, Ctx, Phase, Report, Result, Values};

    /// One value compressed as the layer stores it: independent frames of
    /// `frame_size` bytes, back to back, and each frame's compressed size.
    struct Packed {
        bytes: Vec<u8>,
        sizes: Vec<u32>,
    }

    /// Runs `f(i, worker_state)` for every `i` in `0..n` on `threads`
    /// threads (thread `t` takes `t, t + threads, …`), each thread with a
    /// state from `init`; returns what each call returned, in order of `i`.
    fn on_threads<S, T: Send>(
        n: usize,
        threads: usize,
        init: impl Fn() -> Result<S> + Sync,
        f: impl Fn(usize, &mut S) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let parts: Vec<Result<Vec<(usize, T)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (init, f) = (&init, &f);
                    s.spawn(move || {
                        let mut state = init()?;
                        (t..n)
                            .step_by(threads)
                            .map(|i| Ok((i, f(i, &mut state)?)))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a zstd thread panicked".into()))
                })
                .collect()
        });
        let mut all: Vec<(usize, T)> = Vec::with_capacity(n);
        for part in parts {
            all.extend(part?);
        }
        all.sort_unstable_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, t)| t).collect())
    }

    /// Compresses every value (made as the chest side makes it) in frames,
    /// then decompresses each into a new buffer in the chest's read order
    /// and checks it. Phases `write` (compression) and `read`
    /// (decompression) in MB/s of uncompressed bytes.
    pub fn run(
        ctx: &Ctx,
        p: &Params,
        values: &Values,
        threads: usize,
        mut report: Report,
    ) -> Result<Report> {
        let opts = chest::zstd::ZstdOptions::default();
        let (level, frame, checksum) = (opts.level, opts.frame_size, opts.checksum);
        let threads = threads.max(1);
        report.info("threads", threads as u64);
        report.info("level", level);
        report.info("frame_size", frame as u64);
        report.info("checksum", checksum);
        let n = p.values as usize;

        let (packed, secs, peak) = measured(|| {
            on_threads(
                n,
                threads,
                || {
                    let mut c = Compressor::new(level)?;
                    c.include_checksum(checksum)?;
                    Ok(c)
                },
                |k, c| {
                    let v = values.make(k as u64);
                    let mut bytes = Vec::with_capacity(zstd_safe::compress_bound(v.len()));
                    let mut sizes = Vec::with_capacity(v.len().div_ceil(frame));
                    for f in v.chunks(frame) {
                        bytes.reserve(zstd_safe::compress_bound(f.len()));
                        let start = bytes.len() as u64;
                        let mut cursor = Cursor::new(&mut bytes);
                        cursor.set_position(start);
                        let len = c.compress_to_buffer(f, &mut cursor)?;
                        sizes.push(u32::try_from(len)?);
                    }
                    Ok(Packed { bytes, sizes })
                },
            )
        })?;
        report
            .phases
            .push(Phase::mb_per_s("write", p.total_bytes(), secs).with_peak(peak));
        let stored: usize = packed.iter().map(|v| v.bytes.len()).sum();
        report.info("bytes_stored", stored as u64);

        let order = shuffled(p.values, ctx.seed ^ u64::from(ctx.rep));
        let ((), secs, peak) = measured(|| {
            on_threads(
                n,
                threads,
                || Ok(Decompressor::new()?),
                |i, d| {
                    let k = order[i];
                    let v = &packed[k as usize];
                    let mut out = vec![0u8; p.value_len];
                    let mut at = 0;
                    for (dst, &len) in out.chunks_mut(frame).zip(&v.sizes) {
                        let src = &v.bytes[at..at + len as usize];
                        at += len as usize;
                        let got = d.decompress_to_buffer(src, dst)?;
                        if got != dst.len() {
                            return Err(format!("zstd: key {k}: a frame decompressed short").into());
                        }
                    }
                    values.verify(k, &out, "zstd")
                },
            )?;
            Ok(())
        })?;
        report
            .phases
            .push(Phase::mb_per_s("read", p.total_bytes(), secs).with_peak(peak));
        Ok(report)
    }
}
