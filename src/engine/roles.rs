//! The role table of a session, built before anything is spawned, and the one way a role
//! thread is started.
//!
//! Which threads a session has follows from its protocol, link count and directions alone, so
//! the table is pure and tested: TX `K` per link when we transmit; TCP RX `K` per connection we
//! read (connection 0 always: it carries the peer's statuses and its EOF); the UDP control
//! reader; RX `K` per UDP socket when we receive; the status thread last. Each slot owns one
//! counter slot (same index), and a sender's rate, gap histogram and per-sender figures are
//! looked up through [`RoleTable::senders`], never through an assumed slot order.
//!
//! Each slot also records its thread's kernel id while the thread runs ([`spawn`]): that is how
//! the session's CPU figures find its own threads (threadcpu.rs). Names are only for humans;
//! reading them back mixed every session of the process (issue 20, bug B1).
//!
//! Must not: open, tune or own sockets, or decide when a session ends.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use super::stop::{Stop, StopReason};
use crate::error::{Error, Phase, Result};

/// What a role thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// Sends data on one link.
    Tx,
    /// Reads data (and, on TCP connection 0, statuses) from one link.
    Rx,
    /// Reads a UDP test's statuses from connection 0.
    CtlRx,
    /// The session's clock.
    Status,
}

impl RoleKind {
    /// The thread-name prefix: what `top -H`, logs and /proc show.
    fn prefix(self) -> &'static str {
        match self {
            RoleKind::Tx => "btest-tx-",
            RoleKind::Rx => "btest-rx-",
            RoleKind::CtlRx => "btest-ctl-rx",
            RoleKind::Status => "btest-status",
        }
    }

    /// A short word for reports: `tx`, `rx`, `control`, `status`.
    pub fn word(self) -> &'static str {
        match self {
            RoleKind::Tx => "tx",
            RoleKind::Rx => "rx",
            RoleKind::CtlRx => "control",
            RoleKind::Status => "status",
        }
    }
}

/// One role thread of a session.
#[derive(Debug)]
pub struct RoleSlot {
    /// What it does.
    pub kind: RoleKind,
    /// The TCP connection or UDP socket it works on (0 for control and status).
    pub link: usize,
    /// Its thread name (for humans: `top -H`, gdb, logs; nothing parses it back).
    pub name: String,
    /// Its kernel thread id while it runs, 0 before it starts and after it ends (see
    /// [`spawn`]): how the session finds its own threads in /proc/self/task (threadcpu.rs),
    /// whatever other sessions of this process are called.
    pub tid: AtomicU32,
}

/// Every role thread of a session, in spawn order (status last).
#[derive(Debug)]
pub struct RoleTable {
    /// The slots; slot `i` counts into counter slot `i`.
    pub slots: Vec<RoleSlot>,
}

impl RoleTable {
    /// The roles of a session over `links` TCP connections or UDP sockets.
    pub fn new(tcp: bool, links: usize, transmit: bool, receive: bool) -> RoleTable {
        let mut slots = Vec::new();
        let mut add = |kind: RoleKind, link: usize| {
            let name = match kind {
                RoleKind::Tx | RoleKind::Rx => format!("{}{link}", kind.prefix()),
                _ => kind.prefix().to_string(),
            };
            let tid = AtomicU32::new(0);
            slots.push(RoleSlot {
                kind,
                link,
                name,
                tid,
            });
        };
        if transmit {
            (0..links).for_each(|l| add(RoleKind::Tx, l));
        }
        if tcp {
            (0..links)
                .filter(|&l| l == 0 || receive)
                .for_each(|l| add(RoleKind::Rx, l));
        } else {
            add(RoleKind::CtlRx, 0);
            if receive {
                (0..links).for_each(|l| add(RoleKind::Rx, l));
            }
        }
        add(RoleKind::Status, 0);
        RoleTable { slots }
    }

    /// The slot index of each sender, in sender order (sender `k` uses rate `k`, gaps `k`).
    pub fn senders(&self) -> Vec<usize> {
        self.of_kind(RoleKind::Tx)
    }

    /// The slot indices of one kind, in order.
    pub fn of_kind(&self, kind: RoleKind) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].kind == kind)
            .collect()
    }
}

/// Moved to crate::thread (its one definition); kept here for code written before the move.
pub use crate::thread::THREAD_STACK;

/// Turns a panic into a stop, and forgets the thread's id, whatever way the role ends (a
/// finished thread's id may be given to a new thread of another session).
struct Guard<'a> {
    stop: &'a Stop,
    slot: &'a RoleSlot,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.slot.tid.store(0, Relaxed);
        if std::thread::panicking() {
            self.stop.trigger(StopReason::Error(format!(
                "thread {} panicked",
                self.slot.name
            )));
        }
    }
}

/// Starts the role thread of `slot`: named, on a small stack, counted in `gauge`
/// (crate::thread), its kernel id recorded in `slot.tid` first thing. A role that fails or
/// panics stops its session at once, not when it is joined.
pub fn spawn<'scope, 'env, T, F>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    slot: &'scope RoleSlot,
    gauge: Option<&Arc<AtomicUsize>>,
    stop: &'scope Stop,
    f: F,
) -> Result<std::thread::ScopedJoinHandle<'scope, Result<T>>>
where
    T: Send + 'scope,
    F: FnOnce() -> Result<T> + Send + 'scope,
{
    crate::thread::spawn_scoped_named(scope, &slot.name, gauge, move || {
        slot.tid.store(crate::sys::gettid(), Relaxed);
        let _guard = Guard { stop, slot };
        let r = f();
        if let Err(e) = &r {
            stop.trigger(StopReason::Error(e.to_string()));
        }
        r
    })
    .map_err(|e| {
        stop.trigger(StopReason::Error("thread start failed".into()));
        Error::Io {
            phase: Phase::Data,
            addr: None,
            source: std::io::Error::new(
                e.kind(),
                format!("cannot start thread {}: {e}", slot.name),
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &RoleTable) -> Vec<(RoleKind, usize)> {
        t.slots.iter().map(|s| (s.kind, s.link)).collect()
    }

    #[test]
    fn tcp_tables() {
        use RoleKind::*;
        // client transmit, 3 connections: 3 senders, connection 0 still read (statuses, EOF)
        let t = RoleTable::new(true, 3, true, false);
        assert_eq!(kinds(&t), [(Tx, 0), (Tx, 1), (Tx, 2), (Rx, 0), (Status, 0)]);
        assert_eq!(t.senders(), [0, 1, 2]);
        // receive only: every connection read, no sender
        let t = RoleTable::new(true, 2, false, true);
        assert_eq!(kinds(&t), [(Rx, 0), (Rx, 1), (Status, 0)]);
        assert!(t.senders().is_empty());
        // both
        let t = RoleTable::new(true, 1, true, true);
        assert_eq!(kinds(&t), [(Tx, 0), (Rx, 0), (Status, 0)]);
        assert_eq!(t.slots[0].name, "btest-tx-0");
        assert_eq!(t.slots[2].name, "btest-status");
    }

    #[test]
    fn udp_tables() {
        use RoleKind::*;
        let t = RoleTable::new(false, 2, true, true);
        assert_eq!(
            kinds(&t),
            [(Tx, 0), (Tx, 1), (CtlRx, 0), (Rx, 0), (Rx, 1), (Status, 0)]
        );
        assert_eq!(t.of_kind(Rx), [3, 4]);
        // transmit only: no data reader, the control reader always
        let t = RoleTable::new(false, 1, true, false);
        assert_eq!(kinds(&t), [(Tx, 0), (CtlRx, 0), (Status, 0)]);
        assert_eq!(t.slots[1].name, "btest-ctl-rx");
    }

    #[test]
    fn a_failing_or_panicking_role_stops_the_session_and_leaves_the_gauge_at_zero() {
        let t = RoleTable::new(false, 1, true, true);
        let stop = Stop::new();
        let gauge = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            let h = spawn(s, &t.slots[0], Some(&gauge), &stop, || -> Result<()> {
                Err(Error::Refused("x".into()))
            })
            .unwrap();
            assert!(h.join().unwrap().is_err());
        });
        assert!(stop.is_triggered());
        let stop = Stop::new();
        std::thread::scope(|s| {
            let h = spawn(s, &t.slots[2], Some(&gauge), &stop, || -> Result<u8> {
                panic!("boom")
            })
            .unwrap();
            assert!(h.join().is_err());
        });
        assert!(matches!(stop.reason(), Some(StopReason::Error(m)) if m.contains("btest-rx-0")));
        assert_eq!(gauge.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// The id a role records is its own thread's, it is there while the role runs, and it is
    /// gone once the role ends (issue 20: CPU figures come from these ids, not from names).
    #[test]
    fn a_role_records_its_thread_id_while_it_runs() {
        let t = RoleTable::new(true, 1, true, false);
        let stop = Stop::new();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let h = spawn(s, &t.slots[0], None, &stop, move || {
                go_rx.recv().unwrap();
                Ok(crate::sys::gettid())
            })
            .unwrap();
            // Recorded as the thread starts, before `f`: wait for it (bounded).
            let t0 = std::time::Instant::now();
            while t.slots[0].tid.load(Relaxed) == 0 && t0.elapsed().as_secs() < 10 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let seen = t.slots[0].tid.load(Relaxed);
            // The kernel knows that thread under the slot's name (read while it is parked).
            let comm = std::fs::read_to_string(format!("/proc/self/task/{seen}/comm")).unwrap();
            go_tx.send(()).unwrap();
            let own = h.join().unwrap().unwrap();
            assert_eq!(seen, own);
            assert_ne!(own, crate::sys::gettid(), "not the spawner's id");
            assert_eq!(comm.trim(), "btest-tx-0");
        });
        assert_eq!(t.slots[0].tid.load(Relaxed), 0);
        assert_eq!(t.slots[1].tid.load(Relaxed), 0, "never started");
    }
}
