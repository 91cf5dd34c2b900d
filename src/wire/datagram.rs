//! The UDP test datagram: a u32 big-endian sequence number at offset 0, then filler.
//!
//! The UDP payload is `tx_size - overhead` bytes, so that the IP packet is exactly `tx_size`
//! bytes (1500 -> 1472-byte payload over IPv4). Receivers count `payload + overhead`.

use super::{IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD};

/// Size of the sequence header.
pub const SEQ_LEN: usize = 4;
/// Smallest `tx_size` a user may ask for (RouterOS rejects smaller values: 28 + 4 would be the
/// floor for the sequence number, we accept the RouterOS minimum of 28 and clamp the payload).
pub const MIN_TX_SIZE: u16 = 28;
/// Largest `tx_size` (RouterOS UI limit).
pub const MAX_TX_SIZE: u16 = 64000;

/// IP + UDP header bytes for the address family.
pub fn overhead(ipv6: bool) -> usize {
    if ipv6 {
        IPV6_UDP_OVERHEAD
    } else {
        IPV4_UDP_OVERHEAD
    }
}

/// UDP payload length for a datagram of `tx_size` wire bytes; never below the 4-byte header.
pub fn payload_len(tx_size: u16, ipv6: bool) -> usize {
    payload_len_with(usize::from(tx_size), overhead(ipv6))
}

/// [`payload_len`] for a caller that holds the size as `usize` and the family's
/// [`overhead`] already (the engine's `Plan`): `tx_size - overhead`, at least the 4-byte header.
pub fn payload_len_with(tx_size: usize, overhead: usize) -> usize {
    tx_size.saturating_sub(overhead).max(SEQ_LEN)
}

/// Writes the sequence number into the first 4 bytes of `buf` (which must hold at least 4).
pub fn write_seq(buf: &mut [u8], seq: u32) {
    buf[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
}

/// Reads the sequence number; `None` for a datagram shorter than 4 bytes (to be ignored).
pub fn read_seq(buf: &[u8]) -> Option<u32> {
    let h: [u8; SEQ_LEN] = buf.get(..SEQ_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_1500_seq1_zero_fill() {
        // reference 15.2: 1472 bytes = 00 00 00 01 followed by 1468 x 00
        let mut buf = vec![0u8; payload_len(1500, false)];
        assert_eq!(buf.len(), 1472);
        write_seq(&mut buf, 1);
        assert_eq!(&buf[..4], &[0, 0, 0, 1]);
        assert!(buf[4..].iter().all(|&b| b == 0));
        assert_eq!(read_seq(&buf), Some(1));
    }

    #[test]
    fn seq_is_big_endian_and_short_is_ignored() {
        let mut b = [0u8; 8];
        write_seq(&mut b, 0x0102_0304);
        assert_eq!(&b[..4], &[1, 2, 3, 4]);
        assert_eq!(read_seq(&[1, 2, 3]), None);
        assert_eq!(read_seq(&[]), None);
    }

    #[test]
    fn payload_sizes() {
        assert_eq!(payload_len(1500, true), 1452);
        assert_eq!(payload_len(28, false), 4);
        assert_eq!(payload_len(64000, false), 63972);
        assert_eq!(payload_len(0, true), 4);
        assert_eq!(payload_len(51, true), 4);
        assert_eq!(payload_len(53, true), 5);
    }

    #[test]
    fn payload_len_with_golden() {
        assert_eq!(payload_len_with(1500, 28), 1472);
        assert_eq!(payload_len_with(1500, 48), 1452);
        assert_eq!(payload_len_with(0, 28), 4);
        assert_eq!(payload_len_with(31, 28), 4);
        assert_eq!(payload_len_with(33, 28), 5);
        assert_eq!(payload_len_with(usize::MAX, 48), usize::MAX - 48);
        for t in [0u16, 28, 32, 100, 1500, 64000] {
            for v6 in [false, true] {
                assert_eq!(
                    payload_len(t, v6),
                    payload_len_with(usize::from(t), overhead(v6))
                );
            }
        }
    }
}
