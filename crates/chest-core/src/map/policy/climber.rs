//! How large the window of loads on probation is
//! ([`Keep::Window`](super::frequency::Keep::Window)): a hill climber on
//! the hit rate, as Caffeine sizes W-TinyLFU's window. Pure logic: the
//! chest feeds it the hits and gets of each sample and hands the share it
//! returns to its shards.
//!
//! Some traces reward recency (a value read again soon after it is first
//! read, as in a database's or a web server's accesses), others frequency
//! (a stable popular set, a loop over more values than fit). A large window
//! serves the first, a small one the second; no fixed share serves both.
//! So the share moves by a step after each sample of gets: on in the same
//! direction while the hit rate does not fall, back when it falls. The
//! step shrinks a little each sample (the share settles), and starts over
//! at its full size when the hit rate jumps (the workload changed).

/// The share a chest starts with (Caffeine's: 1%).
pub(crate) const START: f64 = 0.01;
/// The largest share: the rest of memory stays for the values that won
/// their place by count.
pub(crate) const MAX: f64 = 0.8;
/// The full step, in share of the values in memory.
const STEP: f64 = 0.0625;
/// A change of hit rate (in share of gets) from one sample to the next
/// that starts the steps over at their full size.
const RESTART: f64 = 0.05;
/// What each sample keeps of the step.
const DECAY: f64 = 0.98;

/// The climber's state (see the [module](self)).
#[derive(Debug, Clone)]
pub(crate) struct Climber {
    share: f64,
    /// The next move, signed.
    step: f64,
    /// The hit rate of the last sample.
    previous: Option<f64>,
}

impl Default for Climber {
    fn default() -> Self {
        Self {
            share: START,
            step: STEP,
            previous: None,
        }
    }
}

impl Climber {
    /// The window's share of the values in memory, between 0 and [`MAX`].
    #[cfg(test)]
    pub fn share(&self) -> f64 {
        self.share
    }

    /// Forgets the last sample's hit rate (the next sample only measures):
    /// what comes next is not comparable with it.
    pub fn forget(&mut self) {
        self.previous = None;
    }

    /// A sample ended: `hits` of its `gets` were served from memory. Moves
    /// the share and returns it.
    pub fn sampled(&mut self, hits: u64, gets: u64) -> f64 {
        if gets == 0 {
            return self.share;
        }
        let rate = hits as f64 / gets as f64;
        let Some(previous) = self.previous.replace(rate) else {
            return self.share; // the first sample: nothing to compare with
        };
        let change = rate - previous;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART {
            STEP.copysign(amount)
        } else {
            amount * DECAY
        };
        self.share = (self.share + amount).clamp(0.0, MAX);
        self.share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `samples` samples of 10,000 gets whose hit rate is
    /// `rate(share)`; returns the shares after each.
    fn climb(samples: usize, rate: impl Fn(f64) -> f64) -> Vec<f64> {
        let mut c = Climber::default();
        (0..samples)
            .map(|_| {
                let hits = (rate(c.share()) * 10_000.0) as u64;
                c.sampled(hits, 10_000)
            })
            .collect()
    }

    #[test]
    fn the_share_climbs_while_a_larger_window_hits_more() {
        let shares = climb(40, |w| 0.2 + 0.5 * w);
        assert!(shares.windows(2).all(|s| s[1] >= s[0]), "{shares:?}");
        assert_eq!(*shares.last().unwrap(), MAX);
    }

    #[test]
    fn the_share_settles_near_the_best_window() {
        // The hit rate peaks at a window of 30%.
        let shares = climb(300, |w| 0.6 - (w - 0.3).abs());
        let tail = &shares[200..];
        for s in tail {
            assert!((s - 0.3).abs() <= 0.1, "{s} in {tail:?}");
        }
    }

    #[test]
    fn the_share_stays_small_when_a_window_costs_hits() {
        let shares = climb(100, |w| 0.8 - 0.5 * w);
        let mean = shares[50..].iter().sum::<f64>() / 50.0;
        assert!(mean <= 0.1, "{mean} in {shares:?}");
        assert!(shares.iter().all(|s| (0.0..=MAX).contains(s)));
    }

    #[test]
    fn a_jump_in_the_hit_rate_restarts_the_full_step() {
        let mut c = Climber::default();
        let mut last = c.share();
        let mut moves = Vec::new();
        for _ in 0..5 {
            c.sampled(5000, 10_000); // flat: on, by a decaying step
            moves.push(c.share() - last);
            last = c.share();
        }
        assert_eq!(moves[0], 0.0, "the first sample only measures");
        assert!((moves[1] - STEP).abs() < 1e-9, "{moves:?}");
        assert!(moves[1..].windows(2).all(|m| m[1] < m[0]), "{moves:?}");
        c.sampled(9000, 10_000); // +40 points: the workload changed
        last = c.share();
        c.sampled(9000, 10_000);
        assert!(
            (c.share() - last - STEP).abs() < 1e-9,
            "the full step again"
        );
        // No gets: nothing moves.
        let s = c.share();
        assert_eq!(c.sampled(0, 0), s);
    }
}
