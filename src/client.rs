//! The client: connect, hello, command, authentication, extra connections or UDP port pair,
//! then hand the sockets to the engine and stream its samples to the caller.
//!
//! Must not: print (the caller's reporter does) or tune sockets itself (net.rs does).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::auth::{ec_srp5, md5, AuthMethod};
use crate::authio;
use crate::config::{ClientConfig, Family};
use crate::engine::{self, Plan, Sample, Stop, StopReason, Summary, UdpLink};
use crate::error::{Error, Phase, Result};
use crate::handshake::client::{ClientError, Outcome as ClientOutcome};
use crate::handshake::{self, Step};
use crate::net;
use crate::wire::{self, command, datagram, Command, Protocol, Reply, Side};

/// What a finished client test reports.
#[derive(Debug, Clone)]
pub struct ClientResult {
    /// The engine's summary.
    pub summary: Summary,
    /// Server address actually used.
    pub server: SocketAddr,
    /// Authentication method the server asked for.
    pub auth: AuthMethod,
    /// TCP connections (or UDP sockets) actually used.
    pub connections: usize,
    /// The server's UDP port (UDP tests).
    pub udp_port: Option<u16>,
    /// Protocol run.
    pub protocol: Protocol,
    /// The silence limit the test ran with.
    pub control_timeout: Duration,
    /// Direction, as the command says it (`ServerRx` = the client transmits).
    pub direction: wire::Direction,
    /// The rate we asked the server to send at (bit/s, 0 = unlimited).
    pub asked_remote_bps: u64,
    /// TCP_CONGESTION read back from connection 0 once connected: what our load connections
    /// really use (`--congestion`, a route's `congctl`, or the namespace's default; a fresh
    /// unconnected socket told only the last, issue 22).
    #[cfg(feature = "speedtest")]
    pub congestion: Option<String>,
}

impl ClientResult {
    /// UDP, the server sending at a rate we asked: what it really sent, when that is clearly
    /// less. The protocol has no message for a server-side cap (docs/protocol.md 14.16), but
    /// the sequence numbers count what it sent: what arrived plus what was lost on the way.
    pub fn server_sent_short(&self) -> Option<f64> {
        let t = &self.summary.status.totals;
        let secs = self.summary.duration.as_secs_f64();
        if self.protocol != Protocol::Udp
            || !self.direction.we_receive(Side::Client)
            || self.asked_remote_bps == 0
            || t.rx_packets == 0
            || secs < 1.0
        {
            return None;
        }
        let per_packet = t.rx_bytes as f64 / t.rx_packets as f64;
        let sent = (t.rx_packets + t.lost) as f64 * per_packet * 8.0 / secs;
        (sent < 0.9 * self.asked_remote_bps as f64).then_some(sent)
    }

    /// Did the test end the way a successful test ends?
    pub fn succeeded(&self) -> bool {
        self.outcome().is_ok()
    }

    /// Nothing arrived in an asked direction: the test measured nothing there.
    fn no_data(&self) -> Option<Error> {
        let st = &self.summary.status;
        let udp = self.protocol == Protocol::Udp;
        let ports = self.udp_port.map(|p| match wire::udp::client_port(p, 0) {
            Some(ours) => format!("the server's UDP port {p} and ours {ours}"),
            None => format!("the server's UDP port {p}"),
        });
        if self.direction.we_receive(Side::Client) && st.totals.rx_bytes == 0 {
            let detail = if udp {
                format!(
                    "none of the server's datagrams reached us; check firewalls and NAT for UDP \
                     between {} (UDP ports 2001+ on the server, its port + 256 here)",
                    ports.as_deref().unwrap_or("the UDP ports")
                )
            } else {
                "the server sent nothing on the TCP connection(s); check its --remote-tx-speed \
                 limits and that it is a btest server"
                    .to_string()
            };
            return Some(Error::NoData {
                direction: "receive",
                detail,
            });
        }
        // Only UDP: TCP delivery is acknowledged, so what we sent arrived.
        if udp
            && self.direction.we_transmit(Side::Client)
            && st.totals.tx_bytes > 0
            && st.statuses_received > 0
            && st.remote_rx_bytes == 0
        {
            return Some(Error::NoData {
                direction: "transmit",
                detail: format!(
                    "we sent {} bytes and the server's statuses report receiving none; check \
                     firewalls and NAT for UDP between {} (UDP ports 2001+ on the server, its \
                     port + 256 here)",
                    st.totals.tx_bytes,
                    ports.as_deref().unwrap_or("the UDP ports")
                ),
            });
        }
        None
    }

    /// Success, or the error that says why this test does not count.
    pub fn outcome(&self) -> Result<()> {
        if let Some(what) = self.ended_by_server() {
            return Err(Error::EndedEarly(what));
        }
        match &self.summary.end_reason {
            StopReason::Completed | StopReason::Shutdown => {}
            other => return Err(Error::EndedEarly(format!("test ended: {}", other.as_str()))),
        }
        match self.no_data() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What the server (or the path to it) did, when that is what ended the test: said as
    /// what we saw and when, never as a refusal (the test ran). `None` for our own ends.
    fn ended_by_server(&self) -> Option<String> {
        let secs = self.summary.duration.as_secs_f64();
        Some(match &self.summary.end_reason {
            StopReason::PeerClosed => format!(
                "the server closed the connection {secs:.1} s into the test: it ended the \
                 session (its --max-duration, a quota, or its control timeout after silence from us) or \
                 its process exited or was killed"
            ),
            StopReason::PeerReset => format!(
                "the server reset the connection {secs:.1} s into the test: it ended the session \
                 with our data unread (its --max-duration, a quota, or its control timeout after silence \
                 from us), it was killed or crashed, or a firewall or NAT dropped the connection"
            ),
            StopReason::ControlTimeout => {
                let limit = self.control_timeout.as_secs_f64();
                // TCP sends count as life only from a server that sent no status yet
                // (docs/protocol.md 14.15).
                let what = if self.protocol == Protocol::Tcp
                    && self.summary.status.statuses_received == 0
                {
                    "no data or status from it, and none of ours accepted"
                } else {
                    "no data or status from it"
                };
                format!(
                    "the server went silent {:.1} s into the test: {what} for {limit:.0} s (the \
                     control timeout); it is stopped or hung, or the path to it broke",
                    (secs - limit).max(0.0)
                )
            }
            _ => return None,
        })
    }

    /// The "this host limited the rate" note, unless nothing was measured at all (then the
    /// busy thread says nothing about the link).
    pub fn verdict(&self) -> Option<&str> {
        if self.no_data().is_some() {
            return None;
        }
        self.summary.status.verdict.as_deref()
    }
}

/// Resolves `host:port`, honouring `-4` / `-6`.
pub fn resolve(cfg: &ClientConfig) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            host: cfg.host.clone(),
            source,
        })?
        .filter(|a| match cfg.family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .filter(|a| cfg.bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
        .collect();
    if addrs.is_empty() {
        return Err(Error::Usage(format!(
            "server '{}' has no address of the requested family (check -4/-6 and --bind)",
            cfg.host
        )));
    }
    Ok(addrs)
}

fn connect_any(cfg: &ClientConfig, addrs: &[SocketAddr]) -> Result<TcpStream> {
    let mut last = None;
    for &a in addrs {
        match net::connect(
            a,
            cfg.bind,
            cfg.device.as_deref(),
            cfg.connect_timeout,
            cfg.tos,
            cfg.congestion.as_deref(),
        ) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::Usage("no address to connect to".into())))
}

/// Builds the command the configuration asks for.
pub fn command_for(cfg: &ClientConfig) -> Command {
    let tcp = cfg.protocol == Protocol::Tcp;
    Command {
        protocol: cfg.protocol,
        direction: cfg.direction,
        random_data: cfg.random_data,
        connection_count: if cfg.connection_count > 1 {
            cfg.connection_count
        } else {
            0
        },
        tx_size: if tcp {
            wire::TCP_CHUNK_SIZE
        } else {
            cfg.remote_udp_tx_size
        },
        client_buf_size: 0,
        remote_tx_speed: cfg.remote_tx_speed,
        local_tx_speed: u32::try_from(cfg.local_tx_speed).unwrap_or(u32::MAX),
    }
}

/// Runs one test. Samples are delivered on the returned receiver while it runs; the call
/// returns when the test ends. `stop` lets the caller end it early.
pub fn run(
    cfg: &ClientConfig,
    stop: &Stop,
    samples: Option<crossbeam_channel::Sender<Sample>>,
) -> Result<ClientResult> {
    run_to(cfg, &resolve(cfg)?, stop, samples)
}

/// [`run`] to addresses the caller already resolved (run.rs resolves once, for the latency
/// probe and the test alike).
fn run_to(
    cfg: &ClientConfig,
    addrs: &[SocketAddr],
    stop: &Stop,
    samples: Option<crossbeam_channel::Sender<Sample>>,
) -> Result<ClientResult> {
    let mut s = connect_any(cfg, addrs)?;
    let server = s
        .peer_addr()
        .map_err(|e| Error::io(Phase::Connect, None, e))?;
    let cmd = command_for(cfg);
    let creds = match (&cfg.user, &cfg.password) {
        (Some(u), Some(p)) => Some((u.as_bytes(), p.as_bytes())),
        _ => None,
    };
    let mut s_a = [0u8; 32];
    crate::sys::random_bytes(&mut s_a);
    let mut m = handshake::Client::new(&cmd, creds, s_a);
    s_a.fill(0);
    let done = drive(&mut s, &mut m, cfg, server)?;
    drop(m);
    let auth = done.auth;
    let token = match done.reply {
        Reply::OkToken(t) => Some(t),
        _ => None,
    };
    let tcp = cfg.protocol == Protocol::Tcp;
    let mut extra = Vec::new();
    let mut udp = Vec::new();
    let mut udp_port = None;
    let ipv6 = engine::rx::canonical(server.ip()).is_ipv6();
    if tcp && cfg.connection_count > 1 {
        match token {
            Some(t) => {
                for _ in 1..cfg.connection_count {
                    extra.push(join(cfg, server, t)?);
                }
            }
            None => log::warn!(
                "the server answered without a session token: running with 1 connection instead of {}",
                cfg.connection_count
            ),
        }
    }
    if let Some(port) = done.udp_port {
        udp_port = Some(port);
        let local_ip = s
            .local_addr()
            .map_err(|e| Error::io(Phase::UdpSetup, None, e))?
            .ip();
        let n = usize::from(cfg.connection_count.max(1));
        for i in 0..n {
            let lport = u16::try_from(i)
                .ok()
                .and_then(|i| wire::udp::client_port(port, i))
                .ok_or_else(|| Error::Protocol {
                    phase: Phase::UdpSetup,
                    addr: Some(server),
                    detail: format!(
                        "server UDP port {port} leaves no room for our port of connection {i} \
                         (port + 256 + {i} is above 65535)"
                    ),
                })?;
            let local = SocketAddr::new(local_ip, lport);
            let sock = net::bind_udp_shared(local, cfg.tos, cfg.device.as_deref()).map_err(|e| Error::Io {
                phase: Phase::UdpSetup,
                addr: Some(local),
                source: std::io::Error::new(
                    e.kind(),
                    format!("cannot bind our UDP port {lport} (the server's port {port} + 256, as the protocol requires): {e}"),
                ),
            })?;
            sock.connect(SocketAddr::new(server.ip(), port))
                .map_err(|e| Error::io(Phase::UdpSetup, Some(server), e))?;
            udp.push(UdpLink {
                socket: sock,
                targets: Vec::new(),
                accept_from: None,
            });
        }
    }
    let connections = if tcp { 1 + extra.len() } else { udp.len() };
    let control_timeout = cfg
        .control_timeout
        .unwrap_or(CONTROL_TIMEOUT.max(cfg.connect_timeout));
    #[cfg(feature = "speedtest")]
    let congestion = tcp
        .then(|| net::congestion_of(&socket2::SockRef::from(&s)))
        .flatten();
    let plan = Plan {
        side: "client",
        protocol: cfg.protocol,
        transmit: cmd.direction.we_transmit(Side::Client),
        receive: cmd.direction.we_receive(Side::Client),
        control: s,
        extra_tcp: extra,
        udp,
        udp_overhead: datagram::overhead(ipv6),
        rx_rate: 0,
        tx_rate: cfg.local_tx_speed,
        tx_size: if tcp {
            cmd.effective_tx_size()
        } else {
            usize::from(cfg.local_udp_tx_size)
        },
        // What the server writes: the chunk our command asked for (read only in TCP tests).
        peer_chunk: cmd.effective_tx_size(),
        random: cfg.random_data,
        peer_zero: !cfg.random_data,
        interval: cfg.interval,
        duration: cfg.duration,
        max_duration: None,
        control_timeout,
        samples,
        parent: None,
        gauge: None,
        on_bytes: None,
        tuning: cfg.tuning,
        budget: Default::default(),
    };
    let summary = engine::run(plan, stop)?;
    // The connections that really ran (issue 19): not those a server closed after the join.
    let connections = summary.tcp_links_ran.unwrap_or(connections);
    Ok(ClientResult {
        summary,
        server,
        auth,
        connections,
        udp_port,
        protocol: cfg.protocol,
        direction: cmd.direction,
        control_timeout,
        asked_remote_bps: u64::from(cmd.remote_tx_speed),
        #[cfg(feature = "speedtest")]
        congestion,
    })
}

/// The client's silence limit unless `--control-timeout` is given (at least the connect
/// timeout).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a handshake machine on `s` (a fresh connection): sets its timeouts, reads exactly the
/// bytes the machine asks for (what follows the handshake stays in the socket), writes what it
/// gives, and words its errors. A close or reset during the login is read through
/// [`authio::during`], timed from our last login message (or from the server's request to log
/// in), so a deadline's close is a timeout and a prompt one a verdict (issue 18).
fn drive(
    s: &mut TcpStream,
    m: &mut handshake::Client<'_>,
    cfg: &ClientConfig,
    server: SocketAddr,
) -> Result<ClientOutcome> {
    let t = Some(cfg.connect_timeout);
    net::set_timeouts(s, t).map_err(|e| Error::io(Phase::Hello, None, e))?;
    let mut buf = handshake::Buf::new();
    let mut mark = Instant::now();
    let mut in_auth = false;
    let mut auth_sends = 0;
    loop {
        let (n, phase, send) = match m.poll().map_err(|e| client_error(e, server))? {
            Step::Done(o) => return Ok(o),
            Step::Need(n, phase) => (n, phase, false),
            Step::Send(b, phase) => (buf.keep(b), phase, true),
        };
        let method = m.method();
        let auth = phase == Phase::Auth;
        if auth && !in_auth {
            in_auth = true;
            mark = Instant::now();
            if method == AuthMethod::Md5
                && cfg
                    .user
                    .as_ref()
                    .is_some_and(|u| u.len() > md5::USER_FIELD_LEN)
            {
                log::warn!(
                    "user name longer than {} bytes: MD5 carries only the first {}",
                    md5::USER_FIELD_LEN,
                    md5::USER_FIELD_LEN
                );
            }
        }
        let r = if send {
            // The server cannot judge the password before MSG3: a close already there was its
            // deadline passing while we computed (or a refusal of MSG1, when it came at once).
            if auth && auth_sends > 0 && method == AuthMethod::EcSrp5 && authio::closed_already(s) {
                let e = Error::PeerClosed {
                    phase,
                    addr: s.peer_addr().ok(),
                };
                return Err(authio::during(method, e, mark));
            }
            if auth {
                auth_sends += 1;
                mark = Instant::now();
            }
            net::write_msg(s, buf.get(n), phase)
        } else {
            net::read_exact(s, buf.get(n), phase).map(|()| {
                m.feed(buf.get(n));
            })
        };
        r.map_err(|e| {
            if auth {
                authio::during(method, e, mark)
            } else {
                e
            }
        })?;
    }
}

/// The error of a handshake machine, in the words the client has always used.
// Out of line, like the machine's steps: see server/handshake.rs `drive` (router image size).
#[inline(never)]
fn client_error(e: ClientError, server: SocketAddr) -> Error {
    let protocol = |phase, detail| Error::Protocol {
        phase,
        addr: Some(server),
        detail,
    };
    let ec = AuthMethod::EcSrp5;
    match e {
        ClientError::Hello(e) => protocol(
            Phase::Hello,
            format!("the server did not send the btest hello: {e}"),
        ),
        ClientError::Reply(phase, e) => protocol(phase, e.to_string()),
        ClientError::Refused => Error::Refused(
            "the server answered 00 00 00 00 (authentication failed) without asking for credentials".into(),
        ),
        ClientError::NoCredentials(m) => authio::auth_err(
            m,
            "the server requires a login: give --user and --password (or set BTEST_PASSWORD)",
        ),
        ClientError::UserTooLong => Error::Usage(format!(
            "--user: EC-SRP5 allows at most {} bytes of user name",
            ec_srp5::MAX_USER_LEN
        )),
        ClientError::Rejected(m) => authio::auth_err(
            m,
            match m {
                AuthMethod::Md5 => "the server rejected the login: check the user and password",
                _ => {
                    "the server rejected the login: check the user and password; RouterOS \
                      6.43+ servers use EC-SRP5"
                }
            },
        ),
        ClientError::Unexpected(r) => protocol(
            Phase::Auth,
            format!("unexpected reply {r:?} after authentication"),
        ),
        ClientError::BadMsg2(e) => authio::auth_err(ec, format!("bad server message: {e}")),
        ClientError::BadMsg4(e) => authio::auth_err(
            ec,
            format!("{e}: check the user and password; RouterOS 6.43+ servers use EC-SRP5"),
        ),
        ClientError::UdpPort(detail) => protocol(Phase::UdpSetup, detail),
    }
}

/// Opens one extra data connection of a multi-connection TCP test.
fn join(cfg: &ClientConfig, server: SocketAddr, token: command::Token) -> Result<TcpStream> {
    let mut s = net::connect(
        server,
        cfg.bind,
        cfg.device.as_deref(),
        cfg.connect_timeout,
        cfg.tos,
        cfg.congestion.as_deref(),
    )
    .map_err(|e| match e {
        Error::Io { source, addr, .. } => Error::Io {
            phase: Phase::Join,
            addr,
            source,
        },
        other => other,
    })?;
    drive(&mut s, &mut handshake::Client::join(token), cfg, server)?;
    // The server sends nothing back on a data connection (reference 8.3); bytes that do
    // arrive are counted as data.
    Ok(s)
}

/// A client test running on its own thread.
pub type Running = (
    Receiver<Sample>,
    std::thread::JoinHandle<Result<ClientResult>>,
);

/// Runs a test on a background thread; returns the sample stream and the join handle.
pub fn spawn(cfg: ClientConfig, stop: Stop) -> Result<Running> {
    spawn_with(cfg, stop, None)
}

/// [`spawn`] to addresses [`resolve`] already gave.
pub fn spawn_to(cfg: ClientConfig, stop: Stop, addrs: Vec<SocketAddr>) -> Result<Running> {
    spawn_with(cfg, stop, Some(addrs))
}

fn spawn_with(cfg: ClientConfig, stop: Stop, addrs: Option<Vec<SocketAddr>>) -> Result<Running> {
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let h = crate::thread::spawn_named("btest-client", None, move || match addrs {
        Some(a) => run_to(&cfg, &a, &stop, Some(tx)),
        None => run(&cfg, &stop, Some(tx)),
    })
    .map_err(|e| Error::Io {
        phase: Phase::Connect,
        addr: None,
        source: e,
    })?;
    Ok((rx, h))
}
