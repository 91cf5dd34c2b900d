//! The UDP sender of one socket (`btest-tx-K`): datagrams paced at their deadlines, one
//! sequence per destination port.
//!
//! Must not: allocate, lock or log per datagram.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;

use super::{now_ns, wait, TxCtx};
use crate::engine::pacer::{Pace, Pacer};
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::datagram;

pub(super) fn run(
    ctx: &TxCtx<'_>,
    sock: &UdpSocket,
    targets: &[SocketAddr],
    overhead: usize,
    buf: &mut [u8],
) -> Result<()> {
    let wire = (buf.len() + overhead) as u64;
    let mut pacer = Pacer::new(ctx.rate.load(Relaxed), wire as usize);
    // One sequence per destination port: each client socket tracks its own loss.
    let mut seqs = vec![1u32; targets.len().max(1)];
    let mut k = 0usize;
    let mut last_send = 0u64;
    while !ctx.stop.data_over() {
        pacer.set_rate(ctx.rate.load(Relaxed));
        let now = now_ns(ctx.epoch);
        if let Pace::WaitUntil(t) = pacer.poll(now) {
            wait(ctx, t, pacer.window_ns() > 0);
            continue;
        }
        if pacer.rate() > 0 {
            if last_send > 0 {
                ctx.gaps.record(now - last_send);
            }
            last_send = now;
        }
        datagram::write_seq(buf, seqs[k]);
        // The pacer already counted this datagram in its schedule: a send that fails for a
        // passing reason (full socket buffer, ENOBUFS, a stale ICMP error) is retried, so the
        // time is not lost and the achieved rate stays the asked rate.
        loop {
            let r = if targets.is_empty() {
                sock.send(buf)
            } else {
                sock.send_to(buf, targets[k])
            };
            match r {
                Ok(_) => {
                    ctx.counters.sent(wire);
                    seqs[k] = seqs[k].wrapping_add(1);
                    k = (k + 1) % seqs.len();
                    break;
                }
                Err(_) if ctx.stop.data_over() => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => std::thread::yield_now(),
                Err(e) if net::is_transient_udp(&e) => {}
                Err(e) => return Err(Error::io(Phase::Data, targets.first().copied(), e)),
            }
        }
    }
    Ok(())
}
