//! Byte budgets taken on the data path: the exact form of the server's byte quotas (issue 18).
//!
//! A [`Pool`] is what is left of one quota (a key's daily total, say), shared by every session
//! that counts against it; a session's [`Budget`] lists the pools its sent and its received
//! bytes are taken from. TX threads take a unit's bytes *before* sending it and give back what
//! a short send left unsent, so what a session sends never passes a quota; RX threads take
//! after each read (a byte that arrived cannot be refused) and size their reads to what is
//! left, so a quota is passed by at most one read per RX thread, and by less as it runs out
//! (docs/reliability.md "Exact byte quotas" has the bound and the measurements).
//!
//! Before this, the status thread charged usage once a second and a 10 MB quota let one
//! unlimited TCP session move 0.36-1.18 GB.
//!
//! Must not: lock, allocate or log (one relaxed atomic per pool per send or read call), know
//! keys, windows or the store (server/accounting.rs creates, refills and reads the pools).

use crate::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// A quota with less than this left starts no session: a refused send leaves up to one TCP
/// batch (32 KiB) or one UDP datagram (at most 64 KiB with headers) unused, and a test needs
/// more than that to measure anything. So what stopped a session also refuses the next one,
/// after a restart too.
pub const MIN_LEFT: u64 = 64 * 1024;

/// What is left of one quota, in bytes; below zero once it is used up (a refused take).
#[derive(Debug)]
pub struct Pool {
    left: AtomicI64,
}

impl Pool {
    /// A pool with `left` bytes.
    pub fn new(left: u64) -> Pool {
        Pool {
            left: AtomicI64::new(clamp(left)),
        }
    }

    /// Bytes left (0 when used up).
    pub fn left(&self) -> u64 {
        self.left.load(Relaxed).max(0) as u64
    }

    /// Sets what is left (a new quota period began, or the store says otherwise).
    pub fn set(&self, left: u64) {
        self.left.store(clamp(left), Relaxed);
    }

    /// Takes `n` bytes; false when fewer than `n` were left (they are taken all the same, so
    /// every later take fails too).
    #[inline]
    fn take(&self, n: i64) -> bool {
        self.left.fetch_sub(n, Relaxed) >= n
    }

    #[inline]
    fn give_back(&self, n: i64) {
        self.left.fetch_add(n, Relaxed);
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX / 2)
}

/// The pools one session's bytes are taken from: `tx` for what it sends, `rx` for what it
/// receives (a total quota is in both). An empty budget takes nothing and never runs out.
#[derive(Debug, Default, Clone)]
pub struct Budget {
    /// Pools charged with sent bytes.
    pub tx: Vec<Arc<Pool>>,
    /// Pools charged with received bytes.
    pub rx: Vec<Arc<Pool>>,
}

impl Budget {
    /// Does this budget limit anything?
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty() && self.rx.is_empty()
    }

    /// Takes `n` bytes about to be sent; false (and nothing taken) when a quota would be
    /// passed: the unit must not go out.
    #[inline]
    pub fn take_tx(&self, n: u64) -> bool {
        let n = clamp(n);
        for (i, p) in self.tx.iter().enumerate() {
            if !p.take(n) {
                // Undo this and the earlier takes, then make the pool read as used up for
                // every other sender of the same quota.
                for q in &self.tx[..=i] {
                    q.give_back(n);
                }
                p.left.fetch_min(0, Relaxed);
                return false;
            }
        }
        true
    }

    /// Bytes the send quotas have left (`u64::MAX` without any): a UDP sender sends only the
    /// datagrams that fit.
    #[inline]
    pub fn tx_room(&self) -> u64 {
        self.tx.iter().map(|p| p.left()).min().unwrap_or(u64::MAX)
    }

    /// `n` of the bytes taken by [`Budget::take_tx`] were not sent after all.
    #[inline]
    pub fn unsent(&self, n: u64) {
        if n > 0 {
            self.tx.iter().for_each(|p| p.give_back(clamp(n)));
        }
    }

    /// Takes `n` received bytes; false when a quota is now used up, to the last byte (stop
    /// reading).
    #[inline]
    pub fn take_rx(&self, n: u64) -> bool {
        let n = clamp(n);
        // Every pool takes them (no short circuit): they were received.
        let mut ok = true;
        for p in &self.rx {
            ok &= p.left.fetch_sub(n, Relaxed) > n;
        }
        ok
    }

    /// How much the next read may take: `max`, or less as a receive quota runs out (at least
    /// 1, so a read still notices a close). `None` when a receive quota is used up.
    #[inline]
    pub fn rx_room(&self, max: usize) -> Option<usize> {
        let mut room = max;
        for p in &self.rx {
            let left = p.left.load(Relaxed);
            if left <= 0 {
                return None;
            }
            room = room.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        Some(room.max(1))
    }

    /// Is a quota of this budget used up?
    pub fn exhausted(&self) -> bool {
        self.tx.iter().chain(&self.rx).any(|p| p.left() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(tx: &[&Arc<Pool>], rx: &[&Arc<Pool>]) -> Budget {
        Budget {
            tx: tx.iter().map(|p| Arc::clone(p)).collect(),
            rx: rx.iter().map(|p| Arc::clone(p)).collect(),
        }
    }

    #[test]
    fn sending_never_passes_a_quota() {
        let down = Arc::new(Pool::new(10_000));
        let total = Arc::new(Pool::new(25_000));
        let b = budget(&[&down, &total], &[&total]);
        let mut sent = 0;
        while b.take_tx(1_500) {
            sent += 1_500;
        }
        // 6 units fit in 10,000; the 7th is refused and nothing of it is taken.
        assert_eq!(sent, 9_000);
        assert_eq!(down.left(), 0, "a refused take marks the pool used up");
        assert_eq!(total.left(), 16_000);
        assert_eq!(b.tx_room(), 0);
        assert!(b.exhausted());
        assert!(!b.take_tx(1), "used up stays used up");
    }

    #[test]
    fn a_short_send_gives_back_what_did_not_go() {
        let p = Arc::new(Pool::new(100_000));
        let b = budget(&[&p], &[]);
        assert!(b.take_tx(32_768));
        b.unsent(32_768 - 1_000);
        assert_eq!(p.left(), 99_000);
        b.unsent(0);
        assert_eq!(p.left(), 99_000);
    }

    #[test]
    fn receiving_shrinks_reads_and_stops_at_the_quota() {
        let up = Arc::new(Pool::new(100_000));
        let b = budget(&[], &[&up]);
        assert_eq!(b.rx_room(1 << 20), Some(100_000));
        assert!(b.take_rx(99_000));
        assert_eq!(b.rx_room(65_536), Some(1_000));
        // A read of what was left uses it up exactly: the reader stops.
        assert!(!b.take_rx(1_000));
        assert_eq!(b.rx_room(65_536), None);
        assert!(b.exhausted());
    }

    #[test]
    fn sessions_share_a_pool_across_threads() {
        let p = Arc::new(Pool::new(1_000_000));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = budget(&[&p], &[]);
                std::thread::spawn(move || {
                    let mut sent = 0u64;
                    while b.take_tx(1_000) {
                        sent += 1_000;
                    }
                    sent
                })
            })
            .collect();
        let sum: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(
            sum, 1_000_000,
            "eight senders together send the quota exactly"
        );
    }

    #[test]
    fn an_empty_budget_limits_nothing() {
        let b = Budget::default();
        assert!(b.is_empty());
        assert!(b.take_tx(u64::MAX));
        assert!(b.take_rx(u64::MAX));
        assert_eq!(b.rx_room(7), Some(7));
        assert_eq!(b.tx_room(), u64::MAX);
        assert!(!b.exhausted());
    }
}
