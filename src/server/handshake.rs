//! One accepted connection's handshake, on its `btest-conn` thread: hello, command, then
//! either a data connection joining its session (join.rs) or a new session's login, session
//! slot, data connections or UDP port, up to the data phase (session.rs runs that).
//!
//! Every handshake ends by the deadline counted from its accept (`--handshake-timeout`): the
//! guard thread shuts the socket down at it ([`HandshakeSlot`]). Must not: run the data phase,
//! or log a refusal except through the gate ([`reject`]).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::capacity::Tier;
use super::limits::{Refusal, Source};
use super::RejectReason;
use super::{guard, hex, join, ports, session, Defer, Rejection, ServerEvent, Shared};
use crate::auth::AuthMethod;
use crate::engine::{self, rx::canonical, UdpLink};
use crate::error::{Error, Phase};
use crate::net;
use crate::wire::{self, Command, Protocol, Reply, Request};

/// A session ready for its data phase: what [`admit`] set up, held until the session ends.
pub(super) struct Admitted {
    pub control: TcpStream,
    pub extra: Vec<TcpStream>,
    pub udp: Vec<UdpLink>,
    pub lease: Option<ports::Lease>,
    pub user: Option<String>,
    pub method: AuthMethod,
    /// Frees the session slot.
    pub _active: Defer<Box<dyn FnOnce() + Send>>,
    /// What its user's and source's limits allow; dropped at the session's end.
    pub grant: super::accounting::Grant,
    /// Its place in the per-source session and connection counts.
    pub _source: Defer<Box<dyn FnOnce() + Send>>,
    /// Its descriptors and threads in the process budget.
    pub _capacity: super::capacity::Hold,
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

    /// An error of the handshake, or the timeout it really was when the guard cut it. An
    /// `Auth` error is a verdict the login reached (authio.rs returns I/O failures as they
    /// are, never as `Auth`), so it stays one even if the deadline passed just after.
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
pub(super) fn refusal_reason(r: Refusal) -> RejectReason {
    match r {
        Refusal::Busy(_) => RejectReason::Limit,
        Refusal::SourceBusy(_) => RejectReason::SourceLimit,
        Refusal::Blocked(_) => RejectReason::LoginBlocked,
        Refusal::LoginRate(_) => RejectReason::LoginRate,
        Refusal::SourceSessions(_) | Refusal::SourceConnections(..) => RejectReason::SourceLimit,
    }
}

/// Counts a refusal and logs it through the gate: under a flood, five lines per reason and
/// window, then one count per window (from the guard thread).
pub(super) fn reject(shared: &Shared, peer: SocketAddr, reason: RejectReason, why: &str) {
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

/// The client closed (or reset) the connection during the login.
fn closed_in_auth(e: &Error) -> bool {
    match e {
        Error::PeerClosed {
            phase: Phase::Auth, ..
        } => true,
        Error::Io {
            phase: Phase::Auth,
            source,
            ..
        } => matches!(
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

pub(super) fn handle_connection(
    shared: &Arc<Shared>,
    mut s: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
) {
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
            match shared.joins.route(token, canonical(peer.ip()), s) {
                Ok(()) => log::debug!("{peer}: joined session {}", hex(&token)),
                Err((why, _conn)) => {
                    let (reason, text) = match why {
                        join::Refused::Full => (
                            RejectReason::Other,
                            "data connection beyond the session's connection count".to_string(),
                        ),
                        join::Refused::OtherAddress => (
                            RejectReason::UnknownToken,
                            format!("token {} belongs to another address", hex(&token)),
                        ),
                        join::Refused::Unknown => (
                            RejectReason::UnknownToken,
                            format!("data connection with unknown token {}", hex(&token)),
                        ),
                    };
                    reject(shared, peer, reason, &text);
                }
            }
            return;
        }
        Err((reason, e)) => {
            reject(shared, peer, reason, &e);
            return;
        }
    };
    match admit(shared, s, peer, cmd, &mut slot) {
        Ok(ready) => {
            let rec = session::run(shared, peer, cmd, ready);
            shared.emit(ServerEvent::End(Box::new(rec)));
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
            shared.emit(ev);
        }
    }
}

/// Why a handshake failed: the error, the user presented, the method, and the metrics reason
/// when it is not the error's own (a limit).
type SetupError = (Error, Option<String>, AuthMethod, Option<RejectReason>);

/// Everything after the command up to the data phase: login, session slot, data connections
/// or UDP port. The handshake slot is released once it succeeded.
fn admit(
    shared: &Arc<Shared>,
    mut s: TcpStream,
    peer: SocketAddr,
    cmd: Command,
    slot: &mut HandshakeSlot<'_>,
) -> std::result::Result<Admitted, SetupError> {
    let accounts = shared.accounts();
    let method = accounts.method();
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
    let user = accounts
        .authenticate(&mut s, peer, &mut presented)
        .map_err(|e| {
            // A login the guard cut at the deadline is a timeout, whatever the read then saw
            // (issue 18: it was recorded as a failed login and counted towards a block).
            let e = match slot.explain(e) {
                // Asked to log in, the client closed before naming a user: it has no
                // credentials (or not for this method). Said in the server's words: the
                // peer-closed text is advice for a client (issue 19). A failed login, as an
                // EC-SRP5 close always was.
                // (An MD5 client that closes with the challenge unread resets the connection.)
                e if presented.is_none() && closed_in_auth(&e) => Error::Auth {
                    method: method.as_str(),
                    detail: format!(
                        "{peer} closed the connection when asked to log in, before sending a \
                         user name: the client has no credentials for this server (RouterOS: \
                         user= and password=; btest: --user and --password){}",
                        if method == AuthMethod::EcSrp5 {
                            ", or cannot do EC-SRP5 (RouterOS before 6.43: run this server \
                             with --auth md5)"
                        } else {
                            ""
                        }
                    ),
                },
                // An EC-SRP5 client that gave up mid-exchange: a failed login, as it always
                // was (an MD5 one stays a closed peer, as it always was too).
                Error::PeerClosed {
                    phase: Phase::Auth, ..
                } if method == AuthMethod::EcSrp5 => Error::Auth {
                    method: method.as_str(),
                    detail: format!("{peer} closed the connection during the exchange"),
                },
                e => e,
            };
            shared.rejected.fetch_add(1, SeqCst);
            shared.metrics.reject(reason_of(&e));
            if matches!(e, Error::Auth { .. }) {
                shared.metrics.auth_failure(method.as_str());
                if shared.gate.lock().allow("auth_failed") {
                    log::warn!("{peer}: {e}");
                }
                // A client that named no user guessed no password: not counted towards a
                // block (the login rate limit above still bounds it).
                let blocked = presented
                    .is_some()
                    .then(|| shared.limits.lock().login_failed(src, Instant::now()))
                    .flatten();
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
    // Limits of the user and the source, before the session slot (a refused client must not
    // hold one). The protocol has no refusal message after the command: the close is it.
    let grant =
        match shared
            .accounting
            .admit(user.as_deref(), peer.ip(), std::time::SystemTime::now())
        {
            Ok(g) => g,
            Err(why) => {
                reject(shared, peer, RejectReason::Quota, &why);
                return Err((Error::Refused(why), user, method, Some(RejectReason::Quota)));
            }
        };
    let tcp = cmd.protocol == Protocol::Tcp;
    let n = cmd.connections();
    // Per source: sessions, and the TCP connections they hold together (issue 18: one
    // address took all 100 slots; four 255-connection sessions exhausted the process).
    let links = if tcp { n } else { 1 };
    let admitted = shared
        .limits
        .lock()
        .begin_session(src, links, Instant::now());
    if let Err(r) = admitted {
        let why = r.describe(Instant::now());
        reject(shared, peer, refusal_reason(r), &why);
        return Err((Error::Refused(why), user, method, Some(refusal_reason(r))));
    }
    let source = {
        let sh = shared.clone();
        Defer::boxed(move || sh.limits.lock().end_session(src, links))
    };
    let (fds, threads) = super::capacity::session_cost(
        tcp,
        n,
        cmd.direction.we_transmit(wire::Side::Server),
        cmd.direction.we_receive(wire::Side::Server),
    );
    let capacity = match shared.capacity.hold(Tier::Session, fds, threads) {
        Ok(h) => h,
        Err(full) => {
            let why = full.to_string();
            reject(shared, peer, RejectReason::Capacity, &why);
            return Err((
                Error::Refused(why),
                user,
                method,
                Some(RejectReason::Capacity),
            ));
        }
    };
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
    let active = {
        let sh = shared.clone();
        Defer::boxed(move || {
            sh.active.fetch_sub(1, SeqCst);
        })
    };
    let local_ip = s
        .local_addr()
        .map_err(|e| fail(Error::io(Phase::Command, Some(peer), e)))?
        .ip();
    let peer_ip = canonical(peer.ip());

    let mut extra = Vec::new();
    let mut udp = Vec::new();
    let mut lease = None;
    if tcp && n > 1 {
        let (token, rx) = shared.joins.register(peer_ip, n - 1);
        // The data connections may come beyond the per-source handshake cap.
        shared
            .limits
            .lock()
            .join_room(src, n - 1, true, Instant::now());
        let _unregister = Defer::new(|| {
            shared.joins.unregister(token);
            shared
                .limits
                .lock()
                .join_room(src, n - 1, false, Instant::now());
        });
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
        if shared.stop.is_triggered() {
            // The server is stopping (a signal): this session must not start with whatever
            // joined so far (issue 18: it started with none of them).
            return Err((
                Error::Refused("the server is shutting down".into()),
                user,
                method,
                Some(RejectReason::Other),
            ));
        }
        if extra.is_empty() {
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
            .lease(n, |p| {
                net::bind_udp_on(
                    SocketAddr::new(local_ip, p),
                    None,
                    shared.cfg.device.as_deref(),
                )
            })
            .map_err(|e| fail(Error::Refused(e)))?;
        let port = l.port;
        lease = Some(l);
        net::write_msg(&mut s, &wire::udp_port_to_bytes(port), Phase::UdpSetup).map_err(fail)?;
        // The pool leases only ports whose client ports all fit (`wire::udp::last_server_port`).
        let Some(first_port) = wire::udp::client_port(port, 0) else {
            return Err(fail(Error::Refused(format!(
                "UDP port {port} leaves no room for the client's port (port + 256)"
            ))));
        };
        let targets: Vec<SocketAddr> = wire::udp::client_ports(port, n)
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
                    first_port,
                    ports: n,
                }),
            });
        }
    }
    slot.release();
    Ok(Admitted {
        control: s,
        extra,
        udp,
        lease,
        user,
        method,
        _active: active,
        grant,
        _source: source,
        _capacity: capacity,
    })
}
