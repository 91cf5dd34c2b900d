//! The thread machinery shared by client and server: given connected sockets and a plan, run
//! one test session and return its summary.
//!
//! Threads (all named, all joined before [`run`] returns, inside `std::thread::scope`):
//! `btest-tx-K` / `btest-rx-K` per TCP connection or UDP socket and direction,
//! `btest-ctl-rx` (UDP tests: reads statuses on connection 0), and `btest-status` (the clock).
//! Each records its kernel thread id in its role slot; per-thread CPU is read by those ids,
//! never by name (other sessions of the process have the same names). The first error wins; [`Stop`] wakes everyone. A panicking role becomes
//! [`Error::Internal`]. Must not: do handshakes (client.rs / server.rs do) or print.

pub mod budget;
pub mod counters;
pub mod cpu;
pub mod pacer;
pub mod roles;
pub mod rx;
pub mod scan;
pub mod status;
pub mod stop;
pub mod tcpinfo;
pub mod threadcpu;
pub mod tx;
pub mod udpdrops;
pub mod udpio;

use crate::atomic::AtomicU64;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

pub use counters::Snapshot;
pub use stop::{Stop, StopReason};

use crate::error::{Error, Result};
use crate::wire::Protocol;
use counters::Counters;
use roles::{RoleKind, RoleTable};

/// One UDP socket of a session.
pub struct UdpLink {
    /// The bound socket.
    pub socket: UdpSocket,
    /// Unconnected server socket: send round-robin to these. Empty = connected socket.
    pub targets: Vec<SocketAddr>,
    /// Unconnected server socket: accept datagrams only from these ports of the client.
    pub accept_from: Option<rx::AcceptFrom>,
}

/// Everything a session needs once the handshake is done.
pub struct Plan {
    /// "client" or "server", for logs.
    pub side: &'static str,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// We send data.
    pub transmit: bool,
    /// We receive data.
    pub receive: bool,
    /// Connection 0 (handshake done).
    pub control: TcpStream,
    /// TCP connections 1..N.
    pub extra_tcp: Vec<TcpStream>,
    /// UDP sockets (UDP tests).
    pub udp: Vec<UdpLink>,
    /// IP+UDP header bytes counted per datagram.
    pub udp_overhead: usize,
    /// Total transmit rate in bit/s, 0 = unlimited.
    pub tx_rate: u64,
    /// TCP: cap in bit/s on what we read, summed over the connections, 0 = none. Reading no
    /// faster than this makes TCP flow control slow the peer's sending to it (the server's
    /// `--max-rate`). UDP cannot be slowed this way and ignores it.
    pub rx_rate: u64,
    /// TCP chunk size, or UDP datagram wire size (incl. headers) we send.
    pub tx_size: usize,
    /// The chunk size the *peer* writes (TCP status scanning in random mode).
    pub peer_chunk: usize,
    /// We send random bytes (else zeros).
    pub random: bool,
    /// The peer sends zeros (status scanning mode).
    pub peer_zero: bool,
    /// Report cadence.
    pub interval: Duration,
    /// Test length (client).
    pub duration: Option<Duration>,
    /// Session cap (server).
    pub max_duration: Option<Duration>,
    /// Silence limit.
    pub control_timeout: Duration,
    /// Interval samples go here.
    pub samples: Option<Sender<Sample>>,
    /// Server-wide stop.
    pub parent: Option<Stop>,
    /// Live thread gauge (server: asserted by tests and shown in stats).
    pub gauge: Option<Arc<AtomicUsize>>,
    /// Called by the status thread with each take's [`Take`] (about once a second; server
    /// metrics, quotas and the live view).
    pub on_bytes: Option<ByteSink>,
    /// Pacing mode, UDP batching, busy polling.
    pub tuning: crate::config::Tuning,
    /// Byte quotas taken on the data path (server); empty = none. A used-up quota stops the
    /// session with [`StopReason::Quota`].
    pub budget: budget::Budget,
}

/// What the status thread hands the server's live view at each take (about once a second,
/// never per packet): counter deltas since the last take and the latest gauges it already
/// has. `rtt_us` is one TCP_INFO read of connection 0 per take (server only: the client has
/// no sink); `None` for UDP or before the kernel has an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Take {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// Datagrams received and lost (UDP; 0 for TCP).
    pub rx_packets: u64,
    pub lost: u64,
    /// This machine's CPU at our last status, and the peer's from its last status, percent.
    pub local_cpu: Option<u8>,
    pub remote_cpu: Option<u8>,
    pub rtt_us: Option<u32>,
}

/// Receiver of live takes.
pub type ByteSink = Arc<dyn Fn(&Take) + Send + Sync>;

/// Pacing audit of one TX thread over one report interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenderAudit {
    /// TX thread index (connection or UDP socket).
    pub thread: usize,
    /// Rate asked for, bit/s (0 = unlimited).
    pub target_bps: u64,
    /// Rate achieved, bit/s.
    pub achieved_bps: f64,
    /// Median gap between sends, µs (paced senders only).
    pub gap_p50_us: Option<f64>,
    /// 99th percentile gap between sends, µs (paced senders only).
    pub gap_p99_us: Option<f64>,
    /// Mean units per send call (paced senders only; 1 = every unit at its own deadline).
    pub burst_avg: Option<f64>,
    /// Largest units per send call (paced senders only).
    pub burst_max: Option<u64>,
}

/// CPU of our role threads, percent of one core (the busiest thread of each role).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoleCpu {
    /// Busiest TX thread.
    pub tx: f64,
    /// Busiest RX thread (control readers included).
    pub rx: f64,
    /// The status thread.
    pub status: f64,
}

impl RoleCpu {
    fn from_loads(loads: &[threadcpu::ThreadLoad<'_>]) -> RoleCpu {
        let mut r = RoleCpu::default();
        for l in loads {
            let slot = match l.kind {
                RoleKind::Tx => &mut r.tx,
                RoleKind::Rx | RoleKind::CtlRx => &mut r.rx,
                RoleKind::Status => &mut r.status,
            };
            *slot = slot.max(l.percent_of_core);
        }
        r
    }

    fn max(self, o: RoleCpu) -> RoleCpu {
        RoleCpu {
            tx: self.tx.max(o.tx),
            rx: self.rx.max(o.rx),
            status: self.status.max(o.status),
        }
    }
}

/// TCP_INFO of the session's connections at the end of an interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TcpSample {
    /// One entry per TCP connection (connection 0 first).
    pub per_connection: Vec<tcpinfo::TcpStats>,
    /// Aggregate (mean RTT, summed cwnd and retransmits).
    pub total: tcpinfo::TcpStats,
    /// Retransmitted segments during this interval (all connections).
    pub retransmits: u64,
}

/// One report interval.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Time since the session started.
    pub elapsed: Duration,
    /// Length of this interval.
    pub dt: Duration,
    /// Counter deltas.
    pub delta: Snapshot,
    /// What the peer said it received in this interval (sum of its statuses).
    pub remote_rx_bytes: u64,
    /// The peer's statuses that arrived in this interval (each covers one second of its
    /// receiving; report.rs matches them to what we sent, issue 19).
    pub remote_statuses: u64,
    /// Our machine's CPU load, percent.
    pub local_cpu: Option<u8>,
    /// The peer's last reported CPU load.
    pub remote_cpu: Option<u8>,
    /// Current total TX target, bit/s (0 = unlimited).
    pub tx_target_bps: u64,
    /// Pacing audit per TX thread.
    pub senders: Vec<SenderAudit>,
    /// UDP datagrams our receive sockets dropped (buffer overflow) in this interval; `None`
    /// when unknown (TCP, or /proc/net/udp unreadable).
    pub host_drops: Option<u64>,
    /// TCP_INFO (TCP tests).
    pub tcp: Option<TcpSample>,
    /// CPU of our role threads over this interval.
    pub role_cpu: RoleCpu,
}

/// What the status thread accumulated over the session.
#[derive(Debug, Clone, Default)]
pub struct StatusTotals {
    /// Whole-session counters.
    pub totals: Snapshot,
    /// Sum of the byte counts in the peer's statuses.
    pub remote_rx_bytes: u64,
    /// Statuses whose byte count was the 32-bit maximum: the peer received more than
    /// 4 GiB in that second (above ~34 Gbit/s) and the protocol cannot say how much more.
    pub remote_rx_saturated: u64,
    /// Most bytes we sent between two of our statuses (about one second). Above `u32::MAX`
    /// the peer's per-second field cannot carry what it received: its figure is a lower bound.
    pub tx_peak_status_bytes: u64,
    /// Statuses we sent.
    pub statuses_sent: u64,
    /// Statuses we received.
    pub statuses_received: u64,
    /// Local CPU samples taken.
    pub local_cpu_samples: u64,
    /// Remote CPU values received.
    pub remote_cpu_samples: u64,
    /// Average local CPU, percent.
    pub local_cpu_avg: Option<f64>,
    /// Average remote CPU, percent.
    pub remote_cpu_avg: Option<f64>,
    /// Length of the data phase: session start until the stop (teardown excluded).
    pub elapsed: Duration,
    /// UDP datagrams dropped by this host's receive sockets (part of `totals.lost`).
    pub host_drops: Option<u64>,
    /// TCP_INFO at the end, with retransmits summed over the test.
    pub tcp: Option<TcpSample>,
    /// Highest per-role thread CPU seen in any interval.
    pub role_cpu_max: RoleCpu,
    /// "rx thread at 99 % of a core: this host, not the link, limited the rate", when a role
    /// thread was saturated.
    pub verdict: Option<String>,
}

/// The result of a session.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Wall time of the data phase.
    pub duration: Duration,
    /// Totals.
    pub status: StatusTotals,
    /// Why it ended.
    pub end_reason: StopReason,
    /// TCP: the connections that carried data (read some, or had some of ours acknowledged);
    /// a connection the server closed right after the join did not.
    pub tcp_links_ran: Option<usize>,
    /// UDP: how our senders moved datagrams (`gso`, `mmsg`, `single`), after any fallback.
    pub udp_tx_io: Option<udpio::Method>,
    /// UDP: how our receivers did (`gro`, `mmsg`, `single`).
    pub udp_rx_io: Option<udpio::Method>,
}

fn payload(len: usize, random: bool, tcp: bool) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if random {
        crate::sys::random_bytes(&mut v);
        if tcp {
            scan::sanitize_random_chunk(&mut v);
        }
    }
    v
}

/// Acknowledged bytes on a connection that are not test data: the join marker, our FIN.
const ACKED_NOT_DATA: u64 = 64;

/// Runs a session to its end. `stop` may be triggered from outside (e.g. tests, signals).
pub fn run(plan: Plan, stop: &Stop) -> Result<Summary> {
    let epoch = Instant::now();
    let tcp = plan.protocol == Protocol::Tcp;
    // Connection 0 and the joined connections, borrowed for the session: every role reads or
    // writes through `&TcpStream`, nothing is dup()ed.
    let links: Vec<&TcpStream> = if tcp {
        std::iter::once(&plan.control)
            .chain(plan.extra_tcp.iter())
            .collect()
    } else {
        Vec::new()
    };
    let n_links = if tcp { links.len() } else { plan.udp.len() };
    // Which TCP connections carried data: read some (`got`), or the peer acknowledged some of
    // ours since now (issue 19: a connection the server closed after the join ran no test).
    let got: Vec<std::sync::atomic::AtomicBool> =
        links.iter().map(|_| Default::default()).collect();
    let acked_at_start: Vec<Option<u64>> = links.iter().map(|s| tcpinfo::bytes_acked(s)).collect();
    let table = RoleTable::new(tcp, n_links, plan.transmit, plan.receive);
    let counters: Vec<Counters> = table.slots.iter().map(|_| Counters::default()).collect();
    let senders = table.senders();
    let per_thread = plan.tx_rate / senders.len().max(1) as u64;
    let rates: Vec<AtomicU64> = senders.iter().map(|_| AtomicU64::new(per_thread)).collect();
    let gaps: Vec<counters::GapHistogram> = senders.iter().map(|_| Default::default()).collect();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let (status_tx, status_rx) = crossbeam_channel::bounded::<status::PeerMsg>(16);
    // Every TX thread holds a sender; when the last one returns, the status thread's receiver
    // disconnects: that is how a drain knows no more data will be sent.
    let (tx_alive, tx_gone) = crossbeam_channel::bounded::<()>(0);
    let payload_len = if tcp {
        plan.tx_size.max(1)
    } else {
        crate::wire::datagram::payload_len_with(plan.tx_size, plan.udp_overhead)
    };
    let buf = payload(payload_len, plan.random, tcp);
    let adaptive = !tcp && plan.tx_rate == 0;

    // Socket options are set before any thread starts, so a failure leaves nothing running.
    let io_err = |e| Error::io(crate::error::Phase::Data, plan.control.peer_addr().ok(), e);
    crate::net::set_timeouts(&plan.control, Some(crate::net::POLL_TIMEOUT)).map_err(io_err)?;
    for s in &links {
        crate::net::set_timeouts(s, Some(crate::net::POLL_TIMEOUT)).map_err(io_err)?;
    }
    if let Some(us) = plan.tuning.busy_poll {
        use crate::sys::AsSock;
        for fd in links
            .iter()
            .map(|s| s.raw_sock())
            .chain(plan.udp.iter().map(|l| l.socket.raw_sock()))
        {
            crate::net::set_busy_poll(fd, us);
        }
    }
    let (conn0_status_tx, conn0_status_rx) = crossbeam_channel::bounded::<[u8; 12]>(4);
    let sink = status::StatusSink {
        stream: &plan.control,
        via_tx: (tcp && plan.transmit).then_some(conn0_status_tx),
    };
    let fin: Vec<&TcpStream> = if tcp {
        links.clone()
    } else {
        vec![&plan.control]
    };

    let report = |name: &str, r: std::thread::Result<Result<()>>| {
        let e = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => Error::Internal {
                thread: name.to_string(),
            },
        };
        log::debug!("{}: {name}: {e}", plan.side);
        stop.trigger(StopReason::Error(e.to_string()));
        first_error.lock().get_or_insert(e);
    };

    let readers = table
        .slots
        .iter()
        .filter(|s| matches!(s.kind, RoleKind::Rx))
        .count();
    let rx_per_thread = plan.rx_rate / readers.max(1) as u64;
    let status_result = std::thread::scope(|scope| -> Result<Option<StatusTotals>> {
        let gauge = plan.gauge.as_ref();
        let mut handles = Vec::new();
        let mut sender = 0;
        for (i, slot) in table.slots.iter().enumerate() {
            let c = &counters[i];
            let l = slot.link;
            let h = match slot.kind {
                RoleKind::Tx => {
                    let socket = if tcp {
                        tx::TxSocket::Tcp {
                            stream: links[l],
                            statuses: (l == 0).then(|| conn0_status_rx.clone()),
                        }
                    } else {
                        tx::TxSocket::Udp {
                            socket: &plan.udp[l].socket,
                            targets: &plan.udp[l].targets,
                            overhead: plan.udp_overhead,
                        }
                    };
                    let ctx = tx::TxCtx {
                        stop,
                        counters: c,
                        gaps: &gaps[sender],
                        rate: &rates[sender],
                        payload: &buf,
                        socket,
                        epoch,
                        tuning: plan.tuning,
                        budget: &plan.budget,
                    };
                    sender += 1;
                    let alive = tx_alive.clone();
                    roles::spawn(scope, slot, gauge, stop, move || {
                        let _alive = alive;
                        tx::run(ctx)
                    })?
                }
                RoleKind::Rx if tcp => {
                    let limit = rx_per_thread;
                    let ctl = (l == 0).then(|| {
                        (
                            scan::StatusScanner::new(plan.peer_zero, plan.peer_chunk),
                            &status_tx,
                        )
                    });
                    let (s, b, got) = (links[l], &plan.budget, &got[l]);
                    roles::spawn(scope, slot, gauge, stop, move || {
                        rx::run_tcp(stop, c, s, ctl, limit, b, got)
                    })?
                }
                RoleKind::Rx => {
                    let (link, oh, want) = (&plan.udp[l], plan.udp_overhead, plan.tuning.udp_io);
                    let b = &plan.budget;
                    roles::spawn(scope, slot, gauge, stop, move || {
                        rx::run_udp(stop, c, &link.socket, oh, link.accept_from, want, b)
                    })?
                }
                RoleKind::CtlRx => {
                    let (ctl, stx) = (&plan.control, &status_tx);
                    roles::spawn(scope, slot, gauge, stop, move || {
                        rx::run_control(stop, ctl, stx)
                    })?
                }
                // Spawned last, below: it needs every other role's handles in place.
                RoleKind::Status => continue,
            };
            handles.push((slot.name.as_str(), h));
        }
        drop(tx_alive);
        drop(conn0_status_rx);
        // Probes cost a /proc read or a getsockopt per interval: only when someone reports.
        let probes = if plan.samples.is_some() {
            Some(status::Probes {
                tcp: &links,
                udp_drops: if plan.receive {
                    plan.udp
                        .iter()
                        .enumerate()
                        .filter_map(|(k, l)| {
                            // The counters of this socket's reader (its buffers per datagram).
                            let i = table
                                .slots
                                .iter()
                                .position(|s| matches!(s.kind, RoleKind::Rx) && s.link == k)?;
                            Some((udpdrops::UdpDrops::new(&l.socket), &counters[i]))
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                threads: threadcpu::ThreadCpu::new(),
                roles: &table.slots,
            })
        } else {
            None
        };
        let sctx = status::StatusCtx {
            probes,
            stop,
            parent: plan.parent.as_ref(),
            counters: &counters,
            senders: &senders,
            remote: status_rx.clone(),
            tx_gone,
            sink,
            fin: &fin,
            rates: &rates,
            gaps: &gaps,
            adaptive,
            samples: plan.samples.clone(),
            interval: plan.interval,
            duration: plan.duration,
            max_duration: plan.max_duration,
            control_timeout: plan.control_timeout,
            acked: if tcp { &links } else { &[] },
            on_bytes: plan.on_bytes.clone(),
            epoch,
        };
        let status_slot = &table.slots[table.slots.len() - 1];
        let status_handle =
            roles::spawn(scope, status_slot, gauge, stop, move || status::run(sctx))?;
        let totals = match status_handle.join() {
            Ok(Ok(t)) => Some(t),
            Ok(Err(e)) => {
                report("btest-status", Ok(Err(e)));
                None
            }
            Err(p) => {
                report("btest-status", Err(p));
                None
            }
        };
        // The status thread only returns after a stop (or its own error, recorded above);
        // make sure every role sees it.
        stop.trigger(StopReason::Completed);
        for (name, h) in handles {
            report(name, h.join());
        }
        Ok(totals)
    })?;
    // What roles count after the status thread's final take (the last microseconds of a
    // teardown) is outside the data phase: left out, so the summary is the sum of the intervals.
    let status = status_result.unwrap_or_default();
    let end_reason = stop.reason().unwrap_or(StopReason::Completed);
    if let Some(e) = first_error.into_inner() {
        // A role error is the session's result unless the session had already ended for a
        // normal reason (an error while tearing down is noise).
        if matches!(end_reason, StopReason::Error(_)) {
            return Err(e);
        }
        log::debug!(
            "{}: error after stop ({}): {e}",
            plan.side,
            end_reason.as_str()
        );
    }
    let duration = if status.elapsed.is_zero() {
        epoch.elapsed()
    } else {
        status.elapsed
    };
    let io_of = |kind| {
        let slots: Vec<&Counters> = table.of_kind(kind).iter().map(|&i| &counters[i]).collect();
        udpio::reported(&slots)
    };
    let tcp_links_ran = tcp.then(|| {
        links
            .iter()
            .zip(&acked_at_start)
            .zip(&got)
            .filter(|((s, before), got)| {
                got.load(std::sync::atomic::Ordering::Relaxed)
                    || match (before, tcpinfo::bytes_acked(s)) {
                        // More than the join marker (16 bytes, its ack may come after the
                        // start) and our FIN (one sequence number) that a refused join
                        // still gets acknowledged.
                        (Some(b), Some(a)) => a > b + ACKED_NOT_DATA,
                        // No TCP_INFO: no evidence against it.
                        _ => true,
                    }
            })
            .count()
    });
    Ok(Summary {
        duration,
        status,
        end_reason,
        tcp_links_ran,
        udp_tx_io: if tcp { None } else { io_of(RoleKind::Tx) },
        udp_rx_io: if tcp { None } else { io_of(RoleKind::Rx) },
    })
}
