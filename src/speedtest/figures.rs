//! Pure figures of `btest speed-test`: a phase's latency figures from its probe RTTs, the
//! responsiveness (RPM) with its rating and confidence, the bufferbloat grade, and the
//! RouterOS `/tool speed-test` fields. docs/field.md explains each with its source.
//!
//! Owns: the arithmetic and the documented methods (nearest rank as `probe::stats`, IQM as
//! Ookla, jitter as Ookla's mean |Δ|, the draft's single-sided trimmed mean and ratings, the
//! DSLReports grade scale). Must not: read a clock, touch a socket, format for a particular
//! output (report/speedtest.rs does), or panic on odd input: NaN, infinite and negative
//! samples are skipped, an empty set has no figures.

use crate::probe::stats::nearest_rank;

/// The latency figures of one set of RTTs (ms), in send order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// Samples used.
    pub count: u64,
    pub low: f64,
    pub high: f64,
    pub mean: f64,
    /// Interquartile mean: the mean of the middle 50 % (see [`iqm`]).
    pub iqm: f64,
    /// Mean |Δ| of consecutive RTTs (Ookla's jitter; 0 with one sample).
    pub jitter: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// Single-sided trimmed mean at the 95th percentile (see [`trimmed95`]).
    pub trimmed95: f64,
}

fn usable(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl Stats {
    /// The figures of `rtts_ms` (send or arrival order, for the jitter); `None` without a
    /// usable sample.
    pub fn of(rtts_ms: &[f64]) -> Option<Stats> {
        let inorder: Vec<f64> = rtts_ms.iter().copied().filter(|v| usable(*v)).collect();
        if inorder.is_empty() {
            return None;
        }
        let mut s = inorder.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        Some(Stats {
            count: n as u64,
            low: s[0],
            high: s[n - 1],
            mean: mean(&s),
            iqm: iqm(&s),
            jitter: jitter(&inorder),
            p50: nearest_rank(&s, 50),
            p90: nearest_rank(&s, 90),
            p99: nearest_rank(&s, 99),
            trimmed95: trimmed95(&s),
        })
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Interquartile mean of a sorted slice: drop ⌊N/4⌋ samples at each end and average the rest
/// (with fewer than 4 samples nothing is dropped). Ookla's `iqm`.
pub fn iqm(sorted: &[f64]) -> f64 {
    let q = sorted.len() / 4;
    mean(&sorted[q..sorted.len() - q])
}

/// Mean absolute difference of consecutive samples, in the order given (Ookla's jitter);
/// 0 for fewer than two.
pub fn jitter(inorder: &[f64]) -> f64 {
    if inorder.len() < 2 {
        return 0.0;
    }
    let sum: f64 = inorder.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    sum / (inorder.len() - 1) as f64
}

/// The draft's single-sided trimmed mean at the 95th percentile of a sorted slice: the mean
/// of the samples up to the nearest-rank 95th percentile, i.e. the ⌈0.95·N⌉ smallest (so
/// under 20 samples nothing is dropped).
pub fn trimmed95(sorted: &[f64]) -> f64 {
    let k = (95 * sorted.len()).div_ceil(100).max(1).min(sorted.len());
    mean(&sorted[..k])
}

/// Round trips per minute of an RTT in ms: 60000 / RTT; `None` for no or a zero RTT.
pub fn rpm(rtt_ms: Option<f64>) -> Option<f64> {
    rtt_ms
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| 60_000.0 / r)
}

/// The draft's overall RPM: the mean of the foreign and the self probes' RPM, or the one
/// there is.
pub fn combined_rpm(foreign: Option<f64>, own: Option<f64>) -> Option<f64> {
    match (foreign, own) {
        (Some(f), Some(s)) => Some((f + s) / 2.0),
        (f, s) => f.or(s),
    }
}

/// The draft's rating of an RPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    Poor,
    Fair,
    Good,
    Excellent,
}

impl Rating {
    /// Poor < 300, Fair 300-1000, Good 1000-6000, Excellent >= 6000.
    pub fn of(rpm: f64) -> Rating {
        if rpm >= 6000.0 {
            Rating::Excellent
        } else if rpm >= 1000.0 {
            Rating::Good
        } else if rpm >= 300.0 {
            Rating::Fair
        } else {
            Rating::Poor
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Poor => "Poor",
            Rating::Fair => "Fair",
            Rating::Good => "Good",
            Rating::Excellent => "Excellent",
        }
    }
}

/// How far the RPM can be trusted (the draft's confidence, which must be shown with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "Low",
            Confidence::Medium => "Medium",
            Confidence::High => "High",
        }
    }
}

/// One-second intervals the draft's moving window (MAD) spans.
pub const MAD: usize = 4;
/// Spread of the last [`MAD`] intervals' trimmed means, as a share of their mean, above
/// which the result is not stable.
pub const STABLE: f64 = 0.05;

/// What confidence needs of one loaded phase: the trimmed mean (ms) of each one-second
/// interval that had replies, in order, and the phase's probes sent and lost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steadiness {
    pub interval_trimmed_ms: Vec<f64>,
    pub sent: u64,
    pub lost: u64,
}

/// Low: a loaded phase had fewer than [`MAD`] one-second intervals with probe replies, or lost
/// more than half its probes (or there is no loaded phase). Medium: enough intervals, but in
/// some phase one of the last [`MAD`] intervals' trimmed means is more than 5 % away from
/// their mean. High otherwise.
pub fn confidence(phases: &[Steadiness]) -> Confidence {
    if phases.is_empty() {
        return Confidence::Low;
    }
    let mut c = Confidence::High;
    for p in phases {
        if p.interval_trimmed_ms.len() < MAD || p.lost * 2 > p.sent {
            return Confidence::Low;
        }
        let last = &p.interval_trimmed_ms[p.interval_trimmed_ms.len() - MAD..];
        let m = mean(last);
        if last.iter().any(|v| (v - m).abs() > STABLE * m) {
            c = Confidence::Medium;
        }
    }
    c
}

/// The bufferbloat grade (DSLReports' scale) of the latency increase in ms.
pub fn grade(increase_ms: f64) -> &'static str {
    match increase_ms {
        x if x < 5.0 => "A+",
        x if x < 30.0 => "A",
        x if x < 60.0 => "B",
        x if x < 200.0 => "C",
        x if x < 400.0 => "D",
        _ => "F",
    }
}

/// The increase the grade is of: (download increase + upload increase) / 2, or the one of
/// them there is (a `--phases` list without the other); `None` without either.
pub fn grade_increase(down: Option<f64>, up: Option<f64>) -> Option<f64> {
    match (down, up) {
        (Some(d), Some(u)) => Some((d + u) / 2.0),
        (d, u) => d.or(u),
    }
}

/// RouterOS' `ping-min-avg-max` and `jitter-min-avg-max` text: `min/avg/max` in ms, three
/// decimals (`0.120/0.250/1.030`).
pub fn min_avg_max(min: f64, avg: f64, max: f64) -> String {
    format!("{min:.3}/{avg:.3}/{max:.3}")
}

/// The jitter's (min, mean, max): of the |Δ| between consecutive RTTs; `None` under two.
pub fn jitter_min_avg_max(inorder: &[f64]) -> Option<(f64, f64, f64)> {
    let d: Vec<f64> = inorder
        .iter()
        .copied()
        .filter(|v| usable(*v))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .collect();
    if d.is_empty() {
        return None;
    }
    let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = d.iter().copied().fold(0.0, f64::max);
    Some((lo, mean(&d), hi))
}

/// RouterOS' `loss` text: `0.5% (1/200)`.
pub fn loss_text(sent: u64, lost: u64) -> String {
    let pct = if sent == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / sent as f64
    };
    format!("{}% ({lost}/{sent})", trim_num(pct))
}

/// RouterOS' `tcp-download` (and the like) text: the rate and both CPU loads,
/// `94.2Mbps local-cpu-load:12% remote-cpu-load:30%`.
pub fn rate_text(bps: f64, local_cpu: Option<f64>, remote_cpu: Option<f64>) -> String {
    let cpu = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{:.0}%", c));
    format!(
        "{} local-cpu-load:{} remote-cpu-load:{}",
        routeros_rate(bps),
        cpu(local_cpu),
        cpu(remote_cpu)
    )
}

/// A rate as RouterOS prints it: `94.2Mbps`, `1.1Gbps`, `512kbps`, `0bps`.
pub fn routeros_rate(bps: f64) -> String {
    let bps = if bps.is_finite() && bps > 0.0 {
        bps
    } else {
        0.0
    };
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gbps")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mbps")
    } else if bps >= 1e3 {
        (bps / 1e3, "kbps")
    } else {
        (bps, "bps")
    };
    format!("{}{unit}", trim_num(v))
}

/// At most one decimal, none when it is 0 (`94.2`, `1`, `0.5`).
fn trim_num(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

/// Probe traffic in bit/s on the wire, one way: `classes` streams of `datagram` bytes
/// (payload + UDP + IP header) every `interval_s`.
pub fn probe_bps(classes: usize, datagram: u64, interval_s: f64) -> f64 {
    classes as f64 * datagram as f64 * 8.0 / interval_s
}

/// Share of the capacity the probes may take (the draft's 5 %).
pub const PROBE_SHARE: f64 = 0.05;

/// The interval (s) the probes must widen to so their traffic stays within [`PROBE_SHARE`]
/// of `capacity_bps`; `None` when `interval_s` already does (or the capacity is unknown).
pub fn capped_interval(
    classes: usize,
    datagram: u64,
    interval_s: f64,
    capacity_bps: f64,
) -> Option<f64> {
    if !(capacity_bps.is_finite() && capacity_bps > 0.0) {
        return None;
    }
    let allowed = PROBE_SHARE * capacity_bps;
    (probe_bps(classes, datagram, interval_s) > allowed)
        .then(|| classes as f64 * datagram as f64 * 8.0 / allowed)
}

/// A DSCP class name (`ef`, `be`, `bk`, `cs0`-`cs7`, `af11`-`af43`) or number 0-63, as
/// `(dscp, name)`; numbers keep their digits as the name.
pub fn dscp(word: &str) -> Result<(u8, String), String> {
    let w = word.trim().to_ascii_lowercase();
    let v = match w.as_str() {
        "ef" => Some(46),
        "be" | "df" => Some(0),
        // RFC 8622's lower-effort PHB; Flent's and WMM's "bk" is CS1.
        "bk" => Some(8),
        "le" => Some(1),
        "va" | "voice-admit" => Some(44),
        _ => None,
    };
    let v = v.or_else(|| {
        let b = w.as_bytes();
        match (w.strip_prefix("cs"), w.strip_prefix("af")) {
            (Some(n), _) if n.len() == 1 && (b'0'..=b'7').contains(&b[2]) => {
                Some((b[2] - b'0') * 8)
            }
            (_, Some(n))
                if n.len() == 2
                    && (b'1'..=b'4').contains(&b[2])
                    && (b'1'..=b'3').contains(&b[3]) =>
            {
                Some((b[2] - b'0') * 8 + (b[3] - b'0') * 2)
            }
            _ => w.parse::<u8>().ok().filter(|n| *n <= 63),
        }
    });
    v.map(|d| (d, w.clone())).ok_or_else(|| {
        format!(
            "'{word}' is not a DSCP class: expected ef, be, bk, le, cs0..cs7, af11..af43 or a \
             number 0..63"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn stats_of_a_small_set_by_hand() {
        // Send order 5 1 4 2 3 10; sorted 1 2 3 4 5 10.
        let s = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0, 10.0]).unwrap();
        assert_eq!(s.count, 6);
        close(s.low, 1.0);
        close(s.high, 10.0);
        close(s.mean, 25.0 / 6.0);
        // ⌊6/4⌋ = 1 dropped at each end: 2 3 4 5.
        close(s.iqm, 3.5);
        // |1-5| + |4-1| + |2-4| + |3-2| + |10-3| = 4+3+2+1+7 = 17, over 5.
        close(s.jitter, 3.4);
        // Nearest rank: p50 rank 3 -> 3; p90 rank ⌈5.4⌉ = 6 -> 10; p99 rank 6 -> 10.
        close(s.p50, 3.0);
        close(s.p90, 10.0);
        close(s.p99, 10.0);
        // ⌈0.95·6⌉ = 6: nothing dropped under 20 samples.
        close(s.trimmed95, 25.0 / 6.0);
    }

    #[test]
    fn trimmed_mean_drops_the_top_five_percent() {
        // 1..=20 and one outlier replaced: 1..=19 and 1000. ⌈0.95·20⌉ = 19 kept.
        let mut v: Vec<f64> = (1..=19).map(f64::from).collect();
        v.push(1000.0);
        close(trimmed95(&v), 10.0);
        // 40 samples: 38 kept.
        let v: Vec<f64> = (1..=40).map(f64::from).collect();
        close(trimmed95(&v), (1..=38).sum::<i32>() as f64 / 38.0);
        close(trimmed95(&[7.0]), 7.0);
    }

    #[test]
    fn iqm_and_jitter_edges() {
        close(iqm(&[1.0, 2.0, 3.0]), 2.0);
        close(iqm(&[1.0, 2.0, 3.0, 100.0]), 2.5);
        close(jitter(&[4.0]), 0.0);
        close(jitter(&[4.0, 6.0, 5.0]), 1.5);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN, -1.0, f64::INFINITY]), None);
        let s = Stats::of(&[2.0, f64::NAN, 4.0]).unwrap();
        assert_eq!(s.count, 2);
        close(s.jitter, 2.0);
    }

    #[test]
    fn rpm_and_rating_edges() {
        close(rpm(Some(10.0)).unwrap(), 6000.0);
        close(rpm(Some(200.0)).unwrap(), 300.0);
        assert_eq!(rpm(Some(0.0)), None);
        assert_eq!(rpm(None), None);
        assert_eq!(Rating::of(299.9), Rating::Poor);
        assert_eq!(Rating::of(300.0), Rating::Fair);
        assert_eq!(Rating::of(999.9), Rating::Fair);
        assert_eq!(Rating::of(1000.0), Rating::Good);
        assert_eq!(Rating::of(5999.9), Rating::Good);
        assert_eq!(Rating::of(6000.0), Rating::Excellent);
        close(combined_rpm(Some(1000.0), Some(3000.0)).unwrap(), 2000.0);
        close(combined_rpm(None, Some(3000.0)).unwrap(), 3000.0);
        assert_eq!(combined_rpm(None, None), None);
    }

    #[test]
    fn grade_edges() {
        assert_eq!(grade(-1.0), "A+");
        assert_eq!(grade(4.99), "A+");
        assert_eq!(grade(5.0), "A");
        assert_eq!(grade(29.9), "A");
        assert_eq!(grade(30.0), "B");
        assert_eq!(grade(60.0), "C");
        assert_eq!(grade(199.9), "C");
        assert_eq!(grade(200.0), "D");
        assert_eq!(grade(399.9), "D");
        assert_eq!(grade(400.0), "F");
        close(grade_increase(Some(10.0), Some(50.0)).unwrap(), 30.0);
        close(grade_increase(None, Some(50.0)).unwrap(), 50.0);
        assert_eq!(grade_increase(None, None), None);
    }

    fn steady(v: &[f64], sent: u64, lost: u64) -> Steadiness {
        Steadiness {
            interval_trimmed_ms: v.to_vec(),
            sent,
            lost,
        }
    }

    #[test]
    fn confidence_cases() {
        assert_eq!(confidence(&[]), Confidence::Low);
        // Three intervals only.
        assert_eq!(
            confidence(&[steady(&[10.0, 10.0, 10.0], 30, 0)]),
            Confidence::Low
        );
        // More than half the probes lost.
        assert_eq!(confidence(&[steady(&[10.0; 5], 100, 51)]), Confidence::Low);
        // Exactly half lost is not "more than half".
        assert_eq!(confidence(&[steady(&[10.0; 5], 100, 50)]), Confidence::High);
        // The last four: 10 10 10 12 (mean 10.5; 12 is 14 % away): Medium; the early 50 does
        // not count.
        assert_eq!(
            confidence(&[steady(&[50.0, 10.0, 10.0, 10.0, 12.0], 50, 0)]),
            Confidence::Medium
        );
        // Within 5 %: 10 10.2 9.9 10.1.
        assert_eq!(
            confidence(&[steady(&[50.0, 10.0, 10.2, 9.9, 10.1], 50, 0)]),
            Confidence::High
        );
        // One phase short makes the whole Low.
        assert_eq!(
            confidence(&[steady(&[10.0; 4], 40, 0), steady(&[10.0; 2], 40, 0)]),
            Confidence::Low
        );
    }

    #[test]
    fn routeros_texts() {
        assert_eq!(min_avg_max(0.12, 0.25, 1.03), "0.120/0.250/1.030");
        assert_eq!(loss_text(200, 1), "0.5% (1/200)");
        assert_eq!(loss_text(0, 0), "0% (0/0)");
        assert_eq!(routeros_rate(94_200_000.0), "94.2Mbps");
        assert_eq!(routeros_rate(1e9), "1Gbps");
        assert_eq!(routeros_rate(512_000.0), "512kbps");
        assert_eq!(routeros_rate(f64::NAN), "0bps");
        assert_eq!(
            rate_text(94_200_000.0, Some(12.0), None),
            "94.2Mbps local-cpu-load:12% remote-cpu-load:-"
        );
        let (lo, avg, hi) = jitter_min_avg_max(&[1.0, 3.0, 2.0, 2.0]).unwrap();
        close(lo, 0.0);
        close(avg, 1.0);
        close(hi, 2.0);
        assert_eq!(jitter_min_avg_max(&[1.0]), None);
    }

    #[test]
    fn probe_cap() {
        // 3 classes of 60-byte datagrams every 10 ms: 3·60·8/0.01 = 144 kbit/s.
        close(probe_bps(3, 60, 0.01), 144_000.0);
        // 10 Mbit/s allows 500 kbit/s: no change.
        assert_eq!(capped_interval(3, 60, 0.01, 10e6), None);
        // 1 Mbit/s allows 50 kbit/s: 1440 bits per round / 50 000 = 28.8 ms.
        close(capped_interval(3, 60, 0.01, 1e6).unwrap(), 0.0288);
        assert_eq!(capped_interval(3, 60, 0.01, 0.0), None);
    }

    #[test]
    fn dscp_names() {
        assert_eq!(dscp("ef").unwrap(), (46, "ef".into()));
        assert_eq!(dscp("BE").unwrap(), (0, "be".into()));
        assert_eq!(dscp("bk").unwrap().0, 8);
        assert_eq!(dscp("cs5").unwrap().0, 40);
        assert_eq!(dscp("cs0").unwrap().0, 0);
        assert_eq!(dscp("af11").unwrap().0, 10);
        assert_eq!(dscp("af43").unwrap().0, 38);
        assert_eq!(dscp("63").unwrap(), (63, "63".into()));
        assert!(dscp("64").unwrap_err().contains("'64'"));
        assert!(dscp("cs8").is_err());
        assert!(dscp("af44").is_err());
        assert!(dscp("").is_err());
    }
}
