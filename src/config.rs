//! Typed, validated settings for one client run or one server process.
//!
//! Must not: parse command lines (cli.rs does) or touch sockets. Every value here has already
//! been checked, so the engine never sees an impossible combination.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthMethod;
use crate::wire::{Direction, Protocol};

/// Address family restriction for name resolution (`-4` / `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Whatever the name resolves to first.
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (NDJSON).
    Json,
}

/// Everything a client run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Host name or address as typed.
    pub host: String,
    /// TCP port of the server.
    pub port: u16,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// Direction in wire terms (server's view); the CLI word `transmit` = `ServerRx`.
    pub direction: Direction,
    /// Test length; `None` = until interrupted.
    pub duration: Option<Duration>,
    /// Number of TCP connections (1..=255).
    pub connection_count: u8,
    /// Our own transmit rate in bit/s, 0 = unlimited.
    pub local_tx_speed: u64,
    /// Rate the server may transmit in bit/s, 0 = unlimited.
    pub remote_tx_speed: u32,
    /// UDP datagram size we send, incl. IP+UDP headers.
    pub local_udp_tx_size: u16,
    /// UDP datagram size the server sends, incl. IP+UDP headers.
    pub remote_udp_tx_size: u16,
    /// Random payload instead of zeros.
    pub random_data: bool,
    /// Report cadence.
    pub interval: Duration,
    /// `-4` / `-6`.
    pub family: Family,
    /// Local address to bind.
    pub bind: Option<IpAddr>,
    /// IP TOS / traffic class byte.
    pub tos: Option<u8>,
    /// Output format.
    pub output: Output,
    /// User name for authentication.
    pub user: Option<String>,
    /// Password for authentication.
    pub password: Option<String>,
    /// Deadline for connect and each handshake read.
    pub connect_timeout: Duration,
    /// `--control-timeout`: end the test after this much silence from the server. `None`: 10 s,
    /// or the connect timeout if longer. Issue 20: the fault tests set 3 s instead of waiting
    /// out 10 s twice.
    pub control_timeout: Option<Duration>,
    /// Append one CSV row per finished test here.
    pub csv: Option<PathBuf>,
    /// Send RFC 3164 syslog messages to this HOST[:PORT].
    pub syslog: Option<String>,
    /// Data-path tuning.
    pub tuning: Tuning,
    /// Network interface every socket of the test is bound to (SO_BINDTODEVICE).
    pub device: Option<String>,
    /// The latency side probe (issue 11).
    pub latency: Latency,
    /// How long the probe measures the idle path before the load starts.
    pub latency_idle: Duration,
    /// Write a self-contained HTML report of the test here.
    pub report: Option<PathBuf>,
    /// The live terminal view.
    pub live: Live,
    /// `--congestion NAME` (issue 22): TCP_CONGESTION on every data connection (Linux; the
    /// `speedtest` feature, not in the router image). `None`: the kernel's default.
    pub congestion: Option<String>,
}

/// How the client probes latency beside the load (`--latency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// Our server's UDP echo when it answers, else ICMP echo.
    #[default]
    Auto,
    /// Only the btest server's UDP echo.
    Echo,
    /// Only ICMP echo (ping socket, else raw socket as root).
    Icmp,
    /// No probe.
    Off,
}

impl Latency {
    /// The `--latency` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Latency::Auto => "auto",
            Latency::Echo => "echo",
            Latency::Icmp => "icmp",
            Latency::Off => "off",
        }
    }
}

/// Whether the client redraws a live rate view on the terminal (`--live`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Live {
    /// When stdout is a terminal and the output is text.
    #[default]
    Auto,
    /// Always (text output only).
    Yes,
    /// Never.
    No,
}

impl ClientConfig {
    /// A default configuration against `host` (what the CLI produces with no options).
    pub fn new(host: &str) -> Self {
        ClientConfig {
            host: host.to_string(),
            port: crate::wire::DEFAULT_PORT,
            protocol: Protocol::Tcp,
            direction: Direction::ServerTx,
            duration: Some(Duration::from_secs(10)),
            connection_count: 1,
            local_tx_speed: 0,
            remote_tx_speed: 0,
            local_udp_tx_size: 1500,
            remote_udp_tx_size: 1500,
            random_data: false,
            interval: Duration::from_secs(1),
            family: Family::Any,
            bind: None,
            tos: None,
            output: Output::Text,
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(10),
            control_timeout: None,
            csv: None,
            syslog: None,
            tuning: Tuning::default(),
            device: None,
            latency: Latency::Auto,
            latency_idle: Duration::from_secs(1),
            report: None,
            live: Live::Auto,
            congestion: None,
        }
    }
}

/// How TX threads space their units (issue 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// Each unit at its own deadline while the period is long enough to sleep-then-spin
    /// cheaply; small bounded bursts below that.
    #[default]
    Auto,
    /// Spin for every unit's deadline at any rate: exact spacing, one busy core per paced
    /// sender.
    Precise,
}

/// How UDP datagrams go to and come from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpIo {
    /// The best the kernel offers, probed once per socket: GSO/GRO, else sendmmsg/recvmmsg.
    #[default]
    Auto,
    /// sendmmsg/recvmmsg batches, no segmentation offload.
    Mmsg,
    /// One datagram per system call.
    Single,
}

/// Data-path tuning both roles share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuning {
    /// Pacing mode.
    pub pacing: Pacing,
    /// UDP batching.
    pub udp_io: UdpIo,
    /// SO_BUSY_POLL microseconds on data sockets (bare-metal NICs); `None` = off.
    pub busy_poll: Option<u32>,
}

/// Everything a server process needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Addresses to listen on; `[::]:2000` dual-stack by default.
    pub listen: Vec<SocketAddr>,
    /// First UDP port handed to UDP tests.
    pub udp_port_from: u16,
    /// End a session after this long without hearing from the peer.
    pub control_timeout: Duration,
    /// Cap on a session's length; `None` = unlimited.
    pub max_duration: Option<Duration>,
    /// Concurrent session limit.
    pub max_sessions: usize,
    /// Output format of the per-session records.
    pub output: Output,
    /// Deadline for the whole handshake, from accept to the start of the data phase: hello,
    /// command, authentication and waiting for a session's extra TCP connections.
    pub handshake_timeout: Duration,
    /// Per-source caps on handshakes and logins.
    pub guard: GuardConfig,
    /// Authentication method offered.
    pub auth: AuthMethod,
    /// Accounts: (user, password).
    pub users: Vec<(String, String)>,
    /// File the accounts came from, for messages.
    pub users_file: Option<PathBuf>,
    /// Append one CSV row per finished session here.
    pub csv: Option<PathBuf>,
    /// Send RFC 3164 syslog messages to this HOST[:PORT].
    pub syslog: Option<String>,
    /// Prometheus text file rewritten every second.
    pub metrics_file: Option<PathBuf>,
    /// Data-path tuning.
    pub tuning: Tuning,
    /// `--allow`: when not empty, only these networks may connect.
    pub allow: Vec<crate::cidr::Cidr>,
    /// `--deny`: these networks may not connect (wins over `allow`).
    pub deny: Vec<crate::cidr::Cidr>,
    /// `--max-rate`: bit/s cap on what a session sends and (TCP) reads; `None` = no cap.
    pub max_rate: Option<u64>,
    /// `--state-dir`: where byte usage is kept across restarts (needed by byte quotas).
    pub state_dir: Option<PathBuf>,
    /// `--source-limit`: limits per source address or network.
    pub source_limits: Vec<SourceLimit>,
    /// `--http`: serve the JSON API, /metrics and the dashboard here.
    pub http: Option<SocketAddr>,
    /// `--http-host`: names (or IP literals) the `--http` interface answers for besides its
    /// listen address; any other Host gets 421 (issue 18: DNS rebinding; src/http/host.rs).
    pub http_hosts: Vec<String>,
    /// Answer latency probes on UDP at each listener's address and port (`--echo`).
    pub echo: bool,
    /// Network interface every socket is bound to (SO_BINDTODEVICE).
    pub device: Option<String>,
}

/// `btest through`: our server and our client in one process, each on its own side of the
/// device under test (issue 11).
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughConfig {
    /// The client side: every client option, the target being the server side's address.
    pub client: ClientConfig,
    /// The server side: listens on that address only, one random account.
    pub server: ServerConfig,
    /// Network namespace the client side runs in (`/run/netns/NAME` or a path).
    pub client_netns: Option<PathBuf>,
    /// Network namespace the server side runs in.
    pub server_netns: Option<PathBuf>,
}

/// `btest fleet FILE`: many targets, one results matrix (issue 11).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// The targets file.
    pub file: PathBuf,
    /// Targets tested at once.
    pub parallel: usize,
    /// Further attempts after a failure that may pass on a retry.
    pub retries: u32,
    /// Wait between attempts of one target.
    pub retry_delay: Duration,
    /// Target records on stdout as text or NDJSON.
    pub output: Output,
    /// Write the target records as CSV here.
    pub csv: Option<PathBuf>,
    /// Write the target records as NDJSON here.
    pub ndjson: Option<PathBuf>,
    /// Write the HTML report here.
    pub report: Option<PathBuf>,
    /// `--speed-test` (issue 22): every target runs `btest speed-test`, not a test.
    pub speed_test: bool,
}

/// `btest exporter`: a Prometheus exporter that runs a bounded test per scrape (issue 22).
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterConfig {
    /// `--listen ADDR:PORT`.
    pub listen: SocketAddr,
    /// `--targets FILE`: the fleet file format (targets, options, credentials files).
    pub targets: PathBuf,
    /// `--concurrency N`: tests running at once; one more request is answered 503.
    pub concurrency: usize,
    /// `--min-interval DUR`: a target asked again sooner gets its cached last result.
    pub min_interval: Duration,
    /// `--max-duration DUR`: cap on a test's data phase.
    pub max_duration: Duration,
    /// `--timeout DUR`: a whole probe's deadline when the scrape does not give a shorter one.
    pub timeout: Duration,
}

/// Which sources one `--source-limit` counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceScope {
    /// Each IPv4 address and each IPv6 /64 (one host's addresses), as the handshake caps.
    Addr,
    /// IPv4 networks of this prefix length.
    V4(u8),
    /// IPv6 networks of this prefix length.
    V6(u8),
}

/// `--source-limit SCOPE SPEC`: the spec is checked when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimit {
    pub scope: SourceScope,
    pub spec: String,
}

impl std::str::FromStr for SourceLimit {
    type Err = String;

    /// `addr day=5G sessions=2`, `v4/24 month=500G`, `v6/48 rate=1G`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (scope, spec) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let bad = || {
            format!(
                "'{s}': expected SCOPE LIMITS, SCOPE one of addr, v4/LEN, v6/LEN (e.g. \"addr day=5G sessions=2\", \"v4/24 month=500G\")"
            )
        };
        let len = |l: &str, max: u8| l.parse::<u8>().ok().filter(|&n| n <= max);
        let scope = match scope.split_once('/') {
            None if scope == "addr" => SourceScope::Addr,
            Some(("v4", l)) => SourceScope::V4(len(l, 32).ok_or_else(bad)?),
            Some(("v6", l)) => SourceScope::V6(len(l, 128).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        if spec.trim().is_empty() {
            return Err(bad());
        }
        Ok(SourceLimit {
            scope,
            spec: spec.trim().to_string(),
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 2000))],
            udp_port_from: 2001,
            control_timeout: Duration::from_secs(10),
            max_duration: None,
            max_sessions: 100,
            output: Output::Text,
            // 5 s as xfr does (issue 12); RouterOS clients finish well within 1 s on a LAN.
            handshake_timeout: Duration::from_secs(5),
            guard: GuardConfig::default(),
            auth: AuthMethod::None,
            users: Vec::new(),
            users_file: None,
            csv: None,
            syslog: None,
            metrics_file: None,
            tuning: Tuning::default(),
            allow: Vec::new(),
            deny: Vec::new(),
            max_rate: None,
            state_dir: None,
            source_limits: Vec::new(),
            http: None,
            http_hosts: Vec::new(),
            echo: true,
            device: None,
        }
    }
}

/// Limits the server applies before and during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Handshakes in progress at once, all sources together.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one source (data connections a session from
    /// that source is waiting for come on top).
    pub max_handshakes_per_source: usize,
    /// Wrong logins from one source within `login_window` before it is refused.
    /// 0 = no limit.
    pub max_login_failures: u32,
    /// The window `max_login_failures` counts in.
    pub login_window: Duration,
    /// How long a source that hit `max_login_failures` is refused.
    pub login_block: Duration,
    /// Logins (either method) one source may start per minute, after a burst of
    /// [`AUTH_BURST`]. 0 = no limit.
    pub logins_per_minute: u32,
    /// Sessions running at once from one source. 0 = no limit.
    pub max_sessions_per_source: usize,
    /// TCP connections the running sessions of one source hold together. 0 = no limit.
    pub max_connections_per_source: usize,
}

/// Sessions one source may run at once by default (issue 18: without a bound one address
/// held all 100 slots). Four covers a fleet host testing with `--parallel 4`, or a few
/// subscribers behind one NAT address; an operator serving a larger NAT raises it.
pub const SESSIONS_PER_SOURCE: usize = 4;

/// TCP connections one source's sessions may hold together by default: one test with the
/// protocol's maximum of 255 connections plus a few small ones. Each connection costs the
/// server a descriptor and up to two threads (issue 18: four 255-connection sessions from one
/// address exhausted a server under systemd's default limits).
pub const CONNECTIONS_PER_SOURCE: usize = 300;

/// Logins a source may start at once before `logins_per_minute` applies.
pub const AUTH_BURST: u32 = 10;

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_handshakes: 256,
            max_handshakes_per_source: 16,
            max_login_failures: 5,
            login_window: Duration::from_secs(60),
            login_block: Duration::from_secs(60),
            logins_per_minute: 30,
            max_sessions_per_source: SESSIONS_PER_SOURCE,
            max_connections_per_source: CONNECTIONS_PER_SOURCE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_limit_scopes() {
        let ok = [
            ("addr day=5G", SourceScope::Addr, "day=5G"),
            (
                "v4/24  month=500G sessions=4",
                SourceScope::V4(24),
                "month=500G sessions=4",
            ),
            ("v6/48 rate=1G", SourceScope::V6(48), "rate=1G"),
            ("v4/0 day=1T", SourceScope::V4(0), "day=1T"),
        ];
        for (t, scope, spec) in ok {
            let l: SourceLimit = t.parse().unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!((l.scope, l.spec.as_str()), (scope, spec), "{t}");
        }
        for t in [
            "addr",
            "v4/33 day=1",
            "v6/x day=1",
            "host day=1",
            "/24 day=1",
            "",
        ] {
            let e = t.parse::<SourceLimit>().unwrap_err();
            assert!(e.contains("expected SCOPE LIMITS"), "{t}: {e}");
        }
    }
}
