//! The legacy MD5 login (`auth::md5`): the 48-byte client reply a server reads
//! (`reply_user`, `verify`) and the reply a client builds (`client_reply`). (The client reads
//! only a 16-byte challenge, which any bytes are, and the 4-byte final reply, fuzzed in
//! `control`.)
//!
//! Input: 48 bytes of reply, 16 of challenge (zero-padded), the rest is a password and, after
//! its first NUL, a user name for the encoder side. Properties asserted:
//! - `reply_user` is the user field up to its first NUL: at most 32 bytes, no NUL in it, a
//!   prefix of the field, followed by a NUL when shorter than 32;
//! - `verify(reply, Some(pw))` is true iff the reply's digest is `digest(pw, challenge)`, and
//!   `verify(reply, None)` (unknown user) is always false;
//! - round trip: `client_reply(user, pw, ch)` always verifies with `pw`, never without a
//!   user, and `reply_user` of it gives the name back (cut at 32 bytes and at a NUL);
//!   rebuilding a received reply from its own user name keeps that name.
#![no_main]

use btest::auth::md5::{self, CHALLENGE_LEN, DIGEST_LEN, REPLY_LEN, USER_FIELD_LEN};
use libfuzzer_sys::fuzz_target;

fn pad<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut b = [0u8; N];
    let n = data.len().min(N);
    b[..n].copy_from_slice(&data[..n]);
    b
}

fn expected_user(name: &[u8]) -> &[u8] {
    let name = &name[..name.len().min(USER_FIELD_LEN)];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    &name[..end]
}

fuzz_target!(|data: &[u8]| {
    let reply: [u8; REPLY_LEN] = pad(data);
    let challenge: [u8; CHALLENGE_LEN] = pad(data.get(REPLY_LEN..).unwrap_or_default());
    let rest = data.get(REPLY_LEN + CHALLENGE_LEN..).unwrap_or_default();
    let (password, user) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };

    // Server side: what it reads.
    let field = &reply[DIGEST_LEN..];
    let u = md5::reply_user(&reply);
    assert!(u.len() <= USER_FIELD_LEN);
    assert!(!u.contains(&0));
    assert_eq!(u, &field[..u.len()]);
    if u.len() < USER_FIELD_LEN {
        assert_eq!(field[u.len()], 0);
    }
    let digest = md5::digest(password, &challenge);
    assert_eq!(
        md5::verify(&reply, Some(password), &challenge),
        reply[..DIGEST_LEN] == digest
    );
    assert!(!md5::verify(&reply, None, &challenge));

    // Rebuilding the received reply from its own name keeps the name.
    let rebuilt = md5::client_reply(u, password, &challenge);
    assert_eq!(md5::reply_user(&rebuilt), u);
    assert_eq!(rebuilt[..DIGEST_LEN], digest);

    // Client side: what it sends.
    let sent = md5::client_reply(user, password, &challenge);
    assert_eq!(md5::reply_user(&sent), expected_user(user));
    assert!(md5::verify(&sent, Some(password), &challenge));
    assert!(!md5::verify(&sent, None, &challenge));
});
