//! The single shutdown mechanism of a session (and of the server).
//!
//! Three wake paths: an [`AtomicBool`] the TX/RX loops check every iteration; a crossbeam
//! channel whose only sender is dropped on trigger, so every `select!` wakes at once; and the
//! 100 ms socket timeouts set in net.rs, which bound every blocking call. Triggering is
//! idempotent: the first reason wins and is kept for the summary and the exit code.
//!
//! Before the stop, an orderly end passes through a *drain*: [`Stop::begin_drain`] tells the TX
//! roles to stop sending data at the next unit boundary while RX and status keep running, so
//! the final interval can be measured and the final statuses exchanged (issue 8: the last
//! interval used to be lost). Draining is not stopping: [`Stop::is_triggered`] stays false.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The requested duration elapsed (client).
    Completed,
    /// The peer closed connection 0 in order (FIN): the normal end seen by a server.
    PeerClosed,
    /// The peer's connection was reset or aborted (RST): it vanished, e.g. killed.
    PeerReset,
    /// Nothing heard from the peer for the control timeout.
    ControlTimeout,
    /// The server's --max-duration cap.
    MaxDuration,
    /// SIGINT/SIGTERM or the server shutting down.
    Shutdown,
    /// The server ended the session: a byte quota of its user or source ran out (issue 10).
    Quota,
    /// A role failed; the error itself is kept by the session.
    Error(String),
}

impl StopReason {
    /// Every reason (the error's text empty): the docs test checks the `end_reason` words of
    /// docs/output.md against these (issue 20: `quota` was emitted and not documented).
    pub const ALL: [StopReason; 8] = [
        StopReason::Completed,
        StopReason::PeerClosed,
        StopReason::PeerReset,
        StopReason::ControlTimeout,
        StopReason::MaxDuration,
        StopReason::Shutdown,
        StopReason::Quota,
        StopReason::Error(String::new()),
    ];

    /// Only a server ends a session for these (its --max-duration, a byte quota); the client
    /// sees the server close (`peer_closed`).
    pub fn server_only(&self) -> bool {
        matches!(self, StopReason::MaxDuration | StopReason::Quota)
    }

    /// Stable snake_case name for summaries and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Completed => "completed",
            StopReason::PeerClosed => "peer_closed",
            StopReason::PeerReset => "peer_reset",
            StopReason::ControlTimeout => "control_timeout",
            StopReason::MaxDuration => "max_duration",
            StopReason::Shutdown => "interrupted",
            StopReason::Quota => "quota",
            StopReason::Error(_) => "error",
        }
    }
}

struct Inner {
    flag: AtomicBool,
    drain: AtomicBool,
    peer_eof: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    sender: Mutex<Option<Sender<()>>>,
    receiver: Receiver<()>,
}

/// A cloneable stop handle.
#[derive(Clone)]
pub struct Stop(Arc<Inner>);

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    /// A fresh, untriggered handle.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Stop(Arc::new(Inner {
            flag: AtomicBool::new(false),
            drain: AtomicBool::new(false),
            peer_eof: AtomicBool::new(false),
            reason: Mutex::new(None),
            sender: Mutex::new(Some(tx)),
            receiver: rx,
        }))
    }

    /// Triggers the stop; only the first reason is kept. Returns true for the first trigger.
    pub fn trigger(&self, reason: StopReason) -> bool {
        let mut r = self.0.reason.lock();
        if r.is_some() {
            return false;
        }
        *r = Some(reason);
        self.0.flag.store(true, Ordering::SeqCst);
        // Dropping the only sender disconnects the channel: every select! on it wakes.
        self.0.sender.lock().take();
        true
    }

    /// Cheap check for hot loops.
    #[inline]
    pub fn is_triggered(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed)
    }

    /// Starts the drain: senders finish the unit in hand and send no more data.
    pub fn begin_drain(&self) {
        self.0.drain.store(true, Ordering::SeqCst);
    }

    /// For TX loops: stop sending data (drain begun or stop triggered).
    #[inline]
    pub fn data_over(&self) -> bool {
        self.0.drain.load(Ordering::Relaxed) || self.0.flag.load(Ordering::Relaxed)
    }

    /// The RX side of connection 0 read the peer's orderly close (EOF). A flag, not only a
    /// channel message, so the close cannot be lost when the bounded peer channel is full
    /// (issue 19: a server whose chunks start like statuses filled it with ~20k false
    /// statuses a second, `try_send(Closed)` failed, and the RX thread's own `PeerClosed`
    /// trigger beat the status thread's `Completed`: 5 of 30 complete tests exited 1). Only
    /// the status thread decides what the close means (an early end, or the answer to our FIN).
    pub fn note_peer_eof(&self) {
        self.0.peer_eof.store(true, Ordering::SeqCst);
    }

    /// Whether [`Stop::note_peer_eof`] was called.
    #[inline]
    pub fn peer_eof(&self) -> bool {
        self.0.peer_eof.load(Ordering::SeqCst)
    }

    /// The reason, once triggered.
    pub fn reason(&self) -> Option<StopReason> {
        self.0.reason.lock().clone()
    }

    /// A receiver that becomes disconnected when the stop triggers (for `select!`).
    pub fn channel(&self) -> &Receiver<()> {
        &self.0.receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn first_reason_wins_and_select_wakes() {
        let s = Stop::new();
        assert!(!s.is_triggered());
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            let t0 = Instant::now();
            crossbeam_channel::select! {
                recv(s2.channel()) -> _ => {}
                default(Duration::from_secs(5)) => panic!("not woken"),
            }
            t0.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(s.trigger(StopReason::PeerClosed));
        assert!(!s.trigger(StopReason::Completed));
        assert!(t.join().unwrap() < Duration::from_secs(1));
        assert!(s.is_triggered());
        assert_eq!(s.reason(), Some(StopReason::PeerClosed));
    }

    #[test]
    fn drain_stops_data_but_not_the_session() {
        let s = Stop::new();
        assert!(!s.data_over());
        s.begin_drain();
        assert!(s.data_over());
        assert!(!s.is_triggered());
        assert!(s.channel().try_recv().is_err_and(|e| e.is_empty()));
        s.trigger(StopReason::Completed);
        assert!(s.data_over() && s.is_triggered());
    }
}
