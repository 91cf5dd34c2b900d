//! `btest speed-test`'s records (`phase`, `speed_test`; record.rs owns their fields), its CSV
//! rows (one per phase and an `overall` row) and its text: a block per phase as it ends, then
//! the result (grade, RPM, rating, confidence, congestion control) and RouterOS'
//! `/tool speed-test` fields.
//!
//! Must not: compute a figure (speedtest/ does) or decide whether the test passed.

use std::io::{self, Write};

use crate::record::{array, field as F, object, Kind, Record, Value};
use crate::speedtest::figures::{self, Stats};
use crate::speedtest::{self as st, Collector, Overall, PhaseKind, PhaseResult, SpeedTestResult};
use crate::units::{format_rate, Fixed};

fn num(v: Option<f64>) -> Value {
    Value::opt_num(v.filter(|x| x.is_finite()))
}

/// The keys of a `latency` object, in order; the CSV's latency columns follow it.
const LATENCY_KEYS: [&str; 12] = [
    "count",
    "low_ms",
    "high_ms",
    "mean_ms",
    "iqm_ms",
    "jitter_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "trimmed95_ms",
    "sent",
    "lost",
];

/// A class's latency figures, in [`LATENCY_KEYS`] order.
fn latency_values(c: &Collector) -> [Value; 12] {
    let s = c.stats();
    let g = |f: fn(&Stats) -> f64| num(s.as_ref().map(f));
    [
        Value::Int(s.map_or(0, |s| s.count)),
        g(|s| s.low),
        g(|s| s.high),
        g(|s| s.mean),
        g(|s| s.iqm),
        g(|s| s.jitter),
        g(|s| s.p50),
        g(|s| s.p90),
        g(|s| s.p99),
        g(|s| s.trimmed95),
        Value::Int(c.sent),
        Value::Int(c.lost),
    ]
}

/// A class's `latency` object.
fn latency(c: &Collector) -> Value {
    let pairs: Vec<(&'static str, Value)> =
        LATENCY_KEYS.into_iter().zip(latency_values(c)).collect();
    object(&pairs)
}

/// The `owd` object of a phase, or null (see [`st::refit`]). The increases are of the means,
/// as `increase_ms` is.
fn owd(phases: &[PhaseResult], p: &PhaseResult) -> Value {
    let Some(o) = p.owd else {
        return Value::Null;
    };
    let idle = phases
        .iter()
        .find(|q| q.kind == PhaseKind::Idle)
        .and_then(|q| q.owd)
        .filter(|_| p.kind != PhaseKind::Idle);
    object(&[
        ("up_iqm_ms", Value::num(o.up_iqm_ms)),
        ("down_iqm_ms", Value::num(o.down_iqm_ms)),
        ("up_mean_ms", Value::num(o.up_mean_ms)),
        ("down_mean_ms", Value::num(o.down_mean_ms)),
        (
            "up_increase_ms",
            num(idle.map(|i| o.up_mean_ms - i.up_mean_ms)),
        ),
        (
            "down_increase_ms",
            num(idle.map(|i| o.down_mean_ms - i.down_mean_ms)),
        ),
    ])
}

/// The `phase` record of `p` (the last of `phases` or any of them).
pub fn phase_record(
    res_classes: &[(u8, String)],
    phases: &[PhaseResult],
    p: &PhaseResult,
) -> Record {
    let probed = !res_classes.is_empty();
    let classes = res_classes
        .iter()
        .zip(&p.classes)
        .enumerate()
        .map(|(i, ((d, name), c))| {
            object(&[
                ("dscp", Value::Int(u64::from(*d))),
                ("name", Value::Str(name.clone())),
                ("latency", latency(c)),
                ("increase_ms", num(st::increase(phases, p, i))),
            ])
        });
    let (rpm, _, _) = st::phase_rpm(p);
    Record::build(Kind::Phase, |b| {
        b.str(&F::PHASE, p.kind.as_str())
            .num(&F::START_S, p.start_s)
            .num(&F::DURATION_S, p.duration_s)
            .push(&F::RX_BPS, num(p.rx_bps))
            .push(&F::TX_BPS, num(p.tx_bps))
            .push(
                &F::LATENCY,
                match p.classes.first() {
                    Some(c) if probed => latency(c),
                    _ => Value::Null,
                },
            )
            .push(&F::INCREASE_MS, num(st::increase(phases, p, 0)))
            .push(&F::OWD, owd(phases, p))
            .push(&F::CLASSES, array(classes))
            .push(&F::TCP_RTT_MS, num(p.tcp_rtt_ms))
            .push(&F::LOCAL_CPU, num(p.local_cpu))
            .push(&F::REMOTE_CPU, num(p.remote_cpu))
            .push(&F::RPM, num(rpm))
            .num(&F::PROBE_INTERVAL_MS, p.probe_interval_ms);
    })
}

/// RouterOS' fields from the idle phase and the load phases.
struct RouterOs {
    ping: Option<String>,
    jitter: Option<String>,
    loss: Option<String>,
    /// tcp-download, tcp-upload, udp-download, udp-upload
    rates: [Option<String>; 4],
}

fn routeros(res: &SpeedTestResult) -> RouterOs {
    let idle = res
        .phases
        .iter()
        .find(|p| p.kind == PhaseKind::Idle)
        .and_then(|p| p.classes.first())
        .filter(|_| res.method.is_some());
    let ping = idle
        .and_then(Collector::stats)
        .map(|s| figures::min_avg_max(s.low, s.mean, s.high));
    let jitter = idle
        .and_then(|c| figures::jitter_min_avg_max(&c.rtts))
        .map(|(a, b, c)| figures::min_avg_max(a, b, c));
    let loss = idle.map(|c| figures::loss_text(c.sent, c.lost));
    let udp = res.protocol == crate::wire::Protocol::Udp;
    let mut rates: [Option<String>; 4] = Default::default();
    for p in &res.phases {
        let (slot, bps) = match p.kind {
            PhaseKind::Download => (usize::from(udp) * 2, p.rx_bps),
            PhaseKind::Upload => (usize::from(udp) * 2 + 1, p.tx_bps),
            _ => continue,
        };
        rates[slot] = bps.map(|b| figures::rate_text(b, p.local_cpu, p.remote_cpu));
    }
    RouterOs {
        ping,
        jitter,
        loss,
        rates,
    }
}

/// The `speed_test` record.
pub fn speed_test_record(res: &SpeedTestResult, o: &Overall) -> Record {
    let ros = routeros(res);
    let s = |v: &Option<String>| Value::opt_str(v.as_deref());
    let mut notes: Vec<Value> = res.notes.iter().map(|n| Value::Str(n.clone())).collect();
    if res.method.is_some() && res.phases.iter().all(|p| p.owd.is_none()) {
        notes.push(Value::Str(st::OWD_NOTE.into()));
    }
    Record::build(Kind::SpeedTest, |b| {
        b.str(&F::TIMESTAMP, &crate::export::csv::rfc3339_utc(res.started))
            .str(&F::SERVER, &res.server)
            .str(&F::PROTOCOL, res.protocol.as_str())
            .int(&F::CONNECTIONS, u64::from(res.connections))
            .push(&F::GRADE, Value::opt_str(o.grade))
            .push(&F::GRADE_INCREASE_MS, num(o.grade_increase_ms))
            .push(&F::RPM, num(o.rpm))
            .push(&F::RPM_FOREIGN, num(o.rpm_foreign))
            .push(&F::RPM_SELF, num(o.rpm_self))
            .push(&F::RATING, Value::opt_str(o.rating.map(|r| r.as_str())))
            .str(&F::CONFIDENCE, o.confidence.as_str())
            .push(&F::CONGESTION, s(&res.congestion))
            .push(&F::DOWNLOAD_BPS, num(o.download_bps))
            .push(&F::UPLOAD_BPS, num(o.upload_bps))
            .push(&F::PING_MIN_AVG_MAX, s(&ros.ping))
            .push(&F::JITTER_MIN_AVG_MAX, s(&ros.jitter))
            .push(&F::LOSS, s(&ros.loss))
            .push(&F::TCP_DOWNLOAD, s(&ros.rates[0]))
            .push(&F::TCP_UPLOAD, s(&ros.rates[1]))
            .push(&F::UDP_DOWNLOAD, s(&ros.rates[2]))
            .push(&F::UDP_UPLOAD, s(&ros.rates[3]))
            .push(&F::RTT_METHOD, Value::opt_str(res.method))
            .num(&F::PROBE_INTERVAL_MS, res.probe_interval_ms)
            .push(&F::NOTES, Value::List(notes));
    })
}

/// The CSV columns: one row per phase, then an `overall` row.
pub const CSV_HEADER: &[&str] = &[
    "timestamp",
    "server",
    "row",
    "rx_bps",
    "tx_bps",
    "latency_count",
    "low_ms",
    "high_ms",
    "mean_ms",
    "iqm_ms",
    "jitter_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "trimmed95_ms",
    "sent",
    "lost",
    "increase_ms",
    "tcp_rtt_ms",
    "local_cpu",
    "remote_cpu",
    "rpm",
    "grade",
    "rating",
    "confidence",
    "congestion",
];

/// The CSV rows of a finished speed test, in [`CSV_HEADER`] order.
pub fn csv_rows(res: &SpeedTestResult, o: &Overall) -> Vec<Vec<String>> {
    let ts = crate::export::csv::rfc3339_utc(res.started);
    let cell = |v: Value| v.plain();
    let mut rows = Vec::new();
    for p in &res.phases {
        let r = phase_record(&res.classes, &res.phases, p);
        let mut row = vec![
            ts.clone(),
            crate::text::csv_text(&res.server).into_owned(),
            p.kind.as_str().to_string(),
            cell(num(p.rx_bps)),
            cell(num(p.tx_bps)),
        ];
        match (matches!(r.get(&F::LATENCY), Value::Null), p.classes.first()) {
            (false, Some(c)) => row.extend(latency_values(c).iter().map(Value::plain)),
            _ => row.extend(LATENCY_KEYS.iter().map(|_| String::new())),
        }
        row.extend([
            r.get(&F::INCREASE_MS).plain(),
            r.get(&F::TCP_RTT_MS).plain(),
            r.get(&F::LOCAL_CPU).plain(),
            r.get(&F::REMOTE_CPU).plain(),
            r.get(&F::RPM).plain(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        rows.push(row);
    }
    let mut row = vec![
        ts,
        crate::text::csv_text(&res.server).into_owned(),
        "overall".into(),
        cell(num(o.download_bps)),
        cell(num(o.upload_bps)),
    ];
    row.extend(LATENCY_KEYS.iter().map(|_| String::new()));
    row.extend([
        cell(num(o.grade_increase_ms)),
        String::new(),
        String::new(),
        String::new(),
        cell(num(o.rpm)),
        o.grade.unwrap_or_default().to_string(),
        o.rating.map_or("", |r| r.as_str()).to_string(),
        o.confidence.as_str().to_string(),
        res.congestion.clone().unwrap_or_default(),
    ]);
    rows.push(row);
    rows
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{}", Fixed(v, 2))
    } else if v < 100.0 {
        format!("{}", Fixed(v, 1))
    } else {
        format!("{}", Fixed(v, 0))
    }
}

fn signed_ms(v: f64) -> String {
    let s = ms(v.abs());
    if v < 0.0 && s.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        format!("-{s}")
    } else {
        format!("+{s}")
    }
}

/// The header line before the first phase.
pub fn head(out: &mut impl Write, cfg: &st::SpeedTestConfig) -> io::Result<()> {
    let phases: Vec<&str> = cfg.phases.iter().map(|p| p.as_str()).collect();
    writeln!(
        out,
        "speed-test {}:{}: {}, {} connection(s) per load phase, phases {} (idle {:?}, load {:?}, \
         cooldown {:?})",
        cfg.client.host,
        cfg.client.port,
        cfg.client.protocol.as_str(),
        cfg.client.connection_count,
        phases.join(","),
        cfg.idle,
        cfg.phase,
        cfg.cooldown
    )
}

fn latency_line(c: &Collector) -> String {
    match c.stats() {
        Some(s) => format!(
            "iqm {} low {} high {} mean {} jitter {} p50 {} p90 {} p99 {} tm95 {} ms, lost {}/{}",
            ms(s.iqm),
            ms(s.low),
            ms(s.high),
            ms(s.mean),
            ms(s.jitter),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.trimmed95),
            c.lost,
            c.sent
        ),
        None => format!("no replies, lost {}/{}", c.lost, c.sent),
    }
}

/// The lines of a phase that just ended (the last of `phases`).
pub fn phase_text(
    out: &mut impl Write,
    classes: &[(u8, String)],
    phases: &[PhaseResult],
) -> io::Result<()> {
    let Some(p) = phases.last() else {
        return Ok(());
    };
    let mut head = format!("{:<14}", p.kind.as_str());
    if let Some(b) = p.rx_bps {
        head += &format!(" down {}", format_rate(b));
    }
    if let Some(b) = p.tx_bps {
        head += &format!(" up {}", format_rate(b));
    }
    if let Some(t) = p.tcp_rtt_ms {
        head += &format!("  tcp rtt {} ms", ms(t));
    }
    if p.local_cpu.is_some() || p.remote_cpu.is_some() {
        let c = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}%"));
        head += &format!("  cpu {}/{}", c(p.local_cpu), c(p.remote_cpu));
    }
    writeln!(out, "{}", head.trim_end())?;
    for (i, ((_, name), c)) in classes.iter().zip(&p.classes).enumerate() {
        let inc = st::increase(phases, p, i)
            .map_or(String::new(), |v| format!(" ({} over idle)", signed_ms(v)));
        let label = if classes.len() > 1 {
            format!("latency {name}")
        } else {
            "latency".into()
        };
        writeln!(out, "  {label:<12}{}{inc}", latency_line(c))?;
    }
    if let Some(o) = p.owd {
        writeln!(
            out,
            "  one-way     up {} ms, down {} ms (IQM)",
            ms(o.up_iqm_ms),
            ms(o.down_iqm_ms)
        )?;
    }
    Ok(())
}

/// The result block and RouterOS' fields.
/// Which way each load phase's latency increase went: the mean one-way delay of each
/// direction over idle's (the final fit, cooldown included), so a bloated uplink is told from
/// a bloated downlink at a glance.
fn one_way_increases(out: &mut impl Write, phases: &[PhaseResult]) -> io::Result<()> {
    let Some(idle) = phases
        .iter()
        .find(|p| p.kind == PhaseKind::Idle)
        .and_then(|p| p.owd)
    else {
        return Ok(());
    };
    let parts: Vec<String> = phases
        .iter()
        .filter(|p| p.kind.direction().is_some())
        .filter_map(|p| {
            let o = p.owd?;
            Some(format!(
                "{} up {} down {}",
                p.kind.as_str(),
                signed_ms(o.up_mean_ms - idle.up_mean_ms),
                signed_ms(o.down_mean_ms - idle.down_mean_ms)
            ))
        })
        .collect();
    if !parts.is_empty() {
        writeln!(out, "  one-way increase   {} ms", parts.join("; "))?;
    }
    Ok(())
}

pub fn result_text(out: &mut impl Write, res: &SpeedTestResult, o: &Overall) -> io::Result<()> {
    writeln!(out, "\nresult")?;
    match (o.grade, o.grade_increase_ms) {
        (Some(g), Some(i)) => writeln!(
            out,
            "  bufferbloat grade  {g}  (mean latency increase under load {} ms)",
            signed_ms(i)
        )?,
        _ => writeln!(
            out,
            "  bufferbloat grade  -  (needs idle and loaded latency)"
        )?,
    }
    match (o.rpm, o.rating) {
        (Some(r), Some(rt)) => {
            let part = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
            writeln!(
                out,
                "  responsiveness     {r:.0} RPM, {} (confidence {}; foreign {}, self {})",
                rt.as_str(),
                o.confidence.as_str(),
                part(o.rpm_foreign),
                part(o.rpm_self)
            )?
        }
        _ => writeln!(out, "  responsiveness     - (no round-trip times)")?,
    }
    if let Some(c) = &res.congestion {
        writeln!(
            out,
            "  congestion control {c} (our sending; the download's is the server's choice)"
        )?;
    }
    if let Some(d) = o.download_bps {
        writeln!(out, "  download           {}", format_rate(d))?;
    }
    if let Some(u) = o.upload_bps {
        writeln!(out, "  upload             {}", format_rate(u))?;
    }
    if res.method.is_some() {
        writeln!(
            out,
            "  probes             {} every {} ms{}",
            res.method.unwrap_or("-"),
            Fixed(res.probe_interval_ms, 1),
            if res.classes.len() > 1 {
                let n: Vec<&str> = res.classes.iter().map(|(_, n)| n.as_str()).collect();
                format!(", classes {}", n.join(","))
            } else {
                String::new()
            }
        )?;
        if res.phases.iter().all(|p| p.owd.is_none()) {
            writeln!(out, "  one-way delay      not measured: {}", st::OWD_NOTE)?;
        } else {
            one_way_increases(out, &res.phases)?;
        }
    }
    for n in &res.notes {
        writeln!(out, "  note: {n}")?;
    }
    let ros = routeros(res);
    writeln!(out, "\nRouterOS speed-test fields")?;
    let rows = [
        ("ping-min-avg-max", ros.ping.map(|v| format!("{v} ms"))),
        ("jitter-min-avg-max", ros.jitter.map(|v| format!("{v} ms"))),
        ("loss", ros.loss),
        ("tcp-download", ros.rates[0].clone()),
        ("tcp-upload", ros.rates[1].clone()),
        ("udp-download", ros.rates[2].clone()),
        ("udp-upload", ros.rates[3].clone()),
    ];
    for (k, v) in rows {
        if let Some(v) = v {
            writeln!(out, "  {k}: {v}")?;
        }
    }
    Ok(())
}
