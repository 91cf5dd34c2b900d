//! The Unix side of sys/ (Linux, Android, macOS, FreeBSD) through libc. What only Linux has
//! (timer slack, forced buffers, TCP_INFO, setns, getrandom's wrapper on old musl) carries
//! `cfg(target_os = "linux")` with a stand-in for the others next to it.
//!
//! Must not: hold state other than the signal flags, or block longer than asked. Every block
//! carries a SAFETY comment.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Installs SIGINT and SIGTERM handlers that only set a flag (see [`signalled`]).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is given a zero-initialised, fully set struct whose handler is an
        // `extern "C"` function that only performs an atomic store, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    HANGUP.store(true, Ordering::SeqCst);
}

/// Installs a SIGHUP handler that only sets a flag (see [`take_hangup`]): the server reloads
/// its users file on it, as daemons conventionally do, instead of dying (issue 18: a
/// logrotate script or a closed terminal killed it, losing session records and usage).
pub fn install_hangup_handler() {
    // SAFETY: as in `install_signal_handlers`: a zeroed, fully set struct whose handler only
    // performs an atomic store.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_hangup as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut());
    }
}

/// True once per SIGHUP (or several that came together).
pub fn take_hangup() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}

/// True once SIGINT or SIGTERM arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

/// Sets the calling thread's timer slack to 1 ns so `nanosleep` wakes on time (the default
/// 50 µs slack would dominate the pacing error at high packet rates).
#[cfg(target_os = "linux")]
pub fn set_min_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// No timer slack to set outside Linux (the pacer's spin covers the rest).
#[cfg(not(target_os = "linux"))]
pub fn set_min_timer_slack() {}

/// The pacer's sleep: `std::thread::sleep` (nanosleep), whose precision the timer slack above
/// sets. Windows needs a timer of its own (sys/windows.rs).
#[inline]
pub fn pacing_sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Waits until `fd` is readable or `timeout` passes; true only when readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is a valid, initialised pollfd that outlives the call; nfds = 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    // n < 0 (EINTR from a signal) must not count as readable: accept() on the blocking
    // listener would then wait for the next client and stall shutdown.
    n > 0
}

/// Sets SO_RCVBUFFORCE / SO_SNDBUFFORCE (root only; lets UDP buffers exceed rmem_max).
/// Returns false when the kernel refused (not root), and the caller falls back to the plain
/// option.
#[cfg(target_os = "linux")]
pub fn force_buffer(fd: RawFd, send: bool, bytes: usize) -> bool {
    let opt = if send {
        libc::SO_SNDBUFFORCE
    } else {
        libc::SO_RCVBUFFORCE
    };
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: the option value points to a live c_int and its size is passed exactly.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// No SO_RCVBUFFORCE outside Linux: the plain option, capped by the system's maximum.
#[cfg(not(target_os = "linux"))]
pub fn force_buffer(_fd: RawFd, _send: bool, _bytes: usize) -> bool {
    false
}

/// Sets an integer socket option (setsockopt with a c_int value). Linux's options only
/// (SO_BUSY_POLL, UDP_GRO).
#[cfg(target_os = "linux")]
pub fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: i32,
) -> std::io::Result<()> {
    let v: libc::c_int = value;
    // SAFETY: the option value points to a live c_int and its size is passed exactly.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Clock ticks per second for /proc/*/stat CPU times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The calling thread's kernel id (the `<tid>` of /proc/self/task/<tid>), so a session can
/// find its own threads' CPU times without reading names back (issue 20: every session in
/// the process has the same thread names). 0 where there is no such id.
#[cfg(target_os = "linux")]
pub fn gettid() -> u32 {
    // SAFETY: gettid(2) takes no arguments, cannot fail and touches no memory of ours. Through
    // `syscall` because older musl has no wrapper.
    let t = unsafe { libc::syscall(libc::SYS_gettid) };
    u32::try_from(t).unwrap_or(0)
}

/// No /proc/self/task here: 0, and per-thread CPU is simply not measured.
#[cfg(not(target_os = "linux"))]
pub fn gettid() -> u32 {
    0
}

/// Fills `buf` from the kernel's CSPRNG (getrandom(2)); used for session tokens, payload and
/// authentication secrets.
#[cfg(not(target_vendor = "apple"))]
pub fn random_bytes(buf: &mut [u8]) {
    let mut off = 0;
    while off < buf.len() {
        let rest = &mut buf[off..];
        // SAFETY: the pointer and length describe the live, writable `rest` slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            off += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No getrandom (very old kernel): fall back to a time-seeded generator so a test
            // still runs; secrets are then weak, and we say so.
            log::warn!("getrandom failed; using a weak time-based fallback for random bytes");
            let mut x = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9_7f4a_7c15)
                ^ u64::from(std::process::id());
            for b in &mut buf[off..] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            return;
        }
    }
}

/// Fills `buf` from the kernel's CSPRNG: macOS has no getrandom(2) but getentropy(2), at most
/// 256 bytes per call.
#[cfg(target_vendor = "apple")]
pub fn random_bytes(buf: &mut [u8]) {
    for chunk in buf.chunks_mut(256) {
        // SAFETY: the pointer and length describe the live, writable `chunk` (<= 256 bytes,
        // getentropy's limit).
        let r = unsafe { libc::getentropy(chunk.as_mut_ptr().cast(), chunk.len()) };
        assert_eq!(
            r,
            0,
            "getentropy failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// An all-zero `libc::tcp_info`: the buffer [`tcp_info`] hands to the kernel, and a blank
/// fixture for tests (the struct's field list differs between gnu and musl, so it cannot be
/// written as a portable literal).
#[cfg(target_os = "linux")]
pub fn tcp_info_zeroed() -> libc::tcp_info {
    // SAFETY: `tcp_info` is a plain C struct of integer fields only, for which all-zero bytes
    // are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads the kernel's TCP_INFO for a TCP socket (getsockopt(IPPROTO_TCP, TCP_INFO)); `None`
/// when the call fails (not a TCP socket, closed fd). Fields that an older kernel does not
/// know stay zero.
#[cfg(target_os = "linux")]
pub fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    let mut info = tcp_info_zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the value pointer refers to the live, writable `info` and `len` holds its exact
    // size; the kernel writes at most `len` bytes and stores the length it wrote in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast::<libc::c_void>(),
            &mut len,
        )
    };
    (r == 0).then_some(info)
}

/// Moves the calling thread (only it, and the threads it spawns afterwards) into the network
/// namespace at `path`, e.g. `/run/netns/NAME` as `ip netns add` makes it. Sockets keep the
/// namespace they were made in, so issue 11's through-the-router mode runs its server and its
/// client in one process, each on a thread that entered its own namespace first.
#[cfg(target_os = "linux")]
pub fn enter_netns(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    // SAFETY: `setns` gets a file descriptor that `f` keeps open for the whole call and the
    // CLONE_NEWNET constant; it reads no memory of ours and changes only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Network namespaces are Linux's: elsewhere `Unsupported`, which `btest through` explains.
#[cfg(not(target_os = "linux"))]
pub fn enter_netns(_path: &std::path::Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Columns of the terminal on stdout, when it is one.
pub fn terminal_columns() -> Option<u16> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which lives on our
    // stack for the call; on a non-terminal it fails and writes nothing.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col)
}

/// Does the console take ANSI escapes (the live view)? A Unix terminal does.
pub fn console_supports_vt() -> bool {
    true
}

/// Machine CPU time since boot as (total, idle), in the platform's ticks, where there is no
/// /proc/stat: macOS's host_statistics(HOST_CPU_LOAD_INFO). engine/cpu.rs reads /proc/stat on
/// Linux.
#[cfg(target_vendor = "apple")]
pub fn cpu_times() -> Option<(u64, u64)> {
    let mut info = libc::host_cpu_load_info {
        cpu_ticks: [0; libc::CPU_STATE_MAX as usize],
    };
    let mut count = libc::HOST_CPU_LOAD_INFO_COUNT;
    // SAFETY: host_statistics writes at most `count` natural_t words (the size of
    // host_cpu_load_info, HOST_CPU_LOAD_INFO_COUNT) into the live `info` and stores the count
    // it wrote; mach_host_self() only returns a port name.
    #[allow(deprecated)]
    let r = unsafe {
        libc::host_statistics(
            libc::mach_host_self(),
            libc::HOST_CPU_LOAD_INFO,
            (&mut info as *mut libc::host_cpu_load_info).cast(),
            &mut count,
        )
    };
    if r != libc::KERN_SUCCESS {
        return None;
    }
    let t = info.cpu_ticks.map(u64::from);
    Some((t.iter().sum(), t[libc::CPU_STATE_IDLE as usize]))
}

/// Machine CPU time since boot as (total, idle), in stat clock ticks: FreeBSD's `kern.cp_time`
/// sysctl (CPUSTATES longs: user, nice, sys, intr, idle).
#[cfg(target_os = "freebsd")]
pub fn cpu_times() -> Option<(u64, u64)> {
    let mut t: [libc::c_long; libc::CPUSTATES as usize] = [0; libc::CPUSTATES as usize];
    let mut len = std::mem::size_of_val(&t);
    // SAFETY: the name is a NUL-terminated literal; the old-value pointer refers to the live,
    // writable `t` and `len` holds its exact size; no new value is passed.
    let r = unsafe {
        libc::sysctlbyname(
            c"kern.cp_time".as_ptr(),
            t.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    if r != 0 || len != std::mem::size_of_val(&t) {
        return None;
    }
    let t = t.map(|v| u64::try_from(v).unwrap_or(0));
    Some((t.iter().sum(), t[libc::CP_IDLE as usize]))
}

/// Other Unix systems without /proc/stat: machine CPU is reported as unavailable (0).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd"
)))]
pub fn cpu_times() -> Option<(u64, u64)> {
    None
}

/// The error code of a full device or socket queue (a send to retry).
pub const ENOBUFS: i32 = libc::ENOBUFS;

/// Unix reports a port-unreachable ICMP only on a connected socket, as ECONNREFUSED, which
/// the roles already treat as transient: nothing to change (see sys/windows.rs).
#[inline]
pub fn udp_ignore_port_unreachable(_fd: RawFd) {}

/// SO_BINDTODEVICE (net.rs words the errors).
#[cfg(target_os = "linux")]
#[inline]
pub fn bind_device(s: &socket2::Socket, dev: &str) -> std::io::Result<()> {
    s.bind_device(Some(dev.as_bytes()))
}

/// SO_BINDTODEVICE is Linux's (issue 21): `--device` is refused with what to use instead.
#[cfg(not(target_os = "linux"))]
pub fn bind_device(_s: &socket2::Socket, _dev: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "binding to an interface (SO_BINDTODEVICE) is Linux-only; pick the interface by its \
         address instead (--bind ADDR on the client, --listen ADDR on the server)",
    ))
}

/// The interface a socket is bound to (SO_BINDTODEVICE), if any.
#[cfg(target_os = "linux")]
#[inline]
pub fn socket_device(s: &std::net::UdpSocket) -> Option<Vec<u8>> {
    socket2::SockRef::from(s).device().ok().flatten()
}

/// No interface binding outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn socket_device(_s: &std::net::UdpSocket) -> Option<Vec<u8>> {
    None
}

/// SO_REUSEPORT (net.rs' shared client UDP port).
#[inline]
pub fn set_reuse_port(s: &socket2::Socket) -> std::io::Result<()> {
    s.set_reuse_port(true)
}

/// SO_BUSY_POLL, in microseconds.
#[cfg(target_os = "linux")]
#[inline]
pub fn set_busy_poll(fd: RawFd, usecs: i32) -> std::io::Result<()> {
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, usecs)
}

/// SO_BUSY_POLL is Linux's.
#[cfg(not(target_os = "linux"))]
pub fn set_busy_poll(_fd: RawFd, _usecs: i32) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SO_BUSY_POLL is Linux-only",
    ))
}

/// IPV6_TCLASS (the IPv6 form of `--tos`).
#[inline]
pub fn set_tclass_v6(s: &socket2::Socket, tclass: u32) -> std::io::Result<()> {
    s.set_tclass_v6(tclass)
}
