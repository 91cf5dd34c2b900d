//! The server's UDP echo responder for the client's latency probe (`--latency echo|auto`):
//! one UDP socket on the same address and port number as a TCP listener, served by the
//! `btest-echo` thread.
//!
//! Owns: the socket, the acceptance test, the server's echo clock, the rate limits and the
//! echo counters. Must not: answer anything but our 32- and 48-byte probe datagrams (so it is
//! no general reflector), send more bytes than it received, log per packet, or block shutdown
//! for more than ~100 ms.
//!
//! Wire format (src/wire/echo.rs has the layouts): a datagram is echoed back to its source
//! only if it is exactly 32 bytes long and starts with the magic `BTPROBE1` (echoed
//! unchanged), or exactly 48 bytes with `BTPROBE2` (echoed with bytes 24..40 overwritten by
//! the server's receive and send times, issue 22); anything else is silently dropped and
//! counted in [`EchoStats::ignored`], as is a datagram from a source the server's
//! `--allow`/`--deny` refuses. The server never reads the rest of the datagram (sequence,
//! token, client time, padding).
//!
//! The echo clock: one `Instant` per responder thread taken when it starts (one thread serves
//! one socket, so a client's probes all see the same clock); the receive time is read just
//! after `recv_from` returns and the send time just before `send_to`, in ns since that start.
//! The client needs only their difference (our turnaround, taken out of its RTT) and a
//! monotonic, steady clock for its offset fit (src/probe/owd.rs).
//!
//! Rate limits, so a spoofed flood cannot turn us into a reflector and one client cannot
//! take all the replies: a global token bucket of [`GLOBAL_RATE`] replies/s sustained with a
//! burst of [`GLOBAL_BURST`], and a bucket per source address ([`SOURCE_RATE`]/s, burst
//! [`SOURCE_BURST`]) in a table of at most [`MAX_SOURCES`] addresses, the stalest evicted
//! first. A datagram over either limit gets no reply and counts in
//! [`EchoStats::rate_limited`]; one warning at most every [`WARN_EVERY`] says how many.
//! A client's default probe runs at 10/s, well inside the per-source limit.
//!
//! A source that holds a session of this server (the per-source table of limits.rs, asked
//! through [`Sources::has_session`]) gets [`SESSION_SOURCE_RATE`]/s, burst
//! [`SESSION_SOURCE_BURST`], instead: a speed test probes every 5 ms in up to 3 DSCP classes
//! (600/s, issue 22), and the TCP handshake behind a session cannot be spoofed. It keeps that
//! allowance for [`SESSION_GRACE`] after it was last seen holding one, so the gaps between a
//! speed test's phases and its cooldown (no session running) are not cut to 50/s. The table
//! is behind the server's lock, so it is asked at most once per [`SESSION_RECHECK`] per source
//! and only when it can change the answer (the source is over 50/s, or holds the allowance).
//! A source with no session yet (a speed test's idle phase before its first one) has 50/s.
//! The global rate of 4,000/s fits six such speed tests at once; as a reflector it returns
//! at most 4,000 × 90 B (48 B and its UDP/IP/Ethernet headers) ≈ 2.9 Mbit/s, same size as
//! what it received.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::engine::Stop;

// The datagram's layout and the acceptance test (exactly 32 bytes and the magic; nothing else
// is echoed) are the wire's, shared with the client's probe (issue 20).
use crate::wire::echo::{is_echo2_request, is_echo_request, stamp, ECHO2_LEN};

/// Replies per second, all sources together (was 1,000 before issue 22's speed test).
pub const GLOBAL_RATE: f64 = 4000.0;
/// Replies the global bucket allows back to back.
pub const GLOBAL_BURST: f64 = 400.0;
/// Replies per second to one source address.
pub const SOURCE_RATE: f64 = 50.0;
/// Replies one source may get back to back.
pub const SOURCE_BURST: f64 = 20.0;
/// Replies per second to a source holding a session: 600/s of a speed test and margin.
pub const SESSION_SOURCE_RATE: f64 = 1000.0;
/// Replies back to back to a source holding a session.
pub const SESSION_SOURCE_BURST: f64 = 100.0;
/// How long a source keeps the session allowance after it was last seen with a session.
pub const SESSION_GRACE: Duration = Duration::from_secs(60);
/// A source's session is looked up at most this often.
pub const SESSION_RECHECK: Duration = Duration::from_secs(1);
/// Source addresses with a bucket of their own; beyond, the stalest is forgotten (a
/// forgotten source starts again with a full bucket, which the global bucket still bounds).
pub const MAX_SOURCES: usize = 1024;
/// At most one rate-limit warning this often (the warning says "10s").
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// The limits as the warning states them: a literal, since formatting the four constants
/// cost the router image's code (tested equal to them).
const LIMITS: &str = "limits: 4000/s overall, 50/s per source, 1000/s to one holding a session";

/// Bounds every blocking receive, so the thread sees the stop within this long.
const POLL: Duration = Duration::from_millis(100);

/// What the responder did, returned when its thread ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// Datagrams echoed back.
    pub echoed: u64,
    /// Datagrams dropped as not ours (wrong size or magic) or from a refused source.
    pub ignored: u64,
    /// Valid datagrams dropped by the rate limits.
    pub rate_limited: u64,
}

/// The echo socket, bound and not yet served.
pub struct EchoResponder {
    sock: UdpSocket,
    local: SocketAddr,
}

impl EchoResponder {
    /// Binds UDP on `addr` (the same address and port number as a TCP listener; `[::]` is
    /// dual-stack, as in net.rs `bind_udp`).
    pub fn bind(addr: SocketAddr) -> io::Result<EchoResponder> {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            // Dual-stack so one `[::]` socket answers IPv4 clients too; a host with IPv6
            // v6only forced keeps working for IPv6.
            s.set_only_v6(false).ok();
        }
        // The plain OS error: the caller says which address and what it costs.
        s.bind(&addr.into())?;
        let sock: UdpSocket = s.into();
        sock.set_read_timeout(Some(POLL))?;
        // A full send buffer must not stall the loop either; the reply is then dropped.
        sock.set_write_timeout(Some(POLL))?;
        let local = sock.local_addr()?;
        Ok(EchoResponder { sock, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Spawns `btest-echo`. `admits` is the server's --allow/--deny check; a refused source
    /// gets no reply. `has_session` says whether the source holds a session (the higher
    /// allowance). Both are given IPv4-mapped sources (from a dual-stack socket) as plain
    /// IPv4. The thread ends within ~100 ms of `stop` triggering and returns its counters.
    pub fn spawn(
        self,
        stop: Stop,
        admits: impl Fn(IpAddr) -> bool + Send + 'static,
        has_session: impl Fn(IpAddr) -> bool + Send + 'static,
    ) -> io::Result<JoinHandle<EchoStats>> {
        self.spawn_with(stop, (admits, has_session))
    }

    /// [`EchoResponder::spawn`] with both questions asked of one value: the server passes its
    /// shared state once (two closures holding a reference each cost the router image 150 B).
    pub fn spawn_with(
        self,
        stop: Stop,
        sources: impl Sources,
    ) -> io::Result<JoinHandle<EchoStats>> {
        crate::thread::spawn_named("btest-echo", None, move || serve(self.sock, stop, sources))
    }
}

/// What the responder asks the server about a source (given as plain IPv4 when mapped).
pub trait Sources: Send + 'static {
    /// The --allow/--deny check: a refused source gets no reply.
    fn admits(&self, ip: IpAddr) -> bool;
    /// Whether the source holds a session (the higher allowance).
    fn has_session(&self, ip: IpAddr) -> bool;
}

/// `(admits, has_session)` as two closures.
impl<A, H> Sources for (A, H)
where
    A: Fn(IpAddr) -> bool + Send + 'static,
    H: Fn(IpAddr) -> bool + Send + 'static,
{
    fn admits(&self, ip: IpAddr) -> bool {
        (self.0)(ip)
    }

    fn has_session(&self, ip: IpAddr) -> bool {
        (self.1)(ip)
    }
}

/// ns from `epoch` to `t` on the echo clock (u64 lasts 584 years).
fn ns(epoch: Instant, t: Instant) -> u64 {
    // In u64, not as_nanos's u128: smaller code in the router image.
    let d = t.saturating_duration_since(epoch);
    d.as_secs() * 1_000_000_000 + u64::from(d.subsec_nanos())
}

fn serve(sock: UdpSocket, stop: Stop, sources: impl Sources) -> EchoStats {
    let mut stats = EchoStats::default();
    let epoch = Instant::now();
    let mut limiter = Limiter::new(epoch);
    let mut warn = WarnEvery::new(WARN_EVERY);
    // One byte more than the longest probe, so an oversized datagram shows as longer than 48
    // rather than being silently truncated to a valid-looking one.
    let mut buf = [0u8; ECHO2_LEN + 1];
    while !stop.is_triggered() {
        let got = sock.recv_from(&mut buf);
        // The receive stamp, as close to the kernel's hand-over as user space gets.
        let now = Instant::now();
        let (n, src) = match got {
            Ok(v) => v,
            Err(e) => {
                match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    // An ICMP error for an earlier reply (unreachable source) or another
                    // transient error: not fatal, but do not spin on a persistent one.
                    _ => std::thread::sleep(Duration::from_millis(1)),
                }
                continue;
            }
        };
        let ip = src.ip().to_canonical();
        let v2 = is_echo2_request(&buf[..n]);
        if !(v2 || is_echo_request(&buf[..n])) || !sources.admits(ip) {
            stats.ignored += 1;
            continue;
        }
        if !limiter.admit(ip, now, |ip| sources.has_session(ip)) {
            stats.rate_limited += 1;
            if let Some(count) = warn.note(now) {
                log::warn!(
                    "latency echo: rate-limited {count} probe datagram(s) in the last 10s \
                     ({LIMITS}); a flood or a client probing too fast"
                );
            }
            continue;
        }
        if v2 {
            stamp(&mut buf, ns(epoch, now), ns(epoch, Instant::now()));
        }
        if sock.send_to(&buf[..n], src).is_ok() {
            stats.echoed += 1;
        }
    }
    stats
}

/// A token bucket: `rate` tokens per second up to `burst`, starting full. Time comes in as
/// an `Instant` the caller passes, so tests drive it with synthetic instants.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // An instant before `last` (the caller's clock is monotonic, so only a test) adds
        // nothing rather than draining.
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if now > self.last {
            self.last = now;
        }
    }

    /// Whether a token is there now, without taking it.
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.has_token(now) {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the bucket was last looked at.
    pub fn last_seen(&self) -> Instant {
        self.last
    }

    /// Changes the rate and burst from `now` on; a raised burst starts full (the source
    /// just earned it), a lowered one keeps at most its new burst.
    fn set(&mut self, rate: f64, burst: f64, now: Instant) {
        self.refill(now);
        if burst > self.burst {
            self.tokens = burst;
        }
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }
}

/// One source's bucket and what it knows of the source's sessions.
#[derive(Debug)]
struct Src {
    bucket: TokenBucket,
    /// The server's session table may be asked about this source from then on (ns since
    /// the limiter began; u64 rather than Instant: smaller code in the router image).
    next_check: u64,
    /// The source keeps the session allowance until then (ns since the limiter began).
    session_until: u64,
}

/// The global bucket and the bounded per-source table.
#[derive(Debug)]
pub struct Limiter {
    epoch: Instant,
    global: TokenBucket,
    sources: HashMap<IpAddr, Src>,
}

impl Limiter {
    pub fn new(now: Instant) -> Limiter {
        Limiter {
            epoch: now,
            global: TokenBucket::new(GLOBAL_RATE, GLOBAL_BURST, now),
            // Reserved up front: the table never grows past MAX_SOURCES, so no allocation
            // happens per packet.
            sources: HashMap::with_capacity(MAX_SOURCES),
        }
    }

    /// Whether a reply to `ip` may go now; takes a token from both buckets if so.
    /// `has_session` asks the server whether `ip` holds a session (see the module doc).
    pub fn admit(
        &mut self,
        ip: IpAddr,
        now: Instant,
        has_session: impl Fn(IpAddr) -> bool,
    ) -> bool {
        // The global bucket is asked first and only taken from last: while it is empty a
        // flood costs no table work (no insertion, no eviction scan), and a source over its
        // own limit does not use up the global budget.
        if !self.global.has_token(now) {
            return false;
        }
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            self.evict_stalest();
        }
        let t = ns(self.epoch, now);
        let s = self.sources.entry(ip).or_insert_with(|| Src {
            bucket: TokenBucket::new(SOURCE_RATE, SOURCE_BURST, now),
            next_check: 0,
            session_until: 0,
        });
        // Asked only when the answer can change something: over the 50/s, or holding the
        // allowance (which ends SESSION_GRACE after a session was last seen).
        if t >= s.next_check && (s.bucket.rate > SOURCE_RATE || !s.bucket.has_token(now)) {
            s.next_check = t + SESSION_RECHECK.as_nanos() as u64;
            if has_session(ip) {
                s.session_until = t + SESSION_GRACE.as_nanos() as u64;
            }
            let (rate, burst) = if t < s.session_until {
                (SESSION_SOURCE_RATE, SESSION_SOURCE_BURST)
            } else {
                (SOURCE_RATE, SOURCE_BURST)
            };
            s.bucket.set(rate, burst, now);
        }
        if !s.bucket.try_take(now) {
            return false;
        }
        self.global.try_take(now)
    }

    /// Forgets the source seen least recently. A linear scan of at most MAX_SOURCES, paid
    /// only for a new source while the global bucket has tokens (≤ ~4,000/s).
    fn evict_stalest(&mut self) {
        let stalest = self
            .sources
            .iter()
            .min_by_key(|(_, s)| s.bucket.last_seen())
            .map(|(ip, _)| *ip);
        if let Some(ip) = stalest {
            self.sources.remove(&ip);
        }
    }

    /// Source addresses in the table.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

/// "At most one warning per period": counts events and says when a warning is due.
#[derive(Debug)]
struct WarnEvery {
    period: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl WarnEvery {
    fn new(period: Duration) -> WarnEvery {
        WarnEvery {
            period,
            last: None,
            pending: 0,
        }
    }

    /// Notes one event; returns the events to report when a warning is due now.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StopReason;
    use std::net::Ipv4Addr;

    use crate::wire::echo::EchoDatagram;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// No source holds a session.
    fn no(_: IpAddr) -> bool {
        false
    }

    #[test]
    fn token_bucket_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50.0, 20.0, t0);
        // The burst goes at once, then nothing.
        for i in 0..20 {
            assert!(b.try_take(t0), "token {i}");
        }
        assert!(!b.try_take(t0));
        // 50/s: one token per 20 ms.
        assert!(!b.try_take(t0 + ms(19)));
        assert!(b.try_take(t0 + ms(20)));
        assert!(!b.try_take(t0 + ms(21)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        let mut n = 0;
        while b.try_take(later) {
            n += 1;
        }
        assert_eq!(n, 20);
        // An instant in the past neither refills nor panics.
        assert!(!b.try_take(t0));
        // has_token does not take.
        let t = later + Duration::from_secs(1);
        assert!(b.has_token(t) && b.has_token(t));
    }

    #[test]
    fn token_bucket_sustained_rate() {
        // Offered 2,000/s for 10 s against 1,000/s burst 200: 200 + 10,000 pass.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 200.0, t0);
        let passed = (0..20_000u64)
            .filter(|i| b.try_take(t0 + Duration::from_micros(500 * (i + 1))))
            .count();
        assert!((10_150..=10_201).contains(&passed), "{passed}");
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn limiter_per_source_limit() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let a = v4(1);
        let b = v4(2);
        for _ in 0..20 {
            assert!(l.admit(a, t0, no));
        }
        // a is out; b still has its own burst.
        assert!(!l.admit(a, t0, no));
        assert!(l.admit(b, t0, no));
        // a gets one more 20 ms later.
        assert!(l.admit(a, t0 + ms(20), no));
        assert!(!l.admit(a, t0 + ms(20), no));
    }

    #[test]
    fn limiter_global_limit_bounds_a_spoofed_flood() {
        // Every datagram from a new (spoofed) source: each passes its own bucket, the global
        // bucket caps the replies at the burst, then at 1,000/s.
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let burst = (0..1000u32).filter(|&i| l.admit(v4(i), t0, no)).count();
        assert_eq!(burst, GLOBAL_BURST as usize);
        // One second later the bucket is full again, but only up to the burst: of 5,000 new
        // sources arriving at one instant, GLOBAL_BURST get replies.
        let t1 = t0 + Duration::from_secs(1);
        let next = (0..5000u32)
            .filter(|&i| l.admit(v4(100_000 + i), t1, no))
            .count();
        assert_eq!(next, GLOBAL_BURST as usize);
        assert!(l.sources() <= MAX_SOURCES);
    }

    #[test]
    fn limiter_table_is_bounded_and_evicts_the_stalest() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        // Spread over time so the global bucket never runs out: 1 source per 2 ms.
        let at = |i: u32| t0 + Duration::from_millis(2 * u64::from(i));
        for i in 0..MAX_SOURCES as u32 {
            assert!(l.admit(v4(i), at(i), no));
        }
        assert_eq!(l.sources(), MAX_SOURCES);
        // Source 0 drains its bucket just before the table overflows: it is then the most
        // recently seen, and source 1 the stalest.
        let t = at(MAX_SOURCES as u32);
        while l.admit(v4(0), t, no) {}
        let newcomer = v4(1_000_000);
        assert!(l.admit(newcomer, t + ms(2), no));
        assert_eq!(l.sources(), MAX_SOURCES);
        // Source 0 kept its (empty) bucket; it was not the one evicted.
        assert!(!l.admit(v4(0), t + ms(2), no));
        // Source 1 was evicted: it comes back with a full burst.
        for _ in 0..20 {
            assert!(l.admit(v4(1), t + ms(4), no));
        }
    }

    /// Offers `per_s` datagrams per second from `ip` for `secs` seconds from `from`; returns
    /// how many were admitted.
    fn offer(
        l: &mut Limiter,
        ip: IpAddr,
        from: Instant,
        per_s: u64,
        secs: u64,
        has_session: &dyn Fn(IpAddr) -> bool,
    ) -> u64 {
        let gap = Duration::from_nanos(1_000_000_000 / per_s);
        (0..per_s * secs)
            .filter(|&i| l.admit(ip, from + gap * i as u32, has_session))
            .count() as u64
    }

    #[test]
    fn limiter_without_session_keeps_50_per_second() {
        // A speed test's 600/s from a source without a session: the burst and 50/s.
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let asked = std::cell::Cell::new(0u32);
        let none = |_: IpAddr| {
            asked.set(asked.get() + 1);
            false
        };
        let got = offer(&mut l, v4(1), t0, 600, 10, &none);
        assert!((515..=521).contains(&got), "{got}");
        // The session table (a lock in the server) was asked about once a second, not per
        // datagram.
        assert!(asked.get() <= 11, "{}", asked.get());
    }

    #[test]
    fn limiter_source_with_session_gets_600_per_second() {
        // 5 ms probes in 3 classes from a source holding a session: every one answered,
        // while another source without one still gets 50/s.
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let a = v4(1);
        let session = std::cell::Cell::new(true);
        let has = |ip: IpAddr| ip == a && session.get();
        assert_eq!(offer(&mut l, a, t0, 600, 10, &has), 6000);
        let b = v4(2);
        let got = offer(&mut l, b, t0 + ms(10_000), 100, 2, &has);
        assert!((119..=121).contains(&got), "{got}");
        // The session ends (a speed test between phases, or in its cooldown): the allowance
        // stays for SESSION_GRACE after it was last seen ...
        session.set(false);
        let t1 = t0 + ms(12_000);
        assert_eq!(offer(&mut l, a, t1, 600, 30, &has), 18_000);
        // ... and is gone once that has passed (and the next look-up saw no session).
        let t2 = t0 + ms(10_000) + SESSION_GRACE + ms(2_000);
        let got = offer(&mut l, a, t2, 600, 10, &has);
        assert!(got < 700, "{got}");
    }

    #[test]
    fn limiter_session_allowance_still_bounded_by_the_global_rate() {
        // Ten sources with sessions at 1,000/s each: the global bucket caps them together.
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let yes = |_: IpAddr| true;
        let mut admitted = 0u64;
        for k in 0..10_000u32 {
            let at = t0 + Duration::from_micros(100 * u64::from(k));
            if l.admit(v4(k % 10), at, yes) {
                admitted += 1;
            }
        }
        // 1 s of offers: the global burst plus 4,000/s, with a little slack for rounding.
        assert!(
            admitted <= (GLOBAL_BURST + GLOBAL_RATE) as u64 + 2,
            "{admitted}"
        );
        assert!(admitted >= GLOBAL_RATE as u64, "{admitted}");
    }

    #[test]
    fn warning_states_the_limits_in_force() {
        let said = format!(
            "limits: {GLOBAL_RATE}/s overall, {SOURCE_RATE}/s per source, \
             {SESSION_SOURCE_RATE}/s to one holding a session"
        );
        assert_eq!(LIMITS, said);
        assert_eq!(WARN_EVERY, Duration::from_secs(10));
    }

    #[test]
    fn warn_at_most_once_per_period() {
        let t0 = Instant::now();
        let mut w = WarnEvery::new(Duration::from_secs(10));
        assert_eq!(w.note(t0), Some(1));
        for i in 1..=5 {
            assert_eq!(w.note(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(w.note(t0 + Duration::from_secs(10)), Some(6));
        assert_eq!(w.note(t0 + Duration::from_secs(11)), None);
    }

    fn client(to: SocketAddr) -> UdpSocket {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(ms(300))).unwrap();
        c.connect(to).unwrap();
        c
    }

    #[test]
    fn echo_answers_probes_and_ignores_garbage() {
        let r = EchoResponder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = r.local_addr();
        assert_ne!(addr.port(), 0);
        let stop = Stop::new();
        let h = r.spawn(stop.clone(), |_| true, |_| false).unwrap();
        let c = client(addr);

        let probe = EchoDatagram {
            seq: 7,
            token: 0x1234_5678,
            sent_ns: 99,
        }
        .encode();
        c.send(&probe).unwrap();
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).expect("an echo reply");
        assert_eq!(&buf[..n], &probe[..], "echoed unchanged, same size");

        // Wrong size (short, long, empty) and wrong magic: no reply.
        let mut bad_magic = probe;
        bad_magic[0] = b'X';
        let mut long = [0u8; 33];
        long[..32].copy_from_slice(&probe);
        for garbage in [
            &probe[..31],
            &long[..],
            &[][..],
            &bad_magic[..],
            &[0u8; 1400][..],
        ] {
            c.send(garbage).unwrap();
        }
        assert!(c.recv(&mut buf).is_err(), "garbage must get no reply");

        stop.trigger(StopReason::Shutdown);
        let stats = h.join().unwrap();
        assert_eq!(
            stats,
            EchoStats {
                echoed: 1,
                ignored: 5,
                rate_limited: 0
            }
        );
    }

    #[test]
    fn echo_refused_source_gets_no_reply() {
        let r = EchoResponder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = r.local_addr();
        let stop = Stop::new();
        let h = r
            .spawn(
                stop.clone(),
                |ip| ip != IpAddr::from([127, 0, 0, 1]),
                |_| false,
            )
            .unwrap();
        let c = client(addr);
        let probe = EchoDatagram {
            seq: 1,
            token: 2,
            sent_ns: 3,
        }
        .encode();
        c.send(&probe).unwrap();
        let mut buf = [0u8; 64];
        assert!(c.recv(&mut buf).is_err());
        stop.trigger(StopReason::Shutdown);
        let stats = h.join().unwrap();
        assert_eq!((stats.echoed, stats.ignored), (0, 1));
    }

    /// 100 probes back to back from one source, with or without a session there.
    fn burst_of_100(holds_session: bool) -> EchoStats {
        let r = EchoResponder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = r.local_addr();
        let stop = Stop::new();
        let h = r
            .spawn(stop.clone(), |_| true, move |_| holds_session)
            .unwrap();
        let c = client(addr);
        let probe = EchoDatagram {
            seq: 1,
            token: 2,
            sent_ns: 3,
        }
        .encode();
        for _ in 0..100 {
            c.send(&probe).unwrap();
        }
        std::thread::sleep(ms(200));
        stop.trigger(StopReason::Shutdown);
        h.join().unwrap()
    }

    #[test]
    fn echo_rate_limits_one_fast_source() {
        // The per-source burst (20) plus what refills meanwhile.
        let stats = burst_of_100(false);
        assert_eq!(stats.echoed + stats.rate_limited, 100, "{stats:?}");
        assert!(stats.echoed >= 20 && stats.echoed < 60, "{stats:?}");
    }

    #[test]
    fn echo_v2_is_stamped_and_same_size() {
        use crate::wire::echo::{Echo2, ECHO2_LEN};
        let r = EchoResponder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = r.local_addr();
        let stop = Stop::new();
        let h = r.spawn(stop.clone(), |_| true, |_| false).unwrap();
        let c = client(addr);
        let probe = EchoDatagram {
            seq: 9,
            token: 0x0bad_cafe,
            sent_ns: 123,
        };
        let mut last_tx = 0;
        for seq in 0..3 {
            let req = Echo2 {
                probe: EchoDatagram { seq, ..probe },
                server_rx_ns: 0,
                server_tx_ns: 0,
            }
            .encode();
            c.send(&req).unwrap();
            let mut buf = [0u8; 64];
            let n = c.recv(&mut buf).expect("a v2 reply");
            assert_eq!(n, ECHO2_LEN, "same size both ways");
            let rep = Echo2::parse(&buf[..n]).expect("a v2 datagram");
            assert_eq!(
                rep.probe,
                EchoDatagram { seq, ..probe },
                "probe fields unchanged"
            );
            assert_eq!(buf[40..48], [0u8; 8], "padding unchanged");
            // Receive before send, on one clock that does not go back between replies; the
            // turnaround is microseconds (bounded loosely for a busy machine).
            assert!(rep.server_rx_ns <= rep.server_tx_ns, "{rep:?}");
            assert!(rep.server_rx_ns >= last_tx, "{rep:?} after {last_tx}");
            assert!(rep.server_tx_ns - rep.server_rx_ns < 50_000_000, "{rep:?}");
            last_tx = rep.server_tx_ns;
        }
        // 47 and 49 bytes with the v2 magic: no reply.
        let req = Echo2 {
            probe,
            server_rx_ns: 0,
            server_tx_ns: 0,
        }
        .encode();
        let mut long = [0u8; 49];
        long[..48].copy_from_slice(&req);
        c.send(&req[..47]).unwrap();
        c.send(&long).unwrap();
        let mut buf = [0u8; 64];
        assert!(c.recv(&mut buf).is_err(), "a wrong size must get no reply");
        stop.trigger(StopReason::Shutdown);
        let stats = h.join().unwrap();
        assert_eq!((stats.echoed, stats.ignored), (3, 2), "{stats:?}");
    }

    #[test]
    fn echo_answers_a_fast_source_holding_a_session() {
        // As in echo_rate_limits_one_fast_source: all answered now.
        let stats = burst_of_100(true);
        assert_eq!((stats.echoed, stats.rate_limited), (100, 0), "{stats:?}");
    }

    #[test]
    fn echo_dual_stack_answers_ipv4() {
        // `[::]` must answer an IPv4 client (skipped where the host has no IPv6).
        let Ok(r) = EchoResponder::bind("[::]:0".parse().unwrap()) else {
            eprintln!("skip: no IPv6 socket here");
            return;
        };
        let port = r.local_addr().port();
        let stop = Stop::new();
        let h = r.spawn(stop.clone(), |ip| ip.is_ipv4(), |_| false).unwrap();
        let c = client(SocketAddr::from(([127, 0, 0, 1], port)));
        let probe = EchoDatagram {
            seq: 1,
            token: 2,
            sent_ns: 3,
        }
        .encode();
        c.send(&probe).unwrap();
        let mut buf = [0u8; 64];
        // `admits` saw the IPv4 address, not ::ffff:127.0.0.1.
        assert_eq!(c.recv(&mut buf).ok(), Some(32));
        stop.trigger(StopReason::Shutdown);
        assert_eq!(h.join().unwrap().echoed, 1);
    }

    #[test]
    fn echo_thread_stops_promptly() {
        let r = EchoResponder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let stop = Stop::new();
        let h = r.spawn(stop.clone(), |_| true, |_| false).unwrap();
        std::thread::sleep(ms(50));
        let t = Instant::now();
        stop.trigger(StopReason::Shutdown);
        h.join().unwrap();
        assert!(t.elapsed() < ms(300), "{:?}", t.elapsed());
    }
}
