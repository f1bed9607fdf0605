//! W3, memory hits: 100,000 × scale values of 1 KiB, a budget large enough
//! for all of them; 10,000,000 × scale uniform random `get`s on 1 thread,
//! then the same number split over 2 threads. Baseline: a
//! `Mutex<HashMap<u64, Arc<Vec<u8>>>>` doing the same gets.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use chest::{Chest, ChestBuilder, Raw};
use serde_json::Value;

use super::{no_such_side, params_json, time_goal, Side};
use crate::common::{stats_json, timed, Ctx, Phase, Report, Result, Rng, Values, KIB};
use crate::report::{figures, Row};

const ID: &str = "W3";
/// Goal on 1 thread: chest time ≤ 1.5 × baseline time.
const TIME_FACTOR: f64 = 1.5;
/// Goal on 2 threads: chest throughput ≥ 2 × baseline throughput.
const THREADS_FACTOR: f64 = 2.0;
const VALUE_LEN: usize = KIB;
const PHASES: [(&str, usize); 2] = [("get 1 thread", 1), ("get 2 threads", 2)];

pub struct Params {
    pub values: u64,
    pub gets: u64,
}

impl Params {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            values: ctx.count(100_000.0, 1),
            gets: ctx.count(1e7, 2),
        }
    }

    pub fn json(&self) -> Value {
        params_json(&[
            ("values", self.values as f64),
            ("value_bytes", VALUE_LEN as f64),
            ("gets", self.gets as f64),
        ])
    }
}

/// Runs `gets` uniform random lookups split over `threads`; returns the seconds.
fn hammer(threads: usize, p: &Params, seed: u64, get: impl Fn(u64) + Sync) -> Result<f64> {
    let per = p.gets / threads as u64;
    let ((), secs) = timed(|| {
        std::thread::scope(|s| {
            for t in 0..threads {
                let get = &get;
                s.spawn(move || {
                    let mut rng = Rng::new(seed ^ ((t as u64 + 1) << 40));
                    for _ in 0..per {
                        get(rng.below(p.values));
                    }
                });
            }
        });
        Ok(())
    })?;
    Ok(secs)
}

/// The gets [`hammer`] makes: `gets` rounded down to a multiple of `threads`.
fn done(p: &Params, threads: usize) -> u64 {
    p.gets / threads as u64 * threads as u64
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    let p = Params::new(ctx);
    let values = Values::new(VALUE_LEN, ctx.seed);
    let mut report = Report::new(ID, side.name(), ctx);
    let seed = ctx.seed ^ u64::from(ctx.rep);
    match side {
        Side::Chest => {
            // Room for every value with a wide margin: nothing is ever spilled.
            let budget = (p.values as usize * (VALUE_LEN + 64) * 2).max(1 << 20);
            let c: Chest<u64, Vec<u8>, Raw> = ChestBuilder::new()
                .serializer(Raw)
                .memory_budget(budget)
                .open("memory://")?;
            for k in 0..p.values {
                c.insert(k, values.make(k))?;
            }
            for (phase, threads) in PHASES {
                let secs = hammer(threads, &p, seed, |k| {
                    black_box(c.get(&k).ok().flatten());
                })?;
                report
                    .phases
                    .push(Phase::ops_per_s(phase, done(&p, threads), secs));
            }
            let stats = c.stats();
            if stats.misses > 0 || stats.spills > 0 {
                return Err(format!("chest: the values did not stay in memory: {stats}").into());
            }
            report.info("stats", stats_json(&stats));
        }
        Side::Mutex => {
            let map: Mutex<HashMap<u64, Arc<Vec<u8>>>> = Mutex::new(
                (0..p.values)
                    .map(|k| (k, Arc::new(values.make(k))))
                    .collect(),
            );
            for (phase, threads) in PHASES {
                let secs = hammer(threads, &p, seed, |k| {
                    black_box(map.lock().unwrap().get(&k).cloned());
                })?;
                report
                    .phases
                    .push(Phase::ops_per_s(phase, done(&p, threads), secs));
            }
        }
        _ => return Err(no_such_side(ID, side)),
    }
    Ok(report)
}

pub fn rows(_ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    PHASES
        .iter()
        .map(|&(phase, threads)| {
            let row = Row::new(ID, phase, "ops/s")
                .chest(figures(reports, Side::Chest.name(), phase))
                .baseline(
                    Side::Mutex.name(),
                    figures(reports, Side::Mutex.name(), phase),
                );
            if threads == 1 {
                let need = time_goal(TIME_FACTOR);
                let holds = row.ratio.map(|r| r >= need);
                row.goal(format!("≥ {need:.2} (time ≤ {TIME_FACTOR}×)"), holds)
            } else {
                let holds = row.ratio.map(|r| r >= THREADS_FACTOR);
                row.goal(format!("≥ {THREADS_FACTOR:.2} (throughput)"), holds)
            }
        })
        .collect()
}
