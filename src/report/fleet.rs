//! The fleet's text for people: the progress lines on stderr and the results matrix on
//! stdout, from each target's `target` record. Must not: run tests or decide retries
//! (fleet.rs does).

use std::io::{self, Write};

use crate::config::FleetConfig;
use crate::record::{field as F, Field, Record, Value};
use crate::units::format_rate;

/// The line that opens a fleet run (stderr): how many targets, how many at a time, retries.
pub fn start_line(fc: &FleetConfig, n: usize) -> String {
    format!(
        "btest fleet: {n} target(s) from {}, {} at a time, {} retr{} each",
        fc.file.display(),
        fc.parallel.min(n),
        fc.retries,
        if fc.retries == 1 { "y" } else { "ies" }
    )
}

/// The line of a failed attempt that will be retried (stderr).
pub fn retry_line(fc: &FleetConfig, name: &str, attempt: u32, error: &str) -> String {
    format!(
        "btest fleet: {name} attempt {attempt} failed: {error}; retrying in {:?}",
        fc.retry_delay
    )
}

/// The line of a finished target (stderr): its rates and latency, or why it failed.
/// `finished` of `n` targets are done.
pub fn done_line(finished: usize, n: usize, name: &str, r: &Record, ok: bool) -> String {
    if !ok {
        return format!(
            "btest fleet: [{finished}/{n}] {name} FAILED after {} attempt(s): {}",
            r.text(&F::ATTEMPTS),
            r.text(&F::ERROR)
        );
    }
    let rate = |k: &Field| r.get(k).as_f64().map_or("-".to_string(), format_rate);
    let ms = |k: &Field| r.get(k).as_f64().map_or("-".into(), |v| format!("{v:.1}"));
    format!(
        "btest fleet: [{finished}/{n}] {name} ok: up {} down {} rtt idle {} loaded {} ms",
        rate(&F::UP_BPS),
        rate(&F::DOWN_BPS),
        ms(&F::IDLE_RTT_MS),
        ms(&F::LOADED_RTT_MS)
    )
}

/// The fleet's results matrix as text: one line per `target` record and whether it passed.
pub fn matrix(out: &mut impl Write, rows: &[(&Record, bool)]) -> io::Result<()> {
    let w = rows
        .iter()
        .map(|d| d.0.text(&F::NAME).len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<w$}  {:<6} {:>11} {:>11} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9}  error",
        "name",
        "result",
        "up",
        "down",
        "loss-up",
        "loss-dn",
        "rtt-idle",
        "rtt-load",
        "bloat",
        "cpu l/r"
    )?;
    for &(r, ok) in rows {
        let rate = |k: &Field| r.get(k).as_f64().map_or("-".into(), format_rate);
        let f = |k: &Field, dp: usize| {
            r.get(k)
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.dp$}"))
        };
        writeln!(
            out,
            "{:<w$}  {:<6} {:>11} {:>11} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9}  {}",
            r.text(&F::NAME),
            if ok { "ok" } else { "FAILED" },
            rate(&F::UP_BPS),
            rate(&F::DOWN_BPS),
            f(&F::UP_LOSS_PCT, 2),
            f(&F::DOWN_LOSS_PCT, 2),
            f(&F::IDLE_RTT_MS, 2),
            f(&F::LOADED_RTT_MS, 2),
            f(&F::BUFFERBLOAT_MS, 2),
            format!("{}/{}", f(&F::LOCAL_CPU_AVG, 0), f(&F::REMOTE_CPU_AVG, 0)),
            match r.get(&F::ERROR) {
                Value::Str(e) => e.as_str(),
                _ => "",
            }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Kind;

    fn target(name: &str, ok: bool, up: Value, err: Value) -> Record {
        Record::build(Kind::Target, |b| {
            b.str(&F::TIMESTAMP, "2026-01-01T00:00:00Z")
                .str(&F::NAME, name)
                .str(&F::SERVER, "h:2000")
                .push(&F::OK, Value::Bool(ok))
                .int(&F::ATTEMPTS, 1)
                .str(&F::PROTOCOL, "udp")
                .str(&F::DIRECTION, "both")
                .push(&F::DURATION_S, Value::num(10.0))
                .push(&F::UP_BPS, up)
                .push(&F::DOWN_BPS, Value::num(4.2e9))
                .push(&F::UP_LOSS_PCT, Value::Num(34.609, 3))
                .push(&F::DOWN_LOSS_PCT, Value::Num(0.0, 3))
                .int(&F::LOST_PACKETS, 0)
                .push(&F::IDLE_RTT_MS, Value::Num(0.25, 3))
                .push(&F::LOADED_RTT_MS, Value::Num(12.5, 3))
                .push(&F::BUFFERBLOAT_MS, Value::Num(12.25, 3))
                .push(&F::TCP_RTT_MS, Value::Null)
                .push(&F::LOCAL_CPU_AVG, Value::Num(12.0, 1))
                .push(&F::REMOTE_CPU_AVG, Value::Null)
                .str(&F::END_REASON, "completed")
                .push(&F::ERROR, err)
                .push(&F::PHASE, Value::Null);
            // A plain test's speed-test fields (issue 22).
            #[cfg(feature = "speedtest")]
            for f in [&F::GRADE, &F::RPM, &F::RATING, &F::CONFIDENCE] {
                b.push(f, Value::Null);
            }
        })
    }

    /// Golden: the fleet matrix.
    #[test]
    fn golden_fleet_matrix() {
        let a = target("edge-1", true, Value::num(97.5e6), Value::Null);
        let b = target(
            "core",
            false,
            Value::Null,
            Value::Str("connect: refused".into()),
        );
        let mut out = Vec::new();
        matrix(&mut out, &[(&a, true), (&b, false)]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name    result          up        down loss-up loss-dn rtt-idle rtt-load    bloat   cpu l/r  error\n\
             edge-1  ok       97.5 Mbps   4.20 Gbps   34.61    0.00     0.25    12.50    12.25      12/-  \n\
             core    FAILED           -   4.20 Gbps   34.61    0.00     0.25    12.50    12.25      12/-  connect: refused\n"
        );
    }

    /// Golden: the progress lines on stderr.
    #[test]
    fn golden_progress_lines() {
        let fc = FleetConfig {
            file: "sites.txt".into(),
            parallel: 8,
            retries: 1,
            retry_delay: std::time::Duration::from_secs(5),
            output: crate::config::Output::Text,
            csv: None,
            ndjson: None,
            report: None,
            speed_test: false,
        };
        assert_eq!(
            start_line(&fc, 3),
            "btest fleet: 3 target(s) from sites.txt, 3 at a time, 1 retry each"
        );
        assert_eq!(
            retry_line(&fc, "core", 1, "connect: refused"),
            "btest fleet: core attempt 1 failed: connect: refused; retrying in 5s"
        );
        let a = target("edge-1", true, Value::num(97.5e6), Value::Null);
        assert_eq!(
            done_line(1, 3, "edge-1", &a, true),
            "btest fleet: [1/3] edge-1 ok: up 97.5 Mbps down 4.20 Gbps rtt idle 0.2 loaded 12.5 ms"
        );
        let b = target(
            "core",
            false,
            Value::Null,
            Value::Str("connect: refused".into()),
        );
        assert_eq!(
            done_line(2, 3, "core", &b, false),
            "btest fleet: [2/3] core FAILED after 1 attempt(s): connect: refused"
        );
    }
}
