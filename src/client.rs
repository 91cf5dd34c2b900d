//! The client: connect, hello, command, authentication, extra connections or UDP port pair,
//! then hand the sockets to the engine and stream its samples to the caller.
//!
//! Must not: print (the caller's reporter does) or tune sockets itself (net.rs does).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::auth::AuthMethod;
use crate::config::{ClientConfig, Family};
use crate::engine::{self, Plan, Sample, Stop, StopReason, Summary, UdpLink};
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::{self, command, datagram, Command, Protocol, Reply};

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
}

impl ClientResult {
    /// Did the test end the way a successful test ends?
    pub fn succeeded(&self) -> bool {
        matches!(
            self.summary.end_reason,
            StopReason::Completed | StopReason::Shutdown
        )
    }
}

/// Resolves `host:port`, honouring `-4` / `-6`.
pub fn resolve(cfg: &ClientConfig) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| Error::Io {
            phase: Phase::Connect,
            addr: None,
            source: std::io::Error::new(
                e.kind(),
                format!("cannot resolve server '{}': {e}", cfg.host),
            ),
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
        match net::connect(a, cfg.bind, cfg.connect_timeout, cfg.tos) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::Usage("no address to connect to".into())))
}

fn hello(s: &mut TcpStream, timeout: Duration) -> Result<()> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| Error::io(Phase::Hello, None, e))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| Error::io(Phase::Hello, None, e))?;
    let b = net::read_msg::<4>(s, Phase::Hello)?;
    wire::parse_hello(&b).map_err(|e| Error::Protocol {
        phase: Phase::Hello,
        addr: s.peer_addr().ok(),
        detail: format!("the server did not send the btest hello: {e}"),
    })
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
    let addrs = resolve(cfg)?;
    let mut s = connect_any(cfg, &addrs)?;
    let server = s
        .peer_addr()
        .map_err(|e| Error::io(Phase::Connect, None, e))?;
    hello(&mut s, cfg.connect_timeout)?;
    let cmd = command_for(cfg);
    net::write_msg(&mut s, &cmd.to_bytes(), Phase::Command)?;
    let (reply, auth) = read_reply(&mut s, cfg, server)?;
    let token = match reply {
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
    if !tcp {
        let b = net::read_msg::<2>(&mut s, Phase::UdpSetup)?;
        let port = wire::parse_udp_port(&b).map_err(|e| Error::Protocol {
            phase: Phase::UdpSetup,
            addr: Some(server),
            detail: e.to_string(),
        })?;
        udp_port = Some(port);
        let local_ip = s
            .local_addr()
            .map_err(|e| Error::io(Phase::UdpSetup, None, e))?
            .ip();
        let n = usize::from(cfg.connection_count.max(1));
        for i in 0..n {
            let lport = u32::from(port) + u32::from(wire::UDP_CLIENT_PORT_OFFSET) + i as u32;
            let lport = u16::try_from(lport).map_err(|_| Error::Protocol {
                phase: Phase::UdpSetup,
                addr: Some(server),
                detail: format!(
                    "server UDP port {port} leaves no room for our port {lport} (port + 256)"
                ),
            })?;
            let local = SocketAddr::new(local_ip, lport);
            let sock = net::bind_udp(local, cfg.tos).map_err(|e| Error::Io {
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
    let plan = Plan {
        side: "client",
        protocol: cfg.protocol,
        transmit: cmd.direction.server_rx(),
        receive: cmd.direction.server_tx(),
        control: s,
        extra_tcp: extra,
        udp,
        udp_overhead: datagram::overhead(ipv6),
        tx_rate: cfg.local_tx_speed,
        tx_size: if tcp {
            usize::from(wire::TCP_CHUNK_SIZE)
        } else {
            usize::from(cfg.local_udp_tx_size)
        },
        peer_chunk: usize::from(wire::TCP_CHUNK_SIZE),
        random: cfg.random_data,
        peer_zero: !cfg.random_data,
        interval: cfg.interval,
        duration: cfg.duration,
        max_duration: None,
        control_timeout: Duration::from_secs(10).max(cfg.connect_timeout),
        samples,
        parent: None,
        gauge: None,
        on_bytes: None,
    };
    let summary = engine::run(plan, stop)?;
    Ok(ClientResult {
        summary,
        server,
        auth,
        connections,
        udp_port,
    })
}

/// Reads the server's answer to the command, authenticating if asked.
fn read_reply(
    s: &mut TcpStream,
    cfg: &ClientConfig,
    server: SocketAddr,
) -> Result<(Reply, AuthMethod)> {
    let b = net::read_msg::<4>(s, Phase::Command)?;
    let r = Reply::parse(&b).map_err(|e| Error::Protocol {
        phase: Phase::Command,
        addr: Some(server),
        detail: e.to_string(),
    })?;
    match r {
        Reply::Ok | Reply::OkToken(_) => Ok((r, AuthMethod::None)),
        Reply::Failed => Err(Error::Refused(
            "the server answered 00 00 00 00 (authentication failed) without asking for credentials".into(),
        )),
        Reply::NeedMd5 => Ok((crate::authio::client_md5(s, cfg, server)?, AuthMethod::Md5)),
        Reply::NeedEcSrp5 => Ok((crate::authio::client_ecsrp5(s, cfg, server)?, AuthMethod::EcSrp5)),
    }
}

/// Opens one extra data connection of a multi-connection TCP test.
fn join(cfg: &ClientConfig, server: SocketAddr, token: command::Token) -> Result<TcpStream> {
    let mut s =
        net::connect(server, cfg.bind, cfg.connect_timeout, cfg.tos).map_err(|e| match e {
            Error::Io { source, addr, .. } => Error::Io {
                phase: Phase::Join,
                addr,
                source,
            },
            other => other,
        })?;
    hello(&mut s, cfg.connect_timeout)?;
    net::write_msg(&mut s, &command::marker_to_bytes(token), Phase::Join)?;
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
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let h = std::thread::Builder::new()
        .name("btest-client".into())
        .spawn(move || run(&cfg, &stop, Some(tx)))
        .map_err(|e| Error::Io {
            phase: Phase::Connect,
            addr: None,
            source: e,
        })?;
    Ok((rx, h))
}
