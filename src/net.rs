//! Every socket the crate opens is created and tuned here, through socket2.
//!
//! Owns: listeners (dual-stack `[::]`), TCP connects with a deadline, UDP binds, buffer sizes,
//! TCP_NODELAY, IP_TOS, read/write timeouts, and framed exact reads/writes of control messages
//! with per-phase errors. Must not: know about sessions or the engine.
//!
//! TCP buffers are left to the kernel's autotuning on purpose: setting SO_RCVBUF/SO_SNDBUF on
//! TCP disables it (tcp(7)) and loses throughput on long fat paths.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::error::{Error, Phase, Result};
use crate::sys::AsSock;

/// Read/write timeout of data and control sockets during a test, so blocked calls re-check
/// the Stop flag at least this often.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// UDP socket buffer size asked for (RouterOS uses 128000; large buffers absorb bursts at
/// 1 Gbit/s and above).
pub const UDP_BUFFER: usize = 4 << 20;

/// Opens a listener; `[::]` is made dual-stack so IPv4 clients reach it too.
pub fn listen(addr: SocketAddr) -> Result<TcpListener> {
    listen_on(addr, None)
}

/// [`listen`], bound to a network interface when `device` is given. Accepted connections
/// inherit the binding.
pub fn listen_on(addr: SocketAddr, device: Option<&str>) -> Result<TcpListener> {
    let e = |err| Error::io(Phase::Bind, Some(addr), err);
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(e)?;
    bind_device(&s, device).map_err(Error::Usage)?;
    s.set_reuse_address(true).map_err(e)?;
    if addr.is_ipv6() {
        // Dual-stack only for the unspecified address; a specific v6 address stays v6.
        let v6only = !addr.ip().is_unspecified();
        s.set_only_v6(v6only).map_err(e)?;
    }
    s.bind(&addr.into()).map_err(e)?;
    s.listen(128).map_err(e)?;
    Ok(s.into())
}

/// Connects with a deadline, optionally from a local address, and sets TCP_NODELAY and TOS.
pub fn connect(
    addr: SocketAddr,
    bind: Option<std::net::IpAddr>,
    device: Option<&str>,
    timeout: Duration,
    tos: Option<u8>,
    congestion: Option<&str>,
) -> Result<TcpStream> {
    let e = |err| Error::io(Phase::Connect, Some(addr), err);
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(e)?;
    bind_device(&s, device).map_err(Error::Usage)?;
    set_congestion(&s, congestion).map_err(Error::Usage)?;
    if let Some(ip) = bind {
        s.bind(&SocketAddr::new(ip, 0).into())
            .map_err(|err| Error::io(Phase::Bind, Some(SocketAddr::new(ip, 0)), err))?;
    }
    set_tos(&s, addr.is_ipv6(), tos);
    s.connect_timeout(&addr.into(), timeout).map_err(|err| {
        if err.kind() == io::ErrorKind::WouldBlock || err.kind() == io::ErrorKind::TimedOut {
            Error::Timeout {
                phase: Phase::Connect,
                addr: Some(addr),
                secs: timeout.as_secs_f64(),
            }
        } else {
            e(err)
        }
    })?;
    let stream: TcpStream = s.into();
    tune_control(&stream);
    Ok(stream)
}

/// The kernel's list of congestion controls, for errors and help.
#[cfg(all(feature = "speedtest", target_os = "linux"))]
const AVAILABLE_CC: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";

/// `--congestion NAME` (issue 22): TCP_CONGESTION on a data socket before it connects, so
/// every connection of a test (connection 0 and the joins) uses it. Linux only; an unknown
/// name is an error that lists what the kernel has. Behind the `speedtest` feature: the
/// router image has no `--congestion` (its 1 MiB budget).
#[cfg(all(feature = "speedtest", target_os = "linux"))]
pub fn set_congestion(s: &Socket, name: Option<&str>) -> std::result::Result<(), String> {
    let Some(name) = name else { return Ok(()) };
    s.set_tcp_congestion(name.as_bytes()).map_err(|e| {
        let have = std::fs::read_to_string(AVAILABLE_CC)
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        match e.raw_os_error() {
            Some(libc::ENOENT) => format!(
                "--congestion {name}: the kernel has no such congestion control; available \
                 ({AVAILABLE_CC}): {have} (others need their module: modprobe tcp_{name})"
            ),
            Some(libc::EPERM) => format!(
                "--congestion {name}: not allowed for this user: only those in \
                 net.ipv4.tcp_allowed_congestion_control are without CAP_NET_ADMIN \
                 (available: {have})"
            ),
            _ => format!("--congestion {name}: cannot set TCP_CONGESTION: {e} (available: {have})"),
        }
    })?;
    Ok(())
}

/// Elsewhere `--congestion` is refused (TCP_CONGESTION is Linux's here).
#[cfg(all(feature = "speedtest", not(target_os = "linux")))]
pub fn set_congestion(_: &Socket, name: Option<&str>) -> std::result::Result<(), String> {
    match name {
        None => Ok(()),
        Some(n) => Err(format!(
            "--congestion {n}: choosing the congestion control (TCP_CONGESTION) is supported \
             on Linux only; leave it out"
        )),
    }
}

/// Without the `speedtest` feature there is no `--congestion` to honour.
#[cfg(not(feature = "speedtest"))]
#[inline]
pub fn set_congestion(_: &Socket, _: Option<&str>) -> std::result::Result<(), String> {
    Ok(())
}

/// The congestion control a new TCP socket of ours gets (the kernel's default, or what
/// another program set for the namespace), read back from a fresh socket; `None` off Linux
/// or when unreadable.
#[cfg(all(feature = "speedtest", target_os = "linux"))]
pub fn default_congestion() -> Option<String> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .or_else(|_| Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)))
        .ok()?;
    congestion_of(&socket2::SockRef::from(&s))
}

/// Off Linux: unknown.
#[cfg(all(feature = "speedtest", not(target_os = "linux")))]
pub fn default_congestion() -> Option<String> {
    None
}

/// TCP_CONGESTION read back from a socket.
#[cfg(all(feature = "speedtest", target_os = "linux"))]
pub fn congestion_of(s: &socket2::SockRef<'_>) -> Option<String> {
    let v = s.tcp_congestion().ok()?;
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    let n = String::from_utf8_lossy(&v[..end]).trim().to_string();
    (!n.is_empty()).then_some(n)
}

/// Off Linux: unknown.
#[cfg(all(feature = "speedtest", not(target_os = "linux")))]
pub fn congestion_of(_: &socket2::SockRef<'_>) -> Option<String> {
    None
}

/// TCP_NODELAY: handshake and status messages are tiny and must not wait for Nagle.
pub fn tune_control(s: &TcpStream) {
    if let Err(err) = s.set_nodelay(true) {
        log::debug!("TCP_NODELAY: {err}");
    }
}

/// Applies IP_TOS (IPv4) or IPV6_TCLASS (IPv6); failures are logged, never fatal.
fn set_tos(s: &Socket, ipv6: bool, tos: Option<u8>) {
    let Some(t) = tos else { return };
    let r = if ipv6 {
        crate::sys::set_tclass_v6(s, u32::from(t))
    } else {
        s.set_tos(u32::from(t))
    };
    if let Err(err) = r {
        log::warn!("cannot set TOS {t}: {err}");
    }
}

/// Applies TOS to an existing TCP stream.
pub fn set_stream_tos(s: &TcpStream, tos: Option<u8>) {
    let ipv6 = s.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
    set_tos(&SockRef::from(s), ipv6, tos);
}

/// SO_BUSY_POLL: the kernel spins this many microseconds on the NIC queue in a blocking read
/// instead of sleeping for the interrupt (bare-metal latency; costs CPU). Needs CAP_NET_ADMIN
/// above `net.core.busy_poll`'s limit; a refusal is logged once per socket and ignored.
pub fn set_busy_poll(fd: crate::sys::RawSock, usecs: u32) {
    let v = i32::try_from(usecs).unwrap_or(i32::MAX);
    if let Err(e) = crate::sys::set_busy_poll(fd, v) {
        log::warn!("--busy-poll {usecs}: SO_BUSY_POLL refused ({e}); running without it");
    }
}

/// A connected pair of TCP sockets on loopback (client, accepted server side), for unit tests
/// of the roles and system calls that need a real stream.
#[cfg(test)]
pub fn loopback_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let c = TcpStream::connect(l.local_addr().expect("local addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

/// Sets read and write timeouts on a stream.
pub fn set_timeouts(s: &TcpStream, t: Option<Duration>) -> io::Result<()> {
    s.set_read_timeout(t)?;
    s.set_write_timeout(t)
}

/// SO_BINDTODEVICE: every packet of the socket leaves and is taken from `device` only, so a
/// host with two ports can send a test out of one and receive it on the other (issue 11's
/// through-the-router mode), and a VRF's interface can be named. The error text names the
/// interface and what to try (outside Linux: that the option is Linux's, from sys/).
pub fn bind_device(s: &Socket, device: Option<&str>) -> std::result::Result<(), String> {
    let Some(dev) = device else { return Ok(()) };
    crate::sys::bind_device(s, dev).map_err(|err| {
        let hint = match err.raw_os_error() {
            Some(libc::ENODEV) => "no such interface here (see `ip link`)".to_string(),
            Some(libc::EPERM) => "binding to an interface needs root or CAP_NET_RAW".to_string(),
            Some(libc::EINVAL) => "not a valid interface name".to_string(),
            _ => err.to_string(),
        };
        format!("--device {dev}: cannot bind to the interface: {hint}")
    })
}

/// Binds a UDP socket with large buffers (forced when running as root) and TOS.
pub fn bind_udp(addr: SocketAddr, tos: Option<u8>) -> io::Result<UdpSocket> {
    bind_udp_on(addr, tos, None)
}

/// [`bind_udp`], bound to a network interface when `device` is given.
pub fn bind_udp_on(
    addr: SocketAddr,
    tos: Option<u8>,
    device: Option<&str>,
) -> io::Result<UdpSocket> {
    bind_udp_with(addr, tos, device, false)
}

/// The client's UDP data socket: [`bind_udp_on`] with SO_REUSEPORT, for a socket the caller
/// connects to its server right after.
///
/// Why: the protocol fixes our port at the server's port + 256, and RouterOS servers all
/// start at 2001, so two tests at once to two routers (`btest fleet --parallel`) both need
/// local port 2257; without it the second failed with "Address already in use" (measured,
/// issue 11). With SO_REUSEPORT both bind it, and Linux delivers each datagram to the
/// connected socket whose remote address and port match it (connected UDP sockets win the
/// lookup's score and are kept out of the reuseport hash). Only sockets that set the option
/// too can share the port, so a port another program holds still fails as before.
pub fn bind_udp_shared(
    addr: SocketAddr,
    tos: Option<u8>,
    device: Option<&str>,
) -> io::Result<UdpSocket> {
    bind_udp_with(addr, tos, device, true)
}

/// An unconnected socket on `of`'s local address and device, in its SO_REUSEPORT group: it
/// gets what the connected `of` does not match, i.e. datagrams from other source ports
/// (issue 19: "RouterOS may send from another port"; decision 14.20). Only for a client
/// socket bound with [`bind_udp_shared`].
pub fn bind_udp_sibling(of: &UdpSocket) -> io::Result<UdpSocket> {
    let addr = of.local_addr()?;
    let dev = crate::sys::socket_device(of);
    let dev = dev.as_deref().and_then(|d| std::str::from_utf8(d).ok());
    bind_udp_with(addr, None, dev, true)
}

fn bind_udp_with(
    addr: SocketAddr,
    tos: Option<u8>,
    device: Option<&str>,
    reuse_port: bool,
) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        crate::sys::set_reuse_port(&s)?;
    }
    crate::sys::udp_ignore_port_unreachable(s.raw_sock());
    bind_device(&s, device).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
    if addr.is_ipv6() {
        s.set_only_v6(false).ok();
    }
    for send in [false, true] {
        let forced = crate::sys::force_buffer(s.raw_sock(), send, UDP_BUFFER);
        if !forced {
            let r = if send {
                s.set_send_buffer_size(UDP_BUFFER)
            } else {
                s.set_recv_buffer_size(UDP_BUFFER)
            };
            if let Err(err) = r {
                log::debug!("UDP buffer: {err}");
            }
        }
    }
    set_tos(&s, addr.is_ipv6(), tos);
    s.bind(&addr.into())?;
    let u: UdpSocket = s.into();
    u.set_read_timeout(Some(POLL_TIMEOUT))?;
    u.set_write_timeout(Some(POLL_TIMEOUT))?;
    log::debug!(
        "UDP {} rcvbuf={:?} sndbuf={:?}",
        addr,
        SockRef::from(&u).recv_buffer_size().ok(),
        SockRef::from(&u).send_buffer_size().ok()
    );
    Ok(u)
}

/// Reads exactly `N` bytes of a handshake message; EOF, timeout and I/O errors carry `phase`.
pub fn read_msg<const N: usize>(s: &mut TcpStream, phase: Phase) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    read_exact(s, &mut b, phase)?;
    Ok(b)
}

/// `read_exact` with the phase and peer in the error.
pub fn read_exact(s: &mut TcpStream, b: &mut [u8], phase: Phase) -> Result<()> {
    let peer = s.peer_addr().ok();
    s.read_exact(b).map_err(|e| {
        let t = s.read_timeout().ok().flatten();
        match Error::io(phase, peer, e) {
            Error::Timeout { phase, addr, .. } => Error::Timeout {
                phase,
                addr,
                secs: t.map(|d| d.as_secs_f64()).unwrap_or(0.0),
            },
            other => other,
        }
    })
}

/// Writes a whole handshake message.
pub fn write_msg(s: &mut TcpStream, b: &[u8], phase: Phase) -> Result<()> {
    let peer = s.peer_addr().ok();
    s.write_all(b).map_err(|e| Error::io(phase, peer, e))
}

/// Is this error only a poll timeout (the caller re-checks Stop and retries)?
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Is this a transient UDP error to ignore: ICMP port unreachable reported on a connected
/// socket (the peer has not bound yet), or a full device queue.
pub fn is_transient_udp(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused)
        || e.raw_os_error() == Some(crate::sys::ENOBUFS)
        || is_timeout(e)
}
