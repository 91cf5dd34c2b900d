//! The process's resource limits, as the server's capacity budget needs them (issue 18):
//! open files (RLIMIT_NOFILE, raised from its soft to its hard value, as servers do) and tasks
//! (the cgroup's `pids.max` where there is one, RLIMIT_NPROC, `kernel.threads-max`), and what
//! the process uses of them now.
//!
//! Outside Linux the /proc and cgroup readers find nothing and say `None`; Windows has no
//! rlimits at all (issue 21).
//!
//! Must not: decide anything (server/capacity.rs does), or fail: an unreadable limit is
//! `None` and the caller goes on without it.

use std::path::{Path, PathBuf};

/// A limit that is effectively none.
#[cfg(unix)]
const UNLIMITED: u64 = u64::MAX / 4;

/// glibc types the resource argument as an enum, musl (and the BSDs) as an int.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(all(unix, not(all(target_os = "linux", target_env = "gnu"))))]
type Resource = libc::c_int;

#[cfg(unix)]
fn getrlimit(res: Resource) -> Option<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` struct through a valid, exclusive pointer.
    (unsafe { libc::getrlimit(res, &mut r) } == 0).then_some(r)
}

// `rlim_t` is 32 bits on 32-bit glibc targets, 64 elsewhere.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn finite(v: libc::rlim_t) -> Option<u64> {
    (v != libc::RLIM_INFINITY).then_some(v as u64)
}

/// Open files this process may have: RLIMIT_NOFILE's soft value, after raising it to the hard
/// value (`LimitNOFILE=` in a systemd unit sets both). Returns (limit, raised from).
#[cfg(unix)]
pub fn raise_nofile() -> Option<(u64, Option<u64>)> {
    let r = getrlimit(libc::RLIMIT_NOFILE)?;
    if r.rlim_cur >= r.rlim_max {
        return Some((finite(r.rlim_cur).unwrap_or(UNLIMITED), None));
    }
    let want = libc::rlimit {
        rlim_cur: r.rlim_max,
        rlim_max: r.rlim_max,
    };
    // SAFETY: `setrlimit` reads one valid `rlimit` struct; raising the soft limit up to the
    // hard limit needs no privilege and affects only this process.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        let now = finite(r.rlim_max).unwrap_or(UNLIMITED);
        return Some((now, finite(r.rlim_cur)));
    }
    Some((finite(r.rlim_cur).unwrap_or(UNLIMITED), None))
}

/// RLIMIT_NPROC's soft value (tasks of this user, all processes), if finite.
#[cfg(unix)]
pub fn nproc() -> Option<u64> {
    getrlimit(libc::RLIMIT_NPROC).and_then(|r| finite(r.rlim_cur))
}

/// Windows has no descriptor limit of this kind (sockets are handles, bounded by memory):
/// `None`, and the server's budget goes by threads and its session caps.
#[cfg(windows)]
pub fn raise_nofile() -> Option<(u64, Option<u64>)> {
    None
}

/// No RLIMIT_NPROC on Windows.
#[cfg(windows)]
pub fn nproc() -> Option<u64> {
    None
}

/// `/proc/sys/kernel/threads-max`.
pub fn threads_max() -> Option<u64> {
    read_u64(Path::new("/proc/sys/kernel/threads-max"))
}

/// The task limit of this process's cgroup and what the cgroup uses now: (pids.max,
/// pids.current), cgroup v2 or the v1 `pids` controller. `None` without a finite limit.
pub fn cgroup_pids() -> Option<(u64, u64, PathBuf)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        let dir = match ctrl {
            "" => Path::new("/sys/fs/cgroup").join(path),
            c if c.split(',').any(|x| x == "pids") => Path::new("/sys/fs/cgroup/pids").join(path),
            _ => continue,
        };
        // A limit can be set on any ancestor: the smallest one counts (the walk stops at the
        // mount point).
        let mut best: Option<(u64, u64, PathBuf)> = None;
        let mut d = dir.as_path();
        loop {
            if let Some(max) = read_u64(&d.join("pids.max")) {
                let cur = read_u64(&d.join("pids.current")).unwrap_or(0);
                if best
                    .as_ref()
                    .is_none_or(|b| max.saturating_sub(cur) < b.0.saturating_sub(b.1))
                {
                    best = Some((max, cur, d.to_path_buf()));
                }
            }
            match d.parent() {
                Some(p) if p.starts_with("/sys/fs/cgroup") && p != Path::new("/sys/fs") => d = p,
                _ => break,
            }
        }
        if best.is_some() {
            return best;
        }
    }
    None
}

/// Open file descriptors of this process now.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Threads of this process now.
pub fn threads() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_limits_and_uses_some() {
        let (nofile, _) = raise_nofile().expect("RLIMIT_NOFILE");
        assert!(nofile >= 64, "{nofile}");
        assert!(open_fds().unwrap() >= 3);
        assert!(threads().unwrap() >= 1);
        assert!(threads_max().unwrap() > 0);
        // A cgroup limit may or may not be set here; when it is, it is read consistently.
        if let Some((max, cur, dir)) = cgroup_pids() {
            assert!(cur <= max + 1, "{dir:?}: {cur} of {max}");
        }
    }
}
