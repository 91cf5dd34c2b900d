//! The crate's only `unsafe` code and its only platform code: thin wrappers over the system
//! calls std does not offer, one implementation per platform behind `cfg` (issue 21).
//!
//! Owns: the SIGINT/SIGTERM (Windows: Ctrl-C, Ctrl-Break, console close) and SIGHUP flags, the
//! TX threads' timer slack and pacing sleep, readiness polling of listeners, socket options std
//! lacks (forced buffer sizes, integer options), TCP_INFO, random bytes, thread ids, machine
//! CPU times where there is no /proc, file modes; `tcp.rs` the TCP data-path calls, `udp.rs`
//! batched UDP I/O (sendmmsg/recvmmsg, GSO/GRO and their control messages: Linux; one datagram
//! per call elsewhere), `limits.rs` the process's resource limits, `mem.rs` glibc's allocator.
//!
//! Layout: `unix.rs` (Linux, Android, macOS, FreeBSD; Linux-only calls inside it carry
//! `cfg(target_os = "linux")`) and `windows.rs` (Winsock and Win32 through windows-sys) export
//! the same function names, which the rest of the crate calls as `crate::sys::NAME`. A call
//! that a platform lacks returns what "not available" means for it (false, `None`, an
//! `Unsupported` error) and the caller degrades with a message; nothing outside sys/ tests the
//! platform, except for what only one platform has to say (Linux's /proc readers).
//!
//! Must not: hold state other than the signal flags (and, on Windows, each pacing thread's
//! timer), or block longer than asked. Every block carries a SAFETY comment.
#![allow(unsafe_code)]

pub mod limits;
pub mod mem;
pub mod tcp;
#[cfg_attr(target_os = "linux", path = "udp_linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "udp_portable.rs")]
pub mod udp;

/// What one received UDP message holds, for both UDP back ends (`udp_linux.rs`,
/// `udp_portable.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes of datagram(s) received (Linux with MSG_TRUNC: the datagram's real length, even
    /// when the slot kept only its start).
    pub len: usize,
    /// GRO (Linux): the size of each coalesced datagram (the last may be shorter); `None`: one
    /// datagram.
    pub stride: Option<usize>,
    /// Sender.
    pub src: Option<std::net::SocketAddr>,
}

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// A socket's raw handle: a file descriptor on Unix, a SOCKET on Windows.
#[cfg(unix)]
pub type RawSock = std::os::fd::RawFd;
/// A socket's raw handle: a file descriptor on Unix, a SOCKET on Windows.
#[cfg(windows)]
pub type RawSock = std::os::windows::io::RawSocket;

/// The raw handle of a std or socket2 socket, whatever the platform calls it
/// (`as_raw_fd` / `as_raw_socket`), for the calls in this module.
pub trait AsSock {
    /// The raw handle; valid while `self` lives.
    fn raw_sock(&self) -> RawSock;
}

#[cfg(unix)]
impl<T: std::os::fd::AsRawFd> AsSock for T {
    #[inline]
    fn raw_sock(&self) -> RawSock {
        self.as_raw_fd()
    }
}

#[cfg(windows)]
impl<T: std::os::windows::io::AsRawSocket> AsSock for T {
    #[inline]
    fn raw_sock(&self) -> RawSock {
        self.as_raw_socket()
    }
}

/// The permission bits of a file (`st_mode & 0o777`) where the platform has them; `None` on
/// Windows, whose ACLs the users and credentials files' mode checks cannot read (they say so).
#[inline]
pub fn file_mode(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}
