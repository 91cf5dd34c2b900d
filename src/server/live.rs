//! Live sessions, the server's aggregate rate and recent history, for the HTTP API (`--http`)
//! and anything else that wants to look at a running server: who is testing, how fast, with
//! what loss, RTT and CPU, for how long.
//!
//! A session registers when its data phase starts and its status thread reports each take
//! (about once a second, never per packet) through [`LiveSession::add`]; a per-second sample
//! is kept for the last [`HISTORY_SECS`] seconds, and the take's bytes are spread over the
//! seconds it covers in the server's aggregate (also [`HISTORY_SECS`]). Ended sessions keep a
//! summary in a ring of [`RECENT`]. Must not: render anything (api.rs does) or decide about
//! sessions.
//!
//! Memory, bounded: a [`RateSample`] is 28 bytes, so a session's history is at most
//! 300 x 28 = 8.4 KB; only the first [`HISTORY_SESSIONS`] concurrent sessions keep one
//! (2.2 MB at most; later ones show their current rates only); the aggregate is 300 x 24 B
//! = 7.2 KB; the ended ring about 100 x 200 B.

use crate::atomic::AtomicU64;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::engine::Take;

/// Seconds of per-second samples kept per live session and for the server's aggregate
/// (5 minutes, issue 19).
pub const HISTORY_SECS: usize = 300;
/// Concurrent sessions that keep a per-second history (the bound on its memory overall).
pub const HISTORY_SESSIONS: usize = 256;
/// Ended sessions kept.
pub const RECENT: usize = 100;

/// One per-second sample of a session (server's view). Small on purpose (28 bytes): 300 of
/// them per session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSample {
    /// Seconds into the session.
    pub t: f32,
    /// Bit/s the server sent ("server sends") and received ("client sends").
    pub tx_bps: f32,
    pub rx_bps: f32,
    /// Datagrams received and lost in this sample (UDP; 0 for TCP).
    pub rx_packets: u32,
    pub lost: u32,
    /// Connection 0's smoothed RTT from TCP_INFO, microseconds; 0 = unknown (UDP).
    pub rtt_us: u32,
    /// Percent: this machine's, and the client's from its statuses.
    pub local_cpu: Option<u8>,
    pub remote_cpu: Option<u8>,
}

pub use super::SessionInfo;

/// Running sums over a session, for its averages.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub rx_packets: u64,
    pub lost: u64,
    /// (sum, count) of the takes that had a value.
    pub local_cpu: (u64, u64),
    pub remote_cpu: (u64, u64),
    pub rtt_us: (u64, u64),
}

impl Sums {
    fn avg((sum, n): (u64, u64)) -> Option<f64> {
        (n > 0).then(|| sum as f64 / n as f64)
    }
    pub fn local_cpu_avg(&self) -> Option<f64> {
        Sums::avg(self.local_cpu)
    }
    pub fn remote_cpu_avg(&self) -> Option<f64> {
        Sums::avg(self.remote_cpu)
    }
    pub fn rtt_ms_avg(&self) -> Option<f64> {
        Sums::avg(self.rtt_us).map(|us| us / 1000.0)
    }
    /// Lost / (received + lost), percent; `None` without datagrams (TCP).
    pub fn loss_pct(&self) -> Option<f64> {
        let all = self.rx_packets + self.lost;
        (all > 0).then(|| self.lost as f64 * 100.0 / all as f64)
    }
}

#[derive(Debug)]
struct Counts {
    tx: u64,
    rx: u64,
    sums: Sums,
    /// Bytes, datagrams and time at the last sample.
    mark: (u64, u64, u64, u64, Instant),
    /// The last take, where the aggregate spreads the next one from.
    last_take: Instant,
    now: Option<RateSample>,
    samples: VecDeque<RateSample>,
    keep_history: bool,
}

/// A running session's entry.
#[derive(Debug)]
pub struct LiveSession {
    pub id: u64,
    pub info: SessionInfo,
    since: Instant,
    counts: Mutex<Counts>,
    agg: Arc<Mutex<Aggregate>>,
}

/// A copy of a live session at one moment.
#[derive(Debug, Clone)]
pub struct LiveView {
    pub id: u64,
    pub info: SessionInfo,
    pub elapsed: Duration,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// The last sample (rates, loss, RTT, CPU), if any.
    pub now: Option<RateSample>,
    pub sums: Sums,
    pub history: Vec<RateSample>,
}

/// An ended session.
#[derive(Debug, Clone)]
pub struct Ended {
    pub id: u64,
    pub info: SessionInfo,
    pub duration: Duration,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub sums: Sums,
    pub end_reason: String,
}

impl Ended {
    /// Average bit/s over the session (0 for a session that lasted no time).
    pub fn avg_bps(&self, bytes: u64) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 {
            bytes as f64 * 8.0 / s
        } else {
            0.0
        }
    }
}

impl LiveSession {
    /// One take of the status thread: bytes and datagrams since the last call, the gauges.
    pub fn add(&self, t: &Take) {
        self.add_at(t, Instant::now());
    }

    fn add_at(&self, t: &Take, now: Instant) {
        let mut c = self.counts.lock();
        c.tx += t.tx_bytes;
        c.rx += t.rx_bytes;
        let s = &mut c.sums;
        s.rx_packets += t.rx_packets;
        s.lost += t.lost;
        let acc = |(sum, n): &mut (u64, u64), v: Option<u64>| {
            if let Some(v) = v {
                *sum += v;
                *n += 1;
            }
        };
        acc(&mut s.local_cpu, t.local_cpu.map(u64::from));
        acc(&mut s.remote_cpu, t.remote_cpu.map(u64::from));
        acc(&mut s.rtt_us, t.rtt_us.map(u64::from));
        let from = std::mem::replace(&mut c.last_take, now);
        self.agg.lock().spread(from, now, t.tx_bytes, t.rx_bytes);
        let (tx0, rx0, pk0, lost0, t0) = c.mark;
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        // Takes come about once a second, but a report and a status take can fall close
        // together: sample only once at least 0.9 s has passed, so rates are not spiky.
        if dt >= 0.9 {
            let bps = |d: u64| (d as f64 * 8.0 / dt) as f32;
            let small = |d: u64| d.min(u64::from(u32::MAX)) as u32;
            let s = RateSample {
                t: now.saturating_duration_since(self.since).as_secs_f32(),
                tx_bps: bps(c.tx - tx0),
                rx_bps: bps(c.rx - rx0),
                rx_packets: small(c.sums.rx_packets - pk0),
                lost: small(c.sums.lost - lost0),
                rtt_us: t.rtt_us.unwrap_or(0),
                local_cpu: t.local_cpu,
                remote_cpu: t.remote_cpu,
            };
            c.now = Some(s);
            if c.keep_history {
                if c.samples.len() == HISTORY_SECS {
                    c.samples.pop_front();
                }
                c.samples.push_back(s);
            }
            c.mark = (c.tx, c.rx, c.sums.rx_packets, c.sums.lost, now);
        }
    }

    pub fn view(&self) -> LiveView {
        let c = self.counts.lock();
        LiveView {
            id: self.id,
            info: self.info.clone(),
            elapsed: self.since.elapsed(),
            tx_bytes: c.tx,
            rx_bytes: c.rx,
            now: c.now,
            sums: c.sums,
            history: c.samples.iter().copied().collect(),
        }
    }
}

/// The server's bytes per whole second since the registry began, over every session: a
/// take's bytes spread over the seconds it covers, in proportion.
#[derive(Debug)]
struct Aggregate {
    epoch: Instant,
    /// The second of `secs[0]`.
    first: u64,
    /// Bytes (tx, rx) per second, oldest first; at most HISTORY_SECS + 2.
    secs: VecDeque<(f64, f64)>,
}

impl Aggregate {
    fn spread(&mut self, from: Instant, to: Instant, tx: u64, rx: u64) {
        if tx == 0 && rx == 0 {
            return;
        }
        let b = to.saturating_duration_since(self.epoch).as_secs_f64();
        // A take never covers more than a few seconds; after a stall, older seconds are
        // history already: spread over the last HISTORY_SECS at most.
        let a = from
            .saturating_duration_since(self.epoch)
            .as_secs_f64()
            .max(b - HISTORY_SECS as f64);
        let span = b - a;
        let mut k = a as u64;
        loop {
            let lo = (k as f64).max(a);
            let hi = ((k + 1) as f64).min(b);
            let share = if span > 0.0 { (hi - lo) / span } else { 1.0 };
            if let Some(slot) = self.slot(k) {
                slot.0 += tx as f64 * share;
                slot.1 += rx as f64 * share;
            }
            k += 1;
            if k as f64 >= b {
                break;
            }
        }
    }

    /// The bucket of second `k`, made (and old ones dropped) as needed; `None` when too old.
    fn slot(&mut self, k: u64) -> Option<&mut (f64, f64)> {
        const KEEP: usize = HISTORY_SECS + 2;
        if self.secs.is_empty() {
            self.first = k;
        }
        let end = self.first + self.secs.len() as u64;
        if k >= end {
            if k - end >= KEEP as u64 {
                self.secs.clear();
                self.first = k;
            }
            while self.first + (self.secs.len() as u64) <= k {
                self.secs.push_back((0.0, 0.0));
            }
            while self.secs.len() > KEEP {
                self.secs.pop_front();
                self.first += 1;
            }
        }
        let i = k.checked_sub(self.first)?;
        self.secs.get_mut(i as usize)
    }

    /// (second since the epoch, tx bit/s, rx bit/s) for the complete seconds of the last
    /// HISTORY_SECS before `now`: a second is complete once every session took after its end,
    /// which each does within about a second, so the newest two are left out.
    fn history(&self, now: Instant) -> Vec<(u64, f32, f32)> {
        let now_k = now.saturating_duration_since(self.epoch).as_secs();
        let Some(last) = now_k.checked_sub(2) else {
            return Vec::new();
        };
        let first = (last + 1).saturating_sub(HISTORY_SECS as u64);
        (first..=last)
            .map(|k| {
                let (tx, rx) = k
                    .checked_sub(self.first)
                    .and_then(|i| self.secs.get(i as usize))
                    .copied()
                    .unwrap_or((0.0, 0.0));
                (k, (tx * 8.0) as f32, (rx * 8.0) as f32)
            })
            .collect()
    }
}

/// Every live session and the recent ones.
#[derive(Debug)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<Vec<Arc<LiveSession>>>,
    recent: Mutex<VecDeque<Ended>>,
    /// Sessions that ever started, and their bytes once ended.
    ended_tx: AtomicU64,
    ended_rx: AtomicU64,
    agg: Arc<Mutex<Aggregate>>,
    /// When `agg`'s second 0 began, on the wall clock.
    began: SystemTime,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            next: AtomicU64::new(0),
            live: Mutex::default(),
            recent: Mutex::default(),
            ended_tx: AtomicU64::new(0),
            ended_rx: AtomicU64::new(0),
            agg: Arc::new(Mutex::new(Aggregate {
                epoch: Instant::now(),
                first: 0,
                secs: VecDeque::new(),
            })),
            began: SystemTime::now(),
        }
    }
}

impl Registry {
    /// Registers a starting session; [`Registry::end`] removes it.
    pub fn start(&self, info: SessionInfo) -> Arc<LiveSession> {
        let now = Instant::now();
        let mut live = self.live.lock();
        let keep_history = live.len() < HISTORY_SESSIONS;
        let s = Arc::new(LiveSession {
            id: self.next.fetch_add(1, Relaxed) + 1,
            info,
            since: now,
            counts: Mutex::new(Counts {
                tx: 0,
                rx: 0,
                sums: Sums::default(),
                mark: (0, 0, 0, 0, now),
                last_take: now,
                now: None,
                samples: VecDeque::new(),
                keep_history,
            }),
            agg: self.agg.clone(),
        });
        live.push(s.clone());
        s
    }

    /// The session ended for `reason` (the record's `end_reason` word).
    pub fn end(&self, s: &LiveSession, reason: &str) {
        self.live.lock().retain(|x| x.id != s.id);
        let v = s.view();
        self.ended_tx.fetch_add(v.tx_bytes, Relaxed);
        self.ended_rx.fetch_add(v.rx_bytes, Relaxed);
        let mut r = self.recent.lock();
        if r.len() == RECENT {
            r.pop_back();
        }
        r.push_front(Ended {
            id: v.id,
            info: v.info,
            duration: v.elapsed,
            tx_bytes: v.tx_bytes,
            rx_bytes: v.rx_bytes,
            sums: v.sums,
            end_reason: reason.to_string(),
        });
    }

    /// Live sessions, oldest first.
    pub fn live(&self) -> Vec<LiveView> {
        let list: Vec<Arc<LiveSession>> = self.live.lock().clone();
        list.iter().map(|s| s.view()).collect()
    }

    /// Ended sessions, newest first.
    pub fn recent(&self) -> Vec<Ended> {
        self.recent.lock().iter().cloned().collect()
    }

    /// Sessions started so far.
    pub fn started(&self) -> u64 {
        self.next.load(Relaxed)
    }

    /// The server's rates over every session, per complete second of the last
    /// [`HISTORY_SECS`]: (wall-clock time of the second's start, tx bit/s, rx bit/s).
    pub fn aggregate(&self) -> Vec<(SystemTime, f32, f32)> {
        let h = self.agg.lock().history(Instant::now());
        h.into_iter()
            .map(|(k, tx, rx)| (self.began + Duration::from_secs(k), tx, rx))
            .collect()
    }

    /// Bytes sent and received by all sessions, live ones included.
    pub fn totals(&self) -> (u64, u64) {
        let live = self.live();
        let tx = self.ended_tx.load(Relaxed) + live.iter().map(|v| v.tx_bytes).sum::<u64>();
        let rx = self.ended_rx.load(Relaxed) + live.iter().map(|v| v.rx_bytes).sum::<u64>();
        (tx, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SessionInfo {
        SessionInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            user: Some("alice".into()),
            protocol: "udp",
            direction: "both",
            connections: 1,
            started: SystemTime::now(),
            cap_bps: None,
        }
    }

    fn take(tx: u64, rx: u64) -> Take {
        Take {
            tx_bytes: tx,
            rx_bytes: rx,
            ..Take::default()
        }
    }

    #[test]
    fn samples_once_a_second_and_keeps_the_last_five_minutes() {
        let reg = Registry::default();
        let s = reg.start(info());
        let t0 = s.since;
        // 125 MB/s out, 12.5 MB/s in: 1 Gbit/s and 100 Mbit/s; 1 % loss, CPU and RTT.
        let t = Take {
            rx_packets: 495,
            lost: 5,
            local_cpu: Some(20),
            remote_cpu: Some(40),
            rtt_us: Some(1500),
            ..take(62_500_000, 6_250_000)
        };
        for i in 1..=310u64 {
            let at = t0 + Duration::from_secs(i);
            s.add_at(&t, at - Duration::from_millis(500));
            s.add_at(&t, at);
        }
        let v = s.view();
        assert_eq!(v.history.len(), HISTORY_SECS);
        assert_eq!(v.history.last().unwrap().t, 310.0);
        assert_eq!(v.history.first().unwrap().t, 11.0);
        assert!(
            v.history.iter().all(|h| h.tx_bps == 1e9
                && h.rx_bps == 1e8
                && (h.rx_packets, h.lost, h.rtt_us) == (990, 10, 1500)
                && (h.local_cpu, h.remote_cpu) == (Some(20), Some(40))),
            "{:?}",
            v.history.last()
        );
        assert_eq!(v.now.map(|n| (n.tx_bps, n.rx_bps)), Some((1e9, 1e8)));
        assert_eq!(v.tx_bytes, 310 * 125_000_000);
        assert_eq!(v.sums.loss_pct(), Some(1.0));
        assert_eq!(v.sums.rtt_ms_avg(), Some(1.5));
        assert_eq!(
            (v.sums.local_cpu_avg(), v.sums.remote_cpu_avg()),
            (Some(20.0), Some(40.0))
        );
        assert_eq!(
            std::mem::size_of::<RateSample>(),
            28,
            "the memory bound in the docs"
        );
    }

    #[test]
    fn the_aggregate_sums_sessions_per_second_and_spreads_takes_over_seconds() {
        let reg = Registry::default();
        let a = reg.start(info());
        let b = reg.start(info());
        let e = reg.agg.lock().epoch;
        // Session a takes on whole seconds (1 MB each: 8 Mbit/s out); b takes at x.5 s
        // (2 MB in each second: 16 Mbit/s), so each of its takes is split over two seconds.
        for k in 1..=10u64 {
            a.add_at(&take(1_000_000, 0), e + Duration::from_secs(k));
            b.add_at(
                &take(0, 2_000_000),
                e + Duration::from_millis(k * 1000 + 500),
            );
        }
        let h = reg.agg.lock().history(e + Duration::from_secs(11));
        // Seconds 0..=9: the newest two (10 and 11) may still be taking.
        assert_eq!(h.len(), 10, "{h:?}");
        // b's first take covers 0-1.5 s: two thirds of its 2 MB fall in second 0, the
        // third left and half of its second take in second 1.
        let near = |a: f32, b: f32| (a - b).abs() < 1e3;
        assert!(
            near(h[0].2, 16e6 * 2.0 / 3.0) && near(h[1].2, 16e6 * 5.0 / 6.0),
            "{h:?}"
        );
        for &(k, tx, rx) in &h {
            assert_eq!(tx, 8e6, "second {k}");
            assert!(k < 2 || rx == 16e6, "second {k}: {rx}");
        }
        // Idle seconds read as zero; five minutes kept, no more.
        let later = e + Duration::from_secs(400);
        let h = reg.agg.lock().history(later);
        assert_eq!(h.len(), HISTORY_SECS);
        assert!(h.iter().all(|&(_, tx, rx)| tx == 0.0 && rx == 0.0));
        a.add_at(&take(1_000_000, 0), later);
        assert!(reg.agg.lock().secs.len() <= HISTORY_SECS + 2);
    }

    #[test]
    fn history_memory_is_bounded_overall() {
        let reg = Registry::default();
        let all: Vec<_> = (0..HISTORY_SESSIONS + 1)
            .map(|_| reg.start(info()))
            .collect();
        let last = all.last().unwrap();
        last.add_at(&take(1000, 0), last.since + Duration::from_secs(1));
        let v = last.view();
        assert!(v.history.is_empty() && v.now.is_some(), "{v:?}");
    }

    #[test]
    fn ended_sessions_move_to_the_recent_ring() {
        let reg = Registry::default();
        let a = reg.start(info());
        let b = reg.start(info());
        a.add(&take(100, 10));
        b.add(&take(7, 3));
        assert_eq!(reg.live().len(), 2);
        assert_eq!(reg.totals(), (107, 13));
        reg.end(&a, "client_closed");
        assert_eq!(reg.live().iter().map(|v| v.id).collect::<Vec<_>>(), [b.id]);
        let r = reg.recent();
        assert_eq!(
            (r[0].id, r[0].tx_bytes, r[0].end_reason.as_str()),
            (a.id, 100, "client_closed")
        );
        let one_s = Ended {
            duration: Duration::from_secs(2),
            ..r[0].clone()
        };
        assert_eq!(one_s.avg_bps(100), 400.0);
        assert_eq!(reg.totals(), (107, 13));
        for _ in 0..RECENT + 5 {
            let s = reg.start(info());
            reg.end(&s, "quota");
        }
        assert_eq!(reg.recent().len(), RECENT);
        assert_eq!(reg.started(), 2 + RECENT as u64 + 5);
    }
}
