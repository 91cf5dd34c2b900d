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
//! Must not: open, tune or own sockets, or decide when a session ends.

use std::sync::atomic::{AtomicUsize, Ordering};
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

    /// The role a session thread plays, from its name.
    pub fn of_thread(name: &str) -> Option<RoleKind> {
        [
            RoleKind::Tx,
            RoleKind::Rx,
            RoleKind::CtlRx,
            RoleKind::Status,
        ]
        .into_iter()
        .find(|k| name.starts_with(k.prefix()))
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSlot {
    /// What it does.
    pub kind: RoleKind,
    /// The TCP connection or UDP socket it works on (0 for control and status).
    pub link: usize,
    /// Its thread name.
    pub name: String,
}

/// Every role thread of a session, in spawn order (status last).
#[derive(Debug, Clone, PartialEq, Eq)]
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
            slots.push(RoleSlot { kind, link, name });
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

/// Stack of every thread the program starts beside `main` (roles, handshakes, probe, echo,
/// HTTP connections): they keep their buffers on the heap, so 256 KiB is plenty (docs/bench.md
/// has the measurement) and keeps per-connection memory small on routers. One definition
/// (issue 20: it was written five times).
pub const THREAD_STACK: usize = 256 * 1024;

/// Keeps the live-thread gauge honest and turns a panic into a stop, whatever way the role
/// ends.
struct Guard<'a> {
    gauge: Option<Arc<AtomicUsize>>,
    stop: &'a Stop,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            self.stop
                .trigger(StopReason::Error(format!("thread {name} panicked")));
        }
        if let Some(g) = &self.gauge {
            g.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Starts one role thread: named, on a small stack, counted in `gauge`. A role that fails or
/// panics stops its session at once, not when it is joined.
pub fn spawn<'scope, 'env, T, F>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: &str,
    gauge: Option<&Arc<AtomicUsize>>,
    stop: &'scope Stop,
    f: F,
) -> Result<std::thread::ScopedJoinHandle<'scope, Result<T>>>
where
    T: Send + 'scope,
    F: FnOnce() -> Result<T> + Send + 'scope,
{
    if let Some(g) = gauge {
        g.fetch_add(1, Ordering::SeqCst);
    }
    let guard = Guard {
        gauge: gauge.cloned(),
        stop,
    };
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(THREAD_STACK)
        .spawn_scoped(scope, move || {
            let _guard = guard;
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
                source: std::io::Error::new(e.kind(), format!("cannot start thread {name}: {e}")),
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
    fn thread_names_map_back_to_roles() {
        let t = RoleTable::new(false, 2, true, true);
        for s in &t.slots {
            assert_eq!(RoleKind::of_thread(&s.name), Some(s.kind), "{}", s.name);
        }
        assert_eq!(RoleKind::of_thread("btest-accept-0"), None);
        assert_eq!(RoleKind::of_thread("main"), None);
    }

    #[test]
    fn a_failing_or_panicking_role_stops_the_session_and_leaves_the_gauge_at_zero() {
        let stop = Stop::new();
        let gauge = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            let h = spawn(s, "btest-tx-0", Some(&gauge), &stop, || -> Result<()> {
                Err(Error::Refused("x".into()))
            })
            .unwrap();
            assert!(h.join().unwrap().is_err());
        });
        assert!(stop.is_triggered());
        let stop = Stop::new();
        std::thread::scope(|s| {
            let h = spawn(s, "btest-rx-0", Some(&gauge), &stop, || -> Result<u8> {
                panic!("boom")
            })
            .unwrap();
            assert!(h.join().is_err());
        });
        assert!(matches!(stop.reason(), Some(StopReason::Error(m)) if m.contains("btest-rx-0")));
        assert_eq!(gauge.load(Ordering::SeqCst), 0);
    }
}
