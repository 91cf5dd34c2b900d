//! The btest wire format as pure code.
//!
//! Owns: the byte layout of every message exchanged on the control connection and of the UDP
//! datagram header (hello, 16-byte command, data-connection marker, server replies, UDP port,
//! 12-byte status, datagram sequence, the latency probe's echo datagram), and the rules derived
//! from those bytes that both roles apply: the UDP port pairs (`udp`), the effective tx size
//! (`Command::effective_tx_size`), the UDP payload length (`datagram::payload_len`) and the
//! direction from each side's view (`Direction::we_transmit`). No protocol arithmetic lives
//! outside this module; `scripts/check-wire.sh` (in `make lint`) checks the known rules.
//! See docs/protocol.md for the byte tables and evidence.
//!
//! Must not: touch sockets, read clocks, allocate, or log. Every fixed-size message is parsed
//! from a `&[u8; N]` and built into a `[u8; N]`, so lengths are checked by the compiler; a
//! rejected message yields a [`WireError`] that names the offending byte and its value.

pub mod command;
pub mod datagram;
pub mod echo;
pub mod reply;
pub mod status;
pub mod udp;

pub use command::{Command, Direction, Protocol, Request, Side};
pub use reply::Reply;
pub use status::Status;

/// TCP port of the RouterOS bandwidth-server.
pub const DEFAULT_PORT: u16 = 2000;
/// The client binds its UDP socket at the server's announced port plus this offset
/// (samm-git captures; every open implementation agrees).
pub const UDP_CLIENT_PORT_OFFSET: u16 = 256;
/// IPv4 header (20) + UDP header (8): RouterOS counts these in UDP sizes and rates.
pub const IPV4_UDP_OVERHEAD: usize = 28;
/// IPv6 header (40) + UDP header (8). Our decision for the open question 6 of the reference.
pub const IPV6_UDP_OVERHEAD: usize = 48;
/// The TCP chunk size RouterOS always puts in the command's tx-size field.
pub const TCP_CHUNK_SIZE: u16 = 32768;

/// What was wrong with a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireErrorKind {
    /// Command byte 0 is neither UDP (0) nor TCP (1).
    BadProtocol,
    /// Command byte 1 is not 1, 2 or 3.
    BadDirection,
    /// Command byte 2 is not 0 (random), 1 (zeros) or 2 (data-connection marker).
    BadRandomFlag,
    /// A data-connection marker with non-zero padding.
    BadMarker,
    /// A 4-byte server reply that matches no known reply.
    UnknownReply,
    /// A status message whose first byte is not 0x07.
    BadStatusType,
    /// The hello was not `01 00 00 00`.
    BadHello,
    /// A UDP port of 0.
    BadPort,
}

/// A message that failed to parse: the kind, the byte offset and the byte's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// What was wrong.
    pub kind: WireErrorKind,
    /// Offset of the offending byte within the message.
    pub offset: usize,
    /// Value of the offending byte.
    pub value: u8,
}

impl WireError {
    pub(crate) fn new(kind: WireErrorKind, offset: usize, value: u8) -> Self {
        WireError {
            kind,
            offset,
            value,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            WireErrorKind::BadProtocol => "protocol byte must be 00 (UDP) or 01 (TCP)",
            WireErrorKind::BadDirection => "direction byte must be 01, 02 or 03",
            WireErrorKind::BadRandomFlag => "random-data byte must be 00 or 01",
            WireErrorKind::BadMarker => "data-connection marker has non-zero padding",
            WireErrorKind::UnknownReply => "unknown server reply",
            WireErrorKind::BadStatusType => "status message must start with 07",
            WireErrorKind::BadHello => "hello must be 01 00 00 00",
            WireErrorKind::BadPort => "UDP port 0 announced",
        };
        write!(f, "{what} (byte {} is {:02x})", self.offset, self.value)
    }
}

impl std::error::Error for WireError {}

/// The 4 bytes the server sends on every accepted connection, before reading anything.
pub const HELLO: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Checks a received hello.
pub fn parse_hello(b: &[u8; 4]) -> Result<(), WireError> {
    match b.iter().zip(HELLO.iter()).position(|(x, y)| x != y) {
        None => Ok(()),
        Some(i) => Err(WireError::new(WireErrorKind::BadHello, i, b[i])),
    }
}

/// The UDP port announced by the server after the OK: u16 big-endian.
pub fn udp_port_to_bytes(port: u16) -> [u8; 2] {
    port.to_be_bytes()
}

/// Parses the announced UDP port; 0 is rejected.
pub fn parse_udp_port(b: &[u8; 2]) -> Result<u16, WireError> {
    let p = u16::from_be_bytes(*b);
    if p == 0 {
        return Err(WireError::new(WireErrorKind::BadPort, 0, 0));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_golden() {
        assert_eq!(HELLO, [1, 0, 0, 0]);
        assert!(parse_hello(&[1, 0, 0, 0]).is_ok());
        let e = parse_hello(&[1, 0, 9, 0]).unwrap_err();
        assert_eq!((e.kind, e.offset, e.value), (WireErrorKind::BadHello, 2, 9));
        let e = parse_hello(&[0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn udp_port_golden() {
        // reference 15.2: port 2001 as sent by the server
        assert_eq!(udp_port_to_bytes(2001), [0x07, 0xd1]);
        assert_eq!(parse_udp_port(&[0x07, 0xd1]), Ok(2001));
        // captured "01 00 00 00 07 fa": port 2042
        assert_eq!(parse_udp_port(&[0x07, 0xfa]), Ok(2042));
        assert_eq!(
            parse_udp_port(&[0, 0]).unwrap_err().kind,
            WireErrorKind::BadPort
        );
    }

    #[test]
    fn error_display_names_byte() {
        let e = WireError::new(WireErrorKind::BadDirection, 1, 7);
        assert_eq!(
            e.to_string(),
            "direction byte must be 01, 02 or 03 (byte 1 is 07)"
        );
    }
}
