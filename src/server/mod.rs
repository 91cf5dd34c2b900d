//! The server: its public types, the state its threads share, and starting and stopping.
//!
//! Threads: `btest-accept-K` per listener (accept.rs: address lists, per-source caps);
//! `btest-guard` (guard.rs: handshake deadlines, bounded rejection logging); `btest-conn` per
//! accepted connection, which does the handshake (handshake.rs, join.rs, ports.rs) and then
//! runs the session (session.rs; its role threads come from the engine). Pure parts:
//! limits.rs, acl.rs, join.rs, ports.rs. Must not: print (sessions are reported as
//! [`SessionRecord`]s on a channel; the caller formats them).

mod accept;
pub mod accounting;
pub mod acl;
#[cfg(feature = "http")]
pub mod api;
pub mod capacity;
pub mod echo;
mod guard;
mod handshake;
mod join;
pub mod limits;
#[cfg(feature = "http")]
pub mod live;
#[cfg(not(feature = "http"))]
#[path = "live_off.rs"]
pub mod live;
mod ports;
pub mod quota;
mod reasons;
mod session;
#[cfg(feature = "quotas")]
pub mod usage;
#[cfg(not(feature = "quotas"))]
#[path = "usage_off.rs"]
pub mod usage;
#[cfg(feature = "http")]
pub mod web;

use crate::atomic::AtomicU64;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::auth::AuthMethod;
use crate::config::ServerConfig;
use crate::engine::{self, Stop, StopReason};
use crate::error::{Error, Phase, Result};
use crate::export::metrics::Metrics;
use crate::net;
use crate::wire::Command;

use limits::{Limits, LogGate};
pub use reasons::{end_reason, RejectReason};

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

/// What does not change during a session, for the live registry (live.rs) and `--http`.
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

struct Shared {
    cfg: ServerConfig,
    stop: Stop,
    joins: join::Joins<TcpStream>,
    acl: acl::Acl,
    ports: ports::PortPool,
    active: AtomicUsize,
    limits: Mutex<Limits>,
    gate: Mutex<LogGate>,
    watch: Mutex<guard::Watch>,
    threads: Arc<AtomicUsize>,
    started: AtomicU64,
    rejected: AtomicU64,
    events: Sender<ServerEvent>,
    /// Events the caller was too slow to take (the channel was full): counted, and logged
    /// through the gate.
    events_dropped: AtomicU64,
    /// The accounts; replaced whole by [`ServerHandle::reload`].
    auth: Mutex<Arc<crate::authio::ServerAccounts>>,
    metrics: Arc<Metrics>,
    live: Arc<live::Registry>,
    accounting: Arc<accounting::Accounting>,
    capacity: Arc<capacity::Capacity>,
}

/// A bound, not yet running server.
pub struct Server {
    listeners: Vec<TcpListener>,
    echo: Vec<echo::EchoResponder>,
    shared: Arc<Shared>,
    events: Receiver<ServerEvent>,
}

/// A running server.
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    accept: Vec<JoinHandle<()>>,
    echo: Vec<JoinHandle<echo::EchoStats>>,
    events: Receiver<ServerEvent>,
}

impl Server {
    /// Binds every listen address. Nothing runs yet.
    pub fn bind(cfg: ServerConfig) -> Result<Server> {
        let mut listeners = Vec::new();
        for &a in &cfg.listen {
            match net::listen_on(a, cfg.device.as_deref()) {
                Ok(l) => listeners.push(l),
                // `[::]` on a host without IPv6: fall back to 0.0.0.0 on the same port.
                Err(e) if a.ip().is_unspecified() && a.is_ipv6() && cfg.listen.len() == 1 => {
                    log::warn!("cannot listen on {a} ({e}); falling back to IPv4 only");
                    listeners.push(net::listen_on(
                        SocketAddr::from(([0, 0, 0, 0], a.port())),
                        cfg.device.as_deref(),
                    )?);
                }
                Err(e) => return Err(e),
            }
        }
        let auth = crate::authio::ServerAccounts::new(&cfg)?;
        let accounting = Arc::new(accounting::Accounting::new(&cfg, &auth)?);
        // Fixed malloc thresholds, so a session's large buffers are unmapped when freed
        // (glibc; docs/reliability.md "Memory after load").
        if !crate::sys::mem::tune_allocator() {
            log::debug!("mallopt refused the fixed thresholds; idle memory may stay higher");
        }
        // The latency probe's UDP echo (issue 11) on each listener's address and port number;
        // a port some other program holds only costs clients the echo (they fall back to ICMP).
        let mut echo = Vec::new();
        if cfg.echo {
            for a in listeners.iter().filter_map(|l| l.local_addr().ok()) {
                match echo::EchoResponder::bind(a) {
                    Ok(r) => echo.push(r),
                    Err(e) => log::warn!(
                        "UDP echo on {a}: {e}; latency probes to this server will use ICMP"
                    ),
                }
            }
        }
        // After the listeners and echo sockets exist, so they are in the measured base.
        let capacity = Arc::new(capacity::Capacity::of_process());
        log::info!("{}", capacity.describe());
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let guard_cfg = cfg.guard;
        let ports = ports::PortPool::new(cfg.udp_port_from);
        let acl = acl::Acl::new(&cfg.allow, &cfg.deny);
        Ok(Server {
            listeners,
            echo,
            shared: Arc::new(Shared {
                cfg,
                stop: Stop::new(),
                joins: join::Joins::default(),
                acl,
                ports,
                active: AtomicUsize::new(0),
                limits: Mutex::new(Limits::new(guard_cfg)),
                gate: Mutex::new(LogGate::new(LOG_WINDOW, Instant::now())),
                watch: Mutex::new(guard::Watch::default()),
                threads: Arc::new(AtomicUsize::new(0)),
                started: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                events: tx,
                events_dropped: AtomicU64::new(0),
                auth: Mutex::new(Arc::new(auth)),
                metrics: Arc::new(Metrics::default()),
                live: Arc::new(live::Registry::default()),
                accounting,
                capacity,
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

    /// Which login this server requires, for whom (issue 19): `login: EC-SRP5, 3 accounts
    /// from /etc/btest/users`, `login: none (anyone may test)`.
    pub fn login(&self) -> String {
        self.shared.accounts().summary(&self.shared.cfg)
    }

    /// Starts the accept threads.
    pub fn spawn(self) -> Result<ServerHandle> {
        let addrs = self.local_addrs();
        let mut accept = Vec::new();
        let shared = self.shared.clone();
        match crate::thread::spawn_named("btest-guard", None, move || guard::run(&shared)) {
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
            let h = crate::thread::spawn_named(&format!("btest-accept-{i}"), None, move || {
                accept::run(&shared, l)
            })
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
        let mut echo = Vec::new();
        for r in self.echo {
            match r.spawn_with(self.shared.stop.clone(), EchoSources(self.shared.clone())) {
                Ok(h) => echo.push(h),
                Err(e) => log::warn!("UDP echo: cannot start its thread: {e}"),
            }
        }
        Ok(ServerHandle {
            addrs,
            shared: self.shared,
            accept,
            echo,
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

    /// Live sessions and recent history (for `--http`).
    pub fn live(&self) -> Arc<live::Registry> {
        self.shared.live.clone()
    }

    /// The `--http` routes over this server's registry, accounts and counters.
    #[cfg(feature = "http")]
    pub fn http_handler(&self) -> crate::http::Handler {
        let sh = self.shared.clone();
        web::handler(
            self.shared.live.clone(),
            self.shared.accounting.clone(),
            self.shared.metrics.clone(),
            move || (sh.active.load(SeqCst) as u64, sh.ports.in_use() as u64),
        )
    }

    /// Accounts, limits and byte usage (for `/api/quotas`).
    pub fn accounting(&self) -> Arc<accounting::Accounting> {
        self.shared.accounting.clone()
    }

    /// Reads the users file again (SIGHUP): its accounts and `limit` lines replace the old
    /// ones only if the whole file is valid; otherwise nothing changes and the error says
    /// why. Sessions already running keep their login and limits. Returns what changed.
    pub fn reload(&self) -> Result<String> {
        let sh = &self.shared;
        let Some(path) = &sh.cfg.users_file else {
            return Ok("no --users file: nothing to reload".into());
        };
        let old = sh.auth.lock().clone();
        let accounts = old.reload(&sh.cfg)?;
        let mut changes = old.changes_to(&accounts);
        changes.extend(sh.accounting.reload_users(&sh.cfg, &accounts)?);
        *sh.auth.lock() = Arc::new(accounts);
        Ok(if changes.is_empty() {
            format!("reloaded {}: no change", path.display())
        } else {
            format!("reloaded {}: {}", path.display(), changes.join(", "))
        })
    }

    /// Events dropped because the caller did not take them in time.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(SeqCst)
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
        self.join_echo();
        let t0 = Instant::now();
        while self.shared.threads.load(SeqCst) > 0 && t0.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shared.accounting.flush();
        self.stats()
    }
}

impl ServerHandle {
    fn join_echo(&mut self) {
        for h in self.echo.drain(..) {
            if let Ok(s) = h.join() {
                log::debug!(
                    "UDP echo: {} echoed, {} ignored, {} rate-limited",
                    s.echoed,
                    s.ignored,
                    s.rate_limited
                );
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shared.stop.trigger(StopReason::Shutdown);
        for h in self.accept.drain(..) {
            let _ = h.join();
        }
        self.join_echo();
    }
}

/// The echo's questions about a source, answered from the server's state.
struct EchoSources(Arc<Shared>);

impl echo::Sources for EchoSources {
    fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.0.acl.admits(ip)
    }

    /// A source holding a session gets the speed test's probe rate (issue 22).
    fn has_session(&self, ip: std::net::IpAddr) -> bool {
        self.0.limits.lock().has_session(limits::Source::of(ip))
    }
}

impl Shared {
    /// Hands an event to the caller without blocking a session: when the caller falls behind
    /// (its channel of 1024 is full) the event is dropped, counted and logged through the gate.
    fn emit(&self, ev: ServerEvent) {
        if self.events.try_send(ev).is_err() {
            self.events_dropped.fetch_add(1, SeqCst);
            if self.gate.lock().allow("events_dropped") {
                log::warn!(
                    "a session record was dropped: the output is not keeping up (counted in events_dropped)"
                );
            }
        }
    }

    /// The accounts in force now.
    fn accounts(&self) -> Arc<crate::authio::ServerAccounts> {
        self.auth.lock().clone()
    }
}

/// Runs its closure when dropped: the one guard type for "undo this on every way out"
/// (the session slot, a source's count, a join registration; thread counts use
/// `thread::Registration`).
pub(crate) struct Defer<F: FnOnce()>(Option<F>);

impl Defer<Box<dyn FnOnce() + Send>> {
    /// A guard that can be kept in a struct.
    pub(crate) fn boxed(f: impl FnOnce() + Send + 'static) -> Self {
        Defer(Some(Box::new(f)))
    }
}

impl<F: FnOnce()> Drop for Defer<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
