//! EC-SRP5 with the curve math (`auth::ec_srp5`): what the fast `ec_srp5_server` and
//! `ec_srp5_client` targets stop short of. A peer's public key goes through `lift_x`, the
//! Jacobian double-and-add and `redp1` here.
//!
//! Slow by nature: one input costs 3 to 7 scalar multiplications on num-bigint (a few
//! milliseconds), so this target runs at hundreds, not hundreds of thousands, of executions
//! per second; docs/fuzzing.md has its measured rate.
//!
//! Byte 0 picks the mode:
//! - 0, server: `s_b` (32 bytes), then a MSG1 payload; `parse_msg1` then
//!   `ServerHandshake::new` against the golden admin/secret verifier. A refusal is only ever
//!   a bad parity, an x that is not on the curve, or a degenerate point; an accepted key gives
//!   a MSG2 with parity 0/1 and the verifier's salt, and the resulting handshake refuses a
//!   wrong proof.
//! - 1, client: `s_a` (32 bytes), then a MSG2 payload for `ClientHandshake::on_msg2`. A
//!   refusal is only ever too short, a bad parity, an x not on the curve, or degenerate; an
//!   accepted MSG2 leaves a client that refuses a wrong MSG4 and a second MSG2.
//! - 2, an honest login with fuzzed secrets: `s_a`, `s_b` (32 each), salt (16), then
//!   `user NUL password`. Property: a client and a server that follow the protocol always
//!   agree (MSG1 parses back to the user and key, MSG3 is accepted, MSG4 is accepted), unless
//!   a scalar is degenerate, and then the only error is `Degenerate`. A scalar in
//!   `1..2^252` (below the group order) must always succeed.
#![no_main]

use std::sync::OnceLock;

use btest::auth::ec_srp5::{self, AuthError, ClientHandshake, ServerHandshake, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let salt = std::array::from_fn(|i| i as u8); // 00 01 .. 0f, as in the vectors
        Verifier::new(b"admin", b"secret", salt)
    })
}

fn take<const N: usize>(data: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, rest) = data.split_at_checked(N)?;
    Some((head.try_into().ok()?, rest))
}

/// Non-zero and below 2^252 < r: a scalar that cannot be a multiple of the group order.
fn surely_good(s: &[u8; 32]) -> bool {
    s[0] < 0x10 && s.iter().any(|&b| b != 0)
}

fn server(data: &[u8]) {
    let Some((s_b, payload)) = take::<32>(data) else {
        return;
    };
    let Ok(m) = ec_srp5::parse_msg1(payload) else {
        return;
    };
    let v = verifier();
    match ServerHandshake::new(v, &m, s_b) {
        Ok((hs, msg2)) => {
            assert!(m.parity_wa <= 1);
            assert!(msg2[32] <= 1, "parity_wb {}", msg2[32]);
            assert_eq!(msg2[33..], v.salt());
            assert_eq!(
                hs.on_msg3(&[0; 32]),
                Err(AuthError::ProofMismatch { side: "client" })
            );
        }
        Err(e) => assert!(
            matches!(
                e,
                AuthError::BadParity {
                    field: "parity_wa",
                    ..
                } | AuthError::NotOnCurve { field: "x_wa" }
                    | AuthError::Degenerate { .. }
            ),
            "{e:?}"
        ),
    }
}

fn client(data: &[u8]) {
    let Some((s_a, msg2)) = take::<32>(data) else {
        return;
    };
    let (mut c, _msg1) = ClientHandshake::new(b"admin", b"secret", s_a);
    match c.on_msg2(msg2) {
        Ok(_msg3) => {
            assert!(msg2.len() >= ec_srp5::MSG2_LEN && msg2[32] <= 1);
            assert_eq!(
                c.on_msg4(&[0; 32]),
                Err(AuthError::ProofMismatch { side: "server" })
            );
            assert!(matches!(c.on_msg2(msg2), Err(AuthError::OutOfOrder { .. })));
        }
        Err(e) => assert!(
            matches!(
                e,
                AuthError::TooShort { msg: "MSG2", .. }
                    | AuthError::BadParity {
                        field: "parity_wb",
                        ..
                    }
                    | AuthError::NotOnCurve { field: "x_wb" }
                    | AuthError::Degenerate { .. }
            ),
            "{e:?}"
        ),
    }
}

/// Runs one honest login; `Err` only from the step that failed.
fn login(
    user: &[u8],
    password: &[u8],
    salt: [u8; ec_srp5::SALT_LEN],
    s_a: [u8; 32],
    s_b: [u8; 32],
) -> Result<(), AuthError> {
    let v = Verifier::new(user, password, salt);
    let (mut c, msg1) = ClientHandshake::new(user, password, s_a);
    let framed = ec_srp5::frame(&msg1)?;
    assert_eq!(usize::from(framed[0]), msg1.len());
    let m = ec_srp5::parse_msg1(&framed[1..]).expect("our own MSG1 must parse");
    assert_eq!(m.user, user);
    let (hs, msg2) = ServerHandshake::new(&v, &m, s_b)?;
    assert_eq!(msg2[33..], salt);
    let msg3 = c.on_msg2(&msg2)?;
    let msg4 = hs
        .on_msg3(&msg3)
        .expect("the server must accept an honest client's proof");
    c.on_msg4(&msg4)
        .expect("the client must accept an honest server's proof");
    Ok(())
}

fn honest(data: &[u8]) {
    let Some((s_a, rest)) = take::<32>(data) else {
        return;
    };
    let Some((s_b, rest)) = take::<32>(rest) else {
        return;
    };
    let Some((salt, rest)) = take::<{ ec_srp5::SALT_LEN }>(rest) else {
        return;
    };
    let (user, password) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    if user.len() > ec_srp5::MAX_USER_LEN {
        return; // the client refuses such a name before sending anything
    }
    match login(user, password, salt, s_a, s_b) {
        Ok(()) => {}
        Err(e) => {
            assert!(matches!(e, AuthError::Degenerate { .. }), "{e:?}");
            assert!(
                !(surely_good(&s_a) && surely_good(&s_b)),
                "{e:?} with scalars below the group order"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => server(rest),
        1 => client(rest),
        _ => honest(rest),
    }
});
