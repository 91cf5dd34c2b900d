//! Command-line parsing: one lexopt loop into [`RawArgs`], then [`RawArgs`] into a validated
//! [`Invocation`].
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

/// Short usage, printed for `-h` and after usage errors.
pub const USAGE: &str = "\
usage: btest client HOST[:PORT] [OPTIONS]     (also: btest -c HOST)
       btest server [OPTIONS]                 (also: btest -s)
       btest --help | --version";

/// Long help, printed for `--help`.
pub const HELP: &str = "\
btest: MikroTik Bandwidth Test (btest) client and server, RouterOS compatible.

usage: btest client HOST[:PORT] [OPTIONS]     (also: btest -c HOST)
       btest server [OPTIONS]                 (also: btest -s)

Client options (named as RouterOS /tool bandwidth-test names them):
  --protocol tcp|udp          transport (default tcp)
  --direction transmit|receive|both
                              data direction seen from this client (default receive)
  --duration DUR              test length, e.g. 10s, 1m; 0 = until Ctrl-C (default 10s)
  --connection-count N        TCP connections, 1..255 (default 1)
  --local-tx-speed RATE       our transmit rate, bit/s with k/M/G; 0 = unlimited (default 0)
  --remote-tx-speed RATE      the server's transmit rate; 0 = unlimited (default 0)
  --local-udp-tx-size N       UDP datagram size we send, 28..64000 bytes incl. IP+UDP
                              headers (default 1500)
  --remote-udp-tx-size N      UDP datagram size the server sends (default 1500)
  --random-data yes|no        random payload instead of zeros (default no)
  --interval DUR              report cadence, 20ms..5s (default 1s)
  -4, -6                      use IPv4 / IPv6 only
  --bind ADDR                 local address to send from
  --tos N                     IP TOS / traffic class byte, 0..255
  --connect-timeout DUR       connect and handshake deadline (default 10s)
  --user USER                 user name for authentication
  --password PASS             password (or set BTEST_PASSWORD to keep it off the process list)
  --json                      NDJSON records on stdout instead of text
  --csv FILE                  append one CSV row per finished test (header when new)
  --syslog HOST[:PORT]        RFC 3164 messages over UDP (default port 514)

Server options:
  --listen ADDR[:PORT]        listen address, repeatable (default [::]:2000, dual-stack)
  --udp-port-from PORT        first UDP port handed to UDP tests (default 2001)
  --control-timeout DUR       end a session after this much silence (default 10s)
  --max-duration DUR          cap on a session's length; 0 = unlimited (default 0)
  --max-sessions N            concurrent sessions (default 100)
  --auth ecsrp5|md5|none      method offered (default ecsrp5 with credentials, else none)
  --user USER --password PASS one account
  --users FILE                accounts, one user:password per line, # comments (mode 600)
  --json                      session_start / session_end JSON records on stdout
  --csv FILE                  append one CSV row per finished session
  --syslog HOST[:PORT]        RFC 3164 messages: session start/end, login success/failure
  --metrics-file PATH         Prometheus text file rewritten every second (node_exporter)

Common options:
  -v, --verbose               more diagnostics on stderr (repeat for more); RUST_LOG overrides
  -q, --quiet                 errors only on stderr
  -h, --help                  short / long help
  -V, --version               print the version

Rates: UDP rates count IP+UDP headers as RouterOS does; TCP rates count payload.
Exit codes: 0 test completed, 1 test failed (refused, peer vanished, protocol error), 2 usage.";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Run a client test.
    Client(Box<ClientConfig>),
    /// Run a server.
    Server(Box<ServerConfig>),
    /// Print this text and exit 0.
    Help(&'static str),
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
    help: Option<&'static str>,
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
    auth: Option<AuthMethod>,
    users_file: Option<PathBuf>,
    csv: Option<PathBuf>,
    syslog: Option<String>,
    metrics_file: Option<PathBuf>,
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
    let raw = lex(args)?;
    finish(raw, env_password)
}

fn lex<I, S>(args: I) -> Result<RawArgs, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut r = RawArgs::default();
    macro_rules! val {
        ($flag:expr) => {
            value_str($flag, p.value().map_err(|e| e.to_string())?)?
        };
    }
    macro_rules! client {
        ($flag:expr) => {
            r.role_flags.push(($flag, Role::Client))
        };
    }
    macro_rules! server {
        ($flag:expr) => {
            r.role_flags.push(($flag, Role::Server))
        };
    }
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') => r.help = Some(USAGE),
            Long("help") => r.help = Some(HELP),
            Short('V') | Long("version") => r.version = true,
            Short('v') | Long("verbose") => r.verbosity += 1,
            Short('q') | Long("quiet") => r.verbosity -= 1,
            Short('s') | Long("server") => set_role(&mut r, Role::Server)?,
            Short('c') | Long("client") => {
                set_role(&mut r, Role::Client)?;
                r.host = Some(val!("-c"));
            }
            Value(v) if r.role.is_none() => {
                let v = value_str("command", v)?;
                match v.as_str() {
                    "server" => set_role(&mut r, Role::Server)?,
                    "client" => set_role(&mut r, Role::Client)?,
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
                client!("--protocol");
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
                client!("--direction");
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
                client!("--duration");
                r.duration = Some(
                    parse_duration(&val!("--duration")).map_err(|e| format!("--duration: {e}"))?,
                );
            }
            Long("connection-count") => {
                client!("--connection-count");
                r.connection_count = Some(num(
                    "--connection-count",
                    &val!("--connection-count"),
                    1u8,
                    255,
                    "a whole number",
                )?);
            }
            Long("local-tx-speed") => {
                client!("--local-tx-speed");
                r.local_tx_speed = Some(
                    parse_rate(&val!("--local-tx-speed"))
                        .map_err(|e| format!("--local-tx-speed: {e}"))?,
                );
            }
            Long("remote-tx-speed") => {
                client!("--remote-tx-speed");
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
                client!("--local-udp-tx-size");
                r.local_udp_tx_size = Some(num(
                    "--local-udp-tx-size",
                    &val!("--local-udp-tx-size"),
                    MIN_TX_SIZE,
                    MAX_TX_SIZE,
                    "a size in bytes",
                )?);
            }
            Long("remote-udp-tx-size") => {
                client!("--remote-udp-tx-size");
                r.remote_udp_tx_size = Some(num(
                    "--remote-udp-tx-size",
                    &val!("--remote-udp-tx-size"),
                    MIN_TX_SIZE,
                    MAX_TX_SIZE,
                    "a size in bytes",
                )?);
            }
            Long("random-data") => {
                client!("--random-data");
                r.random_data = Some(yes_no("--random-data", &val!("--random-data"))?);
            }
            Long("interval") | Short('i') => {
                client!("--interval");
                let v = val!("--interval");
                let d = parse_duration(&v).map_err(|e| format!("--interval: {e}"))?;
                if d < Duration::from_millis(20) || d > Duration::from_secs(5) {
                    return Err(format!("--interval: '{v}' is out of range: use 20ms..5s"));
                }
                r.interval = Some(d);
            }
            Short('4') => {
                client!("-4");
                r.family = Some(Family::V4);
            }
            Short('6') => {
                client!("-6");
                r.family = Some(Family::V6);
            }
            Long("bind") => {
                client!("--bind");
                let v = val!("--bind");
                r.bind = Some(v.parse().map_err(|_| {
                    format!("--bind: invalid address '{v}': expected an IPv4 or IPv6 address")
                })?);
            }
            Long("tos") => {
                client!("--tos");
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
                client!("--connect-timeout");
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
                server!("--listen");
                r.listen
                    .push(parse_listen(&val!("--listen"), DEFAULT_PORT)?);
            }
            Long("udp-port-from") => {
                server!("--udp-port-from");
                r.udp_port_from = Some(num(
                    "--udp-port-from",
                    &val!("--udp-port-from"),
                    1u16,
                    65000,
                    "a UDP port",
                )?);
            }
            Long("control-timeout") => {
                server!("--control-timeout");
                let v = val!("--control-timeout");
                let d = parse_duration(&v).map_err(|e| format!("--control-timeout: {e}"))?;
                if d < Duration::from_secs(1) {
                    return Err(format!("--control-timeout: '{v}' is too short: use at least 1s (statuses arrive once a second)"));
                }
                r.control_timeout = Some(d);
            }
            Long("max-duration") => {
                server!("--max-duration");
                r.max_duration = Some(
                    parse_duration(&val!("--max-duration"))
                        .map_err(|e| format!("--max-duration: {e}"))?,
                );
            }
            Long("max-sessions") => {
                server!("--max-sessions");
                r.max_sessions = Some(num(
                    "--max-sessions",
                    &val!("--max-sessions"),
                    1usize,
                    100_000,
                    "a session count",
                )?);
            }
            Long("auth") => {
                server!("--auth");
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
                server!("--metrics-file");
                let v = val!("--metrics-file");
                if v.is_empty() {
                    return Err("--metrics-file: expected a file path".into());
                }
                r.metrics_file = Some(PathBuf::from(v));
            }
            Long("users") => {
                server!("--users");
                r.users_file = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?));
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    Ok(r)
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
    if let Some(h) = r.help {
        return done(Mode::Help(h));
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
        return Err(format!("{flag} is not a {name} option (see btest --help)"));
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
        assert_eq!(parse_from(["-h"], None).unwrap().mode, Mode::Help(USAGE));
        assert_eq!(parse_from(["--help"], None).unwrap().mode, Mode::Help(HELP));
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
