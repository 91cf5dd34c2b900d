//! Legacy MD5 challenge/response (RouterOS before 6.43), protocol spec section 5.
//!
//! Owns: the digest `MD5(password || MD5(password || challenge))`, the 48-byte client
//! reply (digest then the zero-padded 32-byte user field) and the server's check of it.
//!
//! Must not: do I/O, pick the challenge (the caller draws 16 random bytes), decide what
//! to send on failure, or log anything. Invariant: [`verify`] does the same hashing and
//! the same constant-time comparison whether or not the user exists, so response timing
//! does not tell a client which user names are valid.
//!
//! Wire exchange, for reference:
//!
//! ```text
//! server -> client : 02 00 00 00 || challenge[16]        (20 bytes)
//! client -> server : digest[16]  || user field[32]       (48 bytes)
//! server -> client : 01 00 00 00 on success, 00 00 00 00 on failure
//! ```

use ::md5::{Digest, Md5};

/// Length of the random challenge the server sends after `02 00 00 00`.
pub const CHALLENGE_LEN: usize = 16;
/// Length of the MD5 digest at the start of the client reply.
pub const DIGEST_LEN: usize = 16;
/// Length of the user name field: the name, then zero bytes up to this length.
pub const USER_FIELD_LEN: usize = 32;
/// Length of the whole client reply: digest then user field.
pub const REPLY_LEN: usize = DIGEST_LEN + USER_FIELD_LEN;

/// Password hashed when the user is unknown, so that path costs what a real check costs.
/// Its value is irrelevant: the result is always rejected.
const DUMMY_PASSWORD: &[u8] = b"btest-unknown-user-dummy";

/// `MD5(password || challenge)`, the inner hash.
fn inner(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; DIGEST_LEN] {
    Md5::new()
        .chain_update(password)
        .chain_update(challenge)
        .finalize()
        .into()
}

/// The response digest `MD5(password || MD5(password || challenge))`.
///
/// `password` is the raw password bytes with no terminator; it may be empty.
pub fn digest(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; DIGEST_LEN] {
    let inner = inner(password, challenge);
    Md5::new()
        .chain_update(password)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A password made ready for the server's check: the MD5 state after hashing the password,
/// cloned at each login. Both hashes of [`digest`] start with the password, so a login then
/// hashes at most the last 63 bytes of it plus the challenge or inner digest, whatever the
/// password's length: a long password no longer makes a wrong login slower for a user that
/// exists than for one that does not (issue 18). Password-equivalent, never printed.
#[derive(Clone)]
pub struct Prepared(Md5);

impl Prepared {
    /// Hashes `password` once.
    pub fn new(password: &[u8]) -> Prepared {
        Prepared(Md5::new().chain_update(password))
    }

    /// [`digest`] of the prepared password.
    pub fn digest(&self, challenge: &[u8; CHALLENGE_LEN]) -> [u8; DIGEST_LEN] {
        let inner = self.0.clone().chain_update(challenge).finalize();
        self.0.clone().chain_update(inner).finalize().into()
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared(..)")
    }
}

/// [`verify`] against a [`Prepared`] password. With `None` the same clones, hashing and
/// comparison run against a prepared dummy and the answer is `false`. The work differs from a
/// known user's by at most two MD5 block compressions (the password's last partial block:
/// well under a microsecond, far below network jitter).
pub fn verify_prepared(
    reply: &[u8; REPLY_LEN],
    password: Option<&Prepared>,
    challenge: &[u8; CHALLENGE_LEN],
) -> bool {
    let dummy = Prepared::new(DUMMY_PASSWORD);
    let known = password.is_some();
    let expected = password.unwrap_or(&dummy).digest(challenge);
    let digest_ok = super::ct_eq(&expected, &reply[..DIGEST_LEN]);
    digest_ok & known
}

/// Builds the 48-byte client reply: the [`digest`], then `user` zero-padded to 32 bytes.
///
/// A user name of exactly 32 bytes has no terminator; a longer one is truncated to its
/// first 32 bytes, as the known implementations do (the server then sees the truncated name).
pub fn client_reply(
    user: &[u8],
    password: &[u8],
    challenge: &[u8; CHALLENGE_LEN],
) -> [u8; REPLY_LEN] {
    let mut reply = [0u8; REPLY_LEN];
    reply[..DIGEST_LEN].copy_from_slice(&digest(password, challenge));
    let n = user.len().min(USER_FIELD_LEN);
    reply[DIGEST_LEN..DIGEST_LEN + n].copy_from_slice(&user[..n]);
    reply
}

/// The user name carried in a client reply: the user field up to its first NUL byte
/// (all 32 bytes if there is none).
pub fn reply_user(reply: &[u8; REPLY_LEN]) -> &[u8] {
    let field = &reply[DIGEST_LEN..];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Server side: checks the digest in `reply` against `password` and the `challenge` sent.
///
/// The caller looks the user up by [`reply_user`] and passes its password, or `None` if
/// there is no such user. With `None` the same hashing and comparison run against a dummy
/// password and the answer is `false`, so the time taken does not reveal unknown users.
/// The comparison is constant-time.
pub fn verify(
    reply: &[u8; REPLY_LEN],
    password: Option<&[u8]>,
    challenge: &[u8; CHALLENGE_LEN],
) -> bool {
    let known = password.is_some();
    let expected = digest(password.unwrap_or(DUMMY_PASSWORD), challenge);
    let digest_ok = super::ct_eq(&expected, &reply[..DIGEST_LEN]);
    // Evaluate both operands (`&`, not `&&`) so the unknown-user path does the same work.
    digest_ok & known
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        assert_eq!(s.len() % 2, 0);
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr16(s: &str) -> [u8; 16] {
        hex(s).try_into().unwrap()
    }

    /// Vectors from /work/shared/vectors/md5.txt (the first one reproduces a real capture).
    /// (user, password, challenge, inner MD5, digest, 48-byte reply)
    const VECTORS: [(&str, &str, &str, &str, &str, &str); 3] = [
        (
            "test",
            "test",
            "ad32d6f94d28161625f2f390bb895637",
            "900db708059712018defa8814745eba1",
            "3c968565bc0314f281a6da1571cf7255",
            "3c968565bc0314f281a6da1571cf72557465737400000000000000000000000000000000000000000000000000000000",
        ),
        (
            "admin",
            "",
            "000102030405060708090a0b0c0d0e0f",
            "1ac1ef01e96caf1be0d329331a4fc2a8",
            "e0542db5418c43d256a6a643afa553fe",
            "e0542db5418c43d256a6a643afa553fe61646d696e000000000000000000000000000000000000000000000000000000",
        ),
        (
            "admin",
            "secret",
            "000102030405060708090a0b0c0d0e0f",
            "560ec9449092d367ca5efb706cd4e707",
            "9a93c18b7a1ef40299d1b61f80a4b592",
            "9a93c18b7a1ef40299d1b61f80a4b59261646d696e000000000000000000000000000000000000000000000000000000",
        ),
    ];

    #[test]
    fn known_answer_vectors() {
        for (user, pw, ch, inner_hex, digest_hex, reply_hex) in VECTORS {
            let challenge = arr16(ch);
            let pw = pw.as_bytes();
            assert_eq!(
                inner(pw, &challenge).to_vec(),
                hex(inner_hex),
                "inner {user}/{pw:?}"
            );
            assert_eq!(digest(pw, &challenge).to_vec(), hex(digest_hex));
            let reply = client_reply(user.as_bytes(), pw, &challenge);
            assert_eq!(reply.to_vec(), hex(reply_hex));
            assert_eq!(reply_user(&reply), user.as_bytes());
            assert!(verify(&reply, Some(pw), &challenge));
        }
    }

    #[test]
    fn rejects_wrong_password_unknown_user_and_tampering() {
        let challenge = arr16("000102030405060708090a0b0c0d0e0f");
        let reply = client_reply(b"admin", b"secret", &challenge);
        assert!(!verify(&reply, Some(b"Secret"), &challenge));
        assert!(!verify(&reply, Some(b""), &challenge));
        assert!(!verify(&reply, None, &challenge));
        // Even a reply made with the dummy password is refused for an unknown user.
        let dummy = client_reply(b"nobody", DUMMY_PASSWORD, &challenge);
        assert!(!verify(&dummy, None, &challenge));
        let mut other = challenge;
        other[15] ^= 1;
        assert!(!verify(&reply, Some(b"secret"), &other));
        for bit in 0..DIGEST_LEN * 8 {
            let mut bad = reply;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!verify(&bad, Some(b"secret"), &challenge));
        }
    }

    #[test]
    fn prepared_passwords_match_the_plain_digest() {
        let challenge = arr16("000102030405060708090a0b0c0d0e0f");
        let long = vec![b'p'; 100_000];
        for pw in [
            &b""[..],
            b"secret",
            &[b'x'; 63],
            &[b'y'; 64],
            &[b'z'; 65],
            &long,
        ] {
            let p = Prepared::new(pw);
            assert_eq!(p.digest(&challenge), digest(pw, &challenge));
            let reply = client_reply(b"admin", pw, &challenge);
            assert!(verify_prepared(&reply, Some(&p), &challenge));
            assert!(!verify_prepared(&reply, None, &challenge));
            assert!(!verify_prepared(
                &reply,
                Some(&Prepared::new(b"other")),
                &challenge
            ));
        }
        assert_eq!(format!("{:?}", Prepared::new(b"pw")), "Prepared(..)");
    }

    #[test]
    fn user_field_padding_and_truncation() {
        let challenge = [7u8; CHALLENGE_LEN];
        let empty = client_reply(b"", b"pw", &challenge);
        assert_eq!(reply_user(&empty), b"");
        assert_eq!(&empty[DIGEST_LEN..], &[0u8; USER_FIELD_LEN]);

        let name32 = [b'u'; 32];
        let exact = client_reply(&name32, b"pw", &challenge);
        assert_eq!(reply_user(&exact), &name32[..]);

        let name40 = [b'v'; 40];
        let long = client_reply(&name40, b"pw", &challenge);
        assert_eq!(reply_user(&long), &name40[..32]);
        assert_eq!(&long[..DIGEST_LEN], &digest(b"pw", &challenge));
    }
}
