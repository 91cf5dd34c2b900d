//! The UDP reader of one socket (`btest-rx-K`): receives in batches (GRO or recvmmsg,
//! engine/udpio.rs), counts `payload + overhead` per datagram and tracks each client port's
//! sequence (loss, reorder, duplicates), reading the sequence at every GRO stride.
//!
//! Must not: allocate, lock or log per datagram or batch.

use std::net::UdpSocket;

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
        // Datagrams and the sum over them of their buffer's size, for the host-drop scale
        // (counters.rs rx_skbs).
        let (mut skbs, mut skb_dgs) = (0u64, 0u64);
        for m in 0..n {
            let (data, meta) = io.get(m);
            let port = match (from, meta.src) {
                (None, _) => Some(0),
                (Some(f), Some(src)) if Some(canonical(src.ip())) == want_ip => {
                    Some(usize::from(src.port().wrapping_sub(f.first_port)))
                        .filter(|&i| i < loss.len())
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
                skbs += count; // size-biased: each datagram weighs its buffer's size
                skb_dgs += count * count;
                counters.received_n(count, bytes);
                if !budget.take_rx(bytes) {
                    // A batch that arrived cannot be refused: the quota is passed by at most
                    // one receive batch of this thread.
                    stop.trigger(StopReason::Quota);
                    return Ok(());
                }
            }
        }
        if skbs > 0 {
            counters.rx_skbs.fetch_add(skbs, Relaxed);
            counters.rx_skb_datagrams.fetch_add(skb_dgs, Relaxed);
        }
    }
    Ok(())
}
