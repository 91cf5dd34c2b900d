//! One-way delay from our echo v2 replies (issue 22): the offset between the server's clock
//! and the probe's, fitted from the replies, splits each round trip into its way up (client
//! to server) and its way down, so a bloated uplink is told from a bloated downlink.
//!
//! Owns: [`ClockFit`] and its maths; pure (no socket, no clock, no I/O). Must not: panic on
//! any reply (the server's times come from the network), or be needed by `client --latency`
//! (feature `speedtest`: the router image does without it).
//!
//! # Method
//!
//! A reply gives four times: the client's send `s` and receive `r` (probe clock), the
//! server's receive `a` and send `b` (server clock). With the two ways equally long, the
//! offset server − client at the reply's middle is `((a − s) + (b − r)) / 2`; queueing on one
//! way only shifts that by half of it. So, as Crusader does, only the lowest-RTT third of the
//! replies is used (the least queued: on a speed test the idle and cooldown phases, at both
//! ends of the run), and a least-squares line of their offsets against client time takes out
//! the drift of the two clocks (50 ppm, a common crystal's error, is 3 ms over 60 s: as much
//! as the queueing one wants to see). Then for any reply
//! `up = a − offset(t) − s`, `down = r − (b − offset(t))`, so `up + down` is its RTT less
//! the server's turnaround, exactly.
//!
//! What it cannot know: an asymmetry of the unloaded path itself (a slower way up at idle)
//! is split evenly between the two ways, as by every method without a common clock; the
//! figures that matter, each way's increase under load over its idle value, do not depend
//! on it. A drift above [`MAX_DRIFT`] (10× what a clock out of spec has) is held at it.

use super::Reply;

/// Replies with server times needed for a fit.
pub const MIN_SAMPLES: usize = 10;
/// Largest clock drift believed (dimensionless: 1e-3 = 1,000 ppm).
pub const MAX_DRIFT: f64 = 1e-3;

/// The fitted offset line: server clock − client clock, in ns, as a function of client time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockFit {
    /// Client time (ns since the probe's epoch) the line is centred on.
    t0: f64,
    /// Offset (ns) at `t0`.
    offset: f64,
    /// d offset / d client time.
    drift: f64,
    /// Replies the line was fitted to.
    used: usize,
}

/// (RTT less turnaround, client time of the middle, offset) of a reply with server times;
/// all ns, the offset computed in i128 so no server clock value can overflow.
fn sample(r: &Reply) -> Option<(f64, f64, f64)> {
    let (a, b) = r.server?;
    let (s, rv) = (i128::from(r.sent_ns), i128::from(r.recv_ns));
    let (a, b) = (i128::from(a), i128::from(b));
    let rtt = (rv - s) - (b - a);
    let t = (s + rv) as f64 / 2.0;
    let offset = ((a - s) + (b - rv)) as f64 / 2.0;
    Some((rtt as f64, t, offset))
}

impl ClockFit {
    /// Fits the offset line to `replies` (any order); `None` under [`MIN_SAMPLES`] replies
    /// with server times (echo v1, ICMP, or too short a run).
    pub fn fit(replies: &[Reply]) -> Option<ClockFit> {
        let mut s: Vec<(f64, f64, f64)> = replies.iter().filter_map(sample).collect();
        if s.len() < MIN_SAMPLES {
            return None;
        }
        s.sort_by(|x, y| x.0.total_cmp(&y.0));
        s.truncate((s.len() / 3).max(5));
        let n = s.len() as f64;
        let t0 = s.iter().map(|x| x.1).sum::<f64>() / n;
        let offset = s.iter().map(|x| x.2).sum::<f64>() / n;
        let var: f64 = s.iter().map(|x| (x.1 - t0).powi(2)).sum();
        let cov: f64 = s.iter().map(|x| (x.1 - t0) * (x.2 - offset)).sum();
        // All at one instant (cannot happen with a steady probe): no drift to see.
        let drift = if var > 0.0 { cov / var } else { 0.0 };
        Some(ClockFit {
            t0,
            offset,
            drift: drift.clamp(-MAX_DRIFT, MAX_DRIFT),
            used: s.len(),
        })
    }

    /// The offset (server − client, ns) at client time `t_ns`.
    pub fn offset_ns(&self, t_ns: f64) -> f64 {
        self.offset + self.drift * (t_ns - self.t0)
    }

    /// The fitted drift of the server's clock against the probe's, in ppm.
    pub fn drift_ppm(&self) -> f64 {
        self.drift * 1e6
    }

    /// Replies the line was fitted to (the lowest-RTT third).
    pub fn used(&self) -> usize {
        self.used
    }

    /// `(up ms, down ms)` of a reply with server times; they add up to its RTT less the
    /// server's turnaround ([`Reply::rtt_ms`]). `None` without server times. Either may come
    /// out a little below zero when the idle path is asymmetric (see the module doc).
    pub fn one_way(&self, r: &Reply) -> Option<(f64, f64)> {
        let (a, b) = r.server?;
        let (s, rv) = (i128::from(r.sent_ns), i128::from(r.recv_ns));
        let theta = self.offset_ns((s + rv) as f64 / 2.0);
        let up = (i128::from(a) - s) as f64 - theta;
        let down = (rv - i128::from(b)) as f64 + theta;
        Some((up / 1e6, down / 1e6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path in client time: what each way takes (ms) for a probe sent at `t` s.
    struct Path<'a> {
        offset_ns: f64,
        drift: f64,
        up: &'a dyn Fn(f64) -> f64,
        down: &'a dyn Fn(f64) -> f64,
    }

    /// 60 s of 10 ms probes over `p`, with up to 0.2 ms of jitter each way (a fixed
    /// pseudo-random sequence) and a 20 µs server turnaround. Returns the replies and each
    /// one's true (up, down) in ms, jitter included.
    fn synth(p: &Path) -> (Vec<Reply>, Vec<(f64, f64)>) {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut jitter = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 200_000) as f64 // ns
        };
        let server_clock = |true_ns: f64| (true_ns * (1.0 + p.drift) + p.offset_ns) as u64;
        let mut replies = Vec::new();
        let mut truth = Vec::new();
        for i in 0..6000u32 {
            let s = 5e6 + f64::from(i) * 1e7;
            let up = (p.up)(s / 1e9) * 1e6 + jitter();
            let down = (p.down)(s / 1e9) * 1e6 + jitter();
            let a = s + up;
            let b = a + 20_000.0;
            let r = b + down;
            replies.push(Reply {
                seq: i,
                sent_ns: s as u64,
                recv_ns: r as u64,
                server: Some((server_clock(a), server_clock(b))),
            });
            truth.push((up / 1e6, down / 1e6));
        }
        (replies, truth)
    }

    /// Fits `p`'s replies and checks every reply's up and down against the truth.
    fn check(p: &Path, tol_ms: f64) -> ClockFit {
        let (replies, truth) = synth(p);
        let fit = ClockFit::fit(&replies).expect("a fit");
        assert_eq!(fit.used(), 2000);
        let mut worst = 0.0f64;
        for (r, &(up, down)) in replies.iter().zip(&truth) {
            let (u, d) = fit.one_way(r).unwrap();
            assert!((u + d - r.rtt_ms()).abs() < 1e-6, "{r:?}: {u} + {d}");
            worst = worst.max((u - up).abs()).max((d - down).abs());
        }
        println!(
            "synthetic: worst error {:.4} ms over {} replies, drift {:.2} ppm",
            worst,
            replies.len(),
            fit.drift_ppm()
        );
        assert!(worst < tol_ms, "worst error {worst} ms");
        fit
    }

    fn flat(_: f64) -> f64 {
        10.0
    }

    /// 0 outside 20-40 s; inside, a queue that fills to 80 ms and drains again.
    fn queue(t: f64) -> f64 {
        if (20.0..40.0).contains(&t) {
            10.0 + 80.0 * (1.0 - ((t - 30.0) / 10.0).abs())
        } else {
            10.0
        }
    }

    #[test]
    fn constant_offset() {
        let fit = check(
            &Path {
                offset_ns: 123_456_789_012.0,
                drift: 0.0,
                up: &flat,
                down: &flat,
            },
            0.5,
        );
        assert!(fit.drift_ppm().abs() < 1.0, "{}", fit.drift_ppm());
    }

    #[test]
    fn drift_of_50_ppm_over_60_s() {
        let p = Path {
            offset_ns: 7e9,
            drift: 50e-6,
            up: &flat,
            down: &flat,
        };
        let fit = check(&p, 0.5);
        assert!((fit.drift_ppm() - 50.0).abs() < 1.0, "{}", fit.drift_ppm());
        // Without the drift line the ends would be ~1.5 ms off each way: the test can see it.
        let still = ClockFit { drift: 0.0, ..fit };
        let (replies, truth) = synth(&p);
        let (u, _) = still.one_way(&replies[0]).unwrap();
        assert!((u - truth[0].0).abs() > 1.0, "{u} vs {:?}", truth[0]);
    }

    #[test]
    fn queueing_on_the_way_down_shows_down() {
        // With the drift too: the queue must not be taken for the clocks' doing.
        let p = Path {
            offset_ns: 5e9,
            drift: 50e-6,
            up: &flat,
            down: &queue,
        };
        check(&p, 0.5);
        let (replies, _) = synth(&p);
        let fit = ClockFit::fit(&replies).unwrap();
        // At the top of the queue (30 s): all of it down, none up.
        let (u, d) = fit.one_way(&replies[3000]).unwrap();
        assert!((u - 10.1).abs() < 0.5 && (d - 90.1).abs() < 0.5, "{u} {d}");
    }

    #[test]
    fn queueing_on_the_way_up_shows_up() {
        let p = Path {
            offset_ns: 5e9,
            drift: -50e-6,
            up: &queue,
            down: &flat,
        };
        check(&p, 0.5);
        let (replies, _) = synth(&p);
        let fit = ClockFit::fit(&replies).unwrap();
        let (u, d) = fit.one_way(&replies[3000]).unwrap();
        assert!((u - 90.1).abs() < 0.5 && (d - 10.1).abs() < 0.5, "{u} {d}");
    }

    #[test]
    fn too_few_or_no_server_times_give_no_fit() {
        let (mut replies, _) = synth(&Path {
            offset_ns: 0.0,
            drift: 0.0,
            up: &flat,
            down: &flat,
        });
        assert!(ClockFit::fit(&replies[..MIN_SAMPLES - 1]).is_none());
        let fit = ClockFit::fit(&replies[..MIN_SAMPLES]).expect("ten are enough");
        assert_eq!(fit.used(), 5);
        for r in &mut replies {
            r.server = None;
        }
        assert!(ClockFit::fit(&replies).is_none());
        assert_eq!(fit.one_way(&replies[0]), None);
        assert!(ClockFit::fit(&[]).is_none());
    }

    #[test]
    fn hostile_server_times_do_not_panic() {
        // Extreme values from a lying server: a fit or none, never a panic or an overflow.
        let r = |i: u32, a: u64, b: u64| Reply {
            seq: i,
            sent_ns: u64::from(i) * 1_000_000,
            recv_ns: u64::from(i) * 1_000_000 + 500_000,
            server: Some((a, b)),
        };
        let replies: Vec<Reply> = (0..30)
            .map(|i| match i % 3 {
                0 => r(i, u64::MAX, u64::MAX),
                1 => r(i, 0, u64::MAX),
                _ => r(i, u64::MAX, 0),
            })
            .collect();
        let fit = ClockFit::fit(&replies).expect("30 replies with times");
        assert!(fit.drift_ppm().abs() <= MAX_DRIFT * 1e6);
        for x in &replies {
            let (u, d) = fit.one_way(x).unwrap();
            assert!(u.is_finite() && d.is_finite());
        }
    }

    /// The demo of docs/reliability.md: our server's echo and the probe on loopback, 10 ms
    /// probes for 3 s, the fit and the one-way figures printed
    /// (`cargo test --lib probe::owd -- --nocapture`).
    #[cfg(feature = "server")]
    #[test]
    fn one_way_on_loopback() {
        use super::super::{Latency, Probe, ProbeConfig};
        use crate::engine::{Stop, StopReason};
        use crate::server::echo::EchoResponder;
        use std::net::IpAddr;
        use std::time::Duration;

        let r = EchoResponder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = r.local_addr().port();
        let stop = Stop::new();
        let h = r.spawn(stop.clone(), |_| true, |_| true).unwrap();
        let mut c = ProbeConfig::new(IpAddr::from([127, 0, 0, 1]), port);
        c.want = Latency::Echo;
        c.interval = Duration::from_millis(10);
        let p = Probe::start(&c).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let t = p.take();
        p.stop();
        stop.trigger(StopReason::Shutdown);
        h.join().unwrap();

        let fit = ClockFit::fit(&t.replies).expect("echo v2 replies with server times");
        let mut up = Vec::new();
        let mut down = Vec::new();
        for r in &t.replies {
            let (u, d) = fit.one_way(r).unwrap();
            assert!((u + d - r.rtt_ms()).abs() < 1e-6);
            up.push(u);
            down.push(d);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut rtt = t.rtts_ms.clone();
        let (mu, md, mr) = (median(&mut up), median(&mut down), median(&mut rtt));
        println!(
            "loopback one-way: {} replies, fit on {}, drift {:.1} ppm; median RTT {mr:.3} ms = \
             up {mu:.3} ms + down {md:.3} ms (server turnaround left out)",
            t.replies.len(),
            fit.used(),
            fit.drift_ppm()
        );
        // One clock on both ends: no drift, and the two ways alike (loopback is symmetric);
        // bounds loose enough for a busy machine.
        assert!(t.replies.len() >= 100, "{}", t.replies.len());
        assert!(fit.drift_ppm().abs() < 200.0, "{}", fit.drift_ppm());
        assert!(mu.abs() < 5.0 && md.abs() < 5.0, "{mu} {md}");
    }
}
