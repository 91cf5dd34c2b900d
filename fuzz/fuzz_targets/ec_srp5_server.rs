//! EC-SRP5, server role: the frames a server reads after `03 00 00 00` (`auth::ec_srp5`): the
//! 1-byte length framing (`frame`), MSG1 (`parse_msg1`, then `ServerHandshake::new` as far as
//! its parity check) and MSG3 (`ServerHandshake::on_msg3`), plus the unknown-user salt.
//!
//! Fast by design: `ServerHandshake::new` on a well-formed MSG1 does three scalar
//! multiplications (milliseconds), so it is called here only for MSG1s that its parity check
//! refuses before any curve math; the full curve path on fuzzed keys is the `ec_srp5_curve`
//! target. The server handshake MSG3 is checked against is built once, from the golden
//! vectors of /work/shared/vectors/ecsrp5-admin-secret.txt (its MSG2 is asserted equal to the
//! vector's).
//!
//! Input: the byte stream the server reads, `len MSG1 len MSG3` (a frame cut short ends it, as
//! EOF would). Properties asserted:
//! - `parse_msg1` equals a reference split (user before the first NUL, then `x_wa[32]`,
//!   `parity_wa`; too long, no NUL, too short give exactly the documented errors), for the
//!   framed payload and for the whole input unframed; re-encoding the parsed fields gives a
//!   prefix of the payload that parses to the same value;
//! - `frame(p)` is `len || p` for up to 255 bytes and `TooLong` above;
//! - a parity byte other than 0/1 is refused by `ServerHandshake::new` as `BadParity`;
//! - `on_msg3` accepts exactly the golden client proof (and then returns the golden MSG4),
//!   refuses any other 32 bytes as a proof mismatch and any other length as too short/long;
//! - `derived_salt` is a function of (key, user); `with_salt` changes only the salt.
#![no_main]

use std::sync::OnceLock;

use btest::auth::ec_srp5::{self, AuthError, Msg1, ServerHandshake, Verifier};
use libfuzzer_sys::fuzz_target;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

struct Golden {
    verifier: Verifier,
    server: ServerHandshake,
    msg3: Vec<u8>,
    msg4: Vec<u8>,
}

/// Golden vectors: user admin, password secret (ecsrp5-admin-secret.txt).
fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| {
        let verifier = Verifier::new(b"admin", b"secret", arr("000102030405060708090a0b0c0d0e0f"));
        let msg1 = hex("61646d696e006d16e19cb82b578153ca17692b1148af61a497f4c8e828cafa04c9bc1975340000");
        let s_b = arr("f1d8f6cb9a5a7e4b2979217866e66b8cf8845bbacb8f0a30b899498dcca176b1");
        let (server, msg2) =
            ServerHandshake::new(&verifier, &ec_srp5::parse_msg1(&msg1).unwrap(), s_b).unwrap();
        assert_eq!(
            msg2.to_vec(),
            hex("2bb9404820928d2353fe0c3a33f481a2c36112c9ee41ab83651e43d9d98ceb6601000102030405060708090a0b0c0d0e0f")
        );
        Golden {
            verifier,
            server,
            msg3: hex("93a96efa0624fbb6cc85294f43bfa213ffd4e30a5c708abd79994a5b212d60f8"),
            msg4: hex("4626f39aa843607144e6d9d7e0a481b00a2cc6f9b1b38b882bb4502a84ed6c06"),
        }
    })
}

/// The documented MSG1 layout, written out independently.
fn reference_msg1(p: &[u8]) -> Result<Msg1<'_>, AuthError> {
    if p.len() > ec_srp5::MAX_PAYLOAD_LEN {
        return Err(AuthError::TooLong {
            msg: "MSG1",
            got: p.len(),
            max: ec_srp5::MAX_PAYLOAD_LEN,
        });
    }
    let Some(nul) = p.iter().position(|&b| b == 0) else {
        return Err(AuthError::NoUserTerminator);
    };
    let need = nul + 1 + ec_srp5::MSG1_TAIL_LEN;
    if p.len() < need {
        return Err(AuthError::TooShort {
            msg: "MSG1",
            got: p.len(),
            need,
        });
    }
    Ok(Msg1 {
        user: &p[..nul],
        x_wa: p[nul + 1..nul + 33].try_into().unwrap(),
        parity_wa: p[nul + 33],
    })
}

fn check_msg1(p: &[u8]) {
    let got = ec_srp5::parse_msg1(p);
    assert_eq!(got, reference_msg1(p));
    match ec_srp5::frame(p) {
        Ok(f) => {
            assert!(p.len() <= ec_srp5::MAX_PAYLOAD_LEN);
            assert_eq!(usize::from(f[0]), p.len());
            assert_eq!(&f[1..], p);
        }
        Err(e) => {
            assert!(p.len() > ec_srp5::MAX_PAYLOAD_LEN);
            assert!(matches!(e, AuthError::TooLong { got, .. } if got == p.len()));
        }
    }
    let Ok(m) = got else { return };
    assert!(!m.user.contains(&0));
    let mut enc = m.user.to_vec();
    enc.push(0);
    enc.extend_from_slice(&m.x_wa);
    enc.push(m.parity_wa);
    assert_eq!(&p[..enc.len()], &enc[..]);
    assert_eq!(ec_srp5::parse_msg1(&enc), Ok(m.clone()));

    let g = golden();
    if m.parity_wa > 1 {
        let e = ServerHandshake::new(&g.verifier, &m, [7; 32]).unwrap_err();
        assert_eq!(
            e,
            AuthError::BadParity {
                field: "parity_wa",
                value: m.parity_wa
            }
        );
        assert!(!e.to_string().is_empty());
    }
    let key = [0x5a; 32];
    let salt = ec_srp5::derived_salt(&key, m.user);
    assert_eq!(salt, ec_srp5::derived_salt(&key, m.user));
    let stand_in = g.verifier.with_salt(salt);
    assert_eq!(stand_in.salt(), salt);
    assert_eq!(stand_in.x_gamma(), g.verifier.x_gamma());
    assert_eq!(stand_in.gamma_parity(), g.verifier.gamma_parity());
}

fn check_msg3(p: &[u8]) {
    let g = golden();
    match g.server.on_msg3(p) {
        Ok(msg4) => {
            assert_eq!(p, &g.msg3[..]);
            assert_eq!(&msg4[..], &g.msg4[..]);
        }
        Err(e) => {
            assert_ne!(p, &g.msg3[..]);
            let want = match p.len() {
                32 => AuthError::ProofMismatch { side: "client" },
                n if n < 32 => AuthError::TooShort {
                    msg: "MSG3",
                    got: n,
                    need: 32,
                },
                n => AuthError::TooLong {
                    msg: "MSG3",
                    got: n,
                    max: 32,
                },
            };
            assert_eq!(e, want);
        }
    }
}

/// One frame as the server's `read_frame` takes it: `None` if the stream ends first.
fn next_frame(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = data.split_first()?;
    let len = usize::from(len);
    (rest.len() >= len).then(|| rest.split_at(len))
}

fuzz_target!(|data: &[u8]| {
    check_msg1(data);
    let Some((msg1, rest)) = next_frame(data) else {
        return;
    };
    check_msg1(msg1);
    if let Some((msg3, _)) = next_frame(rest) {
        check_msg3(msg3);
    }
});
