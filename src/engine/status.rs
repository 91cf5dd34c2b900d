//! Status role: the session's clock. One thread per session.
//!
//! Each tick it takes the counters' deltas, emits a [`Sample`] per report interval, sends our
//! 12-byte status once a second (bytes *received* in that second, machine CPU), takes in the
//! peer's statuses (remote CPU, what the peer received, UDP rate feedback), and ends the session
//! on duration, the peer's close, `--max-duration`, control silence, a signal or server
//! shutdown.
//!
//! An orderly end (our duration ran out, or the peer closed connection 0 in order) goes through
//! a drain, so the last, usually partial, interval is measured and reported on both sides
//! (issue 8: a 3 s test used to print 2 intervals and send 2 statuses):
//!
//! ```text
//! duration over / peer EOF
//!   -> begin_drain: TX roles finish the unit in hand and return
//!   -> final take of the counters (the data phase ends here: summary = sum of intervals)
//!   -> final status (written directly: no TX thread owns connection 0 any more)
//!   -> client only: FIN on every TCP connection, then wait (at most one status period) for
//!      the peer's final status and close, so remote_rx_bytes covers the whole test
//!   -> final interval sample, then the stop
//! ```
//!
//! Must not: touch data sockets other than writing statuses to connection 0 when no TX thread
//! owns its write side, and the end-of-test FIN.

use crate::atomic::AtomicU64;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};

use super::counters::{gap_quantile, Counters, GapHistogram, Snapshot};
use super::cpu::CpuMeter;
use super::stop::{Stop, StopReason};
use super::{Sample, SenderAudit, StatusTotals};
use crate::error::{Error, Phase, Result};
use crate::wire::{status, Status};

/// Statuses go out once a second: RouterOS' cadence (docs/protocol.md, "Status messages").
pub const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// The housekeeping tick never exceeds this, so stops and deadlines are noticed promptly.
const MAX_TICK: Duration = Duration::from_millis(100);
/// Unlimited UDP: the sender's rate becomes this factor times what the peer reported received
/// (the open implementations' rule; RouterOS documents ">= 110 %").
pub const UDP_FEEDBACK_NUM: u64 = 3;
/// Denominator of the feedback factor (3/2 = 1.5x).
pub const UDP_FEEDBACK_DEN: u64 = 2;
/// How long a drain waits for the TX roles to finish the unit in hand. A TCP chunk normally
/// completes in microseconds; a peer that stopped reading can hold it for ever.
const TX_DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// After our FIN, how long past one status period we wait for the peer's final status: a
/// status is due within one period, plus scheduling slack on a loaded peer.
const FINAL_STATUS_SLACK: Duration = Duration::from_millis(250);
/// After our FIN, once a peer status has come in, how much longer we wait for the peer's close.
const AFTER_PEER_STATUS: Duration = Duration::from_millis(200);
/// A gap this long between two ticks (which come at least every [`MAX_TICK`]) means this
/// process did not run: stopped (SIGSTOP, a paused VM) or starved of CPU. That time is not the
/// peer's silence, and it is logged, because a peer may well have ended the test meanwhile.
const STALL: Duration = Duration::from_secs(1);
/// How long a started 12-byte status write may take to complete before the stream is given up
/// as unusable (a half-written status would put the peer's framing out of step).
const STATUS_WRITE_LIMIT: Duration = Duration::from_secs(2);

/// What the RX side of connection 0 tells the status thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMsg {
    /// A status from the peer.
    Status(Status),
    /// The peer closed connection 0 in order (EOF).
    Closed,
}

/// The rate each of `n_tx` senders should aim at when the peer reported receiving `bytes` in
/// its last second (unlimited UDP): 1.5x what got through, shared equally, never 0.
pub fn udp_feedback(bytes: u32, n_tx: u64) -> u64 {
    let bps = u64::from(bytes) * 8 * UDP_FEEDBACK_NUM / UDP_FEEDBACK_DEN;
    (bps / n_tx.max(1)).max(1)
}

/// When reports and statuses are due: on fixed grids from the session start (a late tick
/// skips the missed slots instead of firing them back to back). Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    epoch: Instant,
    interval: Duration,
    next_report: Instant,
    next_status: Instant,
}

impl Schedule {
    /// Reports every `interval`, statuses every [`STATUS_PERIOD`], from `epoch`.
    pub fn new(epoch: Instant, interval: Duration) -> Schedule {
        Schedule {
            epoch,
            interval,
            next_report: epoch + interval,
            next_status: epoch + STATUS_PERIOD,
        }
    }

    /// (report due, status due) at `now`.
    pub fn due(&self, now: Instant) -> (bool, bool) {
        (now >= self.next_report, now >= self.next_status)
    }

    /// A report went out at `now`: the next is the first grid point after it.
    pub fn reported(&mut self, now: Instant) {
        self.next_report = next_on_grid(self.epoch, self.interval, now);
    }

    /// A status went out at `now`.
    pub fn status_sent(&mut self, now: Instant) {
        self.next_status = next_on_grid(self.epoch, STATUS_PERIOD, now);
    }
}

/// The first point of the grid `epoch + k * step` (k >= 1) strictly after `now`.
fn next_on_grid(epoch: Instant, step: Duration, now: Instant) -> Instant {
    let step_ns = step.as_nanos().max(1);
    let k = (now.saturating_duration_since(epoch).as_nanos() / step_ns + 1) as u32;
    epoch + step * k
}

/// Per-interval measurements that need a syscall or a /proc read (client reports only).
pub struct Probes<'a> {
    /// The TCP data connections, for TCP_INFO.
    pub tcp: &'a [&'a TcpStream],
    /// One per receiving UDP socket, with the counters of its reader; `None` where the socket
    /// was not found in /proc/net/udp.
    pub udp_drops: Vec<(Option<super::udpdrops::UdpDrops>, &'a Counters)>,
    /// Per-thread CPU.
    pub threads: super::threadcpu::ThreadCpu,
    /// The session's role slots, whose recorded thread ids `threads` samples.
    pub roles: &'a [super::roles::RoleSlot],
}

impl Probes<'_> {
    fn host_drops(&mut self) -> Option<u64> {
        if self.udp_drops.is_empty() || self.udp_drops.iter().any(|d| d.0.is_none()) {
            return None;
        }
        Some(
            self.udp_drops
                .iter_mut()
                .filter_map(|(d, c)| Some(d.as_mut()?.delta_datagrams(c)))
                .sum(),
        )
    }

    fn tcp(&self, last_retrans: &mut u64) -> Option<super::TcpSample> {
        if self.tcp.is_empty() {
            return None;
        }
        let per: Vec<_> = self
            .tcp
            .iter()
            .filter_map(|s| super::tcpinfo::read(s))
            .collect();
        let total = super::tcpinfo::aggregate(&per);
        let now = u64::from(total.retransmits_total);
        let retransmits = now.saturating_sub(*last_retrans);
        *last_retrans = now;
        Some(super::TcpSample {
            per_connection: per,
            total,
            retransmits,
        })
    }
}

/// Where our statuses go.
pub struct StatusSink<'a> {
    /// Connection 0, written directly when no TX thread owns its write side.
    pub stream: &'a TcpStream,
    /// Set when connection 0's TX thread is its writer: statuses are handed to it and it
    /// inserts them between chunks.
    pub via_tx: Option<Sender<[u8; status::LEN]>>,
}

/// Everything the status thread needs.
pub struct StatusCtx<'a> {
    /// Measurements for reports (client only).
    pub probes: Option<Probes<'a>>,
    /// Session stop.
    pub stop: &'a Stop,
    /// Server-wide stop, if any.
    pub parent: Option<&'a Stop>,
    /// Every role's counters (slot `i` of the role table counts into `counters[i]`).
    pub counters: &'a [Counters],
    /// The counter slot of each sender: sender `k` has `rates[k]`, `gaps[k]` and
    /// `counters[senders[k]]` (from the role table, not from slot order).
    pub senders: &'a [usize],
    /// The peer's statuses and close, from the RX side of connection 0.
    pub remote: Receiver<PeerMsg>,
    /// Disconnected once every TX thread has returned.
    pub tx_gone: Receiver<()>,
    /// Our statuses' destination.
    pub sink: StatusSink<'a>,
    /// Connections that get a FIN when our duration ends (client): every TCP connection, or
    /// the control connection of a UDP test.
    pub fin: &'a [&'a TcpStream],
    /// Per-sender rate targets.
    pub rates: &'a [AtomicU64],
    /// Per-TX-thread inter-send gaps.
    pub gaps: &'a [GapHistogram],
    /// Adapt `rates` to the peer's reports (UDP with an unlimited rate).
    pub adaptive: bool,
    /// Report samples, if anyone listens.
    pub samples: Option<Sender<Sample>>,
    /// Report cadence.
    pub interval: Duration,
    /// Test length.
    pub duration: Option<Duration>,
    /// Session cap.
    pub max_duration: Option<Duration>,
    /// Silence limit.
    pub control_timeout: Duration,
    /// TCP: the connections whose acknowledged bytes count as a sign of life while the peer
    /// sends no status (empty for UDP).
    pub acked: &'a [&'a TcpStream],
    /// Live byte deltas go here.
    pub on_bytes: Option<super::ByteSink>,
    /// Session start.
    pub epoch: Instant,
}

/// How often, at most, a silent peer's acknowledgements are looked up (a getsockopt per
/// connection).
const ACKED_CHECK: Duration = Duration::from_millis(500);

/// Bytes the peer acknowledged over these connections (TCP_INFO `tcpi_bytes_acked`, Linux
/// 4.1+); `None` when the kernel does not say.
fn acked_bytes(links: &[&TcpStream]) -> Option<u64> {
    links.iter().try_fold(0u64, |sum, s| {
        super::tcpinfo::bytes_acked(s).map(|a| sum.saturating_add(a))
    })
}

/// How the main loop ended.
enum End {
    /// Our duration ran out: orderly, with FIN and a wait for the peer's final status.
    Duration,
    /// The peer closed connection 0 in order: orderly, final status, no wait.
    PeerClosed,
    /// Ended at once for this reason (signal, cap, silence, a failed status write).
    Abrupt(StopReason),
    /// Someone else triggered the stop.
    Stopped,
}

/// The status thread's running state.
struct State {
    t: StatusTotals,
    /// Counter deltas since the last report.
    report: Snapshot,
    /// Bytes each TX thread sent since the last report.
    per_tx: Vec<u64>,
    /// Bytes received since our last status.
    status_rx: u64,
    /// Bytes sent since our last status (to know when the peer's 32-bit field cannot carry it).
    status_tx: u64,
    /// What the peer's statuses reported since the last report.
    remote_rx: u64,
    remote_statuses: u64,
    last_report: Instant,
    schedule: Schedule,
    last_heard: Instant,
    /// The peer's acknowledged bytes over our TCP connections, at the last look.
    acked: u64,
    /// When [`State::tick`] last started, to notice that this process did not run
    /// ([`STALL`]); a slow status write gives up after 100 ms, well under that.
    last_tick: Instant,
    seq: u32,
    cpu: CpuMeter,
    local_cpu: Option<u8>,
    remote_cpu: Option<u8>,
    cpu_sum: u64,
    remote_cpu_sum: u64,
    last_retrans: u64,
    host_drops_total: Option<u64>,
    /// The host-drop estimate before any cap (see `host_share`).
    host_est_total: u64,
    tcp_retrans_total: u64,
    gap_buf: Vec<u64>,
}

impl State {
    fn new(ctx: &StatusCtx<'_>) -> State {
        State {
            t: StatusTotals::default(),
            report: Snapshot::default(),
            per_tx: vec![0; ctx.rates.len()],
            status_rx: 0,
            status_tx: 0,
            remote_rx: 0,
            remote_statuses: 0,
            last_report: ctx.epoch,
            schedule: Schedule::new(ctx.epoch, ctx.interval),
            last_heard: ctx.epoch,
            acked: 0,
            last_tick: ctx.epoch,
            seq: 0,
            cpu: CpuMeter::new(),
            local_cpu: None,
            remote_cpu: None,
            cpu_sum: 0,
            remote_cpu_sum: 0,
            last_retrans: 0,
            host_drops_total: ctx.probes.as_ref().map(|_| 0),
            host_est_total: 0,
            tcp_retrans_total: 0,
            gap_buf: GapHistogram::buffer(),
        }
    }

    /// Takes every counter's delta into the interval, status and session sums.
    fn take(&mut self, ctx: &StatusCtx<'_>, now: Instant) {
        let mut d = Snapshot::default();
        for (i, c) in ctx.counters.iter().enumerate() {
            let x = c.take();
            if let Some(k) = ctx.senders.iter().position(|&s| s == i) {
                self.per_tx[k] += x.tx_bytes;
            }
            d += x;
        }
        // What we send is a sign of life only while the peer takes it: its kernel acks it
        // (TCP_INFO bytes_acked grows), which stops once a peer that does not read has
        // filled its receive window. A successful send is not: it only fills our own send
        // buffer (issue 18: a peer that never read held its session as long as sends
        // succeeded). It counts only until the peer has sent a status: a RouterOS client may
        // never send them on TCP (docs/protocol.md 14.13 q3); one that does, and falls
        // silent, is silent (decision 14.15).
        if d.rx_bytes > 0 {
            self.last_heard = now;
        } else if !ctx.acked.is_empty()
            && self.t.statuses_received == 0
            && d.tx_bytes > 0
            && now.saturating_duration_since(self.last_heard) >= ACKED_CHECK
        {
            match acked_bytes(ctx.acked) {
                Some(a) if a > self.acked => {
                    self.acked = a;
                    self.last_heard = now;
                }
                Some(_) => {}
                // No TCP_INFO: a successful send is the best sign there is.
                None => self.last_heard = now,
            }
        }
        self.report += d;
        self.t.totals += d;
        self.status_rx += d.rx_bytes;
        self.status_tx += d.tx_bytes;
        if let Some(f) = &ctx.on_bytes {
            f(&super::Take {
                tx_bytes: d.tx_bytes,
                rx_bytes: d.rx_bytes,
                rx_packets: d.rx_packets,
                lost: d.lost,
                local_cpu: self.local_cpu,
                remote_cpu: self.remote_cpu,
                // One getsockopt a take, on the status thread (ctx.acked is empty for UDP).
                rtt_us: ctx
                    .acked
                    .first()
                    .and_then(|s| super::tcpinfo::read(s))
                    .map(|t| t.rtt_us)
                    .filter(|&r| r > 0),
            });
        }
    }

    fn on_peer_status(&mut self, ctx: &StatusCtx<'_>, st: Status) {
        self.last_heard = Instant::now();
        self.t.statuses_received += 1;
        self.remote_rx += u64::from(st.bytes_received);
        self.remote_statuses += 1;
        self.t.remote_rx_bytes += u64::from(st.bytes_received);
        if st.bytes_received == u32::MAX {
            self.t.remote_rx_saturated += 1;
        }
        if let Some(c) = st.cpu {
            self.remote_cpu = Some(c);
            self.remote_cpu_sum += u64::from(c);
            self.t.remote_cpu_samples += 1;
        }
        if ctx.adaptive && st.bytes_received > 0 {
            let per = udp_feedback(st.bytes_received, ctx.rates.len() as u64);
            for r in ctx.rates {
                r.store(per, Relaxed);
            }
        }
    }

    /// Builds and sends our status (bytes received since the last one). `direct`: write to
    /// connection 0 ourselves even if a TX thread used to own it (it has returned).
    fn send_status(&mut self, ctx: &StatusCtx<'_>, direct: bool) -> std::io::Result<()> {
        let c = self.cpu.sample();
        self.local_cpu = Some(c);
        self.cpu_sum += u64::from(c);
        self.t.local_cpu_samples += 1;
        self.t.tx_peak_status_bytes = self.t.tx_peak_status_bytes.max(self.status_tx);
        self.status_tx = 0;
        self.seq = self.seq.wrapping_add(1);
        let msg = Status::new(c, self.seq, self.status_rx).to_bytes();
        self.status_rx = 0;
        let sent = match (&ctx.sink.via_tx, direct) {
            // Bounded(4): if the TX thread is stuck in a long write, drop rather than block.
            (Some(tx), false) => tx.try_send(msg).is_ok(),
            _ => write_status(ctx.sink.stream, &msg, ctx.stop)?,
        };
        if sent {
            self.t.statuses_sent += 1;
        }
        Ok(())
    }

    /// Emits the interval that ends at `now` (if anyone listens) and starts the next one.
    fn emit_sample(&mut self, ctx: &mut StatusCtx<'_>, now: Instant) {
        if let Some(tx) = &ctx.samples {
            let dt = now - self.last_report;
            let secs = dt.as_secs_f64();
            let mut senders = Vec::with_capacity(self.per_tx.len());
            for (i, &bytes) in self.per_tx.iter().enumerate() {
                self.gap_buf.fill(0);
                if let Some(g) = ctx.gaps.get(i) {
                    g.drain_into(&mut self.gap_buf);
                }
                let us = |q| gap_quantile(&self.gap_buf, q).map(|ns| ns as f64 / 1000.0);
                let bursts = ctx.gaps.get(i).and_then(GapHistogram::take_bursts);
                senders.push(SenderAudit {
                    thread: i,
                    target_bps: ctx.rates[i].load(Relaxed),
                    achieved_bps: if secs > 0.0 {
                        bytes as f64 * 8.0 / secs
                    } else {
                        0.0
                    },
                    gap_p50_us: us(0.5),
                    gap_p99_us: us(0.99),
                    burst_avg: bursts.map(|b| b.0),
                    burst_max: bursts.map(|b| b.1),
                });
            }
            let (host_drops, tcp, role_cpu) = match ctx.probes.as_mut() {
                Some(p) => self.probe(p),
                None => (None, None, super::RoleCpu::default()),
            };
            let s = Sample {
                host_drops,
                tcp,
                role_cpu,
                elapsed: now - ctx.epoch,
                dt,
                delta: self.report,
                remote_rx_bytes: self.remote_rx,
                remote_statuses: self.remote_statuses,
                local_cpu: self.local_cpu,
                remote_cpu: self.remote_cpu,
                tx_target_bps: ctx.rates.iter().map(|r| r.load(Relaxed)).sum(),
                senders,
            };
            // Bounded(1024) and drained by the reporter every 100 ms: never full in practice.
            let _ = tx.try_send(s);
        }
        self.report = Snapshot::default();
        self.per_tx.iter_mut().for_each(|p| *p = 0);
        self.remote_rx = 0;
        self.remote_statuses = 0;
        self.last_report = now;
        self.schedule.reported(now);
    }

    /// This interval's host drops from `est` more estimated (udpdrops.rs): the running
    /// estimate capped by the running loss, less what earlier intervals showed. Capped, because
    /// the GRO scale is an estimate; running, because a drop and the gap it makes can fall in
    /// neighbouring intervals (the gap shows when the next datagram is read, after the full
    /// buffer drained): a per-interval cap lost up to 5.7 % of the drops that way.
    fn host_share(&mut self, est: u64) -> u64 {
        self.host_est_total += est;
        let lost = (self.t.totals.lost as i64).max(0) as u64;
        self.host_est_total
            .min(lost)
            .saturating_sub(self.host_drops_total.unwrap_or(0))
    }

    fn probe(
        &mut self,
        p: &mut Probes<'_>,
    ) -> (Option<u64>, Option<super::TcpSample>, super::RoleCpu) {
        use super::threadcpu;
        let loads = p.threads.sample(p.roles);
        let role = super::RoleCpu::from_loads(&loads);
        self.t.role_cpu_max = self.t.role_cpu_max.max(role);
        if let Some(v) = threadcpu::verdict(&loads, threadcpu::DEFAULT_BUSY_THRESHOLD) {
            self.t.verdict.get_or_insert(v);
        }
        let hd = p.host_drops().map(|h| self.host_share(h));
        self.host_drops_total = add_known(self.host_drops_total, hd);
        let tcp = p.tcp(&mut self.last_retrans);
        if let Some(ts) = &tcp {
            self.tcp_retrans_total += ts.retransmits;
            self.t.tcp = Some(super::TcpSample {
                retransmits: self.tcp_retrans_total,
                ..ts.clone()
            });
        }
        (hd, tcp, role)
    }

    /// One housekeeping tick. `Some` ends the session.
    fn tick(&mut self, ctx: &mut StatusCtx<'_>) -> Result<Option<End>> {
        let now = Instant::now();
        let elapsed = now - ctx.epoch;
        self.notice_stall(ctx, now);
        // From the tick's start: a process stopped in the middle of this tick (in a status
        // write, say) shows as a gap at the next one. Taken at the end instead, the gap hid
        // and a SIGSTOPped server blamed its client's silence on resuming (control_timeout).
        self.last_tick = now;
        if crate::sys::signalled() || ctx.parent.is_some_and(|p| p.is_triggered()) {
            return Ok(Some(End::Abrupt(StopReason::Shutdown)));
        }
        if ctx.stop.peer_eof() {
            return Ok(Some(End::PeerClosed));
        }
        if ctx.duration.is_some_and(|d| elapsed >= d) {
            return Ok(Some(End::Duration));
        }
        if ctx.max_duration.is_some_and(|d| elapsed >= d) {
            return Ok(Some(End::Abrupt(StopReason::MaxDuration)));
        }
        let (due_report, due_status) = self.schedule.due(now);
        if due_report || due_status {
            self.take(ctx, now);
        }
        if due_status {
            match self.send_status(ctx, false) {
                Ok(()) => {}
                Err(e) if is_peer_gone(&e) => return Ok(Some(End::Abrupt(StopReason::PeerReset))),
                Err(e) => return Err(Error::io(Phase::Status, peer_of(ctx), e)),
            }
            self.schedule.status_sent(now);
        }
        if due_report {
            self.emit_sample(ctx, now);
        }
        if now - self.last_heard > ctx.control_timeout {
            return Ok(Some(End::Abrupt(StopReason::ControlTimeout)));
        }
        Ok(None)
    }

    /// A long gap since the last tick: we were not running. Says so, and does not count that
    /// time as the peer's silence (on resuming, the peer's close or data is still queued for
    /// the RX side, which may not have run yet; blaming the peer's silence would be wrong).
    fn notice_stall(&mut self, ctx: &StatusCtx<'_>, now: Instant) {
        let gap = now.saturating_duration_since(self.last_tick);
        if gap < STALL {
            return;
        }
        let from = (now - gap)
            .saturating_duration_since(ctx.epoch)
            .as_secs_f64();
        log::warn!(
            "this process did not run for {:.1} s, from {from:.1} s into the test (stopped, \
             e.g. SIGSTOP or a paused VM, or starved of CPU); a peer may have ended the test \
             meanwhile (its control timeout)",
            gap.as_secs_f64()
        );
        self.last_heard = (self.last_heard + gap).min(now);
    }

    /// The orderly end: drain, final take and status, (client) FIN and the peer's answer.
    /// Returns when the data phase ended.
    fn finish_orderly(&mut self, ctx: &mut StatusCtx<'_>, fin_and_wait: bool) -> Instant {
        ctx.stop.begin_drain();
        let tx_done = matches!(
            ctx.tx_gone.recv_timeout(TX_DRAIN_LIMIT),
            Err(RecvTimeoutError::Disconnected)
        );
        let end = Instant::now();
        self.take(ctx, end);
        if tx_done {
            // The peer may already be gone (it closed first): then there is nobody to tell.
            if let Err(e) = self.send_status(ctx, true) {
                log::debug!("final status not sent: {e}");
            }
        } else {
            log::debug!(
                "a sender did not finish its unit within {TX_DRAIN_LIMIT:?}: no final status"
            );
        }
        if fin_and_wait {
            for s in ctx.fin {
                let _ = s.shutdown(Shutdown::Write);
            }
            let mut deadline = Instant::now() + STATUS_PERIOD + FINAL_STATUS_SLACK;
            // Our FIN tells a btest peer the test is over: it reads what is still buffered,
            // sends its final status (what it received since its last one) and closes, so its
            // close is what ends the wait. A periodic status can come first (both sides tick
            // at whole seconds from nearly the same start), so a status only shortens the
            // wait, for a peer that answers a FIN with neither a status nor a close.
            loop {
                select! {
                    recv(ctx.stop.channel()) -> _ => break,
                    recv(ctx.remote) -> msg => match msg {
                        Ok(PeerMsg::Status(st)) => {
                            self.on_peer_status(ctx, st);
                            if ctx.stop.peer_eof() {
                                break; // the close, behind a full channel
                            }
                            deadline = deadline.min(Instant::now() + AFTER_PEER_STATUS);
                        }
                        Ok(PeerMsg::Closed) | Err(_) => break,
                    },
                    recv(crossbeam_channel::at(deadline)) -> _ => break,
                }
            }
        }
        end
    }
}

fn add_known(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    }
}

fn peer_of(ctx: &StatusCtx<'_>) -> Option<std::net::SocketAddr> {
    ctx.sink.stream.peer_addr().ok()
}

/// Runs the status role until stop; returns the session totals.
pub fn run(mut ctx: StatusCtx<'_>) -> Result<StatusTotals> {
    let tick = crossbeam_channel::tick(ctx.interval.min(MAX_TICK));
    // The exact end of the test, not the next tick after it.
    let end_at = match ctx.duration {
        Some(d) => crossbeam_channel::at(ctx.epoch + d),
        None => crossbeam_channel::never(),
    };
    let never = crossbeam_channel::never();
    let mut remote = ctx.remote.clone();
    let mut s = State::new(&ctx);
    let end = loop {
        select! {
            recv(ctx.stop.channel()) -> _ => break End::Stopped,
            recv(end_at) -> _ => break End::Duration,
            recv(remote) -> msg => match msg {
                Ok(PeerMsg::Status(st)) => {
                    s.on_peer_status(&ctx, st);
                    // The close may be behind a full channel (rx/mod.rs peer_closed).
                    if ctx.stop.peer_eof() {
                        break End::PeerClosed;
                    }
                }
                Ok(PeerMsg::Closed) => break End::PeerClosed,
                Err(_) => remote = never.clone(),
            },
            recv(tick) -> _ => {
                let end = s.tick(&mut ctx)?;
                if let Some(end) = end {
                    break end;
                }
            }
        }
    };
    // Resumed after a stop, the RX side may have found the peer's close before any tick ran.
    s.notice_stall(&ctx, Instant::now());
    let data_end = match end {
        End::Duration => {
            let t = s.finish_orderly(&mut ctx, true);
            ctx.stop.trigger(StopReason::Completed);
            t
        }
        End::PeerClosed => {
            let t = s.finish_orderly(&mut ctx, false);
            ctx.stop.trigger(StopReason::PeerClosed);
            t
        }
        End::Abrupt(reason) => {
            ctx.stop.trigger(reason);
            let now = Instant::now();
            s.take(&ctx, now);
            now
        }
        End::Stopped => {
            let now = Instant::now();
            s.take(&ctx, now);
            now
        }
    };
    // The final, usually partial, interval: every byte of the summary is in some interval.
    if data_end > s.last_report {
        s.emit_sample(&mut ctx, data_end);
    }
    if let Some(p) = ctx.probes.as_mut() {
        let last = p.host_drops().map(|h| s.host_share(h));
        s.host_drops_total = add_known(s.host_drops_total, last);
    }
    let mut t = s.t;
    t.elapsed = data_end - ctx.epoch;
    t.host_drops = s.host_drops_total;
    t.local_cpu_avg =
        (t.local_cpu_samples > 0).then(|| s.cpu_sum as f64 / t.local_cpu_samples as f64);
    t.remote_cpu_avg =
        (t.remote_cpu_samples > 0).then(|| s.remote_cpu_sum as f64 / t.remote_cpu_samples as f64);
    Ok(t)
}

fn is_peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
}

/// Writes one 12-byte status on connection 0 (100 ms write timeouts). A status that cannot
/// start (the peer stopped reading: its buffer is full of our data) is skipped, `Ok(false)`;
/// one that has started is finished, because the peer reads statuses as fixed 12-byte frames
/// and a half-written one would put it out of step for the rest of the session.
///
/// Generic over the writer only so the tests can drive each path with a scripted fake (issue
/// 20); the engine calls it with `&TcpStream` alone, so there is one copy in the binary.
fn write_status(mut s: impl Write, msg: &[u8; status::LEN], stop: &Stop) -> std::io::Result<bool> {
    let mut done = 0;
    let give_up = Instant::now() + STATUS_WRITE_LIMIT;
    while done < msg.len() {
        match s.write(&msg[done..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if crate::net::is_timeout(&e) && done == 0 => return Ok(false),
            Err(e) if crate::net::is_timeout(&e) => {
                if stop.is_triggered() || Instant::now() >= give_up {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("a status was left half-written ({done} of 12 bytes)"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_keeps_its_grid_and_skips_missed_slots() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Schedule::new(t0, ms(250));
        assert_eq!(s.due(t0 + ms(249)), (false, false));
        assert_eq!(s.due(t0 + ms(251)), (true, false));
        // a report 30 ms late keeps the grid: the next is at 500 ms, not 530 ms
        s.reported(t0 + ms(280));
        assert_eq!(s.due(t0 + ms(499)), (false, false));
        assert!(s.due(t0 + ms(500)).0);
        // a tick 1.3 s late fires once and skips to the next grid point
        s.reported(t0 + ms(1_800));
        assert!(!s.due(t0 + ms(1_999)).0);
        assert!(s.due(t0 + ms(2_000)).0);
        // statuses: once a second on their own grid
        assert!(s.due(t0 + ms(1_000)).1);
        s.status_sent(t0 + ms(1_040));
        assert!(!s.due(t0 + ms(1_999)).1);
        assert!(s.due(t0 + ms(2_000)).1);
    }

    #[test]
    fn udp_feedback_is_one_and_a_half_times_what_got_through() {
        // 1,000,000 bytes/s received = 8 Mbit/s; the senders aim at 12 Mbit/s together.
        assert_eq!(udp_feedback(1_000_000, 1), 12_000_000);
        assert_eq!(udp_feedback(1_000_000, 4), 3_000_000);
        // Never 0 (a 0 rate means unlimited to the pacer), and a zero divisor is one sender.
        assert_eq!(udp_feedback(0, 1), 1);
        assert_eq!(udp_feedback(1_000, 0), 12_000);
        assert_eq!(udp_feedback(u32::MAX, 1), u64::from(u32::MAX) * 12);
    }

    /// A writer scripted step by step: `Ok(n)` takes up to n bytes, `Err(kind)` fails once;
    /// after the script, every write times out (a peer that stopped reading for good).
    struct Scripted {
        steps: std::collections::VecDeque<std::result::Result<usize, std::io::ErrorKind>>,
        written: Vec<u8>,
        calls: usize,
    }

    impl Scripted {
        fn new(steps: &[std::result::Result<usize, std::io::ErrorKind>]) -> Scripted {
            Scripted {
                steps: steps.iter().copied().collect(),
                written: Vec::new(),
                calls: 0,
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            match self.steps.pop_front() {
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    self.written.extend_from_slice(&buf[..n]);
                    Ok(n)
                }
                Some(Err(k)) => Err(k.into()),
                None => Err(std::io::ErrorKind::WouldBlock.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_started_status_is_finished_and_an_unstarted_one_skipped() {
        use std::io::ErrorKind::{BrokenPipe, TimedOut, WouldBlock};
        let msg = Status::new(5, 1, 42).to_bytes();
        let stop = Stop::new();
        // Unstarted: the first write times out with nothing taken, so the status is skipped
        // (Ok(false)) after that one try, and nothing is retried into a full buffer.
        for kind in [WouldBlock, TimedOut] {
            let mut w = Scripted::new(&[Err(kind)]);
            assert!(!write_status(&mut w, &msg, &stop).unwrap(), "{kind:?}");
            assert_eq!((w.calls, w.written.len()), (1, 0), "{kind:?}");
        }
        // Half-written: 5 bytes go, then the peer's buffer is full for a while; the rest is
        // written once it drains, in order, so the peer's 12-byte framing stays in step.
        let mut w = Scripted::new(&[Ok(5), Err(WouldBlock), Err(TimedOut), Ok(3), Ok(12)]);
        assert!(write_status(&mut w, &msg, &stop).unwrap());
        assert_eq!(w.written, msg);
        assert_eq!(w.calls, 5);
        // Half-written and never drained: with the session stopping, it gives up at once and
        // says how far it got (a skipped status would be Ok(false), a lie here).
        let stopping = Stop::new();
        stopping.trigger(StopReason::Shutdown);
        let mut w = Scripted::new(&[Ok(7)]);
        let e = write_status(&mut w, &msg, &stopping).unwrap_err();
        assert_eq!(e.kind(), TimedOut);
        assert!(
            e.to_string().contains("half-written (7 of 12 bytes)"),
            "{e}"
        );
        assert_eq!(w.written, msg[..7]);
        // A peer that is gone, before or after the first byte, is an error, not a skip.
        for steps in [&[Err(BrokenPipe)][..], &[Ok(4), Err(BrokenPipe)]] {
            let mut w = Scripted::new(steps);
            let e = write_status(&mut w, &msg, &stop).unwrap_err();
            assert_eq!(e.kind(), BrokenPipe, "{steps:?}");
        }
        // A writer that takes nothing without an error would loop for ever: WriteZero.
        let mut w = Scripted::new(&[Ok(2), Ok(0)]);
        let e = write_status(&mut w, &msg, &stop).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    }

    #[test]
    fn a_status_to_a_socket_that_is_not_read_is_skipped_whole() {
        // The real kernel path of the skip: the peer never reads, so both buffers fill; then
        // a status cannot start (EAGAIN with 0 bytes) and is skipped; a status once the peer
        // reads goes through whole.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut srv, _) = l.accept().unwrap();
        let sock = socket2::SockRef::from(&c);
        sock.set_send_buffer_size(4096).unwrap();
        socket2::SockRef::from(&srv)
            .set_recv_buffer_size(4096)
            .unwrap();
        c.set_write_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Stop::new();
        // Fill until a write takes nothing, twice in a row 50 ms apart (nothing drains).
        let chunk = [0u8; 4096];
        let mut filled = 0usize;
        let mut refused = 0;
        while refused < 2 {
            match (&c).write(&chunk) {
                Ok(n) => {
                    filled += n;
                    refused = 0;
                }
                Err(e) if crate::net::is_timeout(&e) => {
                    refused += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("filling: {e}"),
            }
            assert!(filled < 64 << 20, "the buffers never filled");
        }
        let msg = Status::new(5, 1, 42).to_bytes();
        assert!(!write_status(&c, &msg, &stop).unwrap(), "after {filled} B");
        // The peer reads everything: the next status goes through, whole.
        srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = vec![0u8; filled];
        std::io::Read::read_exact(&mut srv, &mut sink).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(write_status(&c, &msg, &stop).unwrap());
        let mut got = [0u8; status::LEN];
        std::io::Read::read_exact(&mut srv, &mut got).unwrap();
        assert_eq!(got, msg);
    }
}
