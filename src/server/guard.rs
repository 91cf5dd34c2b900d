//! The guard thread (`btest-guard`): enforces the handshake deadline, writes the summary lines
//! of the rejection log gate, forgets idle sources, keeps the guard gauges current and has
//! byte usage written every few seconds (accounting.rs).
//!
//! A read timeout alone cannot bound a handshake: a client that sends one byte every few
//! seconds restarts it on every read (16 bytes at 4 s each took 64 s). So each handshake is
//! registered here with its deadline and a second handle to its socket; at the deadline the
//! guard shuts the socket down, which ends whatever read or write the handshake thread is in,
//! and marks it expired so that thread reports a timeout rather than a closed peer.
//!
//! Must not: read or write a socket (only `shutdown`), block on anything but its own sleep.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;

/// How often the guard looks (deadlines are met to within this).
const TICK: Duration = Duration::from_millis(100);
/// How often idle sources are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// A handshake the guard watches.
pub(super) struct InFlight {
    pub deadline: Instant,
    pub stream: TcpStream,
    pub expired: Arc<AtomicBool>,
    pub peer: SocketAddr,
}

/// The registry of watched handshakes, keyed by a serial number.
#[derive(Default)]
pub(super) struct Watch {
    next: u64,
    live: Vec<(u64, InFlight)>,
}

impl Watch {
    /// Registers a handshake; the id removes it.
    pub fn add(&mut self, f: InFlight) -> u64 {
        self.next += 1;
        self.live.push((self.next, f));
        self.next
    }

    /// Stops watching (the handshake ended or moved to a phase with its own deadline).
    pub fn remove(&mut self, id: u64) {
        if let Some(i) = self.live.iter().position(|(k, _)| *k == id) {
            self.live.swap_remove(i);
        }
    }

    /// Shuts down every handshake past its deadline; returns their peers.
    fn expire(&mut self, now: Instant) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        self.live.retain(|(_, f)| {
            if now < f.deadline {
                return true;
            }
            f.expired.store(true, SeqCst);
            let _ = f.stream.shutdown(Shutdown::Both);
            out.push(f.peer);
            false
        });
        out
    }
}

/// The guard loop; returns when the server stops.
pub(super) fn run(shared: &Shared) {
    let mut pruned = Instant::now();
    while !shared.stop.is_triggered() {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let expired = shared.watch.lock().expire(now);
        let secs = shared.cfg.handshake_timeout.as_secs_f64();
        for peer in expired {
            let show = shared.gate.lock().allow("handshake_timeout");
            if show {
                log::info!(
                    "{peer}: handshake not finished within {secs} s (--handshake-timeout); dropped"
                );
            }
        }
        let (held, w) = {
            let mut g = shared.gate.lock();
            (g.flush(now), g.window().as_secs())
        };
        for (category, n) in held {
            log::warn!("{n} more connections refused ({category}) in the last {w} s, not logged one by one (see btest_sessions_rejected_total)");
        }
        let (handshakes, blocked) = {
            let mut l = shared.limits.lock();
            if now.duration_since(pruned) >= PRUNE_EVERY {
                l.prune(now);
                pruned = now;
            }
            (l.handshakes(), l.blocked_sources(now))
        };
        shared.metrics.set_guard_gauges(handshakes, blocked);
        shared.accounting.tick(now);
    }
}
