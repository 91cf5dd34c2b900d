//! The UDP reader of one socket (`btest-rx-K`): receives in batches (GRO or recvmmsg,
//! engine/udpio.rs), counts `payload + overhead` per datagram and tracks each client port's
//! sequence (loss, reorder, duplicates), reading the sequence at every GRO stride.
//!
//! A client socket is connected to the server's announced port (decision 14.19). If nothing
//! arrives on it for [`OTHER_PORT_AFTER`] of the data phase, the reader moves to an
//! unconnected sibling on the same port that takes the server's datagrams from any of its
//! ports, and logs the port they come from (issue 19, decision 14.20: "RouterOS may send from
//! another port", seen through NAT).
//!
//! Must not: allocate, lock or log per datagram or batch (the one fallback is logged once).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{canonical, AcceptFrom};
use crate::config::UdpIo;
use crate::engine::budget::Budget;
use crate::engine::counters::{Counters, LossTracker, SeqEvent};
use crate::engine::stop::{Stop, StopReason};
use crate::engine::udpio::{for_each_datagram, UdpRx};
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::datagram;
use std::sync::atomic::Ordering::Relaxed;

/// How long a connected client socket may receive nothing from the server's announced port
/// before datagrams from its other ports are accepted. Long enough for a server that starts
/// sending late (RouterOS starts within a few hundred ms), short enough to leave most of a
/// test measured; the interval it costs shows as such.
pub const OTHER_PORT_AFTER: Duration = Duration::from_millis(1500);

/// Whether a connected client socket should start taking the server's other ports: nothing of
/// ours has arrived yet and the data phase has gone on for [`OTHER_PORT_AFTER`]. Once anything
/// came from the announced port, never. Pure.
pub fn other_port_due(received_any: bool, waited: Duration) -> bool {
    !received_any && waited >= OTHER_PORT_AFTER
}

/// Reads UDP test datagrams. `from` filters sources on an unconnected server socket.
pub fn run(
    stop: &Stop,
    counters: &Counters,
    s: &UdpSocket,
    overhead: usize,
    from: Option<AcceptFrom>,
    want: UdpIo,
    budget: &Budget,
) -> Result<()> {
    // A connected (client) socket may fall back to the server's other ports.
    // Feature `other-port` (left out of the router image for size: Cargo.toml).
    let server = match (from, cfg!(feature = "other-port")) {
        (None, true) => s.peer_addr().ok(),
        _ => None,
    };
    let mut silence_from = server.map(|_| Instant::now());
    let mut sibling = None;
    let mut from = from;
    loop {
        let sock = sibling.as_ref().unwrap_or(s);
        if let Read::Done = read(
            stop,
            counters,
            sock,
            overhead,
            from,
            want,
            budget,
            silence_from,
        )? {
            return Ok(());
        }
        // Silent for OTHER_PORT_AFTER: only a connected socket asked to be told.
        silence_from = None;
        let Some(server) = server else { return Ok(()) };
        match net::bind_udp_sibling(s) {
            Ok(x) => {
                log::info!(
                    "nothing from the server's UDP port {} for 1.5 s: taking its datagrams \
                     from any port of {} (decision 14.20)",
                    server.port(),
                    server.ip()
                );
                sibling = Some(x);
                from = Some(AcceptFrom {
                    ip: server.ip(),
                    first_port: server.port(),
                    ports: 0,
                });
            }
            Err(e) => log::warn!("cannot take the server's other UDP ports: {e}"),
        }
    }
}

/// How a reading loop ended.
enum Read {
    /// The session stopped (or a quota ran out).
    Done,
    /// `silence_from` was given and nothing arrived for [`OTHER_PORT_AFTER`].
    Silent,
}

/// The reading loop. `from` with `ports == 0` takes any port of its address (the fallback).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn read(
    stop: &Stop,
    counters: &Counters,
    s: &UdpSocket,
    overhead: usize,
    from: Option<AcceptFrom>,
    want: UdpIo,
    budget: &Budget,
    silence_from: Option<Instant>,
) -> Result<Read> {
    let mut io = UdpRx::new(s, want, counters);
    let mut loss = vec![LossTracker::new(); from.map_or(1, |f| f.ports.max(1))];
    let want_ip = from.map(|f| canonical(f.ip));
    let mut received_any = false;
    // The fallback logs the first other port it sees, once.
    let mut seen_port = from.filter(|f| f.ports == 0).map(|f| f.first_port);
    while !stop.is_triggered() {
        if let Some(t0) = silence_from {
            if other_port_due(received_any, t0.elapsed()) {
                return Ok(Read::Silent);
            }
        }
        let n = match io.recv() {
            Ok(n) => n,
            Err(e) if net::is_transient_udp(&e) => continue,
            Err(e) => return Err(Error::io(Phase::Data, None, e)),
        };
        // Datagrams and the sum over them of their buffer's size, for the host-drop scale
        // (counters.rs rx_skbs).
        let (mut skbs, mut skb_dgs) = (0u64, 0u64);
        for m in 0..n {
            let (data, meta) = io.get(m);
            let port = match (from, meta.src) {
                (None, _) => Some(0),
                (Some(f), Some(src)) if Some(canonical(src.ip())) == want_ip => {
                    if f.ports == 0 {
                        if seen_port.is_some() {
                            note_port(&mut seen_port, src);
                        }
                        Some(0)
                    } else {
                        Some(usize::from(src.port().wrapping_sub(f.first_port)))
                            .filter(|&i| i < loss.len())
                    }
                }
                _ => None,
            };
            let Some(port) = port else {
                // Not our client, or not one of its ports: foreign, not traffic.
                let mut n = 0;
                for_each_datagram(data, &meta, |_, _| n += 1);
                counters.foreign.fetch_add(n, Relaxed);
                continue;
            };
            let tracker = &mut loss[port];
            let (mut count, mut bytes) = (0u64, 0u64);
            for_each_datagram(data, &meta, |d, len| {
                // Shorter than the sequence header: a NAT opener, not traffic.
                let Some(seq) = (len >= datagram::SEQ_LEN)
                    .then(|| datagram::read_seq(d))
                    .flatten()
                else {
                    counters.foreign.fetch_add(1, Relaxed);
                    return;
                };
                let ev = tracker.on_datagram(seq, len);
                if ev != SeqEvent::Foreign {
                    count += 1;
                    bytes += (len + overhead) as u64;
                }
                LossTracker::account(ev, counters);
            });
            if count > 0 {
                received_any = true;
                skbs += count; // size-biased: each datagram weighs its buffer's size
                skb_dgs += count * count;
                counters.received_n(count, bytes);
                if !budget.take_rx(bytes) {
                    // A batch that arrived cannot be refused: the quota is passed by at most
                    // one receive batch of this thread.
                    stop.trigger(StopReason::Quota);
                    return Ok(Read::Done);
                }
            }
        }
        if skbs > 0 {
            counters.rx_skbs.fetch_add(skbs, Relaxed);
            counters.rx_skb_datagrams.fetch_add(skb_dgs, Relaxed);
        }
    }
    Ok(Read::Done)
}

/// The fallback's first datagram from a port other than the announced one: logged once.
#[cold]
fn note_port(seen: &mut Option<u16>, src: SocketAddr) {
    if let Some(announced) = *seen {
        if src.port() != announced {
            log::info!(
                "the server sends its UDP test data from port {}, not {} as announced",
                src.port(),
                announced
            );
            *seen = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_ports_only_after_silence_from_the_announced_one() {
        let ms = Duration::from_millis;
        assert!(!other_port_due(false, ms(0)));
        assert!(!other_port_due(false, ms(1499)));
        assert!(other_port_due(false, ms(1500)));
        assert!(other_port_due(false, ms(60_000)));
        // anything from the announced port: never
        assert!(!other_port_due(true, ms(1500)));
        assert!(!other_port_due(true, ms(60_000)));
    }
}
