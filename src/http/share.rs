//! The `--http` connection cap and each source's share of it (issue 18: 16 silent connections
//! from one address denied the API to everyone).
//!
//! Owns: the count of open connections, overall and per source ([`Source`] from
//! server/limits.rs: an IPv4 address or an IPv6 /64), and the decision to take one more.
//! Pure: no sockets, no clock, no lock (mod.rs holds it under one). Must not: remember a
//! source with no open connection, so the table never holds more than `max_connections`
//! entries, whatever the number of addresses that ever connected.

use crate::server::limits::Source;

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `max_connections` are open.
    All,
    /// This source holds its `max_per_source`.
    Source,
}

/// Open connections, overall and per source.
#[derive(Debug)]
pub struct Shares {
    max_connections: usize,
    max_per_source: usize,
    /// Sources with at least one open connection; a linear scan: at most `max_connections`
    /// (16 by default) entries.
    open: Vec<(Source, usize)>,
    total: usize,
}

impl Shares {
    /// An empty table for these caps. Room for every entry it can ever hold is reserved now.
    pub fn new(max_connections: usize, max_per_source: usize) -> Self {
        Shares {
            max_connections,
            max_per_source,
            open: Vec::with_capacity(max_connections.min(1024)),
            total: 0,
        }
    }

    /// One more connection from `src`, or why not.
    pub fn take(&mut self, src: Source) -> Result<(), Full> {
        if self.total >= self.max_connections {
            return Err(Full::All);
        }
        match self.open.iter_mut().find(|(s, _)| *s == src) {
            Some((_, n)) if *n >= self.max_per_source => return Err(Full::Source),
            Some((_, n)) => *n += 1,
            None if self.max_per_source == 0 => return Err(Full::Source),
            None => self.open.push((src, 1)),
        }
        self.total += 1;
        Ok(())
    }

    /// A connection from `src` closed. Giving back what was never taken changes nothing.
    pub fn give(&mut self, src: Source) {
        let Some(i) = self.open.iter().position(|(s, _)| *s == src) else {
            return;
        };
        self.open[i].1 -= 1;
        if self.open[i].1 == 0 {
            self.open.swap_remove(i);
        }
        self.total -= 1;
    }

    /// Open connections.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Sources with an open connection.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn src(s: &str) -> Source {
        Source::of(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn one_source_gets_its_share_and_others_the_rest() {
        let mut t = Shares::new(16, 4);
        let a = src("192.0.2.1");
        for _ in 0..4 {
            assert_eq!(t.take(a), Ok(()));
        }
        // The 5th to the 16th connection of the same source: refused, nothing counted.
        for _ in 4..16 {
            assert_eq!(t.take(a), Err(Full::Source));
        }
        assert_eq!((t.total(), t.sources()), (4, 1));
        // Another source is served.
        let b = src("192.0.2.2");
        assert_eq!(t.take(b), Ok(()));
        // Three more full sources fill the cap; then everyone is refused, as before.
        for last in 3..=5 {
            let s = src(&format!("192.0.2.{last}"));
            for _ in 0..4 {
                let _ = t.take(s);
            }
        }
        assert_eq!(t.total(), 16);
        assert_eq!(t.take(src("192.0.2.99")), Err(Full::All));
        // One closes: room for a new source again.
        t.give(a);
        assert_eq!(t.take(src("192.0.2.99")), Ok(()));
    }

    #[test]
    fn ipv6_shares_by_64_and_mapped_ipv4_is_ipv4() {
        let mut t = Shares::new(16, 2);
        assert_eq!(t.take(src("2001:db8:1:2::1")), Ok(()));
        assert_eq!(t.take(src("2001:db8:1:2::ffff")), Ok(()));
        assert_eq!(t.take(src("2001:db8:1:2:aaaa::1")), Err(Full::Source));
        assert_eq!(t.take(src("2001:db8:1:3::1")), Ok(()));
        assert_eq!(t.take(src("::ffff:192.0.2.1")), Ok(()));
        assert_eq!(t.take(src("192.0.2.1")), Ok(()));
        assert_eq!(t.take(src("192.0.2.1")), Err(Full::Source));
    }

    #[test]
    fn entries_go_with_their_last_connection() {
        let mut t = Shares::new(16, 4);
        // Many addresses over time, at most 16 at once: the table never grows past 16.
        for i in 0..10_000u32 {
            let s = Source::V4(i.to_be_bytes());
            assert_eq!(t.take(s), Ok(()));
            if i >= 15 {
                let old = Source::V4((i - 15).to_be_bytes());
                t.give(old);
            }
            assert!(t.sources() <= 16 && t.open.capacity() <= 16);
        }
        for i in 10_000 - 15..10_000u32 {
            t.give(Source::V4(i.to_be_bytes()));
        }
        assert_eq!((t.total(), t.sources()), (0, 0));
        // Giving back what was never taken is harmless.
        t.give(src("192.0.2.1"));
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn zero_caps_refuse_everything() {
        assert_eq!(Shares::new(0, 4).take(src("192.0.2.1")), Err(Full::All));
        assert_eq!(Shares::new(16, 0).take(src("192.0.2.1")), Err(Full::Source));
        // A share at or above the cap is no share: the cap alone decides.
        let mut t = Shares::new(2, 16);
        assert_eq!(t.take(src("192.0.2.1")), Ok(()));
        assert_eq!(t.take(src("192.0.2.1")), Ok(()));
        assert_eq!(t.take(src("192.0.2.1")), Err(Full::All));
    }
}
