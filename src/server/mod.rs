//! The server: accept threads, per-connection handshake threads, the session limit, the
//! multi-connection join registry and the UDP port allocator.
//!
//! Threads: `btest-accept-K` per listener (polls with a 100 ms timeout so a stop is seen
//! promptly); `btest-guard` (guard.rs: handshake deadlines, bounded rejection logging);
//! `btest-conn` per accepted connection, which does the handshake and then runs the session
//! (its role threads come from the engine). Per-source caps live in limits.rs. Must not:
//! print (sessions are reported as [`SessionRecord`]s on a channel; the caller formats them).

mod guard;
pub mod limits;
mod ports;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::auth::AuthMethod;
use crate::config::ServerConfig;
use crate::engine::{self, rx::canonical, Plan, Stop, StopReason, UdpLink};
use crate::error::{Error, Phase, Result};
use crate::export::metrics::{Metrics, RejectReason};
use crate::net;
use crate::wire::{self, command::Token, datagram, Command, Protocol, Reply, Request};

use limits::{Limits, LogGate, Refusal, Source};

/// Window of the rejection log gate: per reason, five lines per window are logged one by
/// one, the rest as one count (a flood of 300 idle connections wrote 503,334 lines before).
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// A finished session, for the caller to print.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// How it started.
    pub start: SessionStart,
    /// The engine's summary, or the error that ended the session.
    pub result: std::result::Result<engine::Summary, String>,
}

/// A session that passed the handshake and starts moving data.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// When the session started.
    pub started: SystemTime,
    /// Client address.
    pub peer: SocketAddr,
    /// The client's command.
    pub command: Command,
    /// TCP connections or client UDP ports in use.
    pub connections: usize,
    /// Authenticated user.
    pub user: Option<String>,
    /// Method used.
    pub auth: AuthMethod,
    /// UDP port used.
    pub udp_port: Option<u16>,
}

/// A handshake refused after its command was read, before any session started: a full
/// server, a UDP port that could not be had, a client that went away mid-handshake.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// When.
    pub at: SystemTime,
    /// Client address.
    pub peer: SocketAddr,
    /// Authenticated user, if it got that far.
    pub user: Option<String>,
    /// Method in use.
    pub auth: AuthMethod,
    /// The client's command.
    pub command: Command,
    /// The phase that failed.
    pub phase: Phase,
    /// The metrics label.
    pub reason: RejectReason,
    /// What happened.
    pub error: String,
}

/// What the server reports to its caller, in order. A session is either refused
/// (`AuthFailed` or `Rejected`, one record) or started (`Start`, later `End`): never an end
/// without a start.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A session started.
    Start(SessionStart),
    /// A client failed to authenticate.
    AuthFailed {
        /// When.
        at: SystemTime,
        /// Client address.
        peer: SocketAddr,
        /// The user name it presented, if it got that far.
        user: Option<String>,
        /// Method.
        method: AuthMethod,
        /// The client's command.
        command: Command,
    },
    /// A handshake was refused after the command.
    Rejected(Box<Rejection>),
    /// A session ended.
    End(Box<SessionRecord>),
}

/// Counters for tests, logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Sessions running now.
    pub active_sessions: usize,
    /// UDP ports held by sessions.
    pub udp_ports_in_use: usize,
    /// Threads owned by sessions and handshakes (accept threads excluded).
    pub live_threads: usize,
    /// Sessions that started.
    pub sessions_started: u64,
    /// Connections refused or dropped before a session started.
    pub rejected: u64,
}

struct PendingJoin {
    peer_ip: IpAddr,
    sender: Sender<TcpStream>,
}

struct Shared {
    cfg: ServerConfig,
    stop: Stop,
    pending: Mutex<HashMap<Token, PendingJoin>>,
    ports: ports::PortPool,
    active: AtomicUsize,
    limits: Mutex<Limits>,
    gate: Mutex<LogGate>,
    watch: Mutex<guard::Watch>,
    threads: Arc<AtomicUsize>,
    started: AtomicU64,
    rejected: AtomicU64,
    events: Sender<ServerEvent>,
    auth: crate::authio::ServerAccounts,
    metrics: Arc<Metrics>,
}

/// A bound, not yet running server.
pub struct Server {
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
    events: Receiver<ServerEvent>,
}

/// A running server.
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    accept: Vec<JoinHandle<()>>,
    events: Receiver<ServerEvent>,
}

impl Server {
    /// Binds every listen address. Nothing runs yet.
    pub fn bind(cfg: ServerConfig) -> Result<Server> {
        let mut listeners = Vec::new();
        for &a in &cfg.listen {
            match net::listen(a) {
                Ok(l) => listeners.push(l),
                // `[::]` on a host without IPv6: fall back to 0.0.0.0 on the same port.
                Err(e) if a.ip().is_unspecified() && a.is_ipv6() && cfg.listen.len() == 1 => {
                    log::warn!("cannot listen on {a} ({e}); falling back to IPv4 only");
                    listeners.push(net::listen(SocketAddr::from(([0, 0, 0, 0], a.port())))?);
                }
                Err(e) => return Err(e),
            }
        }
        let auth = crate::authio::ServerAccounts::new(&cfg)?;
        // Fixed malloc thresholds, so a session's large buffers are unmapped when freed
        // (glibc; docs/reliability.md "Memory after load").
        if !crate::sys::mem::tune_allocator() {
            log::debug!("mallopt refused the fixed thresholds; idle memory may stay higher");
        }
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let guard_cfg = cfg.guard;
        let ports = ports::PortPool::new(cfg.udp_port_from);
        Ok(Server {
            listeners,
            shared: Arc::new(Shared {
                cfg,
                stop: Stop::new(),
                pending: Mutex::new(HashMap::new()),
                ports,
                active: AtomicUsize::new(0),
                limits: Mutex::new(Limits::new(guard_cfg)),
                gate: Mutex::new(LogGate::new(LOG_WINDOW, Instant::now())),
                watch: Mutex::new(guard::Watch::default()),
                threads: Arc::new(AtomicUsize::new(0)),
                started: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                events: tx,
                auth,
                metrics: Arc::new(Metrics::default()),
            }),
            events: rx,
        })
    }

    /// The bound addresses (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Starts the accept threads.
    pub fn spawn(self) -> Result<ServerHandle> {
        let addrs = self.local_addrs();
        let mut accept = Vec::new();
        let shared = self.shared.clone();
        match std::thread::Builder::new()
            .name("btest-guard".into())
            .spawn(move || guard::run(&shared))
        {
            Ok(h) => accept.push(h),
            Err(e) => {
                return Err(Error::Io {
                    phase: Phase::Bind,
                    addr: addrs.first().copied(),
                    source: e,
                })
            }
        }
        for (i, l) in self.listeners.into_iter().enumerate() {
            let shared = self.shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("btest-accept-{i}"))
                .spawn(move || accept_loop(&shared, l))
                .map_err(|e| Error::Io {
                    phase: Phase::Bind,
                    addr: addrs.get(i).copied(),
                    source: e,
                });
            match h {
                Ok(h) => accept.push(h),
                Err(e) => {
                    self.shared.stop.trigger(StopReason::Shutdown);
                    return Err(e);
                }
            }
        }
        Ok(ServerHandle {
            addrs,
            shared: self.shared,
            accept,
            events: self.events,
        })
    }
}

impl ServerHandle {
    /// Listening addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Session starts, authentication failures and session ends.
    pub fn events(&self) -> &Receiver<ServerEvent> {
        &self.events
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            active_sessions: self.shared.active.load(SeqCst),
            udp_ports_in_use: self.shared.ports.in_use(),
            live_threads: self.shared.threads.load(SeqCst),
            sessions_started: self.shared.started.load(SeqCst),
            rejected: self.shared.rejected.load(SeqCst),
        }
    }

    /// The server's Prometheus counters (for `--metrics-file`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Has the server been told to stop?
    pub fn stopping(&self) -> bool {
        self.shared.stop.is_triggered()
    }

    /// Stops accepting, ends every session, and waits (up to `grace`) for their threads.
    pub fn shutdown(mut self, grace: Duration) -> ServerStats {
        self.shared.stop.trigger(StopReason::Shutdown);
        for h in self.accept.drain(..) {
            let _ = h.join();
        }
        let t0 = Instant::now();
        while self.shared.threads.load(SeqCst) > 0 && t0.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stats()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shared.stop.trigger(StopReason::Shutdown);
        for h in self.accept.drain(..) {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, l: TcpListener) {
    let fd = l.as_raw_fd();
    while !shared.stop.is_triggered() {
        if crate::sys::signalled() {
            shared.stop.trigger(StopReason::Shutdown);
            break;
        }
        if !crate::sys::wait_readable(fd, net::POLL_TIMEOUT) {
            continue;
        }
        let (stream, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) => {
                log::warn!("accept failed: {e}");
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let src = Source::of(peer.ip());
        let now = Instant::now();
        let admitted = shared.limits.lock().begin_handshake(src, now);
        if let Err(r) = admitted {
            // Closed before the hello: a refused flood costs an accept and a close each.
            reject(shared, peer, refusal_reason(r), &r.describe(now));
            continue;
        }
        shared.threads.fetch_add(1, SeqCst);
        let sh = shared.clone();
        let r = std::thread::Builder::new()
            .name("btest-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                struct Done(Arc<Shared>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.threads.fetch_sub(1, SeqCst);
                    }
                }
                let _done = Done(sh.clone());
                handle_connection(&sh, stream, peer, now);
            });
        if let Err(e) = r {
            shared.threads.fetch_sub(1, SeqCst);
            shared.limits.lock().end_handshake(src);
            reject(
                shared,
                peer,
                RejectReason::Other,
                &format!("cannot start a thread: {e}"),
            );
        }
    }
}

/// A handshake in progress: counted in [`Limits`] and watched by the guard until released
/// (exactly once, on drop at the latest).
struct HandshakeSlot<'a> {
    shared: &'a Shared,
    src: Source,
    /// The guard's registration, while the guard may still cut the socket.
    watch: Option<u64>,
    expired: Arc<AtomicBool>,
    deadline: Instant,
    counted: bool,
}

impl<'a> HandshakeSlot<'a> {
    fn new(shared: &'a Shared, src: Source, accepted: Instant) -> Self {
        HandshakeSlot {
            shared,
            src,
            watch: None,
            expired: Arc::new(AtomicBool::new(false)),
            deadline: accepted + shared.cfg.handshake_timeout,
            counted: true,
        }
    }

    /// Lets the guard shut `s` down at the deadline.
    fn arm(&mut self, s: &TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let stream = s.try_clone()?;
        self.watch = Some(self.shared.watch.lock().add(guard::InFlight {
            deadline: self.deadline,
            stream,
            expired: self.expired.clone(),
            peer,
        }));
        Ok(())
    }

    /// The guard no longer cuts the socket (the next phase has its own deadline).
    fn disarm(&mut self) {
        if let Some(id) = self.watch.take() {
            self.shared.watch.lock().remove(id);
        }
    }

    /// Did the guard end this handshake at its deadline?
    fn expired(&self) -> bool {
        self.expired.load(SeqCst)
    }

    /// An error of the handshake, or the timeout it really was when the guard cut it.
    fn explain(&self, e: Error) -> Error {
        if !self.expired() || matches!(e, Error::Auth { .. }) {
            return e;
        }
        Error::Timeout {
            phase: e.phase().unwrap_or(Phase::Command),
            addr: None,
            secs: self.shared.cfg.handshake_timeout.as_secs_f64(),
        }
    }

    fn release(&mut self) {
        self.disarm();
        if std::mem::take(&mut self.counted) {
            self.shared.limits.lock().end_handshake(self.src);
        }
    }
}

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// The metrics reason of a per-source refusal.
fn refusal_reason(r: Refusal) -> RejectReason {
    match r {
        Refusal::Busy(_) => RejectReason::Limit,
        Refusal::SourceBusy(_) => RejectReason::SourceLimit,
        Refusal::Blocked(_) => RejectReason::LoginBlocked,
        Refusal::LoginRate(_) => RejectReason::LoginRate,
    }
}

/// Counts a refusal and logs it through the gate: under a flood, five lines per reason and
/// window, then one count per window (from the guard thread).
fn reject(shared: &Shared, peer: SocketAddr, reason: RejectReason, why: &str) {
    shared.rejected.fetch_add(1, SeqCst);
    shared.metrics.reject(reason);
    if shared.gate.lock().allow(reason.as_str()) {
        log::warn!("{peer}: rejected: {why}");
    }
}

/// A connection closed before it sent a single command byte: a port probe or a health check,
/// not a broken client. Counted like any rejection, logged at info level so monitoring does
/// not fill the log.
fn closed_silently(e: &Error) -> bool {
    match e {
        Error::PeerClosed { .. } => true,
        Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

/// Classifies a handshake failure for the metrics.
fn reason_of(e: &Error) -> RejectReason {
    match e {
        Error::Timeout { .. } => RejectReason::Timeout,
        Error::Auth { .. } => RejectReason::Auth,
        Error::Protocol { .. } | Error::PeerClosed { .. } => RejectReason::BadCommand,
        _ => RejectReason::Other,
    }
}

fn handle_connection(shared: &Arc<Shared>, mut s: TcpStream, peer: SocketAddr, accepted: Instant) {
    let mut slot = HandshakeSlot::new(shared, Source::of(peer.ip()), accepted);
    net::tune_control(&s);
    let t = Some(shared.cfg.handshake_timeout);
    if s.set_read_timeout(t)
        .and_then(|_| s.set_write_timeout(t))
        .is_err()
    {
        return;
    }
    if let Err(e) = slot.arm(&s, peer) {
        reject(
            shared,
            peer,
            RejectReason::Other,
            &format!("cannot watch the handshake: {e}"),
        );
        return;
    }
    if let Err(e) = net::write_msg(&mut s, &wire::HELLO, Phase::Hello) {
        reject(shared, peer, RejectReason::Other, &e.to_string());
        return;
    }
    let req = match net::read_msg::<16>(&mut s, Phase::Command) {
        Ok(b) => Request::parse(&b).map_err(|e| {
            (
                RejectReason::BadCommand,
                format!("bad command {}: {e}", hex(&b)),
            )
        }),
        Err(e) if closed_silently(&e) && !slot.expired() => {
            shared.rejected.fetch_add(1, SeqCst);
            shared.metrics.reject(RejectReason::Other);
            if shared.gate.lock().allow("closed_silently") {
                log::info!("{peer}: closed before sending a command");
            }
            return;
        }
        Err(e) => {
            let e = slot.explain(e);
            Err((reason_of(&e), e.to_string()))
        }
    };
    let cmd = match req {
        Ok(Request::Command(c)) => c,
        Ok(Request::Join(token)) => {
            let p = shared.pending.lock();
            match p.get(&token) {
                Some(j) if j.peer_ip == canonical(peer.ip()) => {
                    if j.sender.try_send(s).is_err() {
                        drop(p);
                        reject(
                            shared,
                            peer,
                            RejectReason::Other,
                            "data connection beyond the session's connection count",
                        );
                    } else {
                        log::debug!("{peer}: joined session {}", hex(&token));
                    }
                }
                Some(_) => {
                    drop(p);
                    reject(
                        shared,
                        peer,
                        RejectReason::UnknownToken,
                        &format!("token {} belongs to another address", hex(&token)),
                    );
                }
                None => {
                    drop(p);
                    reject(
                        shared,
                        peer,
                        RejectReason::UnknownToken,
                        &format!("data connection with unknown token {}", hex(&token)),
                    );
                }
            }
            return;
        }
        Err((reason, e)) => {
            reject(shared, peer, reason, &e);
            return;
        }
    };
    match setup_and_run(shared, s, peer, cmd, &mut slot) {
        Ok(rec) => {
            let _ = shared.events.try_send(ServerEvent::End(Box::new(rec)));
            // The session's sockets and buffers are gone: hand glibc's free pages back
            // (8 waves of 100 sessions left ~20 MiB idle without it, ~4 MiB with it).
            crate::sys::mem::release_idle_memory();
        }
        Err((e, user, method, limit)) => {
            let at = SystemTime::now();
            let e = slot.explain(e);
            let ev = if matches!(e, Error::Auth { .. }) {
                ServerEvent::AuthFailed {
                    at,
                    peer,
                    user,
                    method,
                    command: cmd,
                }
            } else {
                // A limit was already counted and logged by `reject`.
                if limit.is_none() && shared.gate.lock().allow("session_refused") {
                    log::warn!("{peer}: session refused: {e}");
                }
                ServerEvent::Rejected(Box::new(Rejection {
                    at,
                    peer,
                    user,
                    auth: method,
                    command: cmd,
                    phase: e.phase().unwrap_or(Phase::Command),
                    reason: limit.unwrap_or_else(|| reason_of(&e)),
                    error: e.to_string(),
                }))
            };
            let _ = shared.events.try_send(ev);
        }
    }
}

/// Why a handshake failed: the error, the user presented, the method, and the metrics reason
/// when it is not the error's own (a limit).
type SetupError = (Error, Option<String>, AuthMethod, Option<RejectReason>);

fn setup_and_run(
    shared: &Arc<Shared>,
    mut s: TcpStream,
    peer: SocketAddr,
    cmd: Command,
    slot: &mut HandshakeSlot<'_>,
) -> std::result::Result<SessionRecord, SetupError> {
    let method = shared.auth.method();
    let src = slot.src;
    if method != AuthMethod::None {
        // Before any of the login's work: an EC-SRP5 MSG1 costs the server ~10x what it
        // costs the sender (issue 12).
        let now = Instant::now();
        let admitted = shared.limits.lock().begin_login(src, now);
        if let Err(r) = admitted {
            let why = r.describe(now);
            reject(shared, peer, refusal_reason(r), &why);
            return Err((Error::Refused(why), None, method, Some(refusal_reason(r))));
        }
    }
    let mut presented = None;
    let user = shared
        .auth
        .authenticate(&mut s, peer, &mut presented)
        .map_err(|e| {
            shared.rejected.fetch_add(1, SeqCst);
            shared.metrics.reject(reason_of(&e));
            if matches!(e, Error::Auth { .. }) {
                shared.metrics.auth_failure(method.as_str());
                if shared.gate.lock().allow("auth_failed") {
                    log::warn!("{peer}: {e}");
                }
                let blocked = shared.limits.lock().login_failed(src, Instant::now());
                if blocked.is_some() {
                    let g = shared.cfg.guard;
                    log::warn!(
                        "{src}: {} wrong logins within {} s: refusing connections from it for {} s (--max-login-failures, --login-block)",
                        g.max_login_failures,
                        g.login_window.as_secs(),
                        g.login_block.as_secs()
                    );
                }
            }
            (e, presented.clone(), method, None)
        })?;
    if method != AuthMethod::None {
        shared.limits.lock().login_ok(src);
    }
    let fail = |e: Error| (e, user.clone(), method, None);
    // The session slot is taken after the login, so unauthenticated handshakes never hold
    // one (they are bounded per source instead).
    if shared.active.fetch_add(1, SeqCst) >= shared.cfg.max_sessions {
        shared.active.fetch_sub(1, SeqCst);
        let why = format!(
            "session limit ({}) reached (--max-sessions)",
            shared.cfg.max_sessions
        );
        reject(shared, peer, RejectReason::Limit, &why);
        return Err((Error::Refused(why), user, method, Some(RejectReason::Limit)));
    }
    struct Active<'a>(&'a AtomicUsize);
    impl Drop for Active<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }
    let _active = Active(&shared.active);
    let tcp = cmd.protocol == Protocol::Tcp;
    let n = cmd.connections();
    let local_ip = s
        .local_addr()
        .map_err(|e| fail(Error::io(Phase::Command, Some(peer), e)))?
        .ip();
    let peer_ip = canonical(peer.ip());

    let mut extra = Vec::new();
    let mut udp = Vec::new();
    let mut lease = None;
    if tcp && n > 1 {
        let (token, rx) = register_join(shared, peer_ip, n - 1);
        // The data connections may come beyond the per-source handshake cap.
        shared
            .limits
            .lock()
            .join_room(src, n - 1, true, Instant::now());
        struct Unregister<'a>(&'a Shared, Token, Source, usize);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.pending.lock().remove(&self.1);
                self.0
                    .limits
                    .lock()
                    .join_room(self.2, self.3, false, Instant::now());
            }
        }
        let _unreg = Unregister(shared, token, src, n - 1);
        net::write_msg(&mut s, &Reply::OkToken(token).to_bytes(), Phase::Command).map_err(fail)?;
        // The wait ends at the handshake deadline by itself; the guard must not cut the
        // control connection of a session that goes on with the connections that came.
        slot.disarm();
        let deadline = slot.deadline;
        while extra.len() < n - 1 && !shared.stop.is_triggered() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(c) = rx.recv_timeout(left.min(net::POLL_TIMEOUT)) {
                extra.push(c);
            }
        }
        if extra.is_empty() && !shared.stop.is_triggered() {
            // Nothing joined: a client that opens no data connection is broken or hostile,
            // and going on would hold a session slot until the control timeout (issue 12).
            log::debug!("{peer}: none of {} data connections joined", n - 1);
            let e = Error::Timeout {
                phase: Phase::Command,
                addr: Some(peer),
                secs: shared.cfg.handshake_timeout.as_secs_f64(),
            };
            return Err((e, user, method, Some(RejectReason::Timeout)));
        }
        if extra.len() < n - 1 {
            log::warn!(
                "{peer}: only {} of {} data connections joined; testing with those",
                extra.len() + 1,
                n
            );
        }
    } else {
        net::write_msg(&mut s, &Reply::Ok.to_bytes(), Phase::Command).map_err(fail)?;
    }
    if !tcp {
        let (l, sock) = shared
            .ports
            .lease(n, |p| net::bind_udp(SocketAddr::new(local_ip, p), None))
            .map_err(|e| fail(Error::Refused(e)))?;
        let port = l.port;
        lease = Some(l);
        net::write_msg(&mut s, &wire::udp_port_to_bytes(port), Phase::UdpSetup).map_err(fail)?;
        let first = u32::from(port) + u32::from(wire::UDP_CLIENT_PORT_OFFSET);
        let targets: Vec<SocketAddr> = (0..n as u32)
            .filter_map(|i| u16::try_from(first + i).ok())
            .map(|p| SocketAddr::new(peer.ip(), p))
            .collect();
        if n == 1 {
            sock.connect(targets[0])
                .map_err(|e| fail(Error::io(Phase::UdpSetup, Some(peer), e)))?;
            udp.push(UdpLink {
                socket: sock,
                targets: Vec::new(),
                accept_from: None,
            });
        } else {
            // RouterOS uses one client socket per connection, all talking to our one port:
            // an unconnected socket, filtered by address, sending round-robin (reference 9.6).
            udp.push(UdpLink {
                socket: sock,
                targets,
                accept_from: Some(engine::rx::AcceptFrom {
                    ip: peer_ip,
                    first_port: port.wrapping_add(wire::UDP_CLIENT_PORT_OFFSET),
                    ports: n,
                }),
            });
        }
    }
    slot.release();
    shared.started.fetch_add(1, SeqCst);
    shared.metrics.session_started();
    let connections = if tcp { 1 + extra.len() } else { n };
    log::info!(
        "{peer}: session start: {} {} ({}), {} connection(s){}",
        cmd.protocol.as_str(),
        cmd.direction.client_word(),
        if cmd.direction.server_tx() {
            "we send"
        } else {
            "we receive"
        },
        connections,
        user.as_ref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default()
    );
    let start = SessionStart {
        started: SystemTime::now(),
        peer,
        command: cmd,
        connections,
        user,
        auth: method,
        udp_port: lease.as_ref().map(|l| l.port),
    };
    let _ = shared.events.try_send(ServerEvent::Start(start.clone()));
    let tx_size = if tcp {
        if cmd.tx_size == 0 {
            usize::from(wire::TCP_CHUNK_SIZE)
        } else {
            usize::from(cmd.tx_size)
        }
    } else {
        usize::from(cmd.tx_size.max(datagram::MIN_TX_SIZE))
    };
    let plan = Plan {
        side: "server",
        protocol: cmd.protocol,
        transmit: cmd.direction.server_tx(),
        receive: cmd.direction.server_rx(),
        control: s,
        extra_tcp: extra,
        udp,
        udp_overhead: datagram::overhead(peer_ip.is_ipv6()),
        tx_rate: u64::from(cmd.remote_tx_speed),
        tx_size,
        peer_chunk: tx_size,
        random: cmd.random_data,
        peer_zero: !cmd.random_data,
        interval: Duration::from_secs(1),
        duration: None,
        max_duration: shared.cfg.max_duration,
        control_timeout: shared.cfg.control_timeout,
        samples: None,
        parent: Some(shared.stop.clone()),
        gauge: Some(shared.threads.clone()),
        on_bytes: Some({
            let m = shared.metrics.clone();
            Arc::new(move |sent, received| m.add_bytes(sent, received))
        }),
        tuning: shared.cfg.tuning,
    };
    let stop = Stop::new();
    let result = engine::run(plan, &stop);
    drop(lease);
    match &result {
        Ok(sum) => log::info!(
            "{peer}: session end: {}",
            crate::report::server_end_reason(&sum.end_reason)
        ),
        Err(e) => log::warn!("{peer}: session error: {e}"),
    }
    Ok(SessionRecord {
        start,
        result: result.map_err(|e| e.to_string()),
    })
}

fn register_join(shared: &Shared, peer_ip: IpAddr, room: usize) -> (Token, Receiver<TcpStream>) {
    let (tx, rx) = crossbeam_channel::bounded(room);
    let mut p = shared.pending.lock();
    loop {
        let mut t = [0u8; 2];
        crate::sys::random_bytes(&mut t);
        if t == [0, 0] || p.contains_key(&t) {
            continue;
        }
        p.insert(
            t,
            PendingJoin {
                peer_ip,
                sender: tx,
            },
        );
        return (t, rx);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
