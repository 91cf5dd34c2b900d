//! The server: accept threads, per-connection handshake threads, the session limit, the
//! multi-connection join registry and the UDP port allocator.
//!
//! Threads: `btest-accept-K` per listener (polls with a 100 ms timeout so a stop is seen
//! promptly); `btest-conn` per accepted connection, which does the handshake and then runs the
//! session (its role threads come from the engine). Must not: print (sessions are reported as
//! [`SessionRecord`]s on a channel; the caller formats them).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
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

/// Most handshakes in flight at once; more connections are closed at once (a SYN flood of
/// idle clients must not grow one thread each without bound).
const MAX_HANDSHAKES: usize = 256;

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
    ports: Mutex<BTreeSet<u16>>,
    port_cursor: Mutex<u16>,
    active: AtomicUsize,
    handshaking: AtomicUsize,
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
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let cursor = cfg.udp_port_from;
        Ok(Server {
            listeners,
            shared: Arc::new(Shared {
                cfg,
                stop: Stop::new(),
                pending: Mutex::new(HashMap::new()),
                ports: Mutex::new(BTreeSet::new()),
                port_cursor: Mutex::new(cursor),
                active: AtomicUsize::new(0),
                handshaking: AtomicUsize::new(0),
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
            udp_ports_in_use: self.shared.ports.lock().len(),
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
        if shared.handshaking.fetch_add(1, SeqCst) >= MAX_HANDSHAKES {
            shared.handshaking.fetch_sub(1, SeqCst);
            reject(
                shared,
                peer,
                RejectReason::Limit,
                &format!("{MAX_HANDSHAKES} handshakes already in progress"),
            );
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
                handle_connection(&sh, stream, peer);
            });
        if let Err(e) = r {
            shared.threads.fetch_sub(1, SeqCst);
            shared.handshaking.fetch_sub(1, SeqCst);
            reject(
                shared,
                peer,
                RejectReason::Other,
                &format!("cannot start a thread: {e}"),
            );
        }
    }
}

/// Releases a handshake slot exactly once.
struct HandshakeSlot<'a>(Option<&'a AtomicUsize>);
impl HandshakeSlot<'_> {
    fn release(&mut self) {
        if let Some(a) = self.0.take() {
            a.fetch_sub(1, SeqCst);
        }
    }
}
impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

fn reject(shared: &Shared, peer: SocketAddr, reason: RejectReason, why: &str) {
    shared.rejected.fetch_add(1, SeqCst);
    shared.metrics.reject(reason);
    log::warn!("{peer}: rejected: {why}");
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

fn handle_connection(shared: &Arc<Shared>, mut s: TcpStream, peer: SocketAddr) {
    let mut slot = HandshakeSlot(Some(&shared.handshaking));
    net::tune_control(&s);
    let t = Some(shared.cfg.handshake_timeout);
    if s.set_read_timeout(t)
        .and_then(|_| s.set_write_timeout(t))
        .is_err()
    {
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
        Err(e) if closed_silently(&e) => {
            shared.rejected.fetch_add(1, SeqCst);
            shared.metrics.reject(RejectReason::Other);
            log::info!("{peer}: closed before sending a command");
            return;
        }
        Err(e) => Err((reason_of(&e), e.to_string())),
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
    if shared.active.fetch_add(1, SeqCst) >= shared.cfg.max_sessions {
        shared.active.fetch_sub(1, SeqCst);
        reject(
            shared,
            peer,
            RejectReason::Limit,
            &format!("session limit ({}) reached", shared.cfg.max_sessions),
        );
        return;
    }
    struct Active<'a>(&'a AtomicUsize);
    impl Drop for Active<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }
    let _active = Active(&shared.active);
    match setup_and_run(shared, s, peer, cmd, &mut slot) {
        Ok(rec) => {
            let _ = shared.events.try_send(ServerEvent::End(Box::new(rec)));
        }
        Err((e, user, method)) => {
            let at = SystemTime::now();
            let ev = if matches!(e, Error::Auth { .. }) {
                ServerEvent::AuthFailed {
                    at,
                    peer,
                    user,
                    method,
                    command: cmd,
                }
            } else {
                log::warn!("{peer}: session refused: {e}");
                ServerEvent::Rejected(Box::new(Rejection {
                    at,
                    peer,
                    user,
                    auth: method,
                    command: cmd,
                    phase: e.phase().unwrap_or(Phase::Command),
                    reason: reason_of(&e),
                    error: e.to_string(),
                }))
            };
            let _ = shared.events.try_send(ev);
        }
    }
}

type SetupError = (Error, Option<String>, AuthMethod);

fn setup_and_run(
    shared: &Arc<Shared>,
    mut s: TcpStream,
    peer: SocketAddr,
    cmd: Command,
    slot: &mut HandshakeSlot<'_>,
) -> std::result::Result<SessionRecord, SetupError> {
    let method = shared.auth.method();
    let mut presented = None;
    let user = shared
        .auth
        .authenticate(&mut s, peer, &mut presented)
        .map_err(|e| {
            shared.rejected.fetch_add(1, SeqCst);
            shared.metrics.reject(reason_of(&e));
            if matches!(e, Error::Auth { .. }) {
                shared.metrics.auth_failure(method.as_str());
            }
            (e, presented.clone(), method)
        })?;
    let fail = |e: Error| (e, user.clone(), method);
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
        struct Unregister<'a>(&'a Shared, Token);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.pending.lock().remove(&self.1);
            }
        }
        let _unreg = Unregister(shared, token);
        net::write_msg(&mut s, &Reply::OkToken(token).to_bytes(), Phase::Command).map_err(fail)?;
        let deadline = Instant::now() + shared.cfg.join_timeout;
        while extra.len() < n - 1 && !shared.stop.is_triggered() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(c) = rx.recv_timeout(left.min(net::POLL_TIMEOUT)) {
                extra.push(c);
            }
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
        let (l, sock) = allocate_udp(shared, local_ip, n).map_err(fail)?;
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

/// A UDP port held by a session; freed on drop.
struct PortLease {
    port: u16,
    shared: Arc<Shared>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.shared.ports.lock().remove(&self.port);
    }
}

/// Picks the next free port from `--udp-port-from` (wrapping), binds it, and leases it.
/// The client will use `port + 256 .. port + 256 + n`, so those must fit below 65536.
fn allocate_udp(shared: &Arc<Shared>, ip: IpAddr, n: usize) -> Result<(PortLease, UdpSocket)> {
    let lo = shared.cfg.udp_port_from;
    let hi = (65535 - usize::from(wire::UDP_CLIENT_PORT_OFFSET) - n.max(1)) as u16;
    if lo > hi {
        return Err(Error::Refused(format!(
            "--udp-port-from {lo} leaves no room for {n} client port(s) at +256"
        )));
    }
    let span = u32::from(hi - lo) + 1;
    let mut cursor = shared.port_cursor.lock();
    let mut ports = shared.ports.lock();
    for k in 0..span.min(4096) {
        let p = (u32::from(lo) + (u32::from(cursor.saturating_sub(lo)) + k) % span) as u16;
        if ports.contains(&p) {
            continue;
        }
        match net::bind_udp(SocketAddr::new(ip, p), None) {
            Ok(sock) => {
                ports.insert(p);
                *cursor = if p >= hi { lo } else { p + 1 };
                return Ok((
                    PortLease {
                        port: p,
                        shared: shared.clone(),
                    },
                    sock,
                ));
            }
            Err(e) => log::debug!("UDP port {p} unavailable: {e}"),
        }
    }
    Err(Error::Refused(format!(
        "no free UDP port from {lo} (all in use or unbindable)"
    )))
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
