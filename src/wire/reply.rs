//! The 4-byte replies the server sends after the command (and after authentication).
//!
//! ```text
//! 01 00 00 00   OK, no authentication (same bytes as the hello: the state tells them apart)
//! 01 t0 t1 00   OK for a multi-connection TCP test; t0 t1 = session token, never both zero
//! 02 00 00 00   MD5 challenge follows (16 bytes)
//! 03 00 00 00   EC-SRP5 exchange follows
//! 00 00 00 00   authentication failed
//! ```

use super::command::Token;
use super::{WireError, WireErrorKind};

/// Length of a reply.
pub const LEN: usize = 4;
/// Length of the MD5 challenge that follows `02 00 00 00`.
pub const MD5_CHALLENGE_LEN: usize = 16;

/// A server reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Accepted; the test starts.
    Ok,
    /// Accepted, multi-connection TCP: the extra connections must present this token.
    OkToken(Token),
    /// MD5 challenge-response authentication follows.
    NeedMd5,
    /// EC-SRP5 authentication follows.
    NeedEcSrp5,
    /// Authentication failed.
    Failed,
}

impl Reply {
    /// Encodes the reply.
    pub fn to_bytes(self) -> [u8; LEN] {
        match self {
            Reply::Ok => [1, 0, 0, 0],
            Reply::OkToken(t) => [1, t[0], t[1], 0],
            Reply::NeedMd5 => [2, 0, 0, 0],
            Reply::NeedEcSrp5 => [3, 0, 0, 0],
            Reply::Failed => [0, 0, 0, 0],
        }
    }

    /// Parses a reply.
    pub fn parse(b: &[u8; LEN]) -> Result<Self, WireError> {
        let zero_tail = |from: usize| (from..LEN).find(|&i| b[i] != 0);
        let bad = |i: usize| Err(WireError::new(WireErrorKind::UnknownReply, i, b[i]));
        match b[0] {
            1 => {
                if b[3] != 0 {
                    return bad(3);
                }
                if b[1] == 0 && b[2] == 0 {
                    Ok(Reply::Ok)
                } else {
                    Ok(Reply::OkToken([b[1], b[2]]))
                }
            }
            0 | 2 | 3 => match zero_tail(1) {
                Some(i) => bad(i),
                None => Ok(match b[0] {
                    0 => Reply::Failed,
                    2 => Reply::NeedMd5,
                    _ => Reply::NeedEcSrp5,
                }),
            },
            _ => bad(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_both_ways() {
        let cases = [
            ([1, 0, 0, 0], Reply::Ok),
            ([1, 0xbc, 0x04, 0], Reply::OkToken([0xbc, 0x04])),
            ([1, 0, 0x04, 0], Reply::OkToken([0, 0x04])),
            ([2, 0, 0, 0], Reply::NeedMd5),
            ([3, 0, 0, 0], Reply::NeedEcSrp5),
            ([0, 0, 0, 0], Reply::Failed),
        ];
        for (b, r) in cases {
            assert_eq!(Reply::parse(&b), Ok(r));
            assert_eq!(r.to_bytes(), b);
        }
    }

    #[test]
    fn rejections() {
        for (b, off) in [
            ([4u8, 0, 0, 0], 0),
            ([0xff, 0, 0, 0], 0),
            ([1, 2, 3, 4], 3),
            ([2, 0, 1, 0], 2),
            ([3, 1, 0, 0], 1),
            ([0, 0, 0, 7], 3),
        ] {
            let e = Reply::parse(&b).unwrap_err();
            assert_eq!(
                (e.kind, e.offset, e.value),
                (WireErrorKind::UnknownReply, off, b[off])
            );
        }
    }
}
