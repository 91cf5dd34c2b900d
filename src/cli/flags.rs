//! Every command-line flag, defined once (issue 19; ripgrep's `flags/defs.rs` is the model):
//! its long name, short name, other spellings (iperf3's, RouterOS'), the commands it belongs
//! to, its value name, its help text and the setter that stores it in [`RawArgs`]. The help of
//! each command, the cross-command check, "did you mean", `name=value` words and the shell
//! completions all read [`FLAGS`].
//!
//! Must not: validate across flags (that is `finish`, in mod.rs), or read anything but the value
//! it is handed.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{num, parse_device, parse_http, parse_http_host, parse_listen, yes_no, RawArgs};
use crate::config::{Family, Latency, Live, Pacing, UdpIo};
use crate::units::{parse_duration, parse_rate};
use crate::wire::datagram::{MAX_TX_SIZE, MIN_TX_SIZE};
use crate::wire::{Direction, Protocol, DEFAULT_PORT};

/// The commands, as bits of [`Flag::cmds`].
pub(super) const CLIENT: u8 = 1;
pub(super) const SERVER: u8 = 2;
pub(super) const FLEET: u8 = 4;
pub(super) const THROUGH: u8 = 8;
/// `btest speed-test` (issue 22; the `speedtest` feature).
pub(super) const SPEEDTEST: u8 = 16;
/// `btest exporter` (issue 22; the `exporter` feature).
pub(super) const EXPORTER: u8 = 32;
/// `-v`, `-q`, `-h`, `-V`: every command, listed under "Common options".
const ALL: u8 = CLIENT | SERVER | FLEET | THROUGH | SPEEDTEST | EXPORTER;
/// The client's test options `btest speed-test` takes as they are.
const CS: u8 = CLIENT | SPEEDTEST;

/// Stores a flag's value (`""` for a switch) or says what is wrong with it, naming the flag.
pub(super) type Apply = fn(&mut RawArgs, &str) -> Result<(), String>;

/// One flag. Two rows may share a long name when the help differs per command (`--json`);
/// they then share the setter too.
pub(super) struct Flag {
    /// `long\taliases\tvalue\thelp`, read by the methods of the same names.
    spec: &'static str,
    pub short: Option<char>,
    /// The commands ([`CLIENT`] ...) it belongs to.
    pub cmds: u8,
    pub apply: Apply,
}

impl Flag {
    fn part(&self, i: usize) -> &'static str {
        self.spec.split('\t').nth(i).unwrap_or_default()
    }

    /// Without the dashes; empty for a flag with a short name only (`-4`).
    pub fn long(&self) -> &'static str {
        self.part(0)
    }

    /// Other long names, accepted and completed but not listed in the help
    /// (`tcp-connection-count`, `allocate-udp-ports-from`).
    pub fn aliases(&self) -> std::str::SplitWhitespace<'static> {
        self.part(1).split_whitespace()
    }

    /// The value's name in the help (`RATE`, `tcp|udp`); `None` for a switch.
    pub fn value(&self) -> Option<&'static str> {
        Some(self.part(2)).filter(|v| !v.is_empty())
    }

    /// Each '\n' continues the text on the next line, aligned.
    pub fn help(&self) -> &'static str {
        self.part(3)
    }

    /// The name errors use: `--duration`, or `-4` for a short-only flag.
    pub fn name(&self) -> String {
        if self.long().is_empty() {
            format!("-{}", self.short.unwrap_or('?'))
        } else {
            format!("--{}", self.long())
        }
    }

    /// The left column of the help: `-t, --duration DUR`.
    pub fn names(&self) -> String {
        let mut s = String::new();
        if let Some(c) = self.short {
            s.push('-');
            s.push(c);
            if !self.long().is_empty() {
                s.push_str(", ");
            }
        }
        if !self.long().is_empty() {
            s.push_str("--");
            s.push_str(self.long());
        }
        if let Some(v) = self.value() {
            s.push(' ');
            s.push_str(v);
        }
        s
    }

    /// Whether a `--name` (without dashes) is this flag.
    pub fn is_long(&self, name: &str) -> bool {
        (!self.long().is_empty() && self.long() == name) || self.aliases().any(|a| a == name)
    }

    /// Listed under "Common options" (every command has it).
    pub fn common(&self) -> bool {
        self.cmds == ALL
    }

    /// The choices of a `a|b|c` value, for completions.
    #[cfg(feature = "completions")]
    pub fn choices(&self) -> Option<std::str::Split<'static, char>> {
        self.value()
            .filter(|v| v.contains('|'))
            .map(|v| v.split('|'))
    }

    /// Whether the value is a file path, for completions.
    #[cfg(feature = "completions")]
    pub fn takes_file(&self) -> bool {
        matches!(self.value(), Some("FILE" | "PATH" | "DIR"))
    }
}

/// One row. Long name, aliases (space-separated), value name and help go into one string:
/// in the static-PIE router image each pointer of a table costs a 24-byte relocation, and
/// five pointers a row made the table 7 KiB bigger than the budget had room for.
macro_rules! flag {
    ($long:literal, $short:expr, $aliases:literal, $cmds:expr, $value:literal, $help:literal, $apply:expr) => {
        Flag {
            spec: concat!($long, "\t", $aliases, "\t", $value, "\t", $help),
            short: $short,
            cmds: $cmds,
            apply: $apply,
        }
    };
}

fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v).map_err(|e| format!("{flag}: {e}"))
}

fn rate(flag: &str, v: &str) -> Result<u64, String> {
    parse_rate(v).map_err(|e| format!("{flag}: {e}"))
}

fn path(flag: &str, v: &str, what: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err(format!("{flag}: expected {what}"));
    }
    Ok(PathBuf::from(v))
}

fn udp_size(flag: &str, v: &str) -> Result<u16, String> {
    num(flag, v, MIN_TX_SIZE, MAX_TX_SIZE, "a size in bytes")
}

fn ip(flag: &str, v: &str) -> Result<IpAddr, String> {
    v.trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("{flag}: invalid address '{v}': expected an IPv4 or IPv6 address"))
}

/// `tcp|udp`, any case (`UDP`, RouterOS' `protocol=udp`): the value of the word that
/// matches, or an error naming the accepted ones. A macro over the one non-generic [`pick`],
/// so the router image holds one copy of the matching.
macro_rules! choose {
    ($flag:expr, $v:expr, $expected:expr, $($w:literal => $t:expr),+ $(,)?) => {
        [$($t),+][pick($flag, $v, &[$($w),+], $expected)?]
    };
}

#[inline(never)]
fn pick(flag: &str, v: &str, words: &[&str], expected: &str) -> Result<usize, String> {
    let l = v.trim().to_ascii_lowercase();
    words
        .iter()
        .position(|w| *w == l)
        .ok_or_else(|| format!("{flag}: invalid value '{v}': expected {expected}"))
}

fn cidrs(flag: &str, v: &str) -> Result<Vec<crate::cidr::Cidr>, String> {
    let list = crate::cidr::parse_list(v).map_err(|e| format!("{flag}: {e}"))?;
    if list.is_empty() {
        return Err(format!(
            "{flag}: '{v}': expected CIDR[,CIDR], e.g. 192.0.2.0/24"
        ));
    }
    Ok(list)
}

/// Every flag, in help order.
#[rustfmt::skip]
pub(super) const FLAGS: &[Flag] = &[
    // --- client (the names RouterOS' /tool bandwidth-test uses) ---
    flag!("address", None, "", CLIENT, "HOST[:PORT]", "the server, as RouterOS names it (instead of HOST)",
        |r, v| { r.host = Some(v.to_string()); Ok(()) }),
    flag!("protocol", None, "", CS, "tcp|udp", "transport (default tcp)",
        |r, v| { r.protocol = Some(choose!("--protocol", v, "tcp or udp", "tcp" => Protocol::Tcp, "udp" => Protocol::Udp)); Ok(()) }),
    flag!("udp", Some('u'), "", CS, "", "UDP, as iperf3's -u (same as --protocol udp)",
        |r, _| { r.protocol = Some(Protocol::Udp); Ok(()) }),
    flag!("direction", None, "", CLIENT, "transmit|receive|both", "data direction seen from this client (default receive)",
        |r, v| {
            r.direction = Some(choose!("--direction", v, "transmit, receive or both", "transmit" => Direction::ServerRx, "send" => Direction::ServerRx, "tx" => Direction::ServerRx, "receive" => Direction::ServerTx, "rx" => Direction::ServerTx, "both" => Direction::Both));
            Ok(())
        }),
    flag!("reverse", Some('R'), "", CLIENT, "", "the server sends, as iperf3's -R (same as --direction receive,\nour default)",
        |r, _| { r.direction = Some(Direction::ServerTx); Ok(()) }),
    flag!("duration", Some('t'), "", CLIENT, "DUR", "test length, e.g. 10s, 1m30s; 0 = until Ctrl-C (default 10s)",
        |r, v| { r.duration = Some(duration("--duration", v)?); Ok(()) }),
    flag!("connection-count", Some('P'), "tcp-connection-count", CLIENT, "N", "TCP connections, 1..255 (default 1)",
        |r, v| { r.connection_count = Some(num("--connection-count", v, 1u8, 255, "a whole number")?); Ok(()) }),
    flag!("local-tx-speed", None, "", CS, "RATE", "our transmit rate, bit/s with k/M/G; 0 = unlimited (default 0)",
        |r, v| { r.local_tx_speed = Some(rate("--local-tx-speed", v)?); Ok(()) }),
    flag!("remote-tx-speed", None, "", CS, "RATE", "the server's transmit rate; 0 = unlimited (default 0)",
        |r, v| { r.remote_tx_speed = Some(remote_rate("--remote-tx-speed", v)?); Ok(()) }),
    flag!("bitrate", Some('b'), "", CLIENT, "RATE", "the sender's rate, as iperf3's -b: --local-tx-speed when we\ntransmit, --remote-tx-speed when we receive, both for both\n(either one given explicitly wins)",
        |r, v| { r.bitrate = Some(rate("--bitrate", v)?); Ok(()) }),
    flag!("local-udp-tx-size", None, "", CS, "N", "UDP datagram size we send, 28..64000 bytes incl. IP+UDP\nheaders (default 1500)",
        |r, v| { r.local_udp_tx_size = Some(udp_size("--local-udp-tx-size", v)?); Ok(()) }),
    flag!("remote-udp-tx-size", None, "", CS, "N", "UDP datagram size the server sends (default 1500)",
        |r, v| { r.remote_udp_tx_size = Some(udp_size("--remote-udp-tx-size", v)?); Ok(()) }),
    flag!("length", Some('l'), "", CS, "N", "both UDP datagram sizes, as iperf3's -l, but counting the\nIP+UDP headers as RouterOS does (1500 = 1472 B of payload)",
        |r, v| { r.length = Some(udp_size("--length", v)?); Ok(()) }),
    flag!("random-data", None, "", CS, "yes|no", "random payload instead of zeros (default no)",
        |r, v| { r.random_data = Some(yes_no("--random-data", v)?); Ok(()) }),
    flag!("interval", Some('i'), "", CLIENT, "DUR", "report cadence, 20ms..5s (default 1s)",
        |r, v| {
            let d = duration("--interval", v)?;
            if d < Duration::from_millis(20) || d > Duration::from_secs(5) {
                return Err(format!("--interval: '{v}' is out of range: use 20ms..5s"));
            }
            r.interval = Some(d);
            Ok(())
        }),
    flag!("port", Some('p'), "", CS, "PORT", "the server's TCP port, as iperf3's -p (default 2000, or\nHOST:PORT)",
        |r, v| { r.port = Some(num("--port", v, 1u16, u16::MAX, "a TCP port")?); Ok(()) }),
    flag!("", Some('4'), "", CS, "", "use IPv4 only",
        |r, _| { r.family = Some(Family::V4); Ok(()) }),
    flag!("", Some('6'), "", CS, "", "use IPv6 only",
        |r, _| { r.family = Some(Family::V6); Ok(()) }),
    flag!("bind", None, "", CS, "ADDR", "local address to send from",
        |r, v| { r.bind = Some(ip("--bind", v)?); Ok(()) }),
    flag!("tos", None, "", CS, "N", "IP TOS / traffic class byte, 0..255",
        |r, v| {
            let n = match v.strip_prefix("0x") {
                Some(h) => u8::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            };
            r.tos = Some(n.ok_or_else(|| format!("--tos: invalid value '{v}': expected 0..255 (or 0x00..0xff)"))?);
            Ok(())
        }),
    flag!("connect-timeout", None, "", CS, "DUR", "connect and handshake deadline (default 10s)",
        |r, v| {
            let d = duration("--connect-timeout", v)?;
            if d.is_zero() {
                return Err(format!("--connect-timeout: '{v}' must be more than 0"));
            }
            r.connect_timeout = Some(d);
            Ok(())
        }),
    flag!("user", None, "", CS, "USER", "user name for authentication (default admin when a password\nis given)",
        set_user),
    flag!("password", None, "", CS, "PASS", "password (or set BTEST_PASSWORD to keep it off the process\nlist); without --user it logs in as admin",
        set_password),
    flag!("pacing", None, "", CS | SERVER, "auto|precise", "auto: each datagram at its own deadline down to 40 us apart\n(300 Mbit/s of 1500 B), short bursts above; precise: spin for\nexact spacing at any rate (a busy core per paced sender)\n(default auto)",
        |r, v| { r.tuning.pacing = choose!("--pacing", v, "auto or precise", "auto" => Pacing::Auto, "precise" => Pacing::Precise); Ok(()) }),
    flag!("udp-io", None, "", CS | SERVER, "auto|mmsg|single", "UDP batching: auto = GSO/GRO where the kernel has them,\nelse sendmmsg/recvmmsg; single = one datagram per call",
        |r, v| {
            r.tuning.udp_io = choose!("--udp-io", v, "auto, mmsg or single", "auto" => UdpIo::Auto, "mmsg" => UdpIo::Mmsg, "single" => UdpIo::Single);
            Ok(())
        }),
    flag!("busy-poll", None, "", CS | SERVER, "USECS", "SO_BUSY_POLL on data sockets (bare-metal NICs; costs CPU)",
        |r, v| { r.tuning.busy_poll = Some(num("--busy-poll", v, 1u32, 1_000_000, "microseconds")?); Ok(()) }),
    flag!("json", None, "", CLIENT, "", "NDJSON records on stdout instead of text", set_json),
    flag!("csv", None, "", CLIENT, "FILE", "append one CSV row per finished test (header when new)", set_csv),
    flag!("syslog", None, "", CLIENT, "HOST[:PORT]", "RFC 3164 messages over UDP (default port 514)", set_syslog),
    flag!("latency", None, "", CS, "auto|echo|icmp|off", "round-trip probe beside the load, 10/s: echo = the btest\nserver's UDP echo, icmp = ping; auto = echo, else icmp\n(default auto)",
        |r, v| {
            r.latency = Some(choose!("--latency", v, "auto, echo, icmp or off", "auto" => Latency::Auto, "echo" => Latency::Echo, "icmp" => Latency::Icmp, "off" => Latency::Off, "no" => Latency::Off));
            Ok(())
        }),
    flag!("latency-idle", None, "", CLIENT, "DUR", "idle round trip measured this long before the load, 0..60s\n(default 1s)",
        |r, v| {
            let d = duration("--latency-idle", v)?;
            if d > Duration::from_secs(60) {
                return Err(format!("--latency-idle: '{v}' is too long: expected 0..60s (e.g. 1s, 500ms)"));
            }
            r.latency_idle = Some(d);
            Ok(())
        }),
    flag!("device", None, "", CS | SERVER, "IF", "bind every socket to this interface (SO_BINDTODEVICE)",
        |r, v| { r.device = Some(parse_device(v)?); Ok(()) }),
    flag!("report", None, "", CLIENT, "FILE", "write a self-contained HTML report (charts, tables)", set_report),
    flag!("live", None, "", CLIENT, "auto|yes|no", "live rate graph under the lines (default auto: stdout is a\nterminal and the output is text)",
        |r, v| {
            r.live = Some(choose!("--live", v, "auto, yes or no", "auto" => Live::Auto, "yes" => Live::Yes, "true" => Live::Yes, "on" => Live::Yes, "1" => Live::Yes, "no" => Live::No, "false" => Live::No, "off" => Live::No, "0" => Live::No));
            Ok(())
        }),
    // --- server (RouterOS' /tool bandwidth-server names where it has them) ---
    flag!("listen", None, "", SERVER, "ADDR[:PORT]", "listen address, repeatable (default [::]:2000, dual-stack)",
        |r, v| { r.listen.push(parse_listen(v, DEFAULT_PORT)?); Ok(()) }),
    flag!("port", Some('p'), "", SERVER, "PORT", "listen on [::]:PORT instead of 2000, as iperf3's -p",
        |r, v| { r.port = Some(num("--port", v, 0u16, u16::MAX, "a TCP port (0: any free one)")?); Ok(()) }),
    flag!("udp-port-from", None, "allocate-udp-ports-from", SERVER, "PORT", "first UDP port handed to UDP tests (default 2001; RouterOS:\nallocate-udp-ports-from)",
        set_udp_port_from),
    flag!("control-timeout", None, "", CS | SERVER, "DUR", "end a test after this much silence from the peer (default 10s)",
        |r, v| {
            let d = duration("--control-timeout", v)?;
            if d < Duration::from_secs(1) {
                return Err(format!("--control-timeout: '{v}' is too short: use at least 1s (statuses arrive once a second)"));
            }
            r.control_timeout = Some(d);
            Ok(())
        }),
    flag!("max-duration", None, "", SERVER, "DUR", "cap on a session's length; 0 = unlimited (default 0)",
        |r, v| { r.max_duration = Some(duration("--max-duration", v)?); Ok(()) }),
    flag!("max-sessions", None, "", SERVER, "N", "concurrent sessions (default 100)",
        |r, v| { r.max_sessions = Some(num("--max-sessions", v, 1usize, 100_000, "a session count")?); Ok(()) }),
    flag!("handshake-timeout", None, "", SERVER, "DUR", "drop a handshake (command, login, joins) not done by then\n(default 5s)",
        |r, v| {
            let d = duration("--handshake-timeout", v)?;
            if d < Duration::from_millis(500) || d > Duration::from_secs(300) {
                return Err(format!("--handshake-timeout: '{v}' is out of range: use 500ms..5m (a RouterOS login takes well under 1 s on a LAN)"));
            }
            r.handshake_timeout = Some(d);
            Ok(())
        }),
    flag!("max-handshakes", None, "", SERVER, "N", "handshakes in progress, all sources (default 256)",
        |r, v| { r.max_handshakes = Some(num("--max-handshakes", v, 1usize, 100_000, "a connection count")?); Ok(()) }),
    flag!("max-handshakes-per-source", None, "", SERVER, "N", "... per IPv4 address or IPv6 /64 (default 16; joins on top)",
        |r, v| { r.max_handshakes_per_source = Some(num("--max-handshakes-per-source", v, 1usize, 100_000, "a connection count")?); Ok(()) }),
    flag!("max-sessions-per-source", None, "", SERVER, "N", "sessions at once per IPv4 address or IPv6 /64 (default 4;\n0 = no limit)",
        |r, v| { r.max_sessions_per_source = Some(num("--max-sessions-per-source", v, 0usize, 100_000, "a session count (0 = no limit)")?); Ok(()) }),
    flag!("max-connections-per-source", None, "", SERVER, "N", "TCP connections of one source's sessions together (default\n300; 0 = no limit)",
        |r, v| { r.max_connections_per_source = Some(num("--max-connections-per-source", v, 0usize, 10_000_000, "a connection count (0 = no limit)")?); Ok(()) }),
    flag!("max-login-failures", None, "", SERVER, "N", "wrong logins per source in 60 s, then block (default 5; 0 off)",
        |r, v| { r.max_login_failures = Some(num("--max-login-failures", v, 0u32, 1_000_000, "a count (0 = no limit)")?); Ok(()) }),
    flag!("login-block", None, "", SERVER, "DUR", "how long a blocked source is refused (default 60s)",
        |r, v| {
            let d = duration("--login-block", v)?;
            if d.is_zero() {
                return Err(format!("--login-block: '{v}' must be longer than 0 (use --max-login-failures 0 for no limit)"));
            }
            r.login_block = Some(d);
            Ok(())
        }),
    flag!("logins-per-minute", None, "", SERVER, "N", "logins per source per minute, burst 10 (default 30; 0 = off)",
        |r, v| { r.logins_per_minute = Some(num("--logins-per-minute", v, 0u32, 1_000_000, "a count (0 = no limit)")?); Ok(()) }),
    flag!("allow", None, "allowed-addresses4 allowed-addresses6", SERVER, "CIDR[,CIDR]", "only these networks may connect (repeatable; IPv4, IPv6;\nRouterOS 7.18: allowed-addresses4=, allowed-addresses6=)",
        |r, v| { let l = cidrs("--allow", v)?; r.allow.extend(l); Ok(()) }),
    flag!("deny", None, "", SERVER, "CIDR[,CIDR]", "these networks may not connect (repeatable; wins over --allow)",
        |r, v| { let l = cidrs("--deny", v)?; r.deny.extend(l); Ok(()) }),
    flag!("max-rate", None, "", SERVER, "RATE", "cap each session instead of refusing faster tests: our\nsending, and over TCP our reading (e.g. 100M; default none)",
        |r, v| {
            let n = rate("--max-rate", v)?;
            if n == 0 {
                return Err(format!("--max-rate: '{v}' must be above 0 (leave it out for no cap)"));
            }
            r.max_rate = Some(n);
            Ok(())
        }),
    flag!("source-limit", None, "", SERVER, "'SCOPE LIMITS'", "limits per source (repeatable): SCOPE addr, v4/LEN or v6/LEN;\nLIMITS day=, week=, month= (bytes; up-/down- prefixed\nfor one way), sessions=N, duration=DUR, rate=RATE",
        |r, v| { r.source_limits.push(v.parse().map_err(|e| format!("--source-limit: {e}"))?); Ok(()) }),
    flag!("state-dir", None, "", SERVER, "DIR", "keep byte usage here across restarts (byte quotas need it)",
        |r, v| { r.state_dir = Some(path("--state-dir", v, "a directory")?); Ok(()) }),
    flag!("http", None, "", SERVER, "[ADDR:]PORT", "serve live sessions, quotas and history as JSON, /metrics\nand a dashboard page (a bare port: 127.0.0.1 only)",
        |r, v| { r.http = Some(parse_http(v)?); Ok(()) }),
    flag!("http-host", None, "", SERVER, "NAME", "also answer --http requests for this host name (repeatable);\nits listen address is always answered, other names get\n421 (DNS rebinding)",
        |r, v| { r.http_hosts.push(parse_http_host(v)?); Ok(()) }),
    flag!("auth", None, "", SERVER, "ecsrp5|md5|none", "method offered (default ecsrp5 with accounts, else none;\nnone with accounts is refused)",
        |r, v| { r.auth = Some(v.to_ascii_lowercase().parse().map_err(|e: String| format!("--auth: {e}"))?); Ok(()) }),
    flag!("user", None, "", SERVER, "USER", "one account's name; its password from --password or\nBTEST_PASSWORD", set_user),
    flag!("password", None, "", SERVER, "PASS", "that account's password (alone: the account is admin)", set_password),
    flag!("users", None, "", SERVER, "FILE", "accounts, one user:password per line, # comments (mode 600)",
        |r, v| { r.users_file = Some(PathBuf::from(v)); Ok(()) }),
    flag!("json", None, "", SERVER, "", "session_start / session_end JSON records on stdout", set_json),
    flag!("csv", None, "", SERVER, "FILE", "append one CSV row per finished session", set_csv),
    flag!("syslog", None, "", SERVER, "HOST[:PORT]", "RFC 3164 messages: session start/end, login success/failure", set_syslog),
    flag!("metrics-file", None, "", SERVER, "PATH", "Prometheus text file rewritten every second (node_exporter)",
        |r, v| { r.metrics_file = Some(path("--metrics-file", v, "a file path")?); Ok(()) }),
    flag!("echo", None, "", SERVER, "yes|no", "answer latency probes on UDP at each listen address and\nport (default yes)",
        |r, v| { r.echo = Some(yes_no("--echo", v)?); Ok(()) }),
    // --- through ---
    flag!("server-addr", None, "", THROUGH, "ADDR", "the server side's address; the client connects to it",
        |r, v| {
            r.server_addr = Some(v.trim_matches(['[', ']']).parse().map_err(|_| {
                format!("--server-addr: invalid address '{v}': expected an IP address, e.g. 10.0.2.1")
            })?);
            Ok(())
        }),
    flag!("port", None, "", THROUGH, "N", "the server side's TCP port (default 2000; 0: any free one)",
        |r, v| { r.port = Some(num("--port", v, 0u16, u16::MAX, "a TCP port (0: any free one)")?); Ok(()) }),
    flag!("udp-port-from", None, "", THROUGH, "N", "the server side's first UDP port (default: --port + 1)", set_udp_port_from),
    flag!("server-dev", None, "", THROUGH, "IF", "bind the server side's sockets to interface IF",
        |r, v| { r.server_dev = Some(parse_device(v).map_err(|e| e.replace("--device", "--server-dev"))?); Ok(()) }),
    flag!("server-netns", None, "", THROUGH, "NAME", "run the server side in network namespace NAME\n(/run/netns/NAME, or a path)",
        |r, v| { r.server_netns = Some(netns_path("--server-netns", v)?); Ok(()) }),
    flag!("client-bind", None, "", THROUGH, "ADDR", "the client side's source address",
        |r, v| { r.bind = Some(ip("--client-bind", v)?); Ok(()) }),
    flag!("client-dev", None, "", THROUGH, "IF", "bind the client side's sockets to interface IF",
        |r, v| { r.device = Some(parse_device(v).map_err(|e| e.replace("--device", "--client-dev"))?); Ok(()) }),
    flag!("client-netns", None, "", THROUGH, "NAME", "run the client side in network namespace NAME",
        |r, v| { r.client_netns = Some(netns_path("--client-netns", v)?); Ok(()) }),
    // --- every command ---
    flag!("verbose", Some('v'), "", ALL, "", "more diagnostics on stderr (repeat for more); RUST_LOG overrides",
        |r, _| { r.verbosity += 1; Ok(()) }),
    flag!("quiet", Some('q'), "", ALL, "", "errors only on stderr",
        |r, _| { r.verbosity -= 1; Ok(()) }),
    flag!("help", Some('h'), "", ALL, "", "this help; after a command, that command's options",
        |r, _| { r.help = true; Ok(()) }),
    flag!("version", Some('V'), "", ALL, "", "print the version",
        |r, _| { r.version = true; Ok(()) }),
];

/// `btest fleet`'s own rows: none in a build without it (the router image), so neither they
/// nor their help take room there.
#[rustfmt::skip]
pub(super) const FLEET_FLAGS: &[Flag] = if cfg!(feature = "fleet") { &[
    flag!("parallel", None, "", FLEET, "N", "targets tested at once, 1..64 (default 1: one at a time,\nso tests do not share a link)",
        |r, v| { r.parallel = Some(num("--parallel", v, 1usize, 64, "targets at once")?); Ok(()) }),
    flag!("retries", None, "", FLEET, "N", "further attempts after a failure that may pass on a retry\n(connect, timeout, the test ending early), 0..10 (default 1);\nwrong credentials and refusals are not retried",
        |r, v| { r.retries = Some(num("--retries", v, 0u32, 10, "further attempts")?); Ok(()) }),
    flag!("retry-delay", None, "", FLEET, "DUR", "wait between attempts (default 5s)",
        |r, v| { r.retry_delay = Some(duration("--retry-delay", v)?); Ok(()) }),
    flag!("json", None, "", FLEET, "", "NDJSON `target` records on stdout instead of the text matrix", set_json),
    flag!("ndjson", None, "", FLEET, "FILE", "write the `target` records as NDJSON to FILE",
        |r, v| { r.ndjson = Some(PathBuf::from(v)); Ok(()) }),
    flag!("csv", None, "", FLEET, "FILE", "write the `target` records as CSV to FILE", set_csv),
    flag!("report", None, "", FLEET, "FILE", "write a self-contained HTML report of every target", set_report),
] } else { &[] };

/// `btest speed-test`'s own rows and `--congestion` (issue 22): none in a build without the
/// `speedtest` feature (the router image), so neither they nor their help take room there.
#[rustfmt::skip]
pub(super) const SPEEDTEST_FLAGS: &[Flag] = if cfg!(feature = "speedtest") { &[
    flag!("idle", None, "", SPEEDTEST, "DUR", "idle phase: latency before any load, 0..60s (default 3s)",
        |r, v| { r.st_idle = Some(span("--idle", v, Duration::ZERO, Duration::from_secs(60))?); Ok(()) }),
    flag!("phase", None, "", SPEEDTEST, "DUR", "each load phase's length, 2s..10m (default 10s); its first\nsecond is the ramp, left out of the latency figures",
        |r, v| { r.st_phase = Some(span("--phase", v, Duration::from_secs(2), Duration::from_secs(600))?); Ok(()) }),
    flag!("cooldown", None, "", SPEEDTEST, "DUR", "cooldown phase after the load, 0..60s (default 3s)",
        |r, v| { r.st_cooldown = Some(span("--cooldown", v, Duration::ZERO, Duration::from_secs(60))?); Ok(()) }),
    flag!("phases", None, "", SPEEDTEST, "LIST", "phases and their order (default\nidle,download,upload,bidirectional,cooldown)",
        |r, v| { r.st_phases = Some(v.to_string()); Ok(()) }),
    flag!("probe-interval", None, "", SPEEDTEST, "DUR", "latency probe spacing per class, 5ms..10s (default 10ms);\nwidened to keep probes under 5 % of the measured rate",
        |r, v| { r.st_probe_interval = Some(span("--probe-interval", v, Duration::from_millis(5), Duration::from_secs(10))?); Ok(()) }),
    flag!("probe-dscp", None, "", SPEEDTEST, "LIST", "a probe stream per DSCP class: ef, be, bk, le, cs0..cs7,\naf11..af43 or 0..63, e.g. ef,be,bk (default be)",
        |r, v| { r.st_probe_dscp = Some(v.to_string()); Ok(()) }),
    flag!("connection-count", Some('P'), "tcp-connection-count", SPEEDTEST, "N", "TCP connections per load phase, 1..255 (default 4)",
        |r, v| { r.connection_count = Some(num("--connection-count", v, 1u8, 255, "a whole number")?); Ok(()) }),
    flag!("congestion", None, "", CLIENT | SPEEDTEST, "NAME", "TCP congestion control of our connections (TCP_CONGESTION,\nLinux: cubic, bbr, reno, ...; default the kernel's)",
        |r, v| {
            if v.is_empty() || v.len() > 15 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(format!("--congestion: invalid name '{v}': expected a kernel congestion control name such as cubic or bbr (see /proc/sys/net/ipv4/tcp_available_congestion_control)"));
            }
            r.congestion = Some(v.to_string());
            Ok(())
        }),
    flag!("json", None, "", SPEEDTEST, "", "NDJSON `phase` records and a `speed_test` record on stdout", set_json),
    flag!("csv", None, "", SPEEDTEST, "FILE", "append a CSV row per phase and an `overall` row", set_csv),
    flag!("report", None, "", SPEEDTEST, "FILE", "write a self-contained HTML report: the phases on a timeline,\nthroughput and latency", set_report),
    flag!("speed-test", None, "", FLEET, "", "run a speed test for every target (a target line may say\nmode=speed-test alone)",
        |r, _| { r.speed_test = true; Ok(()) }),
] } else { &[] };

/// A duration flag within `lo..=hi`.
fn span(flag: &str, v: &str, lo: Duration, hi: Duration) -> Result<Duration, String> {
    let d = duration(flag, v)?;
    if d < lo || d > hi {
        return Err(format!(
            "{flag}: '{v}' is out of range: use {}..{}",
            short_dur(lo),
            short_dur(hi)
        ));
    }
    Ok(d)
}

/// `btest exporter`'s own rows (issue 22): not in a build without it (the router image, where
/// even an empty table chained into [`all`] costs bytes).
#[cfg(feature = "exporter")]
#[rustfmt::skip]
pub(super) const EXPORTER_FLAGS: &[Flag] = &[
    flag!("listen", None, "", EXPORTER, "ADDR:PORT", "serve /probe and /metrics here (required), e.g. 127.0.0.1:9477\nor [::]:9477; port 0 takes a free one",
        |r, v| {
            let a = v.trim().parse().map_err(|_| format!("--listen: invalid address '{v}': expected ADDR:PORT, e.g. 127.0.0.1:9477 or [::]:9477"))?;
            r.listen.push(a);
            Ok(())
        }),
    flag!("targets", None, "", EXPORTER, "FILE", "the targets, in the `btest fleet` file format (required):\nNAME HOST[:PORT] [CLIENT-OPTIONS] [--credentials FILE]",
        |r, v| { r.targets = Some(path("--targets", v, "a file path")?); Ok(()) }),
    flag!("concurrency", None, "", EXPORTER, "N", "tests running at once, 1..16 (default 2); one more is\nanswered 503 with Retry-After",
        |r, v| { r.concurrency = Some(num("--concurrency", v, 1usize, 16, "tests at once")?); Ok(()) }),
    flag!("min-interval", None, "", EXPORTER, "DUR", "a target asked again within this gets its cached last\nresult, with its age (default 60s; 0: test every time)",
        |r, v| { r.min_interval = Some(duration("--min-interval", v)?); Ok(()) }),
    flag!("max-duration", None, "", EXPORTER, "DUR", "cap on a test's data phase, 1s..1h (default 10s)",
        |r, v| { r.max_duration = Some(within("--max-duration", v, 1, "a probe's test must end")?); Ok(()) }),
    flag!("timeout", None, "", EXPORTER, "DUR", "a whole probe's deadline, 2s..1h (default 15s); a shorter\nX-Prometheus-Scrape-Timeout-Seconds shortens it",
        |r, v| { r.timeout = Some(within("--timeout", v, 2, "time to connect, test and answer")?); Ok(()) }),
];

/// A duration of `lo` seconds to an hour.
#[cfg(feature = "exporter")]
fn within(flag: &str, v: &str, lo: u64, why: &str) -> Result<Duration, String> {
    let d = duration(flag, v)?;
    if d < Duration::from_secs(lo) || d > Duration::from_secs(3600) {
        return Err(format!("{flag}: '{v}' is not {lo}s..1h ({why})"));
    }
    Ok(d)
}

fn short_dur(d: Duration) -> String {
    match d.as_millis() {
        0 => "0".into(),
        m if m < 1000 => format!("{m}ms"),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m => format!("{}s", m / 1000),
    }
}

/// Every row: [`FLAGS`], then [`FLEET_FLAGS`], then [`SPEEDTEST_FLAGS`], then `EXPORTER_FLAGS`.
#[cfg(feature = "exporter")]
pub(super) fn all() -> impl Iterator<Item = &'static Flag> + Clone {
    FLAGS
        .iter()
        .chain(FLEET_FLAGS)
        .chain(SPEEDTEST_FLAGS)
        .chain(EXPORTER_FLAGS)
}

/// Every row: [`FLAGS`], then [`FLEET_FLAGS`], then [`SPEEDTEST_FLAGS`].
#[cfg(not(feature = "exporter"))]
pub(super) fn all() -> impl Iterator<Item = &'static Flag> + Clone {
    FLAGS.iter().chain(FLEET_FLAGS).chain(SPEEDTEST_FLAGS)
}

/// Client options `btest through` does not take, and what to use instead.
pub(super) const NOT_THROUGH: &[(&str, &str)] = &[
    ("bind", "--client-bind"),
    ("device", "--client-dev or --server-dev"),
    ("user", "nothing: through mode makes a one-time account"),
    ("password", "nothing: through mode makes a one-time account"),
    ("address", "--server-addr"),
];

fn remote_rate(flag: &str, v: &str) -> Result<u32, String> {
    u32::try_from(rate(flag, v)?).map_err(|_| {
        format!(
            "{flag}: '{v}' is too large: the protocol carries at most 4294967295 bit/s (about \
             4.29G); use 0 for unlimited"
        )
    })
}

fn set_user(r: &mut RawArgs, v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 255 || v.contains('\0') {
        return Err(format!(
            "--user: invalid user '{v}': expected 1..255 bytes without NUL"
        ));
    }
    r.user = Some(v.to_string());
    Ok(())
}

fn set_password(r: &mut RawArgs, v: &str) -> Result<(), String> {
    r.password = Some(v.to_string());
    Ok(())
}

fn set_json(r: &mut RawArgs, _: &str) -> Result<(), String> {
    r.json = true;
    Ok(())
}

fn set_csv(r: &mut RawArgs, v: &str) -> Result<(), String> {
    r.csv = Some(path("--csv", v, "a file path")?);
    Ok(())
}

fn set_report(r: &mut RawArgs, v: &str) -> Result<(), String> {
    r.report = Some(PathBuf::from(v));
    Ok(())
}

fn set_syslog(r: &mut RawArgs, v: &str) -> Result<(), String> {
    if v.is_empty() || v.starts_with(':') {
        return Err(format!(
            "--syslog: invalid target '{v}': expected HOST[:PORT], e.g. 192.0.2.10 or logs.lan:514"
        ));
    }
    r.syslog = Some(v.to_string());
    Ok(())
}

fn set_udp_port_from(r: &mut RawArgs, v: &str) -> Result<(), String> {
    r.udp_port_from = Some(num("--udp-port-from", v, 1u16, 65000, "a UDP port")?);
    Ok(())
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

/// The flag `--name` (without dashes) for a command: its own row first, else any row of
/// that name (the caller then says which command it belongs to).
pub(super) fn long(name: &str, cmd: u8) -> Option<&'static Flag> {
    let mut rows = all().filter(|f| f.is_long(name));
    let first = rows.clone().next();
    rows.find(|f| f.cmds & cmd != 0).or(first)
}

/// The flag `-c`, as [`long`].
pub(super) fn short(c: char, cmd: u8) -> Option<&'static Flag> {
    let mut rows = all().filter(|f| f.short == Some(c));
    let first = rows.clone().next();
    rows.find(|f| f.cmds & cmd != 0).or(first)
}

/// The commands any row of this flag's name belongs to.
pub(super) fn cmds_of(f: &Flag) -> u8 {
    all()
        .filter(|g| {
            (g.long() == f.long() && !f.long().is_empty())
                || (f.long().is_empty() && g.short == f.short)
        })
        .fold(0, |a, g| a | g.cmds)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The long name (or alias) of a flag of `cmd` nearest to `typed` (without dashes), if it is
/// near enough to be a typo: at most 1 edit for short names, 2 from 6 letters, 3 from 12.
pub(super) fn suggest(typed: &str, cmd: u8) -> Option<&'static str> {
    let limit = match typed.len() {
        0..=5 => 1,
        6..=11 => 2,
        _ => 3,
    };
    all()
        .filter(|f| f.cmds & cmd != 0)
        .flat_map(|f| std::iter::once(f.long()).chain(f.aliases()))
        .filter(|n| !n.is_empty())
        .map(|n| (distance(typed, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_command() {
        for cmd in [CLIENT, SERVER, FLEET, THROUGH, SPEEDTEST, EXPORTER] {
            let mut seen: Vec<String> = Vec::new();
            for f in all().filter(|f| f.cmds & cmd != 0) {
                let mut names: Vec<String> = f.aliases().map(|a| a.to_string()).collect();
                if !f.long().is_empty() {
                    names.push(f.long().to_string());
                }
                names.extend(f.short.map(|c| c.to_string()));
                for n in names {
                    assert!(!seen.contains(&n), "{n} twice for command {cmd}");
                    seen.push(n);
                }
            }
        }
    }

    #[test]
    fn did_you_mean() {
        assert_eq!(suggest("protocl", CLIENT), Some("protocol"));
        assert_eq!(suggest("drection", CLIENT), Some("direction"));
        assert_eq!(suggest("conection-count", CLIENT), Some("connection-count"));
        assert_eq!(suggest("lisen", SERVER), Some("listen"));
        assert_eq!(suggest("paralel", FLEET), Some("parallel"));
        if cfg!(feature = "exporter") {
            assert_eq!(suggest("concurency", EXPORTER), Some("concurrency"));
        }
        assert_eq!(suggest("xyzzy", CLIENT), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "ab"), 2);
    }
}
