//! One accepted connection's handshake, on its `btest-conn` thread: hello, command, then
//! either a data connection joining its session (join.rs) or a new session's login, session
//! slot, data connections or UDP port, up to the data phase (session.rs runs that).
//!
//! Every handshake ends by the deadline counted from its accept (`--handshake-timeout`): the
//! guard thread shuts the socket down at it ([`HandshakeSlot`]). Must not: run the data phase,
//! or log a refusal except through the gate ([`reject`]).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::capacity::Tier;
use super::limits::{Refusal, Source};
use super::RejectReason;
use super::{guard, hex, join, ports, session, Defer, Rejection, ServerEvent, Shared};
use crate::auth::{ec_srp5, md5, AuthMethod};
use crate::engine::{self, rx::canonical, UdpLink};
use crate::error::{Error, Phase};
use crate::handshake::server::{Outcome, Policy, ServerError};
use crate::handshake::{self, Server, Step};
use crate::net;
use crate::wire::{self, Command, Protocol};

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

/// Undoes a count when dropped.
type Guard = Defer<Box<dyn FnOnce() + Send>>;

/// The server's answers to the handshake machine, and what admitting the session holds until
/// the session ends (or the handshake fails).
struct Gate<'a> {
    shared: &'a Arc<Shared>,
    accounts: Arc<crate::authio::ServerAccounts>,
    peer: SocketAddr,
    src: Source,
    local_ip: IpAddr,
    /// Why the last refusal refused: the error and the metrics reason when it is not the
    /// error's own (a limit, already counted and logged by [`reject`]).
    refusal: Option<(Error, Option<RejectReason>)>,
    /// The admitted user, as the logs and records show it.
    user: Option<String>,
    grant: Option<super::accounting::Grant>,
    source: Option<Guard>,
    capacity: Option<super::capacity::Hold>,
    active: Option<Guard>,
    /// A multi-connection session's token, its data connections, and the guard that
    /// unregisters the token.
    joins: Option<(crossbeam_channel::Receiver<TcpStream>, Guard)>,
    lease: Option<(ports::Lease, std::net::UdpSocket)>,
}

impl Gate<'_> {
    fn refuse(&mut self, reason: RejectReason, why: String) {
        reject(self.shared, self.peer, reason, &why);
        self.refusal = Some((Error::Refused(why), Some(reason)));
    }
}

impl Policy for Gate<'_> {
    fn method(&self) -> AuthMethod {
        self.accounts.method()
    }

    fn begin_login(&mut self) -> bool {
        let now = Instant::now();
        let admitted = self.shared.limits.lock().begin_login(self.src, now);
        match admitted {
            Ok(()) => true,
            Err(r) => {
                self.refuse(refusal_reason(r), r.describe(now));
                false
            }
        }
    }

    fn md5_check(
        &self,
        reply: &[u8; md5::REPLY_LEN],
        challenge: &[u8; md5::CHALLENGE_LEN],
    ) -> bool {
        self.accounts.md5_check(reply, challenge)
    }

    fn ec_verifier(&self, user: &[u8]) -> ec_srp5::Verifier {
        self.accounts.ec_verifier(user)
    }

    fn admit(
        &mut self,
        cmd: &Command,
        user: Option<&[u8]>,
    ) -> Option<Option<wire::command::Token>> {
        let shared = self.shared;
        let (peer, src) = (self.peer, self.src);
        let method = self.accounts.method();
        self.user = user.map(|u| String::from_utf8_lossy(u).into_owned());
        if method != AuthMethod::None {
            // The name is the peer's: escaped wherever it is printed (issue 18).
            let shown = crate::text::Esc(self.user.as_deref().unwrap_or(""));
            log::info!(
                "{peer}: authenticated user '{shown}' ({})",
                crate::error::auth_method_name(method.as_str())
            );
            shared.limits.lock().login_ok(src);
        }
        // Limits of the user and the source, before the session slot (a refused client must not
        // hold one). The protocol has no refusal message after the command: the close is it.
        match shared
            .accounting
            .admit(self.user.as_deref(), peer.ip(), SystemTime::now())
        {
            Ok(g) => self.grant = Some(g),
            Err(why) => {
                self.refuse(RejectReason::Quota, why);
                return None;
            }
        }
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
            self.refuse(refusal_reason(r), r.describe(Instant::now()));
            return None;
        }
        let sh = shared.clone();
        self.source = Some(Defer::boxed(move || {
            sh.limits.lock().end_session(src, links)
        }));
        let (fds, threads) = super::capacity::session_cost(
            tcp,
            n,
            cmd.direction.we_transmit(wire::Side::Server),
            cmd.direction.we_receive(wire::Side::Server),
        );
        match shared.capacity.hold(Tier::Session, fds, threads) {
            Ok(h) => self.capacity = Some(h),
            Err(full) => {
                self.refuse(RejectReason::Capacity, full.to_string());
                return None;
            }
        }
        // The session slot is taken after the login, so unauthenticated handshakes never hold
        // one (they are bounded per source instead).
        if shared.active.fetch_add(1, SeqCst) >= shared.cfg.max_sessions {
            shared.active.fetch_sub(1, SeqCst);
            let why = format!(
                "session limit ({}) reached (--max-sessions)",
                shared.cfg.max_sessions
            );
            self.refuse(RejectReason::Limit, why);
            return None;
        }
        let sh = shared.clone();
        self.active = Some(Defer::boxed(move || {
            sh.active.fetch_sub(1, SeqCst);
        }));
        if !(tcp && n > 1) {
            return Some(None);
        }
        let (token, rx) = shared.joins.register(canonical(peer.ip()), n - 1);
        // The data connections may come beyond the per-source handshake cap.
        shared
            .limits
            .lock()
            .join_room(src, n - 1, true, Instant::now());
        let sh = shared.clone();
        let unregister = Defer::boxed(move || {
            sh.joins.unregister(token);
            sh.limits
                .lock()
                .join_room(src, n - 1, false, Instant::now());
        });
        self.joins = Some((rx, unregister));
        Some(Some(token))
    }

    fn udp_port(&mut self, cmd: &Command) -> Option<u16> {
        let (local_ip, device) = (self.local_ip, self.shared.cfg.device.as_deref());
        match self.shared.ports.lease(cmd.connections(), |p| {
            net::bind_udp_on(SocketAddr::new(local_ip, p), None, device)
        }) {
            Ok((l, sock)) => {
                let port = l.port;
                self.lease = Some((l, sock));
                Some(port)
            }
            Err(e) => {
                self.refusal = Some((Error::Refused(e), None));
                None
            }
        }
    }
}

/// Why the server's half of the handshake stopped: the socket, or the machine.
enum Fail {
    Io(Error),
    Hs(ServerError),
}

/// Runs the machine on `s`: writes what it gives, reads exactly what it asks for (the socket's
/// read and write timeouts and the guard bound every call).
// Out of line, like the machine's steps (handshake/server.rs): in the router image (opt-level
// "z", fat LTO) inlining them into one function cost 3.3 KiB more .text, which crossed a page
// (issue 20 item 2, measured with `size -A` on the x86_64 musl build).
#[inline(never)]
fn drive(s: &mut TcpStream, m: &mut Server, gate: &mut Gate<'_>) -> Result<Outcome, Fail> {
    let mut buf = handshake::Buf::new();
    loop {
        let (n, phase, send) = match m.poll(gate).map_err(Fail::Hs)? {
            Step::Done(o) => return Ok(o),
            Step::Need(n, phase) => (n, phase, false),
            Step::Send(b, phase) => (buf.keep(b), phase, true),
        };
        if send {
            net::write_msg(s, buf.get(n), phase).map_err(Fail::Io)?;
        } else {
            net::read_exact(s, buf.get(n), phase).map_err(Fail::Io)?;
            m.feed(buf.get(n));
        }
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
    let Ok(local_ip) = s.local_addr().map(|a| a.ip()) else {
        return;
    };
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
    let mut challenge = [0u8; md5::CHALLENGE_LEN];
    let mut s_b = [0u8; 32];
    crate::sys::random_bytes(&mut challenge);
    crate::sys::random_bytes(&mut s_b);
    let mut m = Server::new(challenge, s_b);
    s_b.fill(0);
    let mut gate = Gate {
        shared,
        accounts: shared.accounts(),
        peer,
        src: slot.src,
        local_ip,
        refusal: None,
        user: None,
        grant: None,
        source: None,
        capacity: None,
        active: None,
        joins: None,
        lease: None,
    };
    let r = drive(&mut s, &mut m, &mut gate);
    let Some(cmd) = m.command() else {
        // Before a command: the hello, the command read, or a join marker.
        let (reason, text) = match r {
            Ok(Outcome::Join(token)) => {
                route_join(shared, peer, token, s);
                return;
            }
            Ok(Outcome::Session) => return,
            Err(Fail::Hs(ServerError::BadCommand(b, e))) => (
                RejectReason::BadCommand,
                format!("bad command {}: {e}", hex(&b)),
            ),
            // (only a bad command ends a handshake before its command)
            Err(Fail::Hs(_)) => (RejectReason::Other, "no command".to_string()),
            Err(Fail::Io(e)) if e.phase() == Some(Phase::Hello) => {
                (RejectReason::Other, e.to_string())
            }
            Err(Fail::Io(e)) if closed_silently(&e) && !slot.expired() => {
                shared.rejected.fetch_add(1, SeqCst);
                shared.metrics.reject(RejectReason::Other);
                if shared.gate.lock().allow("closed_silently") {
                    log::info!("{peer}: closed before sending a command");
                }
                return;
            }
            Err(Fail::Io(e)) => {
                let e = slot.explain(e);
                (reason_of(&e), e.to_string())
            }
        };
        reject(shared, peer, reason, &text);
        return;
    };
    let result = match r {
        Ok(_) => finish(shared, s, peer, cmd, &mut slot, &mut gate),
        Err(f) if !m.authenticated() => {
            Err(login_failed(shared, &mut s, peer, &m, &mut gate, &slot, f))
        }
        Err(f) => {
            let (e, limit) = match f {
                Fail::Hs(_) => gate
                    .refusal
                    .take()
                    .unwrap_or((Error::Refused("refused".into()), None)),
                Fail::Io(e) => (e, None),
            };
            Err((e, gate.user.take(), m.method(), limit))
        }
    };
    drop(gate);
    match result {
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

/// Hands a data connection to the session whose token it presented.
fn route_join(shared: &Arc<Shared>, peer: SocketAddr, token: wire::command::Token, s: TcpStream) {
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
}

/// Why a handshake failed: the error, the user presented, the method, and the metrics reason
/// when it is not the error's own (a limit).
type SetupError = (Error, Option<String>, AuthMethod, Option<RejectReason>);

/// A failure before the login passed: words it, counts it, and counts a wrong login towards
/// the source's block. Failures are logged at debug level here and once through the gate:
/// one line per failure would let a login flood fill the log (issue 12).
// Out of line, like the machine's steps (handshake/server.rs): in the router image (opt-level
// "z", fat LTO) inlining them into one function cost 3.3 KiB more .text, which crossed a page
// (issue 20 item 2, measured with `size -A` on the x86_64 musl build).
#[inline(never)]
fn login_failed(
    shared: &Arc<Shared>,
    s: &mut TcpStream,
    peer: SocketAddr,
    m: &Server,
    gate: &mut Gate<'_>,
    slot: &HandshakeSlot<'_>,
    f: Fail,
) -> SetupError {
    let method = m.method();
    let presented = m
        .presented()
        .map(|u| String::from_utf8_lossy(u).into_owned());
    let src = slot.src;
    let shown = crate::text::Esc(presented.as_deref().unwrap_or(""));
    let name = crate::error::auth_method_name(method.as_str());
    let auth = |detail: String| Error::Auth {
        method: method.as_str(),
        detail,
    };
    let e = match f {
        Fail::Hs(ServerError::LoginRefused) => {
            let (e, limit) = gate
                .refusal
                .take()
                .unwrap_or((Error::Refused("refused".into()), None));
            return (e, None, method, limit);
        }
        Fail::Hs(ServerError::WrongLogin) => {
            log::debug!("{peer}: authentication failed ({name}) for user '{shown}'");
            let _ = net::write_msg(s, m.farewell(), Phase::Auth);
            auth(format!(
                "user '{shown}' from {peer}: wrong user or password"
            ))
        }
        Fail::Hs(ServerError::BadMsg1(e)) => {
            log::debug!("{peer}: authentication failed ({name}): bad MSG1: {e}");
            auth(format!("from {peer}: bad MSG1: {e}"))
        }
        Fail::Hs(ServerError::BadKey(e)) => {
            log::debug!("{peer}: authentication failed ({name}) for user '{shown}': {e}");
            auth(format!("user '{shown}' from {peer}: {e}"))
        }
        Fail::Io(e) => e,
        // (the others come after the login)
        Fail::Hs(_) => Error::Refused("refused".into()),
    };
    // A login the guard cut at the deadline is a timeout, whatever the read then saw
    // (issue 18: it was recorded as a failed login and counted towards a block).
    let e = match slot.explain(e) {
        // Asked to log in, the client closed before naming a user: it has no
        // credentials (or not for this method). Said in the server's words: the
        // peer-closed text is advice for a client (issue 19). A failed login, as an
        // EC-SRP5 close always was.
        // (An MD5 client that closes with the challenge unread resets the connection.)
        e if presented.is_none() && closed_in_auth(&e) => auth(format!(
            "{peer} closed the connection when asked to log in, before sending a \
             user name: the client has no credentials for this server (RouterOS: \
             user= and password=; btest: --user and --password){}",
            if method == AuthMethod::EcSrp5 {
                ", or cannot do EC-SRP5 (RouterOS before 6.43: run this server \
                 with --auth md5)"
            } else {
                ""
            }
        )),
        // An EC-SRP5 client that gave up mid-exchange: a failed login, as it always
        // was (an MD5 one stays a closed peer, as it always was too).
        Error::PeerClosed {
            phase: Phase::Auth, ..
        } if method == AuthMethod::EcSrp5 => {
            auth(format!("{peer} closed the connection during the exchange"))
        }
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
    (e, presented, method, None)
}

/// After the OK (and the UDP port): waits for the data connections of a multi-connection
/// session, or builds the UDP links. The handshake slot is released once it succeeded.
// Out of line, like the machine's steps (handshake/server.rs): in the router image (opt-level
// "z", fat LTO) inlining them into one function cost 3.3 KiB more .text, which crossed a page
// (issue 20 item 2, measured with `size -A` on the x86_64 musl build).
#[inline(never)]
fn finish(
    shared: &Arc<Shared>,
    s: TcpStream,
    peer: SocketAddr,
    cmd: Command,
    slot: &mut HandshakeSlot<'_>,
    gate: &mut Gate<'_>,
) -> std::result::Result<Admitted, SetupError> {
    let method = gate.accounts.method();
    let user = gate.user.take();
    let fail = |e: Error| (e, user.clone(), method, None);
    let n = cmd.connections();
    let peer_ip = canonical(peer.ip());
    let mut extra = Vec::new();
    let mut udp = Vec::new();
    let mut lease = None;
    if let Some((rx, unregister)) = gate.joins.take() {
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
        drop(unregister);
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
    }
    if let Some((l, sock)) = gate.lease.take() {
        let port = l.port;
        lease = Some(l);
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
    let held = (
        gate.active.take(),
        gate.grant.take(),
        gate.source.take(),
        gate.capacity.take(),
    );
    let (Some(active), Some(grant), Some(source), Some(capacity)) = held else {
        return Err(fail(Error::Refused("admission incomplete".into())));
    };
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
