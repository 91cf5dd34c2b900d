//! Batched UDP I/O (Linux; sys/udp_portable.rs elsewhere): sendmmsg/recvmmsg, UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO) with their
//! control messages. Thin, stateless wrappers except [`RecvBatch`], which owns the receive
//! buffers and the headers pointing into them.
//!
//! Must not: decide which method to use or when to fall back (engine/udpio.rs does), log, or
//! allocate per call. Every `unsafe` block carries a SAFETY comment.

use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::os::fd::RawFd;

use socket2::SockAddr;

/// sendmmsg/recvmmsg and GSO/GRO are here (udp_portable.rs: one datagram per call).
pub const BATCHED: bool = true;

/// `SOL_UDP` (`IPPROTO_UDP`).
const SOL_UDP: libc::c_int = 17;
/// Linux 4.18: the segment size for GSO, as a socket option or a cmsg (u16).
const UDP_SEGMENT: libc::c_int = 103;
/// Linux 5.0: receive coalesced datagrams with their segment size in a cmsg (int).
const UDP_GRO: libc::c_int = 104;
/// Most segments one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`, 64 before 6.x).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes one GSO send may carry: the UDP length field's limit less the headers.
pub const GSO_MAX_BYTES: usize = 65_000;

/// Does this socket take UDP_SEGMENT (kernel >= 4.18)? Probed with a getsockopt, which fails
/// with ENOPROTOOPT on kernels without GSO for UDP.
pub fn gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the value pointer refers to a live c_int and `len` holds its exact size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

/// Asks for GRO on a receiving socket (kernel >= 5.0); false if refused.
pub fn enable_gro(fd: RawFd) -> bool {
    super::set_int_opt(fd, SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Room for one cmsg carrying an int (also enough for a u16).
const CMSG_ROOM: usize = 32;

#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_ROOM]);

fn ret(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sends `buf` as datagrams of `segment` bytes each (the last may be shorter) in one call,
/// to `dest` or, when `None`, to the connected peer. All or nothing: returns `buf.len()`.
pub fn send_segments(
    fd: RawFd,
    buf: &[u8],
    segment: u16,
    dest: Option<&SockAddr>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; CMSG_ROOM]);
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty header (musl has padding
    // fields, which is why it is not written as a literal).
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(d) = dest {
        msg.msg_name = d.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = d.len();
    }
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
    // SAFETY: msg_control points to `cbuf`, aligned and CMSG_ROOM >= CMSG_SPACE(2) bytes long,
    // so CMSG_FIRSTHDR returns a pointer into it and CMSG_DATA has room for the u16 we write.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
    }
    // SAFETY: every pointer in `msg` (iov, buf, name, control) refers to memory that lives
    // until the call returns; the kernel only reads from them.
    ret(unsafe { libc::sendmsg(fd, &msg, 0) })
}

/// Most messages one [`send_batch`] call takes.
pub const MMSG_MAX: usize = 64;

/// Sends `n` datagrams of `len` bytes each, laid out back to back in `buf`, with one
/// sendmmsg; to `dest` or the connected peer. Returns how many went (possibly fewer).
pub fn send_batch(
    fd: RawFd,
    buf: &[u8],
    len: usize,
    n: usize,
    dest: Option<&SockAddr>,
) -> io::Result<usize> {
    let n = n.min(MMSG_MAX).min(buf.len() / len.max(1));
    let mut iovs: [MaybeUninit<libc::iovec>; MMSG_MAX] =
        [const { MaybeUninit::uninit() }; MMSG_MAX];
    // SAFETY: mmsghdr is a plain C struct; all-zero is a valid empty header.
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { zeroed() };
    for i in 0..n {
        iovs[i].write(libc::iovec {
            iov_base: buf[i * len..].as_ptr() as *mut libc::c_void,
            iov_len: len,
        });
        let h = &mut msgs[i].msg_hdr;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        if let Some(d) = dest {
            h.msg_name = d.as_ptr() as *mut libc::c_void;
            h.msg_namelen = d.len();
        }
    }
    // SAFETY: the first `n` headers are initialised and point to initialised iovecs and to
    // slices of `buf` in bounds (n * len <= buf.len()); all live until the call returns.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    ret(r as isize)
}

/// What one received message holds: one definition for both back ends (sys/mod.rs).
pub use super::RecvMeta;

/// Receive buffers and the headers that point into them, allocated once per socket.
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    msgs: Vec<libc::mmsghdr>,
    /// MSG_TRUNC: slots keep only each datagram's start (enough for the sequence number).
    trunc: bool,
}

// SAFETY: the raw pointers inside `iovs`/`msgs` only ever point into this struct's own heap
// buffers, which move with it; they are rewritten before every call.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `slots` messages of `slot` bytes. With `trunc` the kernel copies at most `slot` bytes of
    /// each datagram and reports its real length (the rest is discarded, not copied).
    pub fn new(slots: usize, slot: usize, trunc: bool) -> RecvBatch {
        let slots = slots.max(1);
        RecvBatch {
            slot,
            bufs: vec![0; slots * slot],
            // SAFETY (all three): plain C structs for which all-zero bytes are valid values.
            iovs: (0..slots).map(|_| unsafe { zeroed() }).collect(),
            names: (0..slots).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: (0..slots).map(|_| CmsgBuf([0; CMSG_ROOM])).collect(),
            msgs: (0..slots).map(|_| unsafe { zeroed() }).collect(),
            trunc,
        }
    }

    /// Receives up to `slots` messages in one recvmmsg (blocking, within the socket's read
    /// timeout). Returns how many arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.msgs.len();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.slot..].as_mut_ptr().cast(),
                iov_len: self.slot,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_ROOM as _;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        let flags = if self.trunc { libc::MSG_TRUNC } else { 0 };
        // MSG_WAITFORONE: block for the first message only, then take what is queued.
        let flags = flags | libc::MSG_WAITFORONE;
        // SAFETY: every header points to this struct's own live buffers (slot bytes each, a
        // sockaddr_storage, CMSG_ROOM bytes of aligned control space), set just above; the
        // kernel writes within the lengths given. The timeout pointer is null (the socket's
        // SO_RCVTIMEO bounds the wait).
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        ret(r as isize)
    }

    /// The data (as much as the slot kept) and metadata of message `i` of the last call.
    pub fn get(&self, i: usize) -> (&[u8], RecvMeta) {
        let m = &self.msgs[i];
        let len = m.msg_len as usize;
        let kept = len.min(self.slot);
        let data = &self.bufs[i * self.slot..i * self.slot + kept];
        let mut stride = None;
        let h = &m.msg_hdr;
        // usize on glibc, socklen_t (u32) on musl: the cast is needed on one of them.
        #[allow(clippy::unnecessary_cast)]
        let controllen = h.msg_controllen as usize;
        if controllen > 0 {
            // SAFETY: the kernel filled msg_control/msg_controllen for this message; the
            // CMSG_* walk stays inside it, and the GRO cmsg carries an int.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        stride = usize::try_from(v).ok().filter(|&s| s > 0 && s < len);
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
        }
        // SAFETY: the kernel wrote a sockaddr of `msg_namelen` bytes into our storage.
        let src = unsafe { SockAddr::new(self.names[i], h.msg_namelen) }.as_socket();
        (data, RecvMeta { len, stride, src })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (a, b)
    }

    #[test]
    fn sendmmsg_and_recvmmsg_keep_every_datagram_and_its_source() {
        let (a, b) = pair();
        let mut buf = vec![0u8; 10 * 100];
        for i in 0..10 {
            buf[i * 100] = i as u8;
        }
        assert_eq!(send_batch(a.as_raw_fd(), &buf, 100, 10, None).unwrap(), 10);
        let mut rb = RecvBatch::new(16, 8, true);
        let mut got = Vec::new();
        while got.len() < 10 {
            let n = rb.recv(b.as_raw_fd()).unwrap();
            for i in 0..n {
                let (d, m) = rb.get(i);
                assert_eq!(m.len, 100, "MSG_TRUNC reports the real length");
                assert_eq!(d.len(), 8, "only the slot's bytes are copied");
                assert_eq!(m.src, Some(a.local_addr().unwrap()));
                assert_eq!(m.stride, None);
                got.push(d[0]);
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams_or_one_gro_buffer() {
        let (a, b) = pair();
        if !gso_supported(a.as_raw_fd()) {
            eprintln!("skipped: no UDP GSO on this kernel");
            return;
        }
        let gro = enable_gro(b.as_raw_fd());
        let mut buf = vec![0u8; 5 * 200 + 50];
        for i in 0..6 {
            buf[i * 200] = 0xa0 + i as u8;
        }
        let dest = SockAddr::from(b.local_addr().unwrap());
        assert_eq!(
            send_segments(a.as_raw_fd(), &buf, 200, Some(&dest)).unwrap(),
            buf.len()
        );
        let mut rb = RecvBatch::new(8, 65536, false);
        let mut firsts = Vec::new();
        let mut total = 0;
        while total < buf.len() {
            let n = rb.recv(b.as_raw_fd()).unwrap();
            for i in 0..n {
                let (d, m) = rb.get(i);
                total += m.len;
                let stride = m.stride.unwrap_or(m.len);
                if m.stride.is_some() {
                    assert!(gro, "a stride without GRO");
                    assert_eq!(stride, 200);
                }
                firsts.extend(d.chunks(stride).map(|c| c[0]));
            }
        }
        assert_eq!(total, 1050);
        assert_eq!(firsts, [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5]);
    }
}
