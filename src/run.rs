//! One client test from start to verdict, as records: the latency probe's idle second, the
//! session (client.rs), every interval with what the probe saw in it, the summary and the
//! verdict. A plain test, the through-the-router mode and each fleet target all run here, so
//! they report alike.
//!
//! Output goes only through the [`ClientReporter`] it is handed (text, JSON, or a sink for a
//! fleet). Must not: parse command lines, write the HTML report or CSV (callers do, from the
//! [`TestRun`]), or decide whether a test succeeded (client.rs does).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::client::{self, ClientResult};
use crate::config::{ClientConfig, Latency};
use crate::engine::{Stop, StopReason};
use crate::error::{Error, Result};
use crate::probe::{self, stats, Probe, ProbeConfig};
use crate::record::Record;
use crate::report::{self, ClientReporter, IntervalRtt, LatencySummary, Rtt};

/// Where a test's reporter writes: stdout, or nowhere (a fleet's targets). One concrete type
/// for every caller, so the reporter and this module are compiled once, and not a
/// `Box<dyn Write>`, whose vtable would pull in every `Stdout` method: the router image's
/// 1 MiB budget counts each copy (docs/bench.md).
pub struct Out(Option<std::io::Stdout>);

impl Out {
    /// Writes to stdout.
    pub fn stdout() -> Out {
        Out(Some(std::io::stdout()))
    }

    /// Discards everything.
    pub fn sink() -> Out {
        Out(None)
    }
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(s) => s.write(b),
            None => Ok(b.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

/// What one test produced.
#[derive(Debug)]
pub struct TestRun {
    /// When it started (before the idle probe).
    pub started: SystemTime,
    /// `host:port` as given.
    pub server: String,
    /// The `start` record.
    pub start: Record,
    /// One `interval` record per report interval, kept only when something reads them
    /// afterwards (`--report`; see [`TestRun::keep_intervals`]). Empty otherwise.
    pub intervals: Vec<Record>,
    /// Intervals reported, kept or not.
    pub intervals_seen: u64,
    /// Keep the interval records in [`TestRun::intervals`]? Issue 18: each is ~2.3 KB, and a
    /// `--duration 0` test at `--interval 20ms` made 50 a second for nothing when no report
    /// was asked for (the text, JSON, CSV and syslog outputs are written as they go).
    pub keep_intervals: bool,
    /// The `summary` record, when the data phase ran.
    pub summary: Option<Record>,
    /// The client's result, when the data phase ran.
    pub result: Option<ClientResult>,
    /// The verdict: `Ok` for a test that counts.
    pub outcome: Result<()>,
}

/// The `start` record of a test of `cfg` (for a syslog line before the test runs, too).
pub fn start_record(cfg: &ClientConfig) -> Record {
    let server = format!("{}:{}", cfg.host, cfg.port);
    report::start_record(&server, cfg.protocol, cfg.direction, cfg.connection_count)
}

impl TestRun {
    /// A test of `cfg` that is about to start: its `start` record, no results yet.
    pub fn new(cfg: &ClientConfig) -> TestRun {
        let server = format!("{}:{}", cfg.host, cfg.port);
        let start = start_record(cfg);
        TestRun {
            started: SystemTime::now(),
            server,
            start,
            intervals: Vec::new(),
            intervals_seen: 0,
            keep_intervals: cfg.report.is_some(),
            summary: None,
            result: None,
            outcome: Ok(()),
        }
    }

    /// The `error` record of a failed test.
    pub fn error_record(&self) -> Option<Record> {
        self.outcome.as_ref().err().map(report::error_record)
    }
}

/// How the probe's RTTs become figures: one estimator per phase, so the loaded jitter does
/// not start from the idle one. The phase's RTTs are held in a bounded [`stats::RttDigest`]
/// (exact for the first 6.8 minutes, then within 0.39 %): issue 18.
struct Phase {
    jitter: stats::Jitter,
    all: stats::RttDigest,
    sent: u64,
    lost: u64,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            jitter: stats::Jitter::new(),
            all: stats::RttDigest::new(),
            sent: 0,
            lost: 0,
        }
    }

    /// Adds a take; returns the figures of its replies alone.
    fn add(&mut self, t: &probe::Take) -> IntervalRtt {
        self.all.extend(&t.rtts_ms);
        self.sent += t.sent;
        self.lost += t.lost;
        IntervalRtt {
            sent: t.sent,
            lost: t.lost,
            rtt: stats::RttStats::compute(&t.rtts_ms, &mut self.jitter),
        }
    }

    /// The whole phase; its jitter is the estimator run over all of it in order.
    fn overall(&self) -> Option<Rtt> {
        self.all.stats()
    }
}

/// Starts the probe the configuration asks for, to the server's first address. A probe that
/// cannot run costs the test its latency figures, not the test: the reason goes to the
/// reporter as a note.
fn start_probe(
    cfg: &ClientConfig,
    target: SocketAddr,
    rep: &mut ClientReporter<Out>,
) -> io::Result<Option<Probe>> {
    if cfg.latency == Latency::Off {
        return Ok(None);
    }
    let mut pc = ProbeConfig::new(target.ip(), cfg.port);
    pc.want = cfg.latency;
    pc.bind = cfg.bind;
    pc.device = cfg.device.clone();
    pc.tos = cfg.tos;
    match Probe::start(&pc) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            log::warn!("{e}");
            rep.note(&format!("note: no latency figures: {e}"))?;
            Ok(None)
        }
    }
}

/// Waits `d`, or less when `stop` triggers; a signal (Ctrl-C) triggers it. The probe's idle
/// second and a fleet's retry delay.
pub fn wait(d: Duration, stop: &Stop) {
    let end = Instant::now() + d;
    while !stop.is_triggered() {
        if crate::sys::signalled() {
            stop.trigger(StopReason::Shutdown);
            break;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Runs one test. `Err` only for output errors (a closed pipe); the test's own failure is in
/// [`TestRun::outcome`], and in an `error` record after the summary (if there is one).
pub fn run(cfg: &ClientConfig, stop: &Stop, rep: &mut ClientReporter<Out>) -> io::Result<TestRun> {
    let mut run = TestRun::new(cfg);
    rep.start(&run.start)?;
    if let Err(e) = session(cfg, stop, rep, &mut run)? {
        run.outcome = Err(e);
    }
    if let Some(e) = run.error_record() {
        rep.error(&e)?;
    }
    Ok(run)
}

/// The probe's idle second, the test, its intervals and summary, into `run`. The inner
/// `Err` is a test that could not start or run.
fn session(
    cfg: &ClientConfig,
    stop: &Stop,
    rep: &mut ClientReporter<Out>,
    run: &mut TestRun,
) -> io::Result<Result<()>> {
    // Resolved once, for the probe and the test.
    let addrs = match client::resolve(cfg) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let probe = start_probe(cfg, addrs[0], rep)?;
    let mut idle = Phase::new();
    let mut loaded = Phase::new();
    if let Some(p) = &probe {
        wait(cfg.latency_idle, stop);
        idle.add(&p.take());
    }
    if stop.is_triggered() {
        return Ok(Err(Error::EndedEarly(
            "interrupted before the test started".into(),
        )));
    }
    let (samples, handle) = match client::spawn_to(cfg.clone(), stop.clone(), addrs) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    loop {
        match samples.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => {
                let lat = probe.as_ref().map(|p| loaded.add(&p.take()));
                let r = rep.sample(&s, lat.as_ref())?;
                run.intervals_seen += 1;
                if run.keep_intervals {
                    run.intervals.push(r);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // The engine's status thread reacts to signals; before the session starts
                // (connect, handshake) we end the wait ourselves.
                if crate::sys::signalled() {
                    stop.trigger(StopReason::Shutdown);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    let method = probe.as_ref().map(|p| p.method().as_str());
    if let Some(p) = probe {
        p.stop();
    }
    let r = match handle.join() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Ok(Err(e)),
        Err(_) => {
            return Ok(Err(Error::Internal {
                thread: "btest-client".into(),
            }))
        }
    };
    let lat = method.map(|method| LatencySummary {
        method,
        idle: idle.overall(),
        loaded: loaded.overall(),
        sent: loaded.sent,
        lost: loaded.lost,
    });
    let summary =
        report::summary_record(&r, &run.server, run.started, lat.as_ref(), rep.coverage());
    rep.summary(&summary)?;
    let outcome = r.outcome();
    run.summary = Some(summary);
    run.result = Some(r);
    Ok(outcome)
}
