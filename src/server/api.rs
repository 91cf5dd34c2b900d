//! The JSON the HTTP API serves (`--http`): live sessions with per-second rates, recent
//! history, quota usage and a summary, built from the live registry (live.rs) as
//! [`Value`]s. docs/http.md documents every field.
//!
//! Must not: do I/O or hold a lock while rendering (it works on copies).

use std::time::{SystemTime, UNIX_EPOCH};

use super::live::{Ended, LiveView, Registry, SessionInfo};
use crate::record::Value;

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn info_fields(id: u64, i: &SessionInfo) -> Vec<(&'static str, Value)> {
    vec![
        ("id", Value::Int(id)),
        ("peer", Value::Str(i.peer.to_string())),
        ("user", Value::opt_str(i.user.as_deref())),
        ("protocol", Value::Str(i.protocol.into())),
        ("direction", Value::Str(i.direction.into())),
        ("connections", Value::Int(i.connections as u64)),
        ("started", Value::num(unix(i.started))),
    ]
}

fn live_session(v: &LiveView) -> Value {
    let mut f = info_fields(v.id, &v.info);
    f.extend([
        ("elapsed_s", Value::num(v.elapsed.as_secs_f64())),
        ("tx_bytes", Value::Int(v.tx_bytes)),
        ("rx_bytes", Value::Int(v.rx_bytes)),
        ("tx_bps", Value::Num(v.tx_bps, 0)),
        ("rx_bps", Value::Num(v.rx_bps, 0)),
        ("cap_bps", v.info.cap_bps.map_or(Value::Null, Value::Int)),
        (
            "history",
            Value::List(
                v.history
                    .iter()
                    .map(|h| {
                        Value::Obj(vec![
                            ("t", Value::num(h.t)),
                            ("tx_bps", Value::Num(h.tx_bps, 0)),
                            ("rx_bps", Value::Num(h.rx_bps, 0)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]);
    Value::Obj(f)
}

fn ended(e: &Ended) -> Value {
    let mut f = info_fields(e.id, &e.info);
    f.extend([
        ("duration_s", Value::num(e.duration.as_secs_f64())),
        ("tx_bytes", Value::Int(e.tx_bytes)),
        ("rx_bytes", Value::Int(e.rx_bytes)),
        ("end_reason", Value::Str(e.end_reason.clone())),
    ]);
    Value::Obj(f)
}

/// `GET /api/sessions`.
pub fn sessions(reg: &Registry, now: SystemTime) -> String {
    let list = reg.live();
    Value::Obj(vec![
        ("now", Value::num(unix(now))),
        (
            "sessions",
            Value::List(list.iter().map(live_session).collect()),
        ),
    ])
    .json()
}

/// `GET /api/history`: ended sessions, newest first.
pub fn history(reg: &Registry) -> String {
    Value::Obj(vec![(
        "sessions",
        Value::List(reg.recent().iter().map(ended).collect()),
    )])
    .json()
}

/// One row of `GET /api/quotas`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaRow {
    /// `user:NAME`, `addr:IP` or `net:PREFIX`.
    pub key: String,
    /// `day`, `week`, `month`.
    pub window: &'static str,
    /// `up`, `down`, `total`.
    pub dir: &'static str,
    pub used: u64,
    pub limit: u64,
}

/// `GET /api/quotas`.
pub fn quotas(rows: &[QuotaRow]) -> String {
    Value::Obj(vec![(
        "quotas",
        Value::List(
            rows.iter()
                .map(|r| {
                    Value::Obj(vec![
                        ("key", Value::Str(r.key.clone())),
                        ("window", Value::Str(r.window.into())),
                        ("dir", Value::Str(r.dir.into())),
                        ("used", Value::Int(r.used)),
                        ("limit", Value::Int(r.limit)),
                    ])
                })
                .collect(),
        ),
    )])
    .json()
}

/// `GET /api/summary`.
pub fn summary(reg: &Registry, uptime_s: f64) -> String {
    let (tx, rx) = reg.totals();
    Value::Obj(vec![
        ("version", Value::Str(env!("CARGO_PKG_VERSION").into())),
        ("uptime_s", Value::num(uptime_s)),
        ("active_sessions", Value::Int(reg.live().len() as u64)),
        ("sessions_total", Value::Int(reg.started())),
        ("tx_bytes", Value::Int(tx)),
        ("rx_bytes", Value::Int(rx)),
    ])
    .json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn field_names_and_types_are_what_the_page_reads() {
        let reg = Registry::default();
        let s = reg.start(SessionInfo {
            peer: "[::1]:5000".parse().unwrap(),
            user: None,
            protocol: "tcp",
            direction: "both",
            connections: 4,
            started: UNIX_EPOCH + Duration::from_secs(1_733_100_000),
            cap_bps: Some(100_000_000),
        });
        s.add(1000, 2000);
        let j = sessions(&reg, UNIX_EPOCH + Duration::from_secs(1_733_100_010));
        assert!(
            j.starts_with(r#"{"now":1733100010,"sessions":[{"id":1,"peer":"[::1]:5000","user":null,"protocol":"tcp","direction":"both","connections":4,"started":1733100000,"elapsed_s":"#),
            "{j}"
        );
        assert!(
            j.contains(r#""tx_bytes":1000,"rx_bytes":2000,"tx_bps":0,"rx_bps":0,"cap_bps":100000000,"history":[]}]}"#),
            "{j}"
        );
        reg.end(&s, "quota");
        let h = history(&reg);
        assert!(
            h.contains(r#""end_reason":"quota""#) && h.contains(r#""duration_s":"#),
            "{h}"
        );
        assert_eq!(sessions(&reg, UNIX_EPOCH), r#"{"now":0,"sessions":[]}"#);
        let q = quotas(&[QuotaRow {
            key: "user:alice".into(),
            window: "day",
            dir: "total",
            used: 5,
            limit: 10,
        }]);
        assert_eq!(
            q,
            r#"{"quotas":[{"key":"user:alice","window":"day","dir":"total","used":5,"limit":10}]}"#
        );
        let sm = summary(&reg, 1.5);
        assert!(
            sm.contains(r#""uptime_s":1.500,"active_sessions":0,"sessions_total":1,"tx_bytes":1000,"rx_bytes":2000}"#),
            "{sm}"
        );
    }
}
