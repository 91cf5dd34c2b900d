//! The server's handshake machine (`handshake::Server`) fed whatever a client may send, in
//! whatever pieces it arrives: hello, the command or a join marker, the MD5 reply, EC-SRP5's
//! MSG1 and MSG3 frames, up to the OK and the UDP port.
//!
//! Input: byte 0 sets the server up (bits 0-1: login none, MD5, EC-SRP5, none; bit 2: the
//! login rate limit refuses; bit 3: the admission refuses; bit 4: a session token; bit 5: the
//! UDP port pool refuses), byte 1 seeds the chunk sizes, the rest is the byte stream. The
//! account is admin/secret (the vectors' EC-SRP5 salt), so a seed corpus of the golden
//! transcripts reaches every accepting path. Properties asserted:
//! - the outcome, the bytes sent and the bytes taken are the same whether the stream comes
//!   whole or in the seeded pieces (a split never changes a handshake);
//! - a `Need` is 1..=256 bytes and `feed` never takes more than it, nor any byte past a
//!   finished handshake: a session's command and login take exactly their bytes;
//! - the first bytes sent are the hello; a join is exactly a valid marker; a session is
//!   admitted once, after a login when one is due, and then told OK (with the token, if any)
//!   and its UDP port; each refusal comes from the policy that refused.
#![no_main]

use std::sync::OnceLock;

use btest::auth::{ec_srp5, md5, AuthMethod};
use btest::handshake::server::{Policy, ServerError};
use btest::handshake::{Server, Step};
use btest::wire::{self, command, Command, Protocol, Request};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static ec_srp5::Verifier {
    static V: OnceLock<ec_srp5::Verifier> = OnceLock::new();
    V.get_or_init(|| ec_srp5::Verifier::new(b"admin", b"secret", std::array::from_fn(|i| i as u8)))
}

struct Fixed {
    method: AuthMethod,
    allow_login: bool,
    admit: Option<Option<command::Token>>,
    port: Option<u16>,
    logins: usize,
    admits: usize,
}

impl Policy for Fixed {
    fn method(&self) -> AuthMethod {
        self.method
    }
    fn begin_login(&mut self) -> bool {
        self.logins += 1;
        self.allow_login
    }
    fn md5_check(&self, reply: &[u8; md5::REPLY_LEN], challenge: &[u8; md5::CHALLENGE_LEN]) -> bool {
        let known = md5::reply_user(reply) == b"admin";
        md5::verify(reply, known.then_some(&b"secret"[..]), challenge)
    }
    fn ec_verifier(&self, _user: &[u8]) -> ec_srp5::Verifier {
        verifier().clone()
    }
    fn admit(&mut self, _cmd: &Command, _user: Option<&[u8]>) -> Option<Option<command::Token>> {
        self.admits += 1;
        self.admit
    }
    fn udp_port(&mut self, _cmd: &Command) -> Option<u16> {
        self.port
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    sent: Vec<u8>,
    end: String,
    taken: usize,
    logins: usize,
    admits: usize,
}

fn policy(cfg: u8) -> Fixed {
    Fixed {
        method: match cfg & 3 {
            1 => AuthMethod::Md5,
            2 => AuthMethod::EcSrp5,
            _ => AuthMethod::None,
        },
        allow_login: cfg & 4 == 0,
        admit: (cfg & 8 == 0).then_some((cfg & 16 != 0).then_some([0xbc, 0x04])),
        port: (cfg & 32 == 0).then_some(2001),
        logins: 0,
        admits: 0,
    }
}

fn run(cfg: u8, stream: &[u8], seed: Option<u8>) -> Run {
    let mut p = policy(cfg);
    let mut m = Server::new([0x11; 16], [0x22; 32]);
    let mut sent = Vec::new();
    let (mut pos, mut i) = (0, 0u32);
    let end = loop {
        match m.poll(&mut p) {
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
                    Some(s) => 1 + (usize::from(s).wrapping_mul(31) + i as usize * 7) % 23,
                };
                i += 1;
                let chunk = &stream[pos..(pos + size).min(stream.len())];
                let took = m.feed(chunk);
                assert!(took >= 1 && took <= n && took <= chunk.len(), "took {took} of {n}");
                pos += took;
            }
            Ok(Step::Done(o)) => break format!("Done({o:?})"),
            Err(e) => {
                if e == ServerError::WrongLogin {
                    sent.extend_from_slice(m.farewell());
                }
                break format!("Err({e:?})");
            }
        }
    };
    Run {
        sent,
        end,
        taken: pos,
        logins: p.logins,
        admits: p.admits,
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
    assert_eq!(&whole.sent[..4], &wire::HELLO);
    let p = policy(cfg);
    let slot: Option<[u8; 16]> = stream.get(..16).map(|b| b.try_into().unwrap());
    let request = slot.map(|b| Request::parse(&b));
    if whole.end == "Starved" {
        assert_eq!(whole.taken, stream.len());
    }
    if whole.end.starts_with("Done(Join") {
        assert!(matches!(request, Some(Ok(Request::Join(_)))));
        assert_eq!((whole.taken, whole.sent.len(), whole.logins), (16, 4, 0));
    }
    if let Some(Ok(Request::Command(c))) = request {
        let login = p.method != AuthMethod::None;
        assert_eq!(whole.logins, usize::from(login));
        if whole.end == "Err(LoginRefused)" {
            assert!(!p.allow_login);
        }
        if whole.admits == 1 && p.admit.is_none() {
            assert_eq!(whole.end, "Err(Refused)");
        }
        if whole.end == "Done(Session)" {
            assert_eq!(whole.admits, 1);
            let ok = match p.admit {
                Some(Some(t)) => [1, t[0], t[1], 0],
                _ => [1, 0, 0, 0],
            };
            let udp = c.protocol == Protocol::Udp;
            let tail = if udp { 6 } else { 4 };
            let n = whole.sent.len();
            assert_eq!(&whole.sent[n - tail..n - tail + 4], &ok);
            if udp {
                assert_eq!(&whole.sent[n - 2..], &2001u16.to_be_bytes());
            }
            if p.method == AuthMethod::Md5 {
                assert_eq!(whole.taken, 16 + md5::REPLY_LEN);
            }
            if p.method == AuthMethod::None {
                assert_eq!(whole.taken, 16);
            }
        }
    } else if let Some(Err(_)) = request {
        assert!(whole.end.starts_with("Err(BadCommand("), "{}", whole.end);
        assert_eq!(whole.taken, 16);
    }
});
