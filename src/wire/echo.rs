//! The echo datagram of the latency probe (`--latency echo`): pure encode and parse of the
//! 32-byte `BTPROBE1` datagram that the client sends and the server echoes.
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
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.token.to_be_bytes());
        b[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        b
    }

    /// Parses a datagram: exactly [`ECHO_LEN`] bytes starting with [`MAGIC`]. The padding is
    /// not checked (the server echoes bytes unchanged; a future version may use them).
    pub fn parse(b: &[u8]) -> Option<EchoDatagram> {
        if !is_echo_request(b) {
            return None;
        }
        Some(EchoDatagram {
            seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            token: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            sent_ns: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        })
    }
}

/// The server's acceptance test: exactly 32 bytes and the magic. Nothing else is echoed.
pub fn is_echo_request(b: &[u8]) -> bool {
    b.len() == ECHO_LEN && b[..MAGIC.len()] == MAGIC
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
