//! EC-SRP5 (RouterOS 6.43 and later), protocol spec section 6: the curve arithmetic, the
//! password verifier, the client and server steps, and the byte layout of the four
//! messages.
//!
//! Owns: Curve25519 in short Weierstrass form `y^2 = x^3 + a*x + b (mod p)` over
//! `num-bigint` (points in Jacobian coordinates, one field inversion per scalar
//! multiplication), `lift_x`, the Montgomery-x wire encoding, MikroTik's hash-to-curve
//! `redp1`, the verifier `Gamma = i*G`, the proofs, and the 1-byte length framing.
//!
//! Must not: do I/O, read clocks, draw random numbers, or log. Callers pass the private
//! scalars `s_a` / `s_b` (32 random bytes each) and the salt, so every step is
//! deterministic and testable. Every 32-byte value is a fixed-width big-endian integer,
//! left-padded with zeros. Proofs are compared in constant time. Byte buffers holding
//! secrets (`s_a`, `s_b`, `i`, `z`, the password hash) are overwritten with zeros when
//! dropped; the `BigUint` temporaries computed from them cannot be wiped because
//! `num-bigint` offers no way to do so, and its arithmetic is not constant-time. That is
//! the accepted trade-off of the specified dependencies for a bandwidth-test login.
//!
//! ```text
//!  client                                              server (has salt, Gamma = i*G)
//!  W_a = s_a*G
//!  MSG1  user 00 x_wa[32] parity_wa[1]  ------------>  parse_msg1, ServerHandshake::new:
//!                                                      W_b = s_b*G + redp1(x_gamma, 0)
//!  ClientHandshake::on_msg2:  <------------  MSG2  x_wb[32] parity_wb[1] salt[16]
//!  i = SHA256(salt || SHA256(user ":" password))
//!  W = lift_x(x_wb) + redp1(x_gamma, 1)                j = SHA256(x_wa || x_wb)
//!  j = SHA256(x_wa || x_wb)                            Z = s_b*(W_a + j*Gamma)
//!  Z = ((i*j + s_a) mod r) * W
//!  MSG3  client_cc = SHA256(j || z)  --------------->  ServerHandshake::on_msg3: check
//!  ClientHandshake::on_msg4: check  <--------------  MSG4  SHA256(j || client_cc || z)
//! ```
//!
//! On the wire each message is one length byte followed by its payload ([`frame`]); the
//! functions here take and return payloads without that byte.
//!
//! Unknown users: a server should not reveal through its answer or its timing whether a
//! user exists. The way this crate's server does it (authio.rs, issue 18): keep each user's
//! [`PasswordKey`] (`SHA256(user ":" password)`, hashed once at load) and a random 32-byte
//! process key; at each login derive the salt with [`derived_salt`] and the verifier with
//! [`Verifier::from_key`], for a known user from its key, for an unknown one from
//! [`PasswordKey::unknown`]. Both paths do the same work (one verifier, one handshake), the salt
//! sent is stable per name and computed the same way for both, and
//! [`ServerHandshake::on_msg3`] then fails with a proof mismatch for the unknown name because
//! no client knows its stand-in password. Deriving per login also means start-up builds no
//! verifier at all (10,000 users took 46 s when they were built at start).

use std::fmt;
use std::sync::OnceLock;

use num_bigint::BigUint;
use sha2::{Digest, Sha256};

/// Length of every 32-byte field: x-coordinates, scalars, hashes and proofs.
pub const X_LEN: usize = 32;
/// Length of the per-user salt carried in MSG2.
pub const SALT_LEN: usize = 16;
/// Length of MSG1 after the user name's NUL terminator: `x_wa[32] parity_wa[1]`.
pub const MSG1_TAIL_LEN: usize = X_LEN + 1;
/// Length of the MSG2 payload: `x_wb[32] parity_wb[1] salt[16]`.
pub const MSG2_LEN: usize = 49;
/// Length of the MSG3 and MSG4 payloads (one SHA-256 proof each).
pub const PROOF_LEN: usize = 32;
/// Largest payload a 1-byte length prefix can describe.
pub const MAX_PAYLOAD_LEN: usize = 255;
/// Longest user name that still fits MSG1: 255 minus the NUL and the 33-byte tail.
pub const MAX_USER_LEN: usize = MAX_PAYLOAD_LEN - 1 - MSG1_TAIL_LEN;

/// Byte ranges inside the MSG2 payload.
mod field {
    use std::ops::Range;

    pub const X_WB: Range<usize> = 0..32;
    pub const PARITY_WB: usize = 32;
    pub const SALT: Range<usize> = 33..49;
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why an EC-SRP5 step refused its input. Every variant means "authentication failed";
/// the text says which byte string was wrong so logs are useful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A message is shorter than its fixed layout.
    TooShort {
        /// Which message, e.g. `"MSG2"`.
        msg: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes required.
        need: usize,
    },
    /// A message is longer than its layout or the 1-byte length prefix allows.
    TooLong {
        /// Which message, e.g. `"MSG1"`.
        msg: &'static str,
        /// Bytes received or requested.
        got: usize,
        /// Largest accepted length.
        max: usize,
    },
    /// MSG1 has no NUL byte ending the user name.
    NoUserTerminator,
    /// A parity byte is neither `00` nor `01`.
    BadParity {
        /// Which field, e.g. `"parity_wa"`.
        field: &'static str,
        /// The byte received.
        value: u8,
    },
    /// A received x-coordinate belongs to no point of the curve.
    NotOnCurve {
        /// Which field, e.g. `"x_wb"`.
        field: &'static str,
    },
    /// A computed point is the point at infinity, so the exchange cannot continue.
    /// Either the peer sent a crafted key or a private scalar is a multiple of the group
    /// order (check the random source).
    Degenerate {
        /// Which point, e.g. `"Z"`.
        point: &'static str,
    },
    /// The peer's proof differs from the one expected: wrong user name or password, or
    /// a peer that does not know the verifier.
    ProofMismatch {
        /// `"client"` (checked by the server) or `"server"` (checked by the client).
        side: &'static str,
    },
    /// A handshake step was called in the wrong order.
    OutOfOrder {
        /// What happened, e.g. `"MSG4 before a successful MSG2"`.
        what: &'static str,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::TooShort { msg, got, need } => {
                write!(f, "{msg} too short: {got} bytes, need {need}")
            }
            AuthError::TooLong { msg, got, max } => {
                write!(f, "{msg} too long: {got} bytes, at most {max}")
            }
            AuthError::NoUserTerminator => f.write_str("MSG1 has no NUL byte after the user name"),
            AuthError::BadParity { field, value } => {
                write!(f, "{field} is {value:#04x}, need 0x00 or 0x01")
            }
            AuthError::NotOnCurve { field } => write!(f, "{field} is not on the curve"),
            AuthError::Degenerate { point } => write!(
                f,
                "{point} is the point at infinity (crafted peer key or broken random source)"
            ),
            AuthError::ProofMismatch { side } => write!(
                f,
                "{side} proof mismatch: wrong user name or password, or the peer does not know them"
            ),
            AuthError::OutOfOrder { what } => write!(f, "handshake step out of order: {what}"),
        }
    }
}

impl std::error::Error for AuthError {}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

/// 32 secret bytes that are overwritten with zeros when dropped.
#[derive(Clone)]
struct Secret32([u8; 32]);

impl Secret32 {
    fn int(&self) -> BigUint {
        BigUint::from_bytes_be(&self.0)
    }

    fn wipe(&mut self) {
        self.0.fill(0);
        // black_box makes the compiler assume the zeros are read, so the stores stay.
        std::hint::black_box(&mut self.0);
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.wipe();
    }
}

// ---------------------------------------------------------------------------------------
// Curve and field arithmetic
// ---------------------------------------------------------------------------------------

/// Group order r = 2^252 + 27742317777372353535851937790883648493, big-endian.
const R_BYTES: [u8; 32] = [
    0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0xde, 0xf9, 0xde, 0xa2, 0xf7, 0x9c, 0xd6, 0x58, 0x12, 0x63, 0x1a, 0x5c, 0xf5, 0xd3, 0xed,
];
/// Weierstrass x of the generator, `lift_x(9, 0)` (checked by a test).
const GX_BYTES: [u8; 32] = [
    0x2a, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xad, 0x24, 0x5a,
];
/// y of the generator.
const GY_BYTES: [u8; 32] = [
    0x5f, 0x51, 0xe6, 0x5e, 0x47, 0x5f, 0x79, 0x4b, 0x1f, 0xe1, 0x22, 0xd3, 0x88, 0xb7, 0x2e, 0xb3,
    0x6d, 0xc2, 0xb2, 0x81, 0x92, 0x83, 0x9e, 0x4d, 0xd6, 0x16, 0x3a, 0x5d, 0x81, 0x31, 0x2c, 0x14,
];
/// Montgomery coefficient A of Curve25519 (B = 1).
const MONT_A: u32 = 486_662;

/// A point in affine coordinates; the point at infinity is represented by `None` where
/// it can occur.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Affine {
    x: BigUint,
    y: BigUint,
}

/// A point in Jacobian coordinates `(X, Y, Z)` meaning `(X/Z^2, Y/Z^3)`; `Z = 0` is the
/// point at infinity.
#[derive(Clone, Debug)]
struct Jacobian {
    x: BigUint,
    y: BigUint,
    z: BigUint,
}

/// Curve constants, computed once.
struct Curve {
    p: BigUint,
    /// p - 2, the Fermat inversion exponent.
    p_minus_2: BigUint,
    /// (p + 3) / 8, the square-root exponent for p = 5 mod 8.
    sqrt_exp: BigUint,
    /// 2^((p - 1) / 4), a square root of -1.
    sqrt_m1: BigUint,
    /// Weierstrass a = (3 - A^2) / 3.
    a: BigUint,
    /// Weierstrass b = (2A^3 - 9A) / 27 (only used to check points in tests).
    #[cfg_attr(not(test), allow(dead_code))]
    b: BigUint,
    /// Montgomery A.
    mont_a: BigUint,
    /// A / 3: Weierstrass x = Montgomery x + k.
    k: BigUint,
    /// Order of G.
    r: BigUint,
    g: Affine,
}

fn curve() -> &'static Curve {
    static CURVE: OnceLock<Curve> = OnceLock::new();
    CURVE.get_or_init(Curve::new)
}

fn is_zero(x: &BigUint) -> bool {
    x.bits() == 0
}

/// `n` as 32 bytes big-endian, left-padded. Callers pass values below 2^256 (field
/// elements, hash outputs); should a larger value ever appear, its low 32 bytes are kept.
fn to_bytes32(n: &BigUint) -> [u8; 32] {
    let bytes = n.to_bytes_be();
    let take = bytes.len().min(32);
    let mut out = [0u8; 32];
    out[32 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    out
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

impl Curve {
    fn new() -> Curve {
        let one = BigUint::from(1u32);
        let p = (&one << 255u32) - 19u32;
        let p_minus_2 = &p - 2u32;
        let sqrt_exp = (&p + 3u32) >> 3u32;
        let sqrt_m1 = BigUint::from(2u32).modpow(&((&p - 1u32) >> 2u32), &p);
        let mont_a = BigUint::from(MONT_A);
        let mut c = Curve {
            p,
            p_minus_2,
            sqrt_exp,
            sqrt_m1,
            a: BigUint::ZERO,
            b: BigUint::ZERO,
            mont_a,
            k: BigUint::ZERO,
            r: BigUint::from_bytes_be(&R_BYTES),
            g: Affine {
                x: BigUint::from_bytes_be(&GX_BYTES),
                y: BigUint::from_bytes_be(&GY_BYTES),
            },
        };
        let inv3 = c.inv(&BigUint::from(3u32));
        let inv27 = c.inv(&BigUint::from(27u32));
        let a2 = c.sqr(&c.mont_a);
        c.a = c.mul(&c.sub(&BigUint::from(3u32), &a2), &inv3);
        // 2A^3 - 9A is positive for A = 486662, so plain integer arithmetic is fine.
        let two_a3_minus_9a = BigUint::from(2u32) * &a2 * &c.mont_a - &c.mont_a * 9u32;
        c.b = c.mul(&(two_a3_minus_9a % &c.p), &inv27);
        c.k = c.mul(&c.mont_a, &inv3);
        c
    }

    // Field operations. Inputs are reduced (below p); so are outputs.

    fn add(&self, x: &BigUint, y: &BigUint) -> BigUint {
        let s = x + y;
        if s >= self.p {
            s - &self.p
        } else {
            s
        }
    }

    fn sub(&self, x: &BigUint, y: &BigUint) -> BigUint {
        if x >= y {
            x - y
        } else {
            x + &self.p - y
        }
    }

    fn neg(&self, x: &BigUint) -> BigUint {
        if is_zero(x) {
            BigUint::ZERO
        } else {
            &self.p - x
        }
    }

    fn mul(&self, x: &BigUint, y: &BigUint) -> BigUint {
        self.reduce(&(x * y))
    }

    /// `t mod p` for `t < 2^510` (any product of two reduced elements), using
    /// `2^255 = 19 (mod p)` instead of a long division: it halves the handshake time.
    fn reduce(&self, t: &BigUint) -> BigUint {
        const LOW_63: u64 = u64::MAX >> 1;
        let mut d = [0u64; 8];
        for (slot, digit) in d.iter_mut().zip(t.iter_u64_digits()) {
            *slot = digit;
        }
        // t = lo + hi * 2^255 with lo, hi < 2^255, so t = lo + 19 * hi (mod p).
        let mut lo = [d[0], d[1], d[2], d[3] & LOW_63];
        let mut carry = 0u128;
        for k in 0..4 {
            let hi_k = (d[3 + k] >> 63) | (d[4 + k] << 1);
            let v = u128::from(lo[k]) + u128::from(hi_k) * 19 + carry;
            lo[k] = v as u64; // keep the low 64 bits; the rest moves on in `carry`
            carry = v >> 64;
        }
        // lo + carry * 2^256 < 20 * 2^255: fold the bits from 255 up once more.
        let mut carry = ((carry << 1) | u128::from(lo[3] >> 63)) * 19;
        lo[3] &= LOW_63;
        for limb in lo.iter_mut() {
            let v = u128::from(*limb) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        // Now lo < 2^255 + 19 * 40 < 2p: one conditional subtraction finishes.
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(lo) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        let r = BigUint::from_bytes_le(&bytes);
        if r >= self.p {
            r - &self.p
        } else {
            r
        }
    }

    fn sqr(&self, x: &BigUint) -> BigUint {
        self.mul(x, x)
    }

    fn mul_small(&self, x: &BigUint, k: u32) -> BigUint {
        self.reduce(&(x * k))
    }

    /// Fermat inversion `x^(p-2)`; the inverse of 0 comes out as 0.
    fn inv(&self, x: &BigUint) -> BigUint {
        x.modpow(&self.p_minus_2, &self.p)
    }

    /// A square root of `v` mod p, if `v` is a square (p = 5 mod 8 method).
    fn sqrt(&self, v: &BigUint) -> Option<BigUint> {
        let c = v.modpow(&self.sqrt_exp, &self.p);
        let c2 = self.sqr(&c);
        if &c2 == v {
            Some(c)
        } else if c2 == self.neg(v) {
            Some(self.mul(&c, &self.sqrt_m1))
        } else {
            None
        }
    }

    // Points.

    fn infinity() -> Jacobian {
        Jacobian {
            x: BigUint::from(1u32),
            y: BigUint::from(1u32),
            z: BigUint::ZERO,
        }
    }

    fn jacobian(q: &Affine) -> Jacobian {
        Jacobian {
            x: q.x.clone(),
            y: q.y.clone(),
            z: BigUint::from(1u32),
        }
    }

    /// Back to affine coordinates with a single inversion; `None` for infinity.
    fn affine(&self, p: &Jacobian) -> Option<Affine> {
        if is_zero(&p.z) {
            return None;
        }
        let zi = self.inv(&p.z);
        let zi2 = self.sqr(&zi);
        let zi3 = self.mul(&zi2, &zi);
        Some(Affine {
            x: self.mul(&p.x, &zi2),
            y: self.mul(&p.y, &zi3),
        })
    }

    #[cfg(test)]
    fn negate(&self, q: &Affine) -> Affine {
        Affine {
            x: q.x.clone(),
            y: self.neg(&q.y),
        }
    }

    /// 2P for the general-a curve: M = 3X^2 + aZ^4, S = 4XY^2, X' = M^2 - 2S,
    /// Y' = M(S - X') - 8Y^4, Z' = 2YZ.
    fn double(&self, p: &Jacobian) -> Jacobian {
        if is_zero(&p.z) || is_zero(&p.y) {
            // Infinity stays infinity; a point with y = 0 has order 2.
            return Curve::infinity();
        }
        let xx = self.sqr(&p.x);
        let yy = self.sqr(&p.y);
        let yyyy = self.sqr(&yy);
        let zz = self.sqr(&p.z);
        let s = self.mul_small(&self.mul(&p.x, &yy), 4);
        let m = self.add(&self.mul_small(&xx, 3), &self.mul(&self.a, &self.sqr(&zz)));
        let x3 = self.sub(&self.sqr(&m), &self.add(&s, &s));
        let y3 = self.sub(&self.mul(&m, &self.sub(&s, &x3)), &self.mul_small(&yyyy, 8));
        let z3 = self.mul_small(&self.mul(&p.y, &p.z), 2);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// P + Q with Q affine ("mixed" addition), including the P = Q and P = -Q cases.
    fn add_mixed(&self, p: &Jacobian, q: &Affine) -> Jacobian {
        if is_zero(&p.z) {
            return Curve::jacobian(q);
        }
        let z1z1 = self.sqr(&p.z);
        let u2 = self.mul(&q.x, &z1z1);
        let s2 = self.mul(&q.y, &self.mul(&p.z, &z1z1));
        let h = self.sub(&u2, &p.x);
        let r = self.sub(&s2, &p.y);
        if is_zero(&h) {
            return if is_zero(&r) {
                self.double(p)
            } else {
                Curve::infinity()
            };
        }
        let hh = self.sqr(&h);
        let hhh = self.mul(&h, &hh);
        let v = self.mul(&p.x, &hh);
        let x3 = self.sub(&self.sub(&self.sqr(&r), &hhh), &self.add(&v, &v));
        let y3 = self.sub(&self.mul(&r, &self.sub(&v, &x3)), &self.mul(&p.y, &hhh));
        let z3 = self.mul(&p.z, &h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// n*Q by double-and-add over the bits of n, most significant first. Scalars are used
    /// as given (not clamped, not reduced), as the protocol requires.
    fn mul_point(&self, n: &BigUint, q: &Affine) -> Jacobian {
        let mut acc = Curve::infinity();
        for bit in (0..n.bits()).rev() {
            acc = self.double(&acc);
            if n.bit(bit) {
                acc = self.add_mixed(&acc, q);
            }
        }
        acc
    }

    /// The curve point with Montgomery x-coordinate `x` (reduced mod p first) whose y has
    /// the given parity, in Weierstrass form; `None` if `x` is on the twist.
    fn lift_x(&self, x: &BigUint, parity: bool) -> Option<Affine> {
        let x = x % &self.p;
        // v = x^3 + A x^2 + x = x ((x + A) x + 1)
        let v = self.mul(
            &x,
            &self.add(
                &self.mul(&self.add(&x, &self.mont_a), &x),
                &BigUint::from(1u32),
            ),
        );
        let mut y = self.sqrt(&v)?;
        if y.bit(0) != parity {
            y = self.neg(&y);
        }
        Some(Affine {
            x: self.add(&x, &self.k),
            y,
        })
    }

    /// Montgomery x (32 bytes big-endian) and parity of y, as sent on the wire.
    fn to_mont(&self, q: &Affine) -> ([u8; 32], u8) {
        (to_bytes32(&self.sub(&q.x, &self.k)), u8::from(q.y.bit(0)))
    }

    /// MikroTik's hash-to-curve: `c = SHA256(x)`, then lift `SHA256(c)`; on failure
    /// increment `c` (as a 32-byte big-endian counter) and retry. Returns the point and
    /// the number of increments. Each try succeeds with probability about 1/2, so the loop
    /// ends after a handful of tries.
    fn redp1_counted(&self, x: &[u8; 32], parity: bool) -> (Affine, u32) {
        let mut c = sha256(&[x]);
        let mut increments = 0;
        loop {
            let h = sha256(&[&c]);
            if let Some(point) = self.lift_x(&BigUint::from_bytes_be(&h), parity) {
                return (point, increments);
            }
            increment_be(&mut c);
            increments += 1;
        }
    }

    fn redp1(&self, x: &[u8; 32], parity: bool) -> Affine {
        self.redp1_counted(x, parity).0
    }

    /// Lifts a received `x` / parity pair, checking the parity byte.
    fn lift_wire(
        &self,
        x: &[u8; 32],
        parity: u8,
        x_field: &'static str,
        parity_field: &'static str,
    ) -> Result<Affine, AuthError> {
        let parity = match parity {
            0 => false,
            1 => true,
            value => {
                return Err(AuthError::BadParity {
                    field: parity_field,
                    value,
                })
            }
        };
        self.lift_x(&BigUint::from_bytes_be(x), parity)
            .ok_or(AuthError::NotOnCurve { field: x_field })
    }

    /// n*Q back in affine coordinates, or a `Degenerate` error naming the result.
    fn mul_affine(&self, n: &BigUint, q: &Affine, name: &'static str) -> Result<Affine, AuthError> {
        self.affine(&self.mul_point(n, q))
            .ok_or(AuthError::Degenerate { point: name })
    }
}

/// Adds one to a 32-byte big-endian counter, wrapping at 2^256.
fn increment_be(c: &mut [u8; 32]) {
    for byte in c.iter_mut().rev() {
        let (v, carry) = byte.overflowing_add(1);
        *byte = v;
        if !carry {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protocol values
// ---------------------------------------------------------------------------------------

/// `SHA256(user || ":" || password)`.
fn password_inner(user: &[u8], password: &[u8]) -> Secret32 {
    Secret32(sha256(&[user, b":", password]))
}

/// What a server keeps per user instead of the password: `SHA256(user ":" password)`, the
/// inner hash of `i`. Hashing it once at load makes each login's cost independent of the
/// password's length (a long password made a wrong login slower only for users that exist,
/// issue 18). Password-equivalent: wiped on drop, never printed.
#[derive(Clone)]
pub struct PasswordKey(Secret32);

impl PasswordKey {
    /// The key of `user` / `password` (raw bytes).
    pub fn new(user: &[u8], password: &[u8]) -> PasswordKey {
        PasswordKey(password_inner(user, password))
    }

    /// A stand-in key for a user name that does not exist: `SHA256(tag || secret || user)`,
    /// stable per name for one `secret` (32 random bytes drawn once per process), unknowable
    /// without it, so no client can log in with it.
    pub fn unknown(secret: &[u8; 32], user: &[u8]) -> PasswordKey {
        PasswordKey(Secret32(sha256(&[
            b"btest unknown user key\0",
            secret,
            user,
        ])))
    }
}

impl fmt::Debug for PasswordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordKey(..)")
    }
}

/// `i = SHA256(salt || inner)`.
fn password_i(salt: &[u8; SALT_LEN], inner: &Secret32) -> Secret32 {
    Secret32(sha256(&[salt, &inner.0]))
}

/// `j = SHA256(x_wa || x_wb)`, the wire x values without parity bytes.
fn j_hash(x_wa: &[u8; 32], x_wb: &[u8; 32]) -> [u8; 32] {
    sha256(&[x_wa, x_wb])
}

/// The client's scalar `e = (i*j + s_a) mod r`.
fn client_scalar(i: &BigUint, j: &[u8; 32], s_a: &BigUint) -> BigUint {
    (i * BigUint::from_bytes_be(j) + s_a) % &curve().r
}

/// Client shared secret: `z = x(e * W)` with `W = W_b + redp1(x_gamma, 1)`.
fn client_z(e: &BigUint, w: &Affine) -> Result<Secret32, AuthError> {
    let c = curve();
    let z = c.mul_affine(e, w, "Z")?;
    Ok(Secret32(c.to_mont(&z).0))
}

/// Server shared secret: `z = x(s_b * (W_a + j*Gamma))`.
fn server_z(
    s_b: &BigUint,
    w_a: &Affine,
    j: &[u8; 32],
    gamma: &Affine,
) -> Result<Secret32, AuthError> {
    let c = curve();
    let j_gamma = c.mul_point(&BigUint::from_bytes_be(j), gamma);
    let t = c
        .affine(&c.add_mixed(&j_gamma, w_a))
        .ok_or(AuthError::Degenerate {
            point: "W_a + j*Gamma",
        })?;
    let z = c.mul_affine(s_b, &t, "Z")?;
    Ok(Secret32(c.to_mont(&z).0))
}

/// `(client_cc, server_cc) = (SHA256(j || z), SHA256(j || client_cc || z))`.
fn proofs(j: &[u8; 32], z: &Secret32) -> ([u8; 32], [u8; 32]) {
    let client_cc = sha256(&[j, &z.0]);
    let server_cc = sha256(&[j, &client_cc, &z.0]);
    (client_cc, server_cc)
}

/// Prefixes `payload` with its 1-byte length, as every EC-SRP5 message travels on port
/// 2000 (no `0x06` handler byte, unlike Winbox). Fails if `payload` exceeds 255 bytes,
/// for example MSG1 for a user name longer than [`MAX_USER_LEN`].
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, AuthError> {
    let len = u8::try_from(payload.len()).map_err(|_| AuthError::TooLong {
        msg: "message payload",
        got: payload.len(),
        max: MAX_PAYLOAD_LEN,
    })?;
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(len);
    out.extend_from_slice(payload);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------------------

/// What a server keeps per user: the salt and the password verifier `Gamma = i*G`, with
/// `i = SHA256(salt || SHA256(user ":" password))`.
///
/// Gamma is computed from the password, never rebuilt from `x_gamma` with a guessed parity
/// (spec 6.6). `i` itself is not kept: it is password-equivalent (it is all a client needs)
/// and the server has no use for it once Gamma is known. Building a verifier costs one
/// scalar multiplication; this crate's server builds one per login from a [`PasswordKey`]
/// (see the module docs), not all at start-up.
#[derive(Clone)]
pub struct Verifier {
    salt: [u8; SALT_LEN],
    gamma: Affine,
    x_gamma: [u8; 32],
    gamma_parity: u8,
    /// `redp1(x_gamma, 0)`, the server's password blinding point, cached because it
    /// depends only on the verifier.
    blind: Affine,
}

impl Verifier {
    /// Computes the verifier for `user` / `password` (raw bytes, no terminators) and a
    /// 16-byte salt, which the caller draws at random once per user.
    pub fn new(user: &[u8], password: &[u8], salt: [u8; SALT_LEN]) -> Verifier {
        Verifier::from_key(&PasswordKey::new(user, password), salt)
    }

    /// The verifier of a [`PasswordKey`] and a salt: one scalar multiplication and one
    /// `redp1`, the same work whatever the key (about a third of a server handshake).
    pub fn from_key(key: &PasswordKey, salt: [u8; SALT_LEN]) -> Verifier {
        let c = curve();
        let i = password_i(&salt, &key.0);
        // i*G is infinity only if i is a multiple of r (probability about 2^-252). G then
        // stands in: the verifier still works mechanically but no client can match it,
        // because such a client's own step fails with `Degenerate`.
        let gamma = c
            .affine(&c.mul_point(&i.int(), &c.g))
            .unwrap_or_else(|| c.g.clone());
        let (x_gamma, gamma_parity) = c.to_mont(&gamma);
        let blind = c.redp1(&x_gamma, false);
        Verifier {
            salt,
            gamma,
            x_gamma,
            gamma_parity,
            blind,
        }
    }

    /// The same Gamma with another salt. Only for the unknown-user path (see the module
    /// docs): Gamma was derived with the old salt, so no client can log in against the
    /// result, yet the salt it sends looks like a real user's.
    pub fn with_salt(&self, salt: [u8; SALT_LEN]) -> Verifier {
        Verifier {
            salt,
            ..self.clone()
        }
    }

    /// The salt sent in MSG2.
    pub fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// Montgomery x of Gamma, 32 bytes big-endian (what RouterOS stores in `user.dat`).
    pub fn x_gamma(&self) -> [u8; 32] {
        self.x_gamma
    }

    /// Parity (0 or 1) of Gamma's y.
    pub fn gamma_parity(&self) -> u8 {
        self.gamma_parity
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("salt", &self.salt)
            .field("x_gamma", &self.x_gamma)
            .field("gamma_parity", &self.gamma_parity)
            .finish_non_exhaustive()
    }
}

/// The salt to send for a user name, known or not: the first 16 bytes of
/// `SHA256(key || user)`. `key` is 32 random bytes the server draws once, so a name always
/// gets the same salt during a process's life, and a known name's salt is made exactly as an
/// unknown one's is (MSG2 does not tell them apart).
pub fn derived_salt(key: &[u8; 32], user: &[u8]) -> [u8; SALT_LEN] {
    let h = sha256(&[key, user]);
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&h[..SALT_LEN]);
    salt
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// The client side of one EC-SRP5 login: [`ClientHandshake::new`] gives MSG1,
/// [`ClientHandshake::on_msg2`] turns MSG2 into MSG3, [`ClientHandshake::on_msg4`] checks
/// the server's proof. Any error means authentication failed.
pub struct ClientHandshake {
    /// `SHA256(user ":" password)`; zeroed once MSG2 is processed.
    inner: Secret32,
    /// The private scalar; zeroed once MSG2 is processed.
    s_a: Secret32,
    x_wa: [u8; 32],
    /// Set if `s_a * G` was the point at infinity (so MSG1 carried a dummy key).
    degenerate: bool,
    /// The MSG4 payload to expect, known after MSG2.
    expected_server_cc: Option<Secret32>,
}

impl ClientHandshake {
    /// Starts a login as `user` with `password` (raw bytes, no terminators) and the
    /// private scalar `s_a` (32 random bytes from the caller). Returns the handshake and
    /// the MSG1 payload `user 00 x_wa[32] parity_wa[1]`, to be sent with [`frame`] (which
    /// rejects user names longer than [`MAX_USER_LEN`]). `user` must not contain a NUL
    /// byte: the server would cut the name there.
    pub fn new(user: &[u8], password: &[u8], s_a: [u8; 32]) -> (ClientHandshake, Vec<u8>) {
        let c = curve();
        let s_a = Secret32(s_a);
        let w_a = c.affine(&c.mul_point(&s_a.int(), &c.g));
        // A zero (or multiple of r) s_a has no public key. Send a placeholder and fail in
        // on_msg2 rather than panic here; the login can never succeed anyway.
        let degenerate = w_a.is_none();
        let (x_wa, parity_wa) = w_a.map_or(([0u8; 32], 0), |w| c.to_mont(&w));
        let mut msg1 = Vec::with_capacity(user.len() + 1 + MSG1_TAIL_LEN);
        msg1.extend_from_slice(user);
        msg1.push(0);
        msg1.extend_from_slice(&x_wa);
        msg1.push(parity_wa);
        let hs = ClientHandshake {
            inner: password_inner(user, password),
            s_a,
            x_wa,
            degenerate,
            expected_server_cc: None,
        };
        (hs, msg1)
    }

    /// Processes the MSG2 payload `x_wb[32] parity_wb[1] salt[16]` (bytes beyond 49 are
    /// ignored, as the spec allows) and returns the MSG3 payload `client_cc`.
    pub fn on_msg2(&mut self, payload: &[u8]) -> Result<[u8; PROOF_LEN], AuthError> {
        if self.expected_server_cc.is_some() {
            return Err(AuthError::OutOfOrder {
                what: "MSG2 processed twice",
            });
        }
        if payload.len() < MSG2_LEN {
            return Err(AuthError::TooShort {
                msg: "MSG2",
                got: payload.len(),
                need: MSG2_LEN,
            });
        }
        if self.degenerate {
            return Err(AuthError::Degenerate { point: "W_a" });
        }
        let c = curve();
        let mut x_wb = [0u8; 32];
        x_wb.copy_from_slice(&payload[field::X_WB]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&payload[field::SALT]);
        let w_b = c.lift_wire(&x_wb, payload[field::PARITY_WB], "x_wb", "parity_wb")?;

        let i = password_i(&salt, &self.inner);
        let i_int = i.int();
        let gamma = c.mul_affine(&i_int, &c.g, "Gamma")?;
        let (x_gamma, _) = c.to_mont(&gamma);
        let unblind = c.redp1(&x_gamma, true);
        let w = c
            .affine(&c.add_mixed(&Curve::jacobian(&w_b), &unblind))
            .ok_or(AuthError::Degenerate { point: "W" })?;
        let j = j_hash(&self.x_wa, &x_wb);
        let e = client_scalar(&i_int, &j, &self.s_a.int());
        let z = client_z(&e, &w)?;
        let (client_cc, server_cc) = proofs(&j, &z);

        self.expected_server_cc = Some(Secret32(server_cc));
        // Replacing the secrets drops (and so zeroes) the old buffers.
        self.s_a = Secret32([0; 32]);
        self.inner = Secret32([0; 32]);
        Ok(client_cc)
    }

    /// Checks the MSG4 payload (the server's proof, exactly 32 bytes) in constant time.
    pub fn on_msg4(&self, payload: &[u8]) -> Result<(), AuthError> {
        let expected = self
            .expected_server_cc
            .as_ref()
            .ok_or(AuthError::OutOfOrder {
                what: "MSG4 before a successful MSG2",
            })?;
        check_proof_len("MSG4", payload)?;
        if super::ct_eq(&expected.0, payload) {
            Ok(())
        } else {
            Err(AuthError::ProofMismatch { side: "server" })
        }
    }
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("x_wa", &self.x_wa)
            .field("msg2_done", &self.expected_server_cc.is_some())
            .finish_non_exhaustive()
    }
}

fn check_proof_len(msg: &'static str, payload: &[u8]) -> Result<(), AuthError> {
    match payload.len() {
        PROOF_LEN => Ok(()),
        n if n < PROOF_LEN => Err(AuthError::TooShort {
            msg,
            got: n,
            need: PROOF_LEN,
        }),
        n => Err(AuthError::TooLong {
            msg,
            got: n,
            max: PROOF_LEN,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// MSG1 as the server reads it: `user 00 x_wa[32] parity_wa[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg1<'a> {
    /// The user name: the bytes before the first NUL.
    pub user: &'a [u8],
    /// Montgomery x of the client's public key `W_a`.
    pub x_wa: [u8; 32],
    /// Parity of `W_a`'s y (checked to be 0 or 1 by [`ServerHandshake::new`]).
    pub parity_wa: u8,
}

/// Splits a MSG1 payload at its first NUL: the user name before it, then 33 bytes of
/// `x_wa` and `parity_wa`. Bytes after those 33 are ignored (spec 6.6 only requires
/// "fail if fewer"). Payloads over 255 bytes cannot come from a framed message and are
/// refused.
pub fn parse_msg1(payload: &[u8]) -> Result<Msg1<'_>, AuthError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(AuthError::TooLong {
            msg: "MSG1",
            got: payload.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    let nul = payload
        .iter()
        .position(|&b| b == 0)
        .ok_or(AuthError::NoUserTerminator)?;
    let tail = &payload[nul + 1..];
    if tail.len() < MSG1_TAIL_LEN {
        return Err(AuthError::TooShort {
            msg: "MSG1",
            got: payload.len(),
            need: nul + 1 + MSG1_TAIL_LEN,
        });
    }
    let mut x_wa = [0u8; 32];
    x_wa.copy_from_slice(&tail[..X_LEN]);
    Ok(Msg1 {
        user: &payload[..nul],
        x_wa,
        parity_wa: tail[X_LEN],
    })
}

/// The server side of one EC-SRP5 login: [`ServerHandshake::new`] reads MSG1 and gives
/// MSG2, [`ServerHandshake::on_msg3`] checks the client's proof and gives MSG4.
pub struct ServerHandshake {
    client_cc: Secret32,
    server_cc: Secret32,
}

impl ServerHandshake {
    /// Answers `msg1` for the user described by `verifier` with the private scalar `s_b`
    /// (32 random bytes from the caller). Returns the handshake and the MSG2 payload
    /// `x_wb[32] parity_wb[1] salt[16]`. For an unknown user pass a dummy verifier (see
    /// the module docs) so the work done is the same. Fails if `x_wa` or its parity byte
    /// is invalid.
    pub fn new(
        verifier: &Verifier,
        msg1: &Msg1<'_>,
        s_b: [u8; 32],
    ) -> Result<(ServerHandshake, [u8; MSG2_LEN]), AuthError> {
        let c = curve();
        let w_a = c.lift_wire(&msg1.x_wa, msg1.parity_wa, "x_wa", "parity_wa")?;
        let s_b = Secret32(s_b);
        let s_b_int = s_b.int();
        let w_b = c
            .affine(&c.add_mixed(&c.mul_point(&s_b_int, &c.g), &verifier.blind))
            .ok_or(AuthError::Degenerate { point: "W_b" })?;
        let (x_wb, parity_wb) = c.to_mont(&w_b);
        let j = j_hash(&msg1.x_wa, &x_wb);
        let z = server_z(&s_b_int, &w_a, &j, &verifier.gamma)?;
        let (client_cc, server_cc) = proofs(&j, &z);

        let mut msg2 = [0u8; MSG2_LEN];
        msg2[field::X_WB].copy_from_slice(&x_wb);
        msg2[field::PARITY_WB] = parity_wb;
        msg2[field::SALT].copy_from_slice(&verifier.salt);
        let hs = ServerHandshake {
            client_cc: Secret32(client_cc),
            server_cc: Secret32(server_cc),
        };
        Ok((hs, msg2))
    }

    /// Checks the MSG3 payload (the client's proof, exactly 32 bytes) in constant time
    /// and returns the MSG4 payload. On error send no MSG4 (spec 6.6).
    pub fn on_msg3(&self, payload: &[u8]) -> Result<[u8; PROOF_LEN], AuthError> {
        check_proof_len("MSG3", payload)?;
        if super::ct_eq(&self.client_cc.0, payload) {
            Ok(self.server_cc.0)
        } else {
            Err(AuthError::ProofMismatch { side: "client" })
        }
    }
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        assert_eq!(s.len() % 2, 0, "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn h32(s: &str) -> [u8; 32] {
        hex(s).try_into().unwrap()
    }

    fn int(s: &str) -> BigUint {
        BigUint::parse_bytes(s.as_bytes(), 16).unwrap()
    }

    /// Deterministic test randomness: SHA256(seed || counter).
    struct Prng {
        seed: [u8; 32],
        counter: u64,
    }

    impl Prng {
        fn new(label: &str) -> Prng {
            Prng {
                seed: sha256(&[label.as_bytes()]),
                counter: 0,
            }
        }

        fn bytes32(&mut self) -> [u8; 32] {
            self.counter += 1;
            sha256(&[&self.seed, &self.counter.to_be_bytes()])
        }

        fn below(&mut self, n: usize) -> usize {
            let b = self.bytes32();
            (u64::from_be_bytes(b[..8].try_into().unwrap()) % n as u64) as usize
        }

        fn salt(&mut self) -> [u8; SALT_LEN] {
            self.bytes32()[..SALT_LEN].try_into().unwrap()
        }
    }

    fn on_curve(q: &Affine) -> bool {
        let c = curve();
        let rhs = c.add(&c.add(&c.mul(&c.sqr(&q.x), &q.x), &c.mul(&c.a, &q.x)), &c.b);
        c.sqr(&q.y) == rhs && q.x < c.p && q.y < c.p
    }

    // Reference affine arithmetic straight from spec 6.3, one inversion per step.
    fn ref_add(p: &Option<Affine>, q: &Option<Affine>) -> Option<Affine> {
        let c = curve();
        let (p, q) = match (p, q) {
            (None, q) => return q.clone(),
            (p, None) => return p.clone(),
            (Some(p), Some(q)) => (p, q),
        };
        let l = if p.x == q.x {
            if c.add(&p.y, &q.y) == BigUint::ZERO {
                return None;
            }
            let num = c.add(&c.mul_small(&c.sqr(&p.x), 3), &c.a);
            c.mul(&num, &c.inv(&c.mul_small(&p.y, 2)))
        } else {
            c.mul(&c.sub(&q.y, &p.y), &c.inv(&c.sub(&q.x, &p.x)))
        };
        let x3 = c.sub(&c.sub(&c.sqr(&l), &p.x), &q.x);
        let y3 = c.sub(&c.mul(&l, &c.sub(&p.x, &x3)), &p.y);
        Some(Affine { x: x3, y: y3 })
    }

    fn ref_mul(n: &BigUint, q: &Affine) -> Option<Affine> {
        let mut acc = None;
        let q = Some(q.clone());
        for bit in (0..n.bits()).rev() {
            acc = ref_add(&acc, &acc);
            if n.bit(bit) {
                acc = ref_add(&acc, &q);
            }
        }
        acc
    }

    #[test]
    fn curve_constants_match_the_spec() {
        let c = curve();
        assert_eq!(
            c.p,
            int("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed")
        );
        assert_eq!(
            c.r,
            int("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed")
        );
        assert_eq!(
            c.a,
            int("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa984914a144")
        );
        assert_eq!(
            c.b,
            int("7b425ed097b425ed097b425ed097b425ed097b425ed097b4260b5e9c7710c864")
        );
        assert_eq!(
            c.k,
            int("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad2451")
        );
        assert_eq!(
            c.sqrt_m1,
            int("2b8324804fc1df0b2b4d00993dfbd7a72f431806ad2fe478c4ee1b274a0ea0b0")
        );
        assert_eq!(c.sqr(&c.sqrt_m1), c.p.clone() - 1u32);
    }

    #[test]
    fn generator_is_lift_x_9_and_has_order_r() {
        let c = curve();
        let g = c.lift_x(&BigUint::from(9u32), false).unwrap();
        assert_eq!(g, c.g);
        assert!(on_curve(&g));
        assert_eq!(
            to_bytes32(&g.x),
            h32("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad245a")
        );
        assert_eq!(
            to_bytes32(&g.y),
            h32("5f51e65e475f794b1fe122d388b72eb36dc2b28192839e4dd6163a5d81312c14")
        );
        // The wire form of G is x = 9, left-padded.
        let mut nine = [0u8; 32];
        nine[31] = 9;
        assert_eq!(c.to_mont(&g), (nine, 0));
        // r*G = O, (r-1)*G = -G, (r+1)*G = G.
        assert!(c.affine(&c.mul_point(&c.r, &g)).is_none());
        assert_eq!(
            c.affine(&c.mul_point(&(&c.r - 1u32), &g)),
            Some(c.negate(&g))
        );
        assert_eq!(c.affine(&c.mul_point(&(&c.r + 1u32), &g)), Some(g.clone()));
        assert!(c.affine(&c.mul_point(&BigUint::ZERO, &g)).is_none());
    }

    #[test]
    fn jacobian_arithmetic_matches_affine_reference() {
        let c = curve();
        let mut rng = Prng::new("jacobian");
        // Base points: G, and a point lifted from a random x (not necessarily in the
        // prime-order subgroup, which exercises the cofactor part of the group too).
        let mut bases = vec![c.g.clone()];
        while bases.len() < 3 {
            let x = BigUint::from_bytes_be(&rng.bytes32());
            if let Some(q) = c.lift_x(&x, rng.below(2) == 1) {
                assert!(on_curve(&q));
                bases.push(q);
            }
        }
        for q in &bases {
            for n in 0u32..=17 {
                let n = BigUint::from(n);
                assert_eq!(c.affine(&c.mul_point(&n, q)), ref_mul(&n, q), "n = {n}");
            }
            for _ in 0..2 {
                let n = BigUint::from_bytes_be(&rng.bytes32());
                let got = c.affine(&c.mul_point(&n, q));
                assert_eq!(got, ref_mul(&n, q));
                assert!(on_curve(&got.unwrap()));
            }
        }
        // Mixed addition special cases: P + P, P + (-P), O + Q.
        let g = &c.g;
        let two_g = c.affine(&c.double(&Curve::jacobian(g))).unwrap();
        assert_eq!(
            c.affine(&c.add_mixed(&Curve::jacobian(g), g)),
            Some(two_g.clone())
        );
        assert_eq!(Some(two_g), ref_add(&Some(g.clone()), &Some(g.clone())));
        assert!(c
            .affine(&c.add_mixed(&Curve::jacobian(g), &c.negate(g)))
            .is_none());
        assert_eq!(
            c.affine(&c.add_mixed(&Curve::infinity(), g)),
            Some(g.clone())
        );
        // The order-2 point (Montgomery x = 0) doubles to infinity.
        let t = c.lift_x(&BigUint::ZERO, false).unwrap();
        assert!(on_curve(&t));
        assert!(c.affine(&c.double(&Curve::jacobian(&t))).is_none());
    }

    #[test]
    fn fast_reduction_matches_division() {
        let c = curve();
        let mut rng = Prng::new("reduce");
        let p = &c.p;
        let p_minus_1 = p - 1u32;
        let mut inputs = vec![
            BigUint::ZERO,
            BigUint::from(1u32),
            p - 1u32,
            p.clone(),
            p + 1u32,
            &p_minus_1 * &p_minus_1,
            (BigUint::from(1u32) << 255u32) - 1u32,
            BigUint::from(1u32) << 255u32,
            (BigUint::from(1u32) << 256u32) - 1u32,
            (BigUint::from(1u32) << 510u32) - 1u32,
        ];
        for _ in 0..500 {
            let x = BigUint::from_bytes_be(&rng.bytes32()) % p;
            let y = BigUint::from_bytes_be(&rng.bytes32()) % p;
            inputs.push(&x * &y);
            inputs.push(x);
        }
        for t in inputs {
            assert_eq!(c.reduce(&t), &t % p, "t = {t:x}");
        }
    }

    #[test]
    fn sqrt_and_lift_x() {
        let c = curve();
        let mut rng = Prng::new("sqrt");
        let (mut squares, mut non_squares) = (0, 0);
        for _ in 0..64 {
            let v = BigUint::from_bytes_be(&rng.bytes32()) % &c.p;
            match c.sqrt(&v) {
                Some(root) => {
                    assert_eq!(c.sqr(&root), v);
                    squares += 1;
                }
                None => {
                    assert!(c.sqrt(&c.mul(&v, &BigUint::from(2u32))).is_some());
                    non_squares += 1;
                }
            }
        }
        assert!(squares > 10 && non_squares > 10);
        // lift_x reduces its input mod p first and honours the parity.
        let x = BigUint::from(9u32);
        let big = &x + &c.p;
        assert_eq!(c.lift_x(&big, true), c.lift_x(&x, true));
        assert_eq!(c.lift_x(&x, true), Some(c.negate(&c.g)));
        assert!(c.lift_x(&x, true).unwrap().y.bit(0));
    }

    #[test]
    fn byte_helpers() {
        assert_eq!(to_bytes32(&BigUint::ZERO), [0u8; 32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(to_bytes32(&BigUint::from(1u32)), one);
        let mut c = [0xffu8; 32];
        c[0] = 0x12;
        increment_be(&mut c);
        let mut want = [0u8; 32];
        want[0] = 0x13;
        assert_eq!(c, want);
        let mut all = [0xffu8; 32];
        increment_be(&mut all);
        assert_eq!(all, [0u8; 32]);
        assert_eq!(frame(&[]).unwrap(), vec![0]);
        assert_eq!(frame(&[0xaa; 255]).unwrap().len(), 256);
        assert_eq!(frame(&[0xaa; 255]).unwrap()[0], 0xff);
        assert!(matches!(
            frame(&[0; 256]),
            Err(AuthError::TooLong {
                got: 256,
                max: 255,
                ..
            })
        ));
    }

    /// Section 15.4 / vectors/ecsrp5-admin-secret.txt, every intermediate value.
    #[test]
    fn vector_admin_secret() {
        let c = curve();
        let user = b"admin";
        let password = b"secret";
        let salt: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let s_a = sha256(&[b"btest-vector client private key"]);
        let s_b = sha256(&[b"btest-vector server private key"]);
        assert_eq!(
            s_a,
            h32("d74f44c460bd99bfb4fc62b142025787b514e1bce88577f57e39b72b1788742f")
        );
        assert_eq!(
            s_b,
            h32("f1d8f6cb9a5a7e4b2979217866e66b8cf8845bbacb8f0a30b899498dcca176b1")
        );

        // Verifier.
        let inner = password_inner(user, password);
        assert_eq!(
            inner.0,
            h32("901b281c4e0c4007e8526ef27153b79330811e733976d5e65c8343a39e54ec81")
        );
        let i = password_i(&salt, &inner);
        assert_eq!(
            i.0,
            h32("865486414f27943b1e7bdd6a234356c98f01ce4492b447410faaab95bb28a20f")
        );
        let verifier = Verifier::new(user, password, salt);
        assert_eq!(
            verifier.x_gamma(),
            h32("303aa11588bc77b9b5aa3790c7d4ea757410a5c96308e814a3dd2e34e01d82d1")
        );
        assert_eq!(verifier.gamma_parity(), 1);
        assert_eq!(verifier.salt(), salt);
        assert!(on_curve(&verifier.gamma));

        // redp1(x_gamma, 0), which needs 3 counter increments for this password.
        let (v0, increments) = c.redp1_counted(&verifier.x_gamma(), false);
        assert_eq!(increments, 3);
        assert_eq!(
            c.to_mont(&v0).0,
            h32("5f1945061fc5a3796e3a6be24f43c19fb317e932dafd7d91bd492a6542a28367")
        );
        assert_eq!(
            to_bytes32(&v0.x),
            h32("09c3efb0ca704e2418e5168cf9ee6c4a5dc293dd85a8283c67f3d50fed4fa7cb")
        );
        assert_eq!(
            to_bytes32(&v0.y),
            h32("6cdd32356de1ac377976179b7d82308acaa3fcee16a2a581483b6376d28ebbec")
        );
        assert_eq!(verifier.blind, v0);
        assert_eq!(
            c.redp1(&verifier.x_gamma(), true),
            c.negate(&v0),
            "redp1(x, 1) = -redp1(x, 0)"
        );

        // MSG1.
        let (mut client, msg1) = ClientHandshake::new(user, password, s_a);
        let x_wa = h32("6d16e19cb82b578153ca17692b1148af61a497f4c8e828cafa04c9bc19753400");
        assert_eq!(client.x_wa, x_wa);
        assert_eq!(
            frame(&msg1).unwrap(),
            hex("27 61646d696e00 6d16e19cb82b578153ca17692b1148af61a497f4c8e828cafa04c9bc19753400 00")
        );
        let parsed = parse_msg1(&msg1).unwrap();
        assert_eq!(
            parsed,
            Msg1 {
                user: b"admin",
                x_wa,
                parity_wa: 0
            }
        );

        // MSG2.
        let (server, msg2) = ServerHandshake::new(&verifier, &parsed, s_b).unwrap();
        let x_wb = h32("2bb9404820928d2353fe0c3a33f481a2c36112c9ee41ab83651e43d9d98ceb66");
        assert_eq!(msg2[..32], x_wb);
        assert_eq!(msg2[32], 1);
        assert_eq!(
            frame(&msg2).unwrap(),
            hex("31 2bb9404820928d2353fe0c3a33f481a2c36112c9ee41ab83651e43d9d98ceb66 01 000102030405060708090a0b0c0d0e0f")
        );

        // j, e and z on both sides.
        let j = j_hash(&x_wa, &x_wb);
        assert_eq!(
            j,
            h32("2914a9d4792c4509016657623f5501951724e44910118dd312a6d3a1b2d90f59")
        );
        let e = client_scalar(&i.int(), &j, &BigUint::from_bytes_be(&s_a));
        assert_eq!(
            to_bytes32(&e),
            h32("0f3185b63cbba3fda57742ba6eb3789424fee4999110477d8f56e6ceb8a63053")
        );
        let z_expected = h32("7c52963d7e3ac11dcf84aecb0c48131fb3c653b04d3a7edb95cd6345ca84aab2");
        let w_b = c.lift_wire(&x_wb, 1, "x_wb", "parity_wb").unwrap();
        let w = c
            .affine(&c.add_mixed(&Curve::jacobian(&w_b), &c.redp1(&verifier.x_gamma(), true)))
            .unwrap();
        assert_eq!(
            c.affine(&c.mul_point(&BigUint::from_bytes_be(&s_b), &c.g)),
            Some(w.clone()),
            "W = s_b*G"
        );
        assert_eq!(client_z(&e, &w).unwrap().0, z_expected);
        let w_a = c.lift_wire(&x_wa, 0, "x_wa", "parity_wa").unwrap();
        let s_b_int = BigUint::from_bytes_be(&s_b);
        let z_server = server_z(&s_b_int, &w_a, &j, &verifier.gamma).unwrap();
        assert_eq!(z_server.0, z_expected);

        // Negative: a server using Gamma with the wrong parity derives another z.
        let z_wrong = server_z(&s_b_int, &w_a, &j, &c.negate(&verifier.gamma)).unwrap();
        assert_eq!(
            z_wrong.0,
            h32("3b0b5a07600282cf3b502faa6fcf8290d27e656b44c4073d16f1def8123f8642")
        );

        // MSG3 and MSG4 through the public API.
        let msg3 = client.on_msg2(&msg2).unwrap();
        let client_cc = h32("93a96efa0624fbb6cc85294f43bfa213ffd4e30a5c708abd79994a5b212d60f8");
        assert_eq!(msg3, client_cc);
        assert_eq!(proofs(&j, &z_server).0, client_cc);
        assert_eq!(
            frame(&msg3).unwrap(),
            hex("20 93a96efa0624fbb6cc85294f43bfa213ffd4e30a5c708abd79994a5b212d60f8")
        );
        let msg4 = server.on_msg3(&msg3).unwrap();
        assert_eq!(
            frame(&msg4).unwrap(),
            hex("20 4626f39aa843607144e6d9d7e0a481b00a2cc6f9b1b38b882bb4502a84ed6c06")
        );
        client.on_msg4(&msg4).unwrap();
        // The client's secrets are gone once MSG3 is made.
        assert_eq!(client.s_a.0, [0u8; 32]);
        assert_eq!(client.inner.0, [0u8; 32]);
    }

    /// One complete login; returns the verifier and the redp1 increments it needed.
    fn login(rng: &mut Prng, user: &[u8], password: &[u8]) -> (Verifier, u32) {
        let verifier = Verifier::new(user, password, rng.salt());
        let (mut client, msg1) = ClientHandshake::new(user, password, rng.bytes32());
        frame(&msg1).unwrap();
        let parsed = parse_msg1(&msg1).unwrap();
        assert_eq!(parsed.user, user);
        let (server, msg2) = ServerHandshake::new(&verifier, &parsed, rng.bytes32()).unwrap();
        let msg3 = client.on_msg2(&msg2).unwrap();
        let msg4 = server.on_msg3(&msg3).unwrap();
        client.on_msg4(&msg4).unwrap();
        let increments = curve().redp1_counted(&verifier.x_gamma(), false).1;
        (verifier, increments)
    }

    #[test]
    fn round_trips_cover_both_parities_and_redp1_retries() {
        // Issue 20: 200 random logins took 44.7 s in a debug build and dominated the unit suite.
        // A fixed seed and 16 logins cover every (gamma parity, redp1 retried or not) pair; the
        // assertion checks each pair by name, so a seed change that loses one fails loudly.
        let mut rng = Prng::new("round trips");
        let mut seen = [[0u32; 2]; 2]; // [parity][retried]
        for n in 0..16 {
            // User names 1..=64 long (n * 21 % 64 visits both ends), passwords of 0..=40
            // arbitrary bytes.
            let user: Vec<u8> = (0..1 + (n * 21) % 64)
                .map(|_| b'a' + rng.below(26) as u8)
                .collect();
            let password: Vec<u8> = (0..rng.below(41)).map(|_| rng.below(256) as u8).collect();
            let (verifier, increments) = login(&mut rng, &user, &password);
            seen[usize::from(verifier.gamma_parity())][usize::from(increments > 0)] += 1;
        }
        for (parity, row) in seen.iter().enumerate() {
            for (retried, &count) in row.iter().enumerate() {
                assert!(
                    count >= 1,
                    "no login with parity {parity}, redp1 retried {}: {seen:?}",
                    retried == 1
                );
            }
        }
    }

    #[test]
    fn empty_password_and_long_names() {
        let mut rng = Prng::new("edge");
        login(&mut rng, b"admin", b"");
        login(&mut rng, &[b'x'; MAX_USER_LEN], b"pw");
        login(&mut rng, b"u", &[0u8; 300]);
    }

    struct Fixture {
        verifier: Verifier,
        msg1: Vec<u8>,
        s_b: [u8; 32],
    }

    fn fixture() -> (Fixture, ClientHandshake) {
        let salt = [3u8; 16];
        let verifier = Verifier::new(b"admin", b"secret", salt);
        let (client, msg1) = ClientHandshake::new(b"admin", b"secret", [5u8; 32]);
        (
            Fixture {
                verifier,
                msg1,
                s_b: [6u8; 32],
            },
            client,
        )
    }

    /// An x whose lift fails (it lies on the twist).
    fn twist_x() -> [u8; 32] {
        let c = curve();
        (2u32..)
            .map(BigUint::from)
            .find(|x| c.lift_x(x, false).is_none())
            .map(|x| to_bytes32(&x))
            .unwrap()
    }

    #[test]
    fn rejects_tampered_messages() {
        let (f, client) = fixture();
        let parsed = parse_msg1(&f.msg1).unwrap();
        let (server, msg2) = ServerHandshake::new(&f.verifier, &parsed, f.s_b).unwrap();

        // MSG2: flipped bits in x_wb, the parity byte and the salt. Either the client
        // refuses MSG2, or its proof is refused by the server.
        for bit in [0, 7, 100, 255, 256, 263, 264, 300, 391] {
            let mut bad = msg2;
            bad[bit / 8] ^= 1 << (bit % 8);
            let (mut c2, _) = ClientHandshake::new(b"admin", b"secret", [5u8; 32]);
            match c2.on_msg2(&bad) {
                Err(e) => assert!(
                    matches!(
                        e,
                        AuthError::NotOnCurve { field: "x_wb" }
                            | AuthError::BadParity {
                                field: "parity_wb",
                                ..
                            }
                    ),
                    "{e}"
                ),
                Ok(msg3) => assert_eq!(
                    server.on_msg3(&msg3),
                    Err(AuthError::ProofMismatch { side: "client" })
                ),
            }
        }
        let mut bad = msg2;
        bad[32] = 2;
        let (mut c2, _) = ClientHandshake::new(b"admin", b"secret", [5u8; 32]);
        assert_eq!(
            c2.on_msg2(&bad),
            Err(AuthError::BadParity {
                field: "parity_wb",
                value: 2
            })
        );

        let mut client = client;
        let msg3 = client.on_msg2(&msg2).unwrap();
        let msg4 = server.on_msg3(&msg3).unwrap();
        // MSG3 / MSG4: every single-bit change is refused.
        for bit in 0..PROOF_LEN * 8 {
            let mut bad3 = msg3;
            bad3[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                server.on_msg3(&bad3),
                Err(AuthError::ProofMismatch { side: "client" })
            );
            let mut bad4 = msg4;
            bad4[bit / 8] ^= 1 << (bit % 8);
            let err = client.on_msg4(&bad4).unwrap_err();
            assert_eq!(err, AuthError::ProofMismatch { side: "server" });
            assert!(err.to_string().starts_with("server proof mismatch"));
        }
        // Echoing the client proof back as MSG4 is refused too.
        assert!(client.on_msg4(&msg3).is_err());
        client.on_msg4(&msg4).unwrap();
    }

    #[test]
    fn rejects_points_off_the_curve() {
        let (f, mut client) = fixture();
        let x = twist_x();
        let mut msg1 = f.msg1.clone();
        let tail = msg1.len() - MSG1_TAIL_LEN;
        msg1[tail..tail + X_LEN].copy_from_slice(&x);
        let parsed = parse_msg1(&msg1).unwrap();
        let err = ServerHandshake::new(&f.verifier, &parsed, f.s_b).unwrap_err();
        assert_eq!(err, AuthError::NotOnCurve { field: "x_wa" });
        assert_eq!(err.to_string(), "x_wa is not on the curve");

        let mut msg2 = [0u8; MSG2_LEN];
        msg2[..X_LEN].copy_from_slice(&x);
        let err = client.on_msg2(&msg2).unwrap_err();
        assert_eq!(err.to_string(), "x_wb is not on the curve");

        let mut msg1 = f.msg1.clone();
        *msg1.last_mut().unwrap() = 7;
        let parsed = parse_msg1(&msg1).unwrap();
        assert_eq!(
            ServerHandshake::new(&f.verifier, &parsed, f.s_b).unwrap_err(),
            AuthError::BadParity {
                field: "parity_wa",
                value: 7
            }
        );
    }

    #[test]
    fn rejects_short_long_and_malformed_payloads() {
        let (f, mut client) = fixture();
        // Truncated MSG1 at every length.
        for len in 0..f.msg1.len() {
            let err = parse_msg1(&f.msg1[..len]).unwrap_err();
            if len <= 5 {
                assert_eq!(err, AuthError::NoUserTerminator);
            } else {
                assert!(
                    matches!(err, AuthError::TooShort { msg: "MSG1", .. }),
                    "{err}"
                );
            }
        }
        // Trailing bytes after the 33-byte tail are ignored.
        let mut longer = f.msg1.clone();
        longer.push(0xee);
        assert_eq!(parse_msg1(&longer).unwrap(), parse_msg1(&f.msg1).unwrap());
        // No NUL at all.
        let mut no_nul = b"admin".to_vec();
        no_nul.extend_from_slice(&[1u8; MSG1_TAIL_LEN]);
        let err = parse_msg1(&no_nul).unwrap_err();
        assert_eq!(err.to_string(), "MSG1 has no NUL byte after the user name");
        // A 300-byte user name cannot be framed, nor parsed.
        let (_, big) = ClientHandshake::new(&[b'n'; 300], b"pw", [9u8; 32]);
        assert_eq!(big.len(), 334);
        assert!(matches!(
            frame(&big),
            Err(AuthError::TooLong { got: 334, .. })
        ));
        assert_eq!(
            parse_msg1(&big).unwrap_err().to_string(),
            "MSG1 too long: 334 bytes, at most 255"
        );
        // The longest name that fits.
        let (_, max) = ClientHandshake::new(&[b'n'; MAX_USER_LEN], b"pw", [9u8; 32]);
        assert_eq!(frame(&max).unwrap()[0], 255);
        assert_eq!(parse_msg1(&max).unwrap().user.len(), MAX_USER_LEN);
        // Empty user name parses (the lookup then fails in the caller).
        let mut anon = vec![0u8];
        anon.extend_from_slice(&[1u8; MSG1_TAIL_LEN]);
        assert_eq!(parse_msg1(&anon).unwrap().user, b"");

        // MSG2 shorter than 49 bytes.
        let parsed = parse_msg1(&f.msg1).unwrap();
        let (server, msg2) = ServerHandshake::new(&f.verifier, &parsed, f.s_b).unwrap();
        for len in 0..MSG2_LEN {
            let err = client.on_msg2(&msg2[..len]).unwrap_err();
            assert_eq!(
                err,
                AuthError::TooShort {
                    msg: "MSG2",
                    got: len,
                    need: MSG2_LEN
                }
            );
        }
        assert_eq!(
            client.on_msg2(&msg2[..12]).unwrap_err().to_string(),
            "MSG2 too short: 12 bytes, need 49"
        );
        // Proof lengths other than 32.
        for len in [0, 1, 31] {
            assert!(matches!(
                server.on_msg3(&[0u8; 40][..len]),
                Err(AuthError::TooShort { msg: "MSG3", .. })
            ));
        }
        assert!(matches!(
            server.on_msg3(&[0u8; 33]),
            Err(AuthError::TooLong { msg: "MSG3", .. })
        ));
        // MSG4 before MSG2, then a good MSG2 (with one extra byte, which is ignored).
        assert!(matches!(
            client.on_msg4(&[0u8; 32]),
            Err(AuthError::OutOfOrder { .. })
        ));
        let mut msg2_long = msg2.to_vec();
        msg2_long.push(0xee);
        let msg3 = client.on_msg2(&msg2_long).unwrap();
        assert!(matches!(
            client.on_msg2(&msg2),
            Err(AuthError::OutOfOrder { .. })
        ));
        let msg4 = server.on_msg3(&msg3).unwrap();
        for len in [0, 31, 33] {
            let mut m = msg4.to_vec();
            m.resize(len, 0);
            assert!(client.on_msg4(&m).is_err());
        }
        // An empty MSG4 (length byte 00) fails.
        assert!(matches!(
            client.on_msg4(&[]),
            Err(AuthError::TooShort {
                msg: "MSG4",
                got: 0,
                ..
            })
        ));
        client.on_msg4(&msg4).unwrap();
    }

    #[test]
    fn rejects_wrong_password_and_unknown_user() {
        let mut rng = Prng::new("wrong password");
        let verifier = Verifier::new(b"admin", b"secret", rng.salt());
        for (user, password) in [
            (&b"admin"[..], &b"Secret"[..]),
            (b"admin", b""),
            (b"Admin", b"secret"),
        ] {
            let (mut client, msg1) = ClientHandshake::new(user, password, rng.bytes32());
            let parsed = parse_msg1(&msg1).unwrap();
            let (server, msg2) = ServerHandshake::new(&verifier, &parsed, rng.bytes32()).unwrap();
            let msg3 = client.on_msg2(&msg2).unwrap();
            let err = server.on_msg3(&msg3).unwrap_err();
            assert_eq!(err, AuthError::ProofMismatch { side: "client" });
            assert!(err.to_string().starts_with("client proof mismatch"));
        }

        // Unknown user: dummy verifier with a per-name salt; same steps, then a mismatch.
        let dummy = Verifier::new(b"", &rng.bytes32(), rng.salt());
        let key = rng.bytes32();
        let (mut client, msg1) = ClientHandshake::new(b"ghost", b"secret", rng.bytes32());
        let parsed = parse_msg1(&msg1).unwrap();
        let salt = derived_salt(&key, parsed.user);
        assert_eq!(salt, derived_salt(&key, b"ghost"));
        assert_ne!(salt, derived_salt(&key, b"ghost2"));
        let stand_in = dummy.with_salt(salt);
        assert_eq!(stand_in.x_gamma(), dummy.x_gamma());
        let (server, msg2) = ServerHandshake::new(&stand_in, &parsed, rng.bytes32()).unwrap();
        assert_eq!(msg2[field::SALT], salt);
        let msg3 = client.on_msg2(&msg2).unwrap();
        assert_eq!(
            server.on_msg3(&msg3),
            Err(AuthError::ProofMismatch { side: "client" })
        );
    }

    #[test]
    fn verifier_from_key_and_unknown_keys() {
        let mut rng = Prng::new("from key");
        let salt = rng.salt();
        let a = Verifier::new(b"admin", b"secret", salt);
        let b = Verifier::from_key(&PasswordKey::new(b"admin", b"secret"), salt);
        assert_eq!(a.x_gamma(), b.x_gamma());
        assert_eq!(a.gamma_parity(), b.gamma_parity());
        assert_eq!(
            format!("{:?}", PasswordKey::new(b"a", b"pw")),
            "PasswordKey(..)"
        );

        // A login against a per-login verifier from the key works.
        let key = rng.bytes32();
        let salt = derived_salt(&key, b"admin");
        let v = Verifier::from_key(&PasswordKey::new(b"admin", b"secret"), salt);
        let (mut client, msg1) = ClientHandshake::new(b"admin", b"secret", rng.bytes32());
        let parsed = parse_msg1(&msg1).unwrap();
        let (server, msg2) = ServerHandshake::new(&v, &parsed, rng.bytes32()).unwrap();
        let msg4 = server.on_msg3(&client.on_msg2(&msg2).unwrap()).unwrap();
        client.on_msg4(&msg4).unwrap();

        // Unknown name: stable stand-in per name and process key, and no password opens it.
        let ghost = |k: &[u8; 32], n: &[u8]| {
            Verifier::from_key(&PasswordKey::unknown(k, n), derived_salt(k, n))
        };
        let g1 = ghost(&key, b"ghost");
        assert_eq!(g1.x_gamma(), ghost(&key, b"ghost").x_gamma());
        assert_eq!(g1.salt(), ghost(&key, b"ghost").salt());
        assert_ne!(g1.x_gamma(), ghost(&key, b"ghost2").x_gamma());
        assert_ne!(g1.x_gamma(), ghost(&rng.bytes32(), b"ghost").x_gamma());
        for pw in [&b"secret"[..], b"", b"ghost"] {
            let (mut client, msg1) = ClientHandshake::new(b"ghost", pw, rng.bytes32());
            let parsed = parse_msg1(&msg1).unwrap();
            let (server, msg2) = ServerHandshake::new(&g1, &parsed, rng.bytes32()).unwrap();
            assert_eq!(msg2[field::SALT], derived_salt(&key, b"ghost"));
            let msg3 = client.on_msg2(&msg2).unwrap();
            assert_eq!(
                server.on_msg3(&msg3),
                Err(AuthError::ProofMismatch { side: "client" })
            );
        }
    }

    #[test]
    fn degenerate_private_key_fails_without_panic() {
        let c = curve();
        let (f, _) = fixture();
        let parsed = parse_msg1(&f.msg1).unwrap();
        let (_, msg2) = ServerHandshake::new(&f.verifier, &parsed, f.s_b).unwrap();
        for s_a in [[0u8; 32], R_BYTES] {
            let (mut client, msg1) = ClientHandshake::new(b"admin", b"secret", s_a);
            assert_eq!(parse_msg1(&msg1).unwrap().x_wa, [0u8; 32]);
            assert_eq!(
                client.on_msg2(&msg2),
                Err(AuthError::Degenerate { point: "W_a" })
            );
        }
        // s_b = r: W_b is just the blinding point, and Z = r*(W_a + j*Gamma) is infinity
        // because both summands lie in the prime-order subgroup.
        assert!(c.affine(&c.mul_point(&c.r, &f.verifier.gamma)).is_none());
        assert_eq!(
            ServerHandshake::new(&f.verifier, &parsed, R_BYTES).unwrap_err(),
            AuthError::Degenerate { point: "Z" }
        );
    }

    #[test]
    fn error_texts() {
        let cases = [
            (
                AuthError::TooShort {
                    msg: "MSG2",
                    got: 12,
                    need: 49,
                },
                "MSG2 too short: 12 bytes, need 49",
            ),
            (
                AuthError::NotOnCurve { field: "x_wb" },
                "x_wb is not on the curve",
            ),
            (
                AuthError::BadParity {
                    field: "parity_wa",
                    value: 2,
                },
                "parity_wa is 0x02, need 0x00 or 0x01",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        let e: Box<dyn std::error::Error> = Box::new(AuthError::ProofMismatch { side: "server" });
        assert!(e.to_string().starts_with("server proof mismatch"));
        assert!(AuthError::Degenerate { point: "Z" }
            .to_string()
            .starts_with("Z is the point at infinity"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let (f, client) = fixture();
        let parsed = parse_msg1(&f.msg1).unwrap();
        let (server, _) = ServerHandshake::new(&f.verifier, &parsed, f.s_b).unwrap();
        let text = format!("{:?} {:?} {:?}", f.verifier, client, server);
        assert!(text.contains("Verifier") && text.contains(".."), "{text}");
        assert!(!text.contains("s_a") && !text.contains("client_cc"));
    }

    #[test]
    fn secret_buffers_are_wiped() {
        let mut s = Secret32([0xa5; 32]);
        s.wipe();
        assert_eq!(s.0, [0u8; 32]);
    }
}
