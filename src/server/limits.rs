//! Per-source limits of the server: handshakes in progress (overall and per source), login
//! attempts and failures per source, and a gate that keeps rejection logging bounded.
//!
//! Pure: time comes in as `Instant` arguments, so tests drive it with a fake clock. No
//! sockets, no threads, no logging: the accept loop and the guard thread (`guard.rs`) call
//! these under one lock and log what they return.
//!
//! Why per source: one client holding 300 silent connections filled the old global cap of 256
//! handshakes and 0 of 30 legitimate clients were served for a minute; an EC-SRP5 MSG1 costs
//! the server ~10x what it costs the sender (issue 12). A source is an IPv4 address or an
//! IPv6 /64 (one host commonly owns a whole /64, so per-address IPv6 limits are no limits).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

pub use crate::config::{GuardConfig, AUTH_BURST};

/// A source: an IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// One IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl Source {
    /// The source an address belongs to.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(a) => Source::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    Source::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(o) => write!(f, "{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
            Source::V6(p) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(p);
                write!(f, "{}/64", Ipv6Addr::from(o))
            }
        }
    }
}

/// Why a connection or a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_handshakes` are in progress.
    Busy(usize),
    /// `max_handshakes_per_source` are in progress from this source.
    SourceBusy(usize),
    /// The source is refused after too many wrong logins, until this time.
    Blocked(Instant),
    /// The source started more logins than `logins_per_minute` allows.
    LoginRate(u32),
    /// `max_sessions_per_source` sessions from this source are running.
    SourceSessions(usize),
    /// The source's sessions hold this many TCP connections, and this one asks for that
    /// many more, over `max_connections_per_source`.
    SourceConnections(usize, usize),
}

impl Refusal {
    /// What to log, with the setting that decides it.
    pub fn describe(&self, now: Instant) -> String {
        match *self {
            Refusal::Busy(n) => format!("{n} handshakes already in progress (--max-handshakes)"),
            Refusal::SourceBusy(n) => format!(
                "{n} handshakes already in progress from this source (--max-handshakes-per-source)"
            ),
            Refusal::Blocked(until) => format!(
                "refused for {} s more after too many wrong logins (--max-login-failures)",
                until.saturating_duration_since(now).as_secs() + 1
            ),
            Refusal::LoginRate(n) => {
                format!("more than {n} logins per minute from this source (--logins-per-minute)")
            }
            Refusal::SourceSessions(n) => format!(
                "{n} sessions from this source are running (--max-sessions-per-source)"
            ),
            Refusal::SourceConnections(have, asked) => format!(
                "this source's sessions hold {have} TCP connections and this one asks for {asked} more (--max-connections-per-source)"
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct SourceState {
    handshakes: usize,
    /// Sessions running, and the TCP connections they asked for (issue 18).
    sessions: usize,
    connections: usize,
    /// Data connections that sessions from this source are waiting for.
    join_room: usize,
    /// Login tokens left (the bucket), and when it was last refilled.
    tokens: f64,
    refilled: Instant,
    /// Wrong logins counted in the current window, and when it began.
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

impl SourceState {
    fn new(now: Instant) -> Self {
        SourceState {
            handshakes: 0,
            sessions: 0,
            connections: 0,
            join_room: 0,
            tokens: f64::from(AUTH_BURST),
            refilled: now,
            failures: 0,
            window_start: now,
            blocked_until: None,
        }
    }

    fn blocked(&self, now: Instant) -> Option<Instant> {
        self.blocked_until.filter(|&t| now < t)
    }

    /// Nothing left to remember: no handshake, no pending join, no block, a full bucket and
    /// no failure in a live window.
    fn idle(&self, cfg: &GuardConfig, now: Instant) -> bool {
        let bucket_full = cfg.logins_per_minute == 0 || {
            let mut t = self.clone();
            t.refill(cfg, now);
            t.tokens >= f64::from(AUTH_BURST)
        };
        self.handshakes == 0
            && self.sessions == 0
            && self.join_room == 0
            && self.blocked(now).is_none()
            && (self.failures == 0 || now.duration_since(self.window_start) >= cfg.login_window)
            && bucket_full
    }

    fn refill(&mut self, cfg: &GuardConfig, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let per_s = f64::from(cfg.logins_per_minute) / 60.0;
        self.tokens = (self.tokens + dt * per_s).min(f64::from(AUTH_BURST));
    }
}

/// The server's per-source table, behind one lock.
#[derive(Debug)]
pub struct Limits {
    cfg: GuardConfig,
    /// A plain list, pruned every few seconds: a linear scan of even a few thousand entries
    /// per accept costs microseconds, and a second HashMap type cost the router build 3 KiB.
    sources: Vec<(Source, SourceState)>,
    handshakes: usize,
}

impl Limits {
    /// An empty table.
    pub fn new(cfg: GuardConfig) -> Self {
        Limits {
            cfg,
            sources: Vec::new(),
            handshakes: 0,
        }
    }

    fn get(&self, src: Source) -> Option<&SourceState> {
        self.sources.iter().find(|(k, _)| *k == src).map(|(_, v)| v)
    }

    fn get_mut(&mut self, src: Source) -> Option<&mut SourceState> {
        self.sources
            .iter_mut()
            .find(|(k, _)| *k == src)
            .map(|(_, v)| v)
    }

    /// The source's state, created on first sight.
    fn state(&mut self, src: Source, now: Instant) -> &mut SourceState {
        let i = match self.sources.iter().position(|(k, _)| *k == src) {
            Some(i) => i,
            None => {
                self.sources.push((src, SourceState::new(now)));
                self.sources.len() - 1
            }
        };
        &mut self.sources[i].1
    }

    /// The limits in force.
    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// A new connection from `src`: admitted (counted as a handshake in progress until
    /// [`Limits::end_handshake`]) or refused. Blocked sources are refused before the hello.
    pub fn begin_handshake(&mut self, src: Source, now: Instant) -> Result<(), Refusal> {
        if let Some(st) = self.get(src) {
            if let Some(until) = st.blocked(now) {
                return Err(Refusal::Blocked(until));
            }
        }
        if self.handshakes >= self.cfg.max_handshakes {
            return Err(Refusal::Busy(self.handshakes));
        }
        // Room for awaited data connections is itself bounded: a source that sends commands
        // asking for 255 connections must not buy itself the whole server (a quarter of the
        // overall cap at most).
        let room_cap = self.cfg.max_handshakes / 4;
        let cap = self.cfg.max_handshakes_per_source;
        let st = self.state(src, now);
        if st.handshakes >= cap + st.join_room.min(room_cap) {
            return Err(Refusal::SourceBusy(st.handshakes));
        }
        st.handshakes += 1;
        self.handshakes += 1;
        Ok(())
    }

    /// A handshake admitted by [`Limits::begin_handshake`] ended (session started, refused
    /// or dropped).
    pub fn end_handshake(&mut self, src: Source) {
        if let Some(st) = self.get_mut(src) {
            if st.handshakes > 0 {
                st.handshakes -= 1;
                self.handshakes = self.handshakes.saturating_sub(1);
            }
        }
    }

    /// A session from `src` waits for `n` more data connections (`add`), or stopped
    /// waiting for them (`!add`). They may arrive beyond the per-source cap.
    pub fn join_room(&mut self, src: Source, n: usize, add: bool, now: Instant) {
        let st = self.state(src, now);
        if add {
            st.join_room += n;
        } else {
            st.join_room = st.join_room.saturating_sub(n);
        }
    }

    /// A session from `src` over `connections` TCP connections (1 for UDP: its control
    /// connection) is about to start: admitted (counted until [`Limits::end_session`]) or
    /// refused. 0 in a cap is no limit.
    pub fn begin_session(
        &mut self,
        src: Source,
        connections: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        let cfg = self.cfg;
        let st = self.state(src, now);
        if cfg.max_sessions_per_source > 0 && st.sessions >= cfg.max_sessions_per_source {
            return Err(Refusal::SourceSessions(st.sessions));
        }
        if cfg.max_connections_per_source > 0
            && st.connections + connections > cfg.max_connections_per_source
        {
            return Err(Refusal::SourceConnections(st.connections, connections));
        }
        st.sessions += 1;
        st.connections += connections;
        Ok(())
    }

    /// Whether a session from `src` is running (the echo's higher allowance, issue 22).
    pub fn has_session(&self, src: Source) -> bool {
        self.get(src).is_some_and(|st| st.sessions > 0)
    }

    /// A session admitted by [`Limits::begin_session`] ended.
    pub fn end_session(&mut self, src: Source, connections: usize) {
        if let Some(st) = self.get_mut(src) {
            st.sessions = st.sessions.saturating_sub(1);
            st.connections = st.connections.saturating_sub(connections);
        }
    }

    /// A login is about to start its (possibly expensive) exchange.
    pub fn begin_login(&mut self, src: Source, now: Instant) -> Result<(), Refusal> {
        let cfg = self.cfg;
        let st = self.state(src, now);
        if let Some(until) = st.blocked(now) {
            return Err(Refusal::Blocked(until));
        }
        if cfg.logins_per_minute == 0 {
            return Ok(());
        }
        st.refill(&cfg, now);
        if st.tokens < 1.0 {
            return Err(Refusal::LoginRate(cfg.logins_per_minute));
        }
        st.tokens -= 1.0;
        Ok(())
    }

    /// A wrong login. Returns the end of the block when this failure starts one (log it
    /// then, once); later failures and refusals during the block return `None`.
    pub fn login_failed(&mut self, src: Source, now: Instant) -> Option<Instant> {
        let cfg = self.cfg;
        if cfg.max_login_failures == 0 {
            return None;
        }
        let st = self.state(src, now);
        if st.blocked(now).is_some() {
            return None;
        }
        if now.duration_since(st.window_start) >= cfg.login_window {
            st.window_start = now;
            st.failures = 0;
        }
        st.failures += 1;
        if st.failures >= cfg.max_login_failures {
            let until = now + cfg.login_block;
            st.blocked_until = Some(until);
            st.failures = 0;
            st.window_start = until;
            return Some(until);
        }
        None
    }

    /// A correct login forgets the source's wrong ones.
    pub fn login_ok(&mut self, src: Source) {
        if let Some(st) = self.get_mut(src) {
            st.failures = 0;
        }
    }

    /// Handshakes in progress, all sources.
    pub fn handshakes(&self) -> usize {
        self.handshakes
    }

    /// Sources refused now after wrong logins.
    pub fn blocked_sources(&self, now: Instant) -> usize {
        self.sources
            .iter()
            .filter(|(_, s)| s.blocked(now).is_some())
            .count()
    }

    /// Sources remembered (for tests and the bound on memory).
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Forgets sources with nothing left to remember, so a scan from many addresses does
    /// not grow the table for good.
    pub fn prune(&mut self, now: Instant) {
        let cfg = self.cfg;
        self.sources.retain(|(_, st)| !st.idle(&cfg, now));
    }
}

/// Keeps logging bounded under a flood: per category, the first [`LogGate::PER_WINDOW`]
/// lines of each window are let through, the rest only counted; [`LogGate::flush`] hands
/// back the counts of a finished window for one summary line each.
#[derive(Debug)]
pub struct LogGate {
    window: Duration,
    start: Instant,
    seen: Vec<(&'static str, u64)>,
}

impl LogGate {
    /// Lines per category and window that are logged one by one.
    pub const PER_WINDOW: u64 = 5;

    /// A gate with windows of `window`.
    pub fn new(window: Duration, now: Instant) -> Self {
        LogGate {
            window,
            start: now,
            seen: Vec::new(),
        }
    }

    /// One event of `category`: true when it should be logged as its own line.
    pub fn allow(&mut self, category: &'static str) -> bool {
        let n = match self.seen.iter_mut().find(|(c, _)| *c == category) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.seen.push((category, 1));
                1
            }
        };
        n <= Self::PER_WINDOW
    }

    /// One event of `category` that is never logged on its own line, only in the window's
    /// summary (a denied address: a deny list exists to be quiet about it).
    pub fn hold(&mut self, category: &'static str) {
        match self.seen.iter_mut().find(|(c, _)| *c == category) {
            Some((_, n)) => *n = (*n).max(Self::PER_WINDOW) + 1,
            None => self.seen.push((category, Self::PER_WINDOW + 1)),
        }
    }

    /// When the window has ended: the categories with lines held back and how many, and a
    /// new window starts. Before that: nothing.
    pub fn flush(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        if now.duration_since(self.start) < self.window {
            return Vec::new();
        }
        self.start = now;
        let out = self
            .seen
            .iter()
            .filter(|(_, n)| *n > Self::PER_WINDOW)
            .map(|&(c, n)| (c, n - Self::PER_WINDOW))
            .collect();
        self.seen.clear();
        out
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(a: u8) -> Source {
        Source::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, a)))
    }

    fn cfg() -> GuardConfig {
        GuardConfig {
            max_handshakes: 10,
            max_handshakes_per_source: 3,
            ..GuardConfig::default()
        }
    }

    #[test]
    fn sources_group_ipv6_by_64_and_fold_v4_mapped() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped), v4(7));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        assert_eq!(v4(7).to_string(), "192.0.2.7");
    }

    #[test]
    fn handshakes_are_capped_per_source_and_overall() {
        let t = Instant::now();
        let mut l = Limits::new(cfg());
        for _ in 0..3 {
            l.begin_handshake(v4(1), t).unwrap();
        }
        assert_eq!(l.begin_handshake(v4(1), t), Err(Refusal::SourceBusy(3)));
        // another source is served while the first is at its cap
        for a in 2..=8 {
            l.begin_handshake(v4(a), t).unwrap();
        }
        assert_eq!(l.handshakes(), 10);
        assert_eq!(l.begin_handshake(v4(9), t), Err(Refusal::Busy(10)));
        l.end_handshake(v4(1));
        l.begin_handshake(v4(9), t).unwrap();
        // ending a handshake that was never admitted changes nothing
        l.end_handshake(v4(200));
        assert_eq!(l.handshakes(), 10);
    }

    #[test]
    fn pending_joins_may_exceed_the_per_source_cap() {
        let t = Instant::now();
        let mut l = Limits::new(GuardConfig {
            max_handshakes: 100,
            ..cfg()
        });
        l.begin_handshake(v4(1), t).unwrap(); // connection 0, waiting for 19 joins
        l.join_room(v4(1), 19, true, t);
        for _ in 0..19 {
            l.begin_handshake(v4(1), t)
                .unwrap_or_else(|e| panic!("{e:?}"));
        }
        // 20 in progress; cap 3 + room 19 = 22
        l.begin_handshake(v4(1), t).unwrap();
        l.begin_handshake(v4(1), t).unwrap();
        assert!(l.begin_handshake(v4(1), t).is_err());
        l.join_room(v4(1), 19, false, t);
        for _ in 0..22 {
            l.end_handshake(v4(1));
        }
        assert_eq!(l.handshakes(), 0);
        l.prune(t);
        assert_eq!(l.sources(), 0);
    }

    #[test]
    fn join_room_is_bounded_by_a_quarter_of_the_overall_cap() {
        let t = Instant::now();
        let mut l = Limits::new(GuardConfig {
            max_handshakes: 100,
            ..cfg()
        });
        // three commands asking for 255 connections each
        for _ in 0..3 {
            l.begin_handshake(v4(1), t).unwrap();
            l.join_room(v4(1), 254, true, t);
        }
        let admitted = (0..200)
            .filter(|_| l.begin_handshake(v4(1), t).is_ok())
            .count();
        assert_eq!(admitted + 3, 3 + 25, "cap 3 + room 25");
        l.begin_handshake(v4(2), t).unwrap();
    }

    #[test]
    fn wrong_logins_block_the_source_once_then_expire() {
        let t = Instant::now();
        let c = GuardConfig {
            max_login_failures: 3,
            login_window: Duration::from_secs(60),
            login_block: Duration::from_secs(30),
            ..cfg()
        };
        let mut l = Limits::new(c);
        assert_eq!(l.login_failed(v4(1), t), None);
        assert_eq!(l.login_failed(v4(1), t), None);
        let until = l.login_failed(v4(1), t).expect("third failure blocks");
        assert_eq!(until, t + Duration::from_secs(30));
        // refused at accept and at login, the block is reported once
        assert_eq!(l.begin_handshake(v4(1), t), Err(Refusal::Blocked(until)));
        assert_eq!(l.begin_login(v4(1), t), Err(Refusal::Blocked(until)));
        assert_eq!(l.login_failed(v4(1), t), None);
        assert_eq!(l.blocked_sources(t), 1);
        // other sources are not affected
        l.begin_handshake(v4(2), t).unwrap();
        l.begin_login(v4(2), t).unwrap();
        // after the block the source starts afresh
        let later = t + Duration::from_secs(31);
        l.begin_handshake(v4(1), later).unwrap();
        assert_eq!(l.login_failed(v4(1), later), None);
        assert_eq!(l.blocked_sources(later), 0);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up_and_success_resets() {
        let t = Instant::now();
        let c = GuardConfig {
            max_login_failures: 2,
            login_window: Duration::from_secs(10),
            ..cfg()
        };
        let mut l = Limits::new(c);
        assert_eq!(l.login_failed(v4(1), t), None);
        assert_eq!(l.login_failed(v4(1), t + Duration::from_secs(11)), None);
        l.login_ok(v4(1));
        assert_eq!(l.login_failed(v4(1), t + Duration::from_secs(12)), None);
        assert!(l.login_failed(v4(1), t + Duration::from_secs(13)).is_some());
    }

    #[test]
    fn login_rate_is_a_bucket_of_ten_refilled_per_minute() {
        let t = Instant::now();
        let c = GuardConfig {
            logins_per_minute: 30,
            ..cfg()
        };
        let mut l = Limits::new(c);
        for _ in 0..AUTH_BURST {
            l.begin_login(v4(1), t).unwrap();
        }
        assert_eq!(l.begin_login(v4(1), t), Err(Refusal::LoginRate(30)));
        // 30 per minute = one every 2 s
        assert!(l
            .begin_login(v4(1), t + Duration::from_millis(1900))
            .is_err());
        l.begin_login(v4(1), t + Duration::from_millis(4000))
            .unwrap();
        // unlimited
        let mut u = Limits::new(GuardConfig {
            logins_per_minute: 0,
            ..cfg()
        });
        for _ in 0..1000 {
            u.begin_login(v4(1), t).unwrap();
        }
    }

    #[test]
    fn prune_keeps_sources_with_state_and_drops_idle_ones() {
        let t = Instant::now();
        let mut l = Limits::new(cfg());
        for a in 1..=200 {
            l.begin_handshake(v4(a), t).unwrap_or(());
            l.end_handshake(v4(a));
        }
        l.begin_handshake(v4(1), t).unwrap();
        l.begin_login(v4(2), t).unwrap(); // bucket not full until refilled
        l.prune(t);
        assert_eq!(l.sources(), 2);
        l.end_handshake(v4(1));
        l.prune(t + Duration::from_secs(60));
        assert_eq!(l.sources(), 0);
    }

    #[test]
    fn sessions_and_their_connections_are_capped_per_source() {
        let cfg = GuardConfig {
            max_sessions_per_source: 3,
            max_connections_per_source: 300,
            ..GuardConfig::default()
        };
        let mut l = Limits::new(cfg);
        let t = Instant::now();
        let a = Source::of("192.0.2.1".parse().unwrap());
        let b = Source::of("192.0.2.2".parse().unwrap());
        // One 255-connection session works; a second one from the same source does not.
        assert_eq!(l.begin_session(a, 255, t), Ok(()));
        assert_eq!(
            l.begin_session(a, 255, t),
            Err(Refusal::SourceConnections(255, 255))
        );
        assert_eq!(l.begin_session(a, 1, t), Ok(()));
        assert_eq!(l.begin_session(a, 1, t), Ok(()));
        assert_eq!(l.begin_session(a, 1, t), Err(Refusal::SourceSessions(3)));
        // Another source is not affected.
        assert_eq!(l.begin_session(b, 255, t), Ok(()));
        l.end_session(a, 255);
        assert_eq!(l.begin_session(a, 20, t), Ok(()));
        // What the echo asks (issue 22).
        assert!(l.has_session(a) && !l.has_session(v4(9)));
        l.prune(t);
        assert_eq!(l.sources(), 2, "sources with sessions are remembered");
        for n in [1, 1, 20] {
            l.end_session(a, n);
        }
        assert!(l.has_session(b) && !l.has_session(a));
        l.end_session(b, 255);
        assert!(!l.has_session(b));
        l.prune(t);
        assert_eq!(l.sources(), 0);
        // 0 = no limit.
        let mut l = Limits::new(GuardConfig {
            max_sessions_per_source: 0,
            max_connections_per_source: 0,
            ..GuardConfig::default()
        });
        for _ in 0..1000 {
            assert_eq!(l.begin_session(a, 255, t), Ok(()));
        }
    }

    #[test]
    fn log_gate_lets_five_through_then_counts() {
        let t = Instant::now();
        let mut g = LogGate::new(Duration::from_secs(10), t);
        let shown = (0..500).filter(|_| g.allow("timeout")).count();
        assert_eq!(shown, 5);
        assert!(g.allow("bad_command"));
        assert!(g.flush(t + Duration::from_secs(9)).is_empty());
        assert_eq!(g.flush(t + Duration::from_secs(10)), vec![("timeout", 495)]);
        // a new window: lines are shown again, and a quiet window flushes nothing
        assert!(g.allow("timeout"));
        assert!(g.flush(t + Duration::from_secs(20)).is_empty());
    }
}
