//! Transmit pacing on absolute deadlines, plus the spin-then-sleep wait helper.
//!
//! [`Pacer`] is pure: time comes in as nanoseconds from the caller's epoch, so tests drive it
//! with a fake clock. The schedule advances by exact integer arithmetic (a remainder carries the
//! fraction of a nanosecond), so rounding never drifts; a sender that falls more than
//! [`MAX_BACKLOG`] behind resynchronises to "now" instead of bursting to catch up.
//! [`Pacer::due`] says how many units are due now (up to a batch), so batched and single
//! sends, paced and unlimited, share one path; [`Pacer::commit`] advances the schedule by what
//! was actually sent. [`Waiter`] sleeps while far from a deadline and spins the rest, with a
//! margin that follows the oversleep it measures; [`sleep_until`] is its fixed-margin form.

use std::time::{Duration, Instant};

/// How far behind the schedule a sender may fall before the debt is forgiven. A sender that
/// is descheduled on a loaded host must catch up or the achieved rate falls short of the asked
/// one: 2 ms of forgiveness lost 16 % of a 50 Mbit/s stream with the load at 6 on 2 cores, and
/// 20 ms still lost up to 18 % at 1 Gbit/s under two busy loops (docs/bench.md), where iperf3,
/// which never forgives, held its rate. 200 ms covers every stall seen there while keeping the
/// catch-up burst bounded (25 MB at 1 Gbit/s; beyond the socket buffer the kernel makes the
/// sender wait, so the wire sees at most line rate).
pub const MAX_BACKLOG: Duration = Duration::from_millis(200);
/// The final stretch before a deadline is spun rather than slept: nanosleep with 1 ns timer
/// slack still overshoots by 30-40 µs (median) on this project's VM. 50 µs keeps per-datagram
/// timing within a few µs at the cost of ~15 µs of spinning per wake-up (1-2 % of a core at
/// 10 Mbit/s); below `MIN_WAKE` spacing there is no spin at all.
pub const SPIN: Duration = Duration::from_micros(50);

/// Default pacing: wake-ups are at least this far apart. Units closer than this go in small
/// bursts of about `MIN_WAKE / interval` (3-4 datagrams of 1500 B at 1 Gbit/s, more when a
/// sleep wakes later than that), sent with one batched system call; the schedule's average
/// stays exact. Waking per datagram at 12 µs would cost a spinning core (that is
/// `--pacing precise`). It was 250 µs until issue 9: at
/// 100 Mbit/s (120 µs per datagram) that sent pairs and, with the sleep overshoot, bursts of
/// up to 16 (p90 gap 1.96x the period where iperf3 3.21 held 1.05x); 40 µs keeps every
/// datagram at its own deadline down to 300 Mbit/s and a burst's gaps under 5 periods at 1G.
pub const MIN_WAKE: Duration = Duration::from_micros(40);

/// How many units may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// This many (at least 1, at most the batch asked for).
    Now(usize),
    /// None before this time (ns since the caller's epoch).
    WaitUntil(u64),
}

/// What the sender should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Send one unit now.
    Go,
    /// Wait until this time (ns since the epoch the caller uses).
    WaitUntil(u64),
}

/// An absolute-deadline pacer for units of a fixed wire size.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate_bps: u64,
    bits_per_unit: u64,
    next_ns: u64,
    rem: u64,
    started: bool,
    /// Wake this long after a deadline (ns), so one wake-up sends every unit due by then.
    window_ns: u64,
    fixed_window: bool,
}

impl Pacer {
    /// A pacer for `rate_bps` (0 = unlimited) and units of `unit_bytes` wire bytes.
    pub fn new(rate_bps: u64, unit_bytes: usize) -> Self {
        let mut p = Pacer {
            rate_bps,
            bits_per_unit: (unit_bytes as u64).max(1) * 8,
            next_ns: 0,
            rem: 0,
            started: false,
            window_ns: 0,
            fixed_window: false,
        };
        p.window_ns = p.auto_window();
        p
    }

    /// A pacer that releases every unit at its own deadline (no bursts).
    pub fn exact(rate_bps: u64, unit_bytes: usize) -> Self {
        let mut p = Self::new(rate_bps, unit_bytes);
        p.window_ns = 0;
        p.fixed_window = true;
        p
    }

    /// A pacer for `--pacing precise` (every unit at its own deadline) or the default.
    pub fn for_mode(rate_bps: u64, unit_bytes: usize, precise: bool) -> Self {
        if precise {
            Self::exact(rate_bps, unit_bytes)
        } else {
            Self::new(rate_bps, unit_bytes)
        }
    }

    /// How many units are due at `now_ns`, at most `max`: every deadline that has passed
    /// (within the backlog). The schedule does not move until [`Pacer::commit`].
    pub fn due(&mut self, now_ns: u64, max: usize) -> Due {
        let max = max.max(1);
        if self.rate_bps == 0 {
            return Due::Now(max);
        }
        if !self.started {
            self.started = true;
            self.next_ns = now_ns;
        }
        if now_ns < self.next_ns {
            return Due::WaitUntil(self.next_ns + self.window_ns);
        }
        let backlog = MAX_BACKLOG.as_nanos() as u64;
        if now_ns - self.next_ns > backlog {
            self.next_ns = now_ns;
            self.rem = 0;
        }
        let iv = self.interval_ns().max(1);
        let late = now_ns - self.next_ns;
        let n = 1 + late / iv;
        // Bursts have one size: the window's worth (or the batch cap). A sender that is a few
        // units behind after a capped burst waits for the next full one instead of sending
        // the remainder in a string of tiny batches (each a system call).
        let burst = (1 + self.window_ns / iv).min(max as u64);
        if n < burst && late < self.window_ns {
            return Due::WaitUntil(self.next_ns + (burst - 1) * iv);
        }
        Due::Now(usize::try_from(n).unwrap_or(usize::MAX).min(max))
    }

    /// Advances the schedule by `n` units (what was actually sent).
    pub fn commit(&mut self, n: usize) {
        if self.rate_bps == 0 || n == 0 {
            return;
        }
        // n intervals = n * bits * 1e9 / rate, carried exactly with a remainder.
        let num = u128::from(self.bits_per_unit) * 1_000_000_000 * n as u128 + u128::from(self.rem);
        let rate = u128::from(self.rate_bps);
        self.next_ns += (num / rate) as u64;
        self.rem = (num % rate) as u64;
    }

    /// Nanoseconds per unit at the current rate (0 when unlimited).
    pub fn interval_ns(&self) -> u64 {
        if self.rate_bps == 0 {
            return 0;
        }
        (u128::from(self.bits_per_unit) * 1_000_000_000 / u128::from(self.rate_bps)) as u64
    }

    fn auto_window(&self) -> u64 {
        (MIN_WAKE.as_nanos() as u64).saturating_sub(self.interval_ns())
    }

    /// How late a wake-up may be on purpose; 0 means each unit goes at its own deadline and the
    /// caller should spin for precision. Non-zero means bursts: a plain sleep is enough.
    pub fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// The current target rate (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.rate_bps
    }

    /// Changes the target rate; the schedule continues from the next deadline.
    pub fn set_rate(&mut self, rate_bps: u64) {
        if rate_bps != self.rate_bps {
            self.rate_bps = rate_bps;
            self.rem = 0;
            if !self.fixed_window {
                self.window_ns = self.auto_window();
            }
        }
    }

    /// Decides whether one unit may go at `now_ns`; on `Go` the schedule advances one unit.
    pub fn poll(&mut self, now_ns: u64) -> Pace {
        if self.rate_bps == 0 {
            return Pace::Go;
        }
        if !self.started {
            self.started = true;
            self.next_ns = now_ns;
        }
        if now_ns < self.next_ns {
            // Waking `window` after the deadline lets one wake-up send every unit that fell
            // due meanwhile: a burst of about window/interval units.
            return Pace::WaitUntil(self.next_ns + self.window_ns);
        }
        let backlog = MAX_BACKLOG.as_nanos() as u64;
        if now_ns > self.next_ns && now_ns - self.next_ns > backlog {
            self.next_ns = now_ns;
            self.rem = 0;
        }
        // interval = bits * 1e9 / rate, carried exactly with a remainder.
        let num = u128::from(self.bits_per_unit) * 1_000_000_000 + u128::from(self.rem);
        let rate = u128::from(self.rate_bps);
        self.next_ns += (num / rate) as u64;
        self.rem = (num % rate) as u64;
        Pace::Go
    }
}

/// A sleep-then-spin timer that learns how late this host's sleeps wake up.
///
/// Default (`precise == false`): it sleeps until `deadline - typical oversleep`, so it wakes
/// about on time, and spins only a remainder shorter than half the typical oversleep. A
/// sender's gaps then carry the oversleep's jitter, not its size: on this project's VM a
/// sleep wakes 30-60 µs late but that lateness varies by a few µs, which is how iperf3 3.21's
/// plain absolute sleeps hold 100 Mbit/s to 0.96..1.05 of the period. Cost: almost no spin.
///
/// `precise == true` (`--pacing precise`): it sleeps until `deadline - margin`, the margin
/// being twice the high-water oversleep plus 10 µs, and spins the rest: exact spacing whatever
/// the jitter, one busy core whenever units are closer than the margin.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// Typical oversleep (a running mean).
    mean_ns: u64,
    /// High-water oversleep: rises at once, falls slowly.
    high_ns: u64,
}

/// Most margin a [`Waiter`] keeps before a deadline.
const MARGIN_MAX_NS: u64 = 300_000;
/// Added to the high-water oversleep in precise mode: its jitter.
const MARGIN_SLACK_NS: u64 = 10_000;

impl Default for Waiter {
    fn default() -> Self {
        let spin = SPIN.as_nanos() as u64;
        Waiter {
            mean_ns: spin,
            high_ns: spin,
        }
    }
}

impl Waiter {
    /// The typical oversleep measured so far.
    pub fn typical_ns(&self) -> u64 {
        self.mean_ns
    }

    /// The margin precise mode spins before a deadline.
    pub fn margin_ns(&self) -> u64 {
        (2 * self.high_ns + MARGIN_SLACK_NS).min(MARGIN_MAX_NS)
    }

    /// Feeds one measured oversleep (how much later than asked a sleep returned).
    pub fn observe(&mut self, over_ns: u64) {
        let o = over_ns.min(MARGIN_MAX_NS);
        // mean += (o - mean) / 8, in integers
        self.mean_ns = self.mean_ns - self.mean_ns / 8 + o / 8;
        if o > self.high_ns {
            self.high_ns = o;
        } else {
            self.high_ns -= (self.high_ns - o) / 16;
        }
    }

    /// Waits until `deadline` (or until `stop()`), sleeping in slices of at most 50 ms.
    pub fn wait_until(&mut self, deadline: Instant, how: Wake, stop: impl Fn() -> bool) {
        loop {
            let now = Instant::now();
            if now >= deadline || stop() {
                return;
            }
            let left = (deadline - now).as_nanos() as u64;
            let (lead, spin_below) = match how {
                Wake::Precise => (self.margin_ns(), self.margin_ns()),
                Wake::OnTime => (self.mean_ns, self.mean_ns / 2),
                // A late wake only makes the burst a little larger: never spin.
                Wake::Lazy => (self.mean_ns, 0),
            };
            if left <= spin_below {
                std::hint::spin_loop();
                continue;
            }
            // Lazy: at least half the time left, so a host whose sleeps wake later than the
            // burst period sleeps once per burst instead of spinning through nanosleep(1 ns)
            // calls (each arms a timer: a VM exit on this project's machine).
            let floor = if how == Wake::Lazy { left / 2 } else { 1 };
            let ask = Duration::from_nanos(left.saturating_sub(lead).max(floor))
                .min(Duration::from_millis(50));
            crate::sys::pacing_sleep(ask);
            self.observe(now.elapsed().saturating_sub(ask).as_nanos() as u64);
            if how == Wake::Lazy {
                return;
            }
        }
    }
}

/// How close to its deadline a [`Waiter`] must wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// `--pacing precise`: spin the margin, exact spacing.
    Precise,
    /// Default, one unit per deadline: sleep to about the deadline, spin a short remainder.
    OnTime,
    /// Default, bursts: one sleep; a late wake sends a larger burst, the average holds. On a
    /// VM whose sleeps wake 50 µs late, spinning to 36 µs wake-ups at 1 Gbit/s cost 0.9 of a
    /// core for the same gaps.
    Lazy,
}

impl Wake {
    /// The wake a sender needs for its pacer's mode.
    pub fn for_pacer(p: &Pacer, precise: bool) -> Wake {
        if precise {
            Wake::Precise
        } else if p.window_ns() > 0 {
            Wake::Lazy
        } else {
            Wake::OnTime
        }
    }
}

/// Sleeps until `deadline`, spinning for the last [`SPIN`]; returns early if `stop()` says so.
pub fn sleep_until(deadline: Instant, stop: impl Fn() -> bool) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop() {
            return;
        }
        let left = deadline - now;
        if left > SPIN {
            // Cap single sleeps so a stop is noticed within 50 ms even at very low rates.
            crate::sys::pacing_sleep((left - SPIN).min(Duration::from_millis(50)));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the pacer with a perfect sender and returns units sent in `secs`.
    fn run(rate: u64, bytes: usize, secs: u64) -> u64 {
        let mut p = Pacer::exact(rate, bytes);
        let end = secs * 1_000_000_000;
        let mut now = 0;
        let mut sent = 0;
        while now < end {
            match p.poll(now) {
                Pace::Go => sent += 1,
                Pace::WaitUntil(t) => now = t,
            }
        }
        sent
    }

    #[test]
    fn achieved_rate_is_exact() {
        // 10 Mbit/s of 1500-byte units = 833.33 units/s
        assert_eq!(run(10_000_000, 1500, 3), 2500);
        // 1 Gbit/s: 83333.3/s
        let n = run(1_000_000_000, 1500, 1);
        assert!((83_333..=83_334).contains(&n), "{n}");
        // a rate that does not divide evenly: 7 bit/s of 1-byte units
        assert_eq!(run(7, 1, 8), 7);
    }

    #[test]
    fn no_drift_over_ten_thousand_sends() {
        let mut p = Pacer::exact(300_000_000, 1472 + 28);
        let mut now = 0;
        let mut sent = 0u64;
        while sent < 10_000 {
            match p.poll(now) {
                Pace::Go => sent += 1,
                Pace::WaitUntil(t) => now = t,
            }
        }
        // 10_000 units of 12000 bits at 3e8 bit/s = 0.4 s exactly; the 10_000th went at 0.39996 s
        assert_eq!(now, 399_960_000);
    }

    #[test]
    fn late_sender_catches_up_within_backlog_only() {
        let mut p = Pacer::exact(1_000_000_000, 1250); // 10 µs per unit
        assert_eq!(p.poll(0), Pace::Go);
        // 1 ms late: inside the backlog, so the 100 missed units may go back to back
        let mut burst = 0;
        while p.poll(1_000_000) == Pace::Go {
            burst += 1;
        }
        assert_eq!(burst, 100);
        // 1 s late: beyond the backlog, resync: one unit, then wait
        assert_eq!(p.poll(1_001_000_000), Pace::Go);
        assert_eq!(p.poll(1_001_000_000), Pace::WaitUntil(1_001_010_000));
    }

    #[test]
    fn unlimited_always_goes_and_set_rate_applies() {
        let mut p = Pacer::new(0, 1500);
        for t in 0..1000 {
            assert_eq!(p.poll(t), Pace::Go);
        }
        p.set_rate(12_000); // one 1500-byte unit per second
        assert_eq!(p.poll(5), Pace::Go);
        assert_eq!(p.poll(6), Pace::WaitUntil(1_000_000_005));
        assert_eq!(p.rate(), 12_000);
    }

    #[test]
    fn bursts_keep_the_average_exact_and_wake_rarely() {
        // 1 Gbit/s of 1500-byte units: 12 µs apart, so units go in bursts
        let mut p = Pacer::new(1_000_000_000, 1500);
        assert_eq!(p.window_ns(), 40_000 - 12_000);
        let (mut now, mut sent, mut wakes) = (0u64, 0u64, 0u64);
        while now < 1_000_000_000 {
            match p.poll(now) {
                Pace::Go => sent += 1,
                Pace::WaitUntil(t) => {
                    // a sleeper that always wakes 40 µs late
                    now = t + 40_000;
                    wakes += 1;
                }
            }
        }
        // the last burst may still be due at the 1 s mark: up to window/interval units short
        assert!((83_300..=83_355).contains(&sent), "{sent}");
        // a wake-up every 68 µs (28 µs window + 40 µs late): about 14,700, not one per unit
        assert!(wakes < 16_000, "{wakes} wake-ups");
        // at 100 Mbit/s the interval (120 µs) exceeds MIN_WAKE: every unit at its deadline
        assert_eq!(Pacer::new(100_000_000, 1500).window_ns(), 0);
        let mut q = Pacer::new(0, 1500);
        q.set_rate(1_000_000_000);
        assert_eq!(q.window_ns(), 28_000, "window follows set_rate");
    }

    /// Drives `due`/`commit` with a sender that sends everything due, in batches of `max`.
    fn run_batched(rate: u64, bytes: usize, max: usize, secs: u64, late_ns: u64) -> (u64, u64) {
        let mut p = Pacer::new(rate, bytes);
        let end = secs * 1_000_000_000;
        let (mut now, mut sent, mut calls) = (0u64, 0u64, 0u64);
        while now < end {
            match p.due(now, max) {
                Due::Now(n) => {
                    assert!((1..=max).contains(&n));
                    p.commit(n);
                    sent += n as u64;
                    calls += 1;
                }
                Due::WaitUntil(t) => now = t + late_ns,
            }
        }
        (sent, calls)
    }

    #[test]
    fn due_and_commit_keep_the_rate_exact_in_batches() {
        // 100 Mbit/s of 1500 B: 8333.3 units/s, each at its own deadline (one per call)
        let (sent, calls) = run_batched(100_000_000, 1500, 64, 3, 0);
        assert_eq!(sent, 25_000);
        assert_eq!(calls, 25_000);
        // 1 Gbit/s, a sleeper 30 µs late: batches of about 5, the average still exact
        let (sent, calls) = run_batched(1_000_000_000, 1500, 64, 1, 30_000);
        assert!((83_300..=83_340).contains(&sent), "{sent}");
        assert!(calls < 20_000, "{calls} calls for {sent} units");
        // bursts have one size: the window's worth (28 µs / 12 µs: 3 units)
        let mut p = Pacer::new(1_000_000_000, 1500);
        assert_eq!(p.due(0, 8), Due::WaitUntil(24_000), "wait for a full burst");
        assert_eq!(p.due(24_000, 8), Due::Now(3));
        p.commit(3);
        // a batch never exceeds its cap, however late the sender
        assert_eq!(
            p.due(1_000_000, 8),
            Due::Now(8),
            "1 ms late: 81 due, 8 at most"
        );
        // a partial send only advances by what went
        p.commit(3);
        assert_eq!(p.due(1_000_000, 100), Due::Now(84 - 6));
        // precise: every unit at its own deadline
        let mut e = Pacer::exact(1_000_000_000, 1500);
        assert_eq!(e.due(0, 8), Due::Now(1));
        // unlimited: always the whole batch
        assert_eq!(Pacer::new(0, 1500).due(5, 44), Due::Now(44));
    }

    #[test]
    fn waiter_follows_the_measured_oversleep() {
        let mut w = Waiter::default();
        assert_eq!(w.typical_ns(), 50_000);
        assert_eq!(w.margin_ns(), 110_000);
        for _ in 0..200 {
            w.observe(3_000);
        }
        // bare-metal-like sleeps: a small lead and a small precise margin
        assert!(
            (3_000..3_100).contains(&w.typical_ns()),
            "{}",
            w.typical_ns()
        );
        assert!(w.margin_ns() < 17_000, "{}", w.margin_ns());
        w.observe(80_000);
        assert_eq!(
            w.margin_ns(),
            170_000,
            "an outlier raises the precise margin at once"
        );
        assert!(
            w.typical_ns() < 14_000,
            "and moves the typical oversleep by an eighth"
        );
        w.observe(10_000_000);
        assert_eq!(w.margin_ns(), MARGIN_MAX_NS, "capped");
        for how in [Wake::OnTime, Wake::Precise] {
            let d = Instant::now() + Duration::from_millis(3);
            w.wait_until(d, how, || false);
            assert!(Instant::now() >= d, "never early");
            assert!(Instant::now() - d < Duration::from_millis(20));
        }
        // lazy: one sleep, which may return early; the caller's pacer just asks again
        let t0 = Instant::now();
        w.wait_until(t0 + Duration::from_millis(3), Wake::Lazy, || false);
        assert!(t0.elapsed() < Duration::from_millis(20));
        assert_eq!(
            Wake::for_pacer(&Pacer::new(1_000_000_000, 1500), false),
            Wake::Lazy
        );
        assert_eq!(
            Wake::for_pacer(&Pacer::new(100_000_000, 1500), false),
            Wake::OnTime
        );
        assert_eq!(
            Wake::for_pacer(&Pacer::new(100_000_000, 1500), true),
            Wake::Precise
        );
        let t0 = Instant::now();
        w.wait_until(t0 + Duration::from_secs(10), Wake::OnTime, || true);
        assert!(t0.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn sleep_until_is_close_and_stoppable() {
        let d = Instant::now() + Duration::from_millis(3);
        sleep_until(d, || false);
        let late = Instant::now() - d;
        assert!(late < Duration::from_millis(20), "{late:?}");
        let t0 = Instant::now();
        sleep_until(t0 + Duration::from_secs(10), || true);
        assert!(t0.elapsed() < Duration::from_millis(100));
    }
}
