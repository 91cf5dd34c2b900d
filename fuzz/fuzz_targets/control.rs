//! The small fixed-size control messages: the 12-byte status (`wire::status::Status::parse`,
//! both roles, every second on connection 0), the 4-byte server reply (`wire::reply::Reply`,
//! read by the client), the hello (`wire::parse_hello`) and the announced UDP port
//! (`wire::parse_udp_port`).
//!
//! The input's first bytes (zero-padded) are each message as received; the bytes from offset
//! 12 on are field values to encode. Properties asserted:
//! - status: accepted iff byte 0 is `07`; the fields are the little-endian bytes; the CPU is
//!   `None` iff bit 7 of byte 1 is clear and the byte is not 1..=100 (RouterOS 7.x's bare
//!   percentage), never above 100; `parse(to_bytes(s)) == s`, and
//!   `to_bytes` restores the input exactly when it was canonical (reserved bytes zero, CPU
//!   byte `00` or `80 | 0..=100`); `Status::new` round-trips and saturates;
//! - reply: an accepted reply encodes back to exactly its 4 bytes; every reply but the
//!   impossible all-zero token round-trips from the encoder side;
//! - hello: accepted iff the bytes are `01 00 00 00`, else the first differing byte is named;
//! - UDP port: accepted iff non-zero, big-endian, and `udp_port_to_bytes` gives the bytes back.
//!
//! Every rejection names a byte inside its message and that byte's real value.
#![no_main]

use btest::wire::{self, reply, status, Reply, Status, WireError, WireErrorKind};
use libfuzzer_sys::fuzz_target;

fn pad<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut b = [0u8; N];
    let n = data.len().min(N);
    b[..n].copy_from_slice(&data[..n]);
    b
}

fn names_byte(e: &WireError, b: &[u8]) {
    assert!(e.offset < b.len(), "{e:?}");
    assert_eq!(b[e.offset], e.value, "{e:?}");
    assert!(!e.to_string().is_empty());
}

fn check_status(b: &[u8; status::LEN]) {
    match Status::parse(b) {
        Ok(s) => {
            assert_eq!(b[0], status::TYPE);
            assert_eq!(s.seq, u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
            assert_eq!(
                s.bytes_received,
                u32::from_le_bytes([b[8], b[9], b[10], b[11]])
            );
            // No CPU: byte 1 is 00, or without the valid bit and above 100; a bare 1..=100 is
            // RouterOS 7.x's CPU percentage (issue 19).
            assert_eq!(
                s.cpu.is_none(),
                b[1] & status::CPU_VALID == 0 && !(1..=100).contains(&b[1])
            );
            assert!(s.cpu.is_none_or(|c| c <= 100));
            let again = s.to_bytes();
            assert_eq!(Status::parse(&again), Ok(s), "parse(to_bytes(s)) == s");
            let canonical_cpu = b[1] == 0 || (b[1] & status::CPU_VALID != 0 && b[1] & 0x7f <= 100);
            if canonical_cpu && b[2] == 0 && b[3] == 0 {
                assert_eq!(&again, b, "a canonical status must round-trip exactly");
            }
        }
        Err(e) => {
            assert_eq!(e.kind, WireErrorKind::BadStatusType);
            assert_ne!(b[0], status::TYPE);
            names_byte(&e, b);
        }
    }
}

fn check_reply(b: &[u8; reply::LEN]) {
    match Reply::parse(b) {
        Ok(r) => assert_eq!(
            &r.to_bytes(),
            b,
            "an accepted reply must round-trip exactly"
        ),
        Err(e) => {
            assert_eq!(e.kind, WireErrorKind::UnknownReply);
            names_byte(&e, b);
            assert_ne!(e.value, 0, "a zero byte is never the offending one");
        }
    }
}

fn check_hello_and_port(b: &[u8; 4]) {
    match wire::parse_hello(b) {
        Ok(()) => assert_eq!(*b, wire::HELLO),
        Err(e) => {
            assert_eq!(e.kind, WireErrorKind::BadHello);
            names_byte(&e, b);
            assert_eq!(b[..e.offset], wire::HELLO[..e.offset]);
            assert_ne!(b[e.offset], wire::HELLO[e.offset]);
        }
    }
    let p = [b[0], b[1]];
    match wire::parse_udp_port(&p) {
        Ok(port) => {
            assert_ne!(port, 0);
            assert_eq!(port, u16::from_be_bytes(p));
            assert_eq!(wire::udp_port_to_bytes(port), p);
        }
        Err(e) => {
            assert_eq!(e.kind, WireErrorKind::BadPort);
            assert_eq!(p, [0, 0]);
        }
    }
}

fn check_encoders(f: &[u8; 16]) {
    let seq = u32::from_le_bytes([f[1], f[2], f[3], f[4]]);
    let bytes = u64::from_le_bytes([f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12]]);
    let s = Status::new(f[0], seq, bytes);
    assert_eq!(s.cpu, Some(f[0].min(100)));
    assert_eq!(u64::from(s.bytes_received), bytes.min(u64::from(u32::MAX)));
    assert_eq!(Status::parse(&s.to_bytes()), Ok(s));

    let token = [f[14], f[15]];
    let r = match f[13] % 5 {
        0 => Reply::Ok,
        1 => Reply::OkToken(token),
        2 => Reply::NeedMd5,
        3 => Reply::NeedEcSrp5,
        _ => Reply::Failed,
    };
    let want = match r {
        // `01 00 00 00` is the plain OK: a server never hands out the all-zero token.
        Reply::OkToken([0, 0]) => Reply::Ok,
        other => other,
    };
    assert_eq!(Reply::parse(&r.to_bytes()), Ok(want));
}

fuzz_target!(|data: &[u8]| {
    check_status(&pad(data));
    check_reply(&pad(data));
    check_hello_and_port(&pad(data));
    check_encoders(&pad(data.get(status::LEN..).unwrap_or_default()));
});
