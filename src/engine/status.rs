//! Status role: the session's clock. One thread per session.
//!
//! Each tick it takes the counters' deltas, emits a [`Sample`] per report interval, sends our
//! 12-byte status once a second (bytes *received* in that second, machine CPU), takes in the
//! peer's statuses (remote CPU, what the peer received, UDP rate feedback), and ends the session
//! on duration, `--max-duration`, control silence, a signal or server shutdown.
//!
//! Must not: touch data sockets other than writing statuses to connection 0 when no TX thread
//! owns its write side.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use super::counters::{gap_quantile, take_all, Counters, GapHistogram, Snapshot};
use super::cpu::CpuMeter;
use super::stop::{Stop, StopReason};
use super::{Sample, SenderAudit, StatusTotals};
use crate::error::{Error, Phase, Result};
use crate::wire::{status, Status};

/// Statuses go out once a second: RouterOS' cadence (reference 9.4, 10).
pub const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// The housekeeping tick never exceeds this, so stops and deadlines are noticed promptly.
const MAX_TICK: Duration = Duration::from_millis(100);
/// Unlimited UDP: the sender's rate becomes this factor times what the peer reported received
/// (the open implementations' rule; RouterOS documents ">= 110 %").
pub const UDP_FEEDBACK_NUM: u64 = 3;
/// Denominator of the feedback factor (3/2 = 1.5x).
pub const UDP_FEEDBACK_DEN: u64 = 2;

/// Per-interval measurements that need a syscall or a /proc read (client reports only).
pub struct Probes {
    /// Clones of the TCP data connections, for TCP_INFO.
    pub tcp: Vec<TcpStream>,
    /// One per receiving UDP socket; `None` where the socket was not found in /proc/net/udp.
    pub udp_drops: Vec<Option<super::udpdrops::UdpDrops>>,
    /// Per-thread CPU.
    pub threads: super::threadcpu::ThreadCpu,
}

impl Probes {
    fn host_drops(&mut self) -> Option<u64> {
        if self.udp_drops.is_empty() || self.udp_drops.iter().any(Option::is_none) {
            return None;
        }
        Some(self.udp_drops.iter_mut().flatten().map(|d| d.delta()).sum())
    }

    fn tcp(&self, last_retrans: &mut u64) -> Option<super::TcpSample> {
        if self.tcp.is_empty() {
            return None;
        }
        let per: Vec<_> = self.tcp.iter().filter_map(super::tcpinfo::read).collect();
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
pub enum StatusSink {
    /// Written directly: this thread is the only writer of connection 0.
    Direct(TcpStream),
    /// Handed to connection 0's TX thread, which inserts them between chunks.
    ViaTx(Sender<[u8; status::LEN]>),
}

/// Everything the status thread needs.
pub struct StatusCtx<'a> {
    /// Measurements for reports (client only).
    pub probes: Option<Probes>,
    /// Session stop.
    pub stop: &'a Stop,
    /// Server-wide stop, if any.
    pub parent: Option<&'a Stop>,
    /// Every TX/RX thread's counters.
    pub counters: &'a [Counters],
    /// The peer's statuses, from the RX side of connection 0.
    pub remote: Receiver<Status>,
    /// Our statuses' destination.
    pub sink: StatusSink,
    /// Per-TX-thread rate targets; TX thread `i` counts into `counters[i]`.
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
    /// TCP: a successful send counts as a sign of life (the peer's kernel is acking).
    pub tx_counts_as_life: bool,
    /// Live byte deltas go here.
    pub on_bytes: Option<super::ByteSink>,
    /// Session start.
    pub epoch: Instant,
}

/// Runs the status role until stop; returns the session totals.
pub fn run(mut ctx: StatusCtx<'_>) -> Result<StatusTotals> {
    let tick = crossbeam_channel::tick(ctx.interval.min(MAX_TICK));
    let mut cpu = CpuMeter::new();
    let mut t = StatusTotals::default();
    let mut report_acc = Snapshot::default();
    let mut status_rx_acc: u64 = 0;
    let mut remote_rx_acc: u64 = 0;
    let mut next_report = ctx.epoch + ctx.interval;
    let mut last_report = ctx.epoch;
    let mut next_status = ctx.epoch + STATUS_PERIOD;
    let mut last_heard = ctx.epoch;
    let mut seq: u32 = 0;
    let mut local_cpu: Option<u8> = None;
    let mut remote_cpu: Option<u8> = None;
    let mut cpu_sum = 0u64;
    let mut remote_cpu_sum = 0u64;
    let never = crossbeam_channel::never();
    let mut remote = ctx.remote.clone();
    let n_tx = ctx.rates.len().max(1) as u64;
    let mut per_tx = vec![0u64; ctx.rates.len()];
    let mut probes = ctx.probes.take();
    let mut last_retrans = 0u64;
    let mut host_drops_total: Option<u64> = probes.as_ref().map(|_| 0);
    let mut tcp_retrans_total = 0u64;
    let mut gap_buf = GapHistogram::buffer();
    let peer = match &ctx.sink {
        StatusSink::Direct(s) => s.peer_addr().ok(),
        StatusSink::ViaTx(_) => None,
    };

    loop {
        select! {
            recv(ctx.stop.channel()) -> _ => break,
            recv(remote) -> msg => match msg {
                Ok(st) => {
                    last_heard = Instant::now();
                    t.statuses_received += 1;
                    remote_rx_acc += u64::from(st.bytes_received);
                    t.remote_rx_bytes += u64::from(st.bytes_received);
                    if st.bytes_received == u32::MAX {
                        t.remote_rx_saturated += 1;
                    }
                    if let Some(c) = st.cpu {
                        remote_cpu = Some(c);
                        remote_cpu_sum += u64::from(c);
                        t.remote_cpu_samples += 1;
                    }
                    if ctx.adaptive && st.bytes_received > 0 {
                        let bps = u64::from(st.bytes_received) * 8 * UDP_FEEDBACK_NUM / UDP_FEEDBACK_DEN;
                        for r in ctx.rates {
                            r.store((bps / n_tx).max(1), Relaxed);
                        }
                    }
                }
                Err(_) => remote = never.clone(),
            },
            recv(tick) -> _ => {
                let now = Instant::now();
                let elapsed = now - ctx.epoch;
                if crate::sys::signalled() || ctx.parent.is_some_and(|p| p.is_triggered()) {
                    ctx.stop.trigger(StopReason::Shutdown);
                    break;
                }
                if ctx.duration.is_some_and(|d| elapsed >= d) {
                    ctx.stop.trigger(StopReason::Completed);
                    break;
                }
                if ctx.max_duration.is_some_and(|d| elapsed >= d) {
                    ctx.stop.trigger(StopReason::MaxDuration);
                    break;
                }
                let due_report = now >= next_report;
                let due_status = now >= next_status;
                if due_report || due_status {
                    let mut d = Snapshot::default();
                    for (i, c) in ctx.counters.iter().enumerate() {
                        let x = c.take();
                        if let Some(p) = per_tx.get_mut(i) {
                            *p += x.tx_bytes;
                        }
                        d += x;
                    }
                    if d.rx_bytes > 0 || (ctx.tx_counts_as_life && d.tx_bytes > 0) {
                        last_heard = now;
                    }
                    report_acc += d;
                    t.totals += d;
                    if let Some(f) = &ctx.on_bytes {
                        f(d.tx_bytes, d.rx_bytes);
                    }
                    status_rx_acc += d.rx_bytes;
                }
                if due_status {
                    let c = cpu.sample();
                    local_cpu = Some(c);
                    cpu_sum += u64::from(c);
                    t.local_cpu_samples += 1;
                    seq = seq.wrapping_add(1);
                    let msg = Status::new(c, seq, status_rx_acc).to_bytes();
                    status_rx_acc = 0;
                    match send_status(&mut ctx.sink, &msg) {
                        Ok(()) => t.statuses_sent += 1,
                        Err(e) if is_peer_gone(&e) => {
                            ctx.stop.trigger(StopReason::PeerClosed);
                            break;
                        }
                        Err(e) => return Err(Error::io(Phase::Status, peer, e)),
                    }
                    while next_status <= now {
                        next_status += STATUS_PERIOD;
                    }
                }
                if due_report {
                    if let Some(tx) = &ctx.samples {
                        let dt = (now - last_report).as_secs_f64();
                        let senders = per_tx
                            .iter()
                            .enumerate()
                            .map(|(i, &bytes)| {
                                gap_buf.fill(0);
                                if let Some(g) = ctx.gaps.get(i) {
                                    g.drain_into(&mut gap_buf);
                                }
                                let us = |q| gap_quantile(&gap_buf, q).map(|ns| ns as f64 / 1000.0);
                                SenderAudit {
                                    thread: i,
                                    target_bps: ctx.rates[i].load(Relaxed),
                                    achieved_bps: if dt > 0.0 { bytes as f64 * 8.0 / dt } else { 0.0 },
                                    gap_p50_us: us(0.5),
                                    gap_p99_us: us(0.99),
                                }
                            })
                            .collect();
                        let (host_drops, tcp, role_cpu) = match probes.as_mut() {
                            Some(p) => {
                                let loads = p.threads.sample(|n| n.starts_with("btest-"));
                                let role = super::RoleCpu::from_loads(&loads);
                                t.role_cpu_max = t.role_cpu_max.max(role);
                                if let Some(v) = super::threadcpu::verdict(&loads, super::threadcpu::DEFAULT_BUSY_THRESHOLD) {
                                    t.verdict.get_or_insert(v);
                                }
                                let hd = p.host_drops();
                                host_drops_total = match (host_drops_total, hd) {
                                    (Some(a), Some(b)) => Some(a + b),
                                    _ => None,
                                };
                                let tcp = p.tcp(&mut last_retrans);
                                if let Some(ts) = &tcp {
                                    tcp_retrans_total += ts.retransmits;
                                    t.tcp = Some(super::TcpSample { retransmits: tcp_retrans_total, ..ts.clone() });
                                }
                                (hd, tcp, role)
                            }
                            None => (None, None, super::RoleCpu::default()),
                        };
                        let s = Sample {
                            host_drops,
                            tcp,
                            role_cpu,
                            elapsed,
                            dt: now - last_report,
                            delta: report_acc,
                            remote_rx_bytes: remote_rx_acc,
                            local_cpu,
                            remote_cpu,
                            tx_target_bps: ctx.rates.iter().map(|r| r.load(Relaxed)).sum(),
                            senders,
                        };
                        let _ = tx.try_send(s);
                    }
                    report_acc = Snapshot::default();
                    per_tx.iter_mut().for_each(|p| *p = 0);
                    remote_rx_acc = 0;
                    last_report = now;
                    while next_report <= now {
                        next_report += ctx.interval;
                    }
                }
                if now - last_heard > ctx.control_timeout {
                    ctx.stop.trigger(StopReason::ControlTimeout);
                    break;
                }
            }
        }
    }
    t.elapsed = ctx.epoch.elapsed();
    if let Some(p) = probes.as_mut() {
        host_drops_total = match (host_drops_total, p.host_drops()) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    t.host_drops = host_drops_total;
    let last = take_all(ctx.counters);
    if let Some(f) = &ctx.on_bytes {
        f(last.tx_bytes, last.rx_bytes);
    }
    t.totals += last;
    t.local_cpu_avg =
        (t.local_cpu_samples > 0).then(|| cpu_sum as f64 / t.local_cpu_samples as f64);
    t.remote_cpu_avg =
        (t.remote_cpu_samples > 0).then(|| remote_cpu_sum as f64 / t.remote_cpu_samples as f64);
    Ok(t)
}

fn is_peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
}

fn send_status(sink: &mut StatusSink, msg: &[u8; status::LEN]) -> std::io::Result<()> {
    match sink {
        StatusSink::Direct(s) => match s.write_all(msg) {
            Ok(()) => Ok(()),
            // The peer stopped reading (its buffer is full of our data) or left: the RX/TX
            // threads see the real cause; a lost status is harmless.
            Err(e) if crate::net::is_timeout(&e) => Ok(()),
            Err(e) => Err(e),
        },
        StatusSink::ViaTx(tx) => {
            // Bounded(4): if the TX thread is stuck in a long write, drop rather than block.
            let _ = tx.try_send(*msg);
            Ok(())
        }
    }
}
