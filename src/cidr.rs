//! Address prefixes (`192.0.2.0/24`, `2001:db8::/32`): parsing, matching, and the masking
//! that names a source's network (`--allow`, `--deny`, per-prefix limits).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`, what a dual-stack `[::]` listener reports
//! for an IPv4 client) are taken as the IPv4 address they carry, in prefixes and in addresses,
//! so `--deny 192.0.2.0/24` also holds on a dual-stack socket. Pure: no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address with the host bits cleared, and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl Cidr {
    /// The network of `len` bits that holds `ip` (`len` is capped at the family's width).
    pub fn of(ip: IpAddr, len: u8) -> Cidr {
        let ip = canonical(ip);
        let len = len.min(if ip.is_ipv4() { 32 } else { 128 });
        Cidr {
            net: mask(ip, len),
            len,
        }
    }

    /// Does the network hold `ip`? An IPv4 network holds IPv4-mapped IPv6 addresses too.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.len) == self.net
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/LEN` or a bare address (a single host). Host bits set below the prefix are an
    /// error: `192.0.2.1/24` is more likely a typo than a wish for `192.0.2.0/24`.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{s:?}: not an IPv4 or IPv6 address or prefix (e.g. 192.0.2.0/24, 2001:db8::/32)"))?;
        let width: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => width,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= width => n,
                _ => return Err(format!("{s:?}: prefix length {l:?} is not 0..={width}")),
            },
        };
        // A mapped prefix (`::ffff:192.0.2.0/120`) is the IPv4 one it covers.
        let (ip, len) = match ip {
            IpAddr::V6(v6) if len >= 96 && v6.to_ipv4_mapped().is_some() => {
                (canonical(ip), len - 96)
            }
            _ => (ip, len),
        };
        let c = Cidr {
            net: mask(ip, len),
            len,
        };
        if c.net != ip {
            return Err(format!(
                "{s:?}: host bits set below the /{len} prefix (did you mean {c}?)"
            ));
        }
        Ok(c)
    }
}

/// Parses a comma-separated list (`10.0.0.0/8,2001:db8::/32`); errors name the bad item.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(Cidr::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches() {
        // (prefix, address, contained)
        let table = [
            ("192.0.2.0/24", "192.0.2.77", true),
            ("192.0.2.0/24", "192.0.3.1", false),
            ("192.0.2.0/24", "::ffff:192.0.2.77", true),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "192.0.2.1", false),
            ("[2001:db8::1]", "2001:db8::1", true),
            ("::ffff:192.0.2.0/120", "192.0.2.200", true),
            ("::ffff:192.0.2.0/120", "::ffff:192.0.2.200", true),
            ("::ffff:192.0.2.0/120", "192.0.3.1", false),
            ("::1", "::1", true),
            ("127.0.0.0/8", "127.0.0.2", true),
        ];
        for (p, a, want) in table {
            let c: Cidr = p.parse().unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(c.contains(ip(a)), want, "{p} contains {a}");
        }
        assert_eq!(
            "::ffff:192.0.2.0/120".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn refuses_what_is_not_a_prefix() {
        let table = [
            (
                "192.0.2.1/24",
                "host bits set below the /24 prefix (did you mean 192.0.2.0/24?)",
            ),
            ("192.0.2.0/33", "prefix length \"33\" is not 0..=32"),
            ("2001:db8::/129", "is not 0..=128"),
            ("2001:db8::/x", "is not 0..=128"),
            ("example.com", "not an IPv4 or IPv6 address"),
            ("", "not an IPv4 or IPv6 address"),
        ];
        for (p, want) in table {
            let e = p.parse::<Cidr>().unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
        assert!(parse_list("10.0.0.0/8, 2001:db8::/32,").unwrap().len() == 2);
        assert!(parse_list("10.0.0.0/8,10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.1/8"));
    }

    #[test]
    fn the_network_of_an_address() {
        let table = [
            ("192.0.2.77", 24, "192.0.2.0/24"),
            ("::ffff:192.0.2.77", 24, "192.0.2.0/24"),
            ("192.0.2.77", 64, "192.0.2.77/32"),
            ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
            ("2001:db8:1:2:3:4:5:6", 0, "::/0"),
        ];
        for (a, len, want) in table {
            assert_eq!(Cidr::of(ip(a), len).to_string(), want, "{a}/{len}");
        }
    }
}
