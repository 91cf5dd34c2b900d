//! The UDP sender of one socket (`btest-tx-K`): datagrams paced at their deadlines, sent in
//! batches (GSO or sendmmsg, engine/udpio.rs) of what the pacer says is due, one sequence per
//! destination port.
//!
//! A batch goes to one destination only (the server's multi-port mode sends to each client
//! port in turn), and its datagrams carry consecutive sequence numbers of that destination,
//! written at every stride of the batch buffer. Unlimited and paced sending share the path:
//! unlimited is "a whole batch is always due". With `--pacing precise` a paced sender sends one
//! datagram per deadline.
//!
//! Must not: allocate, lock or log per datagram or batch.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use socket2::SockAddr;

use super::{now_ns, TxCtx, MAX_WAIT};
use crate::config::Pacing;
use crate::engine::pacer::{Due, Pacer, Waiter, Wake};
use crate::engine::udpio::UdpTx;
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::datagram;

pub(super) fn run(
    ctx: &TxCtx<'_>,
    sock: &UdpSocket,
    targets: &[SocketAddr],
    overhead: usize,
    payload: &mut [u8],
) -> Result<()> {
    let len = payload.len();
    let wire = (len + overhead) as u64;
    let precise = ctx.tuning.pacing == Pacing::Precise;
    let mut pacer = Pacer::for_mode(ctx.rate.load(Relaxed), wire as usize, precise);
    let mut io = UdpTx::new(sock, len, ctx.tuning.udp_io, ctx.counters);
    // The batch buffer: the payload template at every stride; only sequences change.
    let mut frame: Vec<u8> = payload.repeat(io.batch_max());
    let dests: Vec<(SocketAddr, SockAddr)> =
        targets.iter().map(|&a| (a, SockAddr::from(a))).collect();
    // One sequence per destination port: each client socket tracks its own loss.
    let mut seqs = vec![1u32; dests.len().max(1)];
    let mut k = 0usize;
    let mut last_send = 0u64;
    let mut waiter = Waiter::default();
    while !ctx.stop.data_over() {
        pacer.set_rate(ctx.rate.load(Relaxed));
        let paced = pacer.rate() > 0;
        let max = if precise && paced { 1 } else { io.batch_max() };
        let now = now_ns(ctx.epoch);
        let n = match pacer.due(now, max) {
            Due::Now(n) => n,
            Due::WaitUntil(t) => {
                // Capped, so a rate change (UDP adaptation) or a stop is seen within 50 ms.
                let deadline = ctx.epoch + Duration::from_nanos(t);
                let cap = std::time::Instant::now() + MAX_WAIT;
                let how = Wake::for_pacer(&pacer, precise);
                waiter.wait_until(deadline.min(cap), how, || ctx.stop.data_over());
                continue;
            }
        };
        // Only the datagrams the send quotas have room for (engine/budget.rs).
        let n = n.min(usize::try_from(ctx.budget.tx_room() / wire).unwrap_or(usize::MAX));
        if n == 0 {
            ctx.stop.trigger(crate::engine::StopReason::Quota);
            return Ok(());
        }
        if paced {
            if last_send > 0 {
                ctx.gaps.record(now - last_send);
            }
            last_send = now;
            ctx.gaps.record_burst(n as u64);
        }
        for (j, d) in frame.chunks_exact_mut(len).take(n).enumerate() {
            datagram::write_seq(d, seqs[k].wrapping_add(j as u32));
        }
        // The pacer counts only what went: a send that fails for a passing reason (full socket
        // buffer, ENOBUFS, a stale ICMP error) is retried, so the time is not lost and the
        // achieved rate stays the asked rate.
        loop {
            if !ctx.take(n as u64 * wire) {
                return Ok(());
            }
            let r = io.send(&frame, n, dests.get(k));
            ctx.budget
                .unsent(n.saturating_sub(*r.as_ref().unwrap_or(&0)) as u64 * wire);
            match r {
                Ok(m) => {
                    ctx.counters.sent_n(m as u64, wire);
                    pacer.commit(m);
                    seqs[k] = seqs[k].wrapping_add(m as u32);
                    k = (k + 1) % seqs.len();
                    break;
                }
                Err(_) if ctx.stop.data_over() => break,
                Err(e) if e.raw_os_error() == Some(crate::sys::ENOBUFS) => std::thread::yield_now(),
                Err(e) if net::is_transient_udp(&e) => {}
                Err(e) => return Err(Error::io(Phase::Data, targets.first().copied(), e)),
            }
        }
    }
    Ok(())
}
