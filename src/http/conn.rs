//! Connection I/O that both of our HTTP servers share (the `--http` server in this module
//! and `btest exporter`, which includes this file on its own when the `http` feature is off):
//! reading a request head by a deadline, a write bounded by a deadline, and the linger
//! before close.
//!
//! Must not: parse (request.rs does) or render HTTP and choose the answers (the servers do),
//! or block past its bounds.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::request::{parse_head, HeadError, Request, MAX_HEAD};
use crate::sys::AsSock;

/// After a response, how long (and how many bytes) we keep reading what the client still
/// sends before closing. Closing a socket with unread input makes the kernel send RST, which
/// can destroy the response before the client reads it (a 431 after a 9 KB head, a 405 after
/// a POST body); a FIN first and a short drain avoid that.
pub const LINGER: Duration = Duration::from_millis(200);
pub const LINGER_BYTES: usize = 64 * 1024;

/// Writes all of `bytes` by `deadline` (each write's timeout is what is left of it).
pub fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// FIN, then read and discard what the client still sends, briefly (see [`LINGER`]).
pub fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let fd = stream.raw_sock();
    let deadline = after(LINGER);
    let mut chunk = [0u8; 2048];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || !crate::sys::wait_readable(fd, left)
            || stream.set_read_timeout(Some(left)).is_err()
        {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// `now + d`, saturating instead of panicking on an absurd duration.
pub fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// What reading a request head came to; each server words its own answers.
pub enum HeadRead {
    Request(Request),
    /// The client began a head and did not finish it by the deadline: 408.
    Timeout,
    /// More than [`MAX_HEAD`] bytes, or too many fields: 431.
    TooLarge,
    /// Malformed (400), or a method other than GET and HEAD (405).
    Bad(HeadError),
    /// Nothing to answer: the client left, sent nothing in time, or the server is stopping.
    Close,
}

/// Reads one request head by `deadline`, in `POLL_TIMEOUT` steps so `quitting` is seen while
/// a client dawdles, never holding more than [`MAX_HEAD`] bytes.
pub fn read_head(
    stream: &mut TcpStream,
    deadline: Instant,
    quitting: impl Fn() -> bool,
) -> HeadRead {
    let fd = stream.raw_sock();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline {
            // A client that never sent a byte (a port scan, a browser's speculative
            // connection) gets no answer; one that started a request is told why it ends.
            return if buf.is_empty() {
                HeadRead::Close
            } else {
                HeadRead::Timeout
            };
        }
        if quitting() {
            return HeadRead::Close;
        }
        let left = deadline - now;
        if !crate::sys::wait_readable(fd, left.min(crate::net::POLL_TIMEOUT)) {
            continue;
        }
        // The per-read timeout is the time left, so no read can overrun the deadline.
        if stream.set_read_timeout(Some(left)).is_err() {
            return HeadRead::Close;
        }
        // Never hold more than MAX_HEAD bytes: parse_head decides by then.
        let room = MAX_HEAD.saturating_sub(buf.len()).min(chunk.len());
        if room == 0 {
            return HeadRead::TooLarge;
        }
        let n = match stream.read(&mut chunk[..room]) {
            Ok(0) => return HeadRead::Close,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return HeadRead::Close,
        };
        let fresh = chunk.get(..n).unwrap_or(&[]);
        buf.extend_from_slice(fresh);
        // Only a new line end (or a full buffer) can change parse_head's answer; skipping the
        // rest keeps a byte-at-a-time client from costing a re-parse per byte.
        if !fresh.contains(&b'\n') && buf.len() < MAX_HEAD {
            continue;
        }
        match parse_head(&buf) {
            Ok(Some((req, _))) => return HeadRead::Request(req),
            Ok(None) => continue,
            Err(HeadError::TooLarge) => return HeadRead::TooLarge,
            Err(e) => return HeadRead::Bad(e),
        }
    }
}
