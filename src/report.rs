//! Turns engine results into [`Record`]s (record.rs owns their fields) and renders them for
//! people: the text layouts of the client's intervals and summary and the server's session
//! lines. JSON, CSV and syslog come straight from the record.
//!
//! Writes only to the `Write` it is given. Rates: UDP counts IP+UDP headers (as RouterOS),
//! TCP counts payload. Must not: decide whether a test succeeded (client.rs does).

use std::time::{Duration, SystemTime};

use crate::config::Output;
use crate::engine::StatusTotals;
use crate::export::csv::rfc3339_utc;
use crate::record::{self, Kind, Record, Value};
#[cfg(feature = "server")]
use crate::server::{ServerEvent, SessionRecord, SessionStart};
use crate::units::format_rate;
#[cfg(feature = "client")]
use {
    crate::client::ClientResult,
    crate::engine::Sample,
    crate::wire::{Direction, Protocol},
    std::collections::VecDeque,
    std::io::{self, Write},
};

fn bps(bytes: u64, dt: Duration) -> f64 {
    let s = dt.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        bytes as f64 * 8.0 / s
    }
}

/// Net lost count (the wrapping sum may dip below zero within an interval).
fn lost(v: u64) -> u64 {
    (v as i64).max(0) as u64
}

#[cfg(feature = "client")]
/// Sequence gaps minus what our own sockets dropped: what the network lost.
fn wire_lost(gaps: u64, host: Option<u64>) -> u64 {
    lost(gaps).saturating_sub(host.unwrap_or(0))
}

/// One decimal, as the CSV always had for CPU.
fn cpu_avg(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |c| Value::Num(c, 1))
}

/// How UDP moved, both roles' last fields.
fn io_fields(b: &mut record::Builder, s: &crate::engine::Summary) {
    let m = |m: Option<crate::engine::udpio::Method>| Value::opt_str(m.map(|m| m.as_str()));
    b.push("udp_tx_io", m(s.udp_tx_io))
        .push("udp_rx_io", m(s.udp_rx_io));
}

/// The totals both roles report: duration through remote_rx_bytes.
fn totals(b: &mut record::Builder, st: &StatusTotals, d: Duration) {
    b.push("duration_s", Value::num(d.as_secs_f64()))
        .int("tx_bytes", st.totals.tx_bytes)
        .int("rx_bytes", st.totals.rx_bytes)
        .push("tx_avg_bps", Value::Num(bps(st.totals.tx_bytes, d), 0))
        .push("rx_avg_bps", Value::Num(bps(st.totals.rx_bytes, d), 0))
        .int("lost_packets", lost(st.totals.lost))
        .push("local_cpu_avg", cpu_avg(st.local_cpu_avg))
        .push("remote_cpu_avg", cpu_avg(st.remote_cpu_avg))
        .int("remote_rx_bytes", st.remote_rx_bytes);
}

#[cfg(feature = "client")]
mod client_records {
    use super::*;
    use crate::engine::tcpinfo::TcpStats;
    use crate::engine::{RoleCpu, TcpSample};

    fn tcp_stats(t: &TcpStats) -> Value {
        record::object(&[
            ("rtt_us", Value::Int(u64::from(t.rtt_us))),
            ("rttvar_us", Value::Int(u64::from(t.rttvar_us))),
            ("cwnd", Value::Int(u64::from(t.cwnd))),
            ("mss", Value::Int(u64::from(t.mss))),
            (
                "retransmits_total",
                Value::Int(u64::from(t.retransmits_total)),
            ),
            (
                "delivery_rate_bps",
                t.delivery_rate_bps.map_or(Value::Null, Value::Int),
            ),
        ])
    }

    pub(super) fn tcp(t: Option<&TcpSample>) -> Value {
        let Some(t) = t else { return Value::Null };
        record::object(&[
            ("retransmits", Value::Int(t.retransmits)),
            ("total", tcp_stats(&t.total)),
            (
                "per_connection",
                record::array(t.per_connection.iter().map(tcp_stats)),
            ),
        ])
    }

    pub(super) fn roles(c: RoleCpu) -> Value {
        let r = |v: f64| Value::Num((v * 10.0).round() / 10.0, 1);
        record::object(&[("tx", r(c.tx)), ("rx", r(c.rx)), ("status", r(c.status))])
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

#[cfg(feature = "client")]
/// Round-trip figures of a set of latency probes, in milliseconds (probe/stats.rs computes
/// them).
pub use crate::probe::stats::RttStats as Rtt;

#[cfg(feature = "client")]
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

#[cfg(feature = "client")]
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

#[cfg(feature = "client")]
fn ms(v: f64) -> Value {
    Value::Num(v, 3)
}

#[cfg(feature = "client")]
fn tcp_rtt_ms(t: Option<&crate::engine::TcpSample>) -> Value {
    t.filter(|t| t.total.rtt_us > 0)
        .map_or(Value::Null, |t| ms(f64::from(t.total.rtt_us) / 1000.0))
}

#[cfg(feature = "client")]
/// The `rtt_*` fields of a summary for one phase (`idle` or `loaded`).
fn rtt_phase(b: &mut record::Builder, phase: &str, r: Option<&Rtt>) {
    let v = |f: fn(&Rtt) -> f64| r.map_or(Value::Null, |r| ms(f(r)));
    b.push(&format!("{phase}_rtt_min_ms"), v(|r| r.min_ms))
        .push(&format!("{phase}_rtt_avg_ms"), v(|r| r.avg_ms))
        .push(&format!("{phase}_rtt_p50_ms"), v(|r| r.p50_ms))
        .push(&format!("{phase}_rtt_p90_ms"), v(|r| r.p90_ms))
        .push(&format!("{phase}_rtt_max_ms"), v(|r| r.max_ms))
        .push(&format!("{phase}_jitter_ms"), v(|r| r.jitter_ms));
}

#[cfg(feature = "client")]
/// The `start` record.
pub fn start_record(
    server: &str,
    protocol: Protocol,
    direction: Direction,
    connections: u8,
) -> Record {
    Record::build(Kind::Start, |b| {
        b.str("server", server)
            .str("protocol", protocol.as_str())
            .str("direction", direction.client_word())
            .int("connections", u64::from(connections));
    })
}

#[cfg(feature = "client")]
/// What the peer's byte counts can be trusted for (issue 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteTrust {
    /// The peer's figure is a lower bound: its 32-bit per-second field saturated, or we sent
    /// more in some second than the field can carry.
    pub lower_bound: bool,
    /// TCP: the peer reported far less than TCP delivered, which cannot be loss (a peer whose
    /// counter wraps at 2^32, or one that sends no statuses).
    pub suspect: bool,
}

#[cfg(feature = "client")]
/// Below this share of what we sent, a TCP peer's figure is implausible. TCP delivers every
/// byte; after the drain the peer's final status covers what was in flight, so only a peer
/// that never reported the end (a few MB at most) comes anywhere near it.
const TCP_PLAUSIBLE_SHARE: f64 = 0.9;

#[cfg(feature = "client")]
impl RemoteTrust {
    /// Judges the peer's figure for a test that sent `st.totals.tx_bytes`.
    pub fn of(st: &StatusTotals, tcp: bool) -> RemoteTrust {
        let sent = st.totals.tx_bytes;
        RemoteTrust {
            lower_bound: st.remote_rx_saturated > 0
                || st.tx_peak_status_bytes > u64::from(u32::MAX),
            suspect: tcp
                && sent > 0
                && (st.remote_rx_bytes as f64) < sent as f64 * TCP_PLAUSIBLE_SHARE,
        }
    }
}

#[cfg(feature = "client")]
/// The `summary` record of a finished test.
pub fn summary_record(
    r: &ClientResult,
    server: &str,
    started: SystemTime,
    lat: Option<&LatencySummary>,
) -> Record {
    let st = &r.summary.status;
    let d = r.summary.duration;
    let trust = RemoteTrust::of(st, r.protocol == Protocol::Tcp);
    Record::build(Kind::Summary, |b| {
        b.str("timestamp", &rfc3339_utc(started))
            .str("server", server)
            .str("protocol", r.protocol.as_str())
            .str("direction", r.direction.client_word())
            .int("connections", r.connections as u64);
        totals(b, st, d);
        b.str("auth", r.auth.as_str())
            .str("end_reason", r.summary.end_reason.as_str())
            .int("lost_wire", wire_lost(st.totals.lost, st.host_drops))
            .push("lost_host", Value::opt_num(st.host_drops.map(|h| h as f64)))
            .int("reordered", st.totals.reordered)
            .int("duplicates", st.totals.duplicates)
            .push("tcp", client_records::tcp(st.tcp.as_ref()))
            .push("thread_cpu_max", client_records::roles(st.role_cpu_max))
            .push(
                "remote_rx_saturated",
                Value::Bool(st.remote_rx_saturated > 0),
            )
            .push("remote_rx_lower_bound", Value::Bool(trust.lower_bound))
            .push("remote_rx_suspect", Value::Bool(trust.suspect))
            .push("verdict", Value::opt_str(r.verdict()));
        io_fields(b, &r.summary);
        b.push("server_sent_bps", Value::opt_num(r.server_sent_short()));
        b.push("rtt_method", Value::opt_str(lat.map(|l| l.method)));
        rtt_phase(b, "idle", lat.and_then(|l| l.idle.as_ref()));
        rtt_phase(b, "loaded", lat.and_then(|l| l.loaded.as_ref()));
        let count = |f: fn(&LatencySummary) -> u64| lat.map_or(Value::Null, |l| Value::Int(f(l)));
        b.push("rtt_sent", count(|l| l.sent))
            .push("rtt_lost", count(|l| l.lost));
        let bloat = lat
            .and_then(|l| Some(l.loaded?.p50_ms - l.idle?.p50_ms))
            .map_or(Value::Null, ms);
        b.push("bufferbloat_ms", bloat)
            .push("tcp_rtt_ms", tcp_rtt_ms(st.tcp.as_ref()))
            .int("foreign_datagrams", st.totals.foreign);
    })
}

#[cfg(feature = "client")]
/// The `error` record.
pub fn error_record(e: &crate::Error) -> Record {
    Record::build(Kind::Error, |b| {
        b.str("message", &e.to_string())
            .push("phase", Value::opt_str(e.phase().map(|p| p.as_str())));
    })
}

#[cfg(feature = "client")]
/// Client-side reporter: interval lines and the final summary.
pub struct ClientReporter<W: Write> {
    out: W,
    output: Output,
    window: VecDeque<(Duration, u64, u64)>,
    total_tx: u64,
    total_rx: u64,
    total_lost: u64,
    lines: u64,
    latency: bool,
    live: Option<crate::termview::LiveView>,
}

#[cfg(feature = "client")]
/// Averages over the last this-many seconds, as RouterOS' "10-second average".
const WINDOW: Duration = Duration::from_secs(10);

#[cfg(feature = "client")]
impl<W: Write> ClientReporter<W> {
    /// A reporter writing to `out`.
    pub fn new(out: W, output: Output) -> Self {
        ClientReporter {
            out,
            output,
            window: VecDeque::new(),
            total_tx: 0,
            total_rx: 0,
            total_lost: 0,
            lines: 0,
            latency: false,
            live: None,
        }
    }

    /// The start record (JSON) or header (text).
    pub fn start(&mut self, r: &Record) -> io::Result<()> {
        match self.output {
            Output::Json => writeln!(self.out, "{}", r.to_json()),
            Output::Text => writeln!(
                self.out,
                "btest {} {} to {}, {} connection(s)",
                r.text("protocol"),
                r.text("direction"),
                r.text("server"),
                r.text("connections"),
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
        self.total_lost = self.total_lost.wrapping_add(s.delta.lost);
        Record::build(Kind::Interval, |b| {
            b.num("elapsed_s", s.elapsed.as_secs_f64())
                .num("interval_s", s.dt.as_secs_f64())
                .num("tx_current_bps", bps(s.delta.tx_bytes, s.dt))
                .num("tx_10s_avg_bps", bps(wtx, span))
                .num("tx_total_avg_bps", bps(self.total_tx, s.elapsed))
                .num("rx_current_bps", bps(s.delta.rx_bytes, s.dt))
                .num("rx_10s_avg_bps", bps(wrx, span))
                .num("rx_total_avg_bps", bps(self.total_rx, s.elapsed))
                .int("tx_bytes", s.delta.tx_bytes)
                .int("rx_bytes", s.delta.rx_bytes)
                .int("lost_packets", lost(s.delta.lost))
                .int("remote_rx_bytes", s.remote_rx_bytes)
                .push("local_cpu", Value::opt_num(s.local_cpu.map(f64::from)))
                .push("remote_cpu", Value::opt_num(s.remote_cpu.map(f64::from)))
                .int("lost_wire", wire_lost(s.delta.lost, s.host_drops))
                .push("lost_host", Value::opt_num(s.host_drops.map(|h| h as f64)))
                .int("reordered", s.delta.reordered)
                .int("duplicates", s.delta.duplicates)
                .int("tx_target_bps", s.tx_target_bps)
                .push("senders", client_records::senders(s))
                .push("tcp", client_records::tcp(s.tcp.as_ref()))
                .push("thread_cpu", client_records::roles(s.role_cpu));
            let rtt = lat.and_then(|l| l.rtt);
            let v = |f: fn(&Rtt) -> f64| rtt.as_ref().map_or(Value::Null, |r| ms(f(r)));
            b.push("rtt_sent", lat.map_or(Value::Null, |l| Value::Int(l.sent)))
                .push("rtt_lost", lat.map_or(Value::Null, |l| Value::Int(l.lost)))
                .push("rtt_min_ms", v(|r| r.min_ms))
                .push("rtt_avg_ms", v(|r| r.avg_ms))
                .push("rtt_p50_ms", v(|r| r.p50_ms))
                .push("rtt_p90_ms", v(|r| r.p90_ms))
                .push("rtt_max_ms", v(|r| r.max_ms))
                .push("rtt_jitter_ms", v(|r| r.jitter_ms))
                .push("tcp_rtt_ms", tcp_rtt_ms(s.tcp.as_ref()));
        })
    }

    /// Latency columns in the text lines (a probe runs).
    pub fn with_latency(mut self, on: bool) -> Self {
        self.latency = on;
        self
    }

    /// The live view, redrawn under the text lines after each interval.
    pub fn with_live(mut self, view: Option<crate::termview::LiveView>) -> Self {
        self.live = view;
        self
    }

    /// Clears the live view's line, so a following line starts clean.
    fn clear_live(&mut self) -> io::Result<()> {
        if self.live.is_some() {
            write!(self.out, "{}", crate::termview::CLEAR_LINE)?;
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
        if let Some(v) = &mut self.live {
            v.push(
                r.f64("tx_current_bps"),
                r.f64("rx_current_bps"),
                r.get("rtt_p50_ms").as_f64(),
            );
            let line = v.render();
            write!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(r)
    }

    fn interval_text(&mut self, s: &Sample, r: &Record) -> io::Result<()> {
        let rtt_head = if self.latency { "  rtt p50/p90" } else { "" };
        if self.lines % 20 == 0 {
            writeln!(
                self.out,
                "{:>7} {:>11} {:>11} {:>11}  {:>11} {:>11} {:>11} {:>6} {:>9}{rtt_head}",
                "time",
                "tx-current",
                "tx-10s-avg",
                "tx-avg",
                "rx-current",
                "rx-10s-avg",
                "rx-avg",
                "lost",
                "cpu l/r"
            )?;
        }
        let rtt = if !self.latency {
            String::new()
        } else {
            match (r.get("rtt_p50_ms").as_f64(), r.get("rtt_p90_ms").as_f64()) {
                (Some(a), Some(b)) => format!("  {a:.2}/{b:.2}ms"),
                _ => "  -".to_string(),
            }
        };
        self.lines += 1;
        let pct = |k: &str| match r.get(k) {
            Value::Null => "-".to_string(),
            v => format!("{}%", v.plain()),
        };
        writeln!(
            self.out,
            "{:>6.1}s {:>11} {:>11} {:>11}  {:>11} {:>11} {:>11} {:>6} {:>9}{rtt}",
            r.f64("elapsed_s"),
            format_rate(r.f64("tx_current_bps")),
            format_rate(r.f64("tx_10s_avg_bps")),
            format_rate(r.f64("tx_total_avg_bps")),
            format_rate(r.f64("rx_current_bps")),
            format_rate(r.f64("rx_10s_avg_bps")),
            format_rate(r.f64("rx_total_avg_bps")),
            lost(self.total_lost),
            format!("{}/{}", pct("local_cpu"), pct("remote_cpu")),
        )?;
        // Pacing audit: only for paced senders, so a user can see the pacing held.
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

#[cfg(feature = "client")]
fn summary_text(out: &mut impl Write, r: &Record) -> io::Result<()> {
    let pct = |k: &str| r.get(k).as_f64().map_or("-".into(), |c| format!("{c:.0}%"));
    let yes = |k: &str| *r.get(k) == Value::Bool(true);
    writeln!(out, "--- summary ({}) ---", r.text("end_reason"))?;
    writeln!(
        out,
        "duration {:.1}s  connections {}  auth {}",
        r.f64("duration_s"),
        r.text("connections"),
        r.text("auth")
    )?;
    writeln!(
        out,
        "tx-total-average {}  ({} bytes)   rx-total-average {}  ({} bytes)",
        format_rate(r.f64("tx_avg_bps")),
        r.text("tx_bytes"),
        format_rate(r.f64("rx_avg_bps")),
        r.text("rx_bytes"),
    )?;
    let bound = if yes("remote_rx_lower_bound") {
        " (at least)"
    } else {
        ""
    };
    writeln!(
        out,
        "lost-packets {}  remote received {}{bound} bytes  cpu local {} remote {}",
        r.text("lost_packets"),
        r.text("remote_rx_bytes"),
        pct("local_cpu_avg"),
        pct("remote_cpu_avg"),
    )?;
    let udp = r.text("protocol") == "udp";
    if udp && r.text("direction") != "transmit" {
        let host = match r.get("lost_host") {
            Value::Null => "unknown".to_string(),
            // GRO: scaled from the kernel's buffer drops, an estimate (udpdrops.rs)
            v if r.text("udp_rx_io") == "gro" => format!("~{}", v.plain()),
            v => v.plain(),
        };
        writeln!(
            out,
            "  lost on the wire {}  dropped by this host {host}  reordered {}  duplicates {}",
            r.text("lost_wire"),
            r.text("reordered"),
            r.text("duplicates"),
        )?;
    }
    let tcp = r.get("tcp");
    if *tcp != Value::Null {
        let total = tcp.field("total");
        let ms = |k: &str| total.field(k).as_f64().unwrap_or(0.0) / 1000.0;
        writeln!(
            out,
            "  tcp: rtt {:.2} ms (var {:.2} ms)  cwnd {} segments  retransmits {}",
            ms("rtt_us"),
            ms("rttvar_us"),
            total.field("cwnd").plain(),
            tcp.field("retransmits").plain(),
        )?;
    }
    if let Value::Str(method) = r.get("rtt_method") {
        let v = |k: &str| {
            r.get(k)
                .as_f64()
                .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"))
        };
        let bloat = r.get("bufferbloat_ms").as_f64().map_or_else(
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
            v("idle_rtt_p50_ms"),
            v("loaded_rtt_p50_ms"),
            v("loaded_rtt_p90_ms"),
            v("loaded_rtt_max_ms"),
            v("loaded_jitter_ms"),
        )?;
        writeln!(
            out,
            "  bufferbloat {bloat} (loaded minus idle median)   probes lost {} of {}",
            r.text("rtt_lost"),
            r.text("rtt_sent"),
        )?;
    }
    let c = r.get("thread_cpu_max");
    let pc = |k: &str| c.field(k).as_f64().unwrap_or(0.0);
    writeln!(
        out,
        "  threads (busiest, % of a core): tx {:.0}  rx {:.0}  status {:.0}",
        pc("tx"),
        pc("rx"),
        pc("status")
    )?;
    if let Value::Str(v) = r.get("verdict") {
        writeln!(out, "  note: {v}")?;
    }
    if yes("remote_rx_lower_bound") {
        writeln!(
            out,
            "  note: the peer's status carries a 32-bit byte count per second, which cannot \
             hold more than 4 GiB (about 34 Gbit/s): 'remote received' is a lower bound"
        )?;
    }
    if let Some(sent) = r.get("server_sent_bps").as_f64() {
        writeln!(
            out,
            "  note: the server sent {} where we asked for more: it capped the rate (its \
             --max-rate or a rate= limit for this user or address) or could not send faster",
            crate::units::format_rate(sent)
        )?;
    }
    if yes("remote_rx_suspect") {
        writeln!(
            out,
            "  note: the peer reported receiving far less than TCP delivered; TCP loses nothing, \
             so this is the peer's counting (a 32-bit counter that wraps, or no statuses), not loss"
        )?;
    }
    Ok(())
}

#[cfg(feature = "client")]
/// The syslog line for a finished client test.
pub fn client_summary_syslog(r: &Record) -> String {
    format!(
        "test end server={} {}",
        r.text("server"),
        r.key_values_except(&["server"])
    )
}

#[cfg(feature = "server")]
/// The server's end-reason words: what the server can tell about how a session ended.
pub fn server_end_reason(reason: &crate::engine::StopReason) -> &'static str {
    use crate::engine::StopReason::*;
    match reason {
        PeerClosed => "client_closed",
        PeerReset => "client_reset",
        // The server has no duration of its own; a "completed" server session cannot happen,
        // but if it did, the client's close is what ended it.
        Completed => "client_closed",
        other => other.as_str(),
    }
}

#[cfg(feature = "server")]
/// The fields every server record opens with: when, who, and how they logged in.
fn who(
    b: &mut record::Builder,
    at: SystemTime,
    peer: &std::net::SocketAddr,
    user: &Option<String>,
    auth: crate::auth::AuthMethod,
) {
    b.str("timestamp", &rfc3339_utc(at))
        .str("peer", &peer.to_string())
        .push("user", Value::opt_str(user.as_deref()))
        .str("auth", auth.as_str());
}

#[cfg(feature = "server")]
fn start_fields(b: &mut record::Builder, st: &SessionStart) {
    who(b, st.started, &st.peer, &st.user, st.auth);
    b.str("protocol", st.command.protocol.as_str())
        .str("direction", st.command.direction.client_word())
        .int("connections", st.connections as u64)
        .push(
            "udp_port",
            st.udp_port.map_or(Value::Null, |p| Value::Int(p.into())),
        );
}

#[cfg(feature = "server")]
/// The record of a server event.
pub fn server_record(ev: &ServerEvent) -> Record {
    match ev {
        ServerEvent::Start(st) => Record::build(Kind::SessionStart, |b| {
            start_fields(b, st);
            b.int("remote_tx_speed_bps", u64::from(st.command.remote_tx_speed))
                .int("local_tx_speed_bps", u64::from(st.command.local_tx_speed))
                .int("tx_size", u64::from(st.command.tx_size));
        }),
        ServerEvent::End(r) => session_end_record(r),
        ServerEvent::AuthFailed {
            at,
            peer,
            user,
            method,
            ..
        } => Record::build(Kind::AuthFailure, |b| who(b, *at, peer, user, *method)),
        ServerEvent::Rejected(r) => Record::build(Kind::Rejected, |b| {
            who(b, r.at, &r.peer, &r.user, r.auth);
            b.str("protocol", r.command.protocol.as_str())
                .str("direction", r.command.direction.client_word())
                .str("phase", r.phase.as_str())
                .str("reason", r.reason.as_str())
                .str("error", &r.error);
        }),
    }
}

#[cfg(feature = "server")]
fn session_end_record(r: &SessionRecord) -> Record {
    let (summary, err) = match &r.result {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.as_str())),
    };
    let d = summary.map(|s| s.duration).unwrap_or_default();
    let st = summary.map(|s| s.status.clone()).unwrap_or_default();
    let end = summary.map_or("error", |s| server_end_reason(&s.end_reason));
    Record::build(Kind::SessionEnd, |b| {
        start_fields(b, &r.start);
        totals(b, &st, d);
        b.str("end_reason", end).push("error", Value::opt_str(err));
        match summary {
            Some(s) => io_fields(b, s),
            None => {
                b.push("udp_tx_io", Value::Null)
                    .push("udp_rx_io", Value::Null);
            }
        }
        b.int("foreign_datagrams", st.totals.foreign);
    })
}

#[cfg(feature = "server")]
/// The CSV row of a server event, in session_end columns: finished sessions, and failed
/// logins and refused handshakes as rows with `end_reason` `error` (one row per attempt, so a
/// log shows them; JSON has their own records). `None` for session starts.
pub fn server_csv_row(ev: &ServerEvent) -> Option<Vec<String>> {
    use crate::server::Rejection;
    let failed = |at, peer, user: &Option<String>, auth, command, error: String| {
        let start = SessionStart {
            started: at,
            peer,
            command,
            connections: 0,
            user: user.clone(),
            auth,
            udp_port: None,
        };
        session_end_record(&SessionRecord {
            start,
            result: Err(error),
        })
    };
    let rec = match ev {
        ServerEvent::Start(_) => return None,
        ServerEvent::End(r) => session_end_record(r),
        ServerEvent::AuthFailed {
            at,
            peer,
            user,
            method,
            command,
        } => failed(
            *at,
            *peer,
            user,
            *method,
            *command,
            format!(
                "authentication failed ({})",
                crate::error::auth_method_name(method.as_str())
            ),
        ),
        ServerEvent::Rejected(r) => {
            let Rejection {
                at,
                peer,
                user,
                auth,
                command,
                error,
                ..
            } = r.as_ref();
            failed(*at, *peer, user, *auth, *command, error.clone())
        }
    };
    Some(rec.csv_cells())
}

#[cfg(feature = "server")]
/// Formats a server event for stdout; `None` for events that text mode leaves to the log.
pub fn server_event_line(ev: &ServerEvent, output: Output) -> Option<String> {
    let r = server_record(ev);
    match (ev, output) {
        (_, Output::Json) => Some(r.to_json()),
        (ServerEvent::End(_), Output::Text) => Some(session_text(&r)),
        _ => None,
    }
}

#[cfg(feature = "server")]
fn session_text(r: &Record) -> String {
    // A user name and an error text may carry what a peer sent (issue 18): escaped.
    let user = match r.get("user") {
        Value::Str(u) => format!(" user {}", crate::text::Esc(u)),
        _ => String::new(),
    };
    let err = match r.get("error") {
        Value::Str(e) => format!(" ({})", crate::text::Esc(e)),
        _ => String::new(),
    };
    format!(
        "session {} {} (client {}) conns {}{user}: {:.1}s tx {} ({} B) rx {} ({} B) lost {} end {}{err}",
        r.text("peer"),
        r.text("protocol"),
        r.text("direction"),
        r.text("connections"),
        r.f64("duration_s"),
        format_rate(r.f64("tx_avg_bps")),
        r.text("tx_bytes"),
        format_rate(r.f64("rx_avg_bps")),
        r.text("rx_bytes"),
        r.text("lost_packets"),
        r.text("end_reason"),
    )
}

#[cfg(feature = "server")]
/// The syslog line for a server event.
pub fn server_event_syslog(ev: &ServerEvent) -> (crate::export::syslog::Severity, String) {
    use crate::export::syslog::Severity;
    let r = server_record(ev);
    let kv = r.key_values_except(&["timestamp"]);
    match ev {
        ServerEvent::Start(_) => (Severity::Info, format!("session start {kv}")),
        ServerEvent::AuthFailed { .. } => (Severity::Notice, format!("authentication failed {kv}")),
        ServerEvent::Rejected(_) => (Severity::Notice, format!("session rejected {kv}")),
        ServerEvent::End(s) => {
            let sev = if s.result.is_ok() {
                Severity::Info
            } else {
                Severity::Err
            };
            (sev, format!("session end {kv}"))
        }
    }
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use super::*;

    fn totals(sent: u64, remote: u64) -> StatusTotals {
        let mut st = StatusTotals::default();
        st.totals.tx_bytes = sent;
        st.remote_rx_bytes = remote;
        st
    }

    #[test]
    fn remote_trust_flags_what_cannot_be_loss() {
        // Seen with another implementation: 14.84 GB sent over TCP, 1.94 GB "received".
        let wrapped = totals(14_840_000_000, 1_940_000_000);
        assert!(RemoteTrust::of(&wrapped, true).suspect);
        // Over UDP the same figures are loss, and are reported as such.
        assert!(!RemoteTrust::of(&wrapped, false).suspect);
        // TCP, everything reported: fine.
        let ok = totals(1_000_000, 999_000);
        assert_eq!(RemoteTrust::of(&ok, true), RemoteTrust::default());
        // Nothing sent: nothing to judge.
        assert!(!RemoteTrust::of(&totals(0, 0), true).suspect);
        // A saturated status, or a second in which we sent more than 2^32 bytes.
        let mut sat = totals(10, 10);
        sat.remote_rx_saturated = 1;
        assert!(RemoteTrust::of(&sat, true).lower_bound);
        let mut fast = totals(10, 10);
        fast.tx_peak_status_bytes = u64::from(u32::MAX) + 1;
        assert!(RemoteTrust::of(&fast, false).lower_bound);
        fast.tx_peak_status_bytes = u64::from(u32::MAX);
        assert!(!RemoteTrust::of(&fast, false).lower_bound);
    }
}
