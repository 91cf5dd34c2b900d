//! The echo datagram of the latency probe (`--latency echo`): pure encode and parse of the
//! 32-byte `BTPROBE1` datagram that the client sends and the server echoes, and of its
//! 48-byte extension `BTPROBE2` that the server stamps with its own receive and send times
//! (issue 22: one-way delay; docs/protocol.md "Echo v2").
//!
//! Owns: the byte layout and the server's acceptance test. Both roles use it: the client's
//! probe (src/probe/, client-only) and the server's responder (src/server/echo.rs,
//! server-only); it lives here so a server-only build needs no copy (the copy it kept, tested
//! equal, is gone; issue 20). Must not: touch sockets, read clocks, allocate, or panic on any
//! input: every parser takes whatever bytes a socket returned (truncated, oversized, another
//! run's probe) and answers `None` for anything that is not exactly the datagram we expect.
//!
//! # Layout
//!
//! Request and reply have the same layout, [`ECHO_LEN`] = 32 bytes exactly, all integers
//! big-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "BTPROBE1"
//!      8     4  sequence number (u32), per probe run, from 0
//!     12     4  session token (u32), random per probe run: replies to another run are ignored
//!     16     8  client send time in ns (u64); opaque to the server, which never reads it
//!     24     8  padding, zero
//! ```
//!
//! The server echoes a datagram back unchanged, to its source, only if it is exactly 32 bytes
//! and starts with the magic; anything else is silently ignored. The reply is the same size
//! as the request, so the echo cannot amplify a spoofed flood.
//!
//! # Version 2 (ours, not RouterOS's)
//!
//! [`ECHO2_LEN`] = 48 bytes, big-endian; the first 24 bytes as in version 1 but for the magic:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "BTPROBE2"
//!      8     4  sequence number (u32)
//!     12     4  session token (u32)
//!     16     8  client send time in ns (u64); the server never reads it
//!     24     8  server receive time in ns (u64): zero in the request
//!     32     8  server send time in ns (u64): zero in the request
//!     40     8  padding, zero
//! ```
//!
//! The server's times are ns since its responder started, on one monotonic clock; only their
//! difference (the server's turnaround) and the clock-offset fit (src/probe/owd.rs) matter.
//! The server overwrites bytes 24..40 and echoes the rest unchanged: same size both ways.

/// First 8 bytes of every probe datagram (and of our ICMP echo payload).
pub const MAGIC: [u8; 8] = *b"BTPROBE1";
/// Size of the echo datagram (request and reply).
pub const ECHO_LEN: usize = 32;

/// One probe: the fields of the echo datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoDatagram {
    pub seq: u32,
    pub token: u32,
    /// Client send time in ns; our client writes its monotonic time since the probe began.
    pub sent_ns: u64,
}

impl EchoDatagram {
    /// The 32 bytes on the wire.
    pub fn encode(&self) -> [u8; ECHO_LEN] {
        let mut b = [0u8; ECHO_LEN];
        self.write(&mut b, &MAGIC);
        b
    }

    /// The version 2 request: 48 bytes, the server's fields zero.
    pub fn encode_v2(&self) -> [u8; ECHO2_LEN] {
        let mut b = [0u8; ECHO2_LEN];
        self.write(&mut b, &MAGIC2);
        b
    }

    /// The first 24 bytes, common to both versions.
    #[inline(always)]
    fn write(&self, b: &mut [u8], magic: &[u8; 8]) {
        b[..8].copy_from_slice(magic);
        b[8..12].copy_from_slice(&self.seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.token.to_be_bytes());
        b[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Parses a datagram: exactly [`ECHO_LEN`] bytes starting with [`MAGIC`]. The padding is
    /// not checked (the server echoes bytes unchanged; a future version may use them).
    pub fn parse(b: &[u8]) -> Option<EchoDatagram> {
        if !is_echo_request(b) {
            return None;
        }
        parse_any(b).map(|(p, _)| p)
    }
}

/// Parses a datagram of either version: the probe, and for version 2 the server's receive
/// and send times as they are (zero in a request). One reader for both, so the client's
/// probe carries one copy (the router image, issue 22).
pub fn parse_any(b: &[u8]) -> Option<(EchoDatagram, Option<(u64, u64)>)> {
    let v2 = is_echo2_request(b);
    if !v2 && !is_echo_request(b) {
        return None;
    }
    let p = EchoDatagram {
        seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        token: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        sent_ns: u64_at(b, 16),
    };
    Some((p, v2.then(|| (u64_at(b, 24), u64_at(b, 32)))))
}

/// The big-endian u64 at `b[i..i + 8]`; the caller has checked the length.
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(w)
}

/// The server's acceptance test: exactly 32 bytes and the magic. Nothing else is echoed.
pub fn is_echo_request(b: &[u8]) -> bool {
    b.len() == ECHO_LEN && b[..MAGIC.len()] == MAGIC
}

/// First 8 bytes of a version 2 datagram.
pub const MAGIC2: [u8; 8] = *b"BTPROBE2";
/// Size of the version 2 datagram (request and reply).
pub const ECHO2_LEN: usize = 48;

/// The server's acceptance test for version 2: exactly 48 bytes and its magic.
pub fn is_echo2_request(b: &[u8]) -> bool {
    b.len() == ECHO2_LEN && b[..MAGIC2.len()] == MAGIC2
}

/// Writes the server's receive and send times into a version 2 datagram (bytes 24..40).
/// The caller has checked [`is_echo2_request`]; a shorter buffer is left alone. Inlined:
/// on the server's fixed buffer the bounds check folds away.
#[inline(always)]
pub fn stamp(b: &mut [u8], rx_ns: u64, tx_ns: u64) {
    if let Some(f) = b.get_mut(24..40) {
        f[..8].copy_from_slice(&rx_ns.to_be_bytes());
        f[8..].copy_from_slice(&tx_ns.to_be_bytes());
    }
}

/// A version 2 datagram: the probe's fields and the server's two times (zero in a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo2 {
    pub probe: EchoDatagram,
    pub server_rx_ns: u64,
    pub server_tx_ns: u64,
}

impl Echo2 {
    /// The 48 bytes on the wire.
    pub fn encode(&self) -> [u8; ECHO2_LEN] {
        let mut b = self.probe.encode_v2();
        stamp(&mut b, self.server_rx_ns, self.server_tx_ns);
        b
    }

    /// Parses exactly [`ECHO2_LEN`] bytes starting with [`MAGIC2`]; padding not checked.
    pub fn parse(b: &[u8]) -> Option<Echo2> {
        match parse_any(b)? {
            (probe, Some((server_rx_ns, server_tx_ns))) => Some(Echo2 {
                probe,
                server_rx_ns,
                server_tx_ns,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: EchoDatagram = EchoDatagram {
        seq: 0x0102_0304,
        token: 0xdead_beef,
        sent_ns: 0x0011_2233_4455_6677,
    };

    /// PROBE on the wire, written out by hand from the layout in the module doc.
    const PROBE_BYTES: [u8; 32] = [
        b'B', b'T', b'P', b'R', b'O', b'B', b'E', b'1', // magic
        0x01, 0x02, 0x03, 0x04, // seq
        0xde, 0xad, 0xbe, 0xef, // token
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, // send time
        0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn echo_datagram_golden_bytes() {
        assert_eq!(PROBE.encode(), PROBE_BYTES);
        assert_eq!(EchoDatagram::parse(&PROBE_BYTES), Some(PROBE));
    }

    #[test]
    fn echo_datagram_rejects_hostile_input() {
        assert_eq!(EchoDatagram::parse(&[]), None);
        assert_eq!(EchoDatagram::parse(&PROBE_BYTES[..31]), None);
        let mut long = [0u8; 33];
        long[..32].copy_from_slice(&PROBE_BYTES);
        assert_eq!(EchoDatagram::parse(&long), None);
        assert!(!is_echo_request(&long));
        let mut bad = PROBE_BYTES;
        bad[7] = b'2';
        assert_eq!(EchoDatagram::parse(&bad), None);
        assert!(!is_echo_request(&bad));
        assert!(!is_echo_request(&[0u8; 32]));
        assert!(!is_echo_request(&MAGIC));
        // Non-zero padding is still a valid datagram (echoed unchanged).
        let mut pad = PROBE_BYTES;
        pad[31] = 0xff;
        assert_eq!(EchoDatagram::parse(&pad), Some(PROBE));
    }

    /// PROBE as version 2, stamped by a server, written out by hand from the layout.
    const PROBE2_BYTES: [u8; 48] = [
        b'B', b'T', b'P', b'R', b'O', b'B', b'E', b'2', // magic
        0x01, 0x02, 0x03, 0x04, // seq
        0xde, 0xad, 0xbe, 0xef, // token
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, // client send time
        0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, // server receive time
        0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x99, // server send time
        0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    const PROBE2: Echo2 = Echo2 {
        probe: PROBE,
        server_rx_ns: 0x01_0203_0405,
        server_tx_ns: 0x01_0203_0499,
    };

    #[test]
    fn echo2_golden_bytes() {
        assert_eq!(PROBE2.encode(), PROBE2_BYTES);
        assert_eq!(Echo2::parse(&PROBE2_BYTES), Some(PROBE2));
        // A request has the server fields zero; stamping it gives the reply above.
        let mut req = Echo2 {
            probe: PROBE,
            server_rx_ns: 0,
            server_tx_ns: 0,
        }
        .encode();
        assert_eq!(req[24..48], [0u8; 24]);
        assert!(is_echo2_request(&req));
        stamp(&mut req, PROBE2.server_rx_ns, PROBE2.server_tx_ns);
        assert_eq!(req, PROBE2_BYTES);
        // Stamping a short buffer does nothing (and does not panic).
        let mut short = [7u8; 30];
        stamp(&mut short, 1, 2);
        assert_eq!(short, [7u8; 30]);
    }

    #[test]
    fn parse_any_reads_both_versions() {
        assert_eq!(parse_any(&PROBE_BYTES), Some((PROBE, None)));
        assert_eq!(
            parse_any(&PROBE2_BYTES),
            Some((PROBE, Some((0x01_0203_0405, 0x01_0203_0499))))
        );
        assert_eq!(PROBE.encode_v2()[..24], PROBE2_BYTES[..24]);
        assert_eq!(PROBE.encode_v2()[24..], [0u8; 24]);
        for bad in [
            &PROBE_BYTES[..31],
            &PROBE2_BYTES[..47],
            &PROBE2_BYTES[..32],
            &[][..],
        ] {
            assert_eq!(parse_any(bad), None);
        }
    }

    #[test]
    fn echo2_and_echo1_do_not_mix() {
        // Each parser takes its own version only: size and magic must both match.
        assert_eq!(EchoDatagram::parse(&PROBE2_BYTES), None);
        assert_eq!(EchoDatagram::parse(&PROBE2_BYTES[..32]), None);
        assert_eq!(Echo2::parse(&PROBE_BYTES), None);
        let mut v1_magic_48 = PROBE2_BYTES;
        v1_magic_48[7] = b'1';
        assert_eq!(Echo2::parse(&v1_magic_48), None);
        assert!(!is_echo_request(&v1_magic_48));
        assert!(!is_echo2_request(&PROBE2_BYTES[..47]));
        let mut long = [0u8; 49];
        long[..48].copy_from_slice(&PROBE2_BYTES);
        assert!(!is_echo2_request(&long));
        assert_eq!(Echo2::parse(&[]), None);
        assert_eq!(&MAGIC2, b"BTPROBE2");
        assert_eq!(ECHO2_LEN, 48);
    }

    #[test]
    fn constants_golden() {
        assert_eq!(&MAGIC, b"BTPROBE1");
        assert_eq!(ECHO_LEN, 32);
        // The whole datagram is accepted, one byte fewer or more is not.
        let b = EchoDatagram {
            seq: 0,
            token: 0,
            sent_ns: 0,
        }
        .encode();
        assert!(is_echo_request(&b));
        assert_eq!(b[8..], [0u8; 24]);
    }
}
