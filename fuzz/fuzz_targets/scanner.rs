//! The TCP status scanner (`engine::scan::StatusScanner`) that finds the peer's 12-byte
//! statuses inside the data stream on connection 0, in both modes (zero payload: any non-zero
//! byte starts a status; random payload: statuses only at chunk boundaries), and its
//! `first_nonzero` search.
//!
//! Input: byte 0 bit 0 picks the mode, bytes 1-2 the chunk size (any u16, as a peer's
//! command may carry), byte 3 how many piece sizes follow (0..=15, one byte each), the rest is
//! the stream. Properties asserted:
//! - split invariance: the statuses found are the same whether the stream arrives whole, one
//!   byte per read, or cut at the fuzzed piece sizes (TCP may cut it anywhere);
//! - never more statuses than `len / 12`, and each one found is a 12-byte window of the
//!   stream (`07`, reserved `00 00`, its seq and byte count), in order, without overlap;
//! - an oracle: a stream built by the sender's rules from the same bytes (zero mode: zero runs
//!   and statuses; random mode: whole sanitised random chunks with statuses between them)
//!   yields exactly the statuses put in, field for field, whole and cut at the piece sizes;
//! - `first_nonzero` equals the naive `position(|b| b != 0)` on the stream.
#![no_main]

use btest::engine::scan::{self, StatusScanner};
use btest::wire::status::{self, Status};
use libfuzzer_sys::fuzz_target;

/// Feeds `stream` in pieces of the given sizes (cycled; 0 counts as 1).
fn scan(zero: bool, chunk: usize, stream: &[u8], pieces: &[usize]) -> Vec<Status> {
    let mut s = StatusScanner::new(zero, chunk);
    let mut got = Vec::new();
    let mut rest = stream;
    let mut k = 0;
    while !rest.is_empty() {
        let n = pieces
            .get(k % pieces.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (now, later) = rest.split_at(n);
        s.feed(now, |x| got.push(x));
        rest = later;
        k += 1;
    }
    got
}

fn split_invariant(zero: bool, chunk: usize, stream: &[u8], pieces: &[usize]) -> Vec<Status> {
    let whole = scan(zero, chunk, stream, &[]);
    let bytewise = scan(zero, chunk, stream, &[1]);
    let cut = scan(zero, chunk, stream, pieces);
    assert_eq!(whole, bytewise, "whole vs one byte per read");
    assert_eq!(whole, cut, "whole vs pieces {pieces:?}");
    whole
}

/// Each status found is a window of the stream, in order, not overlapping the previous one.
fn found_in_stream(found: &[Status], stream: &[u8]) {
    let mut from = 0;
    for s in found {
        let mut want = [0u8; 8];
        want[..4].copy_from_slice(&s.seq.to_le_bytes());
        want[4..].copy_from_slice(&s.bytes_received.to_le_bytes());
        let at = stream[from..]
            .windows(status::LEN)
            .position(|w| {
                w[4..] == want
                    && w[2..4] == [0, 0]
                    // RouterOS 7.x's CPU byte without the valid bit (1..=100) is a status
                    // too (issue 19), where it fits the framing
                    && (w[1] == 0 || w[1] & status::CPU_VALID != 0 || (1..=100).contains(&w[1]))
                    && Status::parse(w.try_into().unwrap()) == Ok(*s)
            })
            .unwrap_or_else(|| panic!("{s:?} is not in the stream after byte {from}"));
        from += at + status::LEN;
    }
}

/// Bound on a built stream, so one input costs at most a few scans of 4 KiB.
const MAX_BUILT: usize = 4096;

/// A stream as our sender (or a well-behaved peer) writes it, and the statuses in it.
fn build(zero: bool, chunk: usize, prog: &[u8]) -> (Vec<u8>, Vec<Status>) {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut i = 0;
    while i < prog.len() && stream.len() < MAX_BUILT {
        let op = prog[i];
        i += 1;
        if op & 1 == 1 {
            let f = |k: usize| prog.get(i + k).copied().unwrap_or(0);
            let s = Status::new(
                f(0),
                u32::from_le_bytes([f(1), f(2), f(3), f(4)]),
                u64::from(u32::from_le_bytes([f(5), f(6), f(7), f(8)])),
            );
            i += 9;
            stream.extend_from_slice(&s.to_bytes());
            want.push(s);
        } else if zero {
            stream.resize(stream.len() + usize::from(op >> 1) * 5, 0);
        } else {
            // One whole chunk of "random" bytes (the program bytes, cycled), sanitised as the
            // sender does, so it cannot start like a status.
            let mut c: Vec<u8> = (0..chunk)
                .map(|k| prog[(i + k) % prog.len()] ^ op)
                .collect();
            scan::sanitize_random_chunk(&mut c);
            stream.extend_from_slice(&c);
        }
    }
    (stream, want)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let zero = data[0] & 1 == 1;
    let raw_chunk = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let n_pieces = usize::from(data[3] % 16).min(data.len() - 4);
    let pieces: Vec<usize> = data[4..4 + n_pieces]
        .iter()
        .map(|&b| usize::from(b) + 1)
        .collect();
    let stream = &data[4 + n_pieces..];

    assert_eq!(
        scan::first_nonzero(stream),
        stream.iter().position(|&b| b != 0)
    );

    let found = split_invariant(zero, raw_chunk, stream, &pieces);
    assert!(found.len() <= stream.len() / status::LEN);
    found_in_stream(&found, stream);

    // Small chunks so that a 4 KiB input holds several of them.
    let chunk = 1 + raw_chunk % 300;
    let (built, want) = build(zero, chunk, stream);
    assert_eq!(scan(zero, chunk, &built, &[]), want, "built stream, whole");
    assert_eq!(
        scan(zero, chunk, &built, &pieces),
        want,
        "built stream, pieces {pieces:?}"
    );
});
