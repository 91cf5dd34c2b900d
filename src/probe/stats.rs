//! Round-trip statistics of the latency probe: min, mean, percentiles and max of a set of
//! RTTs, and the RFC 3550 interarrival-jitter estimator applied to consecutive RTTs.
//!
//! Owns: the arithmetic and its documented methods. Must not: read a clock, touch a socket,
//! or panic on odd input (an empty slice has no statistics; NaN and infinite samples are
//! skipped, negative ones too, as no RTT is below zero).
//!
//! Percentiles use the nearest-rank method on a sorted copy: the p-th percentile of N
//! samples is the sample of rank ⌈p/100 · N⌉ (1-based, at least 1), so it is always one of
//! the measured values, never an interpolation. With 10 samples p50 is the 5th smallest and
//! p90 the 9th.
//!
//! Jitter ([`Jitter`], RFC 3550 §6.4.1) is the smoothed mean deviation of consecutive RTTs:
//! for each sample after the first, D = RTT(i) − RTT(i−1) and J += (|D| − J) / 16. It is a
//! running estimate that must continue across reporting intervals (a fresh one per interval
//! would restart at 0 each time and never converge), so a consumer keeps one [`Jitter`] per
//! phase (one idle, one under load) and hands it to [`RttStats::compute`] every interval.

/// Summary of the RTTs of one interval (or one phase), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RttStats {
    /// Samples used (finite and non-negative).
    pub count: u64,
    pub min_ms: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
    /// The running jitter estimate after this interval's samples.
    pub jitter_ms: f64,
}

impl RttStats {
    /// Statistics of `rtts_ms`, taken in arrival order; the samples also feed `jitter`, whose
    /// value afterwards is `jitter_ms`. `None` when no usable sample is there (the jitter is
    /// left as it was).
    pub fn compute(rtts_ms: &[f64], jitter: &mut Jitter) -> Option<RttStats> {
        let mut sorted: Vec<f64> = rtts_ms.iter().copied().filter(|v| usable(*v)).collect();
        if sorted.is_empty() {
            return None;
        }
        jitter.feed(rtts_ms);
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let sum: f64 = sorted.iter().sum();
        Some(RttStats {
            count: n as u64,
            min_ms: sorted[0],
            avg_ms: sum / n as f64,
            p50_ms: nearest_rank(&sorted, 50),
            p90_ms: nearest_rank(&sorted, 90),
            max_ms: sorted[n - 1],
            jitter_ms: jitter.value(),
        })
    }
}

/// A sample we can use: an RTT is finite and never negative.
fn usable(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

/// The nearest-rank `pct`-th percentile of a sorted, non-empty slice: the element of 1-based
/// rank ⌈pct · N / 100⌉, clamped to 1..=N. Integer arithmetic, so no float rounding decides
/// the rank.
pub fn nearest_rank(sorted: &[f64], pct: u32) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = (u64::from(pct) * n as u64).div_ceil(100).clamp(1, n as u64) as usize;
    sorted[rank - 1]
}

/// The RFC 3550 §6.4.1 jitter estimator over consecutive RTTs (ms).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Jitter {
    last: Option<f64>,
    j: f64,
}

impl Jitter {
    pub fn new() -> Jitter {
        Jitter::default()
    }

    /// Adds one RTT and returns the new estimate. The first sample only sets the reference
    /// (there is no difference yet); unusable samples are skipped.
    pub fn update(&mut self, rtt_ms: f64) -> f64 {
        if usable(rtt_ms) {
            if let Some(prev) = self.last {
                let d = (rtt_ms - prev).abs();
                self.j += (d - self.j) / 16.0;
            }
            self.last = Some(rtt_ms);
        }
        self.j
    }

    /// Adds samples in order.
    pub fn feed(&mut self, rtts_ms: &[f64]) {
        for &v in rtts_ms {
            self.update(v);
        }
    }

    /// The current estimate (0 until two samples have been seen).
    pub fn value(&self) -> f64 {
        self.j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn empty_and_unusable_give_none() {
        let mut j = Jitter::new();
        assert_eq!(RttStats::compute(&[], &mut j), None);
        assert_eq!(
            RttStats::compute(&[f64::NAN, f64::INFINITY, -1.0], &mut j),
            None
        );
        assert_eq!(j, Jitter::new());
        assert!(nearest_rank(&[], 50).is_nan());
    }

    #[test]
    fn nearest_rank_table() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let four = [1.0, 2.0, 3.0, 4.0];
        let cases: &[(&[f64], u32, f64)] = &[
            (&[7.0], 0, 7.0),
            (&[7.0], 50, 7.0),
            (&[7.0], 100, 7.0),
            (&ten, 0, 1.0),
            (&ten, 10, 1.0),
            (&ten, 11, 2.0),
            (&ten, 50, 5.0),
            (&ten, 90, 9.0),
            (&ten, 91, 10.0),
            (&ten, 100, 10.0),
            (&four, 50, 2.0),
            (&four, 51, 3.0),
            (&four, 90, 4.0),
            (&four, 200, 4.0),
        ];
        for &(s, p, want) in cases {
            assert_eq!(nearest_rank(s, p), want, "p{p} of {s:?}");
        }
    }

    #[test]
    fn rtt_stats_table() {
        // (samples in arrival order, count, min, avg, p50, p90, max)
        type Case = (&'static [f64], u64, f64, f64, f64, f64, f64);
        let cases: &[Case] = &[
            (&[5.0], 1, 5.0, 5.0, 5.0, 5.0, 5.0),
            (&[3.0, 1.0, 2.0], 3, 1.0, 2.0, 2.0, 3.0, 3.0),
            (
                &[10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0],
                10,
                1.0,
                5.5,
                5.0,
                9.0,
                10.0,
            ),
            // Unusable samples are skipped, not counted.
            (&[f64::NAN, 4.0, -3.0, 2.0], 2, 2.0, 3.0, 2.0, 4.0, 4.0),
            (
                &[0.25, 0.25, 0.25, 40.0],
                4,
                0.25,
                10.1875,
                0.25,
                40.0,
                40.0,
            ),
        ];
        for &(s, count, min, avg, p50, p90, max) in cases {
            let got = RttStats::compute(s, &mut Jitter::new()).unwrap();
            assert_eq!(got.count, count, "{s:?}");
            assert!(close(got.min_ms, min), "{s:?} min {got:?}");
            assert!(close(got.avg_ms, avg), "{s:?} avg {got:?}");
            assert!(close(got.p50_ms, p50), "{s:?} p50 {got:?}");
            assert!(close(got.p90_ms, p90), "{s:?} p90 {got:?}");
            assert!(close(got.max_ms, max), "{s:?} max {got:?}");
        }
    }

    #[test]
    fn jitter_table() {
        // (samples, expected J after them), worked by hand from J += (|D| - J) / 16.
        let cases: &[(&[f64], f64)] = &[
            (&[], 0.0),
            (&[10.0], 0.0),
            (&[10.0, 10.0, 10.0], 0.0),
            // D = 16: J = 16/16 = 1.
            (&[10.0, 26.0], 1.0),
            // D = 16 then 16: J = 1, then 1 + (16 - 1)/16 = 1.9375.
            (&[10.0, 26.0, 10.0], 1.9375),
            // Then D = 0: 1.9375 - 1.9375/16 = 1.81640625.
            (&[10.0, 26.0, 10.0, 10.0], 1.816_406_25),
            // A NaN in between is skipped: the difference is taken to the last usable one.
            (&[10.0, f64::NAN, 26.0], 1.0),
        ];
        for &(s, want) in cases {
            let mut j = Jitter::new();
            j.feed(s);
            assert!(close(j.value(), want), "{s:?}: {}", j.value());
        }
    }

    #[test]
    fn jitter_runs_across_intervals() {
        // Two intervals through one estimator equal one interval with all the samples: the
        // first sample of the second interval is differenced against the last of the first.
        let a = [10.0, 12.0, 11.0];
        let b = [15.0, 14.0];
        let mut split = Jitter::new();
        let s1 = RttStats::compute(&a, &mut split).unwrap();
        let s2 = RttStats::compute(&b, &mut split).unwrap();
        let mut whole = Jitter::new();
        whole.feed(&[10.0, 12.0, 11.0, 15.0, 14.0]);
        assert!(close(s2.jitter_ms, whole.value()));
        assert!(s1.jitter_ms < s2.jitter_ms);
        // An interval without samples leaves the estimate alone.
        assert_eq!(RttStats::compute(&[], &mut split), None);
        assert!(close(split.value(), whole.value()));
    }
}
