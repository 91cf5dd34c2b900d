//! The 16-byte slot a client sends after the hello: `wire::Request::parse` (test command or
//! data-connection marker), `wire::Command::parse`, `Command::to_bytes` and `marker_to_bytes`.
//!
//! The first 16 input bytes (zero-padded) are the slot as the server reads it; the next 16
//! describe a command to encode. Properties asserted:
//! - an accepted command encodes back to exactly the 16 bytes it came from (every byte is
//!   modelled), and `Request::parse` and `Command::parse` agree on it;
//! - an accepted marker re-encodes to the same 16 bytes, and `Command::parse` never accepts it;
//! - a rejection names a byte inside the slot and that byte's real value;
//! - any command built from field values parses back to itself (`parse(to_bytes(c)) == c`);
//! - any marker built from a token parses back to `Join(token)`.
#![no_main]

use btest::wire::command::{self, Command, Direction, Protocol, Request, LEN};
use btest::wire::WireErrorKind;
use libfuzzer_sys::fuzz_target;

fn slot(data: &[u8]) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    let n = data.len().min(LEN);
    b[..n].copy_from_slice(&data[..n]);
    b
}

fn check_received(b: &[u8; LEN]) {
    let as_command = Command::parse(b);
    match Request::parse(b) {
        Ok(Request::Command(c)) => {
            assert_eq!(as_command, Ok(c));
            assert_eq!(
                &c.to_bytes(),
                b,
                "an accepted command must round-trip exactly"
            );
            assert_eq!(c.connections(), usize::from(b[3].max(1)));
            assert_eq!(c.random_data, b[2] == 0);
        }
        Ok(Request::Join(token)) => {
            assert_eq!(b[2], 2);
            assert_eq!(&command::marker_to_bytes(token), b);
            assert!(as_command.is_err(), "Command::parse accepted a marker");
        }
        Err(e) => {
            assert!(e.offset < LEN, "{e:?}");
            assert_eq!(b[e.offset], e.value, "{e:?}");
            assert!(!e.to_string().is_empty());
            if b[2] == 2 {
                assert_eq!(e.kind, WireErrorKind::BadMarker);
                assert!((3..LEN).contains(&e.offset) && e.value != 0);
            } else {
                assert_eq!(as_command, Err(e), "both parsers must give the same reason");
            }
        }
    }
}

fn check_encoded(f: &[u8; LEN]) {
    let c = Command {
        protocol: if f[0] & 1 == 0 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        direction: match f[1] % 3 {
            0 => Direction::ServerRx,
            1 => Direction::ServerTx,
            _ => Direction::Both,
        },
        random_data: f[2] & 1 == 0,
        connection_count: f[3],
        tx_size: u16::from_le_bytes([f[4], f[5]]),
        client_buf_size: u16::from_le_bytes([f[6], f[7]]),
        remote_tx_speed: u32::from_le_bytes([f[8], f[9], f[10], f[11]]),
        local_tx_speed: u32::from_le_bytes([f[12], f[13], f[14], f[15]]),
    };
    let b = c.to_bytes();
    assert_eq!(Command::parse(&b), Ok(c));
    assert_eq!(Request::parse(&b), Ok(Request::Command(c)));
    let token = [f[0], f[1]];
    assert_eq!(
        Request::parse(&command::marker_to_bytes(token)),
        Ok(Request::Join(token))
    );
}

fuzz_target!(|data: &[u8]| {
    check_received(&slot(data));
    check_encoded(&slot(data.get(LEN..).unwrap_or_default()));
});
