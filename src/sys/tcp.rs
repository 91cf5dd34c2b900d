//! TCP data-path system calls std does not offer: a receive that discards (MSG_TRUNC) and the
//! kernel's per-socket pacing cap (SO_MAX_PACING_RATE).
//!
//! Owns only the raw calls; when to use them (which connection, which rate) is the engine's.
//! Both are Linux's: elsewhere the receive copies (a plain read) and the pacing cap is
//! `Unsupported`, which the sender takes as "user-space pacing only".
//!
//! Must not: keep state, log, or allocate (both calls run on the data path).

use std::io;
use std::net::TcpStream;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

/// `SO_MAX_PACING_RATE` value that means "no cap". The kernel compares the 32-bit value with
/// `~0U` and widens it to `~0UL` (net/core/sock.c, `sk_setsockopt`), so this clears the cap on
/// kernels with 32- and 64-bit rates alike.
pub const PACING_UNLIMITED: u32 = u32::MAX;

/// Receives up to `buf.len()` bytes from a TCP socket and discards them in the kernel:
/// `recv(fd, buf, len, MSG_TRUNC)`. tcp(7): "Since Linux 2.4 ... MSG_TRUNC ... causes the
/// received bytes of data to be discarded, rather than passed back in a caller-supplied
/// buffer", so the payload is never copied to user space. Returns the bytes consumed (0 at
/// EOF), or the error of recv(2): the socket's SO_RCVTIMEO gives `WouldBlock`, a signal
/// `Interrupted`.
///
/// `buf` is still a real, writable buffer of that length: a kernel (or a socket type) that
/// ignored the flag would copy into it, and the call stays memory-safe and correct; the
/// pages are not touched when the kernel discards (tests/`discards_without_copying`).
#[cfg(target_os = "linux")]
pub fn recv_discard(fd: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe the live, writable `buf`, borrowed mutably for
    // the whole call, so even a kernel that copied despite MSG_TRUNC writes only inside it;
    // `fd` is a borrowed, open socket.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Outside Linux MSG_TRUNC does not discard TCP data (macOS and FreeBSD define it for
/// datagrams only, Winsock not at all): a plain read, which copies.
#[cfg(not(target_os = "linux"))]
pub fn recv_discard(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    (&*s).read(buf)
}

/// Sets SO_MAX_PACING_RATE, in bytes per second ([`PACING_UNLIMITED`] clears it). The value
/// goes as a 32-bit int, which every kernel reads the same way: Linux >= 4.20 also takes
/// 64 bits, but older kernels read the first 4 bytes of a longer value, which on big-endian
/// routers would be the high word (a cap of 0). Callers cap larger rates themselves.
#[cfg(target_os = "linux")]
pub fn set_max_pacing_rate(fd: &TcpStream, bytes_per_sec: u32) -> io::Result<()> {
    // The kernel reads an unsigned int; i32 has the same bits.
    super::set_int_opt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_MAX_PACING_RATE,
        bytes_per_sec as i32,
    )
}

/// Reads SO_MAX_PACING_RATE back (bytes per second; `u64::MAX` or `u32::MAX` = no cap).
#[cfg(target_os = "linux")]
pub fn max_pacing_rate(fd: &TcpStream) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the value pointer refers to the live, writable `v` and `len` holds its exact
    // size; the kernel writes at most `len` bytes (4 on kernels with a 32-bit rate, which
    // leaves the zeroed high half of a little-endian u64 intact) and stores the length in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&mut v as *mut u64).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize == std::mem::size_of::<u32>() {
        // A 32-bit answer sits in the first 4 bytes whatever the byte order.
        let b = v.to_ne_bytes();
        return Ok(u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
    }
    Ok(v)
}

/// No SO_MAX_PACING_RATE outside Linux: the user-space pacer alone holds the rate.
#[cfg(not(target_os = "linux"))]
pub fn set_max_pacing_rate(_s: &TcpStream, _bytes_per_sec: u32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// No SO_MAX_PACING_RATE outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn max_pacing_rate(_s: &TcpStream) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    use crate::net::loopback_pair as pair;

    #[test]
    fn discards_without_copying() {
        let (mut c, s) = pair();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let sent = vec![0x55u8; 300_000];
        let w = std::thread::spawn(move || {
            c.write_all(&sent).unwrap();
            c.write_all(b"tail").unwrap();
        });
        let mut buf = vec![0xAAu8; 64 * 1024];
        let mut got = 0usize;
        while got < 300_000 {
            // Never ask past the 0x55 bytes, so the tail is left for the copying read below.
            let want = (300_000 - got).min(buf.len());
            let n = recv_discard(&s, &mut buf[..want]).unwrap();
            assert!(n > 0, "EOF after {got} bytes");
            got += n;
        }
        w.join().unwrap();
        assert_eq!(got, 300_000);
        // The kernel consumed the bytes without writing our buffer: this is what saves the copy.
        assert!(buf.iter().all(|&b| b == 0xAA), "MSG_TRUNC copied data");
        // And the stream goes on where the discard stopped.
        let mut tail = [0u8; 4];
        (&s).read_exact(&mut tail).unwrap();
        assert_eq!(&tail, b"tail");
    }

    #[test]
    fn discard_reports_eof_and_timeout() {
        let (c, s) = pair();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 16];
        let e = recv_discard(&s, &mut buf).unwrap_err();
        assert!(crate::net::is_timeout(&e), "{e}");
        drop(c);
        assert_eq!(recv_discard(&s, &mut buf).unwrap(), 0);
    }

    #[test]
    fn pacing_rate_is_set_read_back_and_cleared() {
        let (c, _s) = pair();
        set_max_pacing_rate(&c, 12_500_000).unwrap();
        assert_eq!(max_pacing_rate(&c).unwrap(), 12_500_000);
        set_max_pacing_rate(&c, PACING_UNLIMITED).unwrap();
        let v = max_pacing_rate(&c).unwrap();
        assert!(v == u64::MAX || v == u64::from(u32::MAX), "{v}");
    }
}
