//! Finds the peer's 12-byte status messages inside a TCP data stream on connection 0.
//!
//! In TCP mode statuses travel between whole data chunks in the same byte stream. Two ways to
//! find them (docs/protocol.md, "Status messages in TCP mode"):
//! - zero payload: any non-zero byte starts a status, so scan for the first non-zero byte;
//! - random payload: statuses sit only at chunk boundaries (our sender writes whole
//!   `tx_size` chunks and never starts a chunk with `07 8x`), so look there only.
//!
//! Pure: no sockets. A candidate must look like a status (`07`, CPU byte `00` or `>= 80`,
//! reserved `00 00`; or RouterOS 7.x's CPU byte without its high bit, `01..=64`, followed by
//! a sequence in 1..2^24) or it is treated as data.

use crate::wire::status::{self, Status};

/// Stream scanner state.
#[derive(Debug, Clone)]
pub struct StatusScanner {
    zero_payload: bool,
    chunk: usize,
    /// Bytes of the current chunk already passed (random mode); `chunk` = at a boundary.
    pos: usize,
    cand: [u8; status::LEN],
    have: usize,
}

/// A CPU byte with the valid bit clear and a percentage in it: RouterOS 7.23.1 servers clear
/// the bit a client sets (`07 1e 00 00 ...`, reported by tikoci/centrs, validated against CHR
/// 7.23.1; docs/protocol.md 14.1). `00` stays "no CPU information".
pub fn bare_cpu(b: u8) -> bool {
    (1..=100).contains(&b)
}

/// Bytes a candidate needs before it is judged: 4 (`07`, CPU, reserved `00 00`), or 8 when
/// the CPU byte is bare, whose candidates must also carry a plausible sequence.
fn decide_len(cand: &[u8]) -> usize {
    if cand.len() >= 2 && bare_cpu(cand[1]) {
        8
    } else {
        4
    }
}

/// Whether the bytes so far can begin a status: `07`, a CPU byte `00`, `>= 80` or bare
/// (1..=100), reserved `00 00`; with a bare CPU byte also a sequence in 1..2^24 (a status a
/// second for 194 days), so a bare CPU byte does not make data look like a status more often:
/// the 8 bytes a data candidate must match instead of 4 more than pay for the 100 extra CPU
/// values.
fn plausible_prefix(b: &[u8]) -> bool {
    let Some((&t, rest)) = b.split_first() else {
        return true;
    };
    if t != status::TYPE {
        return false;
    }
    let cpu_ok = |c: u8| c == 0 || c & status::CPU_VALID != 0 || bare_cpu(c);
    if rest.first().is_some_and(|&c| !cpu_ok(c))
        || b[2.min(b.len())..b.len().min(4)].iter().any(|&x| x != 0)
    {
        return false;
    }
    if b.len() >= 8 && bare_cpu(b[1]) {
        let seq = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        return seq != 0 && seq < 1 << 24;
    }
    true
}

impl StatusScanner {
    /// A scanner for a stream whose payload is zeros (`zero_payload`) or random, sent in
    /// chunks of `chunk` bytes.
    pub fn new(zero_payload: bool, chunk: usize) -> Self {
        StatusScanner {
            zero_payload,
            chunk: chunk.max(1),
            // The stream starts with a chunk, not at a boundary: the first status can only come
            // after the first chunk, or before any data if the peer does not transmit.
            pos: chunk.max(1),
            cand: [0; status::LEN],
            have: 0,
        }
    }

    /// Feeds received bytes; calls `found` for every complete status.
    pub fn feed(&mut self, data: &[u8], mut found: impl FnMut(Status)) {
        let mut i = 0;
        while i < data.len() {
            if self.have > 0 {
                // One byte at a time until the 4 bytes that decide plausibility are in, so
                // that a rejection consumes the same bytes however the stream was cut.
                let take = if self.have < decide_len(&self.cand[..self.have]) {
                    1
                } else {
                    (status::LEN - self.have).min(data.len() - i)
                };
                let start = self.have;
                self.cand[start..start + take].copy_from_slice(&data[i..i + take]);
                self.have += take;
                i += take;
                if !plausible_prefix(&self.cand[..self.have]) {
                    // Not a status: those bytes were data. Only the random mode needs to know
                    // how far into the chunk they went.
                    self.pos = self.have;
                    self.have = 0;
                    continue;
                }
                if self.have == status::LEN {
                    if let Ok(s) = Status::parse(&self.cand) {
                        found(s);
                    }
                    self.have = 0;
                    self.pos = self.chunk; // statuses sit between chunks: still at a boundary
                }
                continue;
            }
            if self.zero_payload {
                match first_nonzero(&data[i..]) {
                    None => return,
                    Some(k) => {
                        i += k;
                        if data[i] == status::TYPE {
                            self.cand[0] = status::TYPE;
                            self.have = 1;
                        }
                        i += 1;
                    }
                }
            } else if self.pos >= self.chunk {
                if data[i] == status::TYPE {
                    self.cand[0] = status::TYPE;
                    self.have = 1;
                    i += 1;
                } else {
                    self.pos = 0;
                }
            } else {
                let adv = (self.chunk - self.pos).min(data.len() - i);
                self.pos += adv;
                i += adv;
            }
        }
    }
}

/// The go reply, `01 00 00 00`.
pub const OK: [u8; 4] = [1, 0, 0, 0];

/// A duplicate OK at the very start of connection 0's data phase is not data (issue 19: one
/// server sends a second `01 00 00 00` after the handshake's; counted as 4 data bytes, it made
/// one test of a pair pass and the other fail, and in random mode it would put the boundary
/// scan 4 bytes out of step). Only the first 4 bytes of the stream can be one: a zero payload
/// never holds `01`, a random chunk starts so with odds of 1 in 2^32. Pure; a read may end
/// inside the 4 bytes, so they are withheld until they match or not.
#[derive(Debug, Clone, Default)]
pub struct LeadingOk {
    have: usize,
    done: bool,
}

impl LeadingOk {
    /// Feeds the next read. Returns (bytes at the start of `data` that belong to the OK, not
    /// data; bytes withheld from earlier reads that turned out to be data: that many bytes of
    /// [`OK`], which come before `data` in the stream).
    pub fn feed(&mut self, data: &[u8]) -> (usize, usize) {
        if self.done {
            return (0, 0);
        }
        let prior = self.have;
        let mut i = 0;
        while self.have < OK.len() && i < data.len() {
            if data[i] != OK[self.have] {
                self.done = true;
                self.have = 0;
                return (0, prior);
            }
            self.have += 1;
            i += 1;
        }
        if self.have == OK.len() {
            self.done = true;
        }
        (i, 0)
    }
}

/// Index of the first non-zero byte. Blocks of 64 bytes are OR-ed together as eight u64
/// words before any byte is looked at, which the compiler turns into SIMD loads: a zero
/// stream costs one branch per 64 bytes. One word per iteration (the earlier form) made this
/// scan 20 % of a loopback TCP receive profile, more than the kernel's copy (15.6 %), and held
/// one stream at 22-25 Gbit/s (perf, issue 9).
pub fn first_nonzero(d: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let mut blocks = d.chunks_exact(BLOCK);
    for (b, blk) in (&mut blocks).enumerate() {
        if or_words(blk) != 0 {
            return blk.iter().position(|&x| x != 0).map(|k| b * BLOCK + k);
        }
    }
    let base = d.len() - blocks.remainder().len();
    blocks
        .remainder()
        .iter()
        .position(|&x| x != 0)
        .map(|k| base + k)
}

/// The OR of a 64-byte block's eight words, written out: the release profile optimises for
/// size (opt-level "z", for the router build), which keeps a loop over the words rolled.
fn or_words(b: &[u8]) -> u64 {
    // Native byte order is right here, on big-endian MIPS too: the words are only OR-ed and
    // compared with zero, and it costs no byte swap.
    let w = |k: usize| {
        u64::from_ne_bytes(b[k..k + 8].try_into().unwrap_or([0; 8])) // check-wire: allow (OR only)
    };
    (w(0) | w(8)) | (w(16) | w(24)) | (w(32) | w(40)) | (w(48) | w(56))
}

/// Makes a random payload chunk safe for boundary scanning: it must not start like a status.
pub fn sanitize_random_chunk(chunk: &mut [u8]) {
    if chunk.first() == Some(&status::TYPE) {
        chunk[0] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nonzero_finds_every_position_in_blocks_and_the_tail() {
        for len in [0usize, 1, 7, 8, 63, 64, 65, 130, 200] {
            assert_eq!(first_nonzero(&vec![0u8; len]), None, "len {len}");
            for at in 0..len {
                let mut d = vec![0u8; len];
                d[at] = 0x07;
                if at + 1 < len {
                    d[len - 1] = 1; // a later non-zero byte must not win
                }
                assert_eq!(first_nonzero(&d), Some(at), "len {len} at {at}");
            }
        }
    }

    fn st(seq: u32) -> [u8; 12] {
        Status::new(7, seq, 1000 + u64::from(seq)).to_bytes()
    }

    fn scan_all(s: &mut StatusScanner, stream: &[u8], piece: usize) -> Vec<u32> {
        let mut got = vec![];
        for p in stream.chunks(piece) {
            s.feed(p, |x| got.push(x.seq));
        }
        got
    }

    #[test]
    fn a_false_start_does_not_hide_a_status_whatever_the_read_split() {
        // Found by the `scanner` fuzz target: a `07` that is not a status, with a real status
        // starting 3 bytes later, gave no status read whole and one read byte by byte.
        let stream = [
            0, 0, 0, 0, 0x07, 0xbe, 0xa9, 0x07, 0x85, 0, 0, 0x42, 0xa0, 0x1d, 0, 0, 0, 0, 0,
        ];
        for zero in [true, false] {
            let whole = scan_all(&mut StatusScanner::new(zero, 1), &stream, stream.len());
            for piece in 1..stream.len() {
                let split = scan_all(&mut StatusScanner::new(zero, 1), &stream, piece);
                assert_eq!(split, whole, "zero {zero}, pieces of {piece}");
            }
            assert_eq!(whole.len(), 1, "zero {zero}: the status at offset 7");
        }
    }

    #[test]
    fn zero_mode_finds_statuses_split_anywhere() {
        let mut stream = vec![];
        for k in 1..=5u32 {
            stream.extend(vec![0u8; 1000]);
            stream.extend(st(k));
        }
        stream.extend(st(6)); // two in a row
        for piece in [1, 5, 11, 12, 13, 999, 100_000] {
            let mut s = StatusScanner::new(true, 32768);
            assert_eq!(
                scan_all(&mut s, &stream, piece),
                vec![1, 2, 3, 4, 5, 6],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn zero_mode_status_fields_survive() {
        let mut s = StatusScanner::new(true, 32768);
        let mut got = None;
        s.feed(&Status::new(42, 9, 123_456).to_bytes(), |x| got = Some(x));
        assert_eq!(got, Some(Status::new(42, 9, 123_456)));
    }

    #[test]
    fn random_mode_uses_boundaries() {
        let chunk = 64;
        let mut stream = vec![];
        let mut x = 1u32;
        let mut rnd = |n: usize| {
            let mut v: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            // plant lookalikes inside the chunk: they must not be found
            v[10] = 0x07;
            v[11] = 0x85;
            v[12] = 0;
            v[13] = 0;
            sanitize_random_chunk(&mut v);
            v
        };
        stream.extend(st(1)); // a status before any data
        for k in 2..=6u32 {
            stream.extend(rnd(chunk));
            stream.extend(st(k));
            if k == 4 {
                stream.extend(st(40)); // statuses back to back while the sender idles
            }
        }
        stream.extend(rnd(chunk));
        for piece in [1, 3, 12, 64, 77, 4096] {
            let mut s = StatusScanner::new(false, chunk);
            assert_eq!(
                scan_all(&mut s, &stream, piece),
                vec![1, 2, 3, 4, 40, 5, 6],
                "piece {piece}"
            );
        }
    }

    /// Splits `stream` into reads of `piece` and returns what is data after [`LeadingOk`]: the
    /// withheld bytes given back, then each read less its OK bytes.
    fn after_leading_ok(stream: &[u8], piece: usize) -> Vec<u8> {
        let mut l = LeadingOk::default();
        let mut out = vec![];
        for p in stream.chunks(piece) {
            let (skip, back) = l.feed(p);
            out.extend_from_slice(&OK[..back]);
            out.extend_from_slice(&p[skip..]);
        }
        out
    }

    #[test]
    fn a_leading_duplicate_ok_is_not_data_however_the_reads_fall() {
        let mut stray = OK.to_vec();
        stray.extend([0u8; 20]);
        let mut not_ok = vec![1, 0, 0, 7];
        not_ok.extend([0u8; 20]);
        let mut twice = OK.to_vec();
        twice.extend(OK);
        for piece in 1..=24 {
            assert_eq!(after_leading_ok(&stray, piece), vec![0u8; 20], "{piece}");
            assert_eq!(after_leading_ok(&not_ok, piece), not_ok, "{piece}");
            // only the first one: the second is data (zero mode would see a 01 byte)
            assert_eq!(after_leading_ok(&twice, piece), OK.to_vec(), "{piece}");
            // a status first: all data for this rule (the scanner takes it)
            let st = st(1).to_vec();
            assert_eq!(after_leading_ok(&st, piece), st, "{piece}");
        }
    }

    /// RouterOS 7.23.1's status with the CPU high bit clear (issue 19, `07 1e 00 00 ...`):
    /// found in both modes whatever the read split, and its CPU kept.
    #[test]
    fn routeros_7_bare_cpu_status_is_found() {
        let ros7: [u8; 12] = [0x07, 0x1e, 0, 0, 0x01, 0, 0, 0, 0x10, 0x92, 0x88, 0x03];
        let mut zero = vec![0u8; 100];
        zero.extend(ros7);
        zero.extend([0u8; 100]);
        let mut random = vec![0x55u8; 64];
        random.extend(ros7);
        random.extend([0x55u8; 64]);
        for piece in 1..=zero.len() {
            for (is_zero, stream) in [(true, &zero), (false, &random)] {
                let mut s = StatusScanner::new(is_zero, 64);
                let mut got = vec![];
                for p in stream.chunks(piece) {
                    s.feed(p, |x| got.push(x));
                }
                assert_eq!(
                    got,
                    vec![Status {
                        cpu: Some(30),
                        seq: 1,
                        bytes_received: 0x0388_9210
                    }],
                    "zero {is_zero}, pieces of {piece}"
                );
            }
        }
    }

    /// A bare CPU byte needs a plausible sequence too; inside a random chunk nothing counts.
    #[test]
    fn bare_cpu_lookalikes_are_data() {
        let golden: [(&[u8], usize); 6] = [
            (&[7, 0x1e, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], 1),
            (&[7, 0x64, 0, 0, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0], 1),
            (&[7, 0x1e, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9], 0), // sequence 0
            (&[7, 0x1e, 0, 0, 1, 0, 0, 1, 9, 9, 9, 9], 0), // sequence >= 2^24
            (&[7, 0x65, 0, 0, 1, 0, 0, 0, 9, 9, 9, 9], 0), // CPU 101: not a percentage
            (&[7, 0x1e, 0, 1, 1, 0, 0, 0, 9, 9, 9, 9], 0), // reserved byte set
        ];
        for (bytes, want) in golden {
            for piece in 1..=12 {
                let mut s = StatusScanner::new(true, 32768);
                let mut n = 0;
                let mut stream = vec![0u8; 10];
                stream.extend_from_slice(bytes);
                for p in stream.chunks(piece) {
                    s.feed(p, |_| n += 1);
                }
                assert_eq!(n, want, "{bytes:02x?} in pieces of {piece}");
            }
        }
        // random mode: a bare-CPU status shape in the middle of a chunk is data
        let mut chunk = vec![0x55u8; 64];
        chunk[20..32].copy_from_slice(&[7, 0x1e, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut s = StatusScanner::new(false, 64);
        let mut n = 0;
        s.feed(&[chunk.clone(), chunk].concat(), |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn junk_is_not_a_status() {
        let mut s = StatusScanner::new(true, 32768);
        let mut n = 0;
        s.feed(
            &[0, 0, 9, 7, 0x12, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
            |_| n += 1,
        );
        assert_eq!(n, 0);
    }
}
