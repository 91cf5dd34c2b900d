//! RX roles: one thread per TCP connection or UDP socket that reads test data, plus the
//! control reader of UDP tests.
//!
//! TCP: count every data byte; on connection 0 also pick the peer's statuses out of the stream
//! (their 12 bytes are not data and are not counted: issue 8, a transmit-only test used to
//! report 24-36 received bytes). UDP: count `payload + overhead` per datagram, track sequence
//! gaps. Control (UDP mode): read 12-byte statuses. An orderly EOF on connection 0 is handed to
//! the status thread as [`PeerMsg::Closed`] (it ends the session in order, with final
//! statuses); a reset ends it at once with `PeerReset`. Nothing on the per-read path allocates,
//! locks or logs; found statuses go to the status thread on a bounded channel (at most a few
//! per second).

use std::io::{self, Read};
use std::net::{IpAddr, TcpStream, UdpSocket};

use crossbeam_channel::Sender;

use super::counters::{Counters, LossTracker};
use super::scan::StatusScanner;
use super::status::PeerMsg;
use super::stop::{Stop, StopReason};
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::{datagram, status, Status};

/// Read buffer for TCP data: large reads keep syscall count low at 10G+.
const TCP_READ: usize = 64 * 1024;
/// Largest UDP datagram.
const UDP_READ: usize = 65536;

/// Reads a TCP data connection. `control` is set on connection 0: statuses found in the
/// stream are forwarded (and not counted as data) and EOF is reported to the status thread.
pub fn run_tcp(
    stop: &Stop,
    counters: &Counters,
    mut s: &TcpStream,
    control: Option<(StatusScanner, &Sender<PeerMsg>)>,
) -> Result<()> {
    let mut buf = vec![0u8; TCP_READ];
    let peer = s.peer_addr().ok();
    let (mut scanner, tx) = match control {
        Some((sc, tx)) => (Some(sc), Some(tx)),
        None => (None, None),
    };
    // Status bytes found but not yet taken off the data count (a status can straddle reads,
    // so the 12 bytes may be more than this read holds).
    let mut status_debt = 0u64;
    while !stop.is_triggered() {
        match s.read(&mut buf) {
            Ok(0) => {
                if let Some(tx) = tx {
                    peer_closed(stop, tx);
                }
                return Ok(());
            }
            Ok(n) => {
                let mut n = n as u64;
                if let (Some(sc), Some(tx)) = (scanner.as_mut(), tx) {
                    sc.feed(&buf[..n as usize], |st| {
                        status_debt += status::LEN as u64;
                        let _ = tx.try_send(PeerMsg::Status(st));
                    });
                    let paid = status_debt.min(n);
                    status_debt -= paid;
                    n -= paid;
                }
                if n > 0 {
                    counters.received(n);
                }
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) => return peer_gone(stop, e, peer, scanner.is_some()),
        }
    }
    Ok(())
}

/// The peer closed connection 0 in order: the status thread ends the session (final interval,
/// final statuses). If it cannot be told, end the session here.
fn peer_closed(stop: &Stop, tx: &Sender<PeerMsg>) {
    if tx.try_send(PeerMsg::Closed).is_err() {
        stop.trigger(StopReason::PeerClosed);
    }
}

fn peer_gone(
    stop: &Stop,
    e: io::Error,
    peer: Option<std::net::SocketAddr>,
    control: bool,
) -> Result<()> {
    use io::ErrorKind::*;
    if stop.is_triggered() || matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) {
        // Once the session drains, a reset is the peer closing with our data unread: noise.
        if control && !stop.data_over() {
            stop.trigger(StopReason::PeerReset);
        }
        return Ok(());
    }
    Err(Error::io(Phase::Data, peer, e))
}

/// Which senders an unconnected server socket accepts: the client's address, ports
/// `first_port .. first_port + ports` (one sequence, and one loss tracker, per port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptFrom {
    /// Client address.
    pub ip: IpAddr,
    /// The client's first UDP port (server port + 256).
    pub first_port: u16,
    /// Number of client ports.
    pub ports: usize,
}

/// Reads UDP test datagrams. `from` filters sources on an unconnected server socket.
pub fn run_udp(
    stop: &Stop,
    counters: &Counters,
    s: &UdpSocket,
    overhead: usize,
    from: Option<AcceptFrom>,
) -> Result<()> {
    let mut buf = vec![0u8; UDP_READ];
    let mut loss = vec![LossTracker::new(); from.map_or(1, |f| f.ports.max(1))];
    let want_ip = from.map(|f| canonical(f.ip));
    while !stop.is_triggered() {
        let r = match from {
            None => s.recv(&mut buf).map(|n| (n, 0)),
            Some(f) => match s.recv_from(&mut buf) {
                Ok((n, src)) if Some(canonical(src.ip())) == want_ip => {
                    match usize::from(src.port().wrapping_sub(f.first_port)) {
                        i if i < loss.len() => Ok((n, i)),
                        _ => continue, // not one of our client's ports: ignore
                    }
                }
                Ok(_) => continue, // not our client: ignore
                Err(e) => Err(e),
            },
        };
        match r {
            Ok((n, i)) => {
                let Some(seq) = datagram::read_seq(&buf[..n]) else {
                    continue; // shorter than the sequence header: a NAT opener, ignore
                };
                counters.received((n + overhead) as u64);
                LossTracker::account(loss[i].on_seq(seq), counters);
            }
            Err(e) if net::is_transient_udp(&e) => {}
            Err(e) => return Err(Error::io(Phase::Data, None, e)),
        }
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Reads the 12-byte statuses of a UDP test from connection 0.
pub fn run_control(stop: &Stop, mut s: &TcpStream, tx: &Sender<PeerMsg>) -> Result<()> {
    let peer = s.peer_addr().ok();
    let mut b = [0u8; status::LEN];
    let mut have = 0;
    while !stop.is_triggered() {
        match s.read(&mut b[have..]) {
            Ok(0) => {
                peer_closed(stop, tx);
                return Ok(());
            }
            Ok(n) => {
                have += n;
                if have == status::LEN {
                    have = 0;
                    let st = Status::parse(&b).map_err(|e| Error::Protocol {
                        phase: Phase::Status,
                        addr: peer,
                        detail: format!("bad status message on the control connection: {e}"),
                    })?;
                    let _ = tx.try_send(PeerMsg::Status(st));
                }
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) => return peer_gone(stop, e, peer, true),
        }
    }
    Ok(())
}
