//! Formats samples, summaries and server session records as text or NDJSON.
//!
//! Writes only to the `Write` it is given. Rates: UDP counts IP+UDP headers (as RouterOS),
//! TCP counts payload. JSON numbers are always finite; absent values are `null`.

use std::time::Duration;

use crate::config::Output;
#[cfg(feature = "server")]
use crate::server::{ServerEvent, SessionRecord};
use crate::units::format_rate;
#[cfg(feature = "client")]
use {
    crate::client::ClientResult,
    crate::engine::Sample,
    crate::wire::{Direction, Protocol},
    std::collections::VecDeque,
    std::io::{self, Write},
};

/// Version of the JSON record layout.
pub const SCHEMA: u32 = 1;

/// Builds one JSON object.
#[derive(Default)]
pub struct Json(String);

impl Json {
    /// A new object without the `type`/`schema` header (for nested objects).
    pub fn begin(&mut self) -> &mut Self {
        self.0 = String::from("{");
        self
    }
    /// A new object with `type` and `schema`.
    pub fn record(kind: &str) -> Self {
        let mut j = Json(String::from("{"));
        j.str("type", kind);
        j.num("schema", SCHEMA as f64);
        j
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }
    /// A string field.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                c if (c as u32) < 0x20 => self.0.push_str(&format!("\\u{:04x}", c as u32)),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
    /// A number field; NaN and infinities become 0.
    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        let v = if v.is_finite() { v } else { 0.0 };
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            self.0.push_str(&format!("{}", v as i64));
        } else {
            self.0.push_str(&format!("{v:.3}"));
        }
        self
    }
    /// An integer field.
    pub fn int(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        self.0.push_str(&v.to_string());
        self
    }
    /// A field whose value is already JSON text (an array or object built by [`Json`]).
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.0.push_str(json);
        self
    }
    /// A number or null.
    pub fn opt(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        match v {
            Some(x) => self.num(k, x),
            None => {
                self.key(k);
                self.0.push_str("null");
                self
            }
        }
    }
    /// A string or null.
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(x) => self.str(k, x),
            None => {
                self.key(k);
                self.0.push_str("null");
                self
            }
        }
    }
    /// Closes the object.
    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.0);
        s.push('}');
        s
    }
}

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
fn cpu(v: Option<u8>) -> String {
    v.map(|c| format!("{c}%")).unwrap_or_else(|| "-".into())
}

#[cfg(feature = "client")]
/// Sequence gaps minus what our own sockets dropped: what the network lost.
fn wire_lost(gaps: u64, host: Option<u64>) -> u64 {
    lost(gaps).saturating_sub(host.unwrap_or(0))
}

#[cfg(feature = "client")]
fn tcp_stats_json(t: &crate::engine::tcpinfo::TcpStats) -> String {
    Json::default()
        .begin()
        .int("rtt_us", u64::from(t.rtt_us))
        .int("rttvar_us", u64::from(t.rttvar_us))
        .int("cwnd", u64::from(t.cwnd))
        .int("mss", u64::from(t.mss))
        .int("retransmits_total", u64::from(t.retransmits_total))
        .opt("delivery_rate_bps", t.delivery_rate_bps.map(|v| v as f64))
        .finish()
}

#[cfg(feature = "client")]
fn tcp_json(t: Option<&crate::engine::TcpSample>) -> String {
    let Some(t) = t else {
        return "null".into();
    };
    let per: Vec<String> = t.per_connection.iter().map(tcp_stats_json).collect();
    Json::default()
        .begin()
        .int("retransmits", t.retransmits)
        .raw("total", &tcp_stats_json(&t.total))
        .raw("per_connection", &format!("[{}]", per.join(",")))
        .finish()
}

#[cfg(feature = "client")]
fn role_json(c: crate::engine::RoleCpu) -> String {
    Json::default()
        .begin()
        .num("tx", (c.tx * 10.0).round() / 10.0)
        .num("rx", (c.rx * 10.0).round() / 10.0)
        .num("status", (c.status * 10.0).round() / 10.0)
        .finish()
}

#[cfg(feature = "client")]
fn senders_json(s: &Sample) -> String {
    let items: Vec<String> = s
        .senders
        .iter()
        .map(|a| {
            Json::default()
                .begin()
                .int("thread", a.thread as u64)
                .int("target_bps", a.target_bps)
                .num("achieved_bps", a.achieved_bps)
                .opt("gap_p50_us", a.gap_p50_us)
                .opt("gap_p99_us", a.gap_p99_us)
                .finish()
        })
        .collect();
    format!("[{}]", items.join(","))
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
    elapsed: Duration,
    lines: u64,
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
            elapsed: Duration::ZERO,
            lines: 0,
        }
    }

    /// The start record (JSON) or header (text).
    pub fn start(
        &mut self,
        server: &str,
        protocol: Protocol,
        direction: Direction,
        connections: u8,
    ) -> io::Result<()> {
        match self.output {
            Output::Json => {
                let line = Json::record("start")
                    .str("server", server)
                    .str("protocol", protocol.as_str())
                    .str("direction", direction.client_word())
                    .int("connections", u64::from(connections))
                    .finish();
                writeln!(self.out, "{line}")
            }
            Output::Text => writeln!(
                self.out,
                "btest {} {} to {server}, {connections} connection(s)",
                protocol.as_str(),
                direction.client_word()
            ),
        }
    }

    /// One interval.
    pub fn sample(&mut self, s: &Sample) -> io::Result<()> {
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
        self.elapsed = s.elapsed;
        let r = [
            bps(s.delta.tx_bytes, s.dt),
            bps(wtx, span),
            bps(self.total_tx, s.elapsed),
            bps(s.delta.rx_bytes, s.dt),
            bps(wrx, span),
            bps(self.total_rx, s.elapsed),
        ];
        match self.output {
            Output::Json => {
                let line = Json::record("interval")
                    .num("elapsed_s", s.elapsed.as_secs_f64())
                    .num("interval_s", s.dt.as_secs_f64())
                    .num("tx_current_bps", r[0])
                    .num("tx_10s_avg_bps", r[1])
                    .num("tx_total_avg_bps", r[2])
                    .num("rx_current_bps", r[3])
                    .num("rx_10s_avg_bps", r[4])
                    .num("rx_total_avg_bps", r[5])
                    .int("tx_bytes", s.delta.tx_bytes)
                    .int("rx_bytes", s.delta.rx_bytes)
                    .int("lost_packets", lost(s.delta.lost))
                    .int("remote_rx_bytes", s.remote_rx_bytes)
                    .opt("local_cpu", s.local_cpu.map(f64::from))
                    .opt("remote_cpu", s.remote_cpu.map(f64::from))
                    .int("lost_wire", wire_lost(s.delta.lost, s.host_drops))
                    .opt("lost_host", s.host_drops.map(|h| h as f64))
                    .int("reordered", s.delta.reordered)
                    .int("duplicates", s.delta.duplicates)
                    .int("tx_target_bps", s.tx_target_bps)
                    .raw("senders", &senders_json(s))
                    .raw("tcp", &tcp_json(s.tcp.as_ref()))
                    .raw("thread_cpu", &role_json(s.role_cpu))
                    .finish();
                writeln!(self.out, "{line}")
            }
            Output::Text => {
                if self.lines % 20 == 0 {
                    writeln!(
                        self.out,
                        "{:>7} {:>11} {:>11} {:>11}  {:>11} {:>11} {:>11} {:>6} {:>9}",
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
                self.lines += 1;
                writeln!(
                    self.out,
                    "{:>6.1}s {:>11} {:>11} {:>11}  {:>11} {:>11} {:>11} {:>6} {:>9}",
                    s.elapsed.as_secs_f64(),
                    format_rate(r[0]),
                    format_rate(r[1]),
                    format_rate(r[2]),
                    format_rate(r[3]),
                    format_rate(r[4]),
                    format_rate(r[5]),
                    lost(self.total_lost),
                    format!("{}/{}", cpu(s.local_cpu), cpu(s.remote_cpu)),
                )?;
                // Pacing audit: only for paced senders, so a user can see the pacing held.
                for a in s.senders.iter().filter(|a| a.target_bps > 0) {
                    writeln!(
                        self.out,
                        "        pacing tx-{}: asked {} got {}  gap p50 {} p99 {}",
                        a.thread,
                        format_rate(a.target_bps as f64),
                        format_rate(a.achieved_bps),
                        a.gap_p50_us
                            .map(|g| format!("{g:.0}us"))
                            .unwrap_or_else(|| "-".into()),
                        a.gap_p99_us
                            .map(|g| format!("{g:.0}us"))
                            .unwrap_or_else(|| "-".into()),
                    )?;
                }
                Ok(())
            }
        }
    }

    /// The final summary.
    pub fn summary(
        &mut self,
        r: &ClientResult,
        protocol: Protocol,
        direction: Direction,
    ) -> io::Result<()> {
        let st = &r.summary.status;
        let d = r.summary.duration;
        let tx_avg = bps(st.totals.tx_bytes, d);
        let rx_avg = bps(st.totals.rx_bytes, d);
        match self.output {
            Output::Json => {
                let line = Json::record("summary")
                    .str("protocol", protocol.as_str())
                    .str("direction", direction.client_word())
                    .int("connections", r.connections as u64)
                    .num("duration_s", d.as_secs_f64())
                    .int("tx_bytes", st.totals.tx_bytes)
                    .int("rx_bytes", st.totals.rx_bytes)
                    .num("tx_avg_bps", tx_avg)
                    .num("rx_avg_bps", rx_avg)
                    .int("lost_packets", lost(st.totals.lost))
                    .opt("local_cpu_avg", st.local_cpu_avg)
                    .opt("remote_cpu_avg", st.remote_cpu_avg)
                    .int("remote_rx_bytes", st.remote_rx_bytes)
                    .str("auth", r.auth.as_str())
                    .str("end_reason", r.summary.end_reason.as_str())
                    .int("lost_wire", wire_lost(st.totals.lost, st.host_drops))
                    .opt("lost_host", st.host_drops.map(|h| h as f64))
                    .int("reordered", st.totals.reordered)
                    .int("duplicates", st.totals.duplicates)
                    .raw("tcp", &tcp_json(st.tcp.as_ref()))
                    .raw("thread_cpu_max", &role_json(st.role_cpu_max))
                    .raw(
                        "remote_rx_saturated",
                        if st.remote_rx_saturated > 0 {
                            "true"
                        } else {
                            "false"
                        },
                    )
                    .opt_str("verdict", st.verdict.as_deref())
                    .finish();
                writeln!(self.out, "{line}")
            }
            Output::Text => {
                writeln!(
                    self.out,
                    "--- summary ({}) ---",
                    r.summary.end_reason.as_str()
                )?;
                writeln!(
                    self.out,
                    "duration {:.1}s  connections {}  auth {}",
                    d.as_secs_f64(),
                    r.connections,
                    r.auth
                )?;
                writeln!(
                    self.out,
                    "tx-total-average {}  ({} bytes)   rx-total-average {}  ({} bytes)",
                    format_rate(tx_avg),
                    st.totals.tx_bytes,
                    format_rate(rx_avg),
                    st.totals.rx_bytes
                )?;
                writeln!(
                    self.out,
                    "lost-packets {}  remote received {} bytes  cpu local {} remote {}",
                    lost(st.totals.lost),
                    st.remote_rx_bytes,
                    st.local_cpu_avg
                        .map(|c| format!("{c:.0}%"))
                        .unwrap_or_else(|| "-".into()),
                    st.remote_cpu_avg
                        .map(|c| format!("{c:.0}%"))
                        .unwrap_or_else(|| "-".into()),
                )?;
                if protocol == Protocol::Udp && direction.server_tx() {
                    writeln!(
                        self.out,
                        "  lost on the wire {}  dropped by this host {}  reordered {}  duplicates {}",
                        wire_lost(st.totals.lost, st.host_drops),
                        st.host_drops.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into()),
                        st.totals.reordered,
                        st.totals.duplicates
                    )?;
                }
                if let Some(t) = &st.tcp {
                    writeln!(
                        self.out,
                        "  tcp: rtt {:.2} ms (var {:.2} ms)  cwnd {} segments  retransmits {}",
                        f64::from(t.total.rtt_us) / 1000.0,
                        f64::from(t.total.rttvar_us) / 1000.0,
                        t.total.cwnd,
                        t.retransmits
                    )?;
                }
                let c = st.role_cpu_max;
                writeln!(
                    self.out,
                    "  threads (busiest, % of a core): tx {:.0}  rx {:.0}  status {:.0}",
                    c.tx, c.rx, c.status
                )?;
                if let Some(v) = &st.verdict {
                    writeln!(self.out, "  note: {v}")?;
                }
                if st.remote_rx_saturated > 0 {
                    writeln!(
                        self.out,
                        "  note: the peer received more than 4 GiB in {} second(s); its 32-bit status \
                         field saturated, so 'remote received' is a lower bound",
                        st.remote_rx_saturated
                    )?;
                }
                Ok(())
            }
        }
    }

    /// An error record (JSON mode); text mode leaves errors to stderr.
    pub fn error(&mut self, msg: &str) -> io::Result<()> {
        if self.output == Output::Json {
            let line = Json::record("error").str("message", msg).finish();
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "server")]
/// Formats a server event for stdout; `None` for events that text mode leaves to the log.
pub fn server_event_line(ev: &ServerEvent, output: Output) -> Option<String> {
    match (ev, output) {
        (ServerEvent::End(r), _) => Some(session_line(r, output)),
        (ServerEvent::Start(st), Output::Json) => Some(
            Json::record("session_start")
                .str("peer", &st.peer.to_string())
                .opt_str("user", st.user.as_deref())
                .str("auth", st.auth.as_str())
                .str("protocol", st.command.protocol.as_str())
                .str("direction", st.command.direction.client_word())
                .int("connections", st.connections as u64)
                .opt("udp_port", st.udp_port.map(f64::from))
                .int("remote_tx_speed_bps", u64::from(st.command.remote_tx_speed))
                .int("local_tx_speed_bps", u64::from(st.command.local_tx_speed))
                .int("tx_size", u64::from(st.command.tx_size))
                .finish(),
        ),
        (ServerEvent::AuthFailed { peer, user, method }, Output::Json) => Some(
            Json::record("auth_failure")
                .str("peer", &peer.to_string())
                .opt_str("user", user.as_deref())
                .str("auth", method.as_str())
                .finish(),
        ),
        _ => None,
    }
}

#[cfg(feature = "server")]
/// Formats one finished server session.
pub fn session_line(r: &SessionRecord, output: Output) -> String {
    let (summary, err) = match &r.result {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.as_str())),
    };
    let d = summary.map(|s| s.duration).unwrap_or_default();
    let st = summary.map(|s| s.status.clone()).unwrap_or_default();
    let end = summary.map(|s| s.end_reason.as_str()).unwrap_or("error");
    match output {
        Output::Json => Json::record("session_end")
            .str("peer", &r.peer.to_string())
            .opt_str("user", r.user.as_deref())
            .str("auth", r.auth.as_str())
            .str("protocol", r.command.protocol.as_str())
            .str("direction", r.command.direction.client_word())
            .int("connections", r.connections as u64)
            .opt("udp_port", r.udp_port.map(f64::from))
            .num("duration_s", d.as_secs_f64())
            .int("tx_bytes", st.totals.tx_bytes)
            .int("rx_bytes", st.totals.rx_bytes)
            .num("tx_avg_bps", bps(st.totals.tx_bytes, d))
            .num("rx_avg_bps", bps(st.totals.rx_bytes, d))
            .int("lost_packets", lost(st.totals.lost))
            .opt("local_cpu_avg", st.local_cpu_avg)
            .opt("remote_cpu_avg", st.remote_cpu_avg)
            .int("remote_rx_bytes", st.remote_rx_bytes)
            .str("end_reason", end)
            .opt_str("error", err)
            .finish(),
        Output::Text => format!(
            "session {} {} (client {}) conns {}{}: {:.1}s tx {} ({} B) rx {} ({} B) lost {} end {}{}",
            r.peer,
            r.command.protocol.as_str(),
            r.command.direction.client_word(),
            r.connections,
            r.user.as_ref().map(|u| format!(" user {u}")).unwrap_or_default(),
            d.as_secs_f64(),
            format_rate(bps(st.totals.tx_bytes, d)),
            st.totals.tx_bytes,
            format_rate(bps(st.totals.rx_bytes, d)),
            st.totals.rx_bytes,
            lost(st.totals.lost),
            end,
            err.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    }
}

fn opt_num(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.1}"))
        .unwrap_or_default()
}

#[cfg(feature = "client")]
/// One CSV row for a finished client test, in `export::csv::CLIENT_HEADER` order.
pub fn client_csv_row(
    r: &ClientResult,
    server: &str,
    protocol: Protocol,
    direction: Direction,
    started: std::time::SystemTime,
) -> Vec<String> {
    let st = &r.summary.status;
    let d = r.summary.duration;
    [
        crate::export::csv::rfc3339_utc(started),
        server.to_string(),
        protocol.as_str().into(),
        direction.client_word().into(),
        r.connections.to_string(),
    ]
    .into_iter()
    .chain(totals_cells(st, d))
    .chain([r.auth.as_str().into(), r.summary.end_reason.as_str().into()])
    .collect()
}

#[cfg(feature = "server")]
/// One CSV row for a finished server session, in `export::csv::SERVER_HEADER` order.
pub fn server_csv_row(r: &SessionRecord) -> Vec<String> {
    let summary = r.result.as_ref().ok();
    let d = summary.map(|s| s.duration).unwrap_or_default();
    let st = summary.map(|s| s.status.clone()).unwrap_or_default();
    [
        crate::export::csv::rfc3339_utc(r.started),
        r.peer.to_string(),
        r.user.clone().unwrap_or_default(),
        r.auth.as_str().into(),
        r.command.protocol.as_str().into(),
        r.command.direction.client_word().into(),
        r.connections.to_string(),
        r.udp_port.map(|p| p.to_string()).unwrap_or_default(),
    ]
    .into_iter()
    .chain(totals_cells(&st, d))
    .chain([
        summary
            .map(|s| s.end_reason.as_str())
            .unwrap_or("error")
            .into(),
        r.result.as_ref().err().cloned().unwrap_or_default(),
    ])
    .collect()
}

/// The CSV cells both roles share: duration, bytes, rates, loss, CPU, what the peer received.
fn totals_cells(st: &crate::engine::StatusTotals, d: Duration) -> [String; 9] {
    [
        format!("{:.3}", d.as_secs_f64()),
        st.totals.tx_bytes.to_string(),
        st.totals.rx_bytes.to_string(),
        format!("{:.0}", bps(st.totals.tx_bytes, d)),
        format!("{:.0}", bps(st.totals.rx_bytes, d)),
        lost(st.totals.lost).to_string(),
        opt_num(st.local_cpu_avg),
        opt_num(st.remote_cpu_avg),
        st.remote_rx_bytes.to_string(),
    ]
}

#[cfg(feature = "server")]
/// The syslog line for a server event.
pub fn server_event_syslog(ev: &ServerEvent) -> (crate::export::syslog::Severity, String) {
    use crate::export::syslog::Severity;
    match ev {
        ServerEvent::Start(s) => (
            Severity::Info,
            format!(
                "session start peer={} user={} auth={} protocol={} direction={} connections={}",
                s.peer,
                s.user.as_deref().unwrap_or("-"),
                s.auth,
                s.command.protocol.as_str(),
                s.command.direction.client_word(),
                s.connections
            ),
        ),
        ServerEvent::AuthFailed { peer, user, method } => (
            Severity::Notice,
            format!(
                "authentication failed peer={peer} user={} auth={method}",
                user.as_deref().unwrap_or("-")
            ),
        ),
        ServerEvent::End(r) => {
            let sev = if r.result.is_ok() {
                Severity::Info
            } else {
                Severity::Err
            };
            (
                sev,
                session_line(r, Output::Text).replacen("session ", "session end ", 1),
            )
        }
    }
}

#[cfg(feature = "client")]
/// The syslog line for a finished client test.
pub fn client_summary_syslog(r: &ClientResult, server: &str) -> String {
    let st = &r.summary.status;
    let d = r.summary.duration;
    format!(
        "test end server={server} auth={} duration={:.1}s tx_avg={} rx_avg={} lost={} end={}",
        r.auth,
        d.as_secs_f64(),
        format_rate(bps(st.totals.tx_bytes, d)),
        format_rate(bps(st.totals.rx_bytes, d)),
        lost(st.totals.lost),
        r.summary.end_reason.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_never_nan() {
        let s = Json::record("x")
            .str("s", "a\"b\\c\nd\u{1}")
            .num("n", f64::NAN)
            .num("i", f64::INFINITY)
            .num("f", 1.5)
            .opt("o", None)
            .finish();
        assert_eq!(
            s,
            r#"{"type":"x","schema":1,"s":"a\"b\\c\nd\u0001","n":0,"i":0,"f":1.500,"o":null}"#
        );
    }
}
