//! The process-wide budget of file descriptors and threads (issue 18): derived once at start
//! from RLIMIT_NOFILE and the task limit (the cgroup's `pids.max`, RLIMIT_NPROC,
//! `kernel.threads-max`), it refuses new work with a clear reason *before* the process runs
//! out, keeping room to accept, refuse and serve others.
//!
//! Why: each TCP connection of a session costs a descriptor and up to two threads (a
//! 255-connection session: 260 descriptors, 516 threads). Under the shipped systemd unit's
//! limits of the time (1024 descriptors, TasksMax=2048), four such sessions from one source
//! reached 1023 descriptors and 1541 threads and every other client was refused at the hello,
//! by `accept` failing and thread spawns failing, with nothing in the log saying why.
//!
//! Two tiers: a handshake (one accepted connection and its `btest-conn` thread) may use all
//! but [`FLOOR`] of each limit, the last of which is what the accept loop needs to take a
//! connection and close it; a session (its connections and role threads) may use all but a
//! reserve of an eighth of each limit (at least [`MIN_RESERVE`]), so a server full of sessions
//! still completes handshakes, refuses them with a reason, and serves `--http`.
//!
//! The counts are reservations made by the server itself (handshakes, sessions), on top of a
//! base measured at start plus a fixed allowance for the server's own threads and the HTTP
//! interface. Pure but for the start-up reading of the limits (sys/limits.rs). Must not: block,
//! log on the accept path (the caller logs through its gate), or touch sockets.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// What the accept loop keeps for itself: the accepted socket and its close.
pub const FLOOR: usize = 8;
/// The least a session leaves for handshakes, refusals and `--http`.
pub const MIN_RESERVE: usize = 64;
/// The server's own descriptors and threads beyond those open at start: the HTTP interface
/// (16 connections, a thread each, and its listener), guard, metrics, echo, accept threads.
const ALLOWANCE: usize = 32;

/// One resource: its limit and what is reserved of it.
#[derive(Debug)]
struct Meter {
    limit: usize,
    used: AtomicUsize,
}

impl Meter {
    fn new(limit: usize, base: usize) -> Meter {
        Meter {
            limit,
            used: AtomicUsize::new(base),
        }
    }

    /// The most this tier may bring the count to.
    fn ceiling(&self, tier: Tier) -> usize {
        let keep = match tier {
            Tier::Handshake => FLOOR,
            Tier::Session => (self.limit / 8).max(MIN_RESERVE),
        };
        self.limit.saturating_sub(keep)
    }

    fn take(&self, n: usize, tier: Tier) -> bool {
        let ceiling = self.ceiling(tier);
        self.used
            .fetch_update(SeqCst, SeqCst, |u| (u + n <= ceiling).then_some(u + n))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, SeqCst);
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// An accepted connection's handshake.
    Handshake,
    /// A session's data phase.
    Session,
}

/// Where the limits came from, for the start-up log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// "RLIMIT_NOFILE 1024 (raised from 1024)" and the like.
    pub fds: String,
    /// "cgroup pids.max 2048 (/sys/fs/cgroup/...)" and the like.
    pub threads: String,
}

/// The budget. Shared as `Arc<Capacity>`; reservations give back on drop.
#[derive(Debug)]
pub struct Capacity {
    fds: Meter,
    threads: Meter,
    sources: Sources,
}

/// Descriptors and threads held until dropped.
#[derive(Debug)]
pub struct Hold {
    cap: Arc<Capacity>,
    fds: usize,
    threads: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.cap.fds.give(self.fds);
        self.cap.threads.give(self.threads);
    }
}

/// Why a reservation was refused: which resource, what is used, the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    /// "file descriptors" or "threads".
    pub what: &'static str,
    /// Reserved now.
    pub used: usize,
    /// Asked for.
    pub asked: usize,
    /// The process limit.
    pub limit: usize,
    /// Where the limit comes from.
    pub source: String,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the process is near its limit of {} {} ({}): {} in use, {} more asked; raise the limit (LimitNOFILE=, TasksMax= in the systemd unit) or lower --max-sessions / --max-connections-per-source",
            self.limit, self.what, self.source, self.used, self.asked
        )
    }
}

impl Capacity {
    /// A budget of `fds` descriptors and `threads` threads, `base_*` of them in use already.
    pub fn new(
        fds: usize,
        threads: usize,
        base_fds: usize,
        base_threads: usize,
        sources: Sources,
    ) -> Capacity {
        Capacity {
            fds: Meter::new(fds, base_fds + ALLOWANCE),
            threads: Meter::new(threads, base_threads + ALLOWANCE),
            sources,
        }
    }

    /// This process's budget, read from its limits (raising RLIMIT_NOFILE's soft value to the
    /// hard one). A limit that cannot be read is taken as none.
    pub fn of_process() -> Capacity {
        use crate::sys::limits;
        let (fds, fds_src) = match limits::raise_nofile() {
            Some((n, Some(from))) => (n, format!("RLIMIT_NOFILE {n}, raised from {from}")),
            Some((n, None)) => (n, format!("RLIMIT_NOFILE {n}")),
            None => (u64::MAX, "no RLIMIT_NOFILE".to_string()),
        };
        let base_threads = limits::threads().unwrap_or(1) as usize;
        let mut threads = (u64::MAX, "no task limit".to_string());
        let mut consider = |n: u64, what: String| {
            if n < threads.0 {
                threads = (n, what);
            }
        };
        if let Some((max, cur, dir)) = limits::cgroup_pids() {
            // The cgroup counts every task in it, ours among them: what is left of it, plus
            // ours, is what this process may reach.
            let ours = base_threads as u64;
            let room = max.saturating_sub(cur).saturating_add(ours);
            consider(room, format!("cgroup pids.max {max} ({})", dir.display()));
        }
        if let Some(n) = limits::nproc() {
            consider(n, format!("RLIMIT_NPROC {n}"));
        }
        if let Some(n) = limits::threads_max() {
            consider(n, format!("kernel.threads-max {n}"));
        }
        let clamp = |n: u64| {
            usize::try_from(n)
                .unwrap_or(usize::MAX / 2)
                .min(usize::MAX / 2)
        };
        Capacity::new(
            clamp(fds),
            clamp(threads.0),
            limits::open_fds().unwrap_or(16) as usize,
            base_threads,
            Sources {
                fds: fds_src,
                threads: threads.1,
            },
        )
    }

    /// Reserves `fds` descriptors and `threads` threads for a handshake or a session.
    pub fn hold(self: &Arc<Self>, tier: Tier, fds: usize, threads: usize) -> Result<Hold, Full> {
        if !self.fds.take(fds, tier) {
            return Err(self.full(&self.fds, "file descriptors", fds, &self.sources.fds));
        }
        if !self.threads.take(threads, tier) {
            self.fds.give(fds);
            return Err(self.full(&self.threads, "threads", threads, &self.sources.threads));
        }
        Ok(Hold {
            cap: self.clone(),
            fds,
            threads,
        })
    }

    fn full(&self, m: &Meter, what: &'static str, asked: usize, source: &str) -> Full {
        Full {
            what,
            used: m.used.load(SeqCst),
            asked,
            limit: m.limit,
            source: source.to_string(),
        }
    }

    /// One line for the start-up log: the limits, where they come from, what sessions may use.
    pub fn describe(&self) -> String {
        format!(
            "capacity: {} file descriptors ({}), {} threads ({}); sessions may hold up to {} and {}",
            self.fds.limit,
            self.sources.fds,
            self.threads.limit,
            self.sources.threads,
            self.fds.ceiling(Tier::Session),
            self.threads.ceiling(Tier::Session),
        )
    }

    /// (descriptors, threads) reserved now, base included.
    pub fn used(&self) -> (usize, usize) {
        (self.fds.used.load(SeqCst), self.threads.used.load(SeqCst))
    }
}

/// What a session costs: `links` TCP connections (UDP: its control connection and one
/// socket), its role threads (engine/roles.rs decides which) and its `btest-conn` thread.
pub fn session_cost(tcp: bool, links: usize, transmit: bool, receive: bool) -> (usize, usize) {
    let roles =
        crate::engine::roles::RoleTable::new(tcp, if tcp { links } else { 1 }, transmit, receive);
    let fds = if tcp { links } else { 2 };
    (fds, roles.slots.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(fds: usize, threads: usize) -> Arc<Capacity> {
        // No base: the allowance alone.
        Arc::new(Capacity::new(fds, threads, 0, 0, Sources::default()))
    }

    #[test]
    fn sessions_leave_a_reserve_that_handshakes_may_use() {
        // 1024 descriptors, 2048 threads: systemd's defaults of the time.
        let c = cap(1024, 2048);
        let (fds, threads) = session_cost(true, 255, true, true);
        assert_eq!((fds, threads), (255, 255 + 255 + 1 + 1));
        // Sessions fill up to the reserve (1/8): 896 descriptors, 1792 threads. The fourth
        // 255-connection session would pass 896 descriptors.
        let mut held = Vec::new();
        while let Ok(h) = c.hold(Tier::Session, fds, threads) {
            held.push(h);
        }
        assert_eq!(held.len(), 3, "{:?}", c.used());
        let e = c.hold(Tier::Session, fds, threads).unwrap_err();
        assert_eq!(e.what, "file descriptors");
        assert!(
            e.to_string().contains("limit of 1024 file descriptors"),
            "{e}"
        );
        // A small session still fits; then handshakes go on into the reserve.
        let small = c.hold(Tier::Session, 1, 4).unwrap();
        let mut hs = Vec::new();
        while let Ok(h) = c.hold(Tier::Handshake, 1, 1) {
            hs.push(h);
        }
        assert!(hs.len() >= 100, "{} handshakes in the reserve", hs.len());
        assert!(c.used().1 <= 2048 - FLOOR);
        drop((held, small, hs));
        assert_eq!(c.used(), (ALLOWANCE, ALLOWANCE), "every hold gave back");
    }

    #[test]
    fn a_refused_hold_takes_nothing() {
        let c = cap(200, 10_000);
        let before = c.used();
        let e = c.hold(Tier::Session, 1_000, 1).unwrap_err();
        assert_eq!(e.what, "file descriptors");
        assert_eq!(c.used(), before);
        let e = cap(10_000, 100).hold(Tier::Session, 1, 1_000).unwrap_err();
        assert_eq!((e.what, e.asked), ("threads", 1_000));
    }

    #[test]
    fn udp_and_one_way_sessions_cost_what_their_roles_are() {
        // UDP both ways: control + socket; ctl-rx, tx, rx, status and btest-conn.
        assert_eq!(session_cost(false, 4, true, true), (2, 5));
        // TCP, we only send on 2: tx x2, rx-0 (statuses, EOF), status, btest-conn.
        assert_eq!(session_cost(true, 2, true, false), (2, 5));
    }

    #[test]
    fn this_process_reads_its_limits() {
        let c = Capacity::of_process();
        let d = c.describe();
        assert!(d.contains("file descriptors (RLIMIT_NOFILE"), "{d}");
    }
}
