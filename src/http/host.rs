//! The `Host` check of the `--http` server (issue 18: DNS rebinding).
//!
//! Owns: which `Host` values a listener answers ([`HostPolicy`]): the listen address itself as
//! an IP literal (any IP literal when bound to the unspecified address), the `localhost` names
//! only when bound to loopback, and the names the operator allows with `--http-host`; the
//! syntax of a Host value; how a refused value is shown back. Pure: no sockets, no logging.
//! Must not: look at the port (see [`HostPolicy::check`]), or resolve a name.
//!
//! Why: a web page from anywhere can make the browser of someone on the server's network (or
//! on the server itself) send requests to the API under the page's own name, by pointing that
//! name's DNS record at the server's address once the page has loaded (DNS rebinding). The
//! same-origin policy then lets the page read the answers: every tester's address, user and
//! quota. The one thing the attacker cannot choose is the name in `Host`, which stays the
//! page's own; so names are refused unless the operator listed them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Longest Host value judged at all (a DNS name is at most 253 characters, and a port and
/// brackets add a few); a longer one is malformed.
const MAX_HOST: usize = 270;

/// What the check says about a request's Host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served.
    Allowed,
    /// HTTP/1.1 without a Host field: 400 (RFC 9112 3.2 requires it).
    Missing,
    /// Not a host\[:port\] at all: 400.
    Malformed,
    /// A well-formed host this listener does not answer for: 421.
    Misdirected,
}

/// The hosts one listener answers for.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The listen address (IPv4-mapped IPv6 taken as IPv4).
    listen: IpAddr,
    /// `--http-host` values that are IP literals.
    ips: Vec<IpAddr>,
    /// `--http-host` names, lower-case, without a trailing dot.
    names: Vec<String>,
}

/// A Host value's host part.
#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    /// Lower-case, without a trailing dot.
    Name(String),
}

impl HostPolicy {
    /// The policy of a listener bound to `listen`, with the operator's `--http-host` values
    /// (names or IP literals, IPv6 with or without brackets; ones that are neither are
    /// ignored here: cli.rs refuses them with a message).
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Self {
        let mut ips = Vec::new();
        let mut names = Vec::new();
        for a in allowed {
            match parse_host(a) {
                Some(Host::Ip(ip)) => ips.push(ip),
                Some(Host::Name(n)) => names.push(n),
                None => {}
            }
        }
        HostPolicy {
            listen: listen.ip().to_canonical(),
            ips,
            names,
        }
    }

    /// Judges a request's Host value (`None`: no Host field) for an HTTP/1.`minor` request.
    ///
    /// The port is not compared: a port forward or a container mapping legitimately changes
    /// it, and it is not what DNS rebinding changes (the browser connects to the port in the
    /// page's URL, so it is already ours); the name is.
    pub fn check(&self, host: Option<&str>, minor: u8) -> Verdict {
        let Some(value) = host else {
            // HTTP/1.0 clients may omit Host; browsers (the only clients DNS rebinding can
            // use) always send one.
            return if minor >= 1 {
                Verdict::Missing
            } else {
                Verdict::Allowed
            };
        };
        let Some(host) = split_port(value).and_then(parse_host) else {
            return Verdict::Malformed;
        };
        let ok = match host {
            Host::Ip(ip) => {
                self.listen.is_unspecified() || ip == self.listen || self.ips.contains(&ip)
            }
            Host::Name(n) => {
                (self.listen.is_loopback() && is_localhost(&n)) || self.names.contains(&n)
            }
        };
        if ok {
            Verdict::Allowed
        } else {
            Verdict::Misdirected
        }
    }
}

/// `localhost` and the names under it (RFC 6761 6.3: they resolve to loopback and never to
/// an outside DNS server, so no attacker can point them elsewhere).
fn is_localhost(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// The host part of `host[:port]`: the port, if any, must be at most 5 digits (an empty one,
/// `host:`, is allowed by RFC 3986). `None` when malformed.
fn split_port(v: &str) -> Option<&str> {
    if v.is_empty() || v.len() > MAX_HOST {
        return None;
    }
    let (host, port) = if v.starts_with('[') {
        let end = v.find(']')?;
        let (h, rest) = v.split_at(end + 1);
        match rest {
            "" => (h, ""),
            _ => (h, rest.strip_prefix(':')?),
        }
    } else {
        match v.split_once(':') {
            Some((h, p)) => (h, p),
            None => (v, ""),
        }
    };
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(host)
}

/// A host without a port: `[IPv6]`, a bare IPv6 (only from `--http-host`, where no port
/// can follow), an IPv4 dotted quad, or a DNS name of letters, digits, `-`, `_` and `.`
/// (at most 253 characters, no empty label, one trailing dot allowed).
fn parse_host(h: &str) -> Option<Host> {
    if let Some(inner) = h.strip_prefix('[') {
        let ip: Ipv6Addr = inner.strip_suffix(']')?.parse().ok()?;
        return Some(Host::Ip(IpAddr::V6(ip).to_canonical()));
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(Host::Ip(ip.to_canonical()));
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| Host::Name(name.to_ascii_lowercase()))
}

/// Whether `v` is acceptable as a `--http-host` value (a name or an IP literal, no port).
pub fn valid_name(v: &str) -> bool {
    parse_host(v).is_some()
}

/// A Host value as it may be shown back in a response body or a log line: at most 64
/// characters, anything but letters, digits and `-._:[]` escaped (`\u{..}`), so the echo can
/// carry no markup, no line break and no control character, whatever reached us.
pub fn shown(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars().take(64) {
        if c.is_ascii_alphanumeric() || "-._:[]".contains(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    if v.chars().nth(64).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    fn policy(listen: &str, allowed: &[&str]) -> HostPolicy {
        let a: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(listen.parse().unwrap(), &a)
    }

    #[test]
    fn table() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], Option<&str>, Verdict)] = &[
            // Bound to loopback: the address with or without port, localhost names.
            ("127.0.0.1:8080", &[], Some("127.0.0.1:8080"), Allowed),
            ("127.0.0.1:8080", &[], Some("127.0.0.1"), Allowed),
            ("127.0.0.1:8080", &[], Some("127.0.0.1:"), Allowed),
            ("127.0.0.1:8080", &[], Some("127.0.0.1:9999"), Allowed),
            ("127.0.0.1:8080", &[], Some("localhost:8080"), Allowed),
            ("127.0.0.1:8080", &[], Some("LocalHost"), Allowed),
            ("127.0.0.1:8080", &[], Some("localhost."), Allowed),
            ("127.0.0.1:8080", &[], Some("dash.localhost:8080"), Allowed),
            ("127.0.0.1:8080", &[], Some("127.0.0.2:8080"), Misdirected),
            ("127.0.0.1:8080", &[], Some("[::1]:8080"), Misdirected),
            ("127.0.0.1:8080", &[], Some("evil.example"), Misdirected),
            ("127.0.0.1:8080", &[], Some("localhost.evil.example"), Misdirected),
            ("127.0.0.1:8080", &[], Some("evillocalhost"), Misdirected),
            ("[::1]:8080", &[], Some("[::1]:8080"), Allowed),
            ("[::1]:8080", &[], Some("[0:0::1]"), Allowed),
            ("[::1]:8080", &[], Some("localhost"), Allowed),
            ("[::1]:8080", &[], Some("127.0.0.1"), Misdirected),
            // DNS rebinding: the attacker's name with our port.
            ("127.0.0.1:8080", &[], Some("attacker.example:8080"), Misdirected),
            ("0.0.0.0:8080", &[], Some("attacker.example:8080"), Misdirected),
            // A specific address: only it, no localhost.
            ("192.0.2.7:80", &[], Some("192.0.2.7"), Allowed),
            ("192.0.2.7:80", &[], Some("[::ffff:192.0.2.7]:80"), Allowed),
            ("192.0.2.7:80", &[], Some("192.0.2.8"), Misdirected),
            ("192.0.2.7:80", &[], Some("localhost"), Misdirected),
            ("[2001:db8::7]:80", &[], Some("[2001:db8::7]:80"), Allowed),
            ("[2001:db8::7]:80", &[], Some("[2001:DB8:0::7]"), Allowed),
            ("[2001:db8::7]:80", &[], Some("[2001:db8::8]"), Misdirected),
            // Unspecified: any IP literal, names only when listed (localhost too).
            ("0.0.0.0:8080", &[], Some("203.0.113.9:8080"), Allowed),
            ("0.0.0.0:8080", &[], Some("127.0.0.1:8080"), Allowed),
            ("[::]:8080", &[], Some("[2001:db8::1]:8080"), Allowed),
            ("[::]:8080", &[], Some("10.0.0.1"), Allowed),
            ("0.0.0.0:8080", &[], Some("localhost:8080"), Misdirected),
            ("0.0.0.0:8080", &["localhost"], Some("localhost:8080"), Allowed),
            // --http-host: names (any case, trailing dot) and IP literals.
            ("0.0.0.0:8080", &["btest.example.net"], Some("BTEST.example.net."), Allowed),
            ("0.0.0.0:8080", &["btest.example.net"], Some("btest.example.net:8080"), Allowed),
            ("0.0.0.0:8080", &["btest.example.net"], Some("x.btest.example.net"), Misdirected),
            ("192.0.2.7:80", &["198.51.100.1"], Some("198.51.100.1:8081"), Allowed),
            ("192.0.2.7:80", &["2001:db8::1"], Some("[2001:db8::1]"), Allowed),
            ("192.0.2.7:80", &["[2001:db8::1]"], Some("[2001:db8::1]:80"), Allowed),
            ("127.0.0.1:80", &["evil.example"], Some("evil.example"), Allowed),
            // Malformed, whatever the policy.
            ("0.0.0.0:80", &["a"], Some(""), Malformed),
            ("0.0.0.0:80", &["a"], Some(":80"), Malformed),
            ("0.0.0.0:80", &["a"], Some("a:b"), Malformed),
            ("0.0.0.0:80", &["a"], Some("a:123456"), Malformed),
            ("0.0.0.0:80", &["a"], Some("a:80:80"), Malformed),
            ("0.0.0.0:80", &["a"], Some("::1"), Malformed),
            ("0.0.0.0:80", &["a"], Some("[::1"), Malformed),
            ("0.0.0.0:80", &["a"], Some("[::1]x"), Malformed),
            ("0.0.0.0:80", &["a"], Some("[::1]80"), Malformed),
            ("0.0.0.0:80", &["a"], Some("[fe80::1%25eth0]"), Malformed),
            ("0.0.0.0:80", &["a"], Some("[127.0.0.1]"), Malformed),
            ("0.0.0.0:80", &["a"], Some("a..b"), Malformed),
            ("0.0.0.0:80", &["a"], Some("a b"), Malformed),
            ("0.0.0.0:80", &["a"], Some("user@a"), Malformed),
            ("0.0.0.0:80", &["a"], Some("a/b"), Malformed),
            ("0.0.0.0:80", &["a"], Some("<script>"), Malformed),
            ("0.0.0.0:80", &["a"], Some("\u{e9}.example"), Malformed),
            ("0.0.0.0:80", &["a"], Some("\u{fffd}"), Malformed),
        ];
        for (listen, allowed, host, want) in cases {
            let got = policy(listen, allowed).check(*host, 1);
            assert_eq!(
                got, *want,
                "listen {listen} allowed {allowed:?} Host {host:?}"
            );
        }
        assert_eq!(policy("127.0.0.1:80", &[]).check(None, 0), Allowed);
        assert_eq!(policy("127.0.0.1:80", &[]).check(None, 1), Missing);
        assert_eq!(policy("127.0.0.1:80", &[]).check(None, 9), Missing);
        // A HTTP/1.0 request that does send a Host is judged by it.
        assert_eq!(
            policy("127.0.0.1:80", &[]).check(Some("evil.example"), 0),
            Misdirected
        );
    }

    #[test]
    fn long_names() {
        let label = "a".repeat(63);
        let name = [&*label, &*label, &*label, &label[..61]].join(".");
        assert_eq!(name.len(), 253);
        assert!(valid_name(&name));
        assert!(valid_name(&format!("{name}.")));
        assert!(!valid_name(&format!("{name}a")));
        assert!(!valid_name(&"b".repeat(64)));
        let p = policy("0.0.0.0:80", &[&name]);
        assert_eq!(p.check(Some(&format!("{name}:65535")), 1), Allowed);
        assert_eq!(p.check(Some(&"x".repeat(MAX_HOST + 1)), 1), Malformed);
    }

    #[test]
    fn cli_values() {
        for ok in [
            "btest.example.net",
            "LOCALHOST",
            "a_b",
            "192.0.2.1",
            "::1",
            "[::1]",
            "x.",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a:80",
            "[::1]:80",
            "a b",
            "*.example",
            "a..b",
            ".",
            "http://a",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn shown_escapes_everything_else() {
        assert_eq!(shown("evil.example:80"), "evil.example:80");
        assert_eq!(shown("[::1]"), "[::1]");
        assert_eq!(
            shown("<a>\r\n\"é"),
            "\\u{3c}a\\u{3e}\\u{d}\\u{a}\\u{22}\\u{e9}"
        );
        let long = "a".repeat(100);
        assert_eq!(shown(&long), format!("{}...", &long[..64]));
    }
}
