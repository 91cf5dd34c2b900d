//! Per-thread traffic counters and the UDP loss tracker.
//!
//! Each TX or RX thread owns one cache-line-aligned [`Counters`] slot and only ever adds to it
//! with `Relaxed` atomics: the counters are independent statistics, no other memory is published
//! through them, so no ordering is needed. The status thread takes interval deltas with
//! `swap(0)` once per interval, so no increment is ever lost or counted twice.

use crate::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// One thread's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Bytes sent (UDP: wire bytes incl. IP+UDP headers; TCP: payload).
    pub tx_bytes: AtomicU64,
    /// Bytes received, counted the same way.
    pub rx_bytes: AtomicU64,
    /// Datagrams (UDP) or chunks (TCP) sent.
    pub tx_packets: AtomicU64,
    /// Datagrams received (UDP) or read calls that returned data (TCP).
    pub rx_packets: AtomicU64,
    /// UDP datagrams missing from the sequence (net of late arrivals).
    pub lost: AtomicU64,
    /// UDP datagrams that arrived out of order.
    pub reordered: AtomicU64,
    /// UDP datagrams seen twice.
    pub duplicates: AtomicU64,
    /// UDP datagrams that were not plausibly the session's: from another sender, of another
    /// size, or with a sequence far from the session's (issue 18). Not traffic, loss or quota.
    pub foreign: AtomicU64,
    /// The UDP I/O method this thread settled on ([`crate::engine::udpio::Method`] as u8;
    /// 0 = none yet). Written at start and on a fallback, read at the end of the session.
    pub io_method: std::sync::atomic::AtomicU8,
    /// UDP: datagrams that came in receive buffers (socket buffers, `skb`s: one datagram each
    /// without GRO, up to 64 with it), and the sum over those datagrams of their buffer's
    /// datagram count. Their ratio is the size of the buffer an average datagram arrived in
    /// (size-biased: the kernel drops whole buffers when the socket is full, and bursts of full
    /// GSO batches are what fills it), which turns the kernel's buffer drops into datagrams
    /// (udpdrops.rs). Added once per receive batch; read only by the drops probe.
    pub rx_skbs: AtomicU64,
    /// See [`Counters::rx_skbs`].
    pub rx_skb_datagrams: AtomicU64,
}

/// Interval deltas taken from a set of [`Counters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Units sent.
    pub tx_packets: u64,
    /// Units received.
    pub rx_packets: u64,
    /// Lost datagrams.
    pub lost: u64,
    /// Reordered datagrams.
    pub reordered: u64,
    /// Duplicated datagrams.
    pub duplicates: u64,
    /// Foreign datagrams (see [`Counters::foreign`]).
    pub foreign: u64,
}

impl Counters {
    /// Adds one sent unit.
    #[inline]
    pub fn sent(&self, bytes: u64) {
        self.tx_bytes.fetch_add(bytes, Relaxed);
        self.tx_packets.fetch_add(1, Relaxed);
    }

    /// Adds `n` sent units of `bytes` each (one batch).
    #[inline]
    pub fn sent_n(&self, n: u64, bytes: u64) {
        self.tx_bytes.fetch_add(n * bytes, Relaxed);
        self.tx_packets.fetch_add(n, Relaxed);
    }

    /// Adds `n` received units totalling `bytes`.
    #[inline]
    pub fn received_n(&self, n: u64, bytes: u64) {
        self.rx_bytes.fetch_add(bytes, Relaxed);
        self.rx_packets.fetch_add(n, Relaxed);
    }

    /// Adds one received unit.
    #[inline]
    pub fn received(&self, bytes: u64) {
        self.rx_bytes.fetch_add(bytes, Relaxed);
        self.rx_packets.fetch_add(1, Relaxed);
    }

    /// Takes and resets this slot's counts.
    pub fn take(&self) -> Snapshot {
        Snapshot {
            tx_bytes: self.tx_bytes.swap(0, Relaxed),
            rx_bytes: self.rx_bytes.swap(0, Relaxed),
            tx_packets: self.tx_packets.swap(0, Relaxed),
            rx_packets: self.rx_packets.swap(0, Relaxed),
            lost: self.lost.swap(0, Relaxed),
            reordered: self.reordered.swap(0, Relaxed),
            duplicates: self.duplicates.swap(0, Relaxed),
            foreign: self.foreign.swap(0, Relaxed),
        }
    }
}

impl std::ops::AddAssign for Snapshot {
    fn add_assign(&mut self, o: Snapshot) {
        // Wrapping: `lost` of one interval may be "negative" (late arrivals of datagrams
        // counted lost in an earlier interval); the running total is always >= 0.
        self.tx_bytes = self.tx_bytes.wrapping_add(o.tx_bytes);
        self.rx_bytes = self.rx_bytes.wrapping_add(o.rx_bytes);
        self.tx_packets = self.tx_packets.wrapping_add(o.tx_packets);
        self.rx_packets = self.rx_packets.wrapping_add(o.rx_packets);
        self.lost = self.lost.wrapping_add(o.lost);
        self.reordered = self.reordered.wrapping_add(o.reordered);
        self.duplicates = self.duplicates.wrapping_add(o.duplicates);
        self.foreign = self.foreign.wrapping_add(o.foreign);
    }
}

/// What one datagram's sequence number meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The next expected one, or the first.
    InOrder,
    /// Ahead of the expected one: this many datagrams went missing in between.
    Gap(u32),
    /// Behind the highest seen and not seen before: it had been counted lost.
    Late,
    /// Seen before.
    Duplicate,
    /// Not plausibly the session's: a size other than the sender's, or a sequence number
    /// further than [`FAR`] from the window (random datagrams into a data port counted as
    /// 4.8e12 lost before, issue 18).
    Foreign,
}

/// UDP sequence tracking with a 64-datagram reorder window, wrap-safe at 2^32, that tells
/// the sender's datagrams from foreign ones.
///
/// The first datagram sets the window and the sender's datagram size (every btest sender
/// sends one size; the sequence may start anywhere, reference 9.1). A datagram of another
/// size, or whose sequence is [`FAR`] or more ahead or behind, is [`SeqEvent::Foreign`].
/// [`RESYNC`] consecutive datagrams that follow each other far from the window (the first
/// datagram was a stray, or the sender jumped) move the window and the size to them.
#[derive(Debug, Default, Clone)]
pub struct LossTracker {
    highest: Option<u32>,
    /// Bit i set = datagram `highest - i` was seen (bit 0 is `highest` itself).
    window: u64,
    /// The sender's datagram length (payload bytes).
    size: usize,
    /// Far datagrams that follow each other: (last sequence, length, how many).
    far: Option<(u32, usize, u32)>,
    /// Datagrams taken in the window since it was set (up to [`RESYNC`]): a window that
    /// never held more than a stray or two has no gap to count when the sender's datagrams
    /// move it.
    held: u32,
}

/// Datagrams further behind than this are treated as late without duplicate detection.
const WINDOW: u32 = 64;

/// A sequence this far ahead of or behind the window is not taken on its own word: a random
/// 32-bit number lands this close with odds of 1 in 2^19, and then moves the window by at most
/// this much. A sender's real jump (a burst of loss longer than this) is followed after
/// [`RESYNC`] datagrams, and its gap is then counted as lost, less those [`RESYNC`] datagrams
/// (counted foreign, not received).
pub const FAR: u32 = 4096;

/// Consecutive far datagrams, each at most [`WINDOW`] after the previous one and of one size,
/// that move the window to them.
pub const RESYNC: u32 = 8;

impl LossTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts one datagram of any size (tests of the sequence rules).
    pub fn on_seq(&mut self, seq: u32) -> SeqEvent {
        self.on_datagram(seq, self.size)
    }

    /// Accounts one datagram of `len` payload bytes.
    pub fn on_datagram(&mut self, seq: u32, len: usize) -> SeqEvent {
        let Some(high) = self.highest else {
            self.restart(seq, len);
            return SeqEvent::InOrder;
        };
        let ahead = seq.wrapping_sub(high);
        let behind = high.wrapping_sub(seq);
        if len != self.size || (ahead >= FAR && behind >= FAR) {
            // Far datagrams that follow each other are the sender after all (a stray first
            // datagram, or a jump): move there.
            let follows = |&(last, l, _): &(u32, usize, u32)| {
                l == len && (1..=WINDOW).contains(&seq.wrapping_sub(last))
            };
            let n = match self.far {
                Some(f) if follows(&f) => f.2 + 1,
                _ => 1,
            };
            if n >= RESYNC {
                // Forward: the sender's datagrams in the gap are lost, but for the ones just
                // counted foreign on their way here.
                let gap =
                    (seq.wrapping_sub(high) < 1 << 31 && len == self.size && self.held >= RESYNC)
                        .then(|| seq.wrapping_sub(high).saturating_sub(RESYNC))
                        .filter(|&g| g > 0);
                self.restart(seq, len);
                return gap.map_or(SeqEvent::InOrder, SeqEvent::Gap);
            }
            self.far = Some((seq, len, n));
            return SeqEvent::Foreign;
        }
        self.held = (self.held + 1).min(RESYNC);
        // A move needs far datagrams in a row: one in the window breaks the run.
        self.far = None;
        if ahead == 0 {
            return SeqEvent::Duplicate;
        }
        if ahead < 1 << 31 {
            // newer than anything seen (wrapping arithmetic handles 2^32 wrap)
            self.window = if ahead >= WINDOW {
                1
            } else {
                (self.window << ahead) | 1
            };
            self.highest = Some(seq);
            return if ahead == 1 {
                SeqEvent::InOrder
            } else {
                SeqEvent::Gap(ahead - 1)
            };
        }
        if behind < WINDOW {
            let bit = 1u64 << behind;
            if self.window & bit != 0 {
                return SeqEvent::Duplicate;
            }
            self.window |= bit;
        }
        SeqEvent::Late
    }

    fn restart(&mut self, seq: u32, len: usize) {
        self.highest = Some(seq);
        self.window = 1;
        self.size = len;
        self.far = None;
        self.held = 1;
    }

    /// Applies an event to a counter slot.
    #[inline]
    pub fn account(ev: SeqEvent, c: &Counters) {
        match ev {
            SeqEvent::InOrder => {}
            SeqEvent::Gap(n) => {
                c.lost.fetch_add(u64::from(n), Relaxed);
            }
            SeqEvent::Late => {
                c.reordered.fetch_add(1, Relaxed);
                // It had been counted lost; the status thread nets this out.
                c.lost.fetch_sub(1, Relaxed);
            }
            SeqEvent::Duplicate => {
                c.duplicates.fetch_add(1, Relaxed);
            }
            SeqEvent::Foreign => {
                c.foreign.fetch_add(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gap_late_duplicate() {
        let mut t = LossTracker::new();
        assert_eq!(t.on_seq(1), SeqEvent::InOrder);
        assert_eq!(t.on_seq(2), SeqEvent::InOrder);
        assert_eq!(t.on_seq(5), SeqEvent::Gap(2));
        assert_eq!(t.on_seq(3), SeqEvent::Late);
        assert_eq!(t.on_seq(3), SeqEvent::Duplicate);
        assert_eq!(t.on_seq(5), SeqEvent::Duplicate);
        assert_eq!(t.on_seq(4), SeqEvent::Late);
        assert_eq!(t.on_seq(6), SeqEvent::InOrder);
    }

    #[test]
    fn wraps_at_2_pow_32() {
        let mut t = LossTracker::new();
        assert_eq!(t.on_seq(u32::MAX - 1), SeqEvent::InOrder);
        assert_eq!(t.on_seq(u32::MAX), SeqEvent::InOrder);
        assert_eq!(t.on_seq(0), SeqEvent::InOrder);
        assert_eq!(t.on_seq(3), SeqEvent::Gap(2));
        assert_eq!(t.on_seq(u32::MAX), SeqEvent::Duplicate);
        assert_eq!(t.on_seq(1), SeqEvent::Late);
    }

    #[test]
    fn far_behind_is_late_and_big_jump_resets_window() {
        let mut t = LossTracker::new();
        t.on_seq(1000);
        assert_eq!(t.on_seq(10), SeqEvent::Late);
        assert_eq!(
            t.on_seq(10),
            SeqEvent::Late,
            "outside the window: no dup detection"
        );
        assert_eq!(t.on_seq(2000), SeqEvent::Gap(999));
        assert_eq!(t.on_seq(1999), SeqEvent::Late);
    }

    #[test]
    fn random_datagrams_are_foreign_and_change_nothing() {
        let mut t = LossTracker::new();
        let c = Counters::default();
        for s in 1..=100u32 {
            LossTracker::account(t.on_datagram(s, 1472), &c);
        }
        // The issue 18 probe: random sequence numbers from the client's address and port.
        let mut x = 0x9e37_79b9u32;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            LossTracker::account(t.on_datagram(x, 1472), &c);
        }
        // The wrong size is foreign even in the window.
        assert_eq!(t.on_datagram(101, 64), SeqEvent::Foreign);
        assert_eq!(t.on_datagram(101, 1472), SeqEvent::InOrder);
        let s = c.take();
        assert_eq!(s.foreign, 10_000, "{s:?}");
        assert_eq!(s.lost, 0, "no phantom loss");
    }

    #[test]
    fn a_stray_first_datagram_or_a_real_jump_resyncs() {
        let mut t = LossTracker::new();
        assert_eq!(
            t.on_datagram(0xdead_beef, 17),
            SeqEvent::InOrder,
            "a stray came first"
        );
        for s in 1..RESYNC {
            assert_eq!(t.on_datagram(s, 1472), SeqEvent::Foreign);
        }
        assert_eq!(
            t.on_datagram(RESYNC, 1472),
            SeqEvent::InOrder,
            "the sender's own, and no gap from the stray"
        );
        // A stray of the sender's size far ahead, or far behind: no phantom loss either.
        for stray in [0x7000_0000u32, 0xf000_0000] {
            let mut u = LossTracker::new();
            assert_eq!(u.on_datagram(stray, 1472), SeqEvent::InOrder);
            for s in 1..RESYNC {
                assert_eq!(u.on_datagram(s, 1472), SeqEvent::Foreign);
            }
            assert_eq!(u.on_datagram(RESYNC, 1472), SeqEvent::InOrder, "{stray:x}");
        }
        assert_eq!(t.on_datagram(RESYNC + 2, 1472), SeqEvent::Gap(1));
        for s in RESYNC + 3..=100 {
            assert_eq!(t.on_datagram(s, 1472), SeqEvent::InOrder);
        }
        // A sender that loses 100,000 datagrams in a row is followed after RESYNC of its
        // datagrams, and the gap counted lost but for those RESYNC.
        let high = 100;
        let j = high + 100_001;
        for s in 0..RESYNC - 1 {
            assert_eq!(t.on_datagram(j + s, 1472), SeqEvent::Foreign);
        }
        assert_eq!(t.on_datagram(j + RESYNC - 1, 1472), SeqEvent::Gap(100_000));
        assert_eq!(t.on_datagram(j + RESYNC, 1472), SeqEvent::InOrder);
    }

    #[test]
    fn accounting_nets_late_out_of_lost() {
        let c = Counters::default();
        let mut t = LossTracker::new();
        for s in [1, 2, 5, 3, 4, 4, 6, 9] {
            LossTracker::account(t.on_seq(s), &c);
        }
        let s = c.take();
        assert_eq!((s.lost, s.reordered, s.duplicates), (2, 2, 1));
        assert_eq!(c.take(), Snapshot::default(), "take resets");
    }

    #[test]
    fn snapshot_sums_slots() {
        let slots = [Counters::default(), Counters::default()];
        slots[0].sent(100);
        slots[1].sent(50);
        slots[1].received(7);
        let mut s = Snapshot::default();
        for c in &slots {
            s += c.take();
        }
        assert_eq!(
            (s.tx_bytes, s.tx_packets, s.rx_bytes, s.rx_packets),
            (150, 2, 7, 1)
        );
    }
}

/// Inter-send gap histogram of one paced TX thread, for the pacing audit.
///
/// Log-linear buckets: 8 sub-buckets per power of two of nanoseconds, so a percentile read
/// from it is within 12.5 % of the true gap. Written with one relaxed `fetch_add` per send by
/// its TX thread; drained with `swap(0)` once per report interval by the status thread.
pub struct GapHistogram {
    buckets: [AtomicU64; GAP_BUCKETS],
    /// Send calls recorded with [`GapHistogram::record_burst`], the units they carried, and
    /// the largest burst: with batched sends a gap is between calls, and the burst says how
    /// many datagrams left back to back.
    sends: AtomicU64,
    units: AtomicU64,
    max_burst: AtomicU64,
}

const SUB: u32 = 8;
const GAP_BUCKETS: usize = 64 * SUB as usize;

impl Default for GapHistogram {
    fn default() -> Self {
        GapHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sends: AtomicU64::new(0),
            units: AtomicU64::new(0),
            max_burst: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for GapHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GapHistogram")
    }
}

fn gap_bucket(ns: u64) -> usize {
    if ns < u64::from(SUB) {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= 3
    let sub = (ns >> (exp - 3)) & u64::from(SUB - 1);
    ((exp - 2) * SUB) as usize + sub as usize
}

/// Lower edge of a bucket, in ns.
fn gap_bucket_floor(b: usize) -> u64 {
    let b = b as u64;
    if b < u64::from(SUB) {
        return b;
    }
    let exp = b / u64::from(SUB) + 2;
    let sub = b % u64::from(SUB);
    (1u64 << exp) + (sub << (exp - 3))
}

impl GapHistogram {
    /// Records one gap.
    #[inline]
    pub fn record(&self, ns: u64) {
        self.buckets[gap_bucket(ns).min(GAP_BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// Records one send call that carried `n` units (paced senders).
    #[inline]
    pub fn record_burst(&self, n: u64) {
        self.sends.fetch_add(1, Relaxed);
        self.units.fetch_add(n, Relaxed);
        self.max_burst.fetch_max(n, Relaxed);
    }

    /// Takes (mean, max) burst size since the last call; `None` when nothing was recorded.
    pub fn take_bursts(&self) -> Option<(f64, u64)> {
        let sends = self.sends.swap(0, Relaxed);
        let units = self.units.swap(0, Relaxed);
        let max = self.max_burst.swap(0, Relaxed);
        (sends > 0).then(|| (units as f64 / sends as f64, max))
    }

    /// Drains the histogram into `out` (added bucket-wise).
    pub fn drain_into(&self, out: &mut [u64]) {
        for (o, b) in out.iter_mut().zip(self.buckets.iter()) {
            *o += b.swap(0, Relaxed);
        }
    }

    /// A zeroed buffer the size of the histogram.
    pub fn buffer() -> Vec<u64> {
        vec![0; GAP_BUCKETS]
    }
}

/// The `q` quantile (0..1) of drained buckets, in ns (the bucket's lower edge); `None` if empty.
pub fn gap_quantile(buckets: &[u64], q: f64) -> Option<u64> {
    let n: u64 = buckets.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = ((n as f64 * q).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for (i, &c) in buckets.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(gap_bucket_floor(i));
        }
    }
    None
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            12_000,
            1_000_000,
            1 << 40,
        ] {
            let b = gap_bucket(ns);
            assert!(b >= last, "{ns}");
            last = b;
            let floor = gap_bucket_floor(b);
            assert!(
                floor <= ns && ns - floor <= ns / 8 + 1,
                "{ns}: floor {floor}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let h = GapHistogram::default();
        for _ in 0..98 {
            h.record(12_000);
        }
        h.record(250_000);
        h.record(260_000);
        let mut b = GapHistogram::buffer();
        h.drain_into(&mut b);
        let p50 = gap_quantile(&b, 0.5).unwrap();
        let p99 = gap_quantile(&b, 0.99).unwrap();
        assert!((10_500..=12_000).contains(&p50), "{p50}");
        assert!((220_000..=250_000).contains(&p99), "{p99}");
        assert_eq!(gap_quantile(&GapHistogram::buffer(), 0.5), None);
        let mut again = GapHistogram::buffer();
        h.drain_into(&mut again);
        assert_eq!(again.iter().sum::<u64>(), 0, "drained");
    }
}
