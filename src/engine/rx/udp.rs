//! The UDP reader of one socket (`btest-rx-K`): receives in batches (GRO or recvmmsg,
//! engine/udpio.rs), counts `payload + overhead` per datagram and tracks each client port's
//! sequence (loss, reorder, duplicates), reading the sequence at every GRO stride.
//!
//! Must not: allocate, lock or log per datagram or batch.

use std::net::UdpSocket;

use super::{canonical, AcceptFrom};
use crate::config::UdpIo;
use crate::engine::budget::Budget;
use crate::engine::counters::{Counters, LossTracker};
use crate::engine::stop::{Stop, StopReason};
use crate::engine::udpio::{for_each_datagram, UdpRx};
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::datagram;

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
    let mut io = UdpRx::new(s, want, counters);
    let mut loss = vec![LossTracker::new(); from.map_or(1, |f| f.ports.max(1))];
    let want_ip = from.map(|f| canonical(f.ip));
    while !stop.is_triggered() {
        let n = match io.recv() {
            Ok(n) => n,
            Err(e) if net::is_transient_udp(&e) => continue,
            Err(e) => return Err(Error::io(Phase::Data, None, e)),
        };
        for m in 0..n {
            let (data, meta) = io.get(m);
            let port = match (from, meta.src) {
                (None, _) => 0,
                (Some(f), Some(src)) if Some(canonical(src.ip())) == want_ip => {
                    match usize::from(src.port().wrapping_sub(f.first_port)) {
                        i if i < loss.len() => i,
                        _ => continue, // not one of our client's ports: ignore
                    }
                }
                _ => continue, // not our client: ignore
            };
            let tracker = &mut loss[port];
            let (mut count, mut bytes) = (0u64, 0u64);
            for_each_datagram(data, &meta, |d, len| {
                // Shorter than the sequence header: a NAT opener, ignored.
                if let Some(seq) = (len >= datagram::SEQ_LEN)
                    .then(|| datagram::read_seq(d))
                    .flatten()
                {
                    count += 1;
                    bytes += (len + overhead) as u64;
                    LossTracker::account(tracker.on_seq(seq), counters);
                }
            });
            if count > 0 {
                counters.received_n(count, bytes);
                if !budget.take_rx(bytes) {
                    // A batch that arrived cannot be refused: the quota is passed by at most
                    // one receive batch of this thread.
                    stop.trigger(StopReason::Quota);
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
