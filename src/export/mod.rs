//! Optional outputs for other tools: a CSV results log, RFC 3164 syslog over UDP, a
//! Prometheus textfile for node_exporter, and the server's non-blocking stdout writer.
//!
//! Each module only formats and delivers what the caller hands it; none of them knows about
//! sessions, sockets of the test itself or the engine. Must not: block a test on a slow or
//! absent consumer (syslog never waits, metrics are written by their own thread), or make a
//! test fail because an export failed (callers log and go on).

pub mod csv;
#[cfg(feature = "report")]
pub mod html;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "report")]
pub mod params;
pub mod stdout;
pub mod syslog;
