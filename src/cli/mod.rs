//! Command-line parsing: one lexopt loop into [`RawArgs`] for every command (client, server,
//! fleet, through), each flag looked up in the one table of flag definitions
//! ([`flags::FLAGS`]) that also renders each command's help ([`Help`]), decides which command
//! a flag belongs to, suggests the nearest flag for a typo, and generates shell completions.
//! Then [`RawArgs`] into a validated [`Invocation`].
//!
//! Spellings besides `--name VALUE` and `--name=VALUE`: RouterOS' `name=value` words
//! (`protocol=udp direction=both`), iperf3's short options (`-P -R -u -b -l -t -i -p`) and any
//! case of a choice (`--protocol UDP`).
//!
//! Must not: touch the network or the environment other than what it is handed (tests call
//! [`parse_from`] with their own argument lists; `BTEST_PASSWORD` is passed in explicitly).
//! Every error keeps the user's input and names the accepted format.

#[cfg(feature = "completions")]
mod complete;
mod flags;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthMethod;
use crate::config::{ClientConfig, Family, Output, ServerConfig};
use crate::wire::{Direction, Protocol, Side, DEFAULT_PORT};
#[cfg(feature = "exporter")]
use flags::EXPORTER;
use flags::{Flag, CLIENT, FLEET, SERVER, SPEEDTEST, THROUGH};

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
/// Its `Display` renders the text from the flag table.
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
    /// `btest speed-test --help`.
    SpeedTest,
    /// `btest exporter --help`.
    #[cfg(feature = "exporter")]
    Exporter,
}

/// Width of the names column, after the two-space indent.
const NAMES_WIDTH: usize = 28;

/// The rows of one command's section (`cmd` a bit of [`Flag::cmds`]; 0: the common options).
fn write_section(out: &mut String, title: &str, cmd: u8) {
    use std::fmt::Write;
    let _ = writeln!(out, "\n{title}");
    let rows = flags::all().filter(|f| {
        if cmd == 0 {
            f.common()
        } else {
            !f.common() && f.cmds & cmd != 0
        }
    });
    for f in rows {
        let names = f.names();
        let mut lines = f.help().lines();
        let first = lines.next().unwrap_or_default();
        if names.len() < NAMES_WIDTH {
            let _ = writeln!(out, "  {names:<NAMES_WIDTH$}{first}");
        } else {
            let _ = writeln!(out, "  {names}\n  {:NAMES_WIDTH$}{first}", "");
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
const SPELLINGS: &str = "Any option with a value may also be written RouterOS' way, as one word \
                         name=value\n(protocol=udp direction=both); choices take any case.";

const FLEET_ABOUT: &str =
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
        tower-2  10.0.0.2:2000  protocol=udp remote-tx-speed=50M";

const FLEET_END: &str =
    "Progress goes to stderr, a line per attempt. Exit codes: 0 every target passed,
1 at least one failed, 2 usage (the file's errors name their line).";

const THROUGH_ABOUT: &str =
    "btest through: our server and our client in one process, each on its own side of a
device (a router, a bridge, a radio link), so a host with two ports tests the device
between them. The server side listens only on --server-addr with a one-time account.

usage: btest through --server-addr ADDR [OPTIONS] [CLIENT-OPTIONS...]";

const SPEEDTEST_ABOUT: &str =
    "btest speed-test: latency under load, graded. An idle phase, then download, upload and
bidirectional load phases (one btest session each) and a cooldown, against a btest server or
RouterOS, with latency probes (our UDP echo, else ping) all along. Per phase: throughput each
way, latency IQM, low, high, jitter, p50/p90/p99, trimmed mean, probe loss, CPU both ends.
Overall: the bufferbloat grade (A+..F), responsiveness in RPM with its rating and confidence,
and RouterOS' /tool speed-test fields (ping-min-avg-max, tcp-download, ...).

usage: btest speed-test HOST[:PORT] [OPTIONS]";

const SPEEDTEST_END: &str =
    "Probes: --latency auto uses our server's UDP echo (only a btest server of ours answers;
it allows 50 probes/s per source to a client without a session), else ICMP ping.
Exit codes as for `btest client`.";
#[cfg(feature = "exporter")]
const EXPORTER_ABOUT: &str =
    "btest exporter: a Prometheus exporter for scheduled link tests (blackbox-exporter style).
Each GET /probe?target=NAME runs one bounded test of that target and answers its figures
as Prometheus text; GET /metrics answers the exporter's own counters.

usage: btest exporter --listen ADDR:PORT --targets FILE [OPTIONS]

FILE is a `btest fleet` targets file: NAME HOST[:PORT] [CLIENT-OPTIONS...], `defaults`
lines, `--credentials FILE` (USER:PASSWORD, mode 600). Targets, options and credentials
come only from it, never from the URL. /probe?target=NAME&mode=speed-test (or a target
line's mode=speed-test) runs a speed test instead, fitted into the probe's deadline.";

#[cfg(feature = "exporter")]
const EXPORTER_END: &str =
    "Answers: 200 with btest_probe_success 0 or 1 (a failed test is a result), 400 for a bad
query, 404 for a target not in FILE, 503 with Retry-After when --concurrency tests run or
this target is under test with no result yet. Exit codes: 0 stopped by SIGINT or SIGTERM,
1 cannot serve (the port is taken), 2 usage (FILE's errors name their line).";

const THROUGH_END: &str =
    "  CLIENT-OPTIONS              every `btest client` option: --protocol, --direction,
                              --connection-count, --local-tx-speed, --remote-tx-speed,
                              --duration, --latency, --json, --csv, --report, ...

Two ports in one namespace reach each other over loopback, whatever the binding: give
one side its own namespace (or VRF) so the traffic crosses the device. Binding to an
interface and entering a namespace need root (CAP_NET_RAW, CAP_SYS_ADMIN). Exit codes as
for `btest client`.";

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
                write_section(&mut s, "Common options:", 0);
                s += &format!("\n{pointer}\n");
                if cfg!(feature = "speedtest") {
                    s += "Latency under load, graded: `btest speed-test HOST` (see btest speed-test \
                          --help).\n";
                }
                if cfg!(feature = "exporter") {
                    s += "Prometheus exporter: `btest exporter --help`.\n";
                }
                if cfg!(feature = "completions") {
                    s +=
                        "Shell completions: `btest completions bash|zsh|fish` prints the script.\n";
                }
                s += EXIT_CODES;
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
                    CLIENT,
                );
                write_section(&mut s, "Common options:", 0);
                s += "\nRates: UDP rates count IP+UDP headers as RouterOS does; TCP rates count \
                      payload.\nRates take k/M/G/T (100M, 100Mbit, 1Gbps); durations 10s, 1m30s, \
                      2min, 500ms, 1h.\n";
                s += SPELLINGS;
                s += "\n";
                s += EXIT_CODES;
            }
            Help::Fleet if cfg!(feature = "fleet") => {
                s += FLEET_ABOUT;
                s += "\n";
                write_section(&mut s, "Options:", FLEET);
                write_section(&mut s, "Common options:", 0);
                s += "\n";
                s += FLEET_END;
            }
            Help::Fleet => s += "btest fleet: not in this build (cargo feature 'fleet')",
            Help::SpeedTest if cfg!(feature = "speedtest") => {
                s += SPEEDTEST_ABOUT;
                s += "\n";
                write_section(
                    &mut s,
                    "Options (the client's, where they make sense):",
                    SPEEDTEST,
                );
                write_section(&mut s, "Common options:", 0);
                s += "\n";
                s += SPEEDTEST_END;
            }
            Help::SpeedTest => {
                s += "btest speed-test: not in this build (cargo feature 'speedtest')";
            }
            #[cfg(feature = "exporter")]
            Help::Exporter => {
                s += EXPORTER_ABOUT;
                s += "\n";
                write_section(&mut s, "Options:", EXPORTER);
                write_section(&mut s, "Common options:", 0);
                s += "\n";
                s += EXPORTER_END;
            }
            Help::Through => {
                s += THROUGH_ABOUT;
                s += "\n";
                write_section(&mut s, "Options:", THROUGH);
                s += THROUGH_END;
            }
            Help::Server => {
                s += concat!(
                    "btest server: answers RouterOS /tool bandwidth-test and btest clients.\n\n\
                     usage: ",
                    server_usage!(),
                    "\n"
                );
                write_section(&mut s, "Server options:", SERVER);
                write_section(&mut s, "Common options:", 0);
                s += "\n";
                s += SPELLINGS;
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

/// A shell `btest completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `source <(btest completions bash)`
    Bash,
    /// a `_btest` file in `$fpath`
    Zsh,
    /// `~/.config/fish/completions/btest.fish`
    Fish,
}

/// The completion script for `shell`, generated from the flag table.
#[cfg(feature = "completions")]
pub fn completions(shell: Shell) -> String {
    complete::script(shell)
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
    /// Run a speed test.
    #[cfg(feature = "speedtest")]
    SpeedTest(Box<crate::speedtest::SpeedTestConfig>),
    /// Serve Prometheus probes (issue 22).
    #[cfg(feature = "exporter")]
    Exporter(Box<crate::config::ExporterConfig>),
    /// Print this help and exit 0.
    Help(Help),
    /// Print the version and exit 0.
    Version,
    /// Print a shell completion script and exit 0.
    Completions(Shell),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// What to do.
    pub mode: Mode,
    /// -v count minus -q count.
    pub verbosity: i32,
}

/// The command a line runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Client,
    Server,
    Fleet,
    Through,
    SpeedTest,
    // Only in builds with it: the router image would otherwise carry its parsing (issue 22:
    // 1,440 B were left of the 1 MiB budget).
    #[cfg(feature = "exporter")]
    Exporter,
}

impl Cmd {
    /// Its bit in [`Flag::cmds`].
    fn bit(self) -> u8 {
        match self {
            Cmd::Client => CLIENT,
            Cmd::Server => SERVER,
            Cmd::Fleet => FLEET,
            Cmd::Through => THROUGH,
            Cmd::SpeedTest => SPEEDTEST,
            #[cfg(feature = "exporter")]
            Cmd::Exporter => EXPORTER,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Cmd::Client => "client",
            Cmd::Server => "server",
            Cmd::Fleet => "fleet",
            Cmd::Through => "through",
            Cmd::SpeedTest => "speed-test",
            #[cfg(feature = "exporter")]
            Cmd::Exporter => "exporter",
        }
    }
}

/// What was typed, before cross-flag validation. The setters of [`flags::FLAGS`] fill it.
#[derive(Default)]
struct RawArgs {
    cmd: Option<Cmd>,
    host: Option<String>,
    /// fleet's FILE
    file: Option<PathBuf>,
    verbosity: i32,
    help: bool,
    version: bool,
    protocol: Option<Protocol>,
    direction: Option<Direction>,
    duration: Option<Duration>,
    connection_count: Option<u8>,
    local_tx_speed: Option<u64>,
    remote_tx_speed: Option<u32>,
    bitrate: Option<u64>,
    local_udp_tx_size: Option<u16>,
    remote_udp_tx_size: Option<u16>,
    length: Option<u16>,
    random_data: Option<bool>,
    interval: Option<Duration>,
    port: Option<u16>,
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
    parallel: Option<usize>,
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    ndjson: Option<PathBuf>,
    server_addr: Option<IpAddr>,
    server_dev: Option<String>,
    server_netns: Option<PathBuf>,
    client_netns: Option<PathBuf>,
    st_idle: Option<Duration>,
    st_phase: Option<Duration>,
    st_cooldown: Option<Duration>,
    st_phases: Option<String>,
    st_probe_interval: Option<Duration>,
    st_probe_dscp: Option<String>,
    congestion: Option<String>,
    /// fleet's `--speed-test`
    speed_test: bool,
    /// exporter's --targets, --concurrency, --min-interval, --timeout
    #[cfg(feature = "exporter")]
    targets: Option<PathBuf>,
    #[cfg(feature = "exporter")]
    concurrency: Option<usize>,
    #[cfg(feature = "exporter")]
    min_interval: Option<Duration>,
    #[cfg(feature = "exporter")]
    timeout: Option<Duration>,
    /// Every flag seen, for the cross-command check once the command is known.
    seen: Vec<&'static Flag>,
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
    match v.trim().to_ascii_lowercase().as_str() {
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
///
/// A bare IPv6 address whose last group is decimal digits and whose other groups are an
/// address themselves (`::1:2000`) is refused: it may mean port 2000 of `::1` (issue 19: the
/// user meant that, and got "cannot resolve"), so the error shows both bracketed spellings.
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
        if let Some((pre, tail)) = v.rsplit_once(':') {
            if !tail.is_empty()
                && tail.len() <= 5
                && tail.bytes().all(|b| b.is_ascii_digit())
                && pre.parse::<Ipv6Addr>().is_ok()
            {
                return Err(format!(
                    "ambiguous server '{v}': an IPv6 address with a port needs brackets: \
                     [{pre}]:{tail} for port {tail} of {pre}, or [{v}] for that address on \
                     port {DEFAULT_PORT}"
                ));
            }
        }
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

/// The canonical long name (`--csv`) of an option word as typed: `--csv`, `--csv=x`,
/// `csv=x`, an alias; `None` for anything else. fleet.rs asks it which target options are the
/// fleet's (a `--csv=x` on a target line is `--csv`).
#[cfg(feature = "fleet")]
pub fn flag_name(word: &str) -> Option<String> {
    let name = match word.strip_prefix("--") {
        Some(l) => l.split_once('=').map_or(l, |(n, _)| n),
        None if word.starts_with('-') => return None,
        None => word.split_once('=')?.0,
    };
    flags::long(name, CLIENT).map(|f| f.name())
}

/// Parses the process's own command line; `env_password` is `BTEST_PASSWORD`.
pub fn parse_from<I, S>(args: I, env_password: Option<String>) -> Result<Invocation, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = match args.first().and_then(|a| a.to_str()) {
        Some("fleet") if HAS_CLIENT => {
            if !cfg!(feature = "fleet") {
                return Err(
                    "fleet: this btest was built without fleet runs (cargo feature 'fleet'; \
                     the router images leave it out)"
                        .into(),
                );
            }
            Some(Cmd::Fleet)
        }
        Some("through") if HAS_CLIENT && HAS_SERVER => {
            if !cfg!(feature = "through") {
                return Err("through: this btest was built without it (cargo feature \
                            'through'; the router images leave it out)"
                    .into());
            }
            Some(Cmd::Through)
        }
        Some("speed-test") if HAS_CLIENT => {
            if !cfg!(feature = "speedtest") {
                return Err(
                    "speed-test: this btest was built without it (cargo feature \
                            'speedtest'; the router images leave it out)"
                        .into(),
                );
            }
            Some(Cmd::SpeedTest)
        }
        #[cfg(feature = "exporter")]
        Some("exporter") if HAS_CLIENT => Some(Cmd::Exporter),
        #[cfg(not(feature = "exporter"))]
        Some("exporter") => {
            return Err("exporter: not in this build (cargo feature 'exporter')".into())
        }
        Some("completions") => return parse_completions(&args[1..]),
        _ => None,
    };
    match cmd {
        Some(c) => {
            let prefix = |e: String| format!("{}: {e}", c.word());
            let raw = lex(args.into_iter().skip(1), Some(c)).map_err(prefix)?;
            finish(raw, env_password).map_err(prefix)
        }
        None => finish(lex(args, None)?, env_password),
    }
}

fn parse_completions(args: &[OsString]) -> Result<Invocation, String> {
    if !cfg!(feature = "completions") {
        return Err(
            "completions: this btest was built without them (cargo feature \
                    'completions'; the router images leave it out)"
                .into(),
        );
    }
    let shell = match args.iter().map(|a| a.to_str()).collect::<Vec<_>>()[..] {
        [Some("bash")] => Shell::Bash,
        [Some("zsh")] => Shell::Zsh,
        [Some("fish")] => Shell::Fish,
        _ => return Err("completions: expected one shell: btest completions bash|zsh|fish".into()),
    };
    Ok(Invocation {
        mode: Mode::Completions(shell),
        verbosity: 0,
    })
}

/// The row of `--name` for `cmd` (`through` also takes the client's).
fn find_long(name: &str, cmd: Option<Cmd>) -> Option<&'static Flag> {
    match cmd {
        Some(Cmd::Through) => flags::long(name, THROUGH)
            .filter(|f| f.cmds & THROUGH != 0)
            .or_else(|| flags::long(name, CLIENT)),
        c => flags::long(name, c.map_or(CLIENT, Cmd::bit)),
    }
}

fn find_short(c: char, cmd: Option<Cmd>) -> Option<&'static Flag> {
    match cmd {
        Some(Cmd::Through) => flags::short(c, CLIENT),
        x => flags::short(c, x.map_or(CLIENT, Cmd::bit)),
    }
}

/// "; did you mean --protocol?" for a name (without dashes) that is no flag.
fn did_you_mean(name: &str, cmd: Option<Cmd>, dashes: bool) -> String {
    let bits = match cmd {
        Some(Cmd::Through) => THROUGH | CLIENT,
        Some(c) => c.bit(),
        None => CLIENT | SERVER,
    };
    match flags::suggest(name, bits) {
        Some(s) if dashes => format!("; did you mean --{s}?"),
        Some(s) => format!("; did you mean {s}=?"),
        None => String::new(),
    }
}

fn lex<I, S>(args: I, cmd: Option<Cmd>) -> Result<RawArgs, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    use lexopt::Arg::{Long, Short, Value};
    let mut p = lexopt::Parser::from_args(args);
    let mut r = RawArgs {
        cmd,
        ..RawArgs::default()
    };
    // Lexing goes on after an error so that a `--help` anywhere still wins; without one the
    // first error is the answer, as if lexing had stopped there.
    let mut first_err = None;
    loop {
        let res = match p.next() {
            Ok(None) => break,
            Ok(Some(Long(l))) => {
                let l = l.to_owned();
                lex_long(&mut p, &mut r, &l)
            }
            Ok(Some(Short(c))) => lex_short(&mut p, &mut r, c),
            Ok(Some(Value(v))) => match v.into_string() {
                Ok(v) => lex_word(&mut r, v),
                Err(v) => Err(format!("argument {v:?} is not valid UTF-8")),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) if !r.help => Err(e),
        _ => Ok(r),
    }
}

/// Runs `f`'s setter with the value `p` holds next (none for a switch).
fn take(p: &mut lexopt::Parser, r: &mut RawArgs, f: &'static Flag) -> Result<(), String> {
    r.seen.push(f);
    let v = match f.value() {
        Some(what) => p
            .value()
            .map_err(|_| format!("{}: missing value ({what})", f.name()))?
            .into_string()
            .map_err(|v| format!("{}: value {v:?} is not valid UTF-8", f.name()))?,
        None => String::new(),
    };
    (f.apply)(r, &v)
}

fn lex_long(p: &mut lexopt::Parser, r: &mut RawArgs, l: &str) -> Result<(), String> {
    if r.cmd.is_none() || matches!(r.cmd, Some(Cmd::Client | Cmd::Server)) {
        match l {
            "server" => return set_cmd(r, Cmd::Server),
            "client" => return lex_client_word(p, r, "--client"),
            _ => {}
        }
    }
    match find_long(l, r.cmd) {
        Some(f) => take(p, r, f),
        None => Err(format!(
            "invalid option '--{l}'{}",
            did_you_mean(l, r.cmd, true)
        )),
    }
}

fn lex_short(p: &mut lexopt::Parser, r: &mut RawArgs, c: char) -> Result<(), String> {
    if r.cmd.is_none() || matches!(r.cmd, Some(Cmd::Client | Cmd::Server)) {
        match c {
            's' => return set_cmd(r, Cmd::Server),
            'c' => return lex_client_word(p, r, "-c"),
            _ => {}
        }
    }
    match find_short(c, r.cmd) {
        Some(f) => take(p, r, f),
        None => Err(format!("invalid option '-{c}'")),
    }
}

/// `-c HOST` / `--client=HOST`.
fn lex_client_word(p: &mut lexopt::Parser, r: &mut RawArgs, flag: &str) -> Result<(), String> {
    set_cmd(r, Cmd::Client)?;
    // `btest -c --help` asks for the client's help: no host can be named `--help`.
    let help_next = p
        .try_raw_args()
        .is_some_and(|a| a.peek().is_some_and(|v| v == "--help" || v == "-h"));
    if !help_next {
        let v = p.value().map_err(|e| e.to_string())?;
        r.host = Some(
            v.into_string()
                .map_err(|v| format!("{flag}: value {v:?} is not valid UTF-8"))?,
        );
    }
    Ok(())
}

/// A word that is no option: a RouterOS `name=value`, the command, the host or fleet's FILE.
fn lex_word(r: &mut RawArgs, v: String) -> Result<(), String> {
    if let Some((name, value)) = v.split_once('=') {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            let f = find_long(name, r.cmd).ok_or_else(|| {
                format!(
                    "unknown option word '{v}'{}",
                    did_you_mean(name, r.cmd, false)
                )
            })?;
            if f.value().is_none() {
                return Err(format!(
                    "'{v}': {} takes no value (write {} alone)",
                    f.name(),
                    f.name()
                ));
            }
            r.seen.push(f);
            return (f.apply)(r, value);
        }
    }
    match r.cmd {
        None => match v.as_str() {
            "server" => set_cmd(r, Cmd::Server),
            "client" => set_cmd(r, Cmd::Client),
            _ => Err(format!(
                "unknown command '{v}': expected 'client HOST' or 'server'"
            )),
        },
        Some(Cmd::Client | Cmd::SpeedTest) if r.host.is_none() => {
            r.host = Some(v);
            Ok(())
        }
        Some(Cmd::Fleet) if r.file.is_none() => {
            if v.is_empty() {
                return Err("FILE is an empty name (see btest fleet --help)".into());
            }
            r.file = Some(PathBuf::from(v));
            Ok(())
        }
        Some(Cmd::Fleet) => Err(format!(
            "unexpected argument '{v}': one FILE only; targets and their options go in it"
        )),
        Some(Cmd::Through) => Err(format!(
            "unexpected argument '{v}': the target is --server-addr"
        )),
        #[cfg(feature = "exporter")]
        Some(Cmd::Exporter) => Err(format!(
            "unexpected argument '{v}': targets go in the --targets FILE"
        )),
        _ => Err(format!("unexpected argument '{v}'")),
    }
}

fn set_cmd(r: &mut RawArgs, cmd: Cmd) -> Result<(), String> {
    match r.cmd {
        Some(x) if x != cmd => Err("choose one of client and server, not both".into()),
        _ => {
            r.cmd = Some(cmd);
            Ok(())
        }
    }
}

/// The first flag typed that `cmd` does not take, as the error to give.
fn check_flags(r: &RawArgs, cmd: Cmd) -> Result<(), String> {
    for f in &r.seen {
        let cmds = flags::cmds_of(f);
        if cmd == Cmd::Through && f.cmds & THROUGH == 0 {
            if let Some((_, instead)) = flags::NOT_THROUGH.iter().find(|(n, _)| *n == f.long()) {
                return Err(format!("{} is not taken here; use {instead}", f.name()));
            }
            if cmds & CLIENT != 0 {
                continue;
            }
        }
        if cmds & cmd.bit() == 0 {
            let w = cmd.word();
            return Err(match cmd {
                Cmd::Fleet => format!(
                    "{} is not a fleet option (see btest fleet --help; client options go in \
                     the file)",
                    f.name()
                ),
                #[cfg(feature = "exporter")]
                Cmd::Exporter => format!(
                    "{} is not an exporter option (see btest exporter --help; test options \
                     go on the target lines of --targets FILE)",
                    f.name()
                ),
                _ => format!("{} is not a {w} option (see btest {w} --help)", f.name()),
            });
        }
    }
    Ok(())
}

fn finish(r: RawArgs, env_password: Option<String>) -> Result<Invocation, String> {
    let verbosity = r.verbosity;
    let done = |mode| Ok(Invocation { mode, verbosity });
    if r.help {
        // A role this build lacks gets the overview, which says so.
        return done(Mode::Help(match r.cmd {
            Some(Cmd::Client) if HAS_CLIENT => Help::Client,
            Some(Cmd::Server) if HAS_SERVER => Help::Server,
            Some(Cmd::Fleet) => Help::Fleet,
            Some(Cmd::Through) => Help::Through,
            Some(Cmd::SpeedTest) => Help::SpeedTest,
            #[cfg(feature = "exporter")]
            Some(Cmd::Exporter) => Help::Exporter,
            _ => Help::Overview,
        }));
    }
    if r.version {
        return done(Mode::Version);
    }
    let cmd = r
        .cmd
        .ok_or_else(|| "missing command: expected 'client HOST' or 'server'".to_string())?;
    check_flags(&r, cmd)?;
    match cmd {
        Cmd::Client => {
            let host = r.host.clone().ok_or_else(|| {
                "client: missing HOST: expected btest client HOST[:PORT]".to_string()
            })?;
            done(Mode::Client(Box::new(client_config(
                r,
                &host,
                env_password,
            )?)))
        }
        Cmd::Server => done(Mode::Server(Box::new(server_config(r, env_password)?))),
        Cmd::Fleet => done(Mode::Fleet(Box::new(fleet_config(r)?))),
        Cmd::Through => through(r),
        #[cfg(feature = "speedtest")]
        Cmd::SpeedTest => {
            let host = r
                .host
                .clone()
                .ok_or_else(|| "missing HOST: expected btest speed-test HOST[:PORT]".to_string())?;
            done(Mode::SpeedTest(Box::new(speed_test_config(
                r,
                &host,
                env_password,
            )?)))
        }
        #[cfg(not(feature = "speedtest"))]
        Cmd::SpeedTest => Err("speed-test: not in this build (cargo feature 'speedtest')".into()),
        #[cfg(feature = "exporter")]
        Cmd::Exporter => done(Mode::Exporter(Box::new(exporter_config(r)?))),
    }
}

/// `btest speed-test HOST`: the client's options where they make sense, and its own.
#[cfg(feature = "speedtest")]
fn speed_test_config(
    mut r: RawArgs,
    host: &str,
    env_password: Option<String>,
) -> Result<crate::speedtest::SpeedTestConfig, String> {
    use crate::speedtest::{self as st, SpeedTestConfig};
    let mut t = SpeedTestConfig::new(host);
    t.idle = r.st_idle.take().unwrap_or(t.idle);
    t.phase = r.st_phase.take().unwrap_or(t.phase);
    t.cooldown = r.st_cooldown.take().unwrap_or(t.cooldown);
    if let Some(v) = r.st_phases.take() {
        t.phases = st::parse_phases(&v)?;
    }
    t.probe_interval = r.st_probe_interval.take().unwrap_or(t.probe_interval);
    if let Some(v) = r.st_probe_dscp.take() {
        let mut classes: Vec<(u8, String)> = Vec::new();
        for w in v.split(',') {
            let c = st::figures::dscp(w).map_err(|e| format!("--probe-dscp: {e}"))?;
            if classes.iter().any(|(d, _)| *d == c.0) {
                return Err(format!("--probe-dscp: '{v}' names DSCP {} twice", c.0));
            }
            classes.push(c);
        }
        if classes.len() > 8 {
            return Err(format!("--probe-dscp: '{v}': at most 8 classes"));
        }
        t.probe_dscp = classes;
    }
    r.connection_count = Some(r.connection_count.unwrap_or(st::DEFAULT_CONNECTIONS));
    let mut c = client_config(r, host, env_password)?;
    c.duration = Some(t.phase);
    t.client = c;
    Ok(t)
}

fn client_config(
    r: RawArgs,
    host: &str,
    env_password: Option<String>,
) -> Result<ClientConfig, String> {
    let (host, port) = split_host_port(host)?;
    let mut c = ClientConfig::new(&host);
    c.port = r.port.unwrap_or(port);
    c.protocol = r.protocol.unwrap_or(c.protocol);
    c.direction = r.direction.unwrap_or(c.direction);
    if let Some(d) = r.duration {
        c.duration = (!d.is_zero()).then_some(d);
    }
    c.connection_count = r.connection_count.unwrap_or(c.connection_count);
    // iperf3's -b is the sender's rate: whichever side sends in this direction.
    let b = r.bitrate;
    let we_send = c.direction.we_transmit(Side::Client);
    let they_send = c.direction.we_receive(Side::Client);
    c.local_tx_speed = r
        .local_tx_speed
        .or(b.filter(|_| we_send))
        .unwrap_or(c.local_tx_speed);
    c.remote_tx_speed = match (r.remote_tx_speed, b.filter(|_| they_send)) {
        (Some(n), _) => n,
        (None, Some(n)) => u32::try_from(n).map_err(|_| {
            format!(
                "--bitrate: {n} bit/s is too large for the server's rate: the protocol \
                 carries at most 4294967295 bit/s (about 4.29G)"
            )
        })?,
        (None, None) => c.remote_tx_speed,
    };
    c.local_udp_tx_size = r
        .local_udp_tx_size
        .or(r.length)
        .unwrap_or(c.local_udp_tx_size);
    c.remote_udp_tx_size = r
        .remote_udp_tx_size
        .or(r.length)
        .unwrap_or(c.remote_udp_tx_size);
    c.random_data = r.random_data.unwrap_or(c.random_data);
    c.interval = r.interval.unwrap_or(c.interval);
    c.family = r.family.unwrap_or(Family::Any);
    c.bind = r.bind;
    c.tos = r.tos;
    c.connect_timeout = r.connect_timeout.unwrap_or(c.connect_timeout);
    c.control_timeout = r.control_timeout;
    c.output = if r.json { Output::Json } else { Output::Text };
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
    c.congestion = r.congestion;
    let password = r.password.or(env_password);
    // RouterOS' own default user; --help and the man page say so.
    c.user = match r.user {
        None if password.is_some() => Some("admin".into()),
        u => u,
    };
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
    Ok(c)
}

fn server_config(r: RawArgs, env_password: Option<String>) -> Result<ServerConfig, String> {
    let mut s = ServerConfig::default();
    match (r.port, r.listen.is_empty()) {
        (Some(p), true) => s.listen = vec![SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), p)],
        (Some(_), false) => {
            return Err(
                "--port: give the port in --listen ADDR:PORT instead (both were \
                        given)"
                    .into(),
            )
        }
        (None, true) => {}
        (None, false) => s.listen = r.listen,
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
            "--http-host: needs --http (it names the hosts the web interface answers for)".into(),
        );
    }
    s.http = r.http;
    s.http_hosts = r.http_hosts;
    s.output = if r.json { Output::Json } else { Output::Text };
    if r.auth == Some(AuthMethod::None)
        && (r.user.is_some() || r.password.is_some() || r.users_file.is_some())
    {
        // Issue 19: this used to run an open server and say nothing; whoever typed accounts
        // meant them to be asked for.
        return Err(
            "--auth none: accounts were given (--user, --password or --users), but \
                    none would be asked for; leave out --auth none (with accounts the \
                    default is ecsrp5) or the accounts"
                .into(),
        );
    }
    // BTEST_PASSWORD, as for the client, but only for a named --user: on its own it would
    // switch on authentication for an implicit `admin` account just because a shell exported
    // it for the client.
    if let Some(u) = r.user {
        let p = r
            .password
            .or(env_password)
            .ok_or_else(|| format!("--user {u} needs --password (or BTEST_PASSWORD)"))?;
        s.users.push((u, p));
    } else if let Some(p) = r.password {
        s.users.push(("admin".into(), p));
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
    Ok(s)
}

/// `btest fleet FILE [OPTIONS]`; the file itself is read when the fleet runs.
fn fleet_config(r: RawArgs) -> Result<crate::config::FleetConfig, String> {
    Ok(crate::config::FleetConfig {
        file: r
            .file
            .ok_or_else(|| "missing FILE (see btest fleet --help)".to_string())?,
        parallel: r.parallel.unwrap_or(1),
        retries: r.retries.unwrap_or(1),
        retry_delay: r.retry_delay.unwrap_or(Duration::from_secs(5)),
        output: if r.json { Output::Json } else { Output::Text },
        csv: r.csv,
        ndjson: r.ndjson,
        report: r.report,
        speed_test: r.speed_test,
    })
}

/// `btest exporter --listen ADDR:PORT --targets FILE [OPTIONS]`; the file is read when the
/// exporter starts.
#[cfg(feature = "exporter")]
fn exporter_config(r: RawArgs) -> Result<crate::config::ExporterConfig, String> {
    let listen = match r.listen[..] {
        [a] => a,
        [] => {
            return Err(
                "missing --listen ADDR:PORT (e.g. 127.0.0.1:9477; see btest exporter --help)"
                    .into(),
            )
        }
        _ => return Err("--listen: one address only".into()),
    };
    let targets = r.targets.ok_or_else(|| {
        "missing --targets FILE (a `btest fleet` targets file; see btest exporter --help)"
            .to_string()
    })?;
    Ok(crate::config::ExporterConfig {
        listen,
        targets,
        concurrency: r.concurrency.unwrap_or(2),
        min_interval: r.min_interval.unwrap_or(Duration::from_secs(60)),
        max_duration: r.max_duration.unwrap_or(Duration::from_secs(10)),
        timeout: r.timeout.unwrap_or(Duration::from_secs(15)),
    })
}

/// `btest through`: its own flags and every client option but the ones it sets itself.
fn through(mut r: RawArgs) -> Result<Invocation, String> {
    let verbosity = r.verbosity;
    let addr = r.server_addr.ok_or_else(|| {
        "missing --server-addr ADDR (the server side's address, e.g. 10.0.2.1)".to_string()
    })?;
    let port = r.port.take().unwrap_or(DEFAULT_PORT);
    let (sdev, sns, cns) = (
        r.server_dev.take(),
        r.server_netns.take(),
        r.client_netns.take(),
    );
    let udp_from = r.udp_port_from.take();
    // Port 0 (any free one) is known only once the server side is bound (through.rs); the
    // client takes a placeholder.
    let target = SocketAddr::new(addr, port.max(1)).to_string();
    let mut client = client_config(r, &target, None)?;
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
        verbosity,
    })
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
            "--control-timeout",
            "3s",
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
        assert_eq!(c.control_timeout, Some(Duration::from_secs(3)));
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

    /// The flags of one help text, as the table lists them (`cmd` 0: the common ones).
    fn flags_of(cmd: u8) -> Vec<String> {
        flags::all()
            .filter(|f| {
                if cmd == 0 {
                    f.common()
                } else {
                    !f.common() && f.cmds & cmd != 0
                }
            })
            .map(|f| f.name())
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
            "--connect-timeout",
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
        for f in flags_of(CLIENT) {
            assert!(client.contains(&f), "client help lacks {f}");
        }
        for f in flags_of(SERVER) {
            assert!(server.contains(&f), "server help lacks {f}");
        }
        for f in flags_of(0) {
            for h in [&overview, &client, &server] {
                assert!(h.contains(&f), "{f} missing from\n{h}");
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
                "through: --server-addr: invalid address 'x'",
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
                "through: --server-netns: missing value",
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
                "fleet: --parallel: invalid value '0'",
            ),
            (
                vec!["fleet", "a", "--protocol", "udp"],
                "fleet: --protocol is not a fleet option",
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

    #[test]
    #[cfg(feature = "exporter")]
    fn exporter_options() {
        let inv = parse_from(
            [
                "exporter",
                "--listen",
                "127.0.0.1:9477",
                "--targets",
                "t.txt",
                "--concurrency",
                "3",
                "--min-interval",
                "30s",
                "--max-duration",
                "5s",
                "--timeout",
                "20s",
            ],
            None,
        )
        .unwrap();
        let Mode::Exporter(x) = inv.mode else {
            panic!()
        };
        assert_eq!(x.listen, "127.0.0.1:9477".parse().unwrap());
        assert_eq!(x.targets, PathBuf::from("t.txt"));
        assert_eq!(
            (x.concurrency, x.min_interval, x.max_duration, x.timeout),
            (
                3,
                Duration::from_secs(30),
                Duration::from_secs(5),
                Duration::from_secs(20)
            )
        );
        let d = parse_from(["exporter", "--listen", "[::1]:0", "--targets", "t"], None).unwrap();
        let Mode::Exporter(d) = d.mode else { panic!() };
        assert_eq!(
            (d.concurrency, d.min_interval, d.max_duration, d.timeout),
            (
                2,
                Duration::from_secs(60),
                Duration::from_secs(10),
                Duration::from_secs(15)
            )
        );
        for (args, want) in [
            (
                vec!["exporter", "--targets", "t"],
                "exporter: missing --listen",
            ),
            (
                vec!["exporter", "--listen", "127.0.0.1:1"],
                "exporter: missing --targets FILE",
            ),
            (
                vec!["exporter", "--listen", "127.0.0.1", "--targets", "t"],
                "exporter: --listen: invalid address '127.0.0.1': expected ADDR:PORT",
            ),
            (
                vec!["exporter", "--concurrency", "17"],
                "exporter: --concurrency: invalid value '17'",
            ),
            (
                vec!["exporter", "--max-duration", "0"],
                "exporter: --max-duration: '0' is not 1s..1h",
            ),
            (
                vec!["exporter", "--timeout", "2h"],
                "exporter: --timeout: '2h' is not 2s..1h",
            ),
            (
                vec!["exporter", "--protocol", "udp"],
                "exporter: --protocol is not an exporter option",
            ),
            (
                vec!["exporter", "tower-1"],
                "exporter: unexpected argument 'tower-1'",
            ),
        ] {
            let e = parse_from(args.clone(), None).unwrap_err();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
        assert_eq!(
            parse_from(["exporter", "-h"], None).unwrap().mode,
            Mode::Help(Help::Exporter)
        );
        let h = Help::Exporter.to_string();
        for flag in [
            "--listen",
            "--targets",
            "--concurrency",
            "--min-interval",
            "--timeout",
        ] {
            assert!(h.contains(flag), "{flag} in {h}");
        }
    }

    /// The bits of every row that spells `typed` (`--json`, `-t`).
    fn cmds_typed(typed: &str) -> u8 {
        flags::all()
            .filter(|f| match typed.strip_prefix("--") {
                Some(l) => f.is_long(l),
                None => typed.strip_prefix('-').and_then(|c| c.chars().next()) == f.short,
            })
            .fold(0, |a, f| a | f.cmds)
    }

    /// The cross-role check comes from the flag table and rejects exactly what it did when
    /// each lexer arm named its role.
    #[test]
    fn role_check_follows_the_flag_table() {
        let client_only = [
            ("--address", Some("h")),
            ("--protocol", Some("udp")),
            ("--udp", None),
            ("-u", None),
            ("--direction", Some("both")),
            ("--reverse", None),
            ("-R", None),
            ("--duration", Some("3s")),
            ("-t", Some("3s")),
            ("--connection-count", Some("2")),
            ("--tcp-connection-count", Some("2")),
            ("-P", Some("2")),
            ("--local-tx-speed", Some("1M")),
            ("--remote-tx-speed", Some("1M")),
            ("--bitrate", Some("1M")),
            ("-b", Some("1M")),
            ("--local-udp-tx-size", Some("1000")),
            ("--remote-udp-tx-size", Some("1000")),
            ("--length", Some("1000")),
            ("-l", Some("1000")),
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
            #[cfg(feature = "speedtest")]
            ("--congestion", Some("cubic")),
        ];
        let server_only = [
            ("--listen", Some("127.0.0.1")),
            ("--udp-port-from", Some("3000")),
            ("--allocate-udp-ports-from", Some("3000")),
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
            ("--allowed-addresses4", Some("127.0.0.0/8")),
            ("--allowed-addresses6", Some("::1/128")),
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
            "--control-timeout",
            "--device",
            "--pacing",
            "--udp-io",
            "--busy-poll",
            "--user",
            "--password",
            "--csv",
            "--syslog",
            "--port",
            "-p",
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
            "-P" | "--tcp-connection-count" => "--connection-count",
            "-u" => "--udp",
            "-R" => "--reverse",
            "-b" => "--bitrate",
            "-l" => "--length",
            "--allocate-udp-ports-from" => "--udp-port-from",
            "--allowed-addresses4" | "--allowed-addresses6" => "--allow",
            f => f,
        };
        for (f, v) in client_only {
            assert_eq!(cmds_typed(f) & (CLIENT | SERVER), CLIENT, "{f}");
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
            assert_eq!(cmds_typed(f) & (CLIENT | SERVER), SERVER, "{f}");
            let mut args = vec!["client", "h", f];
            args.extend(v);
            let e = err(&args);
            assert_eq!(
                e,
                format!(
                    "{} is not a client option (see btest client --help)",
                    canonical(f)
                )
            );
        }
        for f in both {
            assert_eq!(cmds_typed(f) & (CLIENT | SERVER), CLIENT | SERVER, "{f}");
        }
        // and the table names no other client or server flag
        let mut listed: Vec<String> = flags::all()
            .filter(|f| f.cmds & (CLIENT | SERVER) != 0)
            .flat_map(|f| {
                let mut w: Vec<String> = f.aliases().map(|a| format!("--{a}")).collect();
                if !f.long().is_empty() {
                    w.push(format!("--{}", f.long()));
                }
                w.extend(f.short.map(|c| format!("-{c}")));
                w
            })
            .collect();
        listed.sort();
        listed.dedup();
        let mut known: Vec<String> = client_only
            .iter()
            .chain(&server_only)
            .map(|(f, _)| f.to_string())
            .chain(both.iter().map(|f| f.to_string()))
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

    fn mode(args: &[&str], env: Option<&str>) -> Mode {
        parse_from(args.iter().copied(), env.map(String::from))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .mode
    }

    /// Issue 19: RouterOS' `name=value` words mean what the long options mean.
    #[test]
    fn routeros_words_equal_long_options() {
        let words = mode(
            &[
                "client",
                "protocol=udp",
                "direction=Both",
                "duration=10",
                "local-tx-speed=100M",
                "remote-tx-speed=50M",
                "connection-count=4",
                "user=admin",
                "password=x",
                "address=192.0.2.1",
                "local-udp-tx-size=1400",
                "remote-udp-tx-size=1300",
                "random-data=yes",
            ],
            None,
        );
        let long = mode(
            &[
                "client",
                "192.0.2.1",
                "--protocol",
                "udp",
                "--direction",
                "both",
                "--duration",
                "10s",
                "--local-tx-speed",
                "100M",
                "--remote-tx-speed",
                "50M",
                "--connection-count",
                "4",
                "--user",
                "admin",
                "--password",
                "x",
                "--local-udp-tx-size",
                "1400",
                "--remote-udp-tx-size",
                "1300",
                "--random-data",
                "yes",
            ],
            None,
        );
        assert_eq!(words, long);
        assert_eq!(
            mode(&["client", "h", "tcp-connection-count=4"], None),
            mode(&["client", "h", "--connection-count", "4"], None)
        );
        assert_eq!(
            mode(
                &["client", "h", "--protocol", "UDP", "--direction=RECEIVE"],
                None
            ),
            mode(
                &["client", "h", "--protocol", "udp", "--direction", "receive"],
                None
            )
        );
        let s = server(&[
            "allocate-udp-ports-from=3000",
            "allowed-addresses4=192.0.2.0/24",
            "allowed-addresses6=2001:db8::/32",
            "--auth=MD5",
            "--user=u",
            "--password=p",
        ]);
        assert_eq!(s.udp_port_from, 3000);
        assert_eq!(
            s.allow,
            vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap()
            ]
        );
        assert_eq!(s.auth, AuthMethod::Md5);
        assert_eq!(
            server(&["--allocate-udp-ports-from", "4000"]).udp_port_from,
            4000
        );
    }

    /// Issue 19: iperf3's short options, where they do not clash with ours.
    #[test]
    fn iperf3_short_options() {
        let c = client(&[
            "-P", "4", "-u", "-t", "1m30s", "-i", "500ms", "-l", "1400", "-p", "2001",
        ]);
        assert_eq!(c.connection_count, 4);
        assert_eq!(c.protocol, Protocol::Udp);
        assert_eq!(c.duration, Some(Duration::from_secs(90)));
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!((c.local_udp_tx_size, c.remote_udp_tx_size), (1400, 1400));
        assert_eq!(c.port, 2001);
        // -R: the server sends (our default already)
        let r = client(&["--direction", "transmit", "-R"]);
        assert_eq!(r.direction, Direction::ServerTx);
        // -b: the sender's rate, by direction; explicit speeds win
        let b = |extra: &[&str]| {
            let c = client(extra);
            (c.local_tx_speed, c.remote_tx_speed)
        };
        assert_eq!(b(&["-b", "100Mbit"]), (0, 100_000_000));
        assert_eq!(
            b(&["-b", "100M", "--direction", "transmit"]),
            (100_000_000, 0)
        );
        assert_eq!(
            b(&["-b", "10M", "--direction", "both"]),
            (10_000_000, 10_000_000)
        );
        assert_eq!(
            b(&[
                "-b",
                "10M",
                "--direction",
                "both",
                "--remote-tx-speed",
                "1M"
            ]),
            (10_000_000, 1_000_000)
        );
        assert_eq!(
            err(&["client", "h", "-b", "5G"]),
            "--bitrate: 5000000000 bit/s is too large for the server's rate: the protocol \
             carries at most 4294967295 bit/s (about 4.29G)"
        );
        // the server's -p: its listen port
        assert_eq!(
            server(&["-p", "2100"]).listen,
            vec!["[::]:2100".parse().unwrap()]
        );
        assert!(err(&["server", "-p", "1", "--listen", "127.0.0.1"]).starts_with("--port:"));
    }

    /// Issue 19: the whole message for a typo, a wrong word and an ambiguous IPv6 target.
    #[test]
    fn golden_errors() {
        for (args, want) in [
            (
                &["client", "h", "--protocl", "udp"][..],
                "invalid option '--protocl'; did you mean --protocol?",
            ),
            (
                &["client", "h", "protocl=udp"],
                "unknown option word 'protocl=udp'; did you mean protocol=?",
            ),
            (
                &["server", "--lisen", "0.0.0.0"],
                "invalid option '--lisen'; did you mean --listen?",
            ),
            (
                &["client", "h", "--frobnicate"],
                "invalid option '--frobnicate'",
            ),
            (
                &["client", "h", "json=yes"],
                "'json=yes': --json takes no value (write --json alone)",
            ),
            (
                &["client", "h", "--protocol", "Sctp"],
                "--protocol: invalid value 'Sctp': expected tcp or udp",
            ),
            (
                &["client", "::1:2000"],
                "ambiguous server '::1:2000': an IPv6 address with a port needs brackets: \
                 [::1]:2000 for port 2000 of ::1, or [::1:2000] for that address on port 2000",
            ),
            (
                &[
                    "server",
                    "--auth",
                    "none",
                    "--user",
                    "admin",
                    "--password",
                    "x",
                ],
                "--auth none: accounts were given (--user, --password or --users), but none \
                 would be asked for; leave out --auth none (with accounts the default is \
                 ecsrp5) or the accounts",
            ),
            (
                &["fleet", "f", "--paralel", "2"],
                "fleet: invalid option '--paralel'; did you mean --parallel?",
            ),
        ] {
            assert_eq!(err(args), want, "{args:?}");
        }
        assert!(parse_from(["client", "[::1]:2000"], None).is_ok());
        assert!(parse_from(["client", "fe80::1"], None).is_ok());
    }

    /// Issue 19: the server takes BTEST_PASSWORD for a named --user, as the client does;
    /// never on its own.
    #[test]
    fn server_password_from_env() {
        let Mode::Server(s) = mode(&["server", "--user", "ops"], Some("envpw")) else {
            panic!()
        };
        assert_eq!(s.users, vec![("ops".to_string(), "envpw".to_string())]);
        assert_eq!(s.auth, AuthMethod::EcSrp5);
        let Mode::Server(s) = mode(&["server", "--user", "ops", "--password", "cli"], Some("e"))
        else {
            panic!()
        };
        assert_eq!(s.users, vec![("ops".to_string(), "cli".to_string())]);
        assert_eq!(mode(&["server"], Some("envpw")), mode(&["server"], None));
        assert_eq!(
            err(&["server", "--user", "ops"]),
            "--user ops needs --password (or BTEST_PASSWORD)"
        );
    }

    /// A fleet target's `--csv=x` is the fleet's `--csv` (review B3).
    #[test]
    #[cfg(feature = "fleet")]
    fn flag_names_for_fleet_lines() {
        assert_eq!(flag_name("--csv=x").as_deref(), Some("--csv"));
        assert_eq!(flag_name("csv=x").as_deref(), Some("--csv"));
        assert_eq!(flag_name("--report").as_deref(), Some("--report"));
        assert_eq!(
            flag_name("--tcp-connection-count=2").as_deref(),
            Some("--connection-count")
        );
        assert_eq!(flag_name("--nope"), None);
        assert_eq!(flag_name("host"), None);
    }

    #[cfg(feature = "speedtest")]
    #[test]
    fn speed_test_options_defaults_and_help() {
        use crate::speedtest::{PhaseKind, SpeedTestConfig};
        let st = |args: &[&str]| -> Box<SpeedTestConfig> {
            match parse_from(args.iter().copied(), None).unwrap().mode {
                Mode::SpeedTest(t) => t,
                m => panic!("{m:?}"),
            }
        };
        let t = st(&["speed-test", "r1"]);
        assert_eq!(t.client.connection_count, 4);
        assert_eq!(t.phases, PhaseKind::ALL);
        assert_eq!(t.probe_interval, Duration::from_millis(10));
        assert_eq!(
            (t.idle, t.phase, t.cooldown),
            (
                Duration::from_secs(3),
                Duration::from_secs(10),
                Duration::from_secs(3)
            )
        );
        assert_eq!(t.probe_dscp, [(0, "be".to_string())]);
        let t = st(&[
            "speed-test",
            "r1:2001",
            "--phase",
            "5s",
            "--probe-dscp",
            "ef,be",
            "--congestion",
            "bbr",
            "-P",
            "8",
            "--json",
            "protocol=udp",
            "--phases",
            "download,idle",
        ]);
        assert_eq!((t.client.host.as_str(), t.client.port), ("r1", 2001));
        assert_eq!(t.phase, Duration::from_secs(5));
        assert_eq!(t.client.duration, Some(Duration::from_secs(5)));
        assert_eq!(
            t.probe_dscp,
            [(46, "ef".to_string()), (0, "be".to_string())]
        );
        assert_eq!(t.client.congestion.as_deref(), Some("bbr"));
        assert_eq!(t.client.connection_count, 8);
        assert_eq!(t.client.output, Output::Json);
        assert_eq!(t.client.protocol, Protocol::Udp);
        assert_eq!(t.phases, [PhaseKind::Download, PhaseKind::Idle]);
        assert!(
            err(&["speed-test", "h", "--direction", "both"]).contains("not a speed-test option")
        );
        assert!(err(&["speed-test", "h", "--probe-dscp", "ef,46"]).contains("twice"));
        assert!(err(&["speed-test", "h", "--phase", "1s"]).contains("2s..10m"));
        let c = client(&["--congestion", "cubic"]);
        assert_eq!(c.congestion.as_deref(), Some("cubic"));
        assert!(err(&["server", "--congestion", "cubic"]).contains("not a server option"));
        let help = Help::SpeedTest.to_string();
        assert!(
            help.contains("usage: btest speed-test HOST[:PORT]"),
            "{help}"
        );
        for f in flags_of(SPEEDTEST) {
            assert!(help.contains(&f), "speed-test help lacks {f}");
        }
        for l in help.lines() {
            assert!(l.len() <= 96 && l.trim_end() == l, "{l:?}");
        }
        assert_eq!(
            parse_from(["speed-test", "--help"], None).unwrap().mode,
            Mode::Help(Help::SpeedTest)
        );
    }
}
