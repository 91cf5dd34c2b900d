//! The accept threads (`btest-accept-K`, one per listener): each polls its listener with a
//! 100 ms timeout so a stop is seen promptly, applies the `--allow`/`--deny` lists and the
//! per-source handshake caps before a single byte is written, and hands each admitted
//! connection to a new `btest-conn` thread (handshake.rs).
//!
//! Must not: read from or write to a connection (a refused flood costs an accept and a close
//! each), or log per refused connection (the gate in limits.rs bounds that).

use crate::sys::AsSock;
use std::net::TcpListener;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::capacity::Tier;
use super::limits::Source;
use super::RejectReason;
use super::{handshake, Shared};
use crate::engine::StopReason;
use crate::net;

pub(super) fn run(shared: &Arc<Shared>, l: TcpListener) {
    let fd = l.raw_sock();
    while !shared.stop.is_triggered() {
        if crate::sys::signalled() {
            shared.stop.trigger(StopReason::Shutdown);
            break;
        }
        if !crate::sys::wait_readable(fd, net::POLL_TIMEOUT) {
            continue;
        }
        let (stream, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and log through the gate
                // (it was 20 lines a second under a descriptor flood, issue 18).
                shared.metrics.reject(RejectReason::Capacity);
                if shared.gate.lock().allow("accept_failed") {
                    log::warn!("accept failed: {e}");
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if !shared.acl.admits(peer.ip()) {
            // Closed before the hello, counted, and summed up by the guard once per window.
            shared.rejected.fetch_add(1, SeqCst);
            shared.metrics.reject(RejectReason::Denied);
            shared.gate.lock().hold(RejectReason::Denied.as_str());
            continue;
        }
        let src = Source::of(peer.ip());
        let now = Instant::now();
        let admitted = shared.limits.lock().begin_handshake(src, now);
        if let Err(r) = admitted {
            handshake::reject(shared, peer, handshake::refusal_reason(r), &r.describe(now));
            continue;
        }
        // The connection and its thread, within the process budget; beyond it the connection
        // is closed now, which leaves room to accept and refuse the next.
        let hold = match shared.capacity.hold(Tier::Handshake, 1, 1) {
            Ok(h) => h,
            Err(full) => {
                shared.limits.lock().end_handshake(src);
                handshake::reject(shared, peer, RejectReason::Capacity, &full.to_string());
                continue;
            }
        };
        // Counted in the live-thread gauge until the thread ends, or at once uncounted when
        // it cannot start (crate::thread's Registration).
        let sh = shared.clone();
        let r = crate::thread::spawn_named("btest-conn", Some(&shared.threads), move || {
            let _hold = hold;
            handshake::handle_connection(&sh, stream, peer, now);
        });
        if let Err(e) = r {
            shared.limits.lock().end_handshake(src);
            handshake::reject(
                shared,
                peer,
                RejectReason::Other,
                &format!("cannot start a thread: {e}"),
            );
        }
    }
}
