//! The server's UDP port pool: which server port a UDP session gets, under one lock.
//!
//! Owns the rule that a session of `n` UDP connections holds `n` consecutive ports from
//! `--udp-port-from`, although it binds only the first: its client binds `port + 256 ..
//! port + 256 + n` (docs/protocol.md 8), so the next session must start past `port + n - 1` or
//! two multi-connection sessions from one client host would ask it to bind the same ports.
//! The search starts where the last one ended and wraps, so a freed port is not reused at once
//! (a late datagram of the last session would land in the next).
//!
//! Must not: know about sessions, sockets or logging. Binding is the caller's closure, so this
//! is tested without sockets.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::wire::udp;

/// Candidates tried per lease: bounds the time the lock is held when most ports will not bind.
const MAX_TRIES: u32 = 4096;

#[derive(Debug)]
struct Inner {
    /// Where the next search starts.
    cursor: u16,
    /// Leased ranges: first port and count.
    leased: Vec<(u16, u16)>,
}

/// Shared by the accept loop and every session; cheap to clone.
#[derive(Debug, Clone)]
pub struct PortPool {
    lo: u16,
    inner: Arc<Mutex<Inner>>,
}

/// A held range; freed on drop.
#[derive(Debug)]
pub struct Lease {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut g = self.inner.lock();
        if let Some(i) = g.leased.iter().position(|&(p, _)| p == self.port) {
            g.leased.swap_remove(i);
        }
    }
}

impl PortPool {
    pub fn new(lo: u16) -> PortPool {
        PortPool {
            lo,
            inner: Arc::new(Mutex::new(Inner {
                cursor: lo,
                leased: Vec::new(),
            })),
        }
    }

    /// Server UDP ports bound by sessions now.
    pub fn in_use(&self) -> usize {
        self.inner.lock().leased.len()
    }

    /// Leases `n` consecutive ports (at least 1) and binds the first with `bind`; a port that
    /// does not bind (another program has it) is skipped. `Err` says why none could be had.
    pub fn lease<T, E: std::fmt::Display>(
        &self,
        n: usize,
        mut bind: impl FnMut(u16) -> Result<T, E>,
    ) -> Result<(Lease, T), String> {
        let n = u16::try_from(n.max(1)).unwrap_or(u16::MAX);
        // The last start whose client ports (`wire::udp::client_port`) all fit below 65536.
        let Some(hi) = udp::last_server_port(n).filter(|&h| h >= self.lo) else {
            return Err(format!(
                "--udp-port-from {} leaves no room for {n} client port(s) at +256",
                self.lo
            ));
        };
        let span = u32::from(hi - self.lo) + 1;
        let mut g = self.inner.lock();
        let first = u32::from(g.cursor.clamp(self.lo, hi) - self.lo);
        let mut k = 0;
        let mut tries = 0;
        while k < span && tries < MAX_TRIES {
            let p = self.lo + ((first + k) % span) as u16;
            if let Some(end) = overlap_end(&g.leased, p, n) {
                // Jump past the range in the way instead of trying every port inside it.
                k += u32::from(end - p).max(1);
                continue;
            }
            tries += 1;
            match bind(p) {
                Ok(t) => {
                    g.leased.push((p, n));
                    let next = u32::from(p) + u32::from(n);
                    g.cursor = if next > u32::from(hi) {
                        self.lo
                    } else {
                        next as u16
                    };
                    return Ok((
                        Lease {
                            port: p,
                            inner: self.inner.clone(),
                        },
                        t,
                    ));
                }
                Err(e) => log::debug!("UDP port {p} unavailable: {e}"),
            }
            k += 1;
        }
        Err(format!(
            "no free UDP port from {} (all in use or unbindable)",
            self.lo
        ))
    }
}

/// When `p .. p + n` overlaps a leased range: the first port past that range.
fn overlap_end(leased: &[(u16, u16)], p: u16, n: u16) -> Option<u16> {
    let (a0, a1) = (u32::from(p), u32::from(p) + u32::from(n));
    leased.iter().find_map(|&(q, m)| {
        let (b0, b1) = (u32::from(q), u32::from(q) + u32::from(m));
        (a0 < b1 && b0 < a1).then(|| b1.min(65535) as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: u16) -> Result<(), String> {
        Ok(())
    }

    fn ports(pool: &PortPool, sizes: &[usize]) -> (Vec<Lease>, Vec<u16>) {
        let leases: Vec<Lease> = sizes
            .iter()
            .map(|&n| pool.lease(n, ok).expect("a port").0)
            .collect();
        let got = leases.iter().map(|l| l.port).collect();
        (leases, got)
    }

    #[test]
    fn sessions_hold_their_client_range() {
        // (udp-port-from, connection counts asked in turn, server ports expected)
        let table: &[(u16, &[usize], &[u16])] = &[
            (2001, &[1, 1, 1], &[2001, 2002, 2003]),
            // 4 connections hold 2001..=2004, so the client's 2257..=2260 stay its own
            (2001, &[4, 1, 4, 0], &[2001, 2005, 2006, 2010]),
            // 0 is taken as 1
            (2001, &[0, 0], &[2001, 2002]),
        ];
        for &(lo, sizes, want) in table {
            let pool = PortPool::new(lo);
            let (leases, got) = ports(&pool, sizes);
            assert_eq!(got, want, "from {lo}, sizes {sizes:?}");
            assert_eq!(pool.in_use(), sizes.len());
            drop(leases);
            assert_eq!(pool.in_use(), 0);
        }
    }

    #[test]
    fn the_last_start_leaves_room_for_the_client_ports() {
        // hi = 65535 - 256 - (n - 1): the client binds hi + 256 + n - 1 = 65535 at most.
        let table: &[(u16, usize, Result<u16, &str>)] = &[
            (65279, 1, Ok(65279)),
            (65280, 1, Err("leaves no room for 1 client port(s)")),
            (65276, 4, Ok(65276)),
            (65277, 4, Err("leaves no room for 4 client port(s)")),
            (2001, 65535, Err("leaves no room for 65535 client port(s)")),
        ];
        for &(lo, n, ref want) in table {
            let got = PortPool::new(lo).lease(n, ok).map(|(l, ())| l.port);
            match (want, &got) {
                (Ok(p), Ok(g)) => assert_eq!(g, p, "from {lo}, n {n}"),
                (Err(w), Err(e)) => assert!(e.contains(w), "from {lo}, n {n}: {e}"),
                _ => panic!("from {lo}, n {n}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_search_wraps_and_skips_held_ranges() {
        // Three starts fit in 65277..=65279 for n = 1.
        let pool = PortPool::new(65277);
        let (mut leases, got) = ports(&pool, &[1, 1, 1]);
        assert_eq!(got, [65277, 65278, 65279]);
        assert!(pool.lease(1, ok).unwrap_err().contains("no free UDP port"));
        // Freeing the middle one: the cursor wrapped to 65277, which is held, so 65278.
        leases.remove(1);
        assert_eq!(pool.lease(1, ok).unwrap().0.port, 65278);
        // Six starts for n = 1 from 65274; hold five, free the first two.
        let pool = PortPool::new(65274);
        let (mut leases, got) = ports(&pool, &[1, 1, 1, 1, 1]);
        assert_eq!(got, [65274, 65275, 65276, 65277, 65278]);
        leases.drain(..2);
        // Three consecutive ports are nowhere: 65274..=65275 is two, then 65276 is held.
        assert!(pool.lease(3, ok).unwrap_err().contains("no free UDP port"));
        // Two are, after wrapping from the cursor (65279, past the last start for n = 2).
        assert_eq!(pool.lease(2, ok).unwrap().0.port, 65274);
    }

    #[test]
    fn unbindable_ports_are_skipped_and_bounded() {
        let pool = PortPool::new(2001);
        let (l, ()) = pool
            .lease(1, |p| if p < 2005 { Err("in use") } else { Ok(()) })
            .unwrap();
        assert_eq!(l.port, 2005);
        let mut calls = 0;
        let e = pool
            .lease(1, |_| -> Result<(), &str> {
                calls += 1;
                Err("in use")
            })
            .unwrap_err();
        assert!(e.contains("no free UDP port from 2001"), "{e}");
        assert_eq!(calls, MAX_TRIES);
        assert_eq!(pool.in_use(), 1);
    }
}
