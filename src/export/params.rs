//! The parameters an HTML report shows (what the test was: server, protocol, rates,
//! duration...), from the configuration, in the order a reader looks for them; and the
//! [`TestReport`] of one test. Moved out of main.rs (issue 20: main.rs keeps process
//! concerns only). Must not: render HTML (html.rs does) or write files (main.rs does).

use crate::config::ClientConfig;
use crate::export::html::TestReport;
use crate::record::Record;
use crate::run::TestRun;

/// The parameters a report shows, in the order a reader looks for them.
pub fn test_params(cfg: &ClientConfig) -> Vec<(String, String)> {
    use crate::units::format_rate;
    let rate = |r: u64| {
        if r == 0 {
            "unlimited".to_string()
        } else {
            format_rate(r as f64)
        }
    };
    let mut p = vec![
        ("server", format!("{}:{}", cfg.host, cfg.port)),
        ("protocol", cfg.protocol.as_str().to_string()),
        ("direction", cfg.direction.client_word().to_string()),
        ("connections", cfg.connection_count.to_string()),
        ("local tx speed", rate(cfg.local_tx_speed)),
        ("remote tx speed", rate(u64::from(cfg.remote_tx_speed))),
        (
            "duration",
            cfg.duration
                .map_or("until interrupted".into(), |d| format!("{:?}", d)),
        ),
        ("interval", format!("{:?}", cfg.interval)),
        (
            "latency probe",
            format!("{} (idle {:?})", cfg.latency.as_str(), cfg.latency_idle),
        ),
    ];
    if cfg.protocol == crate::wire::Protocol::Udp {
        p.push(("local UDP size", format!("{} B", cfg.local_udp_tx_size)));
        p.push(("remote UDP size", format!("{} B", cfg.remote_udp_tx_size)));
    }
    if let Some(b) = cfg.bind {
        p.push(("bind", b.to_string()));
    }
    if let Some(d) = &cfg.device {
        p.push(("device", d.clone()));
    }
    if let Some(t) = cfg.tos {
        p.push(("tos", t.to_string()));
    }
    if let Some(u) = &cfg.user {
        p.push(("user", u.clone()));
    }
    p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The HTML report of one test; `params` replaces the client's (a through test's).
pub fn test_html(
    cfg: &ClientConfig,
    run: &TestRun,
    params: Option<Vec<(String, String)>>,
) -> String {
    let err = run.error_record();
    let mut t = test_report(cfg, run, err.as_ref());
    if let Some(p) = params {
        t.params = p;
    }
    crate::export::html::render_test(&t)
}

/// The report of one test: its parameters, intervals, summary and error.
pub fn test_report<'a>(
    cfg: &ClientConfig,
    run: &'a TestRun,
    error: Option<&'a Record>,
) -> TestReport<'a> {
    TestReport {
        title: format!(
            "btest {} {} to {}",
            cfg.protocol.as_str(),
            cfg.direction.client_word(),
            run.server
        ),
        generated: crate::export::csv::rfc3339_utc(std::time::SystemTime::now()),
        params: test_params(cfg),
        intervals: &run.intervals,
        summary: run.summary.as_ref(),
        error,
    }
}

/// The report's parameters of a through test: the client's, and where each side ran.
#[cfg(feature = "through")]
pub fn through_params(cfg: &crate::config::ThroughConfig) -> Vec<(String, String)> {
    let mut params = test_params(&cfg.client);
    params.retain(|(k, _)| k != "user");
    let side = |ns: &Option<std::path::PathBuf>, dev: &Option<String>| {
        let mut v = Vec::new();
        if let Some(n) = ns {
            v.push(format!("netns {}", n.display()));
        }
        if let Some(d) = dev {
            v.push(format!("dev {d}"));
        }
        if v.is_empty() {
            "this host".to_string()
        } else {
            v.join(", ")
        }
    };
    params.insert(0, ("mode".into(), "through the device".into()));
    params.push((
        "server side".into(),
        side(&cfg.server_netns, &cfg.server.device),
    ));
    params.push((
        "client side".into(),
        side(&cfg.client_netns, &cfg.client.device),
    ));
    params
}

/// The parameters of a fleet report: the targets file and how the run was paced.
#[cfg(feature = "fleet")]
pub fn fleet_params(fc: &crate::config::FleetConfig, n: usize) -> Vec<(String, String)> {
    vec![
        ("targets file".to_string(), fc.file.display().to_string()),
        ("targets".to_string(), n.to_string()),
        ("parallel".to_string(), fc.parallel.to_string()),
        ("retries".to_string(), fc.retries.to_string()),
        ("retry delay".to_string(), format!("{:?}", fc.retry_delay)),
    ]
}

/// The HTML report of a fleet run: every target's record and its test.
#[cfg(feature = "fleet")]
pub fn fleet_html(
    fc: &crate::config::FleetConfig,
    targets: &[crate::fleet::Target],
    done: &[crate::fleet::Done],
) -> String {
    use crate::export::html::{render_fleet, FleetEntry};
    let errors: Vec<Option<Record>> = done.iter().map(|d| d.run.error_record()).collect();
    let entries: Vec<FleetEntry> = done
        .iter()
        .zip(&errors)
        .map(|(d, e)| FleetEntry {
            target: &d.record,
            test: test_report(&targets[d.index].cfg, &d.run, e.as_ref()),
        })
        .collect();
    render_fleet(
        &format!("btest fleet: {}", fc.file.display()),
        &crate::export::csv::rfc3339_utc(std::time::SystemTime::now()),
        &fleet_params(fc, targets.len()),
        &entries,
    )
}

/// The HTML report of a speed test (issue 22): its parameters, the phases on one timeline.
#[cfg(feature = "speedtest")]
pub fn speed_test_html(
    cfg: &crate::speedtest::SpeedTestConfig,
    res: &crate::speedtest::SpeedTestResult,
    overall: &crate::speedtest::Overall,
) -> String {
    use crate::record::field as F;
    use crate::report::speedtest as rs;
    let phases: Vec<Record> = res
        .phases
        .iter()
        .map(|p| rs::phase_record(&res.classes, &res.phases, p))
        .collect();
    let result = rs::speed_test_record(res, overall);
    let err = res.outcome.as_ref().err().map(crate::report::error_record);
    let (mut rx, mut tx, mut latency) = (Vec::new(), Vec::new(), Vec::new());
    for p in &res.phases {
        // Each direction's line is 0 outside the phases that load it (it is: nothing moves),
        // so it does not run straight across an upload from the download to the next one.
        let end = p.start_s + p.duration_s;
        if p.rx_bps.is_some() {
            rx.push((p.start_s, 0.0));
        }
        if p.tx_bps.is_some() {
            tx.push((p.start_s, 0.0));
        }
        for iv in &p.intervals {
            // The session started after its handshake, about when the phase did.
            let t = p.start_s + iv.f64(&F::ELAPSED_S);
            if p.rx_bps.is_some() {
                rx.push((t, iv.f64(&F::RX_CURRENT_BPS)));
            }
            if p.tx_bps.is_some() {
                tx.push((t, iv.f64(&F::TX_CURRENT_BPS)));
            }
        }
        if p.rx_bps.is_some() {
            rx.push((end, 0.0));
        }
        if p.tx_bps.is_some() {
            tx.push((end, 0.0));
        }
        latency.extend(p.lat_points.iter().copied());
    }
    let mut params = test_params(&cfg.client);
    params.retain(|(k, _)| !matches!(k.as_str(), "direction" | "duration" | "interval"));
    let phases_s: Vec<&str> = cfg.phases.iter().map(|p| p.as_str()).collect();
    params.push(("phases".into(), phases_s.join(", ")));
    if let Some(c) = &cfg.client.congestion {
        params.push(("congestion".into(), c.clone()));
    }
    params.push((
        "lengths".into(),
        format!(
            "idle {:?}, load {:?}, cooldown {:?}",
            cfg.idle, cfg.phase, cfg.cooldown
        ),
    ));
    let classes: Vec<String> = res
        .classes
        .iter()
        .map(|(d, n)| format!("{n} (DSCP {d})"))
        .collect();
    params.push(("probe classes".into(), classes.join(", ")));
    crate::export::html::render_speed_test(&crate::export::html::SpeedTestReport {
        title: format!("btest speed-test to {}", res.server),
        generated: crate::export::csv::rfc3339_utc(std::time::SystemTime::now()),
        params,
        bands: res
            .phases
            .iter()
            .map(|p| (p.kind.as_str(), p.start_s, p.start_s + p.duration_s))
            .collect(),
        rx,
        tx,
        latency,
        phases: &phases,
        result: &result,
        error: err.as_ref(),
    })
}
