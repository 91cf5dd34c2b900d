//! Command-line parsing: one lexopt loop into [`RawArgs`], then [`RawArgs`] into a validated
//! [`Invocation`]. The table [`OPTIONS`] renders the three help texts ([`Help`]) and decides
//! which flags belong to one role only.
//!
//! Must not: touch the network or the environment other than what it is handed (tests call
//! [`parse_from`] with their own argument lists; `BTEST_PASSWORD` is passed in explicitly).
//! Every error keeps the user's input and names the accepted format.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthMethod;
use crate::config::{ClientConfig, Family, Output, ServerConfig};
use crate::units::{parse_duration, parse_rate};
use crate::wire::datagram::{MAX_TX_SIZE, MIN_TX_SIZE};
use crate::wire::{Direction, Protocol, DEFAULT_PORT};

// The usage lines, as macros so that `concat!` can build the [`USAGE`] constant from them.
macro_rules! client_usage {
    () => {
        "btest client HOST[:PORT] [OPTIONS]     (also: btest -c HOST)"
    };
}
macro_rules! server_usage {
    () => {
        "btest server [OPTIONS]                 (also: btest -s)"
    };
}

#[allow(unused_macros)] // a server-only build has neither command
macro_rules! fleet_usage {
    () => {
        "btest fleet FILE [OPTIONS]             (many targets, one results matrix)"
    };
}
#[allow(unused_macros)]
macro_rules! through_usage {
    () => {
        "btest through --server-addr ADDR [OPTIONS]  (test the device between two ports)"
    };
}

/// Short usage of the roles this binary was built with, printed after usage errors.
#[cfg(all(feature = "client", feature = "server"))]
pub const USAGE: &str = concat!(
    "usage: ",
    client_usage!(),
    "\n       ",
    server_usage!(),
    "\n       ",
    fleet_usage!(),
    "\n       ",
    through_usage!(),
    "\n       btest --help | --version"
);
/// Short usage of the roles this binary was built with, printed after usage errors.
#[cfg(all(feature = "client", not(feature = "server")))]
pub const USAGE: &str = concat!(
    "usage: ",
    client_usage!(),
    "\n       ",
    fleet_usage!(),
    "\n       btest --help | --version"
);
/// Short usage of the roles this binary was built with, printed after usage errors.
#[cfg(all(feature = "server", not(feature = "client")))]
pub const USAGE: &str = concat!(
    "usage: ",
    server_usage!(),
    "\n       btest --help | --version"
);
/// Short usage of the roles this binary was built with, printed after usage errors.
#[cfg(not(any(feature = "client", feature = "server")))]
pub const USAGE: &str = "usage: btest --help | --version";

const HAS_CLIENT: bool = cfg!(feature = "client");
const HAS_SERVER: bool = cfg!(feature = "server");

/// Which help text: `btest --help` (also `-h`), `btest client --help`, `btest server --help`.
///
/// Its `Display` renders the text from [`OPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Help {
    /// Usage of both roles, a description, the common options, pointers to the role helps.
    Overview,
    /// Client usage, the client options and the common ones.
    Client,
    /// Server usage, the server options and the common ones.
    Server,
    /// `btest fleet --help`.
    Fleet,
    /// `btest through --help`.
    Through,
}

/// Where an option is listed; a flag listed only under one role is rejected in the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Client,
    Server,
    Common,
}

/// One row of the help: the single source for the three help texts and for the cross-role
/// check ("--listen is not a client option").
struct Opt {
    section: Section,
    /// The left column as printed; every word starting with '-' is a flag this row documents.
    names: &'static str,
    /// The description; each '\n' continues it on the next line, aligned.
    help: &'static str,
    /// Undocumented spellings of the row's first flag (`-t` for `--duration`).
    aliases: &'static [&'static str],
}

impl Opt {
    const fn new(section: Section, names: &'static str, help: &'static str) -> Opt {
        Opt {
            section,
            names,
            help,
            aliases: &[],
        }
    }

    const fn alias(self, aliases: &'static [&'static str]) -> Opt {
        Opt { aliases, ..self }
    }

    /// The flags this row documents, as typed: `--user`, `-4`.
    fn flags(&self) -> impl Iterator<Item = &'static str> {
        self.names
            .split_whitespace()
            .map(|w| w.trim_end_matches(','))
            .filter(|w| w.len() > 1 && w.starts_with('-'))
    }
}

const fn client(names: &'static str, help: &'static str) -> Opt {
    Opt::new(Section::Client, names, help)
}

const fn server(names: &'static str, help: &'static str) -> Opt {
    Opt::new(Section::Server, names, help)
}

const fn common(names: &'static str, help: &'static str) -> Opt {
    Opt::new(Section::Common, names, help)
}

/// Every documented option, in help order.
const OPTIONS: &[Opt] = &[
    client("--protocol tcp|udp", "transport (default tcp)"),
    client(
        "--direction transmit|receive|both",
        "data direction seen from this client (default receive)",
    ),
    client(
        "--duration DUR",
        "test length, e.g. 10s, 1m; 0 = until Ctrl-C (default 10s)",
    )
    .alias(&["-t"]),
    client(
        "--connection-count N",
        "TCP connections, 1..255 (default 1)",
    ),
    client(
        "--local-tx-speed RATE",
        "our transmit rate, bit/s with k/M/G; 0 = unlimited (default 0)",
    ),
    client(
        "--remote-tx-speed RATE",
        "the server's transmit rate; 0 = unlimited (default 0)",
    ),
    client(
        "--local-udp-tx-size N",
        "UDP datagram size we send, 28..64000 bytes incl. IP+UDP\nheaders (default 1500)",
    ),
    client(
        "--remote-udp-tx-size N",
        "UDP datagram size the server sends (default 1500)",
    ),
    client(
        "--random-data yes|no",
        "random payload instead of zeros (default no)",
    ),
    client("--interval DUR", "report cadence, 20ms..5s (default 1s)").alias(&["-i"]),
    client("-4, -6", "use IPv4 / IPv6 only"),
    client("--bind ADDR", "local address to send from"),
    client("--tos N", "IP TOS / traffic class byte, 0..255"),
    client(
        "--connect-timeout DUR",
        "connect and handshake deadline (default 10s)",
    ),
    client("--user USER", "user name for authentication"),
    client(
        "--password PASS",
        "password (or set BTEST_PASSWORD to keep it off the process list)",
    ),
    client(
        "--pacing auto|precise",
        "auto: each datagram at its own deadline down to 40 us apart\n(300 Mbit/s of 1500 B), short bursts above; precise: spin for\nexact spacing at any rate (a busy core per paced sender)\n(default auto)",
    ),
    client(
        "--udp-io auto|mmsg|single",
        "UDP batching: auto = GSO/GRO where the kernel has them,\nelse sendmmsg/recvmmsg; single = one datagram per call",
    ),
    client(
        "--busy-poll USECS",
        "SO_BUSY_POLL on data sockets (bare-metal NICs; costs CPU)",
    ),
    client("--json", "NDJSON records on stdout instead of text"),
    client(
        "--csv FILE",
        "append one CSV row per finished test (header when new)",
    ),
    client(
        "--syslog HOST[:PORT]",
        "RFC 3164 messages over UDP (default port 514)",
    ),
    client(
        "--latency auto|echo|icmp|off",
        "round-trip probe beside the load, 10/s: echo = the btest\nserver's UDP echo, icmp = ping; auto = echo, else icmp\n(default auto)",
    ),
    client(
        "--latency-idle DUR",
        "idle round trip measured this long before the load, 0..60s\n(default 1s)",
    ),
    client(
        "--device IF",
        "bind every socket to this interface (SO_BINDTODEVICE)",
    ),
    client(
        "--report FILE",
        "write a self-contained HTML report (charts, tables)",
    ),
    client(
        "--live auto|yes|no",
        "live rate graph under the lines (default auto: stdout is a\nterminal and the output is text)",
    ),
    server(
        "--listen ADDR[:PORT]",
        "listen address, repeatable (default [::]:2000, dual-stack)",
    ),
    server(
        "--udp-port-from PORT",
        "first UDP port handed to UDP tests (default 2001)",
    ),
    server(
        "--control-timeout DUR",
        "end a session after this much silence (default 10s)",
    ),
    server(
        "--max-duration DUR",
        "cap on a session's length; 0 = unlimited (default 0)",
    ),
    server("--max-sessions N", "concurrent sessions (default 100)"),
    server(
        "--handshake-timeout DUR",
        "drop a handshake (command, login, joins) not done by then\n(default 5s)",
    ),
    server(
        "--max-handshakes N",
        "handshakes in progress, all sources (default 256)",
    ),
    server(
        "--max-handshakes-per-source N",
        "... per IPv4 address or IPv6 /64 (default 16; joins on top)",
    ),
    server(
        "--max-sessions-per-source N",
        "sessions at once per IPv4 address or IPv6 /64 (default 4;\n0 = no limit)",
    ),
    server(
        "--max-connections-per-source N",
        "TCP connections of one source's sessions together (default\n300; 0 = no limit)",
    ),
    server(
        "--max-login-failures N",
        "wrong logins per source in 60 s, then block (default 5; 0 off)",
    ),
    server(
        "--login-block DUR",
        "how long a blocked source is refused (default 60s)",
    ),
    server(
        "--logins-per-minute N",
        "logins per source per minute, burst 10 (default 30; 0 = off)",
    ),
    server(
        "--allow CIDR[,CIDR]",
        "only these networks may connect (repeatable; IPv4, IPv6)",
    ),
    server(
        "--deny CIDR[,CIDR]",
        "these networks may not connect (repeatable; wins over --allow)",
    ),
    server(
        "--max-rate RATE",
        "cap each session instead of refusing faster tests: our\nsending, and over TCP our reading (e.g. 100M; default none)",
    ),
    server(
        "--source-limit 'SCOPE LIMITS'",
        "limits per source (repeatable): SCOPE addr, v4/LEN or v6/LEN;\nLIMITS day=, week=, month= (bytes; up-/down- prefixed\nfor one way), sessions=N, duration=DUR, rate=RATE",
    ),
    server(
        "--state-dir DIR",
        "keep byte usage here across restarts (byte quotas need it)",
    ),
    server(
        "--http [ADDR:]PORT",
        "serve live sessions, quotas and history as JSON, /metrics\nand a dashboard page (a bare port: 127.0.0.1 only)",
    ),
    server(
        "--http-host NAME",
        "also answer --http requests for this host name (repeatable);\nits listen address is always answered, other names get\n421 (DNS rebinding)",
    ),
    server(
        "--auth ecsrp5|md5|none",
        "method offered (default ecsrp5 with credentials, else none)",
    ),
    server("--user USER --password PASS", "one account"),
    server(
        "--users FILE",
        "accounts, one user:password per line, # comments (mode 600)",
    ),
    server(
        "--json",
        "session_start / session_end JSON records on stdout",
    ),
    server("--csv FILE", "append one CSV row per finished session"),
    server(
        "--syslog HOST[:PORT]",
        "RFC 3164 messages: session start/end, login success/failure",
    ),
    server(
        "--pacing auto|precise",
        "auto: each datagram at its own deadline down to 40 us apart\n(300 Mbit/s of 1500 B), short bursts above; precise: spin for\nexact spacing at any rate (a busy core per paced sender)\n(default auto)",
    ),
    server(
        "--udp-io auto|mmsg|single",
        "UDP batching: auto = GSO/GRO where the kernel has them,\nelse sendmmsg/recvmmsg; single = one datagram per call",
    ),
    server(
        "--busy-poll USECS",
        "SO_BUSY_POLL on data sockets (bare-metal NICs; costs CPU)",
    ),
    server(
        "--metrics-file PATH",
        "Prometheus text file rewritten every second (node_exporter)",
    ),
    server(
        "--echo yes|no",
        "answer latency probes on UDP at each listen address and\nport (default yes)",
    ),
    server(
        "--device IF",
        "bind every socket to this interface (SO_BINDTODEVICE)",
    ),
    common(
        "-v, --verbose",
        "more diagnostics on stderr (repeat for more); RUST_LOG overrides",
    ),
    common("-q, --quiet", "errors only on stderr"),
    common(
        "-h, --help",
        "this help; after client or server, that role's options",
    ),
    common("-V, --version", "print the version"),
];

/// The role a flag belongs to, with the name to report it by: `Some` only for a flag that
/// [`OPTIONS`] lists under one role alone (`--listen`, `-4`), not for `--json` or `-v`.
///
/// Looked up in a table built once from [`OPTIONS`]: walking the help rows for every flag typed
/// made the parser cost ~1.7 ms per command line under the fuzzer (docs/fuzzing.md).
fn flag_role(typed: &str) -> Option<(&'static str, Role)> {
    static TABLE: std::sync::OnceLock<Vec<RoleRow>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(role_table);
    let i = table.binary_search_by(|(f, _)| (*f).cmp(typed)).ok()?;
    table[i].1
}

/// A flag as typed, and the role it belongs to with the name to report it by.
type RoleRow = (&'static str, Option<(&'static str, Role)>);

/// Every flag and alias in [`OPTIONS`], sorted, with its role; a flag listed under two sections
/// has none.
fn role_table() -> Vec<RoleRow> {
    let mut rows: Vec<(&'static str, &'static str, Section)> = Vec::new();
    for o in OPTIONS {
        let canonical = o.flags().next();
        rows.extend(o.flags().map(|f| (f, f, o.section)));
        if let Some(c) = canonical {
            rows.extend(o.aliases.iter().map(|a| (*a, c, o.section)));
        }
    }
    rows.sort_by_key(|r| r.0);
    let mut table: Vec<RoleRow> = Vec::new();
    for (typed, name, section) in rows {
        let role = match section {
            Section::Client => Some((name, Role::Client)),
            Section::Server => Some((name, Role::Server)),
            Section::Common => None,
        };
        match table.last_mut() {
            Some((last, r)) if *last == typed => {
                if r.map(|(_, role)| role) != role.map(|(_, role)| role) {
                    *r = None;
                }
            }
            _ => table.push((typed, role)),
        }
    }
    table
}

/// Width of the names column, after the two-space indent.
const NAMES_WIDTH: usize = 28;

fn write_section(out: &mut String, title: &str, section: Section) {
    use std::fmt::Write;
    let _ = writeln!(out, "\n{title}");
    for o in OPTIONS.iter().filter(|o| o.section == section) {
        let mut lines = o.help.lines();
        let first = lines.next().unwrap_or_default();
        if o.names.len() < NAMES_WIDTH {
            let _ = writeln!(out, "  {:<NAMES_WIDTH$}{first}", o.names);
        } else {
            let _ = writeln!(out, "  {}\n  {:NAMES_WIDTH$}{first}", o.names, "");
        }
        for l in lines {
            let _ = writeln!(out, "  {:NAMES_WIDTH$}{l}", "");
        }
    }
}

const EXIT_CODES: &str = "Exit codes: 0 test completed, 1 test failed (refused, peer vanished, \
                          protocol error), 2 usage.";
const CLIENT_ABOUT: &str =
    "The client tests against a RouterOS /tool bandwidth-server or a btest server.";
const SERVER_ABOUT: &str = "The server answers RouterOS /tool bandwidth-test and btest clients.";

impl Help {
    fn text(self) -> String {
        let mut s = String::new();
        match self {
            Help::Overview => {
                let (roles, about, pointer) = match (HAS_CLIENT, HAS_SERVER) {
                    (true, true) => (
                        "client and server",
                        format!("{CLIENT_ABOUT}\n{SERVER_ABOUT}"),
                        "Run `btest client --help` or `btest server --help` for the options of \
                         each.",
                    ),
                    (true, false) => (
                        "client",
                        CLIENT_ABOUT.to_string(),
                        "Run `btest client --help` for the client's options. This build has no \
                         server role\n(cargo feature 'server').",
                    ),
                    (false, true) => (
                        "server",
                        SERVER_ABOUT.to_string(),
                        "Run `btest server --help` for the server's options. This build has no \
                         client role\n(cargo feature 'client').",
                    ),
                    (false, false) => (
                        "client and server",
                        String::new(),
                        "This build has neither role (cargo features 'client' and 'server').",
                    ),
                };
                s += &format!(
                    "btest: MikroTik Bandwidth Test (btest) {roles}, RouterOS compatible.\n\n\
                     {USAGE}\n\n\
                     Measures TCP and UDP throughput with the RouterOS bandwidth-test protocol,\n\
                     transmit, receive or both, with EC-SRP5 or MD5 logins.\n{about}\n"
                );
                write_section(&mut s, "Common options:", Section::Common);
                s += &format!("\n{pointer}\n{EXIT_CODES}");
            }
            Help::Client => {
                s += concat!(
                    "btest client: a bandwidth test against a RouterOS /tool bandwidth-server \
                     or a btest server.\n\nusage: ",
                    client_usage!(),
                    "\n"
                );
                write_section(
                    &mut s,
                    "Client options (named as RouterOS /tool bandwidth-test names them):",
                    Section::Client,
                );
                write_section(&mut s, "Common options:", Section::Common);
                s += "\nRates: UDP rates count IP+UDP headers as RouterOS does; TCP rates count \
                      payload.\n";
                s += EXIT_CODES;
            }
            Help::Fleet => s += FLEET_HELP,
            Help::Through => s += THROUGH_HELP,
            Help::Server => {
                s += concat!(
                    "btest server: answers RouterOS /tool bandwidth-test and btest clients.\n\n\
                     usage: ",
                    server_usage!(),
                    "\n"
                );
                write_section(&mut s, "Server options:", Section::Server);
                write_section(&mut s, "Common options:", Section::Common);
                s += "\nExit codes: 0 stopped by SIGINT or SIGTERM, 1 cannot serve (e.g. the port \
                      is taken), 2 usage.";
            }
        }
        s
    }
}

impl std::fmt::Display for Help {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Run a client test.
    Client(Box<ClientConfig>),
    /// Run a server.
    Server(Box<ServerConfig>),
    /// Test many targets.
    Fleet(Box<crate::config::FleetConfig>),
    /// Run our server and client on two sides of a device.
    Through(Box<crate::config::ThroughConfig>),
    /// Print this help and exit 0.
    Help(Help),
    /// Print the version and exit 0.
    Version,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// What to do.
    pub mode: Mode,
    /// -v count minus -q count.
    pub verbosity: i32,
}

/// What was typed, before cross-flag validation.
#[derive(Debug, Default)]
struct RawArgs {
    role: Option<Role>,
    host: Option<String>,
    verbosity: i32,
    help: bool,
    version: bool,
    protocol: Option<Protocol>,
    direction: Option<Direction>,
    duration: Option<Duration>,
    connection_count: Option<u8>,
    local_tx_speed: Option<u64>,
    remote_tx_speed: Option<u32>,
    local_udp_tx_size: Option<u16>,
    remote_udp_tx_size: Option<u16>,
    random_data: Option<bool>,
    interval: Option<Duration>,
    family: Option<Family>,
    bind: Option<IpAddr>,
    tos: Option<u8>,
    connect_timeout: Option<Duration>,
    json: bool,
    user: Option<String>,
    password: Option<String>,
    listen: Vec<SocketAddr>,
    udp_port_from: Option<u16>,
    control_timeout: Option<Duration>,
    max_duration: Option<Duration>,
    max_sessions: Option<usize>,
    handshake_timeout: Option<Duration>,
    max_handshakes: Option<usize>,
    max_handshakes_per_source: Option<usize>,
    max_sessions_per_source: Option<usize>,
    max_connections_per_source: Option<usize>,
    max_login_failures: Option<u32>,
    login_block: Option<Duration>,
    logins_per_minute: Option<u32>,
    allow: Vec<crate::cidr::Cidr>,
    deny: Vec<crate::cidr::Cidr>,
    max_rate: Option<u64>,
    source_limits: Vec<crate::config::SourceLimit>,
    state_dir: Option<PathBuf>,
    http: Option<SocketAddr>,
    http_hosts: Vec<String>,
    tuning: crate::config::Tuning,
    auth: Option<AuthMethod>,
    users_file: Option<PathBuf>,
    csv: Option<PathBuf>,
    syslog: Option<String>,
    metrics_file: Option<PathBuf>,
    latency: Option<crate::config::Latency>,
    latency_idle: Option<Duration>,
    device: Option<String>,
    report: Option<PathBuf>,
    live: Option<crate::config::Live>,
    echo: Option<bool>,
    /// (flag, role) of every role-specific flag seen, for the cross-role check.
    role_flags: Vec<(&'static str, Role)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

fn usage(msg: String) -> String {
    msg
}

fn value_str(flag: &str, v: OsString) -> Result<String, String> {
    v.into_string()
        .map_err(|v| usage(format!("{flag}: value {v:?} is not valid UTF-8")))
}

fn num<T>(flag: &str, v: &str, lo: T, hi: T, what: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match v.trim().parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(format!(
            "{flag}: invalid value '{v}': expected {what}, {lo}..{hi}"
        )),
    }
}

fn yes_no(flag: &str, v: &str) -> Result<bool, String> {
    match v {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("{flag}: invalid value '{v}': expected yes or no")),
    }
}

/// Parses `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address; `default_port` fills in.
pub fn parse_listen(v: &str, default_port: u16) -> Result<SocketAddr, String> {
    let bad = || {
        format!(
            "--listen: invalid address '{v}': expected ADDR or ADDR:PORT, e.g. 0.0.0.0, \
             [::]:2000, 192.0.2.1:2000"
        )
    };
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = v
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(bad())
}

/// Splits `HOST[:PORT]` (also `[v6]:PORT` and bare IPv6) into host and port.
pub fn split_host_port(v: &str) -> Result<(String, u16), String> {
    let bad_port = |p: &str| {
        format!("invalid server '{v}': port '{p}' is not a number 1..65535 (expected HOST[:PORT])")
    };
    if v.is_empty() {
        return Err(
            "missing server: expected HOST[:PORT], e.g. 192.0.2.1 or router.lan:2000".into(),
        );
    }
    if let Some(rest) = v.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid server '{v}': missing ']' after the IPv6 address"))?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((
                h.to_string(),
                p.parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad_port(p))?,
            )),
            None if tail.is_empty() => Ok((h.to_string(), DEFAULT_PORT)),
            None => Err(format!(
                "invalid server '{v}': unexpected '{tail}' after ']'"
            )),
        };
    }
    if v.matches(':').count() > 1 {
        return Ok((v.to_string(), DEFAULT_PORT));
    }
    match v.split_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad_port(p))?,
        )),
        None => Ok((v.to_string(), DEFAULT_PORT)),
    }
}

/// Parses the process's own command line; `env_password` is `BTEST_PASSWORD`.
pub fn parse_from<I, S>(args: I, env_password: Option<String>) -> Result<Invocation, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("fleet") if HAS_CLIENT => {
            if !cfg!(feature = "fleet") {
                return Err(
                    "fleet: this btest was built without fleet runs (cargo feature 'fleet'; \
                     the router images leave it out)"
                        .into(),
                );
            }
            return parse_fleet(&args[1..]);
        }
        Some("through") if HAS_CLIENT && HAS_SERVER => {
            if !cfg!(feature = "through") {
                return Err("through: this btest was built without it (cargo feature \
                            'through'; the router images leave it out)"
                    .into());
            }
            return parse_through(&args[1..], env_password);
        }
        _ => {}
    }
    let raw = lex(args)?;
    finish(raw, env_password)
}

const FLEET_HELP: &str =
    "btest fleet: test many targets, one after another or a few at a time, and write one
results matrix (per target: up and down rates, loss, RTT, CPU both ends, errors).

usage: btest fleet FILE [OPTIONS]

FILE, one target per line ('#' starts a comment; quote values with spaces):
  defaults CLIENT-OPTIONS...            options every target starts from
  NAME HOST[:PORT] [CLIENT-OPTIONS...]  a target: any `btest client` option, and
      --credentials FILE                a file holding USER:PASSWORD (mode 600)
      --retries N                       this target's own retry count
  e.g.  defaults --duration 10s --direction both
        tower-1  10.0.0.1  --credentials /etc/btest/tower.cred
        tower-2  10.0.0.2:2000  --protocol udp --remote-tx-speed 50M

Options:
  --parallel N          targets tested at once, 1..64 (default 1: one at a time,
                        so tests do not share a link)
  --retries N           further attempts after a failure that may pass on a retry
                        (connect, timeout, the test ending early), 0..10 (default 1);
                        wrong credentials and refusals are not retried
  --retry-delay DUR     wait between attempts (default 5s)
  --json                NDJSON `target` records on stdout instead of the text matrix
  --ndjson FILE         write the `target` records as NDJSON to FILE
  --csv FILE            write the `target` records as CSV to FILE
  --report FILE         write a self-contained HTML report of every target
  -v, -q                more / fewer diagnostics on stderr

Progress goes to stderr, a line per attempt. Exit codes: 0 every target passed,
1 at least one failed, 2 usage (the file's errors name their line).";

const THROUGH_HELP: &str =
    "btest through: our server and our client in one process, each on its own side of a
device (a router, a bridge, a radio link), so a host with two ports tests the device
between them. The server side listens only on --server-addr with a one-time account.

usage: btest through --server-addr ADDR [OPTIONS] [CLIENT-OPTIONS...]

Options:
  --server-addr ADDR    the server side's address; the client connects to it
  --port N              the server side's TCP port (default 2000; 0: any free one)
  --udp-port-from N     the server side's first UDP port (default: --port + 1)
  --server-dev IF       bind the server side's sockets to interface IF
  --server-netns NAME   run the server side in network namespace NAME
                        (/run/netns/NAME, or a path)
  --client-bind ADDR    the client side's source address
  --client-dev IF       bind the client side's sockets to interface IF
  --client-netns NAME   run the client side in network namespace NAME
  CLIENT-OPTIONS        every `btest client` option: --protocol, --direction,
                        --connection-count, --local-tx-speed, --remote-tx-speed,
                        --duration, --latency, --json, --csv, --report, ...

Two ports in one namespace reach each other over loopback, whatever the binding: give
one side its own namespace (or VRF) so the traffic crosses the device. Binding to an
interface and entering a namespace need root (CAP_NET_RAW, CAP_SYS_ADMIN). Exit codes as
for `btest client`.";

/// Takes `--flag VALUE` or `--flag=VALUE` at `args[*i]`; `None` when it is another flag.
fn take_value(args: &[String], i: &mut usize, flag: &str) -> Result<Option<String>, String> {
    let a = &args[*i];
    if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
        return Ok(Some(v.to_string()));
    }
    if a != flag {
        return Ok(None);
    }
    *i += 1;
    args.get(*i)
        .cloned()
        .map(Some)
        .ok_or_else(|| format!("{flag}: missing value"))
}

fn utf8_args(args: &[OsString]) -> Result<Vec<String>, String> {
    args.iter()
        .map(|a| {
            a.clone()
                .into_string()
                .map_err(|v| format!("argument {v:?} is not valid UTF-8"))
        })
        .collect()
}

/// `NAME` means `/run/netns/NAME` (what `ip netns add NAME` makes); a path is taken as is.
fn netns_path(flag: &str, v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err(format!("{flag}: missing namespace name"));
    }
    Ok(if v.contains('/') {
        PathBuf::from(v)
    } else {
        PathBuf::from("/run/netns").join(v)
    })
}

/// `btest through`: its own flags, then every other argument is a client option.
fn parse_through(args: &[OsString], env_password: Option<String>) -> Result<Invocation, String> {
    let args = utf8_args(args)?;
    let mut rest: Vec<String> = Vec::new();
    let (mut addr, mut port) = (None::<IpAddr>, DEFAULT_PORT);
    let (mut sdev, mut cdev, mut cbind) = (None, None, None);
    let (mut sns, mut cns) = (None, None);
    let mut udp_from = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--help" || a == "-h" {
            return Ok(Invocation {
                mode: Mode::Help(Help::Through),
                verbosity: 0,
            });
        }
        if let Some(v) = take_value(&args, &mut i, "--server-addr")? {
            addr = Some(v.trim_matches(['[', ']']).parse().map_err(|_| {
                format!(
                    "--server-addr: invalid address '{v}': expected an IP address, e.g. 10.0.2.1"
                )
            })?);
        } else if let Some(v) = take_value(&args, &mut i, "--port")? {
            port = num("--port", &v, 0, u16::MAX, "a TCP port (0: any free one)")?;
        } else if let Some(v) = take_value(&args, &mut i, "--udp-port-from")? {
            udp_from = Some(num("--udp-port-from", &v, 1024, 65000, "a UDP port")?);
        } else if let Some(v) = take_value(&args, &mut i, "--server-dev")? {
            sdev = Some(parse_device(&v).map_err(|e| e.replace("--device", "--server-dev"))?);
        } else if let Some(v) = take_value(&args, &mut i, "--client-dev")? {
            cdev = Some(parse_device(&v).map_err(|e| e.replace("--device", "--client-dev"))?);
        } else if let Some(v) = take_value(&args, &mut i, "--client-bind")? {
            cbind = Some(v);
        } else if let Some(v) = take_value(&args, &mut i, "--server-netns")? {
            sns = Some(netns_path("--server-netns", &v)?);
        } else if let Some(v) = take_value(&args, &mut i, "--client-netns")? {
            cns = Some(netns_path("--client-netns", &v)?);
        } else {
            for (flag, instead) in [
                ("--bind", "--client-bind"),
                ("--device", "--client-dev or --server-dev"),
                ("--user", "nothing: through mode makes a one-time account"),
                (
                    "--password",
                    "nothing: through mode makes a one-time account",
                ),
            ] {
                if a == flag || a.starts_with(&format!("{flag}=")) {
                    return Err(format!("through: {flag} is not taken here; use {instead}"));
                }
            }
            if !a.starts_with('-') && rest.last().is_none_or(|p| !p.starts_with('-')) {
                return Err(format!(
                    "through: unexpected argument '{a}': the target is --server-addr"
                ));
            }
            rest.push(a.to_string());
        }
        i += 1;
    }
    let addr = addr.ok_or_else(|| {
        "through: missing --server-addr ADDR (the server side's address, e.g. 10.0.2.1)".to_string()
    })?;
    // Port 0 (any free one) is known only once the server side is bound (through.rs); the
    // client parser takes a placeholder.
    let cport = port.max(1);
    let target = match addr {
        IpAddr::V6(a) => format!("[{a}]:{cport}"),
        IpAddr::V4(a) => format!("{a}:{cport}"),
    };
    let mut cargs = vec!["client".to_string(), target];
    cargs.extend(rest);
    if let Some(d) = &cdev {
        cargs.extend(["--device".to_string(), d.clone()]);
    }
    if let Some(b) = &cbind {
        cargs.extend(["--bind".to_string(), b.clone()]);
    }
    let inv = parse_from(cargs, None).map_err(|e| format!("through: {e}"))?;
    let mut client = match inv.mode {
        Mode::Client(c) => *c,
        Mode::Help(_) => {
            return Ok(Invocation {
                mode: Mode::Help(Help::Through),
                verbosity: inv.verbosity,
            })
        }
        _ => return Err("through: not a client test".into()),
    };
    let _ = env_password;
    // A one-time account, so nobody else can use the server side while it listens.
    let mut secret = [0u8; 12];
    crate::sys::random_bytes(&mut secret);
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    client.port = port;
    client.user = Some("btest-through".into());
    client.password = Some(password.clone());
    let mut server = ServerConfig {
        listen: vec![SocketAddr::new(addr, port)],
        udp_port_from: udp_from.unwrap_or(if port == 0 {
            2001
        } else {
            port.saturating_add(1).clamp(1024, 65000)
        }),
        auth: AuthMethod::Md5,
        users: vec![("btest-through".into(), password)],
        max_sessions: 4,
        device: sdev,
        output: client.output,
        ..ServerConfig::default()
    };
    server.tuning = client.tuning;
    Ok(Invocation {
        mode: Mode::Through(Box::new(crate::config::ThroughConfig {
            client,
            server,
            client_netns: cns,
            server_netns: sns,
        })),
        verbosity: inv.verbosity,
    })
}

/// `btest fleet FILE [OPTIONS]`; the file itself is read when the fleet runs.
fn parse_fleet(args: &[OsString]) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args.iter().cloned());
    let mut verbosity = 0;
    let mut c = crate::config::FleetConfig {
        file: PathBuf::new(),
        parallel: 1,
        retries: 1,
        retry_delay: Duration::from_secs(5),
        output: Output::Text,
        csv: None,
        ndjson: None,
        report: None,
    };
    let mut file = None;
    loop {
        let arg = match p.next() {
            Ok(None) => break,
            Ok(Some(a)) => a,
            Err(e) => return Err(format!("fleet: {e}")),
        };
        macro_rules! val {
            ($flag:expr) => {
                value_str($flag, p.value().map_err(|e| format!("fleet: {e}"))?)?
            };
        }
        match arg {
            Short('h') | Long("help") => {
                return Ok(Invocation {
                    mode: Mode::Help(Help::Fleet),
                    verbosity,
                })
            }
            Short('v') | Long("verbose") => verbosity += 1,
            Short('q') | Long("quiet") => verbosity -= 1,
            Long("parallel") => c.parallel = num("--parallel", &val!("--parallel"), 1, 64, "targets at once")?,
            Long("retries") => c.retries = num("--retries", &val!("--retries"), 0, 10, "further attempts")?,
            Long("retry-delay") => {
                let v = val!("--retry-delay");
                c.retry_delay = parse_duration(&v).map_err(|e| format!("--retry-delay: {e}"))?;
            }
            Long("json") => c.output = Output::Json,
            Long("csv") => c.csv = Some(PathBuf::from(val!("--csv"))),
            Long("ndjson") => c.ndjson = Some(PathBuf::from(val!("--ndjson"))),
            Long("report") => c.report = Some(PathBuf::from(val!("--report"))),
            Value(v) if v.is_empty() => {
                return Err("fleet: FILE is an empty name (see btest fleet --help)".into())
            }
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => {
                return Err(format!(
                    "fleet: unexpected argument '{}': one FILE only; targets and their options go in it",
                    v.to_string_lossy()
                ))
            }
            other => {
                return Err(format!(
                    "fleet: {} (see btest fleet --help; client options go in the file)",
                    other.unexpected()
                ))
            }
        }
    }
    c.file = file.ok_or_else(|| "fleet: missing FILE (see btest fleet --help)".to_string())?;
    Ok(Invocation {
        mode: Mode::Fleet(Box::new(c)),
        verbosity,
    })
}

fn lex<I, S>(args: I) -> Result<RawArgs, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    use lexopt::Arg::{Long, Short, Value};
    let mut p = lexopt::Parser::from_args(args);
    let mut r = RawArgs::default();
    // Lexing goes on after an error so that a `--help` anywhere still wins; without one the
    // first error is the answer, as if lexing had stopped there.
    let mut first_err = None;
    loop {
        let long;
        // `arg` must not borrow `p`: lex_arg reads option values from it.
        let arg = match p.next() {
            Ok(None) => break,
            Ok(Some(Long(l))) => {
                long = l.to_owned();
                Long(long.as_str())
            }
            Ok(Some(Short(c))) => Short(c),
            Ok(Some(Value(v))) => Value(v),
            Err(e) => {
                first_err.get_or_insert(e.to_string());
                continue;
            }
        };
        let typed = match arg {
            Long(l) => Some(format!("--{l}")),
            Short(c) => Some(format!("-{c}")),
            Value(_) => None,
        };
        if let Some(role_flag) = typed.as_deref().and_then(flag_role) {
            r.role_flags.push(role_flag);
        }
        if let Err(e) = lex_arg(&mut p, &mut r, arg) {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) if !r.help => Err(e),
        _ => Ok(r),
    }
}

/// One argument into `r`; an option's value, if it takes one, comes from `p`.
fn lex_arg(p: &mut lexopt::Parser, r: &mut RawArgs, arg: lexopt::Arg<'_>) -> Result<(), String> {
    use lexopt::prelude::*;
    macro_rules! val {
        ($flag:expr) => {
            value_str($flag, p.value().map_err(|e| e.to_string())?)?
        };
    }
    match arg {
        Short('h') | Long("help") => r.help = true,
        Short('V') | Long("version") => r.version = true,
        Short('v') | Long("verbose") => r.verbosity += 1,
        Short('q') | Long("quiet") => r.verbosity -= 1,
        Short('s') | Long("server") => set_role(r, Role::Server)?,
        Short('c') | Long("client") => {
            set_role(r, Role::Client)?;
            // `btest -c --help` asks for the client's help: no host can be named `--help`.
            let help_next = p
                .try_raw_args()
                .is_some_and(|a| a.peek().is_some_and(|v| v == "--help" || v == "-h"));
            if !help_next {
                r.host = Some(val!("-c"));
            }
        }
        Value(v) if r.role.is_none() => {
            let v = value_str("command", v)?;
            match v.as_str() {
                "server" => set_role(r, Role::Server)?,
                "client" => set_role(r, Role::Client)?,
                _ => {
                    return Err(format!(
                        "unknown command '{v}': expected 'client HOST' or 'server'"
                    ))
                }
            }
        }
        Value(v) if r.role == Some(Role::Client) && r.host.is_none() => {
            r.host = Some(value_str("HOST", v)?);
        }
        Value(v) => return Err(format!("unexpected argument '{}'", v.to_string_lossy())),
        Long("protocol") => {
            let v = val!("--protocol");
            r.protocol = Some(match v.as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => {
                    return Err(format!(
                        "--protocol: invalid value '{v}': expected tcp or udp"
                    ))
                }
            });
        }
        Long("direction") => {
            let v = val!("--direction");
            r.direction = Some(match v.as_str() {
                "transmit" | "send" | "tx" => Direction::ServerRx,
                "receive" | "rx" => Direction::ServerTx,
                "both" => Direction::Both,
                _ => {
                    return Err(format!(
                        "--direction: invalid value '{v}': expected transmit, receive or both"
                    ))
                }
            });
        }
        Long("duration") | Short('t') => {
            r.duration =
                Some(parse_duration(&val!("--duration")).map_err(|e| format!("--duration: {e}"))?);
        }
        Long("connection-count") => {
            r.connection_count = Some(num(
                "--connection-count",
                &val!("--connection-count"),
                1u8,
                255,
                "a whole number",
            )?);
        }
        Long("local-tx-speed") => {
            r.local_tx_speed = Some(
                parse_rate(&val!("--local-tx-speed"))
                    .map_err(|e| format!("--local-tx-speed: {e}"))?,
            );
        }
        Long("remote-tx-speed") => {
            let v = val!("--remote-tx-speed");
            let bps = parse_rate(&v).map_err(|e| format!("--remote-tx-speed: {e}"))?;
            r.remote_tx_speed = Some(u32::try_from(bps).map_err(|_| {
                format!(
                    "--remote-tx-speed: '{v}' is too large: the protocol carries at most \
                         4294967295 bit/s (about 4.29G); use 0 for unlimited"
                )
            })?);
        }
        Long("local-udp-tx-size") => {
            r.local_udp_tx_size = Some(num(
                "--local-udp-tx-size",
                &val!("--local-udp-tx-size"),
                MIN_TX_SIZE,
                MAX_TX_SIZE,
                "a size in bytes",
            )?);
        }
        Long("remote-udp-tx-size") => {
            r.remote_udp_tx_size = Some(num(
                "--remote-udp-tx-size",
                &val!("--remote-udp-tx-size"),
                MIN_TX_SIZE,
                MAX_TX_SIZE,
                "a size in bytes",
            )?);
        }
        Long("random-data") => {
            r.random_data = Some(yes_no("--random-data", &val!("--random-data"))?);
        }
        Long("interval") | Short('i') => {
            let v = val!("--interval");
            let d = parse_duration(&v).map_err(|e| format!("--interval: {e}"))?;
            if d < Duration::from_millis(20) || d > Duration::from_secs(5) {
                return Err(format!("--interval: '{v}' is out of range: use 20ms..5s"));
            }
            r.interval = Some(d);
        }
        Short('4') => {
            r.family = Some(Family::V4);
        }
        Short('6') => {
            r.family = Some(Family::V6);
        }
        Long("bind") => {
            let v = val!("--bind");
            r.bind = Some(v.parse().map_err(|_| {
                format!("--bind: invalid address '{v}': expected an IPv4 or IPv6 address")
            })?);
        }
        Long("tos") => {
            let v = val!("--tos");
            let n = if let Some(h) = v.strip_prefix("0x") {
                u8::from_str_radix(h, 16).ok()
            } else {
                v.parse().ok()
            };
            r.tos = Some(n.ok_or_else(|| {
                format!("--tos: invalid value '{v}': expected 0..255 (or 0x00..0xff)")
            })?);
        }
        Long("connect-timeout") => {
            let v = val!("--connect-timeout");
            let d = parse_duration(&v).map_err(|e| format!("--connect-timeout: {e}"))?;
            if d.is_zero() {
                return Err(format!("--connect-timeout: '{v}' must be more than 0"));
            }
            r.connect_timeout = Some(d);
        }
        Long("json") => r.json = true,
        Long("user") => {
            let v = val!("--user");
            if v.is_empty() || v.len() > 255 || v.contains('\0') {
                return Err(format!(
                    "--user: invalid user '{v}': expected 1..255 bytes without NUL"
                ));
            }
            r.user = Some(v);
        }
        Long("password") => r.password = Some(val!("--password")),
        Long("listen") => {
            r.listen
                .push(parse_listen(&val!("--listen"), DEFAULT_PORT)?);
        }
        Long("udp-port-from") => {
            r.udp_port_from = Some(num(
                "--udp-port-from",
                &val!("--udp-port-from"),
                1u16,
                65000,
                "a UDP port",
            )?);
        }
        Long("control-timeout") => {
            let v = val!("--control-timeout");
            let d = parse_duration(&v).map_err(|e| format!("--control-timeout: {e}"))?;
            if d < Duration::from_secs(1) {
                return Err(format!("--control-timeout: '{v}' is too short: use at least 1s (statuses arrive once a second)"));
            }
            r.control_timeout = Some(d);
        }
        Long("max-duration") => {
            r.max_duration = Some(
                parse_duration(&val!("--max-duration"))
                    .map_err(|e| format!("--max-duration: {e}"))?,
            );
        }
        Long("pacing") => {
            let v = val!("--pacing");
            r.tuning.pacing = match v.as_str() {
                "auto" => crate::config::Pacing::Auto,
                "precise" => crate::config::Pacing::Precise,
                _ => {
                    return Err(format!(
                        "--pacing: invalid value '{v}': expected auto or precise"
                    ))
                }
            };
        }
        Long("udp-io") => {
            let v = val!("--udp-io");
            r.tuning.udp_io = match v.as_str() {
                "auto" => crate::config::UdpIo::Auto,
                "mmsg" => crate::config::UdpIo::Mmsg,
                "single" => crate::config::UdpIo::Single,
                _ => {
                    return Err(format!(
                        "--udp-io: invalid value '{v}': expected auto, mmsg or single"
                    ))
                }
            };
        }
        Long("busy-poll") => {
            r.tuning.busy_poll = Some(num(
                "--busy-poll",
                &val!("--busy-poll"),
                1u32,
                1_000_000,
                "microseconds",
            )?);
        }
        Long("handshake-timeout") => {
            let v = val!("--handshake-timeout");
            let d = parse_duration(&v).map_err(|e| format!("--handshake-timeout: {e}"))?;
            if d < Duration::from_millis(500) || d > Duration::from_secs(300) {
                return Err(format!(
                    "--handshake-timeout: '{v}' is out of range: use 500ms..5m (a RouterOS login takes well under 1 s on a LAN)"
                ));
            }
            r.handshake_timeout = Some(d);
        }
        Long("max-handshakes") => {
            r.max_handshakes = Some(num(
                "--max-handshakes",
                &val!("--max-handshakes"),
                1usize,
                100_000,
                "a connection count",
            )?);
        }
        Long("max-handshakes-per-source") => {
            r.max_handshakes_per_source = Some(num(
                "--max-handshakes-per-source",
                &val!("--max-handshakes-per-source"),
                1usize,
                100_000,
                "a connection count",
            )?);
        }
        Long("max-sessions-per-source") => {
            r.max_sessions_per_source = Some(num(
                "--max-sessions-per-source",
                &val!("--max-sessions-per-source"),
                0usize,
                100_000,
                "a session count (0 = no limit)",
            )?);
        }
        Long("max-connections-per-source") => {
            r.max_connections_per_source = Some(num(
                "--max-connections-per-source",
                &val!("--max-connections-per-source"),
                0usize,
                10_000_000,
                "a connection count (0 = no limit)",
            )?);
        }
        Long("max-login-failures") => {
            r.max_login_failures = Some(num(
                "--max-login-failures",
                &val!("--max-login-failures"),
                0u32,
                1_000_000,
                "a count (0 = no limit)",
            )?);
        }
        Long("login-block") => {
            let v = val!("--login-block");
            let d = parse_duration(&v).map_err(|e| format!("--login-block: {e}"))?;
            if d.is_zero() {
                return Err(format!(
                    "--login-block: '{v}' must be longer than 0 (use --max-login-failures 0 for no limit)"
                ));
            }
            r.login_block = Some(d);
        }
        Long("logins-per-minute") => {
            r.logins_per_minute = Some(num(
                "--logins-per-minute",
                &val!("--logins-per-minute"),
                0u32,
                1_000_000,
                "a count (0 = no limit)",
            )?);
        }
        Long("allow") => {
            let v = val!("--allow");
            let list = crate::cidr::parse_list(&v).map_err(|e| format!("--allow: {e}"))?;
            if list.is_empty() {
                return Err(format!(
                    "--allow: '{v}': expected CIDR[,CIDR], e.g. 192.0.2.0/24"
                ));
            }
            r.allow.extend(list);
        }
        Long("deny") => {
            let v = val!("--deny");
            let list = crate::cidr::parse_list(&v).map_err(|e| format!("--deny: {e}"))?;
            if list.is_empty() {
                return Err(format!(
                    "--deny: '{v}': expected CIDR[,CIDR], e.g. 192.0.2.0/24"
                ));
            }
            r.deny.extend(list);
        }
        Long("max-rate") => {
            let v = val!("--max-rate");
            let rate = parse_rate(&v).map_err(|e| format!("--max-rate: {e}"))?;
            if rate == 0 {
                return Err(format!(
                    "--max-rate: '{v}' must be above 0 (leave it out for no cap)"
                ));
            }
            r.max_rate = Some(rate);
        }
        Long("source-limit") => {
            let v = val!("--source-limit");
            r.source_limits
                .push(v.parse().map_err(|e| format!("--source-limit: {e}"))?);
        }
        Long("http") => {
            let v = val!("--http");
            r.http = Some(parse_http(&v)?);
        }
        Long("http-host") => {
            let v = val!("--http-host");
            r.http_hosts.push(parse_http_host(&v)?);
        }
        Long("state-dir") => {
            let v = val!("--state-dir");
            if v.is_empty() {
                return Err("--state-dir: expected a directory".into());
            }
            r.state_dir = Some(PathBuf::from(v));
        }
        Long("max-sessions") => {
            r.max_sessions = Some(num(
                "--max-sessions",
                &val!("--max-sessions"),
                1usize,
                100_000,
                "a session count",
            )?);
        }
        Long("auth") => {
            let v = val!("--auth");
            r.auth = Some(v.parse().map_err(|e: String| format!("--auth: {e}"))?);
        }
        Long("csv") => {
            let v = val!("--csv");
            if v.is_empty() {
                return Err("--csv: expected a file path".into());
            }
            r.csv = Some(PathBuf::from(v));
        }
        Long("syslog") => {
            let v = val!("--syslog");
            if v.is_empty() || v.starts_with(':') {
                return Err(format!("--syslog: invalid target '{v}': expected HOST[:PORT], e.g. 192.0.2.10 or logs.lan:514"));
            }
            r.syslog = Some(v);
        }
        Long("metrics-file") => {
            let v = val!("--metrics-file");
            if v.is_empty() {
                return Err("--metrics-file: expected a file path".into());
            }
            r.metrics_file = Some(PathBuf::from(v));
        }
        Long("latency") => {
            use crate::config::Latency;
            let v = val!("--latency");
            r.latency = Some(match v.as_str() {
                "auto" => Latency::Auto,
                "echo" => Latency::Echo,
                "icmp" => Latency::Icmp,
                "off" | "no" => Latency::Off,
                _ => {
                    return Err(format!(
                        "--latency: invalid value '{v}': expected auto, echo, icmp or off"
                    ))
                }
            });
        }
        Long("latency-idle") => {
            let v = val!("--latency-idle");
            let d = parse_duration(&v).map_err(|e| format!("--latency-idle: {e}"))?;
            if d > Duration::from_secs(60) {
                return Err(format!(
                    "--latency-idle: '{v}' is too long: expected 0..60s (e.g. 1s, 500ms)"
                ));
            }
            r.latency_idle = Some(d);
        }
        Long("device") => r.device = Some(parse_device(&val!("--device"))?),
        Long("report") => {
            r.report = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?));
        }
        Long("live") => {
            use crate::config::Live;
            let v = val!("--live");
            r.live = Some(match v.as_str() {
                "auto" => Live::Auto,
                _ => {
                    if yes_no("--live", &v).map_err(|_| {
                        format!("--live: invalid value '{v}': expected auto, yes or no")
                    })? {
                        Live::Yes
                    } else {
                        Live::No
                    }
                }
            });
        }
        Long("echo") => r.echo = Some(yes_no("--echo", &val!("--echo"))?),
        Long("users") => {
            r.users_file = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?));
        }
        _ => return Err(arg.unexpected().to_string()),
    }
    Ok(())
}

fn set_role(r: &mut RawArgs, role: Role) -> Result<(), String> {
    match r.role {
        Some(x) if x != role => Err("choose one of client and server, not both".into()),
        _ => {
            r.role = Some(role);
            Ok(())
        }
    }
}

fn finish(r: RawArgs, env_password: Option<String>) -> Result<Invocation, String> {
    let verbosity = r.verbosity;
    let done = |mode| Ok(Invocation { mode, verbosity });
    if r.help {
        // A role this build lacks gets the overview, which says so.
        return done(Mode::Help(match r.role {
            Some(Role::Client) if HAS_CLIENT => Help::Client,
            Some(Role::Server) if HAS_SERVER => Help::Server,
            _ => Help::Overview,
        }));
    }
    if r.version {
        return done(Mode::Version);
    }
    let role = r
        .role
        .ok_or_else(|| "missing command: expected 'client HOST' or 'server'".to_string())?;
    if let Some((flag, _)) = r.role_flags.iter().find(|(_, fr)| *fr != role) {
        let name = if role == Role::Client {
            "client"
        } else {
            "server"
        };
        return Err(format!(
            "{flag} is not a {name} option (see btest {name} --help)"
        ));
    }
    let output = if r.json { Output::Json } else { Output::Text };
    // BTEST_PASSWORD is for the client only: on a server it would silently switch on
    // authentication for an implicit `admin` account.
    let password = match role {
        Role::Client => r.password.or(env_password),
        Role::Server => r.password,
    };
    match role {
        Role::Client => {
            let host = r.host.ok_or_else(|| {
                "client: missing HOST: expected btest client HOST[:PORT]".to_string()
            })?;
            let (host, port) = split_host_port(&host)?;
            let mut c = ClientConfig::new(&host);
            c.port = port;
            c.protocol = r.protocol.unwrap_or(c.protocol);
            c.direction = r.direction.unwrap_or(c.direction);
            if let Some(d) = r.duration {
                c.duration = (!d.is_zero()).then_some(d);
            }
            c.connection_count = r.connection_count.unwrap_or(1);
            c.local_tx_speed = r.local_tx_speed.unwrap_or(0);
            c.remote_tx_speed = r.remote_tx_speed.unwrap_or(0);
            c.local_udp_tx_size = r.local_udp_tx_size.unwrap_or(c.local_udp_tx_size);
            c.remote_udp_tx_size = r.remote_udp_tx_size.unwrap_or(c.remote_udp_tx_size);
            c.random_data = r.random_data.unwrap_or(false);
            c.interval = r.interval.unwrap_or(c.interval);
            c.family = r.family.unwrap_or(Family::Any);
            c.bind = r.bind;
            c.tos = r.tos;
            c.connect_timeout = r.connect_timeout.unwrap_or(c.connect_timeout);
            c.output = output;
            c.csv = r.csv;
            c.syslog = r.syslog;
            c.tuning = r.tuning;
            c.latency = r.latency.unwrap_or_default();
            c.latency_idle = r.latency_idle.unwrap_or(c.latency_idle);
            c.device = r.device;
            if r.report.is_some() && !cfg!(feature = "report") {
                return Err(
                    "--report: this btest was built without HTML reports (cargo \
                            feature 'report'; the router images leave it out)"
                        .into(),
                );
            }
            c.report = r.report;
            c.live = r.live.unwrap_or_default();
            if password.is_some() && r.user.is_none() {
                c.user = Some("admin".into());
            } else {
                c.user = r.user;
            }
            c.password = password;
            if let (Some(b), Family::V4) = (c.bind, c.family) {
                if b.is_ipv6() {
                    return Err(format!("--bind {b} is an IPv6 address but -4 was given"));
                }
            }
            if let (Some(b), Family::V6) = (c.bind, c.family) {
                if b.is_ipv4() {
                    return Err(format!("--bind {b} is an IPv4 address but -6 was given"));
                }
            }
            done(Mode::Client(Box::new(c)))
        }
        Role::Server => {
            let mut s = ServerConfig::default();
            if !r.listen.is_empty() {
                s.listen = r.listen;
            }
            s.udp_port_from = r.udp_port_from.unwrap_or(s.udp_port_from);
            s.control_timeout = r.control_timeout.unwrap_or(s.control_timeout);
            s.max_duration = r.max_duration.filter(|d| !d.is_zero());
            s.max_sessions = r.max_sessions.unwrap_or(s.max_sessions);
            s.handshake_timeout = r.handshake_timeout.unwrap_or(s.handshake_timeout);
            let g = &mut s.guard;
            g.max_handshakes = r.max_handshakes.unwrap_or(g.max_handshakes);
            g.max_handshakes_per_source = r
                .max_handshakes_per_source
                .unwrap_or(g.max_handshakes_per_source);
            g.max_sessions_per_source = r
                .max_sessions_per_source
                .unwrap_or(g.max_sessions_per_source);
            g.max_connections_per_source = r
                .max_connections_per_source
                .unwrap_or(g.max_connections_per_source);
            g.max_login_failures = r.max_login_failures.unwrap_or(g.max_login_failures);
            g.login_block = r.login_block.unwrap_or(g.login_block);
            g.logins_per_minute = r.logins_per_minute.unwrap_or(g.logins_per_minute);
            s.allow = r.allow;
            s.deny = r.deny;
            s.max_rate = r.max_rate;
            s.source_limits = r.source_limits;
            s.state_dir = r.state_dir;
            if r.http.is_none() && !r.http_hosts.is_empty() {
                return Err(
                    "--http-host: needs --http (it names the hosts the web interface \
                            answers for)"
                        .into(),
                );
            }
            s.http = r.http;
            s.http_hosts = r.http_hosts;
            s.output = output;
            if let Some(u) = r.user {
                let p = password
                    .ok_or_else(|| format!("--user {u} needs --password (or BTEST_PASSWORD)"))?;
                s.users.push((u, p));
            } else if password.is_some() {
                s.users.push(("admin".into(), password.unwrap_or_default()));
            }
            s.users_file = r.users_file;
            s.csv = r.csv;
            s.syslog = r.syslog;
            s.metrics_file = r.metrics_file;
            s.tuning = r.tuning;
            s.echo = r.echo.unwrap_or(s.echo);
            s.device = r.device;
            let have_creds = !s.users.is_empty() || s.users_file.is_some();
            s.auth = match r.auth {
                Some(m) => m,
                None if have_creds => AuthMethod::EcSrp5,
                None => AuthMethod::None,
            };
            if s.auth != AuthMethod::None && !have_creds {
                return Err(format!(
                    "--auth {}: needs accounts: give --user and --password, or --users FILE",
                    s.auth
                ));
            }
            done(Mode::Server(Box::new(s)))
        }
    }
}

/// An interface name as SO_BINDTODEVICE takes it: 1..15 bytes (IFNAMSIZ), no '/', no space.
fn parse_device(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', '\t', '\0']) {
        return Err(format!(
            "--device: invalid interface name '{v}': expected 1..15 characters without '/' or \
             spaces, e.g. eth0, enp3s0, br-lan"
        ));
    }
    Ok(v.to_string())
}

/// `--http 8080` (loopback only: the API names every tester's address, so exposing it is a
/// choice made by typing one), `--http 0.0.0.0:8080`, `--http [::]:8080`.
fn parse_http(v: &str) -> Result<SocketAddr, String> {
    if let Ok(p) = v.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    v.parse().map_err(|_| {
        format!("--http: '{v}' is not a port or ADDR:PORT (e.g. 8080, 0.0.0.0:8080, [::]:8080)")
    })
}

/// `--http-host NAME`: a DNS name or an IP literal, without a port (src/http/host.rs judges
/// the syntax; a build without `http` refuses `--http` anyway).
fn parse_http_host(v: &str) -> Result<String, String> {
    #[cfg(feature = "http")]
    if !crate::http::host::valid_name(v) {
        return Err(format!(
            "--http-host: '{v}' is not a host name or IP address (no port, no scheme; e.g. \
             btest.example.net, 192.0.2.1, [2001:db8::1])"
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(args: &[&str]) -> ClientConfig {
        let mut v = vec!["client", "192.0.2.1"];
        v.extend_from_slice(args);
        match parse_from(v, None).unwrap().mode {
            Mode::Client(c) => *c,
            m => panic!("{m:?}"),
        }
    }

    fn server(args: &[&str]) -> ServerConfig {
        let mut v = vec!["server"];
        v.extend_from_slice(args);
        match parse_from(v, None).unwrap().mode {
            Mode::Server(s) => *s,
            m => panic!("{m:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        parse_from(args.iter().copied(), None).unwrap_err()
    }

    #[test]
    fn client_defaults() {
        let c = client(&[]);
        assert_eq!(c, ClientConfig::new("192.0.2.1"));
        assert_eq!(c.protocol, Protocol::Tcp);
        assert_eq!(
            c.direction,
            Direction::ServerTx,
            "RouterOS default is receive"
        );
        assert_eq!(c.duration, Some(Duration::from_secs(10)));
        assert_eq!(c.connection_count, 1);
        assert_eq!((c.local_tx_speed, c.remote_tx_speed), (0, 0));
        assert_eq!((c.local_udp_tx_size, c.remote_udp_tx_size), (1500, 1500));
        assert!(!c.random_data);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.port, 2000);
        assert_eq!(c.output, Output::Text);
    }

    #[test]
    fn short_forms() {
        let inv = parse_from(["-c", "h:2001"], None).unwrap();
        match inv.mode {
            Mode::Client(c) => assert_eq!((c.host.as_str(), c.port), ("h", 2001)),
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            parse_from(["-s"], None).unwrap().mode,
            Mode::Server(_)
        ));
        assert_eq!(
            parse_from(["-h"], None).unwrap().mode,
            Mode::Help(Help::Overview)
        );
        assert_eq!(
            parse_from(["--help"], None).unwrap().mode,
            Mode::Help(Help::Overview)
        );
        assert_eq!(parse_from(["-V"], None).unwrap().mode, Mode::Version);
        assert_eq!(parse_from(["-s", "-vv", "-q"], None).unwrap().verbosity, 1);
    }

    #[test]
    fn every_client_option_long_and_equals() {
        let c = client(&[
            "--protocol",
            "udp",
            "--direction",
            "both",
            "--duration",
            "3s",
            "--connection-count",
            "4",
            "--local-tx-speed",
            "50M",
            "--remote-tx-speed",
            "1G",
            "--local-udp-tx-size",
            "1000",
            "--remote-udp-tx-size",
            "64000",
            "--random-data",
            "yes",
            "--interval",
            "500ms",
            "-6",
            "--bind",
            "::1",
            "--tos",
            "0x10",
            "--json",
            "--connect-timeout",
            "2s",
            "--user",
            "bob",
            "--password",
            "pw",
        ]);
        assert_eq!(c.protocol, Protocol::Udp);
        assert_eq!(c.direction, Direction::Both);
        assert_eq!(c.duration, Some(Duration::from_secs(3)));
        assert_eq!(c.connection_count, 4);
        assert_eq!(c.local_tx_speed, 50_000_000);
        assert_eq!(c.remote_tx_speed, 1_000_000_000);
        assert_eq!((c.local_udp_tx_size, c.remote_udp_tx_size), (1000, 64000));
        assert!(c.random_data);
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.family, Family::V6);
        assert_eq!(c.bind, Some("::1".parse().unwrap()));
        assert_eq!(c.tos, Some(16));
        assert_eq!(c.output, Output::Json);
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            (c.user.as_deref(), c.password.as_deref()),
            (Some("bob"), Some("pw"))
        );
        let e = client(&[
            "--protocol=udp",
            "--direction=transmit",
            "--duration=0",
            "--tos=46",
            "-4",
        ]);
        assert_eq!(e.protocol, Protocol::Udp);
        assert_eq!(e.direction, Direction::ServerRx);
        assert_eq!(e.duration, None, "0 = until Ctrl-C");
        assert_eq!(e.tos, Some(46));
        assert_eq!(e.family, Family::V4);
    }

    /// Every option with a value parses the same as `--opt value` and `--opt=value`.
    #[test]
    fn equals_form_for_every_option() {
        let client_opts = [
            ("--protocol", "udp"),
            ("--direction", "both"),
            ("--duration", "3s"),
            ("--connection-count", "7"),
            ("--local-tx-speed", "5M"),
            ("--remote-tx-speed", "6M"),
            ("--local-udp-tx-size", "999"),
            ("--remote-udp-tx-size", "1001"),
            ("--random-data", "yes"),
            ("--interval", "250ms"),
            ("--bind", "127.0.0.2"),
            ("--tos", "32"),
            ("--connect-timeout", "3s"),
            ("--user", "u"),
            ("--password", "p"),
            ("--csv", "/tmp/x.csv"),
            ("--syslog", "127.0.0.1:514"),
        ];
        for (opt, v) in client_opts {
            let a = parse_from(["client", "h", opt, v], None).unwrap();
            let b = parse_from(
                ["client".to_string(), "h".into(), format!("{opt}={v}")],
                None,
            )
            .unwrap();
            assert_eq!(a, b, "{opt}");
            assert_ne!(
                a.mode,
                parse_from(["client", "h"], None).unwrap().mode,
                "{opt} changed nothing"
            );
        }
        let server_opts = [
            ("--listen", "127.0.0.1:7"),
            ("--udp-port-from", "3000"),
            ("--control-timeout", "4s"),
            ("--max-duration", "1m"),
            ("--max-sessions", "3"),
            ("--auth", "none"),
            ("--users", "/tmp/u"),
            ("--csv", "/tmp/s.csv"),
            ("--syslog", "[::1]:514"),
            ("--metrics-file", "/tmp/m.prom"),
        ];
        for (opt, v) in server_opts {
            let a = parse_from(["server", opt, v], None).unwrap();
            let b = parse_from(["server".to_string(), format!("{opt}={v}")], None).unwrap();
            assert_eq!(a, b, "{opt}");
        }
    }

    #[test]
    fn last_one_wins() {
        let c = client(&["--protocol", "udp", "--protocol", "tcp"]);
        assert_eq!(c.protocol, Protocol::Tcp);
    }

    #[test]
    fn password_from_env_and_default_user() {
        let inv = parse_from(["client", "h"], Some("s3cret".into())).unwrap();
        match inv.mode {
            Mode::Client(c) => {
                assert_eq!(c.password.as_deref(), Some("s3cret"));
                assert_eq!(c.user.as_deref(), Some("admin"));
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    #[cfg(feature = "http")]
    fn http_host_is_repeatable_and_checked() {
        let s = server(&[
            "--http",
            "8080",
            "--http-host",
            "a.example",
            "--http-host=[::1]",
        ]);
        assert_eq!(s.http_hosts, vec!["a.example".to_string(), "[::1]".into()]);
        assert!(server(&["--http", "8080"]).http_hosts.is_empty());
        for bad in ["a.example:80", "http://a.example", "", "*.example"] {
            let e = err(&["server", "--http", "8080", "--http-host", bad]);
            assert!(
                e.contains(&format!("--http-host: '{bad}' is not a host name")),
                "{e}"
            );
        }
    }

    #[test]
    fn server_defaults_and_options() {
        let s = server(&[]);
        assert_eq!(s, ServerConfig::default());
        assert_eq!(s.listen, vec!["[::]:2000".parse().unwrap()]);
        assert_eq!(s.udp_port_from, 2001);
        assert_eq!(s.control_timeout, Duration::from_secs(10));
        assert_eq!(s.max_duration, None);
        assert_eq!(s.max_sessions, 100);
        assert_eq!(s.auth, AuthMethod::None);
        let s = server(&[
            "--listen",
            "127.0.0.1:0",
            "--listen=[::1]:2005",
            "--listen",
            "0.0.0.0",
            "--udp-port-from",
            "3000",
            "--control-timeout",
            "5s",
            "--max-duration",
            "1m",
            "--max-sessions",
            "7",
            "--json",
            "--user",
            "u",
            "--password",
            "p",
        ]);
        assert_eq!(
            s.listen,
            vec![
                "127.0.0.1:0".parse().unwrap(),
                "[::1]:2005".parse().unwrap(),
                "0.0.0.0:2000".parse().unwrap()
            ]
        );
        assert_eq!(s.udp_port_from, 3000);
        assert_eq!(s.control_timeout, Duration::from_secs(5));
        assert_eq!(s.max_duration, Some(Duration::from_secs(60)));
        assert_eq!(s.max_sessions, 7);
        assert!(s.allow.is_empty() && s.deny.is_empty() && s.max_rate.is_none());
        assert_eq!(s.output, Output::Json);
        assert_eq!(s.auth, AuthMethod::EcSrp5, "credentials default to EC-SRP5");
        assert_eq!(s.users, vec![("u".to_string(), "p".to_string())]);
        let s = server(&["--auth", "md5", "--user=u", "--password=p"]);
        assert_eq!(s.auth, AuthMethod::Md5);
    }

    #[test]
    fn bad_values_echo_input() {
        for (args, needle) in [
            (&["client", "h", "--protocol", "icmp"][..], "'icmp'"),
            (&["client", "h", "--direction", "up"], "'up'"),
            (&["client", "h", "--duration", "ten"], "'ten'"),
            (&["client", "h", "--connection-count", "0"], "'0'"),
            (&["client", "h", "--connection-count", "256"], "'256'"),
            (&["client", "h", "--local-tx-speed", "fast"], "'fast'"),
            (&["client", "h", "--remote-tx-speed", "5G"], "'5G'"),
            (&["client", "h", "--local-udp-tx-size", "27"], "'27'"),
            (&["client", "h", "--remote-udp-tx-size", "64001"], "'64001'"),
            (&["client", "h", "--random-data", "maybe"], "'maybe'"),
            (&["client", "h", "--interval", "10ms"], "'10ms'"),
            (&["client", "h", "--bind", "nowhere"], "'nowhere'"),
            (&["client", "h", "--tos", "300"], "'300'"),
            (&["client", "h:http"], "'http'"),
            (&["server", "--listen", "::1:x:"], "'::1:x:'"),
            (&["server", "--udp-port-from", "70000"], "'70000'"),
            (&["server", "--control-timeout", "0"], "'0'"),
            (&["server", "--max-sessions", "none"], "'none'"),
            (
                &["server", "--allow", "10.0.0.1/8"],
                "--allow: \"10.0.0.1/8\": host bits set below the /8 prefix (did you mean 10.0.0.0/8?)",
            ),
            (&["server", "--deny", ","], "--deny: ',': expected CIDR[,CIDR]"),
            (&["server", "--max-rate", "0"], "--max-rate: '0' must be above 0"),
            (
                &["server", "--source-limit", "v4/40 day=1G"],
                "--source-limit: 'v4/40 day=1G': expected SCOPE LIMITS",
            ),
            (
                &["server", "--http", "localhost"],
                "--http: 'localhost' is not a port or ADDR:PORT",
            ),
            (
                &["server", "--http-host", "a.example"],
                "--http-host: needs --http",
            ),
            (&["server", "--auth", "rsa"], "'rsa'"),
            (&["server", "--syslog", ":514"], "':514'"),
            (&["frobnicate"], "'frobnicate'"),
        ] {
            let e = err(args);
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn cross_role_and_missing_things() {
        assert!(err(&["client", "h", "--listen", "0.0.0.0"]).contains("not a client option"));
        assert!(err(&["server", "--protocol", "udp"]).contains("not a server option"));
        assert!(err(&["client", "h", "--metrics-file", "x"]).contains("not a client option"));
        assert!(err(&["client"]).contains("missing HOST"));
        assert!(err(&[]).contains("missing command"));
        assert!(err(&["server", "--auth", "md5"]).contains("needs accounts"));
        assert!(err(&["client", "h", "--nope"]).contains("--nope"));
        assert!(err(&["client", "h", "extra"]).contains("'extra'"));
        assert!(err(&["client", "h", "-4", "--bind", "::1"]).contains("-4"));
    }

    /// The help a role asks for, in a build that may lack that role.
    fn built(h: Help) -> Help {
        match h {
            Help::Client if !HAS_CLIENT => Help::Overview,
            Help::Server if !HAS_SERVER => Help::Overview,
            h => h,
        }
    }

    #[test]
    fn help_wherever_it_appears_and_over_other_errors() {
        for (args, want) in [
            (&["--help"][..], Help::Overview),
            (&["-h"], Help::Overview),
            (&["-v", "--help"], Help::Overview),
            (&["--help", "frobnicate"], Help::Overview),
            (&["frobnicate", "--help"], Help::Overview),
            (&["client", "--help"], Help::Client),
            (&["client", "-h"], Help::Client),
            (&["-c", "--help"], Help::Client),
            (&["-c", "-h"], Help::Client),
            (&["--client=h", "--help"], Help::Client),
            (&["--help", "client"], Help::Client),
            (&["client", "1.2.3.4", "--help"], Help::Client),
            (&["client", "h", "--duration", "3s", "-h"], Help::Client),
            // errors after the help, before it, and cross-role or missing-value ones
            (&["client", "--help", "--protocol", "icmp"], Help::Client),
            (
                &["client", "h", "--protocol", "icmp", "--help"],
                Help::Client,
            ),
            (
                &["client", "h", "--listen", "0.0.0.0", "--help"],
                Help::Client,
            ),
            (&["client", "h", "extra", "--help"], Help::Client),
            (&["client", "h", "--nope", "--help"], Help::Client),
            (&["client", "h", "--json=1", "--help"], Help::Client),
            (&["client", "--help", "--duration"], Help::Client),
            (&["server", "--help"], Help::Server),
            (&["server", "-h"], Help::Server),
            (&["-s", "--help"], Help::Server),
            (&["server", "--listen", "127.0.0.1", "--help"], Help::Server),
            (&["server", "--listen", "x", "--help"], Help::Server),
            (&["server", "--help", "--protocol", "udp"], Help::Server),
            (&["server", "--auth", "md5", "--help"], Help::Server),
        ] {
            let inv = parse_from(args.iter().copied(), None);
            assert_eq!(inv.map(|i| i.mode), Ok(Mode::Help(built(want))), "{args:?}");
        }
        // A value that merely looks like help stays a value.
        assert_eq!(
            client(&["--user", "--help"]).user.as_deref(),
            Some("--help")
        );
    }

    /// The flags of one help text, as `OPTIONS` lists them.
    fn flags_of(section: Section) -> Vec<&'static str> {
        OPTIONS
            .iter()
            .filter(|o| o.section == section)
            .flat_map(|o| o.flags())
            .collect()
    }

    #[test]
    fn each_help_lists_its_own_options() {
        let (overview, client, server) = (
            Help::Overview.to_string(),
            Help::Client.to_string(),
            Help::Server.to_string(),
        );
        assert!(overview != client && overview != server && client != server);
        let client_only = [
            "--connection-count",
            "--protocol",
            "--local-tx-speed",
            "-4, -6",
        ];
        let server_only = [
            "--max-sessions",
            "--listen",
            "--udp-port-from",
            "--metrics-file",
        ];
        for f in client_only {
            assert!(client.contains(f), "client help lacks {f}:\n{client}");
            assert!(!server.contains(f), "server help has {f}:\n{server}");
            assert!(!overview.contains(f), "overview has {f}:\n{overview}");
        }
        for f in server_only {
            assert!(server.contains(f), "server help lacks {f}:\n{server}");
            assert!(!client.contains(f), "client help has {f}:\n{client}");
            assert!(!overview.contains(f), "overview has {f}:\n{overview}");
        }
        for f in flags_of(Section::Client) {
            assert!(client.contains(f), "client help lacks {f}");
        }
        for f in flags_of(Section::Server) {
            assert!(server.contains(f), "server help lacks {f}");
        }
        for f in flags_of(Section::Common) {
            for h in [&overview, &client, &server] {
                assert!(h.contains(f), "{f} missing from\n{h}");
            }
        }
        assert!(client.contains("usage: btest client HOST[:PORT]"));
        assert!(server.contains("usage: btest server [OPTIONS]"));
        if HAS_CLIENT && HAS_SERVER {
            assert!(overview.contains("usage: btest client HOST[:PORT]"));
            assert!(overview.contains("       btest server [OPTIONS]"));
            assert!(
                overview.contains("`btest client --help` or `btest server --help`"),
                "{overview}"
            );
        }
        for h in [&overview, &client, &server] {
            assert!(!h.ends_with('\n'), "println! adds the newline");
            for l in h.lines() {
                assert!(l.len() <= 96 && l.trim_end() == l, "{l:?}");
            }
        }
    }

    #[test]
    fn latency_device_report_live() {
        use crate::config::{Latency, Live};
        let c = client(&[]);
        assert_eq!(
            (c.latency, c.latency_idle, c.live),
            (Latency::Auto, Duration::from_secs(1), Live::Auto)
        );
        let c = client(&[
            "--latency",
            "icmp",
            "--latency-idle",
            "250ms",
            "--device",
            "eth0",
        ]);
        assert_eq!(
            (c.latency, c.latency_idle),
            (Latency::Icmp, Duration::from_millis(250))
        );
        assert_eq!(c.device.as_deref(), Some("eth0"));
        if cfg!(feature = "report") {
            let c = client(&["--report", "r.html", "--live", "yes"]);
            assert_eq!(
                (c.report, c.live),
                (Some(PathBuf::from("r.html")), Live::Yes)
            );
        }
        assert_eq!(client(&["--latency", "off"]).latency, Latency::Off);
        for (args, want) in [
            (
                vec!["--latency", "tcp"],
                "--latency: invalid value 'tcp': expected auto, echo, icmp or off",
            ),
            (
                vec!["--latency-idle", "2m"],
                "--latency-idle: '2m' is too long",
            ),
            (
                vec!["--device", "a/b"],
                "--device: invalid interface name 'a/b'",
            ),
            (
                vec!["--device", "waytoolonginterface"],
                "--device: invalid interface name",
            ),
            (
                vec!["--live", "maybe"],
                "--live: invalid value 'maybe': expected auto, yes or no",
            ),
        ] {
            let mut a = vec!["client", "h"];
            a.extend(args);
            let e = err(&a);
            assert!(e.starts_with(want), "{e}");
        }
        let s = server(&["--echo", "no", "--device", "br-lan"]);
        assert!(!s.echo);
        assert_eq!(s.device.as_deref(), Some("br-lan"));
        assert!(server(&[]).echo);
    }

    #[test]
    fn through_takes_its_sides_and_every_client_option() {
        if !(HAS_CLIENT && HAS_SERVER) {
            return;
        }
        let inv = parse_from(
            [
                "through",
                "--server-addr",
                "10.0.2.2",
                "--server-netns",
                "wan",
                "--client-netns",
                "/var/run/netns/lan",
                "--client-dev",
                "eth1",
                "--server-dev=eth2",
                "--protocol",
                "udp",
                "--direction",
                "both",
                "-v",
            ],
            None,
        )
        .unwrap();
        let Mode::Through(t) = inv.mode else {
            panic!("{:?}", inv.mode)
        };
        assert_eq!(inv.verbosity, 1);
        assert_eq!((t.client.host.as_str(), t.client.port), ("10.0.2.2", 2000));
        assert_eq!(t.client.protocol, Protocol::Udp);
        assert_eq!(t.client.device.as_deref(), Some("eth1"));
        assert_eq!(t.server.device.as_deref(), Some("eth2"));
        assert_eq!(
            t.server.listen,
            vec!["10.0.2.2:2000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(t.server.udp_port_from, 2001);
        assert_eq!(t.server_netns, Some(PathBuf::from("/run/netns/wan")));
        assert_eq!(t.client_netns, Some(PathBuf::from("/var/run/netns/lan")));
        // A one-time account both sides share.
        assert_eq!(
            t.server.users,
            vec![(
                "btest-through".to_string(),
                t.client.password.clone().unwrap()
            )]
        );
        assert_eq!(t.client.password.as_ref().unwrap().len(), 24);
        for (args, want) in [
            (vec!["through"], "through: missing --server-addr"),
            (
                vec!["through", "--server-addr", "x"],
                "--server-addr: invalid address 'x'",
            ),
            (
                vec!["through", "--server-addr", "10.0.0.1", "--bind", "1.2.3.4"],
                "through: --bind is not taken here; use --client-bind",
            ),
            (
                vec!["through", "--server-addr", "10.0.0.1", "--password", "p"],
                "through: --password is not taken here",
            ),
            (
                vec!["through", "--server-addr", "10.0.0.1", "host"],
                "through: unexpected argument 'host'",
            ),
            (
                vec!["through", "--server-addr", "10.0.0.1", "--protocol", "sctp"],
                "through: --protocol: invalid value 'sctp'",
            ),
            (
                vec!["through", "--server-netns"],
                "--server-netns: missing value",
            ),
        ] {
            let e = parse_from(args.clone(), None).unwrap_err();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
        assert_eq!(
            parse_from(["through", "--help"], None).unwrap().mode,
            Mode::Help(Help::Through)
        );
    }

    #[test]
    fn fleet_options() {
        if !cfg!(feature = "fleet") {
            return;
        }
        let inv = parse_from(
            [
                "fleet",
                "f.txt",
                "--parallel",
                "4",
                "--retries",
                "0",
                "--retry-delay",
                "1s",
                "--json",
                "--csv",
                "m.csv",
                "--ndjson",
                "m.nd",
                "--report",
                "r.html",
            ],
            None,
        )
        .unwrap();
        let Mode::Fleet(f) = inv.mode else { panic!() };
        assert_eq!(
            (f.parallel, f.retries, f.retry_delay),
            (4, 0, Duration::from_secs(1))
        );
        assert_eq!(f.output, Output::Json);
        assert_eq!(f.file, PathBuf::from("f.txt"));
        assert_eq!(f.csv, Some(PathBuf::from("m.csv")));
        for (args, want) in [
            (vec!["fleet"], "fleet: missing FILE"),
            (vec!["fleet", ""], "fleet: FILE is an empty name"),
            (vec!["fleet", "a", "b"], "fleet: unexpected argument 'b'"),
            (
                vec!["fleet", "a", "--parallel", "0"],
                "--parallel: invalid value '0'",
            ),
            (
                vec!["fleet", "a", "--protocol", "udp"],
                "fleet: invalid option '--protocol'",
            ),
        ] {
            let e = parse_from(args.clone(), None).unwrap_err();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
        assert_eq!(
            parse_from(["fleet", "-h"], None).unwrap().mode,
            Mode::Help(Help::Fleet)
        );
    }

    /// The cross-role check comes from the help table and rejects exactly what it did when
    /// each lexer arm named its role.
    #[test]
    fn role_check_follows_the_help_table() {
        let client_only = [
            ("--protocol", Some("udp")),
            ("--direction", Some("both")),
            ("--duration", Some("3s")),
            ("-t", Some("3s")),
            ("--connection-count", Some("2")),
            ("--local-tx-speed", Some("1M")),
            ("--remote-tx-speed", Some("1M")),
            ("--local-udp-tx-size", Some("1000")),
            ("--remote-udp-tx-size", Some("1000")),
            ("--random-data", Some("yes")),
            ("--interval", Some("1s")),
            ("-i", Some("1s")),
            ("-4", None),
            ("-6", None),
            ("--bind", Some("::1")),
            ("--tos", Some("1")),
            ("--connect-timeout", Some("1s")),
            ("--latency", Some("icmp")),
            ("--latency-idle", Some("0s")),
            ("--report", Some("/tmp/r.html")),
            ("--live", Some("no")),
        ];
        let server_only = [
            ("--listen", Some("127.0.0.1")),
            ("--udp-port-from", Some("3000")),
            ("--control-timeout", Some("2s")),
            ("--max-duration", Some("1m")),
            ("--max-sessions", Some("2")),
            ("--handshake-timeout", Some("2s")),
            ("--max-handshakes", Some("20")),
            ("--max-handshakes-per-source", Some("4")),
            ("--max-sessions-per-source", Some("2")),
            ("--max-connections-per-source", Some("64")),
            ("--max-login-failures", Some("3")),
            ("--login-block", Some("30s")),
            ("--logins-per-minute", Some("0")),
            ("--allow", Some("127.0.0.0/8")),
            ("--deny", Some("10.0.0.0/8")),
            ("--max-rate", Some("100M")),
            ("--source-limit", Some("addr day=5G")),
            ("--state-dir", Some("/var/lib/btest")),
            ("--http", Some("8080")),
            ("--http-host", Some("a.example")),
            ("--auth", Some("none")),
            ("--users", Some("/tmp/u")),
            ("--metrics-file", Some("/tmp/m")),
            ("--echo", Some("no")),
        ];
        let both = [
            "--json",
            "--device",
            "--pacing",
            "--udp-io",
            "--busy-poll",
            "--user",
            "--password",
            "--csv",
            "--syslog",
            "-v",
            "--verbose",
            "-q",
            "--quiet",
            "-h",
            "--help",
            "-V",
            "--version",
        ];
        let canonical = |f: &'static str| match f {
            "-t" => "--duration",
            "-i" => "--interval",
            f => f,
        };
        for (f, v) in client_only {
            assert_eq!(flag_role(f), Some((canonical(f), Role::Client)), "{f}");
            let mut args = vec!["server", f];
            args.extend(v);
            let e = err(&args);
            assert_eq!(
                e,
                format!(
                    "{} is not a server option (see btest server --help)",
                    canonical(f)
                )
            );
            let mut args = vec!["client", "h", f];
            args.extend(v);
            assert!(parse_from(args, None).is_ok(), "{f}");
        }
        for (f, v) in server_only {
            assert_eq!(flag_role(f), Some((f, Role::Server)), "{f}");
            let mut args = vec!["client", "h", f];
            args.extend(v);
            let e = err(&args);
            assert_eq!(
                e,
                format!("{f} is not a client option (see btest client --help)")
            );
        }
        for f in both {
            assert_eq!(flag_role(f), None, "{f}");
        }
        // and the table names no other flag
        let mut listed: Vec<&str> = OPTIONS.iter().flat_map(|o| o.flags()).collect();
        listed.sort();
        listed.dedup();
        let mut known: Vec<&str> = client_only
            .iter()
            .chain(&server_only)
            .map(|(f, _)| *f)
            .chain(both)
            .filter(|f| !["-t", "-i"].contains(f))
            .collect();
        known.sort();
        assert_eq!(listed, known);
    }

    #[test]
    fn tuning_options_for_both_roles() {
        use crate::config::{Pacing, UdpIo};
        let c = match parse_from(
            [
                "client",
                "h",
                "--pacing",
                "precise",
                "--udp-io=mmsg",
                "--busy-poll",
                "50",
            ],
            None,
        )
        .unwrap()
        .mode
        {
            Mode::Client(c) => c,
            m => panic!("{m:?}"),
        };
        assert_eq!(c.tuning.pacing, Pacing::Precise);
        assert_eq!(c.tuning.udp_io, UdpIo::Mmsg);
        assert_eq!(c.tuning.busy_poll, Some(50));
        let s = match parse_from(["server", "--udp-io", "single"], None)
            .unwrap()
            .mode
        {
            Mode::Server(s) => s,
            m => panic!("{m:?}"),
        };
        assert_eq!(s.tuning.udp_io, UdpIo::Single);
        assert_eq!(s.tuning.pacing, Pacing::Auto);
        for (args, want) in [
            (
                ["client", "h", "--pacing", "fast"],
                "--pacing: invalid value 'fast'",
            ),
            (
                ["client", "h", "--udp-io", "gso"],
                "--udp-io: invalid value 'gso'",
            ),
            (["client", "h", "--busy-poll", "0"], "--busy-poll"),
        ] {
            let e = parse_from(args, None).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a"), Ok(("a".into(), 2000)));
        assert_eq!(split_host_port("a:7"), Ok(("a".into(), 7)));
        assert_eq!(split_host_port("::1"), Ok(("::1".into(), 2000)));
        assert_eq!(split_host_port("[::1]:9"), Ok(("::1".into(), 9)));
        assert_eq!(split_host_port("[::1]"), Ok(("::1".into(), 2000)));
        assert!(split_host_port("[::1").is_err());
        assert!(split_host_port("a:0").is_err());
    }
}
