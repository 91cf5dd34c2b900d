//! `btest exporter` (issue 22): a Prometheus exporter in the blackbox-exporter pattern.
//! `GET /probe?target=NAME[&mode=test|speed-test]` runs one bounded test of a target of the
//! targets file (the fleet file format: `fleet::parse`, so options and credentials files are
//! exactly a fleet's) and answers its figures as Prometheus text; `GET /metrics` answers the
//! exporter's own counters.
//!
//! Owns: the targets, the cache of each target's last result, the running tests and their
//! deadlines (the accept thread's tick stops a test at its deadline), the exporter's counters.
//! A test runs on the connection thread that asked for it, through run.rs as a fleet target's
//! does; the decisions (query, cache, concurrency, budget) are pure in policy.rs, the text
//! format in text.rs, the listener in http.rs.
//!
//! Must not: take a target address, a credential or a test option from the URL (policy.rs
//! refuses them); run two tests of one target at once, more than `--concurrency` tests, or a
//! test past its deadline; use a URL's text as a metric or label name, or as a label value
//! other than escaped; print (main.rs prints the listening line).

mod http;
pub mod policy;
pub mod text;

// The request-head parser of the `--http` server (strict, bounded, table-tested), shared
// rather than written twice. Without the `http` feature that module is not built, so the
// file is included here on its own: it is pure and needs nothing from the server.
#[cfg(feature = "http")]
use crate::http::{conn, request};
#[cfg(not(feature = "http"))]
#[allow(dead_code)]
#[path = "../http/request.rs"]
mod request;
// Its bounded write and linger before close, likewise.
#[cfg(not(feature = "http"))]
#[allow(dead_code)]
#[path = "../http/conn.rs"]
mod conn;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{ExporterConfig, Output};
use crate::engine::{Stop, StopReason};
use crate::error::Error;
use crate::fleet::Target;
use crate::record::{field as F, Field};
use crate::report::ClientReporter;
use crate::run::{self, TestRun};
use crate::wire::{Protocol, Side};
pub use http::{Response, MAX_CONNECTIONS, MAX_PER_SOURCE};
use policy::{Budget, Decision, ProbeMode, Situation};
pub use request::Request;
use text::{Exposition, Kind};

/// Reads the targets file (relative `--credentials` paths are from its directory).
pub fn load_targets(path: &Path) -> Result<Vec<Target>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "exporter: --targets {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::fleet::parse(&text, dir)
        .map_err(|e| Error::Usage(format!("exporter: --targets {}: {e}", path.display())))
}

/// A target's last result: its page without the age, and when the test ended.
#[derive(Clone)]
struct Entry {
    page: Exposition,
    done: Instant,
}

/// A test in progress.
struct Running {
    id: u64,
    target: usize,
    deadline: Instant,
    stop: Stop,
}

#[derive(Default)]
struct State {
    cache: HashMap<(usize, ProbeMode), Entry>,
    running: Vec<Running>,
    next_id: u64,
}

/// The exporter's own counters (`/metrics`).
#[derive(Default)]
struct Stats {
    /// (path label, code) -> count; at most 4 paths x a few codes.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (mode, outcome) -> count.
    tests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    cache_hits: AtomicU64,
}

/// The exporter: targets, cache, running tests, counters. Shared by the connection threads.
pub struct Exporter {
    cfg: ExporterConfig,
    targets: Vec<Target>,
    state: Mutex<State>,
    stats: Stats,
}

/// Removes a running test's entry on every way out of [`Exporter::probe`], a panic included.
struct RunGuard<'a>(&'a Exporter, u64);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.state.lock().running.retain(|r| r.id != self.1);
    }
}

impl Exporter {
    /// An exporter of these targets.
    pub fn new(cfg: ExporterConfig, targets: Vec<Target>) -> Arc<Exporter> {
        Arc::new(Exporter {
            cfg,
            targets,
            state: Mutex::new(State::default()),
            stats: Stats::default(),
        })
    }

    /// Answers one request, and counts it.
    pub fn handle(&self, req: &Request) -> Response {
        let (label, resp) = match req.path.as_str() {
            "/probe" => ("/probe", self.probe(req)),
            "/metrics" => ("/metrics", Response::metrics(self.own_metrics())),
            "/" => ("/", Response::text(200, self.index())),
            _ => (
                "other",
                Response::text(404, "not found: try /probe?target=NAME or /metrics\n"),
            ),
        };
        *self
            .stats
            .requests
            .lock()
            .entry((label, resp.status))
            .or_insert(0) += 1;
        resp
    }

    fn index(&self) -> String {
        let mut s = String::from(
            "btest exporter\n\n  /probe?target=NAME[&mode=test|speed-test]  one test of a target, \
             Prometheus text\n  /metrics                                   the exporter's own \
             counters\n\ntargets:\n",
        );
        for t in &self.targets {
            s.push_str("  ");
            s.push_str(&t.name);
            s.push('\n');
        }
        s
    }

    /// `/probe`.
    fn probe(&self, req: &Request) -> Response {
        let q = match policy::parse_query(&req.query) {
            Ok(q) => q,
            Err(e) => return Response::text(400, format!("bad probe request: {e}\n")),
        };
        let Some(idx) = self.targets.iter().position(|t| t.name == q.target) else {
            return Response::text(
                404,
                format!(
                    "unknown target '{}': not in the targets file (/ lists them)\n",
                    policy::shown(&q.target)
                ),
            );
        };
        let t = &self.targets[idx];
        let mode = q.mode.unwrap_or(if target_speed_test(t).is_some() {
            ProbeMode::SpeedTest
        } else {
            ProbeMode::Test
        });
        let scrape = req
            .scrape_timeout
            .as_deref()
            .and_then(policy::scrape_timeout);
        let b = policy::budget(
            t.cfg.duration,
            if t.cfg.latency == crate::config::Latency::Off {
                Duration::ZERO
            } else {
                t.cfg.latency_idle
            },
            t.cfg.connect_timeout,
            self.cfg.max_duration,
            self.cfg.timeout,
            scrape,
        );
        let now = Instant::now();
        let (stop, id) = {
            let mut st = self.state.lock();
            let entry = st.cache.get(&(idx, mode)).cloned();
            let this_running = st.running.iter().any(|r| r.target == idx);
            let sit = Situation {
                last_done: entry.as_ref().map(|e| e.done),
                this_running,
                running: st.running.len(),
                soonest_end: st
                    .running
                    .iter()
                    .filter(|r| !this_running || r.target == idx)
                    .map(|r| r.deadline)
                    .min(),
            };
            match policy::decide(sit, now, self.cfg.min_interval, self.cfg.concurrency) {
                Decision::Cached => {
                    drop(st);
                    self.stats.cache_hits.fetch_add(1, Relaxed);
                    // Decision::Cached is only given with an entry.
                    let e = entry.unwrap_or_else(|| Entry {
                        page: Exposition::new(),
                        done: now,
                    });
                    return Response::metrics(aged(
                        &e.page,
                        now.saturating_duration_since(e.done),
                        true,
                    ));
                }
                Decision::Busy { retry_after_s, why } => {
                    let mut r = Response::text(503, format!("{why}\n"));
                    r.retry_after = Some(retry_after_s);
                    return r;
                }
                Decision::Run => {
                    let stop = Stop::new();
                    st.next_id += 1;
                    let id = st.next_id;
                    st.running.push(Running {
                        id,
                        target: idx,
                        deadline: now + b.deadline,
                        stop: stop.clone(),
                    });
                    (stop, id)
                }
            }
        };
        let guard = RunGuard(self, id);
        let page = match mode {
            ProbeMode::Test => run_test(t, &b, &stop),
            ProbeMode::SpeedTest => match speed_test_metrics(t, &b, &stop) {
                Ok(p) => p,
                Err(e) => failure_page(now.elapsed(), "setup", "budget", &e),
            },
        };
        let ok = page
            .families
            .iter()
            .find(|f| f.name == SUCCESS.0)
            .and_then(|f| f.samples.first())
            .is_some_and(|s| s.value == 1.0);
        *self
            .stats
            .tests
            .lock()
            .entry((mode.as_str(), if ok { "success" } else { "failure" }))
            .or_insert(0) += 1;
        let done = Instant::now();
        {
            let mut st = self.state.lock();
            st.cache.insert(
                (idx, mode),
                Entry {
                    page: page.clone(),
                    done,
                },
            );
        }
        drop(guard);
        Response::metrics(aged(&page, Duration::ZERO, false))
    }

    /// The accept thread's tick: stops each test at its deadline (so a scrape never waits
    /// for ever, whatever the target does), and every test when `all` (shutdown).
    pub fn watch(&self, all: bool) {
        let now = Instant::now();
        for r in self.state.lock().running.iter() {
            if all {
                r.stop.trigger(StopReason::Shutdown);
            } else if now >= r.deadline {
                r.stop.trigger(StopReason::MaxDuration);
            }
        }
    }

    /// Targets in the file.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Tests running now.
    pub fn running(&self) -> usize {
        self.state.lock().running.len()
    }

    /// The `/metrics` page.
    pub fn own_metrics(&self) -> String {
        let mut e = Exposition::new();
        e.add(
            Kind::Gauge,
            "btest_exporter_build_info",
            "the btest version serving, always 1",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        e.gauge(
            "btest_exporter_targets",
            "targets in the targets file",
            self.targets.len() as f64,
        );
        for ((path, code), n) in self.stats.requests.lock().iter() {
            e.add(
                Kind::Counter,
                "btest_exporter_requests_total",
                "HTTP requests answered, by path (/probe, /metrics, /, other) and status code",
                &[("path", *path), ("code", &code.to_string())],
                *n as f64,
            );
        }
        for ((mode, outcome), n) in self.stats.tests.lock().iter() {
            e.add(
                Kind::Counter,
                "btest_exporter_tests_total",
                "tests run, by mode and outcome (success, failure)",
                &[("mode", *mode), ("outcome", *outcome)],
                *n as f64,
            );
        }
        e.gauge(
            "btest_exporter_tests_running",
            "tests running now",
            self.running() as f64,
        );
        e.add(
            Kind::Counter,
            "btest_exporter_cache_hits_total",
            "probes answered from the cache (asked again within --min-interval, or while the \
             target was under test)",
            &[],
            self.stats.cache_hits.load(Relaxed) as f64,
        );
        e.render()
    }
}

/// The page with the result's age (and whether it came from the cache) appended.
fn aged(page: &Exposition, age: Duration, cached: bool) -> String {
    let mut p = page.clone();
    p.gauge(
        "btest_result_age_seconds",
        "seconds since this result's test ended (0: run for this request)",
        (age.as_secs_f64() * 1000.0).round() / 1000.0,
    )
    .gauge(
        "btest_result_cached",
        "1 when this answer is a cached earlier result (--min-interval)",
        if cached { 1.0 } else { 0.0 },
    );
    p.render()
}

/// The speed test a target runs: its own `mode=speed-test` configuration, if its line has one.
fn target_speed_test(t: &Target) -> Option<&crate::speedtest::SpeedTestConfig> {
    t.speed_test.as_deref()
}

/// Connect, handshake and drain of one load phase's session, on top of its length (a LAN
/// or a near router: a far one needs a longer `--timeout`).
const SESSION_OVERHEAD: Duration = Duration::from_millis(500);

/// The speed test fitted into `deadline`: the target's own configuration (or the defaults
/// around its client options), every phase shortened in proportion when the whole does not
/// fit, down to 2 s a load phase (its first second is the ramp) and 1 s of idle and of
/// cooldown. `Err` says how long the probe would need.
fn fit_speed_test(
    t: &Target,
    deadline: Duration,
) -> Result<crate::speedtest::SpeedTestConfig, String> {
    use crate::speedtest::{PhaseKind, SpeedTestConfig};
    let mut cfg = match target_speed_test(t) {
        Some(c) => c.clone(),
        None => {
            let mut c = SpeedTestConfig::new(&t.cfg.host);
            c.client = t.cfg.clone();
            c.client.connection_count = SpeedTestConfig::new(&t.cfg.host).client.connection_count;
            c
        }
    };
    cfg.client.report = None;
    let loads = cfg
        .phases
        .iter()
        .filter(|k| k.direction().is_some())
        .count() as u32;
    // One second for the answer and the probes' start, and each session's own overhead.
    let spare = Duration::from_secs(1) + SESSION_OVERHEAD * loads;
    let room = deadline.saturating_sub(spare);
    let asked: Duration = cfg.phases.iter().map(|k| cfg.length(*k)).sum();
    let floor = |k: &PhaseKind| match k {
        PhaseKind::Idle | PhaseKind::Cooldown => Duration::from_secs(1),
        _ => Duration::from_secs(2),
    };
    let least: Duration = cfg.phases.iter().map(floor).sum();
    if least > room {
        return Err(format!(
            "a speed test of {} phases needs at least {:.0} s and this probe has {:.1} s: raise \
             the exporter's --timeout and the scrape's scrape_timeout",
            cfg.phases.len(),
            (least + spare).as_secs_f64().ceil(),
            deadline.as_secs_f64()
        ));
    }
    if asked > room {
        let k = room.as_secs_f64() / asked.as_secs_f64();
        let scale = |d: Duration, lo: Duration| d.mul_f64(k).max(lo);
        cfg.idle = scale(cfg.idle, Duration::from_secs(1));
        cfg.cooldown = scale(cfg.cooldown, Duration::from_secs(1));
        cfg.phase = scale(cfg.phase, Duration::from_secs(2));
        // The floors may have pushed it over: take the rest from the load phases.
        let now: Duration = cfg.phases.iter().map(|k| cfg.length(*k)).sum();
        if now > room && loads > 0 {
            let over = (now - room) / loads;
            cfg.phase = cfg.phase.saturating_sub(over).max(Duration::from_secs(2));
        }
    }
    Ok(cfg)
}

/// The speed-test mode: one `btest speed-test` of the target, fitted into the probe's
/// deadline, as Prometheus text: the grade, RPM, rating and confidence, and per phase the
/// rates, the latency figures, the increase over idle and the one-way delays.
pub fn speed_test_metrics(t: &Target, b: &Budget, stop: &Stop) -> Result<Exposition, String> {
    use crate::speedtest::{self, Overall};
    let cfg = fit_speed_test(t, b.deadline)?;
    let started = Instant::now();
    let res = speedtest::run(&cfg, stop, &mut |_| Ok(())).map_err(|e| e.to_string())?;
    let wall = started.elapsed();
    let reason = match stop.reason() {
        Some(StopReason::MaxDuration) => Some(("deadline", "the probe reached its deadline")),
        Some(StopReason::Shutdown) => Some(("shutdown", "the exporter is shutting down")),
        _ => None,
    };
    let mut e = Exposition::new();
    let failed = reason.is_some() || res.outcome.is_err();
    e.gauge(SUCCESS.0, SUCCESS.1, if failed { 0.0 } else { 1.0 })
        .gauge(WALL.0, WALL.1, wall.as_secs_f64());
    if failed {
        let err = res.outcome.as_ref().err();
        let phase = err.and_then(Error::phase).map_or("data", |p| p.as_str());
        let (word, msg) = match (reason, err) {
            (Some((w, m)), Some(e)) => (w, format!("{m} ({e})")),
            (Some((w, m)), None) => (w, m.to_string()),
            (None, Some(e)) => (reason_word(e), e.to_string()),
            (None, None) => ("error", String::new()),
        };
        error(&mut e, phase, word, &msg);
    }
    let o = Overall::of(&res.phases);
    if let Some(g) = o.grade {
        e.add(
            Kind::Gauge,
            "btest_bufferbloat_grade_info",
            "the bufferbloat grade (A+ .. F) of the mean latency increase under load, always 1",
            &[("grade", g)],
            1.0,
        );
    }
    let ms = |v: Option<f64>| v.map(|v| v / 1000.0);
    e.opt_gauge(
        "btest_bufferbloat_increase_seconds",
        "(download + upload latency increase over idle) / 2, what the grade grades",
        ms(o.grade_increase_ms),
    );
    for (probe, v) in [
        ("combined", o.rpm),
        ("foreign", o.rpm_foreign),
        ("self", o.rpm_self),
    ] {
        if let Some(v) = v {
            e.add(
                Kind::Gauge,
                "btest_rpm",
                "responsiveness, round trips per minute under load (combined = (foreign + self) / 2)",
                &[("probe", probe)],
                v.round(),
            );
        }
    }
    if let Some(r) = o.rating {
        e.add(
            Kind::Gauge,
            "btest_rpm_rating_info",
            "the RPM rating (Poor, Fair, Good, Excellent) and its confidence, always 1",
            &[
                ("rating", r.as_str()),
                ("confidence", o.confidence.as_str()),
            ],
            1.0,
        );
    }
    for p in &res.phases {
        let phase = p.kind.as_str();
        for (dir, v) in [("rx", p.rx_bps), ("tx", p.tx_bps)] {
            if let Some(v) = v {
                e.add(
                    Kind::Gauge,
                    "btest_phase_bits_per_second",
                    "what the client received (rx) and sent (tx) in each phase",
                    &[("phase", phase), ("direction", dir)],
                    v.round(),
                );
            }
        }
        if let Some(st) = p.latency() {
            for (stat, v) in [
                ("low", st.low),
                ("iqm", st.iqm),
                ("mean", st.mean),
                ("p50", st.p50),
                ("p90", st.p90),
                ("p99", st.p99),
                ("high", st.high),
                ("trimmed95", st.trimmed95),
                ("jitter", st.jitter),
            ] {
                e.add(
                    Kind::Gauge,
                    "btest_phase_latency_seconds",
                    "probe round trips of each phase's steady state (the first load second left out)",
                    &[("phase", phase), ("stat", stat)],
                    v / 1000.0,
                );
            }
        }
        if let Some(c) = p.classes.first() {
            if c.sent > 0 {
                e.add(
                    Kind::Gauge,
                    "btest_phase_probe_loss_ratio",
                    "latency probes without a reply, of those sent, in each phase",
                    &[("phase", phase)],
                    c.lost as f64 / c.sent as f64,
                );
            }
        }
        if let Some(v) = speedtest::increase(&res.phases, p, 0) {
            e.add(
                Kind::Gauge,
                "btest_phase_latency_increase_seconds",
                "each phase's mean latency minus the idle phase's",
                &[("phase", phase)],
                v / 1000.0,
            );
        }
        if let Some(w) = p.owd {
            for (dir, v) in [("up", w.up_iqm_ms), ("down", w.down_iqm_ms)] {
                e.add(
                    Kind::Gauge,
                    "btest_phase_one_way_seconds",
                    "one-way delay, interquartile mean, up (client to server) and down",
                    &[("phase", phase), ("direction", dir)],
                    v / 1000.0,
                );
            }
        }
    }
    Ok(e)
}

/// A probe that failed before any test: success 0, the error, the reason as a comment.
fn failure_page(wall: Duration, phase: &str, reason: &str, msg: &str) -> Exposition {
    let mut e = Exposition::new();
    e.gauge(SUCCESS.0, SUCCESS.1, 0.0)
        .gauge(WALL.0, WALL.1, wall.as_secs_f64());
    error(&mut e, phase, reason, msg);
    e
}

/// The `btest_probe_error{phase,reason}` series and the error text as a comment for a person
/// reading the page.
fn error(e: &mut Exposition, phase: &str, reason: &str, msg: &str) {
    e.add(
        Kind::Gauge,
        ERROR.0,
        ERROR.1,
        &[("phase", phase), ("reason", reason)],
        1.0,
    );
    e.comments.push(format!("error: {msg}"));
}

const SUCCESS: (&str, &str) = (
    "btest_probe_success",
    "1 if the test passed, 0 if it failed (btest_probe_error says where and why)",
);
const WALL: (&str, &str) = (
    "btest_probe_duration_seconds",
    "how long the probe took, connect and idle latency included",
);
const ERROR: (&str, &str) = (
    "btest_probe_error",
    "1 for a failed probe: the phase it failed in and a reason word",
);

/// Runs the target's test within the budget.
fn run_test(t: &Target, b: &Budget, stop: &Stop) -> Exposition {
    let mut cfg = t.cfg.clone();
    cfg.duration = Some(b.duration);
    cfg.connect_timeout = b.connect_timeout;
    cfg.report = None;
    let started = Instant::now();
    let mut sink = ClientReporter::new(run::Out::sink(), Output::Json);
    // The sink never fails to write; should it, the test is what failed.
    let run = run::run(&cfg, stop, &mut sink).unwrap_or_else(|e| TestRun {
        outcome: Err(Error::Usage(e.to_string())),
        ..TestRun::new(&cfg)
    });
    let wall = started.elapsed();
    // Our deadline (the watchdog's MaxDuration) is a failure even when the test ended
    // cleanly after it: the scrape no longer waited for it. So is a test the exporter's
    // shutdown cut short (it passed as a client test: measured, 1.5 s of a 10 s test).
    let deadline = matches!(stop.reason(), Some(StopReason::MaxDuration));
    let shutdown = matches!(stop.reason(), Some(StopReason::Shutdown));
    // Which stop came first decides the reason: ours (deadline, shutdown) explains whatever
    // error the cut then caused (a test stopped in its idle second ends "interrupted").
    let phase = |r: &Result<(), Error>| {
        r.as_ref()
            .err()
            .and_then(Error::phase)
            .map_or("data", |p| p.as_str())
    };
    let detail = run
        .outcome
        .as_ref()
        .err()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let err = if deadline {
        Some((
            phase(&run.outcome),
            "deadline",
            format!(
                "the probe reached its deadline ({:.1} s: --timeout or the scrape's timeout) \
                 and was stopped{detail}",
                b.deadline.as_secs_f64()
            ),
        ))
    } else if shutdown {
        Some((
            phase(&run.outcome),
            "shutdown",
            format!("the exporter is shutting down; the test was stopped early{detail}"),
        ))
    } else {
        run.outcome
            .as_ref()
            .err()
            .map(|e| (phase(&run.outcome), reason_word(e), e.to_string()))
    };
    if let Some((_, _, m)) = &err {
        log::info!("exporter: target {}: {m}", crate::text::Esc(&t.name));
    }
    let figure = |f: &Field| run.summary.as_ref().and_then(|s| s.get(f).as_f64());
    test_page(&Facts {
        wall,
        error: err.as_ref().map(|(p, r, m)| (*p, *r, m.as_str())),
        summary: run.summary.is_some(),
        tx: cfg.direction.we_transmit(Side::Client),
        rx: cfg.direction.we_receive(Side::Client),
        udp: cfg.protocol == Protocol::Udp,
        figure: &figure,
    })
}

/// A short word for the kind of failure (`btest_probe_error{reason=...}`).
pub fn reason_word(e: &Error) -> &'static str {
    match e {
        Error::Usage(_) => "usage",
        Error::Io { .. } => "io",
        Error::Timeout { .. } => "timeout",
        Error::Protocol { .. } => "protocol",
        Error::PeerClosed { .. } => "peer_closed",
        Error::Auth { .. } => "auth",
        Error::Resolve { .. } => "resolve",
        Error::Refused(_) => "refused",
        Error::EndedEarly(_) => "ended_early",
        Error::SomeFailed(_) => "failed",
        Error::NoData { .. } => "no_data",
        Error::Internal { .. } => "internal",
    }
}

/// What a test's page is made from (a struct, so the page is golden-tested without a test).
struct Facts<'a> {
    wall: Duration,
    /// (phase, reason, message) of a failure.
    error: Option<(&'a str, &'a str, &'a str)>,
    /// The data phase ran (there is a summary).
    summary: bool,
    tx: bool,
    rx: bool,
    udp: bool,
    /// A summary field's number.
    figure: &'a dyn Fn(&Field) -> Option<f64>,
}

/// The page of a test: success, time, rates each way, UDP loss, the latency probe's figures
/// (idle and loaded), TCP's RTT, CPU, the error. Times in seconds, rates in bit/s, ratios
/// 0..1, as Prometheus' conventions want.
fn test_page(f: &Facts<'_>) -> Exposition {
    let mut e = Exposition::new();
    // Rounded to what the figures resolve (1 ns, 1 bit/s, 1 ppm), so the page reads
    // 0.0001008, not the 0.00010080540000000001 of a division.
    let round = |v: f64, scale: f64| (v * scale).round() / scale;
    let g = |x: &Field| (f.figure)(x);
    let bps = |x: &Field| (f.figure)(x).map(f64::round);
    let ms = |x: &Field| (f.figure)(x).map(|v| round(v / 1000.0, 1e9));
    let pct = |x: &Field| (f.figure)(x).map(|v| round(v / 100.0, 1e6));
    e.gauge(
        SUCCESS.0,
        SUCCESS.1,
        if f.error.is_none() { 1.0 } else { 0.0 },
    )
    .gauge(
        WALL.0,
        WALL.1,
        (f.wall.as_secs_f64() * 1000.0).round() / 1000.0,
    );
    if f.summary {
        e.opt_gauge(
            "btest_test_duration_seconds",
            "length of the test's data phase",
            g(&F::DURATION_S).map(|v| round(v, 1e6)),
        );
        if f.tx {
            e.opt_gauge(
                "btest_tx_bits_per_second",
                "average rate the exporter sent to the target (upload)",
                bps(&F::TX_AVG_BPS),
            );
        }
        if f.rx {
            e.opt_gauge(
                "btest_rx_bits_per_second",
                "average rate the exporter received from the target (download)",
                bps(&F::RX_AVG_BPS),
            );
        }
        if f.udp {
            e.opt_gauge(
                "btest_lost_packets",
                "UDP datagrams lost on the way to the exporter",
                g(&F::LOST_PACKETS),
            );
            for (dir, field, on) in [("tx", &F::TX_LOSS_PCT, f.tx), ("rx", &F::RX_LOSS_PCT, f.rx)] {
                if let Some(v) = pct(field).filter(|_| on) {
                    e.add(
                        Kind::Gauge,
                        "btest_loss_ratio",
                        "UDP loss, 0..1: tx what the target's statuses did not count of what \
                         the exporter sent, rx what was missing of what the target sent",
                        &[("direction", dir)],
                        v,
                    );
                }
            }
        }
        let rtt = [
            ("idle", "min", &F::IDLE_RTT_MIN_MS),
            ("idle", "avg", &F::IDLE_RTT_AVG_MS),
            ("idle", "p50", &F::IDLE_RTT_P50_MS),
            ("idle", "p90", &F::IDLE_RTT_P90_MS),
            ("idle", "max", &F::IDLE_RTT_MAX_MS),
            ("loaded", "min", &F::LOADED_RTT_MIN_MS),
            ("loaded", "avg", &F::LOADED_RTT_AVG_MS),
            ("loaded", "p50", &F::LOADED_RTT_P50_MS),
            ("loaded", "p90", &F::LOADED_RTT_P90_MS),
            ("loaded", "max", &F::LOADED_RTT_MAX_MS),
        ];
        for (phase, stat, field) in rtt {
            if let Some(v) = ms(field) {
                e.add(
                    Kind::Gauge,
                    "btest_rtt_seconds",
                    "latency probe round-trip time, idle (before the load) and loaded (during \
                     it): min, avg, p50, p90, max",
                    &[("phase", phase), ("stat", stat)],
                    v,
                );
            }
        }
        for (phase, field) in [
            ("idle", &F::IDLE_JITTER_MS),
            ("loaded", &F::LOADED_JITTER_MS),
        ] {
            if let Some(v) = ms(field) {
                e.add(
                    Kind::Gauge,
                    "btest_jitter_seconds",
                    "RFC 3550 jitter of the latency probe, idle and loaded",
                    &[("phase", phase)],
                    v,
                );
            }
        }
        e.opt_gauge(
            "btest_bufferbloat_seconds",
            "loaded median RTT minus the idle median: the delay the load added",
            ms(&F::BUFFERBLOAT_MS),
        )
        .opt_gauge(
            "btest_rtt_probes_sent",
            "latency probes sent during the load",
            g(&F::RTT_SENT),
        )
        .opt_gauge(
            "btest_rtt_probes_lost",
            "latency probes without a reply within 1 s",
            g(&F::RTT_LOST),
        )
        .opt_gauge(
            "btest_tcp_rtt_seconds",
            "TCP's smoothed RTT of the test connections at the end (TCP_INFO)",
            ms(&F::TCP_RTT_MS),
        );
        for (side, field) in [("local", &F::LOCAL_CPU_AVG), ("remote", &F::REMOTE_CPU_AVG)] {
            if let Some(v) = pct(field) {
                e.add(
                    Kind::Gauge,
                    "btest_cpu_ratio",
                    "average CPU load during the test, 0..1: local (the exporter's host) and \
                     remote (as the target reported it)",
                    &[("side", side)],
                    v,
                );
            }
        }
    }
    if let Some((phase, reason, msg)) = f.error {
        error(&mut e, phase, reason, msg);
    }
    e
}

/// A running exporter: the listener and the shared state.
pub struct Served {
    listener: http::Listener,
    exporter: Arc<Exporter>,
}

impl Served {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The exporter.
    pub fn exporter(&self) -> &Arc<Exporter> {
        &self.exporter
    }

    /// Stops every running test, then the listener; waits for the connection threads up to
    /// the time a stopped test and its answer need (bounded).
    pub fn shutdown(self) {
        self.exporter.watch(true);
        let wait = http::HEAD_TIMEOUT + http::WRITE_TIMEOUT;
        self.listener.stop(wait);
        // A test that started after the first call (a request that was already past the
        // decision) is stopped too.
        self.exporter.watch(true);
    }
}

/// Loads the targets, binds `--listen` and starts serving.
pub fn start(cfg: &ExporterConfig) -> Result<Served, Error> {
    let targets = load_targets(&cfg.targets)?;
    let ex = Exporter::new(cfg.clone(), targets);
    let h = ex.clone();
    let w = ex.clone();
    let listener = http::Listener::start(
        cfg.listen,
        Arc::new(move |req: &Request, _peer: SocketAddr| h.handle(req)),
        Box::new(move || w.watch(false)),
    )?;
    Ok(Served {
        listener,
        exporter: ex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_page_golden() {
        let figures = |f: &Field| -> Option<f64> {
            Some(match f.key {
                "duration_s" => 2.0,
                "tx_avg_bps" => 50_000_000.4,
                "rx_avg_bps" => 940_000_000.0,
                "lost_packets" => 12.0,
                "tx_loss_pct" => 0.5,
                "rx_loss_pct" => 1.25,
                "idle_rtt_min_ms" => 0.5,
                "idle_rtt_avg_ms" => 0.1 + 0.000_805_4, // a sum: not exactly representable
                "loaded_rtt_max_ms" => 12.0,
                "loaded_jitter_ms" => 2.0,
                "bufferbloat_ms" => 8.0,
                "local_cpu_avg" => 25.0,
                _ => return None,
            })
        };
        let page = test_page(&Facts {
            wall: Duration::from_millis(3210),
            error: None,
            summary: true,
            tx: true,
            rx: true,
            udp: true,
            figure: &figures,
        })
        .render();
        let samples: Vec<&str> = page.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "btest_probe_success 1",
                "btest_probe_duration_seconds 3.21",
                "btest_test_duration_seconds 2",
                "btest_tx_bits_per_second 50000000",
                "btest_rx_bits_per_second 940000000",
                "btest_lost_packets 12",
                "btest_loss_ratio{direction=\"tx\"} 0.005",
                "btest_loss_ratio{direction=\"rx\"} 0.0125",
                "btest_rtt_seconds{phase=\"idle\",stat=\"min\"} 0.0005",
                "btest_rtt_seconds{phase=\"idle\",stat=\"avg\"} 0.000100805",
                "btest_rtt_seconds{phase=\"loaded\",stat=\"max\"} 0.012",
                "btest_jitter_seconds{phase=\"loaded\"} 0.002",
                "btest_bufferbloat_seconds 0.008",
                "btest_cpu_ratio{side=\"local\"} 0.25",
            ]
        );
        assert!(page.contains("# TYPE btest_rtt_seconds gauge\n"), "{page}");
        // TCP, download only, failed in the login: no rates it did not measure, the error.
        let page = test_page(&Facts {
            wall: Duration::from_millis(40),
            error: Some(("authentication", "auth", "wrong\npassword")),
            summary: false,
            tx: false,
            rx: true,
            udp: false,
            figure: &figures,
        })
        .render();
        let samples: Vec<&str> = page.lines().filter(|l| !l.starts_with("# ")).collect();
        assert_eq!(
            samples,
            [
                "btest_probe_success 0",
                "btest_probe_duration_seconds 0.04",
                "btest_probe_error{phase=\"authentication\",reason=\"auth\"} 1",
            ]
        );
        assert!(page.ends_with("# error: wrong password\n"), "{page}");
    }

    #[test]
    fn ages_are_appended() {
        let p = failure_page(Duration::from_secs(1), "setup", "budget", "x");
        let t = aged(&p, Duration::from_millis(1500), true);
        assert!(t.contains("\nbtest_result_age_seconds 1.5\n"), "{t}");
        assert!(t.contains("\nbtest_result_cached 1\n"), "{t}");
        assert!(t.contains("btest_probe_error{phase=\"setup\",reason=\"budget\"} 1"));
    }

    #[test]
    fn speed_test_mode_says_what_it_needs() {
        let t = crate::fleet::parse("t 127.0.0.1", Path::new("/")).unwrap();
        let b = policy::budget(
            None,
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(5),
            None,
        );
        let e = speed_test_metrics(&t[0], &b, &Stop::new()).unwrap_err();
        assert!(e.contains("needs at least 11 s"), "{e}");
    }

    /// The default speed test (3 + 3 x 10 + 3 s) in a 20 s probe: every phase shortened in
    /// proportion, the whole within the deadline less each session's overhead, no load phase
    /// under 2 s; a deadline that holds it keeps it as asked.
    #[test]
    fn a_speed_test_is_fitted_into_the_deadline() {
        let t = crate::fleet::parse("t 127.0.0.1", Path::new("/")).unwrap();
        let c = fit_speed_test(&t[0], Duration::from_secs(20)).unwrap();
        let total: Duration = c.phases.iter().map(|k| c.length(*k)).sum();
        assert!(total <= Duration::from_millis(17_500), "{total:?}");
        assert!(total >= Duration::from_secs(16), "{total:?}");
        assert!(c.phase >= Duration::from_secs(2) && c.idle >= Duration::from_secs(1));
        let c = fit_speed_test(&t[0], Duration::from_secs(60)).unwrap();
        assert_eq!(
            (c.idle, c.phase, c.cooldown),
            (
                Duration::from_secs(3),
                Duration::from_secs(10),
                Duration::from_secs(3)
            )
        );
    }

    #[test]
    fn requests_are_answered_and_counted_without_tests() {
        let targets = crate::fleet::parse("tower-1 127.0.0.1:1\n", Path::new("/")).unwrap();
        let cfg = ExporterConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            targets: "t".into(),
            concurrency: 1,
            min_interval: Duration::from_secs(60),
            max_duration: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        };
        let ex = Exporter::new(cfg, targets);
        let get = |target: &str| {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let (r, _) = request::parse_head(raw.as_bytes()).unwrap().unwrap();
            ex.handle(&r)
        };
        assert_eq!(get("/probe").status, 400);
        assert_eq!(get("/probe?target=nope").status, 404);
        assert_eq!(get("/probe?target=tower-1&password=x").status, 400);
        assert_eq!(get("/nothing").status, 404);
        let i = get("/");
        assert!(i.body.contains("tower-1"), "{}", i.body);
        let m = get("/metrics").body;
        assert!(
            m.contains("btest_exporter_requests_total{path=\"/probe\",code=\"400\"} 2\n"),
            "{m}"
        );
        assert!(m.contains("btest_exporter_requests_total{path=\"/probe\",code=\"404\"} 1\n"));
        assert!(m.contains("btest_exporter_requests_total{path=\"other\",code=\"404\"} 1\n"));
        assert!(m.contains("btest_exporter_tests_running 0\n"), "{m}");
        assert!(m.contains(&format!(
            "btest_exporter_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
