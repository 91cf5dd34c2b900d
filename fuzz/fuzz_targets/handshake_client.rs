//! The client's handshake machine (`handshake::Client`) fed whatever a server may send, in
//! whatever pieces it arrives: the hello, the reply to the command, the MD5 challenge,
//! EC-SRP5's MSG2 and MSG4 frames, the verdict and the UDP port; and a join connection's
//! hello.
//!
//! Input: byte 0 sets the client up (bit 0: UDP; bits 1-2: no credentials, admin/secret, a
//! user name too long for EC-SRP5, admin/wrong; bit 3: a join connection), byte 1 seeds the
//! chunk sizes, the rest is the byte stream. EC-SRP5's scalar is the vectors' `s_a`, so a seed
//! corpus of the golden transcript reaches the accepting path. Properties asserted:
//! - the outcome, the bytes sent and the bytes taken are the same whether the stream comes
//!   whole or in the seeded pieces;
//! - a `Need` is 1..=256 bytes and `feed` never takes more than it, nor a byte past a
//!   finished handshake;
//! - the first bytes sent are the command (or the marker); an accepted handshake was
//!   accepted by an OK, a UDP one has a port of 1024 or more, a login is asked only of a client
//!   with credentials, and a join takes exactly the hello.
#![no_main]

use btest::handshake::{client::ClientError, Client, Step};
use btest::wire::{Command, Direction, Protocol};
use libfuzzer_sys::fuzz_target;

const S_A: [u8; 32] = [
    0xd7, 0x4f, 0x44, 0xc4, 0x60, 0xbd, 0x99, 0xbf, 0xb4, 0xfc, 0x62, 0xb1, 0x42, 0x02, 0x57, 0x87,
    0xb5, 0x14, 0xe1, 0xbc, 0xe8, 0x85, 0x77, 0xf5, 0x7e, 0x39, 0xb7, 0x2b, 0x17, 0x88, 0x74, 0x2f,
];

fn command(udp: bool) -> Command {
    Command {
        protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
        direction: Direction::ServerTx,
        random_data: true,
        connection_count: 4,
        tx_size: 32768,
        client_buf_size: 0,
        remote_tx_speed: 0,
        local_tx_speed: 0,
    }
}

static LONG: [u8; 300] = [b'u'; 300];

fn creds(cfg: u8) -> Option<(&'static [u8], &'static [u8])> {
    match (cfg >> 1) & 3 {
        0 => None,
        1 => Some((b"admin", b"secret")),
        2 => Some((&LONG[..], b"secret")),
        _ => Some((b"admin", b"wrong")),
    }
}

fn machine(cfg: u8) -> Client<'static> {
    if cfg & 8 != 0 {
        Client::join([0xbc, 0x04])
    } else {
        Client::new(&command(cfg & 1 == 1), creds(cfg), S_A)
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    sent: Vec<u8>,
    end: String,
    taken: usize,
}

fn run(cfg: u8, stream: &[u8], seed: Option<u8>) -> Run {
    let mut m = machine(cfg);
    let mut sent = Vec::new();
    let (mut pos, mut i) = (0, 0usize);
    let end = loop {
        match m.poll() {
            Ok(Step::Send(b, _)) => {
                assert!(!b.is_empty() && b.len() <= 256);
                sent.extend_from_slice(b);
            }
            Ok(Step::Need(n, _)) => {
                assert!((1..=256).contains(&n), "need {n}");
                if pos == stream.len() {
                    break "Starved".to_string();
                }
                let size = match seed {
                    None => stream.len() - pos,
                    Some(s) => 1 + (usize::from(s).wrapping_mul(31) + i * 7) % 23,
                };
                i += 1;
                let chunk = &stream[pos..(pos + size).min(stream.len())];
                let took = m.feed(chunk);
                assert!(took >= 1 && took <= n && took <= chunk.len(), "took {took} of {n}");
                pos += took;
            }
            Ok(Step::Done(o)) => {
                if let Some(p) = o.udp_port {
                    assert!(p >= 1024);
                }
                break format!("Done({o:?})");
            }
            Err(e) => {
                if let ClientError::NoCredentials(_) = e {
                    assert!(creds(cfg).is_none());
                }
                break format!("Err({e:?})");
            }
        }
    };
    Run {
        sent,
        end,
        taken: pos,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, stream)) = rest.split_first() else {
        return;
    };
    let whole = run(cfg, stream, None);
    assert_eq!(run(cfg, stream, Some(seed)), whole, "a split changed the handshake");
    if whole.end == "Starved" {
        assert_eq!(whole.taken, stream.len());
    }
    if stream.len() >= 4 && stream[..4] == [1, 0, 0, 0] {
        let first = if cfg & 8 != 0 {
            btest::wire::command::marker_to_bytes([0xbc, 0x04])
        } else {
            command(cfg & 1 == 1).to_bytes()
        };
        assert_eq!(&whole.sent[..16], &first);
    }
    if whole.end.starts_with("Done") {
        if cfg & 8 != 0 {
            assert_eq!((whole.taken, whole.sent.len()), (4, 16));
        } else {
            assert!(whole.end.contains("reply: Ok"), "{}", whole.end);
            assert_eq!(whole.end.contains("udp_port: Some"), cfg & 1 == 1);
            if whole.end.contains("auth: None") {
                assert_eq!(whole.taken, if cfg & 1 == 1 { 10 } else { 8 });
            }
        }
    }
});
