//! The TCP sender of one connection (`btest-tx-K`): whole chunks, paced, with connection 0's
//! statuses inserted between chunks when this thread is its only writer.
//!
//! Must not: split a chunk for a status (the peer finds statuses at chunk boundaries), or
//! allocate, lock or log per chunk.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;

use crossbeam_channel::Receiver;

use super::{now_ns, wait, TxCtx};
use crate::engine::pacer::{Pace, Pacer};
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::status;

pub(super) fn run(
    ctx: &TxCtx<'_>,
    mut s: &TcpStream,
    statuses: Option<&Receiver<[u8; status::LEN]>>,
    buf: &mut [u8],
) -> Result<()> {
    let mut pacer = Pacer::new(ctx.rate.load(Relaxed), buf.len());
    let peer = s.peer_addr().ok();
    // Bytes of the current chunk already written; statuses only go in at 0.
    let mut off = 0usize;
    let mut last_send = 0u64;
    while !ctx.stop.is_triggered() {
        if off == 0 {
            if let Some(msg) = statuses.and_then(|r| r.try_recv().ok()) {
                write_whole(ctx, &mut s, &msg).map_err(|e| Error::io(Phase::Status, peer, e))?;
            }
            if ctx.stop.data_over() {
                // At a chunk boundary: flush what the status thread queued, then leave.
                while let Some(msg) = statuses.and_then(|r| r.try_recv().ok()) {
                    write_whole(ctx, &mut s, &msg)
                        .map_err(|e| Error::io(Phase::Status, peer, e))?;
                }
                return Ok(());
            }
            pacer.set_rate(ctx.rate.load(Relaxed));
            let now = now_ns(ctx.epoch);
            match pacer.poll(now) {
                Pace::Go => {
                    if pacer.rate() > 0 {
                        if last_send > 0 {
                            ctx.gaps.record(now - last_send);
                        }
                        last_send = now;
                    }
                }
                Pace::WaitUntil(t) => {
                    wait(ctx, t, pacer.window_ns() > 0);
                    continue;
                }
            }
        }
        match s.write(&buf[off..]) {
            Ok(0) => {
                return Err(Error::PeerClosed {
                    phase: Phase::Data,
                    addr: peer,
                })
            }
            Ok(n) => {
                ctx.counters.tx_bytes.fetch_add(n as u64, Relaxed);
                off += n;
                if off == buf.len() {
                    off = 0;
                    ctx.counters.tx_packets.fetch_add(1, Relaxed);
                }
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) => return end_on_peer_error(ctx, e, peer),
        }
    }
    Ok(())
}

/// A write error after the peer went away is the end of a test, not a failure of ours: while
/// the session drains or stops it is expected; before, the peer vanished (reset).
fn end_on_peer_error(ctx: &TxCtx<'_>, e: io::Error, peer: Option<SocketAddr>) -> Result<()> {
    use io::ErrorKind::*;
    if ctx.stop.data_over() {
        return Ok(());
    }
    if matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted) {
        ctx.stop.trigger(crate::engine::StopReason::PeerReset);
        return Ok(());
    }
    Err(Error::io(Phase::Data, peer, e))
}

/// Writes a whole small message, riding out poll timeouts (the chunk before it is complete).
fn write_whole(ctx: &TxCtx<'_>, s: &mut &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        match s.write(b) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => b = &b[n..],
            Err(e) if net::is_timeout(&e) && !ctx.stop.is_triggered() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
