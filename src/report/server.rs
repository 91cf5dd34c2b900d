//! The server's records (`session_start`, `session_end`, `auth_failure`, `rejected`) and their
//! outputs: the session line on stdout, the CSV row, the syslog line. Depends on the server's
//! events; server/ never imports this module.

use std::time::SystemTime;

use super::{io_fields, totals};
use crate::config::Output;
use crate::export::csv::rfc3339_utc;
use crate::record::{self, field as F, Kind, Record, Value};
use crate::server::{end_reason, ServerEvent, SessionRecord, SessionStart};
use crate::units::format_rate;

/// The fields every server record opens with: when, who, and how they logged in.
fn who(
    b: &mut record::Builder,
    at: SystemTime,
    peer: &std::net::SocketAddr,
    user: &Option<String>,
    auth: crate::auth::AuthMethod,
) {
    b.str(&F::TIMESTAMP, &rfc3339_utc(at))
        .str(&F::PEER, &peer.to_string())
        .push(&F::USER, Value::opt_str(user.as_deref()))
        .str(&F::AUTH, auth.as_str());
}

fn start_fields(b: &mut record::Builder, st: &SessionStart) {
    who(b, st.started, &st.peer, &st.user, st.auth);
    b.str(&F::PROTOCOL, st.command.protocol.as_str())
        .str(&F::DIRECTION, st.command.direction.client_word())
        .int(&F::CONNECTIONS, st.connections as u64)
        .push(
            &F::UDP_PORT,
            st.udp_port.map_or(Value::Null, |p| Value::Int(p.into())),
        );
}

/// The record of a server event.
pub fn server_record(ev: &ServerEvent) -> Record {
    match ev {
        ServerEvent::Start(st) => Record::build(Kind::SessionStart, |b| {
            start_fields(b, st);
            b.int(
                &F::REMOTE_TX_SPEED_BPS,
                u64::from(st.command.remote_tx_speed),
            )
            .int(&F::LOCAL_TX_SPEED_BPS, u64::from(st.command.local_tx_speed))
            .int(&F::TX_SIZE, u64::from(st.command.tx_size));
        }),
        ServerEvent::End(r) => session_end_record(r),
        ServerEvent::AuthFailed {
            at,
            peer,
            user,
            method,
            ..
        } => Record::build(Kind::AuthFailure, |b| who(b, *at, peer, user, *method)),
        ServerEvent::Rejected(r) => Record::build(Kind::Rejected, |b| {
            who(b, r.at, &r.peer, &r.user, r.auth);
            b.str(&F::PROTOCOL, r.command.protocol.as_str())
                .str(&F::DIRECTION, r.command.direction.client_word())
                .str(&F::PHASE, r.phase.as_str())
                .str(&F::REASON, r.reason.as_str())
                .str(&F::ERROR, &r.error);
        }),
    }
}

fn session_end_record(r: &SessionRecord) -> Record {
    let (summary, err) = match &r.result {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.as_str())),
    };
    let d = summary.map(|s| s.duration).unwrap_or_default();
    let st = summary.map(|s| s.status.clone()).unwrap_or_default();
    let end = summary.map_or("error", |s| end_reason(&s.end_reason));
    Record::build(Kind::SessionEnd, |b| {
        start_fields(b, &r.start);
        totals(b, &st, d);
        b.str(&F::END_REASON, end)
            .push(&F::ERROR, Value::opt_str(err));
        match summary {
            Some(s) => io_fields(b, s),
            None => {
                b.push(&F::UDP_TX_IO, Value::Null)
                    .push(&F::UDP_RX_IO, Value::Null);
            }
        }
        b.int(&F::FOREIGN_DATAGRAMS, st.totals.foreign);
    })
}

/// The CSV row of a server event, in session_end columns: finished sessions, and failed
/// logins and refused handshakes as rows with `end_reason` `error` (one row per attempt, so a
/// log shows them; JSON has their own records). `None` for session starts.
pub fn server_csv_row(ev: &ServerEvent) -> Option<Vec<String>> {
    use crate::server::Rejection;
    let failed = |at, peer, user: &Option<String>, auth, command, error: String| {
        let start = SessionStart {
            started: at,
            peer,
            command,
            connections: 0,
            user: user.clone(),
            auth,
            udp_port: None,
        };
        session_end_record(&SessionRecord {
            start,
            result: Err(error),
        })
    };
    let rec = match ev {
        ServerEvent::Start(_) => return None,
        ServerEvent::End(r) => session_end_record(r),
        ServerEvent::AuthFailed {
            at,
            peer,
            user,
            method,
            command,
        } => failed(
            *at,
            *peer,
            user,
            *method,
            *command,
            format!(
                "authentication failed ({})",
                crate::error::auth_method_name(method.as_str())
            ),
        ),
        ServerEvent::Rejected(r) => {
            let Rejection {
                at,
                peer,
                user,
                auth,
                command,
                error,
                ..
            } = r.as_ref();
            failed(*at, *peer, user, *auth, *command, error.clone())
        }
    };
    Some(rec.csv_cells())
}

/// Formats a server event for stdout; `None` for events that text mode leaves to the log.
pub fn server_event_line(ev: &ServerEvent, output: Output) -> Option<String> {
    let r = server_record(ev);
    match (ev, output) {
        (_, Output::Json) => Some(r.to_json()),
        (ServerEvent::End(_), Output::Text) => Some(session_text(&r)),
        _ => None,
    }
}

fn session_text(r: &Record) -> String {
    // A user name and an error text may carry what a peer sent (issue 18): escaped.
    let user = match r.get(&F::USER) {
        Value::Str(u) => format!(" user {}", crate::text::Esc(u)),
        _ => String::new(),
    };
    let err = match r.get(&F::ERROR) {
        Value::Str(e) => format!(" ({})", crate::text::Esc(e)),
        _ => String::new(),
    };
    format!(
        "session {} {} (client {}) conns {}{user}: {:.1}s tx {} ({} B) rx {} ({} B) lost {} end {}{err}",
        r.text(&F::PEER),
        r.text(&F::PROTOCOL),
        r.text(&F::DIRECTION),
        r.text(&F::CONNECTIONS),
        r.f64(&F::DURATION_S),
        format_rate(r.f64(&F::TX_AVG_BPS)),
        r.text(&F::TX_BYTES),
        format_rate(r.f64(&F::RX_AVG_BPS)),
        r.text(&F::RX_BYTES),
        r.text(&F::LOST_PACKETS),
        r.text(&F::END_REASON),
    )
}

/// The syslog line for a server event.
pub fn server_event_syslog(ev: &ServerEvent) -> (crate::export::syslog::Severity, String) {
    use crate::export::syslog::Severity;
    let r = server_record(ev);
    let kv = r.key_values_except(&[&F::TIMESTAMP]);
    match ev {
        ServerEvent::Start(_) => (Severity::Info, format!("session start {kv}")),
        ServerEvent::AuthFailed { .. } => (Severity::Notice, format!("authentication failed {kv}")),
        ServerEvent::Rejected(_) => (Severity::Notice, format!("session rejected {kv}")),
        ServerEvent::End(s) => {
            let sev = if s.result.is_ok() {
                Severity::Info
            } else {
                Severity::Err
            };
            (sev, format!("session end {kv}"))
        }
    }
}

/// Golden text: a record built by hand, every output asserted whole (issue 20: a misspelt
/// field or a layout change must fail here, not in a user's log).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;
    use crate::engine::counters::Snapshot;
    use crate::engine::{StatusTotals, StopReason, Summary};
    use crate::server::{RejectReason, Rejection};
    use crate::wire::{Command, Direction, Protocol};
    use std::time::{Duration, UNIX_EPOCH};

    fn command() -> Command {
        Command {
            protocol: Protocol::Udp,
            direction: Direction::Both,
            random_data: false,
            connection_count: 1,
            tx_size: 1500,
            client_buf_size: 0,
            remote_tx_speed: 100_000_000,
            local_tx_speed: 0,
        }
    }

    fn start() -> SessionStart {
        SessionStart {
            started: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            peer: "192.0.2.7:40000".parse().unwrap(),
            command: command(),
            connections: 1,
            user: Some("ops\nx".into()),
            auth: AuthMethod::EcSrp5,
            udp_port: Some(2257),
        }
    }

    fn end(reason: StopReason) -> ServerEvent {
        let status = StatusTotals {
            totals: Snapshot {
                tx_bytes: 125_000_000,
                rx_bytes: 62_500_000,
                lost: 42,
                foreign: 3,
                ..Snapshot::default()
            },
            remote_rx_bytes: 124_000_000,
            local_cpu_avg: Some(7.25),
            remote_cpu_avg: None,
            ..StatusTotals::default()
        };
        ServerEvent::End(Box::new(SessionRecord {
            start: start(),
            result: Ok(Summary {
                duration: Duration::from_secs(10),
                status,
                end_reason: reason,
                tcp_links_ran: None,
                udp_tx_io: Some(crate::engine::udpio::Method::Mmsg),
                udp_rx_io: None,
            }),
        }))
    }

    #[test]
    fn golden_session_end_line_syslog_and_csv() {
        let ev = end(StopReason::PeerClosed);
        assert_eq!(
            server_event_line(&ev, Output::Text).unwrap(),
            "session 192.0.2.7:40000 udp (client both) conns 1 user ops\\nx: 10.0s tx 100.0 Mbps \
             (125000000 B) rx 50.0 Mbps (62500000 B) lost 42 end client_closed"
        );
        let (sev, line) = server_event_syslog(&ev);
        assert_eq!(sev, crate::export::syslog::Severity::Info);
        assert_eq!(
            line,
            "session end peer=192.0.2.7:40000 user=ops\\nx auth=ecsrp5 protocol=udp \
             direction=both connections=1 udp_port=2257 duration_s=10 tx_bytes=125000000 \
             rx_bytes=62500000 tx_avg_bps=100000000 rx_avg_bps=50000000 lost_packets=42 \
             local_cpu_avg=7.2 remote_rx_bytes=124000000 end_reason=client_closed \
             udp_tx_io=mmsg foreign_datagrams=3"
        );
        assert_eq!(
            server_csv_row(&ev).unwrap().join(","),
            "2026-11-18T11:06:40Z,192.0.2.7:40000,ops\nx,ecsrp5,udp,both,1,2257,10,125000000,\
             62500000,100000000,50000000,42,7.2,,124000000,client_closed,,mmsg,,3"
        );
        assert_eq!(crate::export::csv::server_header().len(), 22);
    }

    #[test]
    fn golden_session_end_reasons_and_errors() {
        let line = |ev: &ServerEvent| server_event_line(ev, Output::Text).unwrap();
        assert!(line(&end(StopReason::Quota)).ends_with(" end quota"));
        assert!(line(&end(StopReason::PeerReset)).ends_with(" end client_reset"));
        assert!(line(&end(StopReason::Shutdown)).ends_with(" end interrupted"));
        let failed = ServerEvent::End(Box::new(SessionRecord {
            start: start(),
            result: Err("data: connection reset\n".into()),
        }));
        assert_eq!(
            line(&failed),
            "session 192.0.2.7:40000 udp (client both) conns 1 user ops\\nx: 0.0s tx 0 bps (0 B) \
             rx 0 bps (0 B) lost 0 end error (data: connection reset\\n)"
        );
        assert_eq!(
            server_event_syslog(&failed).0,
            crate::export::syslog::Severity::Err
        );
    }

    #[test]
    fn golden_start_auth_failure_and_rejection() {
        let st = ServerEvent::Start(start());
        // Text output leaves session starts to the log; JSON has them.
        assert_eq!(server_event_line(&st, Output::Text), None);
        assert_eq!(
            server_event_line(&st, Output::Json).unwrap(),
            "{\"type\":\"session_start\",\"schema\":1,\"timestamp\":\"2026-11-18T11:06:40Z\",\
             \"peer\":\"192.0.2.7:40000\",\"user\":\"ops\\nx\",\"auth\":\"ecsrp5\",\
             \"protocol\":\"udp\",\"direction\":\"both\",\"connections\":1,\"udp_port\":2257,\
             \"remote_tx_speed_bps\":100000000,\"local_tx_speed_bps\":0,\"tx_size\":1500}"
        );
        assert_eq!(server_csv_row(&st), None);
        let auth = ServerEvent::AuthFailed {
            at: UNIX_EPOCH,
            peer: "192.0.2.8:1".parse().unwrap(),
            user: None,
            method: AuthMethod::Md5,
            command: command(),
        };
        assert_eq!(
            server_event_syslog(&auth),
            (
                crate::export::syslog::Severity::Notice,
                "authentication failed peer=192.0.2.8:1 auth=md5".to_string()
            )
        );
        let row = server_csv_row(&auth).unwrap();
        assert_eq!(row[17], "error");
        assert_eq!(row[18], "authentication failed (MD5)");
        let rej = ServerEvent::Rejected(Box::new(Rejection {
            at: UNIX_EPOCH,
            peer: "192.0.2.9:2".parse().unwrap(),
            user: Some("bob".into()),
            auth: AuthMethod::None,
            command: command(),
            phase: crate::error::Phase::Command,
            reason: RejectReason::Quota,
            error: "quota used up".into(),
        }));
        assert_eq!(
            server_event_syslog(&rej).1,
            "session rejected peer=192.0.2.9:2 user=bob auth=none protocol=udp direction=both \
             phase=command reason=quota error=\"quota used up\""
        );
    }
}
