//! TX role: one thread per TCP connection or UDP socket that sends test data.
//!
//! Loop: drain or stop? -> (TCP conn 0: pending status, between whole chunks only) -> pacer ->
//! send -> count. On a drain ([`Stop::begin_drain`]) a TCP sender finishes the chunk in hand
//! and writes its queued statuses, so the stream stays framed for the final status; then it
//! returns, which is how the status thread learns that no more data will be sent.
//!
//! The buffer is filled once; per unit only the UDP sequence number changes. Nothing on this
//! path allocates, locks or logs. The target rate is re-read from an atomic the status thread
//! updates (UDP rate adaptation). The loops live in `tcp.rs` and `udp.rs`, one per role.

use crate::atomic::AtomicU64;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::counters::{Counters, GapHistogram};
use super::pacer::sleep_until;
use super::stop::{Stop, StopReason};
use crate::error::Result;
use crate::wire::status;

mod tcp;
mod udp;

/// Longest single wait, so statuses and stops are noticed while a slow pacer waits.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(50);

/// What the TX thread sends on: sockets are borrowed from the session for the thread scope
/// (`&TcpStream` and `&UdpSocket` write as well as a clone would), never `dup()`ed.
pub enum TxSocket<'a> {
    /// A TCP connection; `statuses` is set on connection 0 when this thread is its only writer.
    Tcp {
        /// The connection (this thread is its only writer).
        stream: &'a TcpStream,
        /// Status messages to insert between chunks.
        statuses: Option<Receiver<[u8; status::LEN]>>,
    },
    /// A UDP socket: connected (`targets` empty) or sending to each of `targets` in turn.
    Udp {
        /// The socket.
        socket: &'a UdpSocket,
        /// Destinations for an unconnected socket.
        targets: &'a [SocketAddr],
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
    pub socket: TxSocket<'a>,
    /// Session start, the epoch of the pacer's clock.
    pub epoch: Instant,
    /// Pacing mode and UDP batching.
    pub tuning: crate::config::Tuning,
    /// Byte quotas: a unit's bytes are taken before it is sent.
    pub budget: &'a super::budget::Budget,
}

impl TxCtx<'_> {
    /// Takes `n` bytes about to be sent from the quotas; false (and the session stopped
    /// with [`StopReason::Quota`]) when they would pass one.
    #[inline]
    pub(super) fn take(&self, n: u64) -> bool {
        if self.budget.take_tx(n) {
            return true;
        }
        self.stop.trigger(StopReason::Quota);
        false
    }
}

/// Runs the TX role until stop or a fatal error.
pub fn run(ctx: TxCtx<'_>) -> Result<()> {
    crate::sys::set_min_timer_slack();
    let mut buf = ctx.payload.to_vec();
    match ctx.socket {
        TxSocket::Tcp {
            stream,
            ref statuses,
        } => tcp::run(&ctx, stream, statuses.as_ref(), &mut buf),
        TxSocket::Udp {
            socket,
            targets,
            overhead,
        } => udp::run(&ctx, socket, targets, overhead, &mut buf),
    }
}

pub(super) fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

pub(super) fn wait(ctx: &TxCtx<'_>, until_ns: u64, bursty: bool) {
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
