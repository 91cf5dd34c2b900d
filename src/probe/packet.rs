//! Wire formats of the latency probe: ICMP / ICMPv6 echo request and reply around our UDP
//! echo datagram (owned by `wire::echo`). Pure encode and parse, no sockets, no clock.
//!
//! Owns: the byte layouts and the RFC 1071 Internet checksum. Must not: allocate per packet,
//! panic, or trust a length it did not check: every parser takes whatever bytes a socket
//! returned (truncated, oversized, another host's ping, another run's probe) and answers
//! `None` for anything that is not exactly the packet we expect.
//!
//! # Echo datagram (ours)
//!
//! The 32-byte `BTPROBE1` datagram is defined in [`crate::wire::echo`], shared with the
//! server's responder; it is re-exported here so the probe and the fuzz target keep one path.
//!
//! # ICMP echo (RouterOS and any host answer it)
//!
//! The ICMP echo request is the 8-byte ICMP header (type 8, or 128 for ICMPv6; code 0;
//! checksum; identifier; sequence = the low 16 bits of ours) followed by the same 32-byte
//! echo datagram as payload, so a reply is recognised by magic, token and full sequence even
//! when the identifier is not ours (Linux ping sockets replace it with the socket's port).
//! IPv4 carries the RFC 1071 checksum we compute; for ICMPv6 we leave it zero, because the
//! kernel computes it (it needs the pseudo-header) on both raw and ping sockets.
//!
//! A raw IPv4 socket delivers the IPv4 header in front of the ICMP message (its IHL says how
//! long it is, options included); ping sockets and raw ICMPv6 sockets deliver the ICMP
//! message alone.

/// ICMP / ICMPv6 echo header: type, code, checksum, identifier, sequence.
pub const ICMP_HEADER_LEN: usize = 8;
/// Our ICMP echo message: header plus the echo datagram as payload.
pub const ICMP_PROBE_LEN: usize = ICMP_HEADER_LEN + ECHO_LEN;

pub const ICMPV4_ECHO_REPLY: u8 = 0;
pub const ICMPV4_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// IPv4 protocol number of ICMP (the raw socket's IPv4 header says it).
const IPPROTO_ICMP: u8 = 1;

pub use crate::wire::echo::{
    is_echo2_request, is_echo_request, Echo2, EchoDatagram, ECHO2_LEN, ECHO_LEN, MAGIC, MAGIC2,
};

/// The RFC 1071 Internet checksum: the one's complement of the one's-complement sum of the
/// data as big-endian 16-bit words (an odd last byte is the high byte of a final word).
/// Over a message that already holds a correct checksum it yields 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        // Fold as we go so even a 64 KiB message cannot overflow the accumulator.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds an ICMP (`v6` false) or ICMPv6 echo request carrying `probe` as payload. The
/// sequence field is the low 16 bits of `probe.seq`. The IPv4 checksum is filled in; the
/// ICMPv6 one stays zero for the kernel to compute.
pub fn icmp_echo_request(v6: bool, ident: u16, probe: &EchoDatagram) -> [u8; ICMP_PROBE_LEN] {
    let mut b = [0u8; ICMP_PROBE_LEN];
    b[0] = if v6 {
        ICMPV6_ECHO_REQUEST
    } else {
        ICMPV4_ECHO_REQUEST
    };
    b[4..6].copy_from_slice(&ident.to_be_bytes());
    b[6..8].copy_from_slice(&(probe.seq as u16).to_be_bytes());
    b[ICMP_HEADER_LEN..].copy_from_slice(&probe.encode());
    if !v6 {
        let c = internet_checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
    }
    b
}

/// A parsed echo reply that carries our payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpEchoReply {
    /// The identifier in the reply (for ping sockets the kernel's, not ours).
    pub ident: u16,
    /// The 16-bit ICMP sequence; always equal to the low 16 bits of `probe.seq`.
    pub seq: u16,
    pub probe: EchoDatagram,
}

/// Parses what an ICMP socket returned as an echo reply to one of our probes.
///
/// `v6`: ICMPv6 (type 129) rather than ICMP (type 0). `ip_header`: the bytes start with an
/// IPv4 header (raw IPv4 sockets), whose IHL is skipped and whose total length trims the
/// message. `None` for anything else: another type (our own request looped back, an
/// unreachable, neighbour discovery), a truncated or padded message, a bad IPv4 checksum, a
/// payload that is not our echo datagram, or a sequence that disagrees with the payload's.
pub fn parse_icmp_echo_reply(b: &[u8], v6: bool, ip_header: bool) -> Option<IcmpEchoReply> {
    let icmp = if ip_header { strip_ipv4_header(b)? } else { b };
    if icmp.len() != ICMP_PROBE_LEN {
        return None;
    }
    let want_type = if v6 {
        ICMPV6_ECHO_REPLY
    } else {
        ICMPV4_ECHO_REPLY
    };
    if icmp[0] != want_type || icmp[1] != 0 {
        return None;
    }
    // The ICMPv6 checksum covers a pseudo-header we do not see, and the kernel has verified
    // it; the IPv4 one covers just the message, and a raw socket gets packets the kernel's
    // ICMP layer has not checked yet.
    if !v6 && internet_checksum(icmp) != 0 {
        return None;
    }
    let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
    let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    let probe = EchoDatagram::parse(&icmp[ICMP_HEADER_LEN..])?;
    if probe.seq as u16 != seq {
        return None;
    }
    Some(IcmpEchoReply { ident, seq, probe })
}

/// The ICMP message inside an IPv4 packet as a raw socket returns it.
fn strip_ipv4_header(b: &[u8]) -> Option<&[u8]> {
    let first = *b.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || b.len() < ihl {
        return None;
    }
    if b[9] != IPPROTO_ICMP {
        return None;
    }
    // Total length bounds the packet: more bytes than it says is trailing junk, fewer is a
    // truncated read.
    let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if total < ihl || total > b.len() {
        return None;
    }
    Some(&b[ihl..total])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: EchoDatagram = EchoDatagram {
        seq: 0x0102_0304,
        token: 0xdead_beef,
        sent_ns: 0x0011_2233_4455_6677,
    };

    #[test]
    fn checksum_rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (after folding the
        // carry), so the checksum is its complement, 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), 0x220d);
        // Appending the checksum makes the whole verify to zero.
        let mut with = data.to_vec();
        with.extend_from_slice(&0x220du16.to_be_bytes());
        assert_eq!(internet_checksum(&with), 0);
    }

    #[test]
    fn checksum_edge_cases() {
        assert_eq!(internet_checksum(&[]), 0xffff);
        // An odd byte is the high half of a word: 0xab -> 0xab00 -> !0xab00.
        assert_eq!(internet_checksum(&[0xab]), 0x54ff);
        // Header-only echo request, type 8, id 0x1234, seq 1, checked by hand:
        // 0x0800 + 0x1234 + 0x0001 = 0x1a35, complement 0xe5ca.
        assert_eq!(
            internet_checksum(&[0x08, 0, 0, 0, 0x12, 0x34, 0x00, 0x01]),
            0xe5ca
        );
        // Many 0xffff words: the carries must fold, never overflow.
        assert_eq!(internet_checksum(&[0xff; 65536]), 0);
    }

    /// The ICMPv4 echo request for PROBE with ident 0x1234. Checksum by hand: the header
    /// words 0800 + 1234 + 0304 (seq, low 16 bits) = 1d38; the payload words
    /// 4254 5052 4f42 4531 0102 0304 dead beef 0011 2233 4455 6677 sum to 3:95cb, folded
    /// 95ce; 1d38 + 95ce = b306; complement 4cf9.
    const ICMP4_REQUEST: [u8; 40] = [
        0x08, 0x00, 0x4c, 0xf9, 0x12, 0x34, 0x03, 0x04, // header
        b'B', b'T', b'P', b'R', b'O', b'B', b'E', b'1', //
        0x01, 0x02, 0x03, 0x04, 0xde, 0xad, 0xbe, 0xef, //
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, //
        0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn icmpv4_request_golden_bytes() {
        let b = icmp_echo_request(false, 0x1234, &PROBE);
        assert_eq!(b, ICMP4_REQUEST);
        assert_eq!(internet_checksum(&b), 0);
    }

    #[test]
    fn icmpv6_request_golden_bytes() {
        let b = icmp_echo_request(true, 0x1234, &PROBE);
        let mut want = ICMP4_REQUEST;
        want[0] = 128;
        want[2] = 0; // the kernel computes the ICMPv6 checksum
        want[3] = 0;
        assert_eq!(b, want);
    }

    /// The reply a host sends to ICMP4_REQUEST: type 0, checksum adjusted by the type change
    /// (0x0800 less in the sum, so 0800 more in its complement: 4cf9 + 0800 = 54f9).
    fn icmp4_reply() -> [u8; 40] {
        let mut r = ICMP4_REQUEST;
        r[0] = 0;
        r[2] = 0x54;
        r[3] = 0xf9;
        r
    }

    #[test]
    fn icmpv4_reply_parses_without_and_with_ip_header() {
        let r = icmp4_reply();
        assert_eq!(internet_checksum(&r), 0);
        let want = Some(IcmpEchoReply {
            ident: 0x1234,
            seq: 0x0304,
            probe: PROBE,
        });
        assert_eq!(parse_icmp_echo_reply(&r, false, false), want);

        // A 24-byte IPv4 header (IHL 6: one word of options), total length 64.
        let mut pkt = vec![0x46, 0, 0, 64, 0, 0, 0, 0, 64, 1, 0, 0];
        pkt.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1, 1, 1, 0, 0]);
        pkt.extend_from_slice(&r);
        assert_eq!(pkt.len(), 64);
        assert_eq!(parse_icmp_echo_reply(&pkt, false, true), want);
        // Junk after the total length is cut off, not parsed.
        let mut padded = pkt.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_icmp_echo_reply(&padded, false, true), want);
    }

    #[test]
    fn icmpv6_reply_parses() {
        let mut r = icmp_echo_request(true, 7, &PROBE);
        r[0] = ICMPV6_ECHO_REPLY;
        r[2] = 0xab; // whatever the kernel computed; not ours to check
        let got = parse_icmp_echo_reply(&r, true, false).unwrap();
        assert_eq!((got.ident, got.seq, got.probe), (7, 0x0304, PROBE));
        // The same bytes are not an ICMPv4 reply.
        assert_eq!(parse_icmp_echo_reply(&r, false, false), None);
    }

    #[test]
    fn icmp_reply_rejects_hostile_input() {
        let r = icmp4_reply();
        // Truncated at every length, with and without an IP header in front.
        for n in 0..r.len() {
            assert_eq!(parse_icmp_echo_reply(&r[..n], false, false), None, "{n}");
            assert_eq!(parse_icmp_echo_reply(&r[..n], true, false), None, "{n}");
            assert_eq!(parse_icmp_echo_reply(&r[..n], false, true), None, "{n}");
        }
        // Our own request looped back (type 8) is not a reply.
        assert_eq!(parse_icmp_echo_reply(&ICMP4_REQUEST, false, false), None);
        // A corrupted byte fails the checksum.
        let mut bad = r;
        bad[20] ^= 1;
        assert_eq!(parse_icmp_echo_reply(&bad, false, false), None);
        // Another program's ping: right type and checksum, payload not ours.
        let mut other = [0u8; 40];
        other[4] = 0x12;
        other[5] = 0x34;
        let c = internet_checksum(&other);
        other[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse_icmp_echo_reply(&other, false, false), None);
        // ICMP sequence that disagrees with the payload's.
        let mut seq = r;
        seq[7] = 0x05;
        seq[3] = seq[3].wrapping_sub(1); // keep the checksum right: +1 in the sum
        assert_eq!(internet_checksum(&seq), 0);
        assert_eq!(parse_icmp_echo_reply(&seq, false, false), None);
        // Non-zero code.
        let mut code = r;
        code[1] = 1;
        code[3] = code[3].wrapping_sub(1);
        assert_eq!(internet_checksum(&code), 0);
        assert_eq!(parse_icmp_echo_reply(&code, false, false), None);
    }

    #[test]
    fn ipv4_header_rejects_hostile_input() {
        let r = icmp4_reply();
        let hdr = |b0: u8, total: u16, proto: u8| {
            let t = total.to_be_bytes();
            let mut p = vec![b0, 0, t[0], t[1], 0, 0, 0, 0, 64, proto, 0, 0];
            p.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
            p.extend_from_slice(&r);
            p
        };
        assert!(parse_icmp_echo_reply(&hdr(0x45, 60, 1), false, true).is_some());
        // IPv6 version nibble, IHL below 5, IHL past the end, not ICMP, total too long or
        // shorter than the header.
        assert_eq!(parse_icmp_echo_reply(&hdr(0x65, 60, 1), false, true), None);
        assert_eq!(parse_icmp_echo_reply(&hdr(0x44, 60, 1), false, true), None);
        assert_eq!(parse_icmp_echo_reply(&hdr(0x4f, 60, 1), false, true), None);
        assert_eq!(parse_icmp_echo_reply(&hdr(0x45, 60, 17), false, true), None);
        assert_eq!(parse_icmp_echo_reply(&hdr(0x45, 61, 1), false, true), None);
        assert_eq!(parse_icmp_echo_reply(&hdr(0x45, 10, 1), false, true), None);
        // Without an IP header the same bytes are no ICMP message either.
        assert_eq!(parse_icmp_echo_reply(&hdr(0x45, 60, 1), false, false), None);
    }
}
