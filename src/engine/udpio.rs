//! How one UDP socket moves datagrams: probed once when the role starts, the choice and any
//! fallback recorded in the role's counters and reported in the summary.
//!
//! Send: UDP GSO (one `sendmsg` carries up to 64 datagrams, cut by the kernel or the NIC), else
//! `sendmmsg` (up to 64 datagrams, one header each), else one `send` per datagram. Receive: UDP
//! GRO (the kernel hands over coalesced datagrams of one flow with their segment size), else
//! `recvmmsg` with MSG_TRUNC (only each datagram's first bytes are copied: the sequence number
//! is all we read), else one datagram per call. A GSO send that fails with EIO (a NIC without
//! checksum offload) switches the socket to `sendmmsg` for good, with one log line. Off Linux
//! (`sys::udp::BATCHED` false, issue 21) every socket sends and receives one datagram per call.
//!
//! Must not: pace, count loss or allocate per call (the buffers are made here, once).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;

use socket2::SockAddr;

use super::counters::Counters;
use crate::config::UdpIo;
use crate::sys::udp::{self as sys, RecvBatch, RecvMeta};
use crate::sys::{AsSock, RawSock as RawFd};

/// A socket's I/O method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Method {
    /// Send: UDP_SEGMENT.
    Gso = 1,
    /// Receive: UDP_GRO (with recvmmsg).
    Gro = 2,
    /// sendmmsg / recvmmsg.
    Mmsg = 3,
    /// One datagram per system call.
    Single = 4,
}

impl Method {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Gso => "gso",
            Method::Gro => "gro",
            Method::Mmsg => "mmsg",
            Method::Single => "single",
        }
    }

    /// From the value kept in [`Counters::io_method`].
    pub fn from_u8(v: u8) -> Option<Method> {
        Some(match v {
            1 => Method::Gso,
            2 => Method::Gro,
            3 => Method::Mmsg,
            4 => Method::Single,
            _ => return None,
        })
    }

    fn record(self, c: &Counters) {
        c.io_method.store(self as u8, Relaxed);
    }
}

/// The method the role threads behind `slots` used, the least capable if they differ.
pub fn reported(slots: &[&Counters]) -> Option<Method> {
    slots
        .iter()
        .filter_map(|c| Method::from_u8(c.io_method.load(Relaxed)))
        .max_by_key(|m| *m as u8)
}

/// Datagrams per GSO send for a payload of `len` bytes: bounded by the kernel's segment count
/// and the 64 KiB a UDP datagram may carry.
pub fn gso_batch(len: usize) -> usize {
    (sys::GSO_MAX_BYTES / len.max(1)).min(sys::GSO_MAX_SEGMENTS)
}

/// A GSO send: [`sys::send_segments`], replaced in tests to inject a device's EIO.
type GsoSend = fn(RawFd, &[u8], u16, Option<&SockAddr>) -> io::Result<usize>;

/// The sending side of one socket.
pub struct UdpTx<'a> {
    sock: &'a UdpSocket,
    fd: RawFd,
    method: Method,
    len: usize,
    counters: &'a Counters,
    gso_send: GsoSend,
}

impl<'a> UdpTx<'a> {
    /// Probes `sock` for datagrams of `len` payload bytes, as `want` allows.
    pub fn new(sock: &'a UdpSocket, len: usize, want: UdpIo, counters: &'a Counters) -> Self {
        let fd = sock.raw_sock();
        let method = match want {
            UdpIo::Single => Method::Single,
            // Issue 21: no sendmmsg outside Linux; one datagram per call, said once per socket.
            UdpIo::Mmsg if !sys::BATCHED => {
                log::warn!(
                    "--udp-io mmsg: sendmmsg/recvmmsg are Linux's; one datagram per call here"
                );
                Method::Single
            }
            UdpIo::Mmsg => Method::Mmsg,
            UdpIo::Auto if gso_batch(len) >= 2 && sys::gso_supported(fd) => Method::Gso,
            UdpIo::Auto if !sys::BATCHED => Method::Single,
            UdpIo::Auto => Method::Mmsg,
        };
        method.record(counters);
        log::debug!("UDP send: {} ({len} B payload)", method.as_str());
        UdpTx {
            sock,
            fd,
            method,
            len,
            counters,
            gso_send: sys::send_segments,
        }
    }

    /// The method in use.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Most datagrams one [`UdpTx::send`] takes.
    pub fn batch_max(&self) -> usize {
        match self.method {
            Method::Gso => gso_batch(self.len),
            Method::Mmsg | Method::Gro => sys::MMSG_MAX,
            Method::Single => 1,
        }
    }

    /// Sends the first `n` datagrams of `buf` (back to back, `len` bytes each) to `dest` or
    /// the connected peer. Returns how many went.
    pub fn send(
        &mut self,
        buf: &[u8],
        n: usize,
        dest: Option<&(SocketAddr, SockAddr)>,
    ) -> io::Result<usize> {
        let n = n.min(self.batch_max()).max(1);
        let raw = dest.map(|d| &d.1);
        match self.method {
            Method::Gso if n > 1 => {
                // usize -> u16: a payload is at most 64000 bytes (the command's limit).
                let seg = u16::try_from(self.len).unwrap_or(u16::MAX);
                match (self.gso_send)(self.fd, &buf[..n * self.len], seg, raw) {
                    Ok(_) => Ok(n),
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        // The NIC cannot checksum the segments: GSO is not to be had here.
                        log::warn!(
                            "UDP GSO failed ({e}): the device cannot segment; using sendmmsg from now on"
                        );
                        self.method = Method::Mmsg;
                        self.method.record(self.counters);
                        self.send(buf, n, dest)
                    }
                    Err(e) => Err(e),
                }
            }
            Method::Mmsg | Method::Gro if n > 1 => sys::send_batch(self.fd, buf, self.len, n, raw),
            _ => match dest {
                None => self.sock.send(&buf[..self.len]).map(|_| 1),
                Some(d) => self.sock.send_to(&buf[..self.len], d.0).map(|_| 1),
            },
        }
    }
}

/// The receiving side of one socket.
pub struct UdpRx {
    fd: RawFd,
    method: Method,
    batch: RecvBatch,
}

/// GRO: coalesced buffers per call, 64 KiB each. One: the copy out of the kernel is what a
/// GRO receiver spends its time on, and one buffer stays hot in cache. Measured on loopback,
/// 1500 B, unlimited: 4 slots received 4.41 M pkt/s (21 % lost), 1 slot 5.10 M (2.7 %);
/// iperf3 3.21 --gsro in the same minute: 4.77 M (6.3 %).
const GRO_SLOTS: usize = 1;
/// recvmmsg: datagrams per call.
const MMSG_SLOTS: usize = 64;
/// recvmmsg with MSG_TRUNC: bytes copied of each datagram (the sequence is the first 4).
const TRUNC_SLOT: usize = 64;

impl UdpRx {
    /// Probes `sock` as `want` allows.
    pub fn new(sock: &UdpSocket, want: UdpIo, counters: &Counters) -> Self {
        let fd = sock.raw_sock();
        let method = match want {
            UdpIo::Auto if sys::enable_gro(fd) => Method::Gro,
            UdpIo::Auto | UdpIo::Mmsg if !sys::BATCHED => Method::Single,
            UdpIo::Auto | UdpIo::Mmsg => Method::Mmsg,
            UdpIo::Single => Method::Single,
        };
        method.record(counters);
        log::debug!("UDP receive: {}", method.as_str());
        let batch = match method {
            Method::Gro => RecvBatch::new(GRO_SLOTS, 65536, false),
            Method::Single => RecvBatch::new(1, TRUNC_SLOT, true),
            _ => RecvBatch::new(MMSG_SLOTS, TRUNC_SLOT, true),
        };
        UdpRx { fd, method, batch }
    }

    /// The method in use.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Receives what is queued (blocking for the first datagram, within the socket's read
    /// timeout); returns the number of messages to read with [`UdpRx::get`].
    pub fn recv(&mut self) -> io::Result<usize> {
        self.batch.recv(self.fd)
    }

    /// Message `i`: the bytes kept (with GRO, every coalesced datagram; otherwise at least each
    /// datagram's start) and its metadata.
    pub fn get(&self, i: usize) -> (&[u8], RecvMeta) {
        self.batch.get(i)
    }
}

/// Calls `f(segment_bytes, segment_len)` for each datagram in one received message: one, or,
/// after GRO, every `stride` bytes (the last may be shorter).
#[inline]
pub fn for_each_datagram(data: &[u8], meta: &RecvMeta, mut f: impl FnMut(&[u8], usize)) {
    match meta.stride {
        None => f(data, meta.len),
        Some(stride) => {
            let mut off = 0;
            while off < meta.len {
                let seg = stride.min(meta.len - off);
                f(data.get(off..).unwrap_or(&[]), seg);
                off += stride;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_batches_fit_the_kernel_limits() {
        assert_eq!(gso_batch(1472), 44);
        assert_eq!(gso_batch(64), 64);
        assert_eq!(gso_batch(40_000), 1);
        assert_eq!(gso_batch(0), 64);
    }

    #[test]
    fn gro_buffers_are_cut_at_every_stride() {
        let mut data = vec![0u8; 250];
        for (i, c) in data.chunks_mut(100).enumerate() {
            c[0] = i as u8;
        }
        let meta = RecvMeta {
            len: 250,
            stride: Some(100),
            src: None,
        };
        let mut seen = Vec::new();
        for_each_datagram(&data, &meta, |d, len| seen.push((d[0], len)));
        assert_eq!(seen, [(0, 100), (1, 100), (2, 50)]);
        let one = RecvMeta {
            len: 1500,
            stride: None,
            src: None,
        };
        let mut n = 0;
        for_each_datagram(&data[..64], &one, |d, len| {
            assert_eq!(
                (d.len(), len),
                (64, 1500),
                "a truncated slot keeps the real length"
            );
            n += 1;
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn a_gso_eio_falls_back_to_sendmmsg_for_good_and_loses_nothing() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let c = Counters::default();
        let mut tx = UdpTx::new(&a, 100, UdpIo::Auto, &c);
        // a device that cannot checksum segments answers every GSO send with EIO
        tx.method = Method::Gso;
        tx.gso_send = |_, _, _, _| Err(io::Error::from_raw_os_error(libc::EIO));
        let mut buf = vec![0u8; 100 * 8];
        for (i, d) in buf.chunks_mut(100).enumerate() {
            d[0] = i as u8;
        }
        let sent = tx.send(&buf, 8, None).unwrap();
        assert_eq!(sent, 8, "the batch went by sendmmsg instead");
        assert_eq!(tx.method(), Method::Mmsg, "for good");
        assert_eq!(
            Method::from_u8(c.io_method.load(Relaxed)),
            Some(Method::Mmsg)
        );
        assert_eq!(tx.batch_max(), sys::MMSG_MAX);
        let mut got = Vec::new();
        let mut d = [0u8; 200];
        while got.len() < 8 {
            let n = b.recv(&mut d).unwrap();
            assert_eq!(n, 100);
            got.push(d[0]);
        }
        assert_eq!(got, (0..8).collect::<Vec<u8>>());
    }

    #[test]
    fn forced_methods_are_kept() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = Counters::default();
        assert_eq!(UdpTx::new(&a, 1472, UdpIo::Single, &c).batch_max(), 1);
        assert_eq!(UdpTx::new(&a, 1472, UdpIo::Mmsg, &c).method(), Method::Mmsg);
        assert_eq!(UdpRx::new(&a, UdpIo::Single, &c).method(), Method::Single);
        assert_eq!(UdpRx::new(&a, UdpIo::Mmsg, &c).method(), Method::Mmsg);
        // a payload too large to batch under GSO goes by sendmmsg
        assert_eq!(
            UdpTx::new(&a, 40_000, UdpIo::Auto, &c).method(),
            Method::Mmsg
        );
    }

    #[test]
    fn the_least_capable_method_is_reported() {
        let slots: Vec<Counters> = (0..3).map(|_| Counters::default()).collect();
        let refs: Vec<&Counters> = slots.iter().collect();
        assert_eq!(reported(&refs), None);
        Method::Gso.record(&slots[0]);
        Method::Mmsg.record(&slots[1]);
        assert_eq!(reported(&refs), Some(Method::Mmsg));
    }
}
