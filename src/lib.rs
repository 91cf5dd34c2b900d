//! btest: the MikroTik Bandwidth Test protocol as a server (RouterOS routers run
//! `/tool bandwidth-test` against it) and as a client (it tests any RouterOS
//! `/tool bandwidth-server`, or our own server).
//!
//! A synchronous, multithreaded engine on blocking sockets: dedicated named threads per role
//! (TX, RX, status, accept), absolute-deadline pacing, counters in atomics. See
//! docs/architecture.md for the module map and thread diagram, docs/protocol.md for the wire.
//!
//! Non-goals: an async runtime; any protocol other than btest.

pub mod atomic;
pub mod auth;
pub mod authio;
pub mod cidr;
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod export;
#[cfg(feature = "exporter")]
pub mod exporter;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod handshake;
#[cfg(feature = "http")]
pub mod http;
pub mod net;
#[cfg(feature = "client")]
pub mod probe;
pub mod record;
pub mod report;
#[cfg(feature = "client")]
pub mod run;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "speedtest")]
pub mod speedtest;
pub mod sys;
#[cfg(feature = "client")]
#[cfg(feature = "tty")]
pub mod termview;
pub mod text;
pub mod thread;
#[cfg(feature = "through")]
pub mod through;
pub mod units;
pub mod wire;

pub use error::{Error, Result};
