//! W4, reopen: a flushed chest of 1,000,000 × scale values of 100 B (built
//! once by the setup run); each repetition, in a fresh process, opens it and
//! gets one random key. Figures: open + first get in seconds (goal < 0.2 s),
//! and index memory per key, the growth of resident memory (`VmRSS`) across
//! the open divided by the key count (goal < 48 B). No baseline.

use chest::{Chest, ChestBuilder, Raw};
use serde_json::Value;

use super::{no_such_side, params_json, Side};
use crate::common::{
    location, peak_rss, reset_peak, rss, stats_json, timed, Ctx, Phase, Report, Result, Rng,
    Values, MIB,
};
use crate::report::{figures, Row};

const ID: &str = "W4";
/// The scratch directory of the chest the repetitions reopen.
pub const DIR: &str = "w4-chest";
const VALUE_LEN: usize = 100;
const OPEN_GOAL_S: f64 = 0.2;
const INDEX_GOAL_B: f64 = 48.0;

pub struct Params {
    pub keys: u64,
    pub budget: usize,
}

impl Params {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            keys: ctx.count(1e6, 1),
            budget: ((16.0 * MIB as f64 * ctx.scale) as usize).max(MIB),
        }
    }

    pub fn json(&self) -> Value {
        params_json(&[
            ("keys", self.keys as f64),
            ("value_bytes", VALUE_LEN as f64),
            ("budget_bytes", self.budget as f64),
        ])
    }
}

fn open(loc: &str, budget: usize) -> Result<Chest<u64, Vec<u8>, Raw>> {
    Ok(ChestBuilder::new()
        .serializer(Raw)
        .memory_budget(budget)
        .open(loc)?)
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    let p = Params::new(ctx);
    let values = Values::new(VALUE_LEN, ctx.seed);
    let dir = ctx.dir.join(DIR);
    let loc = location(&dir)?;
    let mut report = Report::new(ID, side.name(), ctx);
    match side {
        Side::Setup => {
            let dir = ctx.fresh_dir(DIR)?;
            let ((), secs) = timed(|| {
                let c = open(&location(&dir)?, p.budget)?;
                for k in 0..p.keys {
                    c.insert(k, values.make(k))?;
                }
                c.close()?;
                Ok(())
            })?;
            report.phases.push(Phase::ops_per_s("build", p.keys, secs));
        }
        Side::Chest => {
            let key = Rng::new(ctx.seed ^ u64::from(ctx.rep)).below(p.keys);
            // The newest manifest (names sort by number).
            let newest = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("manifest."))
                })
                .max()
                .ok_or("chest: no manifest written")?;
            let manifest = std::fs::metadata(newest)?.len();
            // Everything else is allocated before the first measure.
            let before = rss().ok_or("no VmRSS in /proc/self/status")?;
            reset_peak();
            let ((c, after_open), open_secs) = timed(|| {
                let c = open(&loc, p.budget)?;
                Ok((c, rss()))
            })?;
            let open_peak = peak_rss();
            let (v, get_secs) = timed(|| {
                c.get(&key)?
                    .ok_or_else(|| format!("chest: key {key} is missing").into())
            })?;
            values.verify(key, &v, "chest")?;
            let after_get = rss();
            if c.len() as u64 != p.keys {
                return Err(format!("chest: {} keys reopened, {} written", c.len(), p.keys).into());
            }
            let per_key = |b: Option<u64>| {
                b.map_or(f64::NAN, |b| {
                    b.saturating_sub(before) as f64 / p.keys as f64
                })
            };
            report
                .phases
                .push(Phase::figure("open+first get", open_secs + get_secs, "s"));
            report
                .phases
                .push(Phase::figure("index memory", per_key(after_open), "B/key"));
            report.phases.push(Phase::figure(
                "manifest size",
                manifest as f64 / MIB as f64,
                "MiB",
            ));
            report.info("open_seconds", open_secs);
            report.info("first_get_seconds", get_secs);
            report.info("rss_before", before);
            report.info("rss_after_open", after_open);
            report.info("rss_after_first_get", after_get);
            report.info("open_peak_bytes_per_key", per_key(open_peak));
            report.info("manifest_bytes", manifest);
            report.info("manifest_bytes_per_key", manifest as f64 / p.keys as f64);
            report.info("stats", stats_json(&c.stats()));
            // Read-only use: nothing to flush; dropping it is not measured.
            drop(v);
        }
        _ => return Err(no_such_side(ID, side)),
    }
    Ok(report)
}

pub fn rows(_ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let chest = Side::Chest.name();
    let open = Row::new(ID, "open+first get (lower is better)", "s").chest(figures(
        reports,
        chest,
        "open+first get",
    ));
    let holds = open.chest.map(|s| s < OPEN_GOAL_S);
    let index = Row::new(ID, "index memory (lower is better)", "B/key").chest(figures(
        reports,
        chest,
        "index memory",
    ));
    let index_holds = index.chest.map(|b| b < INDEX_GOAL_B);
    vec![
        open.goal(format!("< {OPEN_GOAL_S} s"), holds),
        index.goal(format!("< {INDEX_GOAL_B} B/key"), index_holds),
        Row::new(ID, "manifest size", "MiB").chest(figures(reports, chest, "manifest size")),
    ]
}
