//! TX role: one thread per TCP connection or UDP socket that sends test data.
//!
//! Loop: drain or stop? -> (TCP conn 0: pending status, between whole chunks only) -> pacer ->
//! send -> count. On a drain ([`Stop::begin_drain`]) a TCP sender finishes the chunk in hand
//! and writes its queued statuses, so the stream stays framed for the final status; then it
//! returns, which is how the status thread learns that no more data will be sent. The buffer is filled once; per unit only the UDP sequence number changes. Nothing on
//! this path allocates, locks or logs. The target rate is re-read from an atomic the status
//! thread updates (UDP rate adaptation).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::counters::{Counters, GapHistogram};
use super::pacer::{sleep_until, Pace, Pacer};
use super::stop::Stop;
use crate::error::{Error, Phase, Result};
use crate::net;
use crate::wire::{datagram, status};

/// Longest single wait, so statuses and stops are noticed while a slow pacer waits.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// What the TX thread sends on.
pub enum TxSocket {
    /// A TCP connection; `statuses` is set on connection 0 when this thread is its only writer.
    Tcp {
        /// The write half (a `try_clone` of the connection).
        stream: TcpStream,
        /// Status messages to insert between chunks.
        statuses: Option<Receiver<[u8; status::LEN]>>,
    },
    /// A UDP socket: connected (`targets` empty) or sending round-robin to `targets`.
    Udp {
        /// The socket.
        socket: UdpSocket,
        /// Destinations for an unconnected socket.
        targets: Vec<SocketAddr>,
        /// IP+UDP header bytes counted per datagram.
        overhead: usize,
    },
}

/// Everything one TX thread needs.
pub struct TxCtx<'a> {
    /// Session stop.
    pub stop: &'a Stop,
    /// This thread's counters.
    pub counters: &'a Counters,
    /// Inter-send gaps of this thread while paced (pacing audit).
    pub gaps: &'a GapHistogram,
    /// Target rate in bit/s for this thread, 0 = unlimited; written by the status thread.
    pub rate: &'a AtomicU64,
    /// The payload template (TCP chunk or UDP payload), already filled.
    pub payload: &'a [u8],
    /// The socket.
    pub socket: TxSocket,
    /// Session start, the epoch of the pacer's clock.
    pub epoch: Instant,
}

/// Runs the TX role until stop or a fatal error.
pub fn run(ctx: TxCtx<'_>) -> Result<()> {
    crate::sys::set_min_timer_slack();
    let mut buf = ctx.payload.to_vec();
    match ctx.socket {
        TxSocket::Tcp {
            ref stream,
            ref statuses,
        } => run_tcp(&ctx, stream, statuses.as_ref(), &mut buf),
        TxSocket::Udp {
            ref socket,
            ref targets,
            overhead,
        } => run_udp(&ctx, socket, targets, overhead, &mut buf),
    }
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn wait(ctx: &TxCtx<'_>, until_ns: u64, bursty: bool) {
    let deadline = ctx.epoch + Duration::from_nanos(until_ns);
    let cap = Instant::now() + MAX_WAIT;
    if bursty {
        // Units go in bursts anyway: a plain sleep is precise enough, and spinning would
        // cost a core at high rates. The absolute schedule absorbs the oversleep.
        let left = deadline.min(cap).saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
    } else {
        sleep_until(deadline.min(cap), || ctx.stop.data_over());
    }
}

fn run_tcp(
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
        ctx.stop.trigger(super::StopReason::PeerReset);
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

fn run_udp(
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
