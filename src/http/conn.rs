//! Connection I/O that both of our HTTP servers share (the `--http` server in this module
//! and `btest exporter`, which includes this file on its own when the `http` feature is off):
//! a write bounded by a deadline, and the linger before close.
//!
//! Must not: parse or render HTTP (request.rs and the servers do), or block past its bounds.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

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
