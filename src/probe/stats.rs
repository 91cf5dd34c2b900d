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

/// The RTTs of a whole phase (idle or loaded) in bounded memory, for the summary's figures.
///
/// Issue 18: the client kept every RTT of a test, 10 a second for as long as it ran (a week at
/// `--duration 0` is 6 million). The first [`RttDigest::EXACT`] samples (6.8 minutes of
/// probes) are kept as they are, so every test up to that length gets the exact nearest-rank
/// figures of [`RttStats::compute`]. Past that they move into a histogram of
/// [`RttDigest::BUCKETS`] buckets: 128 equal ones per power of two from 2^-10 ms (0.98 us)
/// to 2^18 ms (262 s, more than any probe waits), so each is at most 1/128 (0.78 %) of its
/// values wide. A percentile is the middle of the bucket holding the nearest-rank sample,
/// clamped to the exact min and max: within 0.39 % of the exact value (half a bucket), or
/// 0.5 us below 0.98 us. Count, min, mean and max stay exact, and the jitter runs over every
/// sample in order as before. Memory: 32 KiB of samples, then 14 KiB of buckets (the samples
/// are freed), whatever the length of the test.
#[derive(Debug, Clone, Default)]
pub struct RttDigest {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    exact: Vec<f64>,
    buckets: Vec<u32>,
    jitter: Jitter,
}

/// Mantissa bits that pick a bucket within an octave, and the buckets per octave.
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// The histogram's range: 2^-10 ms (0.98 us) to 2^18 ms (262 s), 28 octaves.
const MIN_OCTAVE_MS: f64 = 1.0 / 1024.0;
const MAX_OCTAVE_MS: f64 = 262_144.0;

impl RttDigest {
    /// Samples kept exactly before the histogram takes over.
    pub const EXACT: usize = 4096;
    /// Buckets of the histogram: 28 octaves of [`SUB`], one below and one above.
    pub const BUCKETS: usize = 28 * SUB + 2;

    pub fn new() -> RttDigest {
        RttDigest::default()
    }

    /// Adds samples in arrival order; unusable ones are skipped.
    pub fn extend(&mut self, rtts_ms: &[f64]) {
        for &v in rtts_ms {
            self.push(v);
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, v: f64) {
        if !usable(v) {
            return;
        }
        self.jitter.update(v);
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        if self.buckets.is_empty() {
            if self.exact.len() < Self::EXACT {
                self.exact.push(v);
                return;
            }
            self.buckets = vec![0; Self::BUCKETS];
            for x in std::mem::take(&mut self.exact) {
                self.buckets[bucket(x)] += 1;
            }
        }
        let b = &mut self.buckets[bucket(v)];
        *b = b.saturating_add(1);
    }

    /// Samples held one by one, and histogram buckets: constant once the histogram runs
    /// (for the test that memory stays flat).
    pub fn held(&self) -> (usize, usize) {
        (self.exact.capacity(), self.buckets.len())
    }

    /// The phase's figures; `None` without a usable sample.
    pub fn stats(&self) -> Option<RttStats> {
        if self.buckets.is_empty() {
            return RttStats::compute(&self.exact, &mut Jitter::new());
        }
        let pct = |p: u32| {
            let rank = (u64::from(p) * self.count)
                .div_ceil(100)
                .clamp(1, self.count);
            let mut seen = 0u64;
            for (i, &n) in self.buckets.iter().enumerate() {
                seen += u64::from(n);
                if seen >= rank {
                    // max/min, not f64::clamp: its panic message formats floats with
                    // Debug, 4 KiB of the static binary.
                    return middle(i).max(self.min).min(self.max);
                }
            }
            self.max
        };
        Some(RttStats {
            count: self.count,
            min_ms: self.min,
            avg_ms: self.sum / self.count as f64,
            p50_ms: pct(50),
            p90_ms: pct(90),
            max_ms: self.max,
            jitter_ms: self.jitter.value(),
        })
    }
}

/// The histogram bucket of a usable sample: bucket 0 below 2^-10 ms, then per power of two
/// (octave) [`SUB`] equal buckets, read straight off the float's exponent and top mantissa
/// bits (no `ln`/`powf`: libm code in the static router binary, as export/html.rs notes),
/// the last bucket for everything from 2^18 ms (262 s) up.
fn bucket(v: f64) -> usize {
    if v < MIN_OCTAVE_MS {
        return 0;
    }
    if v >= MAX_OCTAVE_MS {
        return RttDigest::BUCKETS - 1;
    }
    let bits = v.to_bits();
    let octave = ((bits >> 52) & 0x7ff) as usize - (1023 - 10);
    let sub = ((bits >> (52 - SUB_BITS)) as usize) & (SUB - 1);
    1 + octave * SUB + sub
}

/// The middle of a bucket (bucket 0: half of its width).
fn middle(i: usize) -> f64 {
    if i == 0 {
        return MIN_OCTAVE_MS / 2.0;
    }
    let (octave, sub) = ((i - 1) / SUB, (i - 1) % SUB);
    let base = f64::from_bits(((octave + 1023 - 10) as u64) << 52);
    base * (1.0 + (sub as f64 + 0.5) / SUB as f64)
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

    #[test]
    fn digest_is_exact_then_bounded_within_0_4_percent() {
        // A deterministic spread of RTTs from 0.2 ms to ~400 ms (xorshift).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            0.2 * (1.0 + (x % 2000) as f64).powf(1.0 + (x % 7) as f64 / 10.0)
        };
        let all: Vec<f64> = (0..200_000).map(|_| next()).collect();
        let mut d = RttDigest::new();
        // Up to EXACT samples: the very figures of RttStats::compute.
        d.extend(&all[..RttDigest::EXACT]);
        let exact = RttStats::compute(&all[..RttDigest::EXACT], &mut Jitter::new()).unwrap();
        assert_eq!(d.stats().unwrap(), exact);
        // Past it: memory stops growing...
        d.push(all[RttDigest::EXACT]);
        let held = d.held();
        assert_eq!(held, (0, RttDigest::BUCKETS));
        d.extend(&all[RttDigest::EXACT + 1..]);
        assert_eq!(d.held(), held);
        // ...count, min, mean, max and jitter stay exact, p50/p90 within 0.39 %.
        let want = RttStats::compute(&all, &mut Jitter::new()).unwrap();
        let got = d.stats().unwrap();
        assert_eq!(got.count, want.count);
        assert!(close(got.min_ms, want.min_ms) && close(got.max_ms, want.max_ms));
        assert!((got.avg_ms - want.avg_ms).abs() < 1e-6 * want.avg_ms);
        assert!(close(got.jitter_ms, want.jitter_ms));
        for (g, w) in [(got.p50_ms, want.p50_ms), (got.p90_ms, want.p90_ms)] {
            assert!((g - w).abs() <= w / 256.0, "{g} vs {w}");
        }
        // Every bucket's middle lies in that bucket, and a bucket is at most 1/128 wide.
        for i in 1..RttDigest::BUCKETS - 1 {
            let (m, next) = (middle(i), middle(i + 1));
            assert_eq!(bucket(m), i, "bucket {i}");
            assert!(
                next > m && (next - m) / m <= 1.0 / 128.0 + 1e-12,
                "bucket {i}"
            );
        }
        // Unusable samples are skipped; an empty digest has no figures.
        let mut e = RttDigest::new();
        e.extend(&[f64::NAN, -1.0]);
        assert_eq!(e.stats(), None);
        // Extremes land in the end buckets, clamped to what was seen.
        let mut z = RttDigest::new();
        z.extend(&vec![0.0; RttDigest::EXACT]);
        z.extend(&[1e9]);
        let s = z.stats().unwrap();
        assert_eq!((s.min_ms, s.max_ms), (0.0, 1e9));
        assert!(
            s.p50_ms < MIN_OCTAVE_MS,
            "below 0.98 us the error is too: {s:?}"
        );
    }
}
