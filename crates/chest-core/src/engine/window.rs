//! How much of memory the windows of loads on probation may hold, for the
//! whole chest ([`Admission::Frequency`](crate::Admission::Frequency)): the
//! [`Climber`] fed with the chest's hits and gets, one sample at a time.
//!
//! A sample is ten gets per value in memory (Caffeine's). It is closed by
//! the first miss past its end (a run of hits changes nothing a window
//! decides), by whichever thread takes the climber's lock first; the
//! others go on (the lock is only tried, never waited for). The share is
//! read without a lock by every miss.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::map::policy::climber::{Climber, START};

/// The share, in 1/65536ths of the values in memory.
const ONE: f64 = 65536.0;

/// Gets in a sample per value in memory.
const GETS_PER_VALUE: u64 = 10;
/// Gets in a sample, at least: the hit rate of a sample of n gets is known
/// to about 0.5/sqrt(n), 0.004 here; a smaller sample would move the share
/// by its noise.
const MIN_SAMPLE: u64 = 16 * 1024;

/// The chest's window share and its sampling (see the [module](self)).
#[derive(Debug)]
pub(crate) struct WindowShare {
    share: AtomicU32,
    /// The gets at which the current sample ends (0: none began).
    ends: AtomicU64,
    sample: Mutex<Sample>,
}

#[derive(Debug, Default)]
struct Sample {
    climber: Climber,
    /// The hits and gets when the sample began (`None` before the first).
    began: Option<(u64, u64)>,
}

impl Default for WindowShare {
    fn default() -> Self {
        Self {
            share: AtomicU32::new((START * ONE) as u32),
            ends: AtomicU64::new(0),
            sample: Mutex::new(Sample::default()),
        }
    }
}

impl WindowShare {
    /// The share of the values in memory the windows may hold.
    pub fn share(&self) -> f64 {
        f64::from(self.share.load(Relaxed)) / ONE
    }

    /// A miss, when the chest has served `gets` gets so far, `hits` of
    /// them from memory, and holds `resident` values, memory `full` or
    /// not: closes the sample if it is over (and moves the share), else
    /// nothing.
    pub fn missed(&self, hits: u64, gets: u64, resident: usize, full: bool) {
        if full && gets < self.ends.load(Relaxed) {
            return;
        }
        if !full {
            // Memory is filling: the hit rate climbs whatever the window
            // does. Sampling begins when it is full.
            if self.ends.load(Relaxed) != 0 {
                if let Ok(mut sample) = self.sample.try_lock() {
                    sample.began = None;
                    sample.climber.forget();
                    self.ends.store(0, Relaxed);
                }
            }
            return;
        }
        let Ok(mut sample) = self.sample.try_lock() else {
            return; // another thread is closing it
        };
        if gets < self.ends.load(Relaxed) {
            return; // closed meanwhile
        }
        if let Some((h0, g0)) = sample.began {
            // The two counters are read apart: clamp the hits to the gets.
            let g = gets.saturating_sub(g0);
            let h = hits.saturating_sub(h0).min(g);
            let share = sample.climber.sampled(h, g);
            self.share.store((share * ONE) as u32, Relaxed);
        }
        sample.began = Some((hits, gets));
        let len = (resident as u64 * GETS_PER_VALUE).max(MIN_SAMPLE);
        self.ends.store(gets + len, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_moves_once_per_sample_of_ten_gets_per_value() {
        let w = WindowShare::default();
        assert!((w.share() - START).abs() < 1e-4);
        // 4,000 values in memory: samples of 40,000 gets. The first miss
        // begins one.
        w.missed(0, 1, 4000, true);
        w.missed(20_000, 30_000, 4000, true);
        assert!((w.share() - START).abs() < 1e-4, "the sample is not over");
        w.missed(36_000, 40_001, 4000, true);
        assert!((w.share() - START).abs() < 1e-4, "the first only measures");
        w.missed(72_000, 80_001, 4000, true);
        let first = w.share();
        assert!(first > START, "as many hits: the share moves up: {first}");
        w.missed(80_000, 100_000, 4000, true);
        assert_eq!(w.share(), first, "the next sample is not over");
        // Fewer hits in the next sample: the share goes back.
        w.missed(100_000, 120_001, 4000, true);
        assert!(w.share() < first, "{} after {first}", w.share());
    }

    #[test]
    fn a_small_memory_samples_sixteen_thousand_gets() {
        let w = WindowShare::default();
        w.missed(0, 1, 10, true);
        w.missed(500, 1000, 10, true);
        assert!((w.share() - START).abs() < 1e-4, "not 10 gets per value");
        w.missed(9000, MIN_SAMPLE + 1, 10, true);
        w.missed(18_000, 2 * MIN_SAMPLE + 1, 10, true);
        assert!(w.share() > START);
    }

    #[test]
    fn sampling_waits_for_memory_to_be_full() {
        let w = WindowShare::default();
        // Filling: nothing sampled, however many gets.
        w.missed(0, 1, 4000, false);
        w.missed(10_000, 100_000, 4000, false);
        assert!((w.share() - START).abs() < 1e-4);
        // Full: a sample begins now, not at the first get.
        w.missed(10_000, 100_000, 4000, true);
        w.missed(40_000, 130_000, 4000, true);
        assert!((w.share() - START).abs() < 1e-4, "begun at 100,000");
        w.missed(50_000, 140_001, 4000, true);
        w.missed(90_000, 180_001, 4000, true);
        assert!(w.share() > START);
        // Room again (values removed): the next full memory samples anew.
        w.missed(90_000, 190_000, 4000, false);
        let s = w.share();
        w.missed(90_000, 200_000, 4000, true);
        w.missed(100_000, 230_000, 4000, true);
        assert_eq!(w.share(), s, "a new sample began at 200,000");
        w.missed(140_000, 240_001, 4000, true);
        assert_eq!(w.share(), s, "and it only measures");
    }
}
