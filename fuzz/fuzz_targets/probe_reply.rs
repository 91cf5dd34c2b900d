//! The latency probe's reply parsers (`probe::packet`), which read whatever arrives on the
//! probe socket: our 32-byte UDP echo datagram (`EchoDatagram::parse`) and ICMP/ICMPv6 echo
//! replies with or without an IPv4 header (`parse_icmp_echo_reply`, as raw and ping sockets
//! deliver them). Any host on the path can send these bytes.
//!
//! Input: byte 0 bits 0-1 choose ICMPv6 and "an IP header comes first", the rest is the
//! datagram. Properties asserted:
//! - `EchoDatagram::parse` is `Some` exactly for 32 bytes starting with `BTPROBE1`, and then
//!   encodes back to the same first 24 bytes (the padding is not read);
//! - `Echo2::parse` (issue 22) is `Some` exactly for 48 bytes starting with `BTPROBE2`, and
//!   then encodes back to the same first 40 bytes; never both parsers for the same bytes;
//! - a parsed ICMP reply is of the right type and code, carries a parseable probe whose low
//!   16 sequence bits equal the ICMP sequence, and for IPv4 a zero checksum residue;
//! - a request we build for a parsed probe, turned into a reply (type changed, checksum
//!   redone), parses back to the same probe.
#![no_main]

use btest::probe::packet::{
    self, Echo2, EchoDatagram, ECHO2_LEN, ECHO_LEN, ICMP_HEADER_LEN, MAGIC, MAGIC2,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, b)) = data.split_first() else {
        return;
    };
    let (v6, ip_header) = (mode & 1 == 1, mode & 2 == 2);

    let d = EchoDatagram::parse(b);
    assert_eq!(d.is_some(), b.len() == ECHO_LEN && b[..8] == MAGIC);
    if let Some(d) = d {
        assert_eq!(d.encode()[..24], b[..24]);
    }
    let d2 = Echo2::parse(b);
    assert_eq!(d2.is_some(), b.len() == ECHO2_LEN && b[..8] == MAGIC2);
    if let Some(d2) = d2 {
        assert_eq!(d2.encode()[..40], b[..40]);
        assert!(d.is_none());
    }

    if let Some(r) = packet::parse_icmp_echo_reply(b, v6, ip_header && !v6) {
        assert_eq!(r.probe.seq as u16, r.seq);
        // Rebuild the reply from a request for the same probe: it must parse the same.
        let mut reply = packet::icmp_echo_request(v6, r.ident, &r.probe);
        reply[0] = if v6 { 129 } else { 0 };
        if !v6 {
            reply[2] = 0;
            reply[3] = 0;
            let c = packet::internet_checksum(&reply);
            reply[2..4].copy_from_slice(&c.to_be_bytes());
            assert_eq!(packet::internet_checksum(&reply), 0);
        }
        let again = packet::parse_icmp_echo_reply(&reply, v6, false).expect("a rebuilt reply");
        assert_eq!(again.probe, r.probe);
        assert_eq!(reply.len(), ICMP_HEADER_LEN + ECHO_LEN);
    }
});
