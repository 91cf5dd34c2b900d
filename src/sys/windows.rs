//! The Windows side of sys/ (issue 21): Winsock and Win32 through windows-sys, with the same
//! function names as sys/unix.rs.
//!
//! What Windows lacks degrades here: no SIGHUP (never true), no timer slack, no forced
//! buffers, no namespaces (`Unsupported`). What it has its own way: Ctrl-C, Ctrl-Break and a
//! closed console window set the same flag as SIGINT/SIGTERM (SetConsoleCtrlHandler); the
//! pacer sleeps on a high-resolution waitable timer kept per thread; machine CPU comes from
//! GetSystemTimes and a role thread's from GetThreadTimes; random bytes from BCryptGenRandom;
//! a UDP socket ignores the port-unreachable reports Winsock otherwise turns into errors on
//! every later receive (SIO_UDP_CONNRESET).
//!
//! Must not: hold state other than the signal flag and each pacing thread's timer, or block
//! longer than asked. Every block carries a SAFETY comment.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{CloseHandle, BOOL, FILETIME, HANDLE};
use windows_sys::Win32::Networking::WinSock;
use windows_sys::Win32::System::Console;
use windows_sys::Win32::System::Threading;

use super::RawSock;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

unsafe extern "system" fn on_console_event(kind: u32) -> BOOL {
    match kind {
        Console::CTRL_C_EVENT | Console::CTRL_BREAK_EVENT | Console::CTRL_CLOSE_EVENT => {
            // Only an atomic store; the handler runs on a thread the system makes for it.
            SIGNALLED.store(true, Ordering::SeqCst);
            // Handled: the process is not killed at once, the roles end the test as on
            // SIGINT. (CTRL_CLOSE_EVENT still ends the process when this returns, ~5 s.)
            1
        }
        _ => 0,
    }
}

/// Ctrl-C, Ctrl-Break and closing the console set the flag [`signalled`] reads, as SIGINT and
/// SIGTERM do on Unix.
pub fn install_signal_handlers() {
    // SAFETY: registers a handler with the signature the API expects; the handler only
    // performs an atomic store.
    unsafe {
        Console::SetConsoleCtrlHandler(Some(on_console_event), 1);
    }
}

/// No SIGHUP on Windows: a users-file reload needs a restart there.
pub fn install_hangup_handler() {}

/// Never true: there is no SIGHUP.
pub fn take_hangup() -> bool {
    false
}

/// True once Ctrl-C, Ctrl-Break or a console close arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

/// No timer slack on Windows; the pacer's timer is high-resolution instead ([`pacing_sleep`]).
pub fn set_min_timer_slack() {}

thread_local! {
    /// This thread's high-resolution waitable timer (0: not made yet, or refused).
    static TIMER: Cell<HANDLE> = const { Cell::new(0) };
}

/// Closes the thread's timer when the thread ends.
struct TimerGuard;

impl Drop for TimerGuard {
    fn drop(&mut self) {
        let h = TIMER.with(|t| t.replace(0));
        if h != 0 {
            // SAFETY: `h` is the timer this thread created and no one else holds.
            unsafe {
                CloseHandle(h);
            }
        }
    }
}

thread_local! {
    static TIMER_GUARD: TimerGuard = const { TimerGuard };
}

/// The pacer's sleep: a high-resolution waitable timer (CreateWaitableTimerExW with
/// CREATE_WAITABLE_TIMER_HIGH_RESOLUTION, Windows 10 1803+), made once per pacing thread and
/// re-armed for each sleep, instead of a 15.6 ms scheduler tick. std's sleep makes and closes
/// such a timer on every call; where the timer cannot be made, std's sleep it is.
pub fn pacing_sleep(d: Duration) {
    let mut h = TIMER.with(Cell::get);
    if h == 0 {
        // SAFETY: no attributes, no name; the flags and access mask are the documented
        // constants. A null handle means the system refused (older Windows).
        h = unsafe {
            Threading::CreateWaitableTimerExW(
                std::ptr::null(),
                std::ptr::null(),
                Threading::CREATE_WAITABLE_TIMER_HIGH_RESOLUTION,
                Threading::TIMER_ALL_ACCESS,
            )
        };
        if h == 0 {
            std::thread::sleep(d);
            return;
        }
        TIMER.with(|t| t.set(h));
        TIMER_GUARD.with(|_| {});
    }
    // Relative due time: negative, in 100 ns units, at least one.
    let due: i64 = -(i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX).max(1));
    // SAFETY: `h` is this thread's live timer; `due` lives for the call; no completion routine.
    let armed = unsafe { Threading::SetWaitableTimer(h, &due, 0, None, std::ptr::null(), 0) };
    if armed == 0 {
        std::thread::sleep(d);
        return;
    }
    // SAFETY: waits on this thread's live timer handle, which the timer signals at `due`.
    unsafe {
        Threading::WaitForSingleObject(h, Threading::INFINITE);
    }
}

/// Waits until `s` is readable or `timeout` passes; true only when readable (WSAPoll).
pub fn wait_readable(s: RawSock, timeout: Duration) -> bool {
    let mut pfd = WinSock::WSAPOLLFD {
        fd: s as WinSock::SOCKET,
        events: WinSock::POLLRDNORM,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfd` is a valid, initialised WSAPOLLFD that outlives the call; one entry.
    let n = unsafe { WinSock::WSAPoll(&mut pfd, 1, ms) };
    n > 0
}

/// No forced buffer sizes on Windows: the caller sets the plain option.
pub fn force_buffer(_s: RawSock, _send: bool, _bytes: usize) -> bool {
    false
}

/// The unit of [`thread_cpu_ticks`]: FILETIME's 100 ns.
pub fn clock_ticks() -> u64 {
    10_000_000
}

/// The calling thread's id, for [`thread_cpu_ticks`].
pub fn gettid() -> u32 {
    // SAFETY: GetCurrentThreadId takes nothing and cannot fail.
    unsafe { Threading::GetCurrentThreadId() }
}

fn filetime(t: FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

const ZERO_TIME: FILETIME = FILETIME {
    dwLowDateTime: 0,
    dwHighDateTime: 0,
};

/// A thread's CPU time (kernel + user) in 100 ns units, by id; `None` when it has ended or
/// cannot be opened.
pub fn thread_cpu_ticks(tid: u32) -> Option<u64> {
    // SAFETY: OpenThread takes an access mask, an inherit flag and an id; a null handle is a
    // refusal, checked below.
    let h = unsafe { Threading::OpenThread(Threading::THREAD_QUERY_LIMITED_INFORMATION, 0, tid) };
    if h == 0 {
        return None;
    }
    let (mut c, mut e, mut k, mut u) = (ZERO_TIME, ZERO_TIME, ZERO_TIME, ZERO_TIME);
    // SAFETY: `h` is the live handle opened above; the four pointers refer to live FILETIMEs.
    let ok = unsafe { Threading::GetThreadTimes(h, &mut c, &mut e, &mut k, &mut u) };
    // SAFETY: closes the handle opened above, once.
    unsafe {
        CloseHandle(h);
    }
    (ok != 0).then(|| filetime(k) + filetime(u))
}

/// Machine CPU time as (total, idle) in 100 ns units: GetSystemTimes, whose kernel time
/// includes the idle time.
pub fn cpu_times() -> Option<(u64, u64)> {
    let (mut idle, mut kernel, mut user) = (ZERO_TIME, ZERO_TIME, ZERO_TIME);
    // SAFETY: the three pointers refer to live, writable FILETIMEs.
    let ok = unsafe { Threading::GetSystemTimes(&mut idle, &mut kernel, &mut user) };
    (ok != 0).then(|| (filetime(kernel) + filetime(user), filetime(idle)))
}

/// Fills `buf` from the system's preferred CSPRNG (BCryptGenRandom).
pub fn random_bytes(buf: &mut [u8]) {
    use windows_sys::Win32::Security::Cryptography::{
        BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG,
    };
    for chunk in buf.chunks_mut(u32::MAX as usize) {
        // SAFETY: the pointer and length describe the live, writable `chunk`; no algorithm
        // handle, as BCRYPT_USE_SYSTEM_PREFERRED_RNG requires.
        let st = unsafe {
            BCryptGenRandom(
                std::ptr::null_mut(),
                chunk.as_mut_ptr(),
                chunk.len() as u32,
                BCRYPT_USE_SYSTEM_PREFERRED_RNG,
            )
        };
        assert!(st >= 0, "BCryptGenRandom failed: NTSTATUS {st:#x}");
    }
}

/// Network namespaces are Linux's.
pub fn enter_netns(_path: &std::path::Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

fn stdout_handle() -> HANDLE {
    // SAFETY: GetStdHandle takes a constant and returns a handle or INVALID_HANDLE_VALUE.
    unsafe { Console::GetStdHandle(Console::STD_OUTPUT_HANDLE) }
}

/// Columns of the console window on stdout, when it is one.
pub fn terminal_columns() -> Option<u16> {
    // SAFETY: an all-zero CONSOLE_SCREEN_BUFFER_INFO (integers only) is a valid value to be
    // overwritten.
    let mut info: Console::CONSOLE_SCREEN_BUFFER_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: `info` lives on our stack for the call; on a non-console handle it fails.
    let ok = unsafe { Console::GetConsoleScreenBufferInfo(stdout_handle(), &mut info) };
    let cols = i32::from(info.srWindow.Right) - i32::from(info.srWindow.Left) + 1;
    (ok != 0 && cols > 0).then(|| u16::try_from(cols).unwrap_or(u16::MAX))
}

/// Does the console on stdout take ANSI escapes? Turns on VT processing (Windows 10+ consoles,
/// cmd and PowerShell alike); false where that is refused, and the live view is left off.
pub fn console_supports_vt() -> bool {
    let h = stdout_handle();
    let mut mode: Console::CONSOLE_MODE = 0;
    // SAFETY: `mode` is a live u32 the call writes; a non-console handle fails.
    if unsafe { Console::GetConsoleMode(h, &mut mode) } == 0 {
        return false;
    }
    if mode & Console::ENABLE_VIRTUAL_TERMINAL_PROCESSING != 0 {
        return true;
    }
    // SAFETY: sets a mode word on the console handle; no pointers.
    unsafe { Console::SetConsoleMode(h, mode | Console::ENABLE_VIRTUAL_TERMINAL_PROCESSING) != 0 }
}

/// Winsock's code for a full queue.
pub const ENOBUFS: i32 = WinSock::WSAENOBUFS;

/// Winsock reports an ICMP port unreachable for an earlier send as WSAECONNRESET on a later
/// receive of the same UDP socket, even an unconnected one (a server's port before its
/// client has bound): SIO_UDP_CONNRESET off makes such receives wait for real data, as on
/// Unix. Failure only leaves the default.
pub fn udp_ignore_port_unreachable(s: RawSock) {
    let off: BOOL = 0;
    let mut out: u32 = 0;
    // SAFETY: the input buffer is the live 4-byte BOOL and its size; no output buffer, a
    // live `out` for the byte count, no overlapped I/O or completion routine.
    unsafe {
        WinSock::WSAIoctl(
            s as WinSock::SOCKET,
            WinSock::SIO_UDP_CONNRESET,
            (&off as *const BOOL).cast(),
            std::mem::size_of::<BOOL>() as u32,
            std::ptr::null_mut(),
            0,
            &mut out,
            std::ptr::null_mut(),
            None,
        );
    }
}

/// SO_BINDTODEVICE is Linux's (issue 21): `--device` is refused with what to use instead.
pub fn bind_device(_s: &socket2::Socket, _dev: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "binding to an interface (SO_BINDTODEVICE) is Linux-only; pick the interface by its \
         address instead (--bind ADDR on the client, --listen ADDR on the server)",
    ))
}

/// No interface binding on Windows.
pub fn socket_device(_s: &std::net::UdpSocket) -> Option<Vec<u8>> {
    None
}

/// Windows has no SO_REUSEPORT, and its SO_REUSEADDR would let any program take the port:
/// nothing is set, so two tests at once to servers on the same port need two --bind
/// addresses (net.rs, `bind_udp_shared`).
pub fn set_reuse_port(_s: &socket2::Socket) -> std::io::Result<()> {
    Ok(())
}

/// SO_BUSY_POLL is Linux's.
pub fn set_busy_poll(_s: RawSock, _usecs: i32) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SO_BUSY_POLL is Linux-only",
    ))
}

/// socket2 has no IPV6_TCLASS for Windows, whose stack ignores a program's DSCP anyway unless
/// a QoS policy allows it: `--tos` on IPv6 is refused with a warning (IPv4's IP_TOS is set).
pub fn set_tclass_v6(_s: &socket2::Socket, _tclass: u32) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "IPV6_TCLASS is not set on Windows",
    ))
}
