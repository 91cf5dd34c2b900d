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

use std::io;
use std::net::IpAddr;

use crossbeam_channel::Sender;

use super::status::PeerMsg;
use super::stop::{Stop, StopReason};
use crate::error::{Error, Phase, Result};

mod control;
mod tcp;
mod udp;

pub use control::run as run_control;
pub use tcp::run as run_tcp;
pub use udp::run as run_udp;

/// The peer closed connection 0 in order: the status thread ends the session (final interval,
/// final statuses) and decides the reason. The flag is set first, so a full channel loses
/// nothing: the status thread checks it after every message it takes and on every tick. The
/// message only wakes it sooner.
pub(super) fn peer_closed(stop: &Stop, tx: &Sender<PeerMsg>) {
    stop.note_peer_eof();
    let _ = tx.try_send(PeerMsg::Closed);
}

pub(super) fn peer_gone(
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

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
