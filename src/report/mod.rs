//! Turns engine results into [`Record`](crate::record::Record)s (record.rs owns their fields)
//! and renders them for people. JSON, CSV and syslog come straight from the record; the text
//! layouts are here, one file per audience: client.rs (the client's intervals and summary),
//! server.rs (the server's session lines), fleet.rs (the fleet's progress lines and matrix).
//! Each is a whole module behind its feature.
//!
//! Writes only to the `Write` it is given. Rates: UDP counts IP+UDP headers (as RouterOS),
//! TCP counts payload. Must not: decide whether a test succeeded (client.rs does), or be
//! imported by server/ (report/server.rs depends on the server's events, never the reverse:
//! issue 20 removed the one import cycle of the tree).

use std::time::Duration;

use crate::engine::StatusTotals;
use crate::record::{self, field as F, Value};

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::{
    client_summary_syslog, error_record, human_bytes, interval_head, interval_line, interval_width,
    start_record, summary_record, ClientReporter, Coverage, IntervalRtt, LatencySummary,
    RemoteTrust, Rtt,
};
#[cfg(feature = "fleet")]
pub mod fleet;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "speedtest")]
pub mod speedtest;
#[cfg(feature = "server")]
pub use server::{server_csv_row, server_event_line, server_event_syslog, server_record};

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

/// One decimal, as the CSV always had for CPU.
fn cpu_avg(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |c| Value::Num(c, 1))
}

/// How UDP moved, both roles' last fields.
fn io_fields(b: &mut record::Builder, s: &crate::engine::Summary) {
    let m = |m: Option<crate::engine::udpio::Method>| Value::opt_str(m.map(|m| m.as_str()));
    b.push(&F::UDP_TX_IO, m(s.udp_tx_io))
        .push(&F::UDP_RX_IO, m(s.udp_rx_io));
}

/// The totals both roles report: duration through remote_rx_bytes.
fn totals(b: &mut record::Builder, st: &StatusTotals, d: Duration) {
    b.push(&F::DURATION_S, Value::num(d.as_secs_f64()))
        .int(&F::TX_BYTES, st.totals.tx_bytes)
        .int(&F::RX_BYTES, st.totals.rx_bytes)
        .push(&F::TX_AVG_BPS, Value::Num(bps(st.totals.tx_bytes, d), 0))
        .push(&F::RX_AVG_BPS, Value::Num(bps(st.totals.rx_bytes, d), 0))
        .int(&F::LOST_PACKETS, lost(st.totals.lost))
        .push(&F::LOCAL_CPU_AVG, cpu_avg(st.local_cpu_avg))
        .push(&F::REMOTE_CPU_AVG, cpu_avg(st.remote_cpu_avg))
        .int(&F::REMOTE_RX_BYTES, st.remote_rx_bytes);
}
