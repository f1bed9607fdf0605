//! What a value in memory saves, per byte of memory it takes, for
//! [`Admission::Frequency`](crate::Admission::Frequency): how often it is
//! wanted times what reading it back costs, over its size. Pure logic.
//!
//! A read from a store costs a fixed latency plus its size over the
//! store's bandwidth ([`ReadCost`](crate::ReadCost), a hint of the
//! backend's). In bytes: `latency_bytes + size`, where `latency_bytes` is
//! what the store moves in the time of its latency. So a value of `count`
//! and `size` bytes saves `count * (latency_bytes + size)` per
//! `size` bytes of memory, which is, up to a constant the same for every
//! value, `count * (1 + latency_bytes / size)`: its [`Worth`].
//!
//! - With no latency (`memory://`, or a store whose reads cost their bytes
//!   alone) the worth is the count: what is kept is what saves the most
//!   bytes read.
//! - With a latency (a local disk: about 100 µs at 1 GB/s, 100 KB; S3:
//!   about 10 ms at 200 MB/s, 2 MB), a value well below `latency_bytes`
//!   is worth its count per byte: small values read often are kept before
//!   large ones read as often, as a read of either costs about the same.
//!
//! Values of one size compare by count alone, as before this existed
//! (same order, same ties).

/// The worth of a value by count and size (see the [module](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Worth {
    latency_bytes: f32,
}

impl Worth {
    /// The worth of reads whose latency costs as much as `latency_bytes`
    /// bytes of transfer.
    pub fn new(latency_bytes: u64) -> Self {
        Self {
            latency_bytes: latency_bytes as f32,
        }
    }

    /// How much a read of a value of `size` bytes costs, per byte, against
    /// a store with no latency (at least 1).
    fn per_byte(self, size: u64) -> f32 {
        1.0 + self.latency_bytes / size.max(1) as f32
    }

    /// The worth of a value wanted `count` times, of `size` bytes.
    pub fn of(self, count: u8, size: u64) -> f32 {
        f32::from(count) * self.per_byte(size)
    }

    /// The count a value of `size` bytes needs to be worth `worth`
    /// (rounded to the nearest, halves up; at most 255). Every miss asks
    /// (W2's reads: 1.7% of the samples when it rounded with `f32::round`,
    /// a call into libm on x86-64 without SSE4.1): a worth is never
    /// negative, so adding a half and truncating rounds the same — in
    /// `f64`, where adding the half to an `f32` is exact (in `f32`,
    /// 0.49999997 + 0.5 rounds to 1) — and the cast saturates at 0 and 255
    /// (a NaN gives 0).
    #[inline]
    pub fn count_for(self, worth: f32, size: u64) -> u8 {
        (f64::from(worth / self.per_byte(size)) + 0.5) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_latency_the_worth_is_the_count() {
        let w = Worth::new(0);
        for size in [1, 100, 4096, 1 << 30] {
            assert_eq!(w.of(7, size), 7.0);
            assert_eq!(w.count_for(7.0, size), 7);
            assert_eq!(w.count_for(6.6, size), 7, "rounded");
        }
    }

    #[test]
    fn a_count_rounds_as_f32_round_does() {
        let round = |w: Worth, worth: f32, size: u64| {
            (worth / w.per_byte(size)).round().clamp(0.0, 255.0) as u8
        };
        for latency in [0, 1, 4096, 100_000, 2 << 20] {
            let w = Worth::new(latency);
            for i in 0..4000u32 {
                // Halves, near-halves, large and tiny worths.
                let worth = i as f32 * 0.25 + (i % 7) as f32 * 1e-3;
                for size in [1, 7, 100, 4096, 65_536, 1 << 30] {
                    assert_eq!(
                        w.count_for(worth, size),
                        round(w, worth, size),
                        "{worth} {size}"
                    );
                }
            }
            let below_half = 0.5 - f32::EPSILON / 4.0; // 0.49999997
            for worth in [
                0.0,
                0.5,
                below_half,
                2.0 + below_half,
                254.5,
                255.4,
                1e9,
                f32::INFINITY,
                f32::NAN,
                -0.0,
            ] {
                assert_eq!(w.count_for(worth, 100), round(w, worth, 100), "{worth}");
            }
        }
    }

    #[test]
    fn small_values_are_worth_more_per_byte_when_reads_cost_a_latency() {
        // A local disk: 100 KB of transfer in the time of the latency.
        let w = Worth::new(100_000);
        // A 1 KiB value read twice against a 64 KiB one read three times.
        assert!(w.of(2, 1024) > w.of(3, 64 << 10));
        // Far above the latency's bytes, size hardly matters.
        let big = w.of(3, 64 << 20) / w.of(3, 128 << 20);
        assert!((1.0..1.01).contains(&big), "{big}");
        // A value of one size: the same order and ties as by count.
        for (a, b) in [(1, 2), (3, 3), (15, 4)] {
            assert_eq!(w.of(a, 4096).partial_cmp(&w.of(b, 4096)), a.partial_cmp(&b));
            assert_eq!(w.count_for(w.of(a, 4096), 4096), a);
        }
        // The count a size needs for a worth.
        let worth = w.of(4, 4096);
        assert_eq!(w.count_for(worth, 4096), 4);
        assert!(w.count_for(worth, 1024) < 4);
        assert!(w.count_for(worth, 64 << 10) > 4);
    }
}
