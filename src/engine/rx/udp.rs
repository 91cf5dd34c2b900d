//! The UDP reader of one socket (`btest-rx-K`): counts `payload + overhead` per datagram and
//! tracks each client port's sequence (loss, reorder, duplicates).
//!
//! Must not: allocate, lock or log per datagram.

use std::net::UdpSocket;

use super::{canonical, AcceptFrom};
use crate::engine::counters::{Counters, LossTracker};
use crate::engine::stop::Stop;
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::datagram;

/// Largest UDP datagram.
const UDP_READ: usize = 65536;

/// Reads UDP test datagrams. `from` filters sources on an unconnected server socket.
pub fn run(
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
