//! The client's records (`start`, `interval`, `summary`, `error`) and their text: the
//! interval lines, the summary block, the syslog end line. Must not: print the server's or the
//! fleet's lines (server.rs, fleet.rs).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use super::{bps, io_fields, lost, totals};
use crate::client::ClientResult;
use crate::config::Output;
use crate::engine::{Sample, StatusTotals};
use crate::export::csv::rfc3339_utc;
use crate::record::{self, field as F, Kind, Record, Value};
use crate::units::format_rate;
use crate::wire::{Direction, Protocol, Side};

/// Sequence gaps minus what our own sockets dropped: what the network lost.
fn wire_lost(gaps: u64, host: Option<u64>) -> u64 {
    lost(gaps).saturating_sub(host.unwrap_or(0))
}

/// Keys inside the `tcp` object (and its `total` and `per_connection` entries) and the
/// `thread_cpu_max` object of the records (docs/output.md): one definition for the writer below
/// and the summary text that reads them back, so a renamed key fails to compile (issue 20).
mod key {
    pub const RTT_US: &str = "rtt_us";
    pub const RTTVAR_US: &str = "rttvar_us";
    pub const CWND: &str = "cwnd";
    pub const MSS: &str = "mss";
    pub const RETRANSMITS_TOTAL: &str = "retransmits_total";
    pub const DELIVERY_RATE_BPS: &str = "delivery_rate_bps";
    pub const RETRANSMITS: &str = "retransmits";
    pub const TOTAL: &str = "total";
    pub const PER_CONNECTION: &str = "per_connection";
    pub const TX: &str = "tx";
    pub const RX: &str = "rx";
    pub const STATUS: &str = "status";
}

mod client_records {
    use super::key;
    use super::*;
    use crate::engine::tcpinfo::TcpStats;
    use crate::engine::{RoleCpu, TcpSample};

    fn tcp_stats(t: &TcpStats) -> Value {
        record::object(&[
            (key::RTT_US, Value::Int(u64::from(t.rtt_us))),
            (key::RTTVAR_US, Value::Int(u64::from(t.rttvar_us))),
            (key::CWND, Value::Int(u64::from(t.cwnd))),
            (key::MSS, Value::Int(u64::from(t.mss))),
            (
                key::RETRANSMITS_TOTAL,
                Value::Int(u64::from(t.retransmits_total)),
            ),
            (
                key::DELIVERY_RATE_BPS,
                t.delivery_rate_bps.map_or(Value::Null, Value::Int),
            ),
        ])
    }

    pub(super) fn tcp(t: Option<&TcpSample>) -> Value {
        let Some(t) = t else { return Value::Null };
        record::object(&[
            (key::RETRANSMITS, Value::Int(t.retransmits)),
            (key::TOTAL, tcp_stats(&t.total)),
            (
                key::PER_CONNECTION,
                record::array(t.per_connection.iter().map(tcp_stats)),
            ),
        ])
    }

    pub(super) fn roles(c: RoleCpu) -> Value {
        let r = |v: f64| Value::Num((v * 10.0).round() / 10.0, 1);
        record::object(&[
            (key::TX, r(c.tx)),
            (key::RX, r(c.rx)),
            (key::STATUS, r(c.status)),
        ])
    }

    pub(super) fn senders(s: &Sample) -> Value {
        record::array(s.senders.iter().map(|a| {
            record::object(&[
                ("thread", Value::Int(a.thread as u64)),
                ("target_bps", Value::Int(a.target_bps)),
                ("achieved_bps", Value::num(a.achieved_bps)),
                ("gap_p50_us", Value::opt_num(a.gap_p50_us)),
                ("gap_p99_us", Value::opt_num(a.gap_p99_us)),
                ("burst_avg", Value::opt_num(a.burst_avg)),
                ("burst_max", a.burst_max.map_or(Value::Null, Value::Int)),
            ])
        }))
    }
}

/// Round-trip figures of a set of latency probes, in milliseconds (probe/stats.rs computes
/// them).
pub use crate::probe::stats::RttStats as Rtt;

/// What the latency probe saw in one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IntervalRtt {
    /// Probes sent in the interval.
    pub sent: u64,
    /// Probes whose time ran out in the interval.
    pub lost: u64,
    /// Figures of the replies that arrived; `None` when none did.
    pub rtt: Option<Rtt>,
}

/// The latency probe over the whole test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// `echo`, `icmp` or `icmp-raw`.
    pub method: &'static str,
    /// Before the load; `None` when no idle reply came (or no idle phase was asked).
    pub idle: Option<Rtt>,
    /// During the load.
    pub loaded: Option<Rtt>,
    /// Probes sent during the load.
    pub sent: u64,
    /// Of those, unanswered.
    pub lost: u64,
}

fn ms(v: f64) -> Value {
    Value::Num(v, 3)
}

fn tcp_rtt_ms(t: Option<&crate::engine::TcpSample>) -> Value {
    t.filter(|t| t.total.rtt_us > 0)
        .map_or(Value::Null, |t| ms(f64::from(t.total.rtt_us) / 1000.0))
}

/// The round-trip fields of one set of probes: min, avg, p50, p90, max, jitter (an interval's
/// `rtt_*`, a summary's `idle_*` or `loaded_*`).
fn rtt_fields(b: &mut record::Builder, fields: [&record::Field; 6], r: Option<&Rtt>) {
    let v = |f: fn(&Rtt) -> f64| r.map_or(Value::Null, |r| ms(f(r)));
    b.push(fields[0], v(|r| r.min_ms))
        .push(fields[1], v(|r| r.avg_ms))
        .push(fields[2], v(|r| r.p50_ms))
        .push(fields[3], v(|r| r.p90_ms))
        .push(fields[4], v(|r| r.max_ms))
        .push(fields[5], v(|r| r.jitter_ms));
}

/// The `start` record.
pub fn start_record(
    server: &str,
    protocol: Protocol,
    direction: Direction,
    connections: u8,
) -> Record {
    Record::build(Kind::Start, |b| {
        b.str(&F::SERVER, server)
            .str(&F::PROTOCOL, protocol.as_str())
            .str(&F::DIRECTION, direction.client_word())
            .int(&F::CONNECTIONS, u64::from(connections));
    })
}

/// What the peer's byte counts can be trusted for (issue 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteTrust {
    /// The peer's figure is a lower bound: its 32-bit per-second field saturated, or we sent
    /// more in some second than the field can carry.
    pub lower_bound: bool,
    /// TCP: over the seconds its statuses cover, the peer reported far less than TCP
    /// delivered (a counter that wraps at 2^32, or one that counts something else). Not loss.
    pub suspect: bool,
}

/// Below this share of what we sent in the seconds the peer's statuses cover, a TCP peer's
/// figure is implausible: TCP delivers every byte, and the seconds are matched to within the
/// difference of the two clocks' starts (milliseconds).
const TCP_PLAUSIBLE_SHARE: f64 = 0.9;

impl RemoteTrust {
    /// Judges the peer's figure, `covered_tx` being what we sent in the seconds its statuses
    /// cover ([`Coverage`]). Issue 19: comparing against everything we sent flagged every
    /// Ctrl-C, every early end and every peer that never reports its last partial second,
    /// whose bytes no status covers; over the covered seconds a TCP shortfall is evidence.
    pub fn of(st: &StatusTotals, tcp: bool, covered_tx: u64) -> RemoteTrust {
        let remote = st.remote_rx_bytes;
        RemoteTrust {
            lower_bound: st.remote_rx_saturated > 0
                || st.tx_peak_status_bytes > u64::from(u32::MAX),
            suspect: tcp
                && covered_tx > 0
                && (remote as f64) < covered_tx as f64 * TCP_PLAUSIBLE_SHARE,
        }
    }
}

/// Which of our bytes the peer's statuses speak for (issue 19). Each status carries what the
/// peer received in one second of its clock, which starts with ours; n statuses so far cover
/// our first n seconds of sending (at most up to now). What we sent after that (a last
/// partial second the peer never reports, anything after a Ctrl-C or an early end) is not
/// compared, so it is neither loss nor a "peer reported far less" note.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// (elapsed s, bytes sent up to then), from the last point at or before `covered_s`.
    sent: VecDeque<(f64, u64)>,
    total_sent: u64,
    statuses: u64,
    /// Seconds of our sending the statuses cover.
    pub covered_s: f64,
    /// What we sent in those seconds.
    pub covered_tx: u64,
    /// What the statuses say the peer received.
    pub remote: u64,
}

impl Coverage {
    /// One interval (`elapsed` at its end, our bytes, the peer's statuses in it and their
    /// sum). Returns what it newly covers: (seconds, our bytes, the peer's bytes); `None`
    /// when no status arrived.
    pub fn push(
        &mut self,
        elapsed: f64,
        tx: u64,
        statuses: u64,
        remote: u64,
    ) -> Option<(f64, u64, u64)> {
        self.total_sent += tx;
        self.sent.push_back((elapsed, self.total_sent));
        self.statuses += statuses;
        self.remote += remote;
        if statuses == 0 {
            return None;
        }
        let upto = (self.statuses as f64).min(elapsed).max(self.covered_s);
        let at = self.sent_at(upto).max(self.covered_tx);
        let new = (upto - self.covered_s, at - self.covered_tx, remote);
        self.covered_s = upto;
        self.covered_tx = at;
        // Bounded: only the points from the covered mark on are needed again.
        while self.sent.len() > 1 && self.sent[1].0 <= upto {
            self.sent.pop_front();
        }
        Some(new)
    }

    /// What we had sent `t` seconds in, interpolated between interval ends.
    fn sent_at(&self, t: f64) -> u64 {
        let mut prev = (0.0, 0u64);
        for &(e, b) in &self.sent {
            if e >= t {
                let span = e - prev.0;
                if span <= 0.0 {
                    return b;
                }
                // t is within [prev.0, e] (the points before the covered mark are gone); a
                // negative product would saturate to 0 in the cast. No f64::clamp: its panic
                // message formats floats (+4.3 KiB, issue 18).
                let f = ((t - prev.0) / span).min(1.0);
                return prev.1 + ((b - prev.1) as f64 * f).round() as u64;
            }
            prev = (e, b);
        }
        prev.1
    }
}

/// `part` of `whole` in %, 0-100, three decimals; null when `whole` is 0.
fn loss_pct(part: u64, whole: u64) -> Value {
    if whole == 0 {
        return Value::Null;
    }
    Value::Num((part as f64 / whole as f64 * 100.0).min(100.0), 3)
}

/// (tx_loss_pct, tx_delivered_bps) of what a coverage span says: null unless asked (`on`).
fn tx_delivery(on: bool, secs: f64, sent: u64, remote: u64) -> (Value, Value) {
    if !on || sent == 0 || secs <= 0.0 {
        return (Value::Null, Value::Null);
    }
    (
        loss_pct(sent.saturating_sub(remote), sent),
        Value::Num(remote as f64 * 8.0 / secs, 0),
    )
}

/// The `summary` record of a finished test.
pub fn summary_record(
    r: &ClientResult,
    server: &str,
    started: SystemTime,
    lat: Option<&LatencySummary>,
    cov: &Coverage,
) -> Record {
    let st = &r.summary.status;
    let d = r.summary.duration;
    let trust = RemoteTrust::of(st, r.protocol == Protocol::Tcp, cov.covered_tx);
    let udp = r.protocol == Protocol::Udp;
    let (tx_loss, tx_dlvd) = tx_delivery(
        udp && r.direction.we_transmit(Side::Client) && !trust.lower_bound,
        cov.covered_s,
        cov.covered_tx,
        cov.remote,
    );
    let rx_lost = lost(st.totals.lost);
    let rx_loss = if udp && r.direction.we_receive(Side::Client) {
        loss_pct(rx_lost, st.totals.rx_packets + rx_lost)
    } else {
        Value::Null
    };
    Record::build(Kind::Summary, |b| {
        b.str(&F::TIMESTAMP, &rfc3339_utc(started))
            .str(&F::SERVER, server)
            .str(&F::PROTOCOL, r.protocol.as_str())
            .str(&F::DIRECTION, r.direction.client_word())
            .int(&F::CONNECTIONS, r.connections as u64);
        totals(b, st, d);
        b.str(&F::AUTH, r.auth.as_str())
            .str(&F::END_REASON, r.summary.end_reason.as_str())
            .int(&F::LOST_WIRE, wire_lost(st.totals.lost, st.host_drops))
            .push(&F::LOST_HOST, st.host_drops.map_or(Value::Null, Value::Int))
            .int(&F::REORDERED, st.totals.reordered)
            .int(&F::DUPLICATES, st.totals.duplicates)
            .push(&F::TCP, client_records::tcp(st.tcp.as_ref()))
            .push(&F::THREAD_CPU_MAX, client_records::roles(st.role_cpu_max))
            .push(
                &F::REMOTE_RX_SATURATED,
                Value::Bool(st.remote_rx_saturated > 0),
            )
            .push(&F::REMOTE_RX_LOWER_BOUND, Value::Bool(trust.lower_bound))
            .push(&F::REMOTE_RX_SUSPECT, Value::Bool(trust.suspect))
            .push(&F::VERDICT, Value::opt_str(r.verdict()));
        io_fields(b, &r.summary);
        b.push(&F::SERVER_SENT_BPS, Value::opt_num(r.server_sent_short()));
        b.push(&F::RTT_METHOD, Value::opt_str(lat.map(|l| l.method)));
        let idle = [
            &F::IDLE_RTT_MIN_MS,
            &F::IDLE_RTT_AVG_MS,
            &F::IDLE_RTT_P50_MS,
            &F::IDLE_RTT_P90_MS,
            &F::IDLE_RTT_MAX_MS,
            &F::IDLE_JITTER_MS,
        ];
        rtt_fields(b, idle, lat.and_then(|l| l.idle.as_ref()));
        let loaded = [
            &F::LOADED_RTT_MIN_MS,
            &F::LOADED_RTT_AVG_MS,
            &F::LOADED_RTT_P50_MS,
            &F::LOADED_RTT_P90_MS,
            &F::LOADED_RTT_MAX_MS,
            &F::LOADED_JITTER_MS,
        ];
        rtt_fields(b, loaded, lat.and_then(|l| l.loaded.as_ref()));
        let count = |f: fn(&LatencySummary) -> u64| lat.map_or(Value::Null, |l| Value::Int(f(l)));
        b.push(&F::RTT_SENT, count(|l| l.sent))
            .push(&F::RTT_LOST, count(|l| l.lost));
        let bloat = lat
            .and_then(|l| Some(l.loaded?.p50_ms - l.idle?.p50_ms))
            .map_or(Value::Null, ms);
        b.push(&F::BUFFERBLOAT_MS, bloat)
            .push(&F::TCP_RTT_MS, tcp_rtt_ms(st.tcp.as_ref()))
            .int(&F::FOREIGN_DATAGRAMS, st.totals.foreign)
            .push(&F::TX_LOSS_PCT, tx_loss)
            .push(&F::RX_LOSS_PCT, rx_loss)
            .push(&F::TX_DELIVERED_BPS, tx_dlvd);
    })
}

/// The `error` record.
pub fn error_record(e: &crate::Error) -> Record {
    Record::build(Kind::Error, |b| {
        b.str(&F::MESSAGE, &e.to_string())
            .push(&F::PHASE, Value::opt_str(e.phase().map(|p| p.as_str())));
    })
}

/// Client-side reporter: interval lines and the final summary.
pub struct ClientReporter<W: Write> {
    out: W,
    output: Output,
    window: VecDeque<(Duration, u64, u64)>,
    total_tx: u64,
    total_rx: u64,
    lines: u64,
    latency: bool,
    #[cfg(feature = "tty")]
    live: Option<crate::termview::LiveView>,
    cov: Coverage,
    /// From the start record: a UDP test, we send, we receive.
    udp: bool,
    up: bool,
    down: bool,
    /// The pacing audit lines (`-v`).
    pacing: bool,
    /// Terminal width the interval lines are laid out for.
    columns: u16,
}

/// Columns the text lines may use: `COLUMNS` when set (as ls(1): an explicit ask, e.g.
/// `COLUMNS=160` for the wide interval lines in a pipe), else the terminal's, else 80.
fn text_columns() -> u16 {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .or_else(crate::sys::terminal_columns)
        .unwrap_or(80)
}

/// Averages over the last this-many seconds, as RouterOS' "10-second average".
const WINDOW: Duration = Duration::from_secs(10);

impl<W: Write> ClientReporter<W> {
    /// A reporter writing to `out`.
    pub fn new(out: W, output: Output) -> Self {
        ClientReporter {
            out,
            output,
            window: VecDeque::new(),
            total_tx: 0,
            total_rx: 0,
            lines: 0,
            latency: false,
            #[cfg(feature = "tty")]
            live: None,
            cov: Coverage::default(),
            udp: false,
            up: false,
            down: false,
            pacing: false,
            columns: 80,
        }
    }

    /// The reporter of a single test of `cfg` writing to `out`, which is stdout: its text or
    /// JSON, the columns of the terminal (or `COLUMNS`), the live view on a terminal.
    pub fn for_config(out: W, cfg: &crate::config::ClientConfig) -> Self {
        let rep = ClientReporter::new(out, cfg.output)
            .with_latency(cfg.latency != crate::config::Latency::Off)
            .with_columns(text_columns())
            // The pacing audit is for developers (issue 19): -v turns on info logging.
            .with_pacing(log::log_enabled!(log::Level::Info));
        #[cfg(feature = "tty")]
        let rep = {
            use crate::config::Live;
            use std::io::IsTerminal;
            // The view redraws with ANSI escapes: a Windows console that cannot take them
            // (VT processing off, before Windows 10) gets the plain lines (issue 21).
            let live = match cfg.live {
                Live::No => false,
                Live::Yes if !crate::sys::console_supports_vt() => {
                    log::warn!("--live: this console does not take ANSI escapes; plain lines");
                    false
                }
                Live::Yes => true,
                Live::Auto => std::io::stdout().is_terminal() && crate::sys::console_supports_vt(),
            } && cfg.output == Output::Text;
            rep.with_live(live.then(|| {
                crate::termview::LiveView::new(
                    crate::sys::terminal_columns().unwrap_or(80),
                    cfg.direction.we_transmit(Side::Client),
                    cfg.direction.we_receive(Side::Client),
                )
            }))
        };
        #[cfg(not(feature = "tty"))]
        if cfg.live == crate::config::Live::Yes {
            log::warn!("--live: this btest was built without the live view (cargo feature 'tty')");
        }
        rep
    }

    /// The start record (JSON) or header (text); a new test's running figures begin.
    pub fn start(&mut self, r: &Record) -> io::Result<()> {
        self.window.clear();
        (self.total_tx, self.total_rx, self.lines) = (0, 0, 0);
        self.cov = Coverage::default();
        self.udp = r.text(&F::PROTOCOL) == "udp";
        let dir = r.text(&F::DIRECTION);
        self.up = dir != "receive";
        self.down = dir != "transmit";
        match self.output {
            Output::Json => writeln!(self.out, "{}", r.to_json()),
            Output::Text => writeln!(
                self.out,
                "btest {} {} to {}, {} connection(s)",
                r.text(&F::PROTOCOL),
                r.text(&F::DIRECTION),
                r.text(&F::SERVER),
                r.text(&F::CONNECTIONS),
            ),
        }
    }

    /// The `interval` record of a sample and what the latency probe saw in it (`None`: no
    /// probe runs); keeps the 10 s window and the running totals.
    pub fn interval_record(&mut self, s: &Sample, lat: Option<&IntervalRtt>) -> Record {
        self.window
            .push_back((s.dt, s.delta.tx_bytes, s.delta.rx_bytes));
        let mut span: Duration = self.window.iter().map(|w| w.0).sum();
        while span > WINDOW && self.window.len() > 1 {
            if let Some(w) = self.window.pop_front() {
                span -= w.0;
            }
        }
        let (wtx, wrx) = self
            .window
            .iter()
            .fold((0, 0), |a, w| (a.0 + w.1, a.1 + w.2));
        self.total_tx += s.delta.tx_bytes;
        self.total_rx += s.delta.rx_bytes;
        let covered = self.cov.push(
            s.elapsed.as_secs_f64(),
            s.delta.tx_bytes,
            s.remote_statuses,
            s.remote_rx_bytes,
        );
        let (tx_loss, tx_dlvd) = match covered {
            Some((secs, sent, remote)) => tx_delivery(self.udp && self.up, secs, sent, remote),
            None => (Value::Null, Value::Null),
        };
        let rx_lost = lost(s.delta.lost);
        let rx_loss = if self.udp && self.down {
            loss_pct(rx_lost, s.delta.rx_packets + rx_lost)
        } else {
            Value::Null
        };
        Record::build(Kind::Interval, |b| {
            b.num(&F::ELAPSED_S, s.elapsed.as_secs_f64())
                .num(&F::INTERVAL_S, s.dt.as_secs_f64())
                .num(&F::TX_CURRENT_BPS, bps(s.delta.tx_bytes, s.dt))
                .num(&F::TX_10S_AVG_BPS, bps(wtx, span))
                .num(&F::TX_TOTAL_AVG_BPS, bps(self.total_tx, s.elapsed))
                .num(&F::RX_CURRENT_BPS, bps(s.delta.rx_bytes, s.dt))
                .num(&F::RX_10S_AVG_BPS, bps(wrx, span))
                .num(&F::RX_TOTAL_AVG_BPS, bps(self.total_rx, s.elapsed))
                .int(&F::TX_BYTES, s.delta.tx_bytes)
                .int(&F::RX_BYTES, s.delta.rx_bytes)
                .int(&F::LOST_PACKETS, lost(s.delta.lost))
                .int(&F::REMOTE_RX_BYTES, s.remote_rx_bytes)
                .push(&F::LOCAL_CPU, Value::opt_num(s.local_cpu.map(f64::from)))
                .push(&F::REMOTE_CPU, Value::opt_num(s.remote_cpu.map(f64::from)))
                .int(&F::LOST_WIRE, wire_lost(s.delta.lost, s.host_drops))
                .push(&F::LOST_HOST, s.host_drops.map_or(Value::Null, Value::Int))
                .int(&F::REORDERED, s.delta.reordered)
                .int(&F::DUPLICATES, s.delta.duplicates)
                .int(&F::TX_TARGET_BPS, s.tx_target_bps)
                .push(&F::SENDERS, client_records::senders(s))
                .push(&F::TCP, client_records::tcp(s.tcp.as_ref()))
                .push(&F::THREAD_CPU, client_records::roles(s.role_cpu));
            b.push(
                &F::RTT_SENT,
                lat.map_or(Value::Null, |l| Value::Int(l.sent)),
            )
            .push(
                &F::RTT_LOST,
                lat.map_or(Value::Null, |l| Value::Int(l.lost)),
            );
            let rtt = [
                &F::RTT_MIN_MS,
                &F::RTT_AVG_MS,
                &F::RTT_P50_MS,
                &F::RTT_P90_MS,
                &F::RTT_MAX_MS,
                &F::RTT_JITTER_MS,
            ];
            rtt_fields(b, rtt, lat.and_then(|l| l.rtt).as_ref());
            b.push(&F::TCP_RTT_MS, tcp_rtt_ms(s.tcp.as_ref()))
                .push(&F::TX_LOSS_PCT, tx_loss)
                .push(&F::RX_LOSS_PCT, rx_loss)
                .push(&F::TX_DELIVERED_BPS, tx_dlvd);
        })
    }

    /// What the peer's statuses covered of our sending so far, for [`summary_record`].
    pub fn coverage(&self) -> &Coverage {
        &self.cov
    }

    /// The pacing audit's developer lines under each interval (`-v`).
    pub fn with_pacing(mut self, on: bool) -> Self {
        self.pacing = on;
        self
    }

    /// The terminal width the interval lines are laid out for (80 when unknown).
    pub fn with_columns(mut self, columns: u16) -> Self {
        self.columns = columns;
        self
    }

    /// Latency columns in the text lines (a probe runs).
    pub fn with_latency(mut self, on: bool) -> Self {
        self.latency = on;
        self
    }

    /// The live view, redrawn under the text lines after each interval.
    #[cfg(feature = "tty")]
    pub fn with_live(mut self, view: Option<crate::termview::LiveView>) -> Self {
        self.live = view;
        self
    }

    /// Clears the live view's line, so a following line starts clean.
    fn clear_live(&mut self) -> io::Result<()> {
        #[cfg(feature = "tty")]
        if let Some(v) = &mut self.live {
            write!(self.out, "{}", v.clear())?;
        }
        Ok(())
    }

    /// A free-form line for people (text output only): a warning about the probe, a retry.
    pub fn note(&mut self, msg: &str) -> io::Result<()> {
        if self.output == Output::Text {
            self.clear_live()?;
            writeln!(self.out, "{msg}")?;
        }
        Ok(())
    }

    /// One interval: printed, and returned as its record.
    pub fn sample(&mut self, s: &Sample, lat: Option<&IntervalRtt>) -> io::Result<Record> {
        let r = self.interval_record(s, lat);
        if self.output == Output::Json {
            writeln!(self.out, "{}", r.to_json())?;
            return Ok(r);
        }
        self.clear_live()?;
        self.interval_text(s, &r)?;
        #[cfg(feature = "tty")]
        if let Some(v) = &mut self.live {
            v.push(
                r.f64(&F::TX_CURRENT_BPS),
                r.f64(&F::RX_CURRENT_BPS),
                r.get(&F::RTT_P50_MS).as_f64(),
            );
            let line = v.render();
            write!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(r)
    }

    fn interval_text(&mut self, s: &Sample, r: &Record) -> io::Result<()> {
        let wide =
            cfg!(feature = "tty") && usize::from(self.columns) > interval_width(true, self.latency);
        if self.lines % 20 == 0 {
            writeln!(self.out, "{}", interval_head(wide, self.latency))?;
        }
        self.lines += 1;
        writeln!(self.out, "{}", interval_line(r, wide, self.latency))?;
        if !self.pacing {
            return Ok(());
        }
        // Pacing audit (-v only, issue 19: in the first second it read like a failure): only
        // for paced senders, so a developer can see the pacing held.
        let us = |g: Option<f64>| g.map_or_else(|| "-".into(), |g| format!("{g:.0}us"));
        for a in s.senders.iter().filter(|a| a.target_bps > 0) {
            writeln!(
                self.out,
                "        pacing tx-{}: asked {} got {}  gap p50 {} p99 {}  burst avg {} max {}",
                a.thread,
                format_rate(a.target_bps as f64),
                format_rate(a.achieved_bps),
                us(a.gap_p50_us),
                us(a.gap_p99_us),
                a.burst_avg
                    .map_or_else(|| "-".into(), |b| format!("{b:.1}")),
                a.burst_max.map_or_else(|| "-".into(), |b| b.to_string()),
            )?;
        }
        Ok(())
    }

    /// The final summary.
    pub fn summary(&mut self, r: &Record) -> io::Result<()> {
        self.clear_live()?;
        match self.output {
            Output::Json => writeln!(self.out, "{}", r.to_json()),
            Output::Text => summary_text(&mut self.out, r),
        }
    }

    /// An error record (JSON mode); text mode leaves errors to stderr.
    pub fn error(&mut self, r: &Record) -> io::Result<()> {
        self.clear_live()?;
        if self.output == Output::Json {
            writeln!(self.out, "{}", r.to_json())?;
        }
        Ok(())
    }
}

/// Characters of an interval line: the 80-column layout (77 with the RTT column) or the wide
/// one, which a terminal wider than it gets (issue 19: the old 115-column line wrapped in two
/// in an 80-column pane).
pub fn interval_width(wide: bool, latency: bool) -> usize {
    match (wide, latency) {
        (false, false) => 67,
        (false, true) => 77,
        (true, false) => 127,
        (true, true) => 146,
    }
}

/// The column heads of the interval lines.
pub fn interval_head(wide: bool, latency: bool) -> String {
    let _ = wide; // the wide layout is in builds with the 'tty' feature
    #[cfg(feature = "tty")]
    if wide {
        let rtt = if latency {
            format!("  {:>17}", "rtt p50/p90")
        } else {
            String::new()
        };
        return format!(
            "{:>7} {:>11} {:>11} {:>11} {:>11} {:>7}  {:>11} {:>11} {:>11} {:>7} {:>7}  {:>9}{rtt}",
            "time",
            "tx-current",
            "tx-10s-avg",
            "tx-avg",
            "tx-dlvd",
            "tx-loss",
            "rx-current",
            "rx-10s-avg",
            "rx-avg",
            "lost",
            "rx-loss",
            "cpu l/r",
        );
    }
    let rtt = if latency {
        format!("  {:>8}", "rtt-p50")
    } else {
        String::new()
    };
    format!(
        "{:>7} {:>11} {:>7}  {:>11} {:>7} {:>7}{rtt}  {:>9}",
        "time", "tx", "tx-loss", "rx", "lost", "rx-loss", "cpu l/r"
    )
}

/// A count in at most 7 characters: as is below ten million, else `12.35M`, `4.08G`.
fn count7(n: u64) -> String {
    match n {
        0..=9_999_999 => n.to_string(),
        10_000_000..=999_999_999 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

/// A percentage field as `12.34%`, `-` when null.
fn pct2(r: &Record, k: &record::Field) -> String {
    r.get(k).as_f64().map_or("-".into(), |v| format!("{v:.2}%"))
}

/// One interval as a text line (`lost` is this interval's, as in JSON).
pub fn interval_line(r: &Record, wide: bool, latency: bool) -> String {
    let _ = wide; // the wide layout is in builds with the 'tty' feature
    let cpu = |k: &record::Field| match r.get(k) {
        Value::Null => "-".to_string(),
        v => format!("{}%", v.plain()),
    };
    let cpu = format!("{}/{}", cpu(&F::LOCAL_CPU), cpu(&F::REMOTE_CPU));
    let rate = |k: &record::Field| format_rate(r.f64(k));
    let ms = |k: &record::Field| r.get(k).as_f64().map(|v| format!("{v:.2}ms"));
    let lost = count7(r.get(&F::LOST_PACKETS).as_f64().unwrap_or(0.0) as u64);
    #[cfg(feature = "tty")]
    if wide {
        let rtt = match (latency, ms(&F::RTT_P50_MS), ms(&F::RTT_P90_MS)) {
            (false, ..) => String::new(),
            (true, Some(a), Some(b)) => format!("  {:>17}", format!("{a}/{b}")),
            (true, ..) => format!("  {:>17}", "-"),
        };
        let dlvd = r
            .get(&F::TX_DELIVERED_BPS)
            .as_f64()
            .map_or("-".into(), format_rate);
        return format!(
            "{:>6.1}s {:>11} {:>11} {:>11} {:>11} {:>7}  {:>11} {:>11} {:>11} {:>7} {:>7}  {:>9}{rtt}",
            r.f64(&F::ELAPSED_S),
            rate(&F::TX_CURRENT_BPS),
            rate(&F::TX_10S_AVG_BPS),
            rate(&F::TX_TOTAL_AVG_BPS),
            dlvd,
            pct2(r, &F::TX_LOSS_PCT),
            rate(&F::RX_CURRENT_BPS),
            rate(&F::RX_10S_AVG_BPS),
            rate(&F::RX_TOTAL_AVG_BPS),
            lost,
            pct2(r, &F::RX_LOSS_PCT),
            cpu,
        );
    }
    let rtt = if latency {
        format!("  {:>8}", ms(&F::RTT_P50_MS).unwrap_or_else(|| "-".into()))
    } else {
        String::new()
    };
    format!(
        "{:>6.1}s {:>11} {:>7}  {:>11} {:>7} {:>7}{rtt}  {:>9}",
        r.f64(&F::ELAPSED_S),
        rate(&F::TX_CURRENT_BPS),
        pct2(r, &F::TX_LOSS_PCT),
        rate(&F::RX_CURRENT_BPS),
        lost,
        pct2(r, &F::RX_LOSS_PCT),
        cpu,
    )
}

/// Bytes in decimal units, as rates are: `1.90 GB` (issue 19: a 10-digit count is unreadable).
pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    match b {
        0..=999 => format!("{b} B"),
        1_000..=999_999 => format!("{:.1} kB", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", f / 1e6),
        1_000_000_000..=999_999_999_999 => format!("{:.2} GB", f / 1e9),
        _ => format!("{:.2} TB", f / 1e12),
    }
}

fn summary_text(out: &mut impl Write, r: &Record) -> io::Result<()> {
    let pct = |k: &record::Field| r.get(k).as_f64().map_or("-".into(), |c| format!("{c:.0}%"));
    let yes = |k: &record::Field| *r.get(k) == Value::Bool(true);
    writeln!(out, "--- summary ({}) ---", r.text(&F::END_REASON))?;
    writeln!(
        out,
        "duration {:.1}s  connections {}  auth {}",
        r.f64(&F::DURATION_S),
        r.text(&F::CONNECTIONS),
        r.text(&F::AUTH)
    )?;
    // Delivered and lost beside what was sent (issue 19: a shaped UDP upload showed only
    // what left this host).
    let tx_loss = match (r.get(&F::TX_DELIVERED_BPS).as_f64(), r.get(&F::TX_LOSS_PCT)) {
        (Some(d), Value::Num(..)) => format!(
            "  delivered {}, {} lost",
            format_rate(d),
            pct2(r, &F::TX_LOSS_PCT)
        ),
        _ => String::new(),
    };
    writeln!(
        out,
        "tx-total-average {} ({}){tx_loss}",
        format_rate(r.f64(&F::TX_AVG_BPS)),
        human_bytes(r.f64(&F::TX_BYTES) as u64),
    )?;
    let rx_loss = match r.get(&F::RX_LOSS_PCT) {
        Value::Num(..) => format!(
            "  lost {} datagrams ({})",
            r.text(&F::LOST_PACKETS),
            pct2(r, &F::RX_LOSS_PCT)
        ),
        _ => String::new(),
    };
    writeln!(
        out,
        "rx-total-average {} ({}){rx_loss}",
        format_rate(r.f64(&F::RX_AVG_BPS)),
        human_bytes(r.f64(&F::RX_BYTES) as u64),
    )?;
    let bound = if yes(&F::REMOTE_RX_LOWER_BOUND) {
        " (at least)"
    } else {
        ""
    };
    writeln!(
        out,
        "remote received {}{bound}  cpu local {} remote {}",
        human_bytes(r.f64(&F::REMOTE_RX_BYTES) as u64),
        pct(&F::LOCAL_CPU_AVG),
        pct(&F::REMOTE_CPU_AVG),
    )?;
    let udp = r.text(&F::PROTOCOL) == "udp";
    if udp && r.text(&F::DIRECTION) != "transmit" {
        let host = match r.get(&F::LOST_HOST) {
            Value::Null => "unknown".to_string(),
            // GRO: scaled from the kernel's buffer drops, an estimate (udpdrops.rs)
            v if r.text(&F::UDP_RX_IO) == "gro" => format!("~{}", v.plain()),
            v => v.plain(),
        };
        writeln!(
            out,
            "  lost on the wire {}  dropped by this host {host}  reordered {}  duplicates {}",
            r.text(&F::LOST_WIRE),
            r.text(&F::REORDERED),
            r.text(&F::DUPLICATES),
        )?;
    }
    let tcp = r.get(&F::TCP);
    if *tcp != Value::Null {
        let total = tcp.field(key::TOTAL);
        let ms = |k: &str| total.field(k).as_f64().unwrap_or(0.0) / 1000.0;
        writeln!(
            out,
            "  tcp: rtt {:.2} ms (var {:.2} ms)  cwnd {} segments  retransmits {}",
            ms(key::RTT_US),
            ms(key::RTTVAR_US),
            total.field(key::CWND).plain(),
            tcp.field(key::RETRANSMITS).plain(),
        )?;
    }
    if let Value::Str(method) = r.get(&F::RTT_METHOD) {
        let v = |k: &record::Field| {
            r.get(k)
                .as_f64()
                .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
        };
        let bloat = r.get(&F::BUFFERBLOAT_MS).as_f64().map_or_else(
            || "-".to_string(),
            |b| {
                // Rounded first, so a hair below zero prints as +0.00, not -0.00.
                let b = (b * 100.0).round() / 100.0;
                if b < 0.0 {
                    format!("{b:.2} ms")
                } else {
                    format!("+{:.2} ms", b.abs())
                }
            },
        );
        writeln!(
            out,
            "  latency ({method}): idle p50 {} ms   loaded p50 {} p90 {} max {} ms   jitter {} ms",
            v(&F::IDLE_RTT_P50_MS),
            v(&F::LOADED_RTT_P50_MS),
            v(&F::LOADED_RTT_P90_MS),
            v(&F::LOADED_RTT_MAX_MS),
            v(&F::LOADED_JITTER_MS),
        )?;
        writeln!(
            out,
            "  bufferbloat {bloat} (loaded minus idle median)   probes lost {} of {}",
            r.text(&F::RTT_LOST),
            r.text(&F::RTT_SENT),
        )?;
    }
    let c = r.get(&F::THREAD_CPU_MAX);
    let pc = |k: &str| c.field(k).as_f64().unwrap_or(0.0);
    writeln!(
        out,
        "  threads (busiest, % of a core): tx {:.0}  rx {:.0}  status {:.0}",
        pc(key::TX),
        pc(key::RX),
        pc(key::STATUS)
    )?;
    if let Value::Str(v) = r.get(&F::VERDICT) {
        writeln!(out, "  note: {v}")?;
    }
    if yes(&F::REMOTE_RX_LOWER_BOUND) {
        writeln!(
            out,
            "  note: the peer's status carries a 32-bit byte count per second, which cannot \
             hold more than 4 GiB (about 34 Gbit/s): 'remote received' is a lower bound"
        )?;
    }
    if let Some(sent) = r.get(&F::SERVER_SENT_BPS).as_f64() {
        writeln!(
            out,
            "  note: the server sent {} where we asked for more: it capped the rate (its \
             --max-rate or a rate= limit for this user or address) or could not send faster",
            crate::units::format_rate(sent)
        )?;
    }
    if yes(&F::REMOTE_RX_SUSPECT) {
        writeln!(
            out,
            "  note: over the seconds its statuses cover, the peer reported receiving far less \
             than TCP delivered;\n  TCP loses nothing, so this is the peer's counting (e.g. a \
             32-bit counter that wraps), not loss"
        )?;
    }
    Ok(())
}

/// The syslog line for a finished client test.
pub fn client_summary_syslog(r: &Record) -> String {
    format!(
        "test end server={} {}",
        r.text(&F::SERVER),
        r.key_values_except(&[&F::SERVER])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::counters::Snapshot;

    fn totals(sent: u64, remote: u64) -> StatusTotals {
        let mut st = StatusTotals::default();
        st.totals.tx_bytes = sent;
        st.remote_rx_bytes = remote;
        st
    }

    /// A coverage from intervals (elapsed at the end, bytes sent, statuses, their bytes).
    fn cover(iv: &[(f64, u64, u64, u64)]) -> Coverage {
        let mut c = Coverage::default();
        for &(e, tx, n, rx) in iv {
            c.push(e, tx, n, rx);
        }
        c
    }

    /// The note for a TCP test of these intervals: what the old rule and the new one say.
    fn note(iv: &[(f64, u64, u64, u64)]) -> (bool, bool) {
        let c = cover(iv);
        let sent: u64 = iv.iter().map(|i| i.1).sum();
        let old = (c.remote as f64) < sent as f64 * TCP_PLAUSIBLE_SHARE;
        (
            old,
            RemoteTrust::of(&totals(sent, c.remote), true, c.covered_tx).suspect,
        )
    }

    const R: u64 = 100_000_000;

    #[test]
    fn no_note_for_a_ctrl_c_an_early_end_or_a_missing_final_status() {
        // Ctrl-C 2.5 s in: the peer reported two whole seconds; the half second after is not
        // compared (the old rule: 200 of 250 MB, a note).
        let ctrl_c = [(1.0, R, 1, R), (2.0, R, 1, R), (2.5, R / 2, 0, 0)];
        assert_eq!(note(&ctrl_c), (true, false));
        // The peer closed 1.4 s in; its one status arrived in the last interval.
        let early = [(1.0, R, 0, 0), (1.4, 4 * R / 10, 1, R)];
        assert_eq!(note(&early), (true, false));
        // A 3 s test against a peer that never reports its last partial second, with its
        // statuses arriving late (two in one interval).
        let seed = [
            (1.0, R, 0, 0),
            (2.0, R, 2, 2 * R),
            (3.0, R, 0, 0),
            (3.05, R / 20, 0, 0),
        ];
        assert_eq!(note(&seed), (true, false));
        // Statuses missing in the middle, and the rest covering exactly what they say.
        let gaps = [
            (1.0, R, 1, R),
            (2.0, R, 0, 0),
            (3.0, R, 0, 0),
            (4.0, R, 1, R),
        ];
        assert_eq!(note(&gaps), (true, false));
    }

    #[test]
    fn a_real_shortfall_gets_the_note() {
        // Seen with another implementation: 14.84 GB sent over TCP, 1.94 GB "received".
        let per = 1_484_000_000u64;
        let wrap = 3 * (1u64 << 32);
        let iv: Vec<_> = (1..=10)
            .map(|i| (f64::from(i), per, 1, (per * 10 - wrap) / 10))
            .collect();
        assert_eq!(note(&iv), (true, true));
        let c = cover(&iv);
        // Over UDP the same figures are loss, and are reported as such.
        assert!(!RemoteTrust::of(&totals(per * 10, c.remote), false, c.covered_tx).suspect);
        // Far less over the covered seconds, however it came about.
        assert!(RemoteTrust::of(&totals(2_000, 500), true, 1_000).suspect);
        assert!(!RemoteTrust::of(&totals(2_000, 950), true, 1_000).suspect);
    }

    #[test]
    fn remote_trust_lower_bound() {
        let ok = totals(1_000_000, 999_000);
        assert_eq!(
            RemoteTrust::of(&ok, true, 1_000_000),
            RemoteTrust::default()
        );
        assert!(!RemoteTrust::of(&totals(0, 0), true, 0).suspect);
        // A saturated status, or a second in which we sent more than 2^32 bytes.
        let mut sat = totals(10, 10);
        sat.remote_rx_saturated = 1;
        assert!(RemoteTrust::of(&sat, true, 10).lower_bound);
        let mut fast = totals(10, 10);
        fast.tx_peak_status_bytes = u64::from(u32::MAX) + 1;
        assert!(RemoteTrust::of(&fast, false, 10).lower_bound);
        fast.tx_peak_status_bytes = u64::from(u32::MAX);
        assert!(!RemoteTrust::of(&fast, false, 10).lower_bound);
    }

    #[test]
    fn coverage_matches_statuses_to_seconds_and_stays_bounded() {
        let mut c = Coverage::default();
        // Half-second intervals: a status covers two of them.
        assert_eq!(c.push(0.5, 50, 0, 0), None);
        assert_eq!(c.push(1.0, 50, 1, 65), Some((1.0, 100, 65)));
        assert_eq!(c.push(1.5, 100, 0, 0), None);
        // The second status covers 1.0-2.0 s: 100 + 100 sent.
        assert_eq!(c.push(2.0, 100, 1, 130), Some((1.0, 200, 130)));
        // A final status for the partial last second (after our FIN) covers up to the end.
        let (secs, tx, rx) = c.push(2.2, 40, 1, 40).unwrap();
        assert!(
            (secs - 0.2).abs() < 1e-9 && (tx, rx) == (40, 40),
            "{secs} {tx} {rx}"
        );
        assert_eq!((c.covered_tx, c.remote), (340, 235));
        for i in 3..10_000 {
            c.push(f64::from(i), 10, 1, 10);
        }
        assert!(c.sent.len() <= 2, "{}", c.sent.len());
    }

    fn sample(
        elapsed: f64,
        tx: u64,
        rx_pkts: u64,
        lost: u64,
        statuses: u64,
        remote: u64,
    ) -> Sample {
        Sample {
            elapsed: Duration::from_secs_f64(elapsed),
            dt: Duration::from_secs(1),
            delta: Snapshot {
                tx_bytes: tx,
                rx_bytes: rx_pkts * 1500,
                tx_packets: tx / 1500,
                rx_packets: rx_pkts,
                lost,
                ..Snapshot::default()
            },
            remote_rx_bytes: remote,
            remote_statuses: statuses,
            local_cpu: Some(12),
            remote_cpu: Some(45),
            tx_target_bps: 150_000_000,
            senders: vec![],
            host_drops: Some(0),
            tcp: None,
            role_cpu: crate::engine::RoleCpu::default(),
        }
    }

    /// A UDP both test through a path shaped to about 100 Mbit/s, as issue 19's.
    fn shaped() -> (ClientReporter<Vec<u8>>, Vec<Record>) {
        let mut rep = ClientReporter::new(Vec::new(), Output::Text);
        rep.start(&start_record(
            "192.0.2.1:2000",
            Protocol::Udp,
            Direction::Both,
            1,
        ))
        .unwrap();
        let per = 18_750_000; // 150 Mbit/s
        let mut recs = Vec::new();
        for i in 1..=3u32 {
            let lost = if i == 3 { 12_345_678 } else { 2_235 };
            let lat = IntervalRtt {
                sent: 10,
                lost: 0,
                rtt: Some(Rtt {
                    count: 10,
                    min_ms: 1.0,
                    avg_ms: 2.0,
                    p50_ms: 1.5,
                    p90_ms: 3.25,
                    max_ms: 4.0,
                    jitter_ms: 0.5,
                }),
            };
            let s = sample(f64::from(i), per, 6_000, lost, 1, per * 65 / 100);
            recs.push(rep.interval_record(&s, Some(&lat)));
        }
        (rep, recs)
    }

    #[test]
    fn interval_records_carry_loss_both_ways() {
        let (_, recs) = shaped();
        let r = &recs[1];
        assert_eq!(r.get(&F::TX_LOSS_PCT).json(), "35");
        assert_eq!(r.get(&F::TX_DELIVERED_BPS).json(), "97500000");
        assert_eq!(r.get(&F::LOST_PACKETS).json(), "2235");
        assert_eq!(r.get(&F::RX_LOSS_PCT).json(), "27.140");
    }

    /// Golden: the 80-column and the wide interval lines. A change here is deliberate.
    #[test]
    fn golden_interval_lines() {
        let (_, recs) = shaped();
        let narrow = [
            interval_head(false, true),
            interval_line(&recs[1], false, true),
            interval_line(&recs[2], false, true),
            interval_head(false, false),
            interval_line(&recs[1], false, false),
        ];
        assert_eq!(
            narrow.join("\n"),
            "   time          tx tx-loss           rx    lost rx-loss   rtt-p50    cpu l/r\n\
            \x20  2.0s  150.0 Mbps  35.00%    72.0 Mbps    2235  27.14%    1.50ms    12%/45%\n\
            \x20  3.0s  150.0 Mbps  35.00%    72.0 Mbps  12.35M  99.95%    1.50ms    12%/45%\n\
            \x20  time          tx tx-loss           rx    lost rx-loss    cpu l/r\n\
            \x20  2.0s  150.0 Mbps  35.00%    72.0 Mbps    2235  27.14%    12%/45%"
        );
        for (i, l) in narrow.iter().enumerate() {
            let latency = i < 3;
            assert_eq!(l.chars().count(), interval_width(false, latency), "{l}");
            assert!(l.chars().count() <= 80);
        }
        // The wide layout is in builds with the 'tty' feature (the router image has none).
        #[cfg(feature = "tty")]
        golden_wide_interval_lines(&recs);
    }

    #[cfg(feature = "tty")]
    fn golden_wide_interval_lines(recs: &[Record]) {
        let wide = [
            interval_head(true, true),
            interval_line(&recs[1], true, true),
        ];
        assert_eq!(
            wide.join("\n"),
            "   time  tx-current  tx-10s-avg      tx-avg     tx-dlvd tx-loss   rx-current  rx-10s-avg      rx-avg    lost rx-loss    cpu l/r        rtt p50/p90\n\
            \x20  2.0s  150.0 Mbps  150.0 Mbps  150.0 Mbps   97.5 Mbps  35.00%    72.0 Mbps   72.0 Mbps   72.0 Mbps    2235  27.14%    12%/45%      1.50ms/3.25ms"
        );
        for l in wide {
            assert_eq!(l.chars().count(), interval_width(true, true), "{l}");
        }
        assert_eq!(
            interval_head(true, false).len(),
            interval_width(true, false)
        );
    }

    #[test]
    fn pacing_lines_only_when_asked() {
        let run = |pacing: bool| {
            let mut rep = ClientReporter::new(Vec::new(), Output::Text).with_pacing(pacing);
            rep.start(&start_record(
                "h:2000",
                Protocol::Udp,
                Direction::ServerRx,
                1,
            ))
            .unwrap();
            let mut s = sample(1.0, 1_000, 0, 0, 0, 0);
            s.senders = vec![crate::engine::SenderAudit {
                thread: 0,
                target_bps: 1_000_000,
                achieved_bps: 999_000.0,
                gap_p50_us: Some(12.0),
                gap_p99_us: Some(80.0),
                burst_avg: Some(1.0),
                burst_max: Some(2),
            }];
            rep.sample(&s, None).unwrap();
            String::from_utf8(rep.out).unwrap()
        };
        assert!(!run(false).contains("pacing"));
        assert!(run(true).contains("pacing tx-0: asked 1.0 Mbps"));
    }

    fn result(protocol: Protocol, direction: Direction) -> ClientResult {
        let st = StatusTotals {
            totals: Snapshot {
                tx_bytes: 186_375_000,
                rx_bytes: 121_500_000,
                rx_packets: 81_000,
                lost: 22_351,
                ..Snapshot::default()
            },
            remote_rx_bytes: 1_896_034_624,
            local_cpu_avg: Some(12.0),
            remote_cpu_avg: Some(45.0),
            host_drops: Some(351),
            ..StatusTotals::default()
        };
        ClientResult {
            summary: crate::engine::Summary {
                duration: Duration::from_secs(10),
                status: st,
                end_reason: crate::engine::StopReason::Completed,
                tcp_links_ran: None,
                udp_tx_io: None,
                udp_rx_io: None,
            },
            server: "192.0.2.1:2000".parse().unwrap(),
            auth: crate::auth::AuthMethod::Md5,
            connections: 1,
            udp_port: Some(2001),
            protocol,
            control_timeout: Duration::from_secs(10),
            direction,
            asked_remote_bps: 0,
            #[cfg(feature = "speedtest")]
            congestion: None,
        }
    }

    /// Golden: the text summary of a UDP both test (delivered beside sent, loss both ways,
    /// humanised bytes) and of a TCP send cut short by Ctrl-C (no note).
    #[test]
    fn golden_summary() {
        let t0 = SystemTime::UNIX_EPOCH;
        let cov = cover(&[(9.0, 167_737_500, 9, 9 * 12_187_500)]);
        let r = summary_record(
            &result(Protocol::Udp, Direction::Both),
            "h:2000",
            t0,
            None,
            &cov,
        );
        assert_eq!(r.get(&F::TX_LOSS_PCT).json(), "34.608");
        let mut out = Vec::new();
        summary_text(&mut out, &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "--- summary (completed) ---\n\
             duration 10.0s  connections 1  auth md5\n\
             tx-total-average 149.1 Mbps (186.4 MB)  delivered 97.5 Mbps, 34.61% lost\n\
             rx-total-average 97.2 Mbps (121.5 MB)  lost 22351 datagrams (21.63%)\n\
             remote received 1.90 GB  cpu local 12% remote 45%\n\
             \x20 lost on the wire 22000  dropped by this host 351  reordered 0  duplicates 0\n\
             \x20 threads (busiest, % of a core): tx 0  rx 0  status 0\n"
        );
        let mut tcp = result(Protocol::Tcp, Direction::ServerRx);
        tcp.summary.status.remote_rx_bytes = 150_000_000;
        let cov = cover(&[(1.0, R, 1, R), (1.5, R / 2, 0, 0)]);
        let r = summary_record(&tcp, "h:2000", t0, None, &cov);
        assert_eq!(*r.get(&F::TX_LOSS_PCT), Value::Null);
        let mut out = Vec::new();
        summary_text(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("note"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }

    #[test]
    fn bytes_and_counts_are_humanised() {
        assert_eq!(human_bytes(1_896_034_624), "1.90 GB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(count7(9_999_999), "9999999");
        assert_eq!(count7(4_080_958_000), "4.08G");
    }

    /// Golden: the text header, and a TCP summary with every optional line: TCP_INFO, the
    /// latency probe, the verdict, a saturated peer counter and a short peer count.
    #[test]
    fn golden_header_and_full_tcp_summary() {
        let mut rep = ClientReporter::new(Vec::new(), Output::Text);
        rep.start(&start_record(
            "198.51.100.1:2000",
            Protocol::Tcp,
            Direction::Both,
            4,
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(rep.out).unwrap(),
            "btest tcp both to 198.51.100.1:2000, 4 connection(s)\n"
        );
        let mut r = result(Protocol::Tcp, Direction::Both);
        r.connections = 4;
        let st = &mut r.summary.status;
        st.remote_rx_saturated = 1;
        st.remote_rx_bytes = 1_000_000;
        st.verdict = Some("tx thread saturated (99% of a core): this host limited the rate".into());
        let stats = crate::engine::tcpinfo::TcpStats {
            rtt_us: 1_250,
            rttvar_us: 500,
            cwnd: 10,
            mss: 1448,
            retransmits_total: 7,
            ..Default::default()
        };
        st.tcp = Some(crate::engine::TcpSample {
            per_connection: vec![stats],
            total: stats,
            retransmits: 7,
        });
        st.role_cpu_max = crate::engine::RoleCpu {
            tx: 99.04,
            rx: 12.5,
            status: 0.4,
        };
        let rtt = |p50: f64| Rtt {
            count: 10,
            min_ms: p50 / 2.0,
            avg_ms: p50,
            p50_ms: p50,
            p90_ms: p50 * 2.0,
            max_ms: p50 * 3.0,
            jitter_ms: 0.125,
        };
        let lat = LatencySummary {
            method: "echo",
            idle: Some(rtt(0.5)),
            loaded: Some(rtt(20.0)),
            sent: 100,
            lost: 2,
        };
        let cov = cover(&[(10.0, 186_375_000, 10, 1_000_000)]);
        let rec = summary_record(
            &r,
            "198.51.100.1:2000",
            SystemTime::UNIX_EPOCH,
            Some(&lat),
            &cov,
        );
        let mut out = Vec::new();
        summary_text(&mut out, &rec).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "--- summary (completed) ---\n\
             duration 10.0s  connections 4  auth md5\n\
             tx-total-average 149.1 Mbps (186.4 MB)\n\
             rx-total-average 97.2 Mbps (121.5 MB)\n\
             remote received 1.0 MB (at least)  cpu local 12% remote 45%\n\
             \x20 tcp: rtt 1.25 ms (var 0.50 ms)  cwnd 10 segments  retransmits 7\n\
             \x20 latency (echo): idle p50 0.50 ms   loaded p50 20.00 p90 40.00 max 60.00 ms   jitter 0.12 ms\n\
             \x20 bufferbloat +19.50 ms (loaded minus idle median)   probes lost 2 of 100\n\
             \x20 threads (busiest, % of a core): tx 99  rx 12  status 0\n\
             \x20 note: tx thread saturated (99% of a core): this host limited the rate\n\
             \x20 note: the peer's status carries a 32-bit byte count per second, which cannot hold \
             more than 4 GiB (about 34 Gbit/s): 'remote received' is a lower bound\n\
             \x20 note: over the seconds its statuses cover, the peer reported receiving far less \
             than TCP delivered;\n  TCP loses nothing, so this is the peer's counting (e.g. a \
             32-bit counter that wraps), not loss\n"
        );
        // The JSON of the same record carries the fields the text reads.
        let json = rec.to_json();
        for kv in [
            "\"idle_rtt_p50_ms\":0.500",
            "\"loaded_rtt_p90_ms\":40",
            "\"bufferbloat_ms\":19.500",
            "\"rtt_method\":\"echo\"",
            "\"tcp_rtt_ms\":1.250",
            "\"remote_rx_suspect\":true",
        ] {
            assert!(json.contains(kv), "{kv} in {json}");
        }
    }
}
