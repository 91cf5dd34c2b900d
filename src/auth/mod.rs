//! Authentication for btest: the pure cryptography and message framing of the two
//! login methods RouterOS offers on TCP port 2000.
//!
//! Owns: the legacy double-MD5 challenge/response ([`md5`]), EC-SRP5 over Curve25519 in
//! Weierstrass form ([`ec_srp5`]), the [`AuthMethod`] selector, and one constant-time
//! byte comparison shared by both.
//!
//! Must not: open sockets, read clocks, draw randomness, log or print. Callers read and
//! write the bytes, pass in any random values (challenges, private scalars, salts), and
//! decide what a failure means for the connection. Nothing here logs a secret, because
//! nothing here logs at all. See `docs/protocol.md` sections 5 and 6 for the wire format.

pub mod ec_srp5;
pub mod md5;

use std::fmt;
use std::str::FromStr;

/// How a client proves who it is, as chosen on the command line or offered by a server.
///
/// The server announces the method in its reply to the test command: `01 00 00 00` for
/// none, `02 00 00 00` for MD5, `03 00 00 00` for EC-SRP5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No authentication.
    None,
    /// Legacy MD5 challenge/response (RouterOS before 6.43); see [`md5`].
    Md5,
    /// EC-SRP5 (RouterOS 6.43 and later); see [`ec_srp5`].
    EcSrp5,
}

impl AuthMethod {
    /// Every method, in the order the accepted words are listed in messages.
    pub const ALL: [AuthMethod; 3] = [AuthMethod::None, AuthMethod::Md5, AuthMethod::EcSrp5];

    /// The word used on the command line and in reports: `none`, `md5` or `ecsrp5`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Md5 => "md5",
            AuthMethod::EcSrp5 => "ecsrp5",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    /// A message that quotes the input and lists the accepted words (the CLI prefixes
    /// the flag name).
    type Err = String;

    /// Accepts `none`, `md5` or `ecsrp5`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown authentication method '{s}': expected one of none, md5, ecsrp5")
            })
    }
}

/// Compares two byte strings in time that depends only on their lengths, so a peer
/// cannot learn from response timing how many leading bytes of a guessed proof were right.
///
/// Lengths are not secret here (every proof and digest has a fixed size).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_words_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(m.as_str().parse::<AuthMethod>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!("none".parse(), Ok(AuthMethod::None));
        assert_eq!("md5".parse(), Ok(AuthMethod::Md5));
        assert_eq!("ecsrp5".parse(), Ok(AuthMethod::EcSrp5));
        assert_eq!("EcSrp5".parse(), Ok(AuthMethod::EcSrp5));
    }

    #[test]
    fn unknown_method_lists_accepted_words() {
        let text = "srp".parse::<AuthMethod>().unwrap_err();
        for word in ["'srp'", "none", "md5", "ecsrp5"] {
            assert!(text.contains(word), "{text}");
        }
        assert!("".parse::<AuthMethod>().is_err());
        assert!("md5 ".parse::<AuthMethod>().is_err());
    }

    #[test]
    fn ct_eq_compares_bytes() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(&[0x80; 32], &[0x00; 32]));
    }
}
