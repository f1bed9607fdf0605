//! W7, eviction quality: the chest (`Admission::Frequency`, the default;
//! `memory://`, the caller writing) replays synthetic traces of gets over spilled values,
//! and its loads are compared with Belady's offline optimum and the
//! popularity oracle on the same trace (`chest_core::testing::traces`; the
//! first 20% of each trace and every key's first get not counted). No
//! timing: what the policy costs on the hit path is W3's figure, per key
//! W4's. The full grid of WORKLOADS.md (three Zipf exponents × four memory
//! sizes × three size mixes) is `cargo test -p chest-core --features
//! testing --release --test eviction_quality -- --ignored --nocapture`.

use chest_core::testing::traces::{belady, oracle, replay, Loads, Scans, Sizes, Trace};
use chest_core::Admission;
use serde_json::{json, Value};

use super::{no_such_side, params_json, Side};
use crate::common::{Ctx, Phase, Report, Result};
use crate::report::{figures, Row};

const ID: &str = "W7";

pub struct Params {
    pub keys: u32,
    pub gets: usize,
}

impl Params {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            keys: ctx.count(50_000.0, 2_000) as u32,
            gets: ctx.count(1e6, 50_000) as usize,
        }
    }

    pub fn json(&self) -> Value {
        params_json(&[("keys", f64::from(self.keys)), ("gets", self.gets as f64)])
    }
}

/// One row of W7: a trace, the memory for it, the yardstick and the goal.
struct Case {
    phase: &'static str,
    trace: Trace,
    memory_share: f64,
    /// Compared with the oracle (else with Belady).
    vs_oracle: bool,
    /// Compared in bytes loaded (else in values).
    bytes: bool,
}

/// W7's rows and their goals (WORKLOADS.md), in the order of [`cases`].
const ROWS: [(&str, f64); 5] = [
    ("zipf 0.99, 10%, 4 KiB: loads vs oracle", 1.05),
    ("zipf 0.99, 10%, 1-64 KiB: bytes vs oracle", 1.05),
    ("loop over 1.25x memory: loads vs Belady", 1.1),
    ("zipf + scans: loads vs Belady", 1.25),
    ("shifting hot set: loads vs Belady", 1.6),
];

fn cases(p: &Params, seed: u64) -> Vec<Case> {
    let kib4 = Sizes::Uniform(4096);
    let mixed = Sizes::LogUniform {
        min: 1024,
        max: 64 << 10,
    };
    let n = p.keys;
    vec![
        Case {
            phase: ROWS[0].0,
            trace: Trace::zipf(n, 0.99, p.gets, kib4, seed),
            memory_share: 0.10,
            vs_oracle: true,
            bytes: false,
        },
        Case {
            phase: ROWS[1].0,
            trace: Trace::zipf(n, 0.99, p.gets, mixed, seed + 1),
            memory_share: 0.10,
            vs_oracle: true,
            bytes: true,
        },
        Case {
            phase: ROWS[2].0,
            trace: Trace::cycle(n / 4, p.gets / 2, kib4),
            memory_share: 0.8,
            vs_oracle: false,
            bytes: false,
        },
        Case {
            phase: ROWS[3].0,
            trace: Trace::zipf_with_scans(
                n,
                0.99,
                p.gets,
                // The same range of 0.4 n keys read in order every
                // tenth of the trace (a batch job over a table), between
                // the gets of the Zipf keys.
                Scans {
                    every: p.gets / 10,
                    len: n * 2 / 5,
                    keys: n * 2 / 5,
                },
                kib4,
                seed + 2,
            ),
            memory_share: 0.10,
            vs_oracle: false,
            bytes: false,
        },
        Case {
            phase: ROWS[4].0,
            trace: Trace::shifting(n, 0.99, p.gets, p.gets / 5, kib4, seed + 3),
            memory_share: 0.10,
            vs_oracle: false,
            bytes: false,
        },
    ]
}

fn counts(l: Loads) -> Value {
    json!({"values": l.count, "bytes": l.bytes})
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    if side != Side::Chest {
        return Err(no_such_side(ID, side));
    }
    let p = Params::new(ctx);
    let mut report = Report::new(ID, side.name(), ctx);
    for case in cases(&p, ctx.seed ^ u64::from(ctx.rep)) {
        let t = &case.trace;
        let capacity = (t.data_bytes() as f64 * case.memory_share) as u64;
        let warmup = t.gets.len() / 5;
        let chest = replay(t, capacity, warmup, |b| b.admission(Admission::Frequency))?;
        let best = belady(t, capacity, warmup);
        let popular = oracle(t, capacity, warmup, case.bytes);
        let base = if case.vs_oracle { popular } else { best };
        let (values, bytes) = chest.ratio(base);
        let ratio = if case.bytes { bytes } else { values };
        report.phases.push(Phase::figure(case.phase, ratio, "x"));
        report.info(
            case.phase,
            json!({
                "chest": counts(chest),
                "belady": counts(best),
                "oracle": counts(popular),
                "capacity_bytes": capacity,
            }),
        );
    }
    Ok(report)
}

pub fn rows(_ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let chest = Side::Chest.name();
    ROWS.iter()
        .map(|&(phase, goal)| {
            let row = Row::new(ID, phase, "x").chest(figures(reports, chest, phase));
            let holds = row.chest.map(|r| r <= goal);
            row.goal(format!("<= {goal}x"), holds)
        })
        .collect()
}
