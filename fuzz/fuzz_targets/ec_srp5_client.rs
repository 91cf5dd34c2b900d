//! EC-SRP5, client role: the frames a client reads after sending MSG1 (`auth::ec_srp5`): MSG2
//! (`ClientHandshake::on_msg2`, as far as its framing and parity checks) and MSG4
//! (`ClientHandshake::on_msg4`), and the order of the steps.
//!
//! Fast by design: `on_msg2` on a well-formed MSG2 lifts `x_wb` and does three scalar
//! multiplications (milliseconds), so here it only meets MSG2s that are refused before any
//! curve math (too short, a parity byte other than 0/1, a second MSG2, a client with no key);
//! the full curve path on fuzzed keys is the `ec_srp5_curve` target. The client MSG4 is
//! checked against has been run once through the golden vectors of
//! /work/shared/vectors/ecsrp5-admin-secret.txt (its MSG1 and MSG3 are asserted equal to
//! the vector's).
//!
//! Input: the byte stream the client reads, `len MSG2 len MSG4` (a frame cut short ends it,
//! as EOF would). Properties asserted:
//! - a MSG2 shorter than 49 bytes is `TooShort` with the right counts; a longer one with a bad
//!   parity byte is `BadParity` naming it; a client whose key is degenerate refuses any
//!   complete MSG2 as `Degenerate`; a second MSG2 is always `OutOfOrder`;
//! - `on_msg4` accepts exactly the golden server proof, refuses any other 32 bytes as a proof
//!   mismatch and any other length as too short/long; before a MSG2 it is `OutOfOrder`.
#![no_main]

use std::sync::{Mutex, OnceLock};

use btest::auth::ec_srp5::{self, AuthError, ClientHandshake};
use libfuzzer_sys::fuzz_target;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Golden {
    /// Has processed the golden MSG2.
    client: Mutex<ClientHandshake>,
    /// Has sent MSG1 and waits for a MSG2. A MSG2 refused before the curve math leaves a
    /// client unchanged, so one serves every input.
    fresh: Mutex<ClientHandshake>,
    msg4: Vec<u8>,
}

/// Golden vectors: user admin, password secret (ecsrp5-admin-secret.txt).
fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| {
        let s_a: [u8; 32] = hex("d74f44c460bd99bfb4fc62b142025787b514e1bce88577f57e39b72b1788742f")
            .try_into()
            .unwrap();
        let (mut client, msg1) = ClientHandshake::new(b"admin", b"secret", s_a);
        let (fresh, _) = ClientHandshake::new(b"admin", b"secret", s_a);
        assert_eq!(
            msg1,
            hex("61646d696e006d16e19cb82b578153ca17692b1148af61a497f4c8e828cafa04c9bc1975340000")
        );
        let msg2 = hex("2bb9404820928d2353fe0c3a33f481a2c36112c9ee41ab83651e43d9d98ceb6601000102030405060708090a0b0c0d0e0f");
        let msg3 = client.on_msg2(&msg2).unwrap();
        assert_eq!(
            msg3.to_vec(),
            hex("93a96efa0624fbb6cc85294f43bfa213ffd4e30a5c708abd79994a5b212d60f8")
        );
        Golden {
            client: Mutex::new(client),
            fresh: Mutex::new(fresh),
            msg4: hex("4626f39aa843607144e6d9d7e0a481b00a2cc6f9b1b38b882bb4502a84ed6c06"),
        }
    })
}

fn proof_len_error(msg: &'static str, n: usize) -> AuthError {
    if n < ec_srp5::PROOF_LEN {
        AuthError::TooShort {
            msg,
            got: n,
            need: ec_srp5::PROOF_LEN,
        }
    } else {
        AuthError::TooLong {
            msg,
            got: n,
            max: ec_srp5::PROOF_LEN,
        }
    }
}

fn check_msg2(p: &[u8]) {
    let g = golden();
    let again = g.client.lock().unwrap().on_msg2(p);
    assert_eq!(
        again,
        Err(AuthError::OutOfOrder {
            what: "MSG2 processed twice"
        })
    );

    // s_a = 0 has no public key: MSG1 carries a placeholder and no MSG2 can succeed. Cheap:
    // a multiplication by zero does no work.
    let (mut keyless, msg1) = ClientHandshake::new(b"admin", b"secret", [0; 32]);
    assert_eq!(msg1[6..], [0; 33]);
    assert_eq!(
        keyless.on_msg4(p),
        Err(AuthError::OutOfOrder {
            what: "MSG4 before a successful MSG2"
        })
    );
    let e = keyless.on_msg2(p).unwrap_err();
    if p.len() < ec_srp5::MSG2_LEN {
        assert_eq!(
            e,
            AuthError::TooShort {
                msg: "MSG2",
                got: p.len(),
                need: ec_srp5::MSG2_LEN
            }
        );
        return;
    }
    assert_eq!(e, AuthError::Degenerate { point: "W_a" });
    let parity = p[32];
    if parity > 1 {
        let mut c = g.fresh.lock().unwrap();
        let e = c.on_msg2(p).unwrap_err();
        assert_eq!(
            e,
            AuthError::BadParity {
                field: "parity_wb",
                value: parity
            }
        );
        assert!(!e.to_string().is_empty());
        // A failed MSG2 leaves the client waiting for a MSG2, not a MSG4.
        assert!(matches!(c.on_msg4(p), Err(AuthError::OutOfOrder { .. })));
    }
}

fn check_msg4(p: &[u8]) {
    let g = golden();
    let r = g.client.lock().unwrap().on_msg4(p);
    if p == g.msg4 {
        assert_eq!(r, Ok(()));
    } else if p.len() == ec_srp5::PROOF_LEN {
        assert_eq!(r, Err(AuthError::ProofMismatch { side: "server" }));
    } else {
        assert_eq!(r, Err(proof_len_error("MSG4", p.len())));
    }
}

/// One frame as the client's `read_frame` takes it: `None` if the stream ends first.
fn next_frame(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = data.split_first()?;
    let len = usize::from(len);
    (rest.len() >= len).then(|| rest.split_at(len))
}

fuzz_target!(|data: &[u8]| {
    let Some((msg2, rest)) = next_frame(data) else {
        return;
    };
    check_msg2(msg2);
    if let Some((msg4, _)) = next_frame(rest) {
        check_msg4(msg4);
    }
});
