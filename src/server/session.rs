//! A session's data phase, on the `btest-conn` thread that admitted it: the start record,
//! the engine's plan from the command (rates and duration capped by `--max-rate`,
//! `--max-duration` and the user's and source's limits), the engine run with its bytes
//! charged to the session's quotas, and the end record.
//!
//! Must not: touch the handshake (handshake.rs) or print (records go out as [`ServerEvent`]s).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::handshake::Admitted;
use super::{live, ServerEvent, SessionRecord, SessionStart, Shared};
use parking_lot::Mutex;

use crate::engine::{self, rx::canonical, Plan, Stop, StopReason};
use crate::wire::{datagram, Command, Protocol, Side};

pub(super) fn run(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    cmd: Command,
    a: Admitted,
) -> SessionRecord {
    let Admitted {
        control: s,
        extra,
        udp,
        lease,
        user,
        method,
        _active,
        grant,
        _source,
        _capacity,
    } = a;
    let tcp = cmd.protocol == Protocol::Tcp;
    let n = cmd.connections();
    let peer_ip = canonical(peer.ip());
    shared.started.fetch_add(1, SeqCst);
    shared.metrics.session_started();
    let connections = if tcp { 1 + extra.len() } else { n };
    log::info!(
        "{peer}: session start: {} {} ({}), {} connection(s){}",
        cmd.protocol.as_str(),
        cmd.direction.client_word(),
        if cmd.direction.we_transmit(Side::Server) {
            "we send"
        } else {
            "we receive"
        },
        connections,
        user.as_ref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default()
    );
    let start = SessionStart {
        started: SystemTime::now(),
        peer,
        command: cmd,
        connections,
        user,
        auth: method,
        udp_port: lease.as_ref().map(|l| l.port),
    };
    shared.emit(ServerEvent::Start(start.clone()));
    // The lowest of --max-rate and the user's and source's rate= limits.
    let cap = lowest(shared.cfg.max_rate, grant.rate);
    let sends_at = capped(u64::from(cmd.remote_tx_speed), cap);
    let live = shared.live.start(live::SessionInfo {
        peer,
        user: start.user.clone(),
        protocol: cmd.protocol.as_str(),
        direction: cmd.direction.client_word(),
        connections,
        started: start.started,
        cap_bps: (cmd.direction.we_transmit(Side::Server)
            && sends_at != u64::from(cmd.remote_tx_speed))
        .then_some(sends_at),
    });
    let stop = Stop::new();
    let over: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let grant = Arc::new(grant);
    let tx_size = cmd.effective_tx_size();
    let plan = Plan {
        side: "server",
        protocol: cmd.protocol,
        transmit: cmd.direction.we_transmit(Side::Server),
        receive: cmd.direction.we_receive(Side::Server),
        control: s,
        extra_tcp: extra,
        udp,
        udp_overhead: datagram::overhead(peer_ip.is_ipv6()),
        tx_rate: sends_at,
        // What we read, capped too: TCP flow control then slows the client to it.
        rx_rate: cap.filter(|_| tcp).unwrap_or(0),
        tx_size,
        peer_chunk: tx_size,
        random: cmd.random_data,
        peer_zero: !cmd.random_data,
        interval: Duration::from_secs(1),
        duration: None,
        max_duration: lowest(shared.cfg.max_duration, grant.duration),
        control_timeout: shared.cfg.control_timeout,
        samples: None,
        parent: Some(shared.stop.clone()),
        gauge: Some(shared.threads.clone()),
        on_bytes: Some({
            let m = shared.metrics.clone();
            let live = live.clone();
            let stop = stop.clone();
            let over = over.clone();
            let grant = grant.clone();
            // The status thread, once per take (about a second): never per packet.
            Arc::new(move |t: &engine::Take| {
                let (sent, received) = (t.tx_bytes, t.rx_bytes);
                m.add_bytes(sent, received);
                live.add(t);
                // The data path stops a session whose quota ran out (engine/budget.rs);
                // this keeps the message, and stops one whose period check found it so.
                if let Some(why) = grant.charge(sent, received, SystemTime::now()) {
                    stop.trigger(StopReason::Quota);
                    over.lock().get_or_insert(why);
                }
            })
        }),
        tuning: shared.cfg.tuning,
        budget: grant.budget(),
    };
    let result = engine::run(plan, &stop);
    if stop.reason() == Some(StopReason::Quota) && over.lock().is_none() {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *over.lock() = grant.over(now);
    }
    drop(lease);
    // The last take is charged; written now so a restart keeps it.
    drop(grant);
    match &result {
        Ok(sum) => {
            let reason = super::end_reason(&sum.end_reason);
            match over.lock().as_deref() {
                Some(why) => log::warn!("{peer}: session end: {reason}: {why}"),
                None => log::info!("{peer}: session end: {reason}"),
            }
            shared.live.end(&live, reason);
        }
        Err(e) => {
            log::warn!("{peer}: session error: {e}");
            shared.live.end(&live, "error");
        }
    }
    SessionRecord {
        start,
        result: result.map_err(|e| e.to_string()),
    }
}

/// The tighter of two optional limits (`None` = no limit).
fn lowest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The rate the server sends at: what the client asked (0 = unlimited), clamped to
/// `--max-rate` instead of refusing the test (issue 10). Unlimited UDP under a cap is sent at
/// the cap, not adapted upwards from the client's statuses.
fn capped(asked: u64, cap: Option<u64>) -> u64 {
    match (asked, cap) {
        (_, None) => asked,
        (0, Some(c)) => c,
        (a, Some(c)) => a.min(c),
    }
}

#[cfg(test)]
mod tests {
    use super::capped;

    #[test]
    fn the_cap_clamps_instead_of_refusing() {
        // (asked, cap, sent)
        let table = [
            (0, None, 0),
            (5_000, None, 5_000),
            (0, Some(100_000_000), 100_000_000),
            (1_000_000_000, Some(100_000_000), 100_000_000),
            (10_000_000, Some(100_000_000), 10_000_000),
            (100_000_000, Some(100_000_000), 100_000_000),
        ];
        for (asked, cap, want) in table {
            assert_eq!(capped(asked, cap), want, "asked {asked}, cap {cap:?}");
        }
    }
}
