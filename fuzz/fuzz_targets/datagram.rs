//! The UDP test datagram (`wire::datagram`): the 4-byte big-endian sequence header every
//! received datagram is read through (`read_seq`), its writer (`write_seq`), the payload-size
//! rule (`payload_len`), and the loss tracker the peer's sequence numbers drive
//! (`engine::counters::LossTracker`, as the UDP receiver uses it).
//!
//! Input: byte 0 bit 0 = IPv6, bytes 1-2 a `tx_size` (u16 LE, any value a peer's command may
//! carry), then datagrams as `len` (1 byte) + `len` bytes. Properties asserted:
//! - `read_seq` is `None` exactly for datagrams shorter than 4 bytes, else the big-endian
//!   first 4 bytes; `write_seq` then `read_seq` round-trips and leaves the filler untouched;
//! - `payload_len` is never below 4, equals `tx_size - overhead` above that, and with the
//!   overhead (28 IPv4, 48 IPv6) gives back `tx_size` whenever `tx_size` leaves room;
//! - the loss tracker only calls a datagram a duplicate if that sequence number was really
//!   seen before; `InOrder` is the first datagram, the one after the highest, or the end of
//!   a run of `RESYNC - 1` foreign ones (the window moved); `Gap(n)` is a jump to
//!   highest + n + 1 with `1 <= n < FAR`, or ends such a run; a jump of `FAR` or more is never
//!   taken at once (issue 18: random sequences are foreign); and the counters it feeds net out
//!   to gaps - late arrivals (lost), late arrivals (reordered), duplicates, foreign.
#![no_main]

use std::collections::HashSet;

use btest::engine::counters::{Counters, LossTracker, SeqEvent, FAR, RESYNC};
use btest::wire::datagram::{self, SEQ_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let ipv6 = data[0] & 1 == 1;
    let tx_size = u16::from_le_bytes([data[1], data[2]]);
    let overhead = datagram::overhead(ipv6);
    assert_eq!(overhead, if ipv6 { 48 } else { 28 });
    let payload = datagram::payload_len(tx_size, ipv6);
    assert!(payload >= SEQ_LEN);
    assert_eq!(
        payload,
        usize::from(tx_size).saturating_sub(overhead).max(SEQ_LEN)
    );
    if usize::from(tx_size) >= overhead + SEQ_LEN {
        assert_eq!(payload + overhead, usize::from(tx_size));
    }

    let counters = Counters::default();
    let mut tracker = LossTracker::new();
    let mut seen = HashSet::new();
    let mut highest: Option<u32> = None;
    let (mut gaps, mut late, mut dups, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    // Foreign datagrams in a row just before this one: a move of the window may end them.
    let mut run = 0u32;
    let mut rest = &data[3..];
    while let Some((&len, tail)) = rest.split_first() {
        let d = &tail[..usize::from(len).min(tail.len())];
        rest = &tail[d.len()..];

        let seq = datagram::read_seq(d);
        assert_eq!(seq.is_some(), d.len() >= SEQ_LEN);
        let Some(seq) = seq else { continue };
        assert_eq!(seq, u32::from_be_bytes([d[0], d[1], d[2], d[3]]));

        let mut copy = d.to_vec();
        let other = seq.rotate_left(7) ^ 0xa5a5_a5a5;
        datagram::write_seq(&mut copy, other);
        assert_eq!(datagram::read_seq(&copy), Some(other));
        assert_eq!(copy[SEQ_LEN..], d[SEQ_LEN..]);

        let ev = tracker.on_datagram(seq, d.len());
        let moved = run + 1 >= RESYNC;
        match ev {
            SeqEvent::InOrder => {
                assert!(
                    highest.is_none_or(|h| seq == h.wrapping_add(1)) || moved,
                    "{seq} after {highest:?}"
                )
            }
            SeqEvent::Gap(n) => {
                assert!((1..1 << 31).contains(&n));
                let h = highest.expect("a gap needs an earlier datagram");
                if !moved {
                    assert!(n < FAR, "a jump of {n} taken at once");
                    assert_eq!(seq, h.wrapping_add(n).wrapping_add(1));
                }
                gaps += u64::from(n);
            }
            SeqEvent::Foreign => foreign += 1,
            SeqEvent::Late => {
                assert!(highest.is_some());
                late += 1;
            }
            SeqEvent::Duplicate => {
                assert!(
                    seen.contains(&seq),
                    "{seq} called a duplicate but never seen"
                );
                dups += 1;
            }
        }
        if matches!(ev, SeqEvent::InOrder | SeqEvent::Gap(_)) {
            highest = Some(seq);
        }
        run = if ev == SeqEvent::Foreign { run + 1 } else { 0 };
        seen.insert(seq);
        LossTracker::account(ev, &counters);
    }
    let s = counters.take();
    assert_eq!(s.lost, gaps.wrapping_sub(late));
    assert_eq!(s.reordered, late);
    assert_eq!(s.duplicates, dups);
    assert_eq!(s.foreign, foreign);
});
