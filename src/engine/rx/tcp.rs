//! The TCP reader of one connection (`btest-rx-K`): counts data bytes; on connection 0 it also
//! picks the peer's statuses out of the stream (their bytes are not data) and reports EOF.
//!
//! Connection 0 copies what it reads (the scanner must see the bytes). Connections 1..N-1
//! carry data only, so their bytes are discarded in the kernel (`recv(MSG_TRUNC)`,
//! [`crate::sys::tcp::recv_discard`]) and never copied to user space. At 4 loopback streams on
//! 2 cores that took 54-58 Gbit/s (copying 64 KiB reads) to 83 (discarding up to 1 MiB per
//! call), medians of 3 (issue 9, docs/bench.md).
//!
//! Must not: allocate, lock or log per read.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crossbeam_channel::Sender;

use super::{peer_closed, peer_gone};
use crate::engine::budget::Budget;
use crate::engine::counters::Counters;
use crate::engine::scan::{LeadingOk, StatusScanner, OK};
use crate::engine::status::PeerMsg;
use crate::engine::stop::{Stop, StopReason};
use crate::error::Result;
use crate::net;
use crate::wire::status;

/// Read buffer of connection 0, whose bytes are copied and scanned. Larger copying reads were
/// slower for one loopback stream: 28.6 Gbit/s with 64 KiB, 26.1 with 256 KiB, 26.3 with
/// 1 MiB (medians of 3, issue 9).
const TCP_READ: usize = 64 * 1024;

/// Largest discard per call on data-only connections. The kernel writes none of it, so its
/// size costs address space, not memory (the zeroed allocation stays untouched pages); one
/// call takes everything queued up to this. 1 MiB gave 83 Gbit/s at 4 streams where 64 KiB
/// discards gave 70-73 (issue 9).
const DISCARD_READ: usize = 1 << 20;

/// Reads a TCP data connection. `control` is set on connection 0: statuses found in the
/// stream are forwarded (and not counted as data) and EOF is reported to the status thread.
/// `limit_bps` > 0 caps this connection's reading (and so, through flow control, the peer's
/// sending) at that many bit/s.
pub fn run(
    stop: &Stop,
    counters: &Counters,
    s: &TcpStream,
    control: Option<(StatusScanner, &Sender<PeerMsg>)>,
    limit_bps: u64,
    budget: &Budget,
    got: &AtomicBool,
) -> Result<()> {
    let mut limit = ReadLimit::new(limit_bps);
    let mut reads = Reads {
        stop,
        budget,
        got,
        seen: false,
    };
    match control {
        Some((scanner, tx)) => run_control(counters, s, scanner, tx, &mut limit, &mut reads),
        None => run_data(counters, s, &mut limit, &mut reads),
    }
}

/// What a read is charged to beyond the counters: the byte quotas (engine/budget.rs), and
/// whether the connection carried data at all (issue 19: the summary counts the connections
/// that really ran; one a server refused after the join carries none).
struct Reads<'a> {
    stop: &'a Stop,
    budget: &'a Budget,
    got: &'a AtomicBool,
    seen: bool,
}

impl Reads<'_> {
    /// How much the next read may take under the byte quotas; `None` (and the session
    /// stopped) when a receive quota is used up.
    #[inline]
    fn room(&self, len: usize) -> Option<usize> {
        let r = self.budget.rx_room(len);
        if r.is_none() {
            self.stop.trigger(StopReason::Quota);
        }
        r
    }

    /// `n` data bytes were read: taken from the quotas; false (and the session stopped) when
    /// one ran out.
    #[inline]
    fn data(&mut self, n: u64) -> bool {
        if !self.seen {
            self.seen = true;
            self.got.store(true, Relaxed);
        }
        if self.budget.take_rx(n) {
            return true;
        }
        self.stop.trigger(StopReason::Quota);
        false
    }
}

/// Reading no faster than a rate: after each read, sleep until the bytes read so far are due.
/// Sleeps are at most [`ReadLimit::MAX_SLEEP`] so a stop is still seen promptly; a limited read
/// takes at most [`ReadLimit::MAX_READ`] at a time so one read cannot run far ahead.
struct ReadLimit {
    bytes_per_sec: f64,
    start: std::time::Instant,
    done: u64,
}

impl ReadLimit {
    const MAX_SLEEP: std::time::Duration = std::time::Duration::from_millis(50);
    const MAX_READ: usize = 16 * 1024;

    fn new(bps: u64) -> Self {
        ReadLimit {
            bytes_per_sec: bps as f64 / 8.0,
            start: std::time::Instant::now(),
            done: 0,
        }
    }

    fn on(&self) -> bool {
        self.bytes_per_sec > 0.0
    }

    /// How much the next read may take out of a buffer of `len`.
    fn read_len(&self, len: usize) -> usize {
        if self.on() {
            len.min(Self::MAX_READ)
        } else {
            len
        }
    }

    /// `n` bytes were read: waits until they are due.
    fn after(&mut self, n: usize, stop: &Stop) {
        if !self.on() {
            return;
        }
        self.done += n as u64;
        let due =
            self.start + std::time::Duration::from_secs_f64(self.done as f64 / self.bytes_per_sec);
        while !stop.is_triggered() {
            let left = due.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Self::MAX_SLEEP));
        }
    }
}

/// Connection 0: copy, scan for statuses, report EOF.
fn run_control(
    counters: &Counters,
    mut s: &TcpStream,
    mut scanner: StatusScanner,
    tx: &Sender<PeerMsg>,
    limit: &mut ReadLimit,
    reads: &mut Reads<'_>,
) -> Result<()> {
    let stop = reads.stop;
    let mut buf = vec![0u8; TCP_READ];
    let len = limit.read_len(TCP_READ);
    let peer = s.peer_addr().ok();
    // Status bytes found but not yet taken off the data count (a status can straddle reads,
    // so the 12 bytes may be more than this read holds).
    let mut status_debt = 0u64;
    let mut lead = LeadingOk::default();
    while !stop.is_triggered() {
        let Some(len) = reads.room(len) else {
            break;
        };
        match s.read(&mut buf[..len]) {
            Ok(0) => {
                peer_closed(stop, tx);
                return Ok(());
            }
            Ok(n) => {
                limit.after(n, stop);
                let mut found = |st| {
                    status_debt += status::LEN as u64;
                    let _ = tx.try_send(PeerMsg::Status(st));
                };
                // A stray duplicate OK first is not data (scan.rs LeadingOk).
                let (skip, back) = lead.feed(&buf[..n]);
                if back > 0 {
                    scanner.feed(&OK[..back], &mut found);
                }
                scanner.feed(&buf[skip..n], &mut found);
                let mut n = (n - skip + back) as u64;
                let paid = status_debt.min(n);
                status_debt -= paid;
                n -= paid;
                if n > 0 {
                    counters.received(n);
                    if !reads.data(n) {
                        break;
                    }
                }
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) => return peer_gone(stop, e, peer, true),
        }
    }
    Ok(())
}

/// Connections 1..N-1: count and discard in the kernel.
fn run_data(
    counters: &Counters,
    mut s: &TcpStream,
    limit: &mut ReadLimit,
    reads: &mut Reads<'_>,
) -> Result<()> {
    let stop = reads.stop;
    let mut buf = vec![0u8; DISCARD_READ];
    let len = limit.read_len(DISCARD_READ);
    let peer = s.peer_addr().ok();
    let mut discard = true;
    while !stop.is_triggered() {
        let Some(len) = reads.room(len) else {
            break;
        };
        let r = if discard {
            crate::sys::tcp::recv_discard(s, &mut buf[..len])
        } else {
            s.read(&mut buf[..len.min(TCP_READ)])
        };
        match r {
            // EOF on a data connection: the peer is done with it; connection 0 ends the session.
            Ok(0) => return Ok(()),
            Ok(n) => {
                counters.received(n as u64);
                if !reads.data(n as u64) {
                    break;
                }
                limit.after(n, stop);
            }
            Err(e) if net::is_timeout(&e) => {}
            Err(e) if discard && refused_flag(&e) => {
                // Not seen on Linux (tcp(7): supported since 2.4); kept so an odd kernel or
                // sandbox costs a copy, not the test. Once per connection, not per read.
                log::debug!("recv(MSG_TRUNC) refused ({e}); copying instead");
                discard = false;
            }
            Err(e) => return peer_gone(stop, e, peer, false),
        }
    }
    Ok(())
}

/// The kernel rejected the flag itself rather than the read.
fn refused_flag(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}
