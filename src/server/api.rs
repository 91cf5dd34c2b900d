//! The JSON the HTTP API serves (`--http`): live sessions with per-second rates, recent
//! history, quota usage and a summary, built from the live registry (live.rs) as
//! [`Value`]s. docs/http.md documents every field.
//!
//! Must not: do I/O or hold a lock while rendering (it works on copies).

use std::time::{SystemTime, UNIX_EPOCH};

use super::accounting::QuotaRow;
use super::live::{Ended, LiveView, RateSample, Registry, SessionInfo, Sums};
use crate::record::Value;

fn opt(v: Option<f64>, decimals: u8) -> Value {
    v.filter(|x| x.is_finite())
        .map_or(Value::Null, |x| Value::Num(x, decimals))
}

fn cpu(v: Option<u8>) -> Value {
    v.map_or(Value::Null, |c| Value::Int(c.into()))
}

/// One per-second sample: rates, the sample's loss (UDP), RTT (TCP) and CPU.
fn sample(h: &RateSample) -> Value {
    let all = u64::from(h.rx_packets) + u64::from(h.lost);
    Value::Obj(vec![
        ("t", Value::num(h.t.into())),
        ("tx_bps", Value::Num(h.tx_bps.into(), 0)),
        ("rx_bps", Value::Num(h.rx_bps.into(), 0)),
        ("lost", Value::Int(h.lost.into())),
        (
            "loss_pct",
            opt((all > 0).then(|| f64::from(h.lost) * 100.0 / all as f64), 2),
        ),
        (
            "rtt_ms",
            opt((h.rtt_us > 0).then(|| f64::from(h.rtt_us) / 1000.0), 3),
        ),
        ("local_cpu", cpu(h.local_cpu)),
        ("remote_cpu", cpu(h.remote_cpu)),
    ])
}

/// The session's totals and averages.
fn sums(s: &Sums) -> [(&'static str, Value); 5] {
    [
        ("lost", Value::Int(s.lost)),
        ("loss_pct", opt(s.loss_pct(), 2)),
        ("rtt_ms_avg", opt(s.rtt_ms_avg(), 3)),
        ("local_cpu_avg", opt(s.local_cpu_avg(), 1)),
        ("remote_cpu_avg", opt(s.remote_cpu_avg(), 1)),
    ]
}

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
        (
            "tx_bps",
            Value::Num(v.now.map_or(0.0, |n| n.tx_bps.into()), 0),
        ),
        (
            "rx_bps",
            Value::Num(v.now.map_or(0.0, |n| n.rx_bps.into()), 0),
        ),
        ("cap_bps", v.info.cap_bps.map_or(Value::Null, Value::Int)),
        ("now", v.now.as_ref().map_or(Value::Null, sample)),
    ]);
    f.extend(sums(&v.sums));
    f.push((
        "history",
        Value::List(v.history.iter().map(sample).collect()),
    ));
    Value::Obj(f)
}

fn ended(e: &Ended) -> Value {
    let mut f = info_fields(e.id, &e.info);
    f.extend([
        ("duration_s", Value::num(e.duration.as_secs_f64())),
        ("tx_bytes", Value::Int(e.tx_bytes)),
        ("rx_bytes", Value::Int(e.rx_bytes)),
        ("tx_avg_bps", Value::Num(e.avg_bps(e.tx_bytes), 0)),
        ("rx_avg_bps", Value::Num(e.avg_bps(e.rx_bytes), 0)),
    ]);
    f.extend(sums(&e.sums));
    f.push(("end_reason", Value::Str(e.end_reason.clone())));
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
        (
            "history",
            Value::List(
                reg.aggregate()
                    .iter()
                    .map(|&(t, tx, rx)| {
                        Value::Obj(vec![
                            ("t", Value::num(unix(t))),
                            ("tx_bps", Value::Num(tx.into(), 0)),
                            ("rx_bps", Value::Num(rx.into(), 0)),
                        ])
                    })
                    .collect(),
            ),
        ),
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
        s.add(&crate::engine::Take {
            tx_bytes: 1000,
            rx_bytes: 2000,
            ..Default::default()
        });
        let j = sessions(&reg, UNIX_EPOCH + Duration::from_secs(1_733_100_010));
        assert!(
            j.starts_with(r#"{"now":1733100010,"sessions":[{"id":1,"peer":"[::1]:5000","user":null,"protocol":"tcp","direction":"both","connections":4,"started":1733100000,"elapsed_s":"#),
            "{j}"
        );
        assert!(
            j.contains(r#""tx_bytes":1000,"rx_bytes":2000,"tx_bps":0,"rx_bps":0,"cap_bps":100000000,"now":null,"lost":0,"loss_pct":null,"rtt_ms_avg":null,"local_cpu_avg":null,"remote_cpu_avg":null,"history":[]}]}"#),
            "{j}"
        );
        reg.end(&s, "quota");
        let h = history(&reg);
        assert!(
            h.contains(r#""end_reason":"quota""#)
                && h.contains(r#""duration_s":"#)
                && h.contains(r#""tx_avg_bps":"#),
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
            sm.contains(r#""uptime_s":1.500,"active_sessions":0,"sessions_total":1,"tx_bytes":1000,"rx_bytes":2000,"history":[]}"#),
            "{sm}"
        );
        let one = RateSample {
            t: 3.0,
            tx_bps: 1e6,
            rx_bps: 0.0,
            rx_packets: 99,
            lost: 1,
            rtt_us: 1250,
            local_cpu: Some(7),
            remote_cpu: None,
        };
        assert_eq!(
            sample(&one).json(),
            r#"{"t":3,"tx_bps":1000000,"rx_bps":0,"lost":1,"loss_pct":1,"rtt_ms":1.250,"local_cpu":7,"remote_cpu":null}"#
        );
    }
}
