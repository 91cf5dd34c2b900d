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
