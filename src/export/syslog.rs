//! Fire-and-forget BSD syslog (RFC 3164) messages over UDP to one collector.
//!
//! Owns: parsing the `HOST[:PORT]` target (resolved once, at construction), the RFC 3164
//! packet format (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, facility daemon), the 1024-byte
//! packet limit, and one non-blocking UDP socket.
//! Must not: block, retry, or report a failure to the caller. An absent or slow collector
//! must never slow down or fail a test, so every send error is swallowed (the first one is
//! logged at debug level).
//!
//! Timestamps are UTC, not local time: RFC 3164 carries no zone, and UTC needs no time-zone
//! database. Collectors that assume local time will show an offset on non-UTC hosts.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use super::csv::Civil;

/// The syslog port when the target names none (RFC 3164 section 2).
pub const DEFAULT_PORT: u16 = 514;

/// RFC 3164 section 4.1: "The total length of the packet MUST be 1024 bytes or less."
pub const MAX_PACKET: usize = 1024;

/// Facility "system daemons" (RFC 3164 section 4.1.1, table 7).
const FACILITY_DAEMON: u8 = 3;

/// RFC 3164 section 4.1.3: the TAG "MUST NOT exceed 32 characters".
const MAX_TAG: usize = 32;

/// Used when the kernel hostname cannot be read.
const FALLBACK_HOST: &str = "localhost";

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Message severity (RFC 3164 section 4.1.1, table 2); only the levels btest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Severity {
    /// Error conditions: a session failed.
    Err = 3,
    /// Warning conditions: a connection was rejected.
    Warning = 4,
    /// Normal but significant: an authentication failure.
    Notice = 5,
    /// Informational: a session started or ended.
    Info = 6,
}

impl Severity {
    /// The PRI value for this severity with facility daemon: `facility * 8 + severity`.
    pub fn pri(self) -> u8 {
        FACILITY_DAEMON * 8 + self as u8
    }
}

/// A UDP syslog sender bound to one collector.
#[derive(Debug)]
pub struct Syslog {
    /// Non-blocking, unconnected; an ICMP unreachable from an absent collector is not
    /// reported back on an unconnected socket.
    sock: UdpSocket,
    /// The collector, resolved once by [`Syslog::new`].
    dest: SocketAddr,
    /// This machine's name for the HOSTNAME field (no domain, no spaces).
    host: String,
    tag: String,
    /// Set after the first failed send, which is the only one logged.
    failed: AtomicBool,
}

impl Syslog {
    /// A sender to `target`, `HOST[:PORT]` (port 514 when absent; IPv6 literals in brackets,
    /// `[::1]:514`, or bare without a port). The host is resolved once, here. `tag` is the
    /// program name shown in each message: 1 to 32 characters, no spaces, `:`, `[` or `]`.
    ///
    /// Errors quote the input and say what was wrong.
    pub fn new(target: &str, tag: &str) -> Result<Syslog, String> {
        if tag.is_empty()
            || tag.len() > MAX_TAG
            || tag
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || ":[]".contains(c))
        {
            return Err(format!(
                "syslog tag {tag:?}: expected 1 to {MAX_TAG} characters without spaces, ':', '[' or ']'"
            ));
        }
        let (host, port) = parse_target(target)?;
        let dest = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("syslog target {target:?}: cannot resolve {host:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("syslog target {target:?}: {host:?} has no address"))?;
        let local: SocketAddr = if dest.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            ([0, 0, 0, 0], 0).into()
        };
        let sock = UdpSocket::bind(local)
            .map_err(|e| format!("syslog target {target:?}: cannot open a UDP socket: {e}"))?;
        sock.set_nonblocking(true).map_err(|e| {
            format!("syslog target {target:?}: cannot make the socket non-blocking: {e}")
        })?;
        log::debug!("syslog: sending to {dest} as {tag}");
        Ok(Syslog {
            sock,
            dest,
            host: hostname(),
            tag: tag.to_string(),
            failed: AtomicBool::new(false),
        })
    }

    /// The collector's address.
    pub fn dest(&self) -> SocketAddr {
        self.dest
    }

    /// Sends one message now, without waiting. Never fails and never blocks: a full socket
    /// buffer, an unreachable network or an absent collector just drop the message.
    pub fn send(&self, severity: Severity, msg: &str) {
        let packet = format(
            severity.pri(),
            SystemTime::now(),
            &self.host,
            &self.tag,
            std::process::id(),
            msg,
        );
        if let Err(e) = self.sock.send_to(packet.as_bytes(), self.dest) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                log::debug!(
                    "syslog: send to {} failed: {e} (later failures are not logged)",
                    self.dest
                );
            }
        }
    }
}

/// One RFC 3164 packet: `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, timestamp in UTC, the
/// day space-padded to two characters (`Nov  3`). Control characters in `msg` (newlines
/// included) become spaces, since the format is one line of printable text. The result is
/// cut at a character boundary to at most [`MAX_PACKET`] bytes.
pub fn format(pri: u8, t: SystemTime, host: &str, tag: &str, pid: u32, msg: &str) -> String {
    let c = Civil::utc(t);
    let month = MONTHS[(c.month as usize).saturating_sub(1).min(11)];
    let mut s = format!(
        "<{pri}>{month} {:>2} {:02}:{:02}:{:02} {host} {tag}[{pid}]: ",
        c.day, c.hour, c.minute, c.second
    );
    for ch in msg.chars() {
        let ch = if ch.is_control() { ' ' } else { ch };
        if s.len() + ch.len_utf8() > MAX_PACKET {
            break;
        }
        s.push(ch);
    }
    if s.len() > MAX_PACKET {
        // Only an absurdly long host or tag gets here.
        let mut end = MAX_PACKET;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Splits `HOST[:PORT]` into host and port.
fn parse_target(target: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| {
        format!("syslog target {target:?}: {why} (expected HOST, HOST:PORT or [IPV6]:PORT)")
    };
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address in brackets"));
        }
        match after {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else if target.parse::<IpAddr>().is_ok() {
        // A bare IPv6 literal has colons but no port.
        (target, None)
    } else {
        match target.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(bad("IPv6 addresses with a port need brackets"))
            }
            Some((h, p)) => (h, Some(p)),
            None => (target, None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("port must be 1-65535")),
        },
    };
    Ok((host.to_string(), port))
}

/// The kernel's hostname without a domain (RFC 3164 section 4.1.2: "The Domain Name MUST
/// NOT be included"), or `localhost`.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    clean_host(&raw)
}

fn clean_host(raw: &str) -> String {
    let name = raw.trim();
    let short = if name.parse::<IpAddr>().is_ok() {
        name
    } else {
        name.split('.').next().unwrap_or_default()
    };
    if short.is_empty() || short.chars().any(|c| c.is_whitespace() || c.is_control()) {
        FALLBACK_HOST.to_string()
    } else {
        short.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Checks `Mmm dd hh:mm:ss ` at the start of `s` without a regex.
    fn timestamp_shape(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() >= 16
            && MONTHS.contains(&&s[0..3])
            && b[3] == b' '
            && (b[4] == b' ' || b[4].is_ascii_digit())
            && b[5].is_ascii_digit()
            && b[6] == b' '
            && b[7..9].iter().all(u8::is_ascii_digit)
            && b[9] == b':'
            && b[10..12].iter().all(u8::is_ascii_digit)
            && b[12] == b':'
            && b[13..15].iter().all(u8::is_ascii_digit)
            && b[15] == b' '
    }

    #[test]
    fn pri_values() {
        assert_eq!(Severity::Err.pri(), 27);
        assert_eq!(Severity::Warning.pri(), 28);
        assert_eq!(Severity::Notice.pri(), 29);
        assert_eq!(Severity::Info.pri(), 30);
    }

    #[test]
    fn format_known_instants() {
        assert_eq!(
            format(30, at(1_795_439_109), "rtr", "btest", 42, "session ended"),
            "<30>Nov 23 13:05:09 rtr btest[42]: session ended"
        );
        assert_eq!(
            format(27, UNIX_EPOCH, "h", "t", 1, "x"),
            "<27>Jan  1 00:00:00 h t[1]: x"
        );
        // Leap day, single-digit day padded with a space.
        assert_eq!(
            format(28, at(1_709_251_199), "h", "t", 7, ""),
            "<28>Feb 29 23:59:59 h t[7]: "
        );
        assert_eq!(
            format(29, at(1_772_694_489), "h", "t", 7, "m"),
            "<29>Mar  5 07:08:09 h t[7]: m"
        );
    }

    #[test]
    fn format_replaces_control_characters() {
        assert_eq!(
            format(30, UNIX_EPOCH, "h", "t", 1, "a\nb\r\tc"),
            "<30>Jan  1 00:00:00 h t[1]: a b  c"
        );
    }

    #[test]
    fn format_truncates_to_1024_bytes() {
        let long = "x".repeat(5000);
        let s = format(30, UNIX_EPOCH, "host", "btest", 12345, &long);
        assert_eq!(s.len(), MAX_PACKET);
        assert!(s.starts_with("<30>Jan  1 00:00:00 host btest[12345]: xxx"));

        // Never splits a multi-byte character: 3-byte characters around the limit.
        let wide = "€".repeat(2000);
        let s = format(30, UNIX_EPOCH, "host", "btest", 1, &wide);
        assert!(
            s.len() <= MAX_PACKET && s.len() > MAX_PACKET - 3,
            "{}",
            s.len()
        );
        assert!(s.ends_with('€'));

        let short = format(30, UNIX_EPOCH, "host", "btest", 1, "short");
        assert!(short.ends_with("short"));

        let huge_host = "h".repeat(2000);
        assert_eq!(
            format(30, UNIX_EPOCH, &huge_host, "t", 1, "m").len(),
            MAX_PACKET
        );
    }

    #[test]
    fn parse_targets() {
        let p = |s| parse_target(s);
        assert_eq!(p("collector"), Ok(("collector".into(), 514)));
        assert_eq!(p("collector:1514"), Ok(("collector".into(), 1514)));
        assert_eq!(p("10.0.0.1"), Ok(("10.0.0.1".into(), 514)));
        assert_eq!(p("10.0.0.1:5140"), Ok(("10.0.0.1".into(), 5140)));
        assert_eq!(p("[::1]:5514"), Ok(("::1".into(), 5514)));
        assert_eq!(p("[fe80::1]"), Ok(("fe80::1".into(), 514)));
        assert_eq!(p("::1"), Ok(("::1".into(), 514)));
        for bad in [
            "",
            ":514",
            "host:",
            "host:0",
            "host:70000",
            "host:x",
            "[::1",
            "[::1]x",
            "[nope]:1",
            "fe80::1:99999x",
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn new_rejects_bad_input_and_keeps_it_in_the_error() {
        let e = Syslog::new("host:notaport", "btest").unwrap_err();
        assert!(e.contains("\"host:notaport\""), "{e}");
        let e = Syslog::new("no-such-host.invalid", "btest").unwrap_err();
        assert!(e.contains("\"no-such-host.invalid\""), "{e}");
        for tag in ["", "has space", "a:b", "a[b", &"t".repeat(33)] {
            let e = Syslog::new("127.0.0.1", tag).unwrap_err();
            assert!(e.contains("tag"), "{tag}: {e}");
        }
        assert_eq!(
            Syslog::new("127.0.0.1", "btest").unwrap().dest(),
            "127.0.0.1:514".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn hostname_is_clean() {
        assert_eq!(clean_host("router.example.net\n"), "router");
        assert_eq!(clean_host("box\n"), "box");
        assert_eq!(clean_host(""), "localhost");
        assert_eq!(clean_host("  \n"), "localhost");
        assert_eq!(clean_host("10.1.2.3"), "10.1.2.3");
        let h = hostname();
        assert!(
            !h.is_empty() && !h.contains(' ') && !h.contains('.'),
            "{h:?}"
        );
    }

    #[test]
    fn local_listener_receives_well_formed_messages() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let log = Syslog::new(&rx.local_addr().unwrap().to_string(), "btest").unwrap();
        log.send(Severity::Info, "session ended");
        log.send(Severity::Err, "session failed");

        let mut buf = [0u8; 2048];
        let pid = std::process::id();
        for (pri, msg) in [("<30>", "session ended"), ("<27>", "session failed")] {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            let s = std::str::from_utf8(&buf[..n]).unwrap();
            let rest = s.strip_prefix(pri).unwrap_or_else(|| panic!("{s}"));
            assert!(timestamp_shape(rest), "{s}");
            let after_ts = &rest[16..];
            let expect = format!("{} btest[{pid}]: {msg}", hostname());
            assert_eq!(after_ts, expect);
        }
    }

    #[test]
    fn long_message_arrives_truncated() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let log = Syslog::new(&rx.local_addr().unwrap().to_string(), "btest").unwrap();
        log.send(Severity::Notice, &"y".repeat(4000));
        let mut buf = [0u8; 8192];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(n, MAX_PACKET);
        assert!(buf[..n].starts_with(b"<29>"));
    }

    #[test]
    fn absent_collector_never_slows_or_fails() {
        // Bind then drop to find a port with (almost certainly) no listener: the test only
        // needs sends to be dropped fast, not a guarantee that nobody listens.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = Syslog::new(&format!("127.0.0.1:{port}"), "btest").unwrap();
        let t0 = Instant::now();
        for i in 0..100 {
            log.send(Severity::Warning, &format!("message {i}"));
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(50), "100 sends took {took:?}");
    }
}
