//! Live sessions and recent history, for the HTTP API (`--http`) and anything else that
//! wants to look at a running server: who is testing, how fast, for how long.
//!
//! A session registers when its data phase starts and its status thread reports the bytes
//! of each take (about once a second, never per packet) through [`LiveSession::add`]; a
//! per-second rate sample is kept for the last [`HISTORY_SECS`] seconds. Ended sessions keep a
//! summary in a ring of [`RECENT`]. Must not: render anything (api.rs does) or decide about
//! sessions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// Seconds of per-second rate samples kept per live session.
pub const HISTORY_SECS: usize = 120;
/// Ended sessions kept.
pub const RECENT: usize = 100;

/// One per-second sample: seconds into the session, bit/s each way (server's view).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSample {
    pub t: f64,
    pub tx_bps: f64,
    pub rx_bps: f64,
}

/// What does not change during a session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub peer: SocketAddr,
    pub user: Option<String>,
    pub protocol: &'static str,
    /// The client's word for what it does: `receive`, `send`, `both`.
    pub direction: &'static str,
    pub connections: usize,
    pub started: SystemTime,
    /// The rate the server sends at, when `--max-rate` or a limit capped it.
    pub cap_bps: Option<u64>,
}

#[derive(Debug)]
struct Counts {
    tx: u64,
    rx: u64,
    /// Bytes and time at the last sample.
    mark: (u64, u64, Instant),
    now_bps: (f64, f64),
    samples: VecDeque<RateSample>,
}

/// A running session's entry.
#[derive(Debug)]
pub struct LiveSession {
    pub id: u64,
    pub info: SessionInfo,
    since: Instant,
    counts: Mutex<Counts>,
}

/// A copy of a live session at one moment.
#[derive(Debug, Clone)]
pub struct LiveView {
    pub id: u64,
    pub info: SessionInfo,
    pub elapsed: Duration,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_bps: f64,
    pub rx_bps: f64,
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
    pub end_reason: String,
}

impl LiveSession {
    /// Bytes sent and received since the last call (the status thread's take).
    pub fn add(&self, sent: u64, received: u64) {
        self.add_at(sent, received, Instant::now());
    }

    fn add_at(&self, sent: u64, received: u64, now: Instant) {
        let mut c = self.counts.lock();
        c.tx += sent;
        c.rx += received;
        let (tx0, rx0, t0) = c.mark;
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        // Takes come about once a second, but a report and a status take can fall close
        // together: sample only once at least 0.9 s has passed, so rates are not spiky.
        if dt >= 0.9 {
            let bps = |d: u64| d as f64 * 8.0 / dt;
            let s = RateSample {
                t: now.saturating_duration_since(self.since).as_secs_f64(),
                tx_bps: bps(c.tx - tx0),
                rx_bps: bps(c.rx - rx0),
            };
            c.now_bps = (s.tx_bps, s.rx_bps);
            if c.samples.len() == HISTORY_SECS {
                c.samples.pop_front();
            }
            c.samples.push_back(s);
            c.mark = (c.tx, c.rx, now);
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
            tx_bps: c.now_bps.0,
            rx_bps: c.now_bps.1,
            history: c.samples.iter().copied().collect(),
        }
    }
}

/// Every live session and the recent ones.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<Vec<Arc<LiveSession>>>,
    recent: Mutex<VecDeque<Ended>>,
    /// Sessions that ever started, and their bytes once ended.
    ended_tx: AtomicU64,
    ended_rx: AtomicU64,
}

impl Registry {
    /// Registers a starting session; [`Registry::end`] removes it.
    pub fn start(&self, info: SessionInfo) -> Arc<LiveSession> {
        let now = Instant::now();
        let s = Arc::new(LiveSession {
            id: self.next.fetch_add(1, Relaxed) + 1,
            info,
            since: now,
            counts: Mutex::new(Counts {
                tx: 0,
                rx: 0,
                mark: (0, 0, now),
                now_bps: (0.0, 0.0),
                samples: VecDeque::with_capacity(HISTORY_SECS),
            }),
        });
        self.live.lock().push(s.clone());
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

    #[test]
    fn samples_once_a_second_and_keeps_the_last_two_minutes() {
        let reg = Registry::default();
        let s = reg.start(info());
        let t0 = s.since;
        // 125 MB/s out, 12.5 MB/s in: 1 Gbit/s and 100 Mbit/s.
        for i in 1..=130u64 {
            let t = t0 + Duration::from_secs(i);
            s.add_at(62_500_000, 6_250_000, t - Duration::from_millis(500));
            s.add_at(62_500_000, 6_250_000, t);
        }
        let v = s.view();
        assert_eq!(v.history.len(), HISTORY_SECS);
        assert_eq!(v.history.last().unwrap().t, 130.0);
        assert_eq!(v.history.first().unwrap().t, 11.0);
        assert!(
            v.history.iter().all(|h| h.tx_bps == 1e9 && h.rx_bps == 1e8),
            "{v:?}"
        );
        assert_eq!((v.tx_bps, v.rx_bps), (1e9, 1e8));
        assert_eq!(v.tx_bytes, 130 * 125_000_000);
    }

    #[test]
    fn ended_sessions_move_to_the_recent_ring() {
        let reg = Registry::default();
        let a = reg.start(info());
        let b = reg.start(info());
        a.add(100, 10);
        b.add(7, 3);
        assert_eq!(reg.live().len(), 2);
        assert_eq!(reg.totals(), (107, 13));
        reg.end(&a, "client_closed");
        assert_eq!(reg.live().iter().map(|v| v.id).collect::<Vec<_>>(), [b.id]);
        let r = reg.recent();
        assert_eq!(
            (r[0].id, r[0].tx_bytes, r[0].end_reason.as_str()),
            (a.id, 100, "client_closed")
        );
        assert_eq!(reg.totals(), (107, 13));
        for _ in 0..RECENT + 5 {
            let s = reg.start(info());
            reg.end(&s, "quota");
        }
        assert_eq!(reg.recent().len(), RECENT);
        assert_eq!(reg.started(), 2 + RECENT as u64 + 5);
    }
}
