//! `--allow` and `--deny`: which source addresses may talk to the server at all, decided at
//! the accept, before the hello is written.
//!
//! Deny wins over allow; with an allow list, only what it holds is admitted. IPv4-mapped
//! addresses are matched as IPv4 (cidr.rs). Must not: log (the accept thread counts denials
//! and the guard sums them up once per window).

use std::net::IpAddr;

use crate::cidr::Cidr;

#[derive(Debug, Clone, Default)]
pub struct Acl {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl Acl {
    pub fn new(allow: &[Cidr], deny: &[Cidr]) -> Acl {
        Acl {
            allow: allow.to_vec(),
            deny: deny.to_vec(),
        }
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::parse_list;

    #[test]
    fn deny_wins_and_allow_restricts() {
        // (allow, deny, address, admitted)
        let table = [
            ("", "", "203.0.113.9", true),
            ("", "203.0.113.0/24", "203.0.113.9", false),
            ("", "203.0.113.0/24", "::ffff:203.0.113.9", false),
            ("", "203.0.113.0/24", "198.51.100.1", true),
            ("10.0.0.0/8", "", "10.1.2.3", true),
            ("10.0.0.0/8", "", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "", "11.0.0.1", false),
            ("10.0.0.0/8", "", "2001:db8::1", false),
            ("10.0.0.0/8", "10.9.0.0/16", "10.9.1.1", false),
            ("10.0.0.0/8", "10.9.0.0/16", "10.8.1.1", true),
            ("2001:db8::/32", "", "2001:db8::1", true),
            (
                "2001:db8::/32",
                "2001:db8:bad::/48",
                "2001:db8:bad::1",
                false,
            ),
            ("2001:db8::/32", "", "192.0.2.1", false),
            ("127.0.0.1,::1", "", "127.0.0.2", false),
            ("127.0.0.1,::1", "", "::1", true),
        ];
        for (allow, deny, addr, want) in table {
            let acl = Acl::new(&parse_list(allow).unwrap(), &parse_list(deny).unwrap());
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(
                acl.admits(ip),
                want,
                "allow {allow:?} deny {deny:?}: {addr}"
            );
        }
    }
}
