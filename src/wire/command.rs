//! The 16-byte test command (client -> server) and the data-connection marker that shares its
//! size and slot in the handshake.
//!
//! Byte table (docs/protocol.md, "Command"); multi-byte fields little-endian:
//!
//! ```text
//! off size field
//!  0   1   protocol        00 UDP, 01 TCP
//!  1   1   direction       bit0: server receives, bit1: server transmits (server's view)
//!  2   1   random-data     00 random payload, 01 zero payload (02 = data-connection marker)
//!  3   1   connection cnt  0 or 1 = one connection, else N
//!  4   2   tx size         u16 LE: UDP datagram size incl. IP+UDP headers / TCP chunk size
//!  6   2   client buf size u16 LE: sent as 0 by RouterOS 6, modelled and round-tripped
//!  8   4   remote tx speed u32 LE bit/s the server may send, 0 = unlimited
//! 12   4   local tx speed  u32 LE bit/s the client will send, 0 = unlimited
//! ```
//!
//! Marker: `t0 t1 02 00` + 12 zero bytes, `t0 t1` copied from the server's `01 t0 t1 00`.

use super::{WireError, WireErrorKind};

/// Length of a command or marker.
pub const LEN: usize = 16;

mod field {
    pub const PROTOCOL: usize = 0;
    pub const DIRECTION: usize = 1;
    pub const RANDOM: usize = 2;
    pub const CONN_COUNT: usize = 3;
    pub const TX_SIZE: std::ops::Range<usize> = 4..6;
    pub const CLIENT_BUF: std::ops::Range<usize> = 6..8;
    pub const REMOTE_SPEED: std::ops::Range<usize> = 8..12;
    pub const LOCAL_SPEED: std::ops::Range<usize> = 12..16;
    pub const MARKER_PAD: std::ops::Range<usize> = 3..16;
}

/// Byte 2 value that marks a data connection of a multi-connection TCP test.
const MARKER_BYTE: u8 = 0x02;

/// Transport of the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UDP datagrams on a negotiated port pair, statuses on connection 0.
    Udp,
    /// TCP data on connection 0 (and N-1 extra connections).
    Tcp,
}

impl Protocol {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Protocol::Udp => 0,
            Protocol::Tcp => 1,
        }
    }
    /// Lower-case name, as RouterOS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

impl TryFrom<u8> for Protocol {
    type Error = WireError;
    fn try_from(b: u8) -> Result<Self, WireError> {
        match b {
            0 => Ok(Protocol::Udp),
            1 => Ok(Protocol::Tcp),
            v => Err(WireError::new(
                WireErrorKind::BadProtocol,
                field::PROTOCOL,
                v,
            )),
        }
    }
}

/// Which end of a test the code asking runs on, for [`Direction::we_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that sent the command.
    Client,
    /// The end that received it.
    Server,
}

/// Which way data flows, named from the *server's* point of view as on the wire.
/// The client's UI words invert it: `transmit` = [`Direction::ServerRx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// 01: the server receives, the client transmits.
    ServerRx,
    /// 02: the server transmits, the client receives.
    ServerTx,
    /// 03: both at once.
    Both,
}

impl Direction {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Direction::ServerRx => 1,
            Direction::ServerTx => 2,
            Direction::Both => 3,
        }
    }
    /// Does the server transmit data?
    pub fn server_tx(self) -> bool {
        matches!(self, Direction::ServerTx | Direction::Both)
    }
    /// Does the server receive data?
    pub fn server_rx(self) -> bool {
        matches!(self, Direction::ServerRx | Direction::Both)
    }
    /// Does `side` send data in this test? The wire names the direction from the server's
    /// view, so on the client `ServerRx` means we transmit; ask this instead of inverting
    /// [`Direction::server_rx`] by hand at each use (issue 20).
    pub fn we_transmit(self, side: Side) -> bool {
        match side {
            Side::Server => self.server_tx(),
            Side::Client => self.server_rx(),
        }
    }
    /// Does `side` receive data in this test?
    pub fn we_receive(self, side: Side) -> bool {
        match side {
            Side::Server => self.server_rx(),
            Side::Client => self.server_tx(),
        }
    }
    /// The client's UI word (RouterOS `direction=`).
    pub fn client_word(self) -> &'static str {
        match self {
            Direction::ServerRx => "transmit",
            Direction::ServerTx => "receive",
            Direction::Both => "both",
        }
    }
}

impl TryFrom<u8> for Direction {
    type Error = WireError;
    fn try_from(b: u8) -> Result<Self, WireError> {
        match b {
            1 => Ok(Direction::ServerRx),
            2 => Ok(Direction::ServerTx),
            3 => Ok(Direction::Both),
            v => Err(WireError::new(
                WireErrorKind::BadDirection,
                field::DIRECTION,
                v,
            )),
        }
    }
}

/// The 16-byte test command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// UDP or TCP.
    pub protocol: Protocol,
    /// Direction, server's view.
    pub direction: Direction,
    /// True: random payload (byte 2 = 00). False: zero payload (byte 2 = 01).
    pub random_data: bool,
    /// Raw connection count byte: 0 and 1 both mean one connection.
    pub connection_count: u8,
    /// UDP: datagram size the server sends, incl. IP+UDP headers. TCP: chunk size.
    pub tx_size: u16,
    /// Bytes 6-7, meaning unknown ("client buffer size" / btest.exe `localSize`).
    pub client_buf_size: u16,
    /// Bits per second the server may send; 0 = unlimited.
    pub remote_tx_speed: u32,
    /// Bits per second the client will send; 0 = unlimited. Informational.
    pub local_tx_speed: u32,
}

impl Command {
    /// Number of TCP connections (or client UDP sockets) the test uses: at least 1.
    pub fn connections(&self) -> usize {
        usize::from(self.connection_count.max(1))
    }

    /// Encodes the command.
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[field::PROTOCOL] = self.protocol.to_byte();
        b[field::DIRECTION] = self.direction.to_byte();
        b[field::RANDOM] = if self.random_data { 0 } else { 1 };
        b[field::CONN_COUNT] = self.connection_count;
        b[field::TX_SIZE].copy_from_slice(&self.tx_size.to_le_bytes());
        b[field::CLIENT_BUF].copy_from_slice(&self.client_buf_size.to_le_bytes());
        b[field::REMOTE_SPEED].copy_from_slice(&self.remote_tx_speed.to_le_bytes());
        b[field::LOCAL_SPEED].copy_from_slice(&self.local_tx_speed.to_le_bytes());
        b
    }

    /// The chunk size (TCP) or datagram wire size incl. IP+UDP headers (UDP) the server sends
    /// for this command: TCP 0 means 32768, the size RouterOS always sends; UDP is at least
    /// [`MIN_TX_SIZE`](super::datagram::MIN_TX_SIZE), the RouterOS floor (docs/protocol.md).
    pub fn effective_tx_size(&self) -> usize {
        match self.protocol {
            Protocol::Tcp if self.tx_size == 0 => usize::from(super::TCP_CHUNK_SIZE),
            Protocol::Tcp => usize::from(self.tx_size),
            Protocol::Udp => usize::from(self.tx_size.max(super::datagram::MIN_TX_SIZE)),
        }
    }

    /// Parses a command; a marker is rejected here (use [`Request::parse`]).
    pub fn parse(b: &[u8; LEN]) -> Result<Self, WireError> {
        let protocol = Protocol::try_from(b[field::PROTOCOL])?;
        let direction = Direction::try_from(b[field::DIRECTION])?;
        let random_data = match b[field::RANDOM] {
            0 => true,
            1 => false,
            v => {
                return Err(WireError::new(
                    WireErrorKind::BadRandomFlag,
                    field::RANDOM,
                    v,
                ))
            }
        };
        let u16_at = |r: std::ops::Range<usize>| u16::from_le_bytes([b[r.start], b[r.start + 1]]);
        let u32_at = |r: std::ops::Range<usize>| {
            u32::from_le_bytes([b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3]])
        };
        Ok(Command {
            protocol,
            direction,
            random_data,
            connection_count: b[field::CONN_COUNT],
            tx_size: u16_at(field::TX_SIZE),
            client_buf_size: u16_at(field::CLIENT_BUF),
            remote_tx_speed: u32_at(field::REMOTE_SPEED),
            local_tx_speed: u32_at(field::LOCAL_SPEED),
        })
    }
}

/// A session token: the two bytes of `01 t0 t1 00`, copied verbatim into markers.
pub type Token = [u8; 2];

/// Encodes a data-connection marker for `token`.
pub fn marker_to_bytes(token: Token) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0] = token[0];
    b[1] = token[1];
    b[field::RANDOM] = MARKER_BYTE;
    b
}

/// What a client sent in the 16-byte slot after the hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A new test.
    Command(Command),
    /// An extra data connection joining the session with this token.
    Join(Token),
}

impl Request {
    /// Tells a marker from a command (byte 2 = 02 only in a marker) and parses it.
    pub fn parse(b: &[u8; LEN]) -> Result<Self, WireError> {
        if b[field::RANDOM] == MARKER_BYTE {
            if let Some(i) = field::MARKER_PAD.clone().find(|&i| b[i] != 0) {
                return Err(WireError::new(WireErrorKind::BadMarker, i, b[i]));
            }
            return Ok(Request::Join([b[0], b[1]]));
        }
        Command::parse(b).map(Request::Command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 16] {
        let v: Vec<u8> = s
            .split_whitespace()
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    fn cmd(
        protocol: Protocol,
        direction: Direction,
        random_data: bool,
        connection_count: u8,
        tx_size: u16,
        remote: u32,
        local: u32,
    ) -> Command {
        Command {
            protocol,
            direction,
            random_data,
            connection_count,
            tx_size,
            client_buf_size: 0,
            remote_tx_speed: remote,
            local_tx_speed: local,
        }
    }

    /// Every command captured from RouterOS (reference section 3) and constructed (15.2).
    #[test]
    fn golden_commands_both_ways() {
        use Direction::*;
        use Protocol::*;
        let cases = [
            (
                "01 01 01 00 00 80 00 00 00 00 00 00 00 00 00 00",
                cmd(Tcp, ServerRx, false, 0, 32768, 0, 0),
            ),
            (
                "01 01 00 00 00 80 00 00 00 00 00 00 00 00 00 00",
                cmd(Tcp, ServerRx, true, 0, 32768, 0, 0),
            ),
            (
                "00 01 01 00 dc 05 00 00 00 00 00 00 00 00 00 00",
                cmd(Udp, ServerRx, false, 0, 1500, 0, 0),
            ),
            (
                "00 02 01 00 d0 07 00 00 00 00 00 00 00 00 00 00",
                cmd(Udp, ServerTx, false, 0, 2000, 0, 0),
            ),
            (
                "01 02 01 00 00 80 00 00 ff ff ff ff 00 00 00 00",
                cmd(Tcp, ServerTx, false, 0, 32768, u32::MAX, 0),
            ),
            (
                "01 02 01 0a 00 80 00 00 00 00 00 00 00 00 00 00",
                cmd(Tcp, ServerTx, false, 10, 32768, 0, 0),
            ),
            (
                "01 03 01 14 00 80 00 00 00 00 00 00 00 00 00 00",
                cmd(Tcp, Both, false, 20, 32768, 0, 0),
            ),
            (
                "00 03 01 00 e8 03 00 00 2c 01 00 00 2c 01 00 00",
                cmd(Udp, Both, false, 0, 1000, 300, 300),
            ),
            (
                "00 03 01 00 dc 05 00 00 00 e1 f5 05 80 f0 fa 02",
                cmd(Udp, Both, false, 0, 1500, 100_000_000, 50_000_000),
            ),
            (
                "01 02 00 04 00 80 00 00 00 00 00 00 00 00 00 00",
                cmd(Tcp, ServerTx, true, 4, 32768, 0, 0),
            ),
        ];
        for (bytes, want) in cases {
            let b = hex(bytes);
            assert_eq!(Command::parse(&b), Ok(want), "{bytes}");
            assert_eq!(Request::parse(&b), Ok(Request::Command(want)), "{bytes}");
            assert_eq!(want.to_bytes(), b, "{bytes}");
        }
    }

    #[test]
    fn client_buf_size_round_trips() {
        let b = hex("00 01 01 00 dc 05 34 12 00 00 00 00 00 00 00 00");
        let c = Command::parse(&b).unwrap();
        assert_eq!(c.client_buf_size, 0x1234);
        assert_eq!(c.to_bytes(), b);
    }

    #[test]
    fn effective_tx_size_golden() {
        let tcp = |n| cmd(Protocol::Tcp, Direction::Both, false, 0, n, 0, 0);
        let udp = |n| cmd(Protocol::Udp, Direction::Both, false, 0, n, 0, 0);
        assert_eq!(tcp(0).effective_tx_size(), 32768);
        assert_eq!(tcp(32768).effective_tx_size(), 32768);
        assert_eq!(tcp(1).effective_tx_size(), 1);
        assert_eq!(tcp(65535).effective_tx_size(), 65535);
        assert_eq!(udp(0).effective_tx_size(), 28);
        assert_eq!(udp(27).effective_tx_size(), 28);
        assert_eq!(udp(28).effective_tx_size(), 28);
        assert_eq!(udp(1500).effective_tx_size(), 1500);
        assert_eq!(udp(64000).effective_tx_size(), 64000);
    }

    #[test]
    fn direction_from_each_side() {
        use Direction::*;
        // (direction, client transmits, client receives): the client's UI words invert the wire.
        for (d, ctx, crx) in [
            (ServerRx, true, false),
            (ServerTx, false, true),
            (Both, true, true),
        ] {
            assert_eq!(d.we_transmit(Side::Client), ctx, "{d:?}");
            assert_eq!(d.we_receive(Side::Client), crx, "{d:?}");
            assert_eq!(d.we_transmit(Side::Server), crx, "{d:?}");
            assert_eq!(d.we_receive(Side::Server), ctx, "{d:?}");
            assert_eq!(d.we_transmit(Side::Server), d.server_tx());
        }
        assert_eq!(ServerRx.client_word(), "transmit");
    }

    #[test]
    fn connections_zero_and_one_mean_one() {
        let mut c = cmd(Protocol::Tcp, Direction::Both, false, 0, 32768, 0, 0);
        assert_eq!(c.connections(), 1);
        c.connection_count = 1;
        assert_eq!(c.connections(), 1);
        c.connection_count = 20;
        assert_eq!(c.connections(), 20);
    }

    #[test]
    fn marker_golden_both_ways() {
        let b = hex("bc 04 02 00 00 00 00 00 00 00 00 00 00 00 00 00");
        assert_eq!(Request::parse(&b), Ok(Request::Join([0xbc, 0x04])));
        assert_eq!(marker_to_bytes([0xbc, 0x04]), b);
    }

    #[test]
    fn rejections_name_the_byte() {
        let cases = [
            (
                "02 01 01 00 00 80 00 00 00 00 00 00 00 00 00 00",
                WireErrorKind::BadProtocol,
                0,
                2,
            ),
            (
                "ff 01 01 00 00 80 00 00 00 00 00 00 00 00 00 00",
                WireErrorKind::BadProtocol,
                0,
                0xff,
            ),
            (
                "01 00 01 00 00 80 00 00 00 00 00 00 00 00 00 00",
                WireErrorKind::BadDirection,
                1,
                0,
            ),
            (
                "01 04 01 00 00 80 00 00 00 00 00 00 00 00 00 00",
                WireErrorKind::BadDirection,
                1,
                4,
            ),
            (
                "01 01 03 00 00 80 00 00 00 00 00 00 00 00 00 00",
                WireErrorKind::BadRandomFlag,
                2,
                3,
            ),
            (
                "bc 04 02 00 00 00 00 00 00 00 00 00 00 00 00 01",
                WireErrorKind::BadMarker,
                15,
                1,
            ),
            (
                "bc 04 02 05 00 00 00 00 00 00 00 00 00 00 00 00",
                WireErrorKind::BadMarker,
                3,
                5,
            ),
        ];
        for (bytes, kind, offset, value) in cases {
            let e = Request::parse(&hex(bytes)).unwrap_err();
            assert_eq!(
                (e.kind, e.offset, e.value),
                (kind, offset, value),
                "{bytes}"
            );
        }
        // Command::parse alone never accepts a marker.
        let e =
            Command::parse(&hex("01 01 02 00 00 00 00 00 00 00 00 00 00 00 00 00")).unwrap_err();
        assert_eq!(e.kind, WireErrorKind::BadRandomFlag);
    }

    #[test]
    fn direction_views() {
        assert!(Direction::ServerRx.server_rx() && !Direction::ServerRx.server_tx());
        assert!(Direction::ServerTx.server_tx() && !Direction::ServerTx.server_rx());
        assert!(Direction::Both.server_tx() && Direction::Both.server_rx());
        assert_eq!(Direction::ServerRx.client_word(), "transmit");
        assert_eq!(Direction::ServerTx.client_word(), "receive");
    }
}
