//! `btest speed-test HOST` (issue 22, RouterOS' `/tool speed-test` name): idle → download →
//! upload → bidirectional → cooldown against any btest server, with latency probes (one per
//! DSCP class) running across every phase, then per-phase figures, RPM with rating and
//! confidence, and the bufferbloat grade.
//!
//! Owns: the phase plan ([`PhaseKind`], [`SpeedTestConfig`]), the runner ([`run`]: one btest
//! session per load phase through `client::spawn_to`, one handshake each as RouterOS does),
//! the assignment of probe replies to phases, the probe rate cap, and the overall figures
//! ([`Overall::of`]). `figures.rs` has the pure arithmetic. Must not: print or format (the
//! caller's sink and report/speedtest.rs do), parse command lines, or decide a session's
//! success (client.rs does).
//!
//! Phase assignment: a reply belongs to the phase during which it was taken (the runner takes
//! at every one-second interval and at each phase end), so a probe sent in a load phase's last
//! RTT lands in the next phase: in a load phase's ramp, which the figures leave out, or in
//! the cooldown, which is there to show how long the queue takes to drain. A load phase's
//! ramp (from its start until the session's first one-second interval: connect, login and
//! slow start) is counted in sent/lost but left out of the latency figures, which describe
//! the steady state (docs/field.md).
//!
//! One-way delay: the replies keep their times (echo v2, [`crate::probe::Reply`], moved onto
//! one clock for every class and probe restart), and [`refit`] fits the clocks to the quiet
//! phases' replies after each phase and once more at the end.

pub mod figures;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::client::{self, ClientResult};
use crate::config::{ClientConfig, Latency, Output};
use crate::engine::{Stop, StopReason};
use crate::error::{Error, Result};
use crate::probe::owd::ClockFit;
use crate::probe::{Method, Probe, ProbeConfig, Reply};
use crate::record::{field as F, Record};
use crate::report::ClientReporter;
use crate::run::Out;
use crate::wire::Direction;
use figures::{Confidence, Rating, Stats, Steadiness};

/// The phases, in their default order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    Idle,
    Download,
    Upload,
    Bidirectional,
    Cooldown,
}

impl PhaseKind {
    /// Every phase, in the default order.
    pub const ALL: [PhaseKind; 5] = [
        PhaseKind::Idle,
        PhaseKind::Download,
        PhaseKind::Upload,
        PhaseKind::Bidirectional,
        PhaseKind::Cooldown,
    ];

    /// The word in `--phases`, records and text.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Idle => "idle",
            PhaseKind::Download => "download",
            PhaseKind::Upload => "upload",
            PhaseKind::Bidirectional => "bidirectional",
            PhaseKind::Cooldown => "cooldown",
        }
    }

    /// The btest direction of a load phase (the client's view); `None` for idle and cooldown.
    pub fn direction(self) -> Option<Direction> {
        match self {
            PhaseKind::Download => Some(Direction::ServerTx),
            PhaseKind::Upload => Some(Direction::ServerRx),
            PhaseKind::Bidirectional => Some(Direction::Both),
            PhaseKind::Idle | PhaseKind::Cooldown => None,
        }
    }

    /// Parses one `--phases` word (also `down`, `up`, `both`, `bidir`).
    pub fn parse(w: &str) -> Option<PhaseKind> {
        Some(match w.trim().to_ascii_lowercase().as_str() {
            "idle" => PhaseKind::Idle,
            "download" | "down" => PhaseKind::Download,
            "upload" | "up" => PhaseKind::Upload,
            "bidirectional" | "bidir" | "both" => PhaseKind::Bidirectional,
            "cooldown" => PhaseKind::Cooldown,
            _ => return None,
        })
    }
}

/// Parses `--phases idle,download,...`: at least one, each at most once, in the order given.
pub fn parse_phases(v: &str) -> std::result::Result<Vec<PhaseKind>, String> {
    let mut out = Vec::new();
    for w in v.split(',') {
        let p = PhaseKind::parse(w).ok_or_else(|| {
            format!(
                "--phases: '{w}' in '{v}' is not a phase: expected a list of idle, download, \
                 upload, bidirectional, cooldown"
            )
        })?;
        if out.contains(&p) {
            return Err(format!("--phases: '{v}' names {} twice", p.as_str()));
        }
        out.push(p);
    }
    Ok(out)
}

/// Default lengths (Crusader's 10 s load phases; LibreQoS-style idle and cooldown).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(3);
pub const DEFAULT_PHASE: Duration = Duration::from_secs(10);
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(3);
/// Default probe spacing and the shortest allowed (issue 22: Crusader probes every 5 ms).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(10);
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Default TCP connections of a load phase (4 streams fill a queue where 1 may not).
pub const DEFAULT_CONNECTIONS: u8 = 4;
/// The start of a load phase that is its ramp.
pub const RAMP: Duration = Duration::from_secs(1);
/// Longest phase: a phase's RTTs are held in memory (5 ms probes: 120 000 per class in
/// 10 minutes, under 1 MB).
pub const MAX_PHASE: Duration = Duration::from_secs(600);

/// What `btest speed-test` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedTestConfig {
    /// The server, login, protocol, connections, speeds, bind, device, outputs, probe method
    /// (`latency`) and `congestion`; `direction` and `duration` are set per phase.
    pub client: ClientConfig,
    pub idle: Duration,
    pub phase: Duration,
    pub cooldown: Duration,
    pub phases: Vec<PhaseKind>,
    pub probe_interval: Duration,
    /// (DSCP, name) per probe class; the first is the one the main figures use.
    pub probe_dscp: Vec<(u8, String)>,
}

impl SpeedTestConfig {
    /// Defaults for `host`: every phase, 4 TCP connections, probes every 10 ms marked BE.
    pub fn new(host: &str) -> SpeedTestConfig {
        let mut client = ClientConfig::new(host);
        client.connection_count = DEFAULT_CONNECTIONS;
        SpeedTestConfig {
            client,
            idle: DEFAULT_IDLE,
            phase: DEFAULT_PHASE,
            cooldown: DEFAULT_COOLDOWN,
            phases: PhaseKind::ALL.to_vec(),
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_dscp: vec![(0, "be".into())],
        }
    }

    /// How long `kind` runs.
    pub fn length(&self, kind: PhaseKind) -> Duration {
        match kind {
            PhaseKind::Idle => self.idle,
            PhaseKind::Cooldown => self.cooldown,
            _ => self.phase,
        }
    }
}

/// One probe class's replies in one phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collector {
    /// Steady-state RTTs (ms) in the order taken (the ramp's are left out).
    pub rtts: Vec<f64>,
    /// Probes sent and lost in the phase, ramp included.
    pub sent: u64,
    pub lost: u64,
    /// Replies of the ramp (counted, not in the figures).
    pub ramp_replies: u64,
    /// The trimmed mean of each one-second interval with replies (confidence).
    pub interval_trimmed_ms: Vec<f64>,
    /// The steady-state replies with their times (client times in ns since the run's
    /// start, so the replies of every probe and restart share one clock): the one-way figures.
    pub replies: Vec<Reply>,
}

impl Collector {
    /// Adds a take: its RTTs, whether it is the ramp, whether it closes a one-second interval.
    pub fn add(&mut self, rtts_ms: &[f64], sent: u64, lost: u64, ramp: bool, interval: bool) {
        self.add_replies(rtts_ms, &[], sent, lost, ramp, interval);
    }

    /// [`Collector::add`] with the replies behind the RTTs (echo v2 carries the server's
    /// times; others have none).
    pub fn add_replies(
        &mut self,
        rtts_ms: &[f64],
        replies: &[Reply],
        sent: u64,
        lost: u64,
        ramp: bool,
        interval: bool,
    ) {
        self.sent += sent;
        self.lost += lost;
        if ramp {
            self.ramp_replies += rtts_ms.len() as u64;
            return;
        }
        self.replies.extend_from_slice(replies);
        self.rtts.extend_from_slice(rtts_ms);
        if interval {
            if let Some(s) = Stats::of(rtts_ms) {
                self.interval_trimmed_ms.push(s.trimmed95);
            }
        }
    }

    /// The figures of the steady-state RTTs.
    pub fn stats(&self) -> Option<Stats> {
        Stats::of(&self.rtts)
    }

    /// What confidence needs of it.
    pub fn steadiness(&self) -> Steadiness {
        Steadiness {
            interval_trimmed_ms: self.interval_trimmed_ms.clone(),
            sent: self.sent,
            lost: self.lost,
        }
    }
}

/// One-way delay figures of a phase: the interquartile mean and the mean of each direction,
/// from the replies our server stamped (echo v2) and a [`ClockFit`] of the two clocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owd {
    pub up_iqm_ms: f64,
    pub down_iqm_ms: f64,
    pub up_mean_ms: f64,
    pub down_mean_ms: f64,
}

/// The clocks' offset line, fitted to the replies of the quiet phases (idle, cooldown) of
/// the main probe class. Not to loaded replies: a queue that stands for the whole phase
/// lifts even the lowest-RTT third, and a fit over it split a 533 ms download queue into
/// 343 ms down and 196 ms up (issue 22, measured through tests/speedtest_ns.rs's router;
/// the quiet-phase fit gave 554.8 down and -0.05 up). Without a quiet phase, every phase's
/// replies are used, and the note [`OWD_LOADED_FIT`] says what that costs.
pub fn clock_fit(phases: &[PhaseResult]) -> Option<(ClockFit, bool)> {
    let quiet: Vec<Reply> = phases
        .iter()
        .filter(|p| p.kind.direction().is_none())
        .filter_map(|p| p.classes.first())
        .flat_map(|c| c.replies.iter().copied())
        .collect();
    if let Some(f) = ClockFit::fit(&quiet) {
        return Some((f, true));
    }
    let all: Vec<Reply> = phases
        .iter()
        .filter_map(|p| p.classes.first())
        .flat_map(|c| c.replies.iter().copied())
        .collect();
    ClockFit::fit(&all).map(|f| (f, false))
}

/// Said when the clock fit had no quiet phase to use.
pub const OWD_LOADED_FIT: &str = "one-way delay fitted to loaded replies (no idle or cooldown \
                                  phase ran): a queue standing all along is split between up \
                                  and down";

/// The one-way figures of a phase's main class under `fit`. Every value counts, those a
/// little below zero too: a one-way delay is measured against the fitted offset, and on a
/// path of tens of µs its noise crosses zero (dropping those, as an RTT set does, lifted an
/// upload's up mean from 0.03 to 0.10 ms, so up + down no longer made the RTT).
pub fn owd(fit: &ClockFit, c: &Collector) -> Option<Owd> {
    let (mut up, mut down): (Vec<f64>, Vec<f64>) =
        c.replies.iter().filter_map(|r| fit.one_way(r)).unzip();
    up.retain(|v| v.is_finite());
    down.retain(|v| v.is_finite());
    if up.is_empty() || down.is_empty() {
        return None;
    }
    up.sort_by(f64::total_cmp);
    down.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Some(Owd {
        up_iqm_ms: figures::iqm(&up),
        down_iqm_ms: figures::iqm(&down),
        up_mean_ms: mean(&up),
        down_mean_ms: mean(&down),
    })
}

/// Fills in every phase's [`PhaseResult::owd`] from the quiet phases so far: after each
/// phase (its record goes out then, fitted to the idle phase alone), and again after the
/// last (the cooldown's replies then correct the drift for the result, text and report).
pub fn refit(phases: &mut [PhaseResult]) -> Option<bool> {
    let (fit, quiet) = clock_fit(phases)?;
    for p in phases.iter_mut() {
        p.owd = p.classes.first().and_then(|c| owd(&fit, c));
    }
    Some(quiet)
}

/// Why there are no one-way figures, for the text and the JSON note.
pub const OWD_NOTE: &str = "one-way delay needs the server's echo timestamps (a btest server of \
                            ours with echo v2); this probe measured round trips only";

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub kind: PhaseKind,
    /// Since the speed test's first phase started, and the phase's wall length.
    pub start_s: f64,
    pub duration_s: f64,
    /// What we received and sent, bit/s (load phases; `None` for idle and cooldown).
    pub rx_bps: Option<f64>,
    pub tx_bps: Option<f64>,
    pub local_cpu: Option<f64>,
    pub remote_cpu: Option<f64>,
    /// Mean TCP_INFO smoothed RTT (ms) of the load connections over the steady intervals.
    pub tcp_rtt_ms: Option<f64>,
    /// Those per-interval TCP RTTs (ms), for the self RPM.
    pub tcp_rtts: Vec<f64>,
    /// One per probe class, in `--probe-dscp` order.
    pub classes: Vec<Collector>,
    /// The probe interval in force (ms).
    pub probe_interval_ms: f64,
    /// The session's `interval` records (the HTML timeline), elapsed from the session start.
    pub intervals: Vec<Record>,
    /// The session's summary record (load phases).
    pub summary: Option<Record>,
    /// TCP_CONGESTION of the session's connection 0, read back once connected.
    pub congestion: Option<String>,
    /// One-way delays of the main class (echo v2 against our server; see [`refit`]).
    pub owd: Option<Owd>,
    /// (seconds since the first phase started, mean RTT ms) of the main class at each take
    /// with replies: the HTML timeline.
    pub lat_points: Vec<(f64, f64)>,
}

impl PhaseResult {
    fn new(kind: PhaseKind, start_s: f64, classes: usize, interval: Duration) -> PhaseResult {
        PhaseResult {
            kind,
            start_s,
            duration_s: 0.0,
            rx_bps: None,
            tx_bps: None,
            local_cpu: None,
            remote_cpu: None,
            tcp_rtt_ms: None,
            tcp_rtts: Vec::new(),
            classes: vec![Collector::default(); classes],
            probe_interval_ms: interval.as_secs_f64() * 1000.0,
            intervals: Vec::new(),
            summary: None,
            congestion: None,
            owd: None,
            lat_points: Vec::new(),
        }
    }

    /// The main class's figures.
    pub fn latency(&self) -> Option<Stats> {
        self.classes.first().and_then(Collector::stats)
    }
}

/// What the speed test produced.
#[derive(Debug)]
pub struct SpeedTestResult {
    pub started: SystemTime,
    /// `host:port` as given.
    pub server: String,
    pub protocol: crate::wire::Protocol,
    pub connections: u8,
    pub phases: Vec<PhaseResult>,
    /// `echo`, `icmp`, `icmp-raw`; `None`: no probe ran.
    pub method: Option<&'static str>,
    /// (DSCP, name) of each class that ran.
    pub classes: Vec<(u8, String)>,
    /// The probe interval asked and the one in force at the end (ms).
    pub probe_interval_asked_ms: f64,
    pub probe_interval_ms: f64,
    /// Notes for the reader (probe rate cap, a class that could not start, ...).
    pub notes: Vec<String>,
    /// The congestion control of our load connections.
    pub congestion: Option<String>,
    pub outcome: Result<()>,
}

/// The overall figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Overall {
    pub grade: Option<&'static str>,
    pub grade_increase_ms: Option<f64>,
    pub rpm: Option<f64>,
    pub rpm_foreign: Option<f64>,
    pub rpm_self: Option<f64>,
    pub rating: Option<Rating>,
    pub confidence: Confidence,
    pub download_bps: Option<f64>,
    pub upload_bps: Option<f64>,
}

/// The increase of a phase's mean latency over the idle mean (ms), of probe class `class`.
pub fn increase(phases: &[PhaseResult], p: &PhaseResult, class: usize) -> Option<f64> {
    if p.kind == PhaseKind::Idle {
        return None;
    }
    let idle = phases.iter().find(|q| q.kind == PhaseKind::Idle)?;
    let base = idle.classes.get(class)?.stats()?.mean;
    Some(p.classes.get(class)?.stats()?.mean - base)
}

/// The RPM of one phase: foreign from its probe trimmed mean, self from its TCP RTTs.
pub fn phase_rpm(p: &PhaseResult) -> (Option<f64>, Option<f64>, Option<f64>) {
    let foreign = figures::rpm(p.latency().map(|s| s.trimmed95));
    let own = figures::rpm(own_trimmed(&p.tcp_rtts));
    (figures::combined_rpm(foreign, own), foreign, own)
}

fn own_trimmed(rtts: &[f64]) -> Option<f64> {
    Stats::of(rtts).map(|s| s.trimmed95)
}

impl Overall {
    /// RPM over the download and upload phases (the draft's "up and down one after the
    /// other"; bidirectional when neither ran), the grade from their increases over idle,
    /// the confidence from the same phases.
    pub fn of(phases: &[PhaseResult]) -> Overall {
        let find = |k| phases.iter().find(|p| p.kind == k);
        let (down, up) = (find(PhaseKind::Download), find(PhaseKind::Upload));
        let mut loaded: Vec<&PhaseResult> = [down, up].into_iter().flatten().collect();
        if loaded.is_empty() {
            loaded.extend(find(PhaseKind::Bidirectional));
        }
        let rtts: Vec<f64> = loaded
            .iter()
            .filter_map(|p| p.classes.first())
            .flat_map(|c| c.rtts.iter().copied())
            .collect();
        let tcp: Vec<f64> = loaded
            .iter()
            .flat_map(|p| p.tcp_rtts.iter().copied())
            .collect();
        let rpm_foreign = figures::rpm(Stats::of(&rtts).map(|s| s.trimmed95));
        let rpm_self = figures::rpm(own_trimmed(&tcp));
        let rpm = figures::combined_rpm(rpm_foreign, rpm_self);
        let steady: Vec<Steadiness> = loaded
            .iter()
            .filter_map(|p| p.classes.first().map(Collector::steadiness))
            .collect();
        let inc = |p: Option<&PhaseResult>| p.and_then(|p| increase(phases, p, 0));
        let grade_increase_ms = figures::grade_increase(inc(down), inc(up));
        Overall {
            grade: grade_increase_ms.map(figures::grade),
            grade_increase_ms,
            rpm,
            rpm_foreign,
            rpm_self,
            rating: rpm.map(Rating::of),
            confidence: if rpm_foreign.is_some() {
                figures::confidence(&steady)
            } else {
                Confidence::Low
            },
            download_bps: down.and_then(|p| p.rx_bps),
            upload_bps: up.and_then(|p| p.tx_bps),
        }
    }
}

/// What the runner tells its caller as it goes.
pub enum Progress<'a> {
    /// A note for the reader (a probe class that could not start, the rate cap).
    Note(&'a str),
    /// A phase is starting.
    Start(PhaseKind),
    /// A phase finished: the probe classes that run ((DSCP, name), as
    /// [`PhaseResult::classes`]) and every phase so far, the last one the new one.
    Done(&'a [(u8, String)], &'a [PhaseResult]),
}

/// The probes of all classes.
struct Probes {
    /// One per class that started; `None` once a restart failed.
    probes: Vec<Option<Probe>>,
    /// (DSCP, name) of each, in the same order.
    classes: Vec<(u8, String)>,
    interval: Duration,
    /// The run's clock: reply times are moved from each probe's own epoch to this one, so
    /// replies of every class and of a restarted probe can be fitted together.
    base: Instant,
}

/// Bytes of one probe datagram on the wire: our 48-byte echo v2 datagram, the largest we
/// send (v1 is 32; ICMP's 8-byte header replaces UDP's 8), plus the IP header.
fn probe_wire_bytes(target: SocketAddr) -> u64 {
    use crate::wire::{IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD};
    let overhead = if target.is_ipv4() {
        IPV4_UDP_OVERHEAD
    } else {
        IPV6_UDP_OVERHEAD
    };
    (crate::wire::echo::ECHO2_LEN + overhead) as u64
}

fn probe_config(cfg: &SpeedTestConfig, target: SocketAddr, dscp: u8, want: Latency) -> ProbeConfig {
    let mut pc = ProbeConfig::new(target.ip(), cfg.client.port);
    pc.want = want;
    pc.bind = cfg.client.bind;
    pc.device = cfg.client.device.clone();
    pc.tos = Some(dscp << 2);
    pc
}

impl Probes {
    /// Starts one probe per class; the first decides the method, the others use it.
    fn start(
        cfg: &SpeedTestConfig,
        target: SocketAddr,
        interval: Duration,
        want: Latency,
        notes: &mut Vec<String>,
        base: Instant,
    ) -> (Probes, Option<Method>) {
        let mut method = None;
        let mut probes = Vec::new();
        let mut classes = Vec::new();
        for (dscp, name) in &cfg.probe_dscp {
            let w = match method {
                Some(Method::Echo) => Latency::Echo,
                Some(_) => Latency::Icmp,
                None => want,
            };
            let mut pc = probe_config(cfg, target, *dscp, w);
            pc.interval = interval;
            match Probe::start(&pc) {
                Ok(p) => {
                    method.get_or_insert(p.method());
                    probes.push(Some(p));
                    classes.push((*dscp, name.clone()));
                }
                Err(e) => {
                    notes.push(format!("probe class {name} (DSCP {dscp}): {e}"));
                    if method.is_none() {
                        // The first class decides: without it there are no latency figures.
                        break;
                    }
                }
            }
        }
        (
            Probes {
                probes,
                classes,
                interval,
                base,
            },
            method,
        )
    }

    fn running(&self) -> usize {
        self.probes.iter().flatten().count()
    }

    /// Takes every class into `p`'s collectors; `at` is seconds since the first phase.
    fn take_into(&self, p: &mut PhaseResult, ramp: bool, interval: bool, at: f64) {
        for (i, (c, probe)) in p.classes.iter_mut().zip(&self.probes).enumerate() {
            if let Some(probe) = probe {
                let mut t = probe.take();
                let shift = u64::try_from(
                    probe
                        .epoch()
                        .saturating_duration_since(self.base)
                        .as_nanos(),
                )
                .unwrap_or(u64::MAX);
                for r in &mut t.replies {
                    r.sent_ns = r.sent_ns.saturating_add(shift);
                    r.recv_ns = r.recv_ns.saturating_add(shift);
                }
                c.add_replies(&t.rtts_ms, &t.replies, t.sent, t.lost, ramp, interval);
                if i == 0 && !t.rtts_ms.is_empty() {
                    let m = t.rtts_ms.iter().sum::<f64>() / t.rtts_ms.len() as f64;
                    p.lat_points.push((at, m));
                }
            }
        }
    }
}

/// Runs the speed test. `sink` hears of each phase as it goes; `Err` only from the sink (an
/// output that failed); the test's own failure is in [`SpeedTestResult::outcome`].
pub fn run(
    cfg: &SpeedTestConfig,
    stop: &Stop,
    sink: &mut dyn FnMut(Progress<'_>) -> std::io::Result<()>,
) -> std::io::Result<SpeedTestResult> {
    let mut res = SpeedTestResult {
        started: SystemTime::now(),
        server: format!("{}:{}", cfg.client.host, cfg.client.port),
        protocol: cfg.client.protocol,
        connections: cfg.client.connection_count,
        phases: Vec::new(),
        method: None,
        classes: Vec::new(),
        probe_interval_asked_ms: cfg.probe_interval.as_secs_f64() * 1000.0,
        probe_interval_ms: cfg.probe_interval.as_secs_f64() * 1000.0,
        notes: Vec::new(),
        congestion: congestion_of(cfg),
        outcome: Ok(()),
    };
    let addrs = match client::resolve(&cfg.client) {
        Ok(a) => a,
        Err(e) => {
            res.outcome = Err(e);
            return Ok(res);
        }
    };
    let run_start = Instant::now();
    let mut probes = None;
    if cfg.client.latency != Latency::Off {
        let mut notes = Vec::new();
        let (p, method) = Probes::start(
            cfg,
            addrs[0],
            cfg.probe_interval,
            cfg.client.latency,
            &mut notes,
            run_start,
        );
        for n in &notes {
            log::warn!("{n}");
            sink(Progress::Note(n))?;
        }
        res.notes.extend(notes);
        res.method = method.map(Method::as_str);
        if method.is_some() {
            res.classes = p.classes.clone();
            probes = Some(p);
        } else {
            let n = "no latency figures: no probe could start (see above)".to_string();
            sink(Progress::Note(&n))?;
            res.notes.push(n);
        }
    }
    let classes = probes.as_ref().map_or(0, |p| p.probes.len());
    let t0 = Instant::now();
    // What the first load connection really ran replaces the guess from a fresh socket.
    let mut congestion_seen = false;
    let mut loaded_yet = false;
    // The interval for the load phases (and the quiet ones after them): asked, or widened
    // by the probe rate cap.
    let mut load_interval = cfg.probe_interval;
    for (i, &kind) in cfg.phases.iter().enumerate() {
        if stop.is_triggered() || crate::sys::signalled() {
            res.outcome = Err(Error::EndedEarly(format!(
                "interrupted before the {} phase",
                kind.as_str()
            )));
            break;
        }
        sink(Progress::Start(kind))?;
        // Our echo answers a source without a session 50 probes/s (server/echo.rs): before
        // the first session the probes slow down to fit, and speed up for the load.
        if let Some(pr) = &mut probes {
            let want = if kind.direction().is_none() && !loaded_yet && res.method == Some("echo") {
                load_interval.max(quiet_interval(pr.running()))
            } else {
                load_interval
            };
            if want != pr.interval {
                if want > load_interval {
                    let n = format!(
                        "{} probes every {:.0} ms until the first load phase: our server's echo \
                         answers about 50 probes/s to a source without a session (these keep \
                         to {ECHO_FREE_RATE:.0})",
                        kind.as_str(),
                        want.as_secs_f64() * 1000.0
                    );
                    sink(Progress::Note(&n))?;
                    res.notes.push(n);
                }
                restart(cfg, addrs[0], pr, want, res.method);
            }
        }
        loaded_yet |= kind.direction().is_some();
        let interval = probes.as_ref().map_or(cfg.probe_interval, |p| p.interval);
        let start = Instant::now();
        let mut p = PhaseResult::new(kind, (start - t0).as_secs_f64(), classes, interval);
        // Replies taken since the last phase ended belong to that phase's tail: drop them
        // into this one's ramp (a load phase) or count them here (idle, cooldown).
        if let Some(pr) = &probes {
            let at = p.start_s;
            pr.take_into(&mut p, kind.direction().is_some(), false, at);
        }
        let r = match kind.direction() {
            None => {
                quiet_phase(cfg.length(kind), stop, probes.as_ref(), &mut p, t0);
                Ok(())
            }
            Some(dir) => load_phase(
                cfg,
                dir,
                &addrs,
                stop,
                probes.as_ref(),
                &mut p,
                (&res.server, t0),
            ),
        };
        p.duration_s = start.elapsed().as_secs_f64();
        let failed = r.is_err();
        if let Err(e) = r {
            res.outcome = Err(e);
        }
        if let (false, Some(c)) = (congestion_seen, &p.congestion) {
            res.congestion = Some(c.clone());
            congestion_seen = true;
        }
        res.phases.push(p);
        refit(&mut res.phases);
        sink(Progress::Done(&res.classes, &res.phases))?;
        if failed {
            break;
        }
        // The probe rate cap, once a capacity is known: 5 % of the lower measured direction
        // (for the phases still to come).
        let last = i + 1 == cfg.phases.len();
        if let (Some(pr), Some(cap), false) = (&mut probes, lowest_capacity(&res.phases), last) {
            let s = pr.interval.as_secs_f64();
            let wire = probe_wire_bytes(addrs[0]);
            if let Some(wider) = figures::capped_interval(pr.running(), wire, s, cap) {
                let wider = Duration::from_secs_f64(wider).max(pr.interval);
                let n = format!(
                    "probe interval widened from {} ms to {:.1} ms: {} probe stream(s) at {} \
                     ms would exceed 5 % of the lowest measured rate ({})",
                    res.probe_interval_ms,
                    wider.as_secs_f64() * 1000.0,
                    pr.running(),
                    res.probe_interval_ms,
                    crate::units::format_rate(cap)
                );
                sink(Progress::Note(&n))?;
                res.notes.push(n);
                restart(cfg, addrs[0], pr, wider, res.method);
                load_interval = wider;
                res.probe_interval_ms = wider.as_secs_f64() * 1000.0;
            }
        }
    }
    drop(probes);
    if refit(&mut res.phases) == Some(false) {
        res.notes.push(OWD_LOADED_FIT.into());
    }
    Ok(res)
}

/// Probes per second, all classes together, that our echo answers a source holding no
/// session, with a margin below the server's 50/s (`server::echo::SOURCE_RATE`; a test ties
/// the two).
pub const ECHO_FREE_RATE: f64 = 40.0;

/// The interval that keeps `classes` probe streams within [`ECHO_FREE_RATE`].
fn quiet_interval(classes: usize) -> Duration {
    Duration::from_secs_f64(classes.max(1) as f64 / ECHO_FREE_RATE)
}

/// The lowest rate a finished load phase measured in a direction it loaded.
fn lowest_capacity(phases: &[PhaseResult]) -> Option<f64> {
    phases
        .iter()
        .flat_map(|p| match p.kind {
            PhaseKind::Download => [p.rx_bps, None],
            PhaseKind::Upload => [p.tx_bps, None],
            _ => [None, None],
        })
        .flatten()
        .filter(|b| *b > 0.0)
        .min_by(f64::total_cmp)
}

/// Restarts every running probe at `interval`, with the method already found.
fn restart(
    cfg: &SpeedTestConfig,
    target: SocketAddr,
    pr: &mut Probes,
    interval: Duration,
    method: Option<&str>,
) {
    let want = if method == Some("echo") {
        Latency::Echo
    } else {
        Latency::Icmp
    };
    for (slot, (dscp, name)) in pr.probes.iter_mut().zip(&pr.classes) {
        if slot.is_none() {
            continue;
        }
        // The old one stops (and joins) before the new one opens its socket.
        *slot = None;
        let mut pc = probe_config(cfg, target, *dscp, want);
        pc.interval = interval;
        match Probe::start(&pc) {
            Ok(p) => *slot = Some(p),
            Err(e) => log::warn!("probe class {name}: cannot restart it: {e}"),
        }
    }
    pr.interval = interval;
}

/// Idle or cooldown: probes only, taken once a second.
fn quiet_phase(
    len: Duration,
    stop: &Stop,
    probes: Option<&Probes>,
    p: &mut PhaseResult,
    t0: Instant,
) {
    let end = Instant::now() + len;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.is_triggered() {
            break;
        }
        crate::run::wait(left.min(Duration::from_secs(1)), stop);
        if let Some(pr) = probes {
            pr.take_into(p, false, true, t0.elapsed().as_secs_f64());
        }
    }
}

/// One load phase: a btest session in `dir` for the phase's length.
fn load_phase(
    cfg: &SpeedTestConfig,
    dir: Direction,
    addrs: &[SocketAddr],
    stop: &Stop,
    probes: Option<&Probes>,
    p: &mut PhaseResult,
    (server, t0): (&str, Instant),
) -> Result<()> {
    let mut c = cfg.client.clone();
    c.direction = dir;
    c.duration = Some(cfg.phase);
    c.output = Output::Json;
    let started = SystemTime::now();
    // A session's own stop: the engine triggers it when the session ends (its duration), and
    // the next phase must not read that as an interrupt. `stop` (Ctrl-C, the caller) is
    // passed on to it.
    let session_stop = Stop::new();
    let (samples, handle) = client::spawn_to(c.clone(), session_stop.clone(), addrs.to_vec())?;
    let mut rep = ClientReporter::new(Out::sink(), Output::Json);
    let mut seen = 0u32;
    let ramp_end = Instant::now() + RAMP;
    loop {
        match samples.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => {
                seen += 1;
                // The first interval (and anything before a second of load) is the ramp.
                let ramp = seen == 1 || Instant::now() < ramp_end;
                if let Some(pr) = probes {
                    pr.take_into(p, ramp, true, t0.elapsed().as_secs_f64());
                }
                if !ramp {
                    if let Some(t) = s.tcp.as_ref().filter(|t| t.total.rtt_us > 0) {
                        p.tcp_rtts.push(f64::from(t.total.rtt_us) / 1000.0);
                    }
                }
                let r = rep
                    .sample(&s, None)
                    .map_err(|e| Error::Usage(format!("speed-test: internal output: {e}")))?;
                p.intervals.push(r);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if crate::sys::signalled() {
                    stop.trigger(StopReason::Shutdown);
                }
                if stop.is_triggered() && !session_stop.is_triggered() {
                    session_stop.trigger(StopReason::Shutdown);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(pr) = probes {
        pr.take_into(p, seen == 0, false, t0.elapsed().as_secs_f64());
    }
    let r: ClientResult = match handle.join() {
        Ok(r) => r?,
        Err(_) => {
            return Err(Error::Internal {
                thread: "btest-client".into(),
            })
        }
    };
    let summary = crate::report::summary_record(&r, server, started, None, rep.coverage());
    let we_tx = dir.we_transmit(crate::wire::Side::Client);
    let we_rx = dir.we_receive(crate::wire::Side::Client);
    p.tx_bps = we_tx.then(|| summary.f64(&F::TX_AVG_BPS));
    p.rx_bps = we_rx.then(|| summary.f64(&F::RX_AVG_BPS));
    p.local_cpu = summary.get(&F::LOCAL_CPU_AVG).as_f64();
    p.remote_cpu = summary.get(&F::REMOTE_CPU_AVG).as_f64();
    p.tcp_rtt_ms =
        (!p.tcp_rtts.is_empty()).then(|| p.tcp_rtts.iter().sum::<f64>() / p.tcp_rtts.len() as f64);
    let outcome = r.outcome();
    p.congestion = r.congestion.clone();
    p.summary = Some(summary);
    outcome
}

/// The congestion control our load connections use, before the first one connects:
/// `--congestion`, else the kernel's default for new sockets. The first load phase's
/// connection then says what it really ran (a route's `congctl` applies only at connect).
/// UDP has none.
fn congestion_of(cfg: &SpeedTestConfig) -> Option<String> {
    if cfg.client.protocol != crate::wire::Protocol::Tcp {
        return None;
    }
    cfg.client
        .congestion
        .clone()
        .or_else(crate::net::default_congestion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "server")]
    #[test]
    fn quiet_probes_stay_under_the_echo_limit_for_a_source_without_a_session() {
        const { assert!(ECHO_FREE_RATE < crate::server::echo::SOURCE_RATE) };
        for classes in 1..=4 {
            let per_s = classes as f64 / quiet_interval(classes).as_secs_f64();
            assert!((per_s - ECHO_FREE_RATE).abs() < 1e-9, "{classes}: {per_s}");
        }
    }

    fn reply(sent_ms: f64, up_ms: f64, down_ms: f64, offset_ms: f64) -> Reply {
        let ns = |ms: f64| (ms * 1e6).round() as u64;
        let rx = sent_ms + up_ms + offset_ms;
        Reply {
            seq: 0,
            sent_ns: ns(sent_ms),
            recv_ns: ns(sent_ms + up_ms + down_ms),
            server: Some((ns(rx), ns(rx))),
        }
    }

    /// On a path of tens of µs the one-way values cross zero; they all count, so the two
    /// means still add up to the RTT mean.
    #[test]
    fn one_way_means_add_up_to_the_rtt_even_below_zero() {
        let mut p = PhaseResult::new(PhaseKind::Idle, 0.0, 1, Duration::from_millis(10));
        let rs: Vec<Reply> = (0..300)
            .map(|i| {
                let n = f64::from(i % 11) / 11.0 * 0.06 - 0.03;
                reply(f64::from(i) * 10.0, 0.02 + n, 0.02 - n / 2.0 + 0.01, 5.0)
            })
            .collect();
        let rtts: Vec<f64> = rs.iter().map(Reply::rtt_ms).collect();
        p.classes[0].add_replies(&rtts, &rs, 300, 0, false, false);
        let mut phases = vec![p];
        refit(&mut phases);
        let o = phases[0].owd.unwrap();
        let rtt = phases[0].latency().unwrap().mean;
        assert!(
            (o.up_mean_ms + o.down_mean_ms - rtt).abs() < 1e-3,
            "{o:?} vs {rtt}"
        );
    }

    /// The fit uses the quiet phases only: a queue standing through the whole download
    /// phase stays on the down side (a fit over loaded replies too split it both ways).
    #[test]
    fn one_way_from_the_quiet_phases_puts_a_standing_queue_down() {
        let mut phases = Vec::new();
        let mut t = 0.0;
        for (kind, down_queue) in [
            (PhaseKind::Idle, 0.0),
            (PhaseKind::Download, 300.0),
            (PhaseKind::Cooldown, 0.0),
        ] {
            let mut p = PhaseResult::new(kind, t / 1000.0, 1, Duration::from_millis(10));
            let rs: Vec<Reply> = (0..200)
                .map(|i| {
                    t += 10.0;
                    // 5 ms each way, +-0.5 ms of noise, the queue on the way down
                    let n = f64::from(i % 7) / 7.0 - 0.5;
                    reply(t, 5.0 + n, 5.0 - n + down_queue, 1e6)
                })
                .collect();
            let rtts: Vec<f64> = rs.iter().map(Reply::rtt_ms).collect();
            p.classes[0].add_replies(&rtts, &rs, 200, 0, false, false);
            phases.push(p);
        }
        assert_eq!(refit(&mut phases), Some(true));
        let idle = phases[0].owd.unwrap();
        let down = phases[1].owd.unwrap();
        assert!((idle.up_mean_ms - 5.0).abs() < 0.6, "{idle:?}");
        assert!(
            (down.down_mean_ms - idle.down_mean_ms - 300.0).abs() < 1.0,
            "{down:?}"
        );
        assert!((down.up_mean_ms - idle.up_mean_ms).abs() < 1.0, "{down:?}");
        // Without the quiet phases the fit is over loaded replies, and says so.
        let mut loaded = vec![phases[1].clone()];
        assert_eq!(refit(&mut loaded), Some(false));
    }

    fn phase(kind: PhaseKind, rtts: &[f64], tcp: &[f64]) -> PhaseResult {
        let mut p = PhaseResult::new(kind, 0.0, 1, Duration::from_millis(10));
        p.classes[0].add(rtts, rtts.len() as u64, 0, false, false);
        p.tcp_rtts = tcp.to_vec();
        p
    }

    #[test]
    fn phases_parse() {
        assert_eq!(
            parse_phases("idle,down,UP").unwrap(),
            [PhaseKind::Idle, PhaseKind::Download, PhaseKind::Upload]
        );
        assert!(parse_phases("idle,idle").unwrap_err().contains("twice"));
        let e = parse_phases("idle,sideways").unwrap_err();
        assert!(e.contains("'sideways'") && e.contains("cooldown"), "{e}");
    }

    #[test]
    fn collector_keeps_the_ramp_out_of_the_figures() {
        let mut c = Collector::default();
        c.add(&[100.0, 90.0], 3, 1, true, true);
        c.add(&[10.0, 12.0], 2, 0, false, true);
        c.add(&[11.0], 1, 0, false, false);
        assert_eq!((c.sent, c.lost, c.ramp_replies), (6, 1, 2));
        assert_eq!(c.rtts, [10.0, 12.0, 11.0]);
        assert_eq!(c.interval_trimmed_ms, [11.0]);
        assert_eq!(c.stats().unwrap().high, 12.0);
    }

    #[test]
    fn overall_by_hand() {
        // Idle mean 10; download mean 30 (+20), upload mean 110 (+100): grade increase 60: C.
        let phases = vec![
            phase(PhaseKind::Idle, &[9.0, 10.0, 11.0], &[]),
            phase(PhaseKind::Download, &[20.0, 30.0, 40.0], &[30.0]),
            phase(PhaseKind::Upload, &[100.0, 110.0, 120.0], &[90.0]),
            phase(PhaseKind::Cooldown, &[500.0], &[]),
        ];
        let o = Overall::of(&phases);
        assert_eq!(o.grade, Some("C"));
        assert_eq!(o.grade_increase_ms, Some(60.0));
        // Foreign: the mean of the six loaded RTTs (none trimmed under 20) = 70 -> 857.14 RPM;
        // self: mean of 30 and 90 = 60 -> 1000 RPM; overall (857.14 + 1000) / 2.
        let f = 60_000.0 / 70.0;
        assert!((o.rpm_foreign.unwrap() - f).abs() < 1e-9);
        assert_eq!(o.rpm_self, Some(1000.0));
        assert!((o.rpm.unwrap() - (f + 1000.0) / 2.0).abs() < 1e-9);
        // (857.14 + 1000) / 2 = 928.6: Fair.
        assert_eq!(o.rating, Some(Rating::Fair));
        // No one-second intervals were recorded: Low.
        assert_eq!(o.confidence, Confidence::Low);
        assert_eq!(increase(&phases, &phases[0], 0), None);
        assert_eq!(increase(&phases, &phases[3], 0), Some(490.0));
    }

    #[test]
    fn overall_without_probe_or_idle() {
        let phases = vec![phase(PhaseKind::Download, &[], &[5.0])];
        let o = Overall::of(&phases);
        assert_eq!(o.grade, None);
        assert_eq!(o.rpm_foreign, None);
        assert_eq!(o.rpm, Some(12_000.0));
        assert_eq!(o.confidence, Confidence::Low);
    }

    #[test]
    fn capacity_is_the_lowest_loaded_direction() {
        let mut d = phase(PhaseKind::Download, &[], &[]);
        d.rx_bps = Some(100e6);
        d.tx_bps = None;
        let mut u = phase(PhaseKind::Upload, &[], &[]);
        u.tx_bps = Some(20e6);
        u.rx_bps = None;
        assert_eq!(lowest_capacity(&[d.clone()]), Some(100e6));
        assert_eq!(lowest_capacity(&[d, u]), Some(20e6));
        assert_eq!(lowest_capacity(&[]), None);
    }
}
