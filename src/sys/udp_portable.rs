//! UDP I/O where there is no sendmmsg/recvmmsg, GSO or GRO (Windows, macOS, FreeBSD): the
//! same names as the Linux module (udp_linux.rs), one datagram per system call.
//!
//! [`BATCHED`] is false, so engine/udpio.rs picks `Method::Single` and never asks for a batch
//! or a segmented send; [`send_segments`] and [`send_batch`] exist only so the engine compiles
//! unchanged, and send one datagram. [`RecvBatch`] keeps one whole datagram: without
//! MSG_TRUNC's real length a short slot would under-count the bytes received.
//!
//! Must not: decide which method to use, log, or allocate per call. Every `unsafe` block
//! carries a SAFETY comment.

use std::io;
use std::mem::ManuallyDrop;
use std::net::UdpSocket;

use socket2::SockAddr;

use super::RawSock;

/// No batched calls here: udpio sends and receives one datagram per call.
pub const BATCHED: bool = false;
/// As on Linux (udpio computes GSO batch sizes from them; never used for a send here).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// As on Linux.
pub const GSO_MAX_BYTES: usize = 65_000;
/// One datagram per call.
pub const MMSG_MAX: usize = 1;

/// The largest UDP payload plus room: a whole datagram always fits.
const WHOLE: usize = 65_536;

/// Runs `f` on the caller's socket `fd` as a std `UdpSocket`, without taking ownership.
fn with_udp<R>(fd: RawSock, f: impl FnOnce(&UdpSocket) -> R) -> R {
    #[cfg(unix)]
    // SAFETY: `fd` is an open UDP socket that the caller's `&UdpSocket` keeps alive for the
    // whole call; ManuallyDrop stops this temporary from closing it.
    let s = ManuallyDrop::new(unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    #[cfg(windows)]
    // SAFETY: as above: an open socket the caller owns, never closed here.
    let s = ManuallyDrop::new(unsafe {
        <UdpSocket as std::os::windows::io::FromRawSocket>::from_raw_socket(fd)
    });
    f(&s)
}

/// No UDP GSO outside Linux.
pub fn gso_supported(_fd: RawSock) -> bool {
    false
}

/// No UDP GRO outside Linux.
pub fn enable_gro(_fd: RawSock) -> bool {
    false
}

fn send_one(fd: RawSock, buf: &[u8], dest: Option<&SockAddr>) -> io::Result<usize> {
    with_udp(fd, |s| match dest.and_then(SockAddr::as_socket) {
        Some(d) => s.send_to(buf, d),
        None => s.send(buf),
    })
}

/// Never chosen here ([`gso_supported`] is false): sends the first segment only.
pub fn send_segments(
    fd: RawSock,
    buf: &[u8],
    segment: u16,
    dest: Option<&SockAddr>,
) -> io::Result<usize> {
    let one = &buf[..usize::from(segment).min(buf.len())];
    send_one(fd, one, dest)
}

/// Sends the first datagram of `buf` (`len` bytes): returns 1, like a sendmmsg that took one.
pub fn send_batch(
    fd: RawSock,
    buf: &[u8],
    len: usize,
    n: usize,
    dest: Option<&SockAddr>,
) -> io::Result<usize> {
    if n == 0 {
        return Ok(0);
    }
    send_one(fd, &buf[..len.min(buf.len())], dest).map(|_| 1)
}

/// What one received message holds (one definition, sys/mod.rs; `stride` is always `None`
/// here: no GRO).
pub use super::RecvMeta;

/// One whole-datagram buffer, allocated once per socket.
pub struct RecvBatch {
    slot: usize,
    buf: Vec<u8>,
    meta: RecvMeta,
}

impl RecvBatch {
    /// One message; `get` hands out at most `slot` bytes of it, as the Linux batch does.
    pub fn new(_slots: usize, slot: usize, _trunc: bool) -> RecvBatch {
        RecvBatch {
            slot,
            buf: vec![0; WHOLE],
            meta: RecvMeta {
                len: 0,
                stride: None,
                src: None,
            },
        }
    }

    /// Receives one datagram (blocking within the socket's read timeout). Returns 1.
    pub fn recv(&mut self, fd: RawSock) -> io::Result<usize> {
        let (len, src) = with_udp(fd, |s| s.recv_from(&mut self.buf))?;
        self.meta = RecvMeta {
            len,
            stride: None,
            src: Some(src),
        };
        Ok(1)
    }

    /// The data (at most the slot's bytes) and metadata of the last datagram.
    pub fn get(&self, _i: usize) -> (&[u8], RecvMeta) {
        let kept = self.meta.len.min(self.slot);
        (&self.buf[..kept], self.meta)
    }
}
