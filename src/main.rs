//! Process concerns only: logging, the command line, signals, dispatch, output, exit codes.

use std::io::Write;
use std::process::ExitCode;
#[cfg(feature = "server")]
use std::time::Duration;

use btest::cli::{self, Mode};
use btest::config::{ClientConfig, ServerConfig};
use btest::export::csv::{self, CsvLog};
use btest::export::syslog::Syslog;
use btest::report;
use btest::Error;
#[cfg(feature = "server")]
use btest::{config::Output, export::metrics, server, server::ServerEvent};
#[cfg(feature = "client")]
use btest::{engine::Stop, export::syslog::Severity, report::ClientReporter};

fn main() -> ExitCode {
    let env_pw = std::env::var("BTEST_PASSWORD").ok();
    let inv = match cli::parse_from(std::env::args_os().skip(1), env_pw) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("btest: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    init_logging(inv.verbosity);
    let r = match inv.mode {
        // `btest --help | head` closes the pipe early: not an error (println! would panic).
        Mode::Help(h) => quiet_pipe(writeln!(std::io::stdout(), "{h}")),
        Mode::Version => quiet_pipe(writeln!(
            std::io::stdout(),
            "btest {}",
            env!("CARGO_PKG_VERSION")
        )),
        #[cfg(feature = "completions")]
        Mode::Completions(sh) => quiet_pipe(write!(std::io::stdout(), "{}", cli::completions(sh))),
        #[cfg(not(feature = "completions"))]
        Mode::Completions(_) => Ok(()),
        Mode::Client(c) => run_client(&c),
        Mode::Server(s) => run_server(*s),
        Mode::Fleet(f) => run_fleet(&f),
        Mode::Through(t) => run_through(&t),
        #[cfg(feature = "speedtest")]
        Mode::SpeedTest(t) => run_speed_test(&t),
        #[cfg(feature = "exporter")]
        Mode::Exporter(x) => run_exporter(&x),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("btest: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn init_logging(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format(|buf, rec| {
            let t = std::thread::current();
            writeln!(
                buf,
                "btest[{}] {}: {}",
                t.name().unwrap_or("?"),
                rec.level().as_str().to_lowercase(),
                rec.args()
            )
        })
        .target(env_logger::Target::Stderr)
        .init();
}

/// Output errors (a closed pipe) end the program quietly, as ripgrep does.
fn quiet_pipe(r: std::io::Result<()>) -> Result<(), Error> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        _ => Ok(()),
    }
}

fn open_syslog(target: &Option<String>) -> Result<Option<Syslog>, Error> {
    target
        .as_deref()
        .map(|t| Syslog::new(t, "btest").map_err(|e| Error::Usage(format!("--syslog: {e}"))))
        .transpose()
}

fn append_csv(log: &Option<CsvLog>, row: Vec<String>) {
    if let Some(l) = log {
        if let Err(e) = l.append(&row) {
            log::warn!("--csv {}: {e}", l.path().display());
        }
    }
}

#[cfg(not(feature = "client"))]
fn run_client(_: &ClientConfig) -> Result<(), Error> {
    Err(Error::Usage(
        "this btest was built without the client role (cargo feature 'client')".into(),
    ))
}

#[cfg(not(feature = "server"))]
fn run_server(_: ServerConfig) -> Result<(), Error> {
    Err(Error::Usage(
        "this btest was built without the server role (cargo feature 'server')".into(),
    ))
}

/// A closed stdout ends the program quietly (as [`quiet_pipe`]); other output errors fail it.
#[cfg(feature = "client")]
fn output<T>(r: std::io::Result<T>) -> Result<T, Error> {
    r.map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0)
        }
        Error::Usage(format!("cannot write the output: {e}"))
    })
}

/// Writes a report file whole, or says why not.
#[cfg(feature = "report")]
fn write_report(path: &std::path::Path, html: &str) -> Result<(), Error> {
    std::fs::write(path, html).map_err(|e| {
        Error::Usage(format!(
            "--report {}: cannot write the report: {e}; check the directory exists and is writable",
            path.display()
        ))
    })
}

/// Opens `--syslog` (before the test, so a typo costs no test) and says the test starts.
#[cfg(feature = "client")]
fn start_syslog(cfg: &ClientConfig) -> Result<Option<Syslog>, Error> {
    let syslog = open_syslog(&cfg.syslog)?;
    if let Some(s) = &syslog {
        let start = btest::run::start_record(cfg);
        s.send(
            Severity::Info,
            &format!("test start {}", start.key_values()),
        );
    }
    Ok(syslog)
}

/// After a test: its CSV row, syslog lines, HTML report; then its verdict.
#[cfg(feature = "client")]
#[cfg_attr(not(feature = "report"), allow(unused_variables))]
fn finish_test(
    cfg: &ClientConfig,
    run: btest::run::TestRun,
    syslog: Option<Syslog>,
    params: Option<Vec<(String, String)>>,
) -> Result<(), Error> {
    if let Some(summary) = &run.summary {
        if let Some(p) = &cfg.csv {
            append_csv(
                &Some(CsvLog::new(p, csv::client_header())),
                summary.csv_cells(),
            );
        }
        if let Some(s) = &syslog {
            s.send(Severity::Info, &report::client_summary_syslog(summary));
        }
    }
    #[cfg(feature = "report")]
    if let Some(path) = &cfg.report {
        write_report(path, &btest::export::params::test_html(cfg, &run, params))?;
    }
    if let (Err(e), Some(s)) = (&run.outcome, &syslog) {
        let sev = if matches!(e, Error::Auth { .. }) {
            Severity::Notice
        } else {
            Severity::Err
        };
        s.send(sev, &format!("test failed server={}: {e}", run.server));
    }
    run.outcome
}

#[cfg(feature = "client")]
fn run_client(cfg: &ClientConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let syslog = start_syslog(cfg)?;
    let mut rep = ClientReporter::for_config(btest::run::Out::stdout(), cfg);
    let run = output(btest::run::run(cfg, &Stop::new(), &mut rep))?;
    finish_test(cfg, run, syslog, None)
}

/// `btest speed-test`: text (a block per phase as it ends, then the result) or NDJSON
/// (`phase` records, then `speed_test`, then `error` when it failed), the CSV rows and the
/// HTML report.
#[cfg(feature = "speedtest")]
fn run_speed_test(cfg: &btest::speedtest::SpeedTestConfig) -> Result<(), Error> {
    use btest::report::speedtest as rs;
    use btest::speedtest::{self as st, Progress};
    btest::sys::install_signal_handlers();
    let json = cfg.client.output == btest::config::Output::Json;
    let mut out = std::io::stdout();
    if !json {
        output(rs::head(&mut out, cfg))?;
    }
    let res = output(st::run(cfg, &Stop::new(), &mut |p| {
        let mut o = std::io::stdout().lock();
        match p {
            Progress::Note(n) if !json => writeln!(o, "note: {n}")?,
            Progress::Note(_) => {}
            Progress::Start(k) => log::info!("speed-test: {} phase", k.as_str()),
            Progress::Done(classes, phases) if json => {
                if let Some(last) = phases.last() {
                    writeln!(o, "{}", rs::phase_record(classes, phases, last).to_json())?;
                }
            }
            Progress::Done(classes, phases) => rs::phase_text(&mut o, classes, phases)?,
        }
        o.flush()
    }))?;
    let overall = st::Overall::of(&res.phases);
    if !res.phases.is_empty() {
        let r = rs::speed_test_record(&res, &overall);
        if json {
            output(writeln!(out, "{}", r.to_json()))?;
        } else {
            output(rs::result_text(&mut out, &res, &overall))?;
        }
        if let Some(p) = &cfg.client.csv {
            let log = Some(CsvLog::new(p, rs::CSV_HEADER.to_vec()));
            for row in rs::csv_rows(&res, &overall) {
                append_csv(&log, row);
            }
        }
        #[cfg(feature = "report")]
        if let Some(path) = &cfg.client.report {
            write_report(
                path,
                &btest::export::params::speed_test_html(cfg, &res, &overall),
            )?;
        }
    }
    if let Err(e) = &res.outcome {
        if json {
            output(writeln!(out, "{}", report::error_record(e).to_json()))?;
        }
    }
    res.outcome
}

#[cfg(feature = "through")]
fn run_through(cfg: &btest::config::ThroughConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let syslog = start_syslog(&cfg.client)?;
    let run = btest::through::run(
        cfg,
        &Stop::new(),
        ClientReporter::for_config(btest::run::Out::stdout(), &cfg.client),
    )?;
    #[cfg(feature = "report")]
    let params = Some(btest::export::params::through_params(cfg));
    #[cfg(not(feature = "report"))]
    let params = None;
    finish_test(&cfg.client, run, syslog, params)
}

#[cfg(not(feature = "through"))]
fn run_through(_: &btest::config::ThroughConfig) -> Result<(), Error> {
    Err(Error::Usage(
        "this btest was built without btest through (cargo feature 'through')".into(),
    ))
}

/// `btest exporter`: serve until SIGINT or SIGTERM, then stop the running tests and the
/// listener (bounded: the tests end at their stop, the answers have a write deadline).
#[cfg(feature = "exporter")]
fn run_exporter(cfg: &btest::config::ExporterConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let served = btest::exporter::start(cfg)?;
    eprintln!(
        "btest exporter: {} target(s) from {}, listening on {}",
        served.exporter().targets(),
        cfg.targets.display(),
        served.local_addr()
    );
    while !btest::sys::signalled() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    served.shutdown();
    Ok(())
}

#[cfg(not(feature = "fleet"))]
fn run_fleet(_: &btest::config::FleetConfig) -> Result<(), Error> {
    Err(Error::Usage(
        "this btest was built without fleet runs (cargo feature 'fleet')".into(),
    ))
}

#[cfg(feature = "fleet")]
fn run_fleet(fc: &btest::config::FleetConfig) -> Result<(), Error> {
    use btest::fleet::{self, Progress};
    btest::sys::install_signal_handlers();
    let targets = fleet::load(fc)?;
    let mut files = fleet::Outputs::open(fc)?;
    let n = targets.len();
    eprintln!("{}", report::fleet::start_line(fc, n));
    let mut finished = 0;
    let mut io_err = None;
    let done = output(fleet::run_all(fc, &targets, |p| match p {
        Progress::Retry {
            target,
            attempt,
            error,
        } => eprintln!(
            "{}",
            report::fleet::retry_line(fc, &target.name, attempt, error)
        ),
        Progress::Done(d, t) => {
            finished += 1;
            let r = &d.record;
            let ok = d.run.outcome.is_ok();
            eprintln!("{}", report::fleet::done_line(finished, n, &t.name, r, ok));
            let mut w = || -> std::io::Result<()> {
                if fc.output == btest::config::Output::Json {
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "{}", r.to_json())?;
                    o.flush()?;
                }
                files.write(r)
            };
            if let Err(e) = w() {
                io_err.get_or_insert(e);
            }
        }
    }))?;
    if let Some(e) = io_err {
        output::<()>(Err(e))?;
    }
    if fc.output == btest::config::Output::Text {
        let rows: Vec<_> = done
            .iter()
            .map(|d| (&d.record, d.run.outcome.is_ok()))
            .collect();
        output(report::fleet::matrix(&mut std::io::stdout().lock(), &rows))?;
    }
    #[cfg(not(feature = "report"))]
    if fc.report.is_some() {
        return Err(Error::Usage(
            "--report: this btest was built without HTML reports (cargo feature 'report')".into(),
        ));
    }
    #[cfg(feature = "report")]
    if let Some(path) = &fc.report {
        let html = btest::export::params::fleet_html(fc, &targets, &done);
        write_report(path, &html)?;
    }
    let failed = done.iter().filter(|d| d.run.outcome.is_err()).count();
    let skipped = n - done.len();
    if failed == 0 && skipped == 0 {
        return Ok(());
    }
    Err(Error::SomeFailed(match skipped {
        0 => format!("fleet: {failed} of {n} target(s) failed (see the error column)"),
        s => format!("fleet: {failed} of {n} target(s) failed, {s} not tested (interrupted)"),
    }))
}

/// Where server events go: stdout (through its own writer thread), CSV, syslog.
#[cfg(feature = "server")]
struct ServerSinks {
    output: Output,
    csv: Option<CsvLog>,
    syslog: Option<Syslog>,
    stdout: btest::export::stdout::LineOut,
}

#[cfg(feature = "server")]
impl ServerSinks {
    /// Never blocks on stdout: a line that cannot be queued is dropped and counted.
    fn emit(&self, ev: &ServerEvent) {
        if let Some(row) = report::server_csv_row(ev) {
            append_csv(&self.csv, row);
        }
        if let Some(s) = &self.syslog {
            let (sev, msg) = report::server_event_syslog(ev);
            s.send(sev, &msg);
        }
        if let Some(line) = report::server_event_line(ev, self.output) {
            self.stdout.send(line);
        }
    }
}

/// The `btest-events` thread: every server event to the sinks until `done` is set, then
/// whatever is still queued (the sessions a shutdown ended). A 100 ms poll rather than a
/// `select!` over two channels: the macro cost the router image about 20 KiB.
#[cfg(feature = "server")]
fn spawn_events(
    sinks: ServerSinks,
    events: crossbeam_channel::Receiver<ServerEvent>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<ServerSinks>> {
    btest::thread::spawn_named("btest-events", None, move || {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(ev) = events.recv_timeout(Duration::from_millis(100)) {
                sinks.emit(&ev);
            }
        }
        for ev in events.try_iter() {
            sinks.emit(&ev);
        }
        sinks
    })
}

#[cfg(feature = "server")]
fn run_server(cfg: ServerConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    btest::sys::install_hangup_handler();
    let sinks = ServerSinks {
        output: cfg.output,
        csv: cfg
            .csv
            .as_ref()
            .map(|p| CsvLog::new(p, csv::server_header())),
        syslog: open_syslog(&cfg.syslog)?,
        stdout: btest::export::stdout::LineOut::spawn().map_err(|e| Error::Internal {
            thread: format!("btest-stdout ({e})"),
        })?,
    };
    let metrics_file = cfg.metrics_file.clone();
    let http_addr = cfg.http;
    #[cfg(feature = "http")]
    let http_hosts = cfg.http_hosts.clone();
    let srv = server::Server::bind(cfg)?;
    // Bound before anything runs, so a busy port is a usage error at start, not later.
    #[cfg(feature = "http")]
    let http = match http_addr {
        Some(a) => Some(
            btest::http::HttpServer::bind(a)
                .map_err(|e| {
                    Error::Usage(format!(
                        "--http {a}: cannot listen ({e}); choose another port or address"
                    ))
                })?
                .allow_hosts(&http_hosts),
        ),
        None => None,
    };
    #[cfg(not(feature = "http"))]
    if http_addr.is_some() {
        return Err(Error::Usage(
            "--http: this btest was built without the web interface (cargo feature 'http')".into(),
        ));
    }
    // Not a log line: the address (with the real port for port 0) is for the user and for
    // scripts, whatever the log level.
    for a in srv.local_addrs() {
        eprintln!("btest: listening on {a}");
    }
    // Its own line after them: scripts take the address as the last word of those.
    eprintln!("btest: {}", srv.login());
    let handle = std::sync::Arc::new(srv.spawn()?);
    #[cfg(feature = "http")]
    let http_stop = btest::engine::Stop::new();
    #[cfg(feature = "http")]
    let http = match http {
        Some(h) => {
            eprintln!("btest: http on http://{}/", h.local_addr());
            Some(
                h.spawn(
                    handle.http_handler(),
                    btest::http::Limits::default(),
                    http_stop.clone(),
                )
                .map_err(|e| Error::Usage(format!("--http: cannot start its thread: {e}")))?,
            )
        }
        None => None,
    };
    let (metrics_stop, metrics_rx) = crossbeam_channel::bounded::<()>(0);
    let writer = match metrics_file {
        Some(path) => {
            let h = handle.clone();
            let gauges = move || {
                let s = h.stats();
                (s.active_sessions as u64, s.udp_ports_in_use as u64)
            };
            Some(
                metrics::spawn_writer(
                    handle.metrics(),
                    path.clone(),
                    Duration::from_secs(1),
                    metrics_rx,
                    gauges,
                )
                .map_err(|e| Error::Usage(format!("--metrics-file {}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    // Events go to their sinks on btest-events; this thread only watches the signals, so
    // nothing it does can block on a reader of stdout (issue 18).
    let events_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let events =
        spawn_events(sinks, handle.events().clone(), events_done.clone()).map_err(|e| {
            Error::Internal {
                thread: format!("btest-events ({e})"),
            }
        })?;
    while !btest::sys::signalled() && !handle.stopping() {
        std::thread::sleep(Duration::from_millis(50));
        if btest::sys::take_hangup() {
            match handle.reload() {
                Ok(what) => log::info!("SIGHUP: {what}"),
                Err(e) => log::warn!("SIGHUP: the users file was not reloaded, the old accounts and limits stay: {e}"),
            }
        }
    }
    drop(metrics_stop);
    if let Some(w) = writer {
        let _ = w.join();
    }
    #[cfg(feature = "http")]
    {
        http_stop.trigger(btest::engine::StopReason::Shutdown);
        if let Some(h) = http {
            h.join();
        }
    }
    let handle = std::sync::Arc::try_unwrap(handle).map_err(|_| Error::Internal {
        thread: "btest-metrics".into(),
    })?;
    let dropped = handle.events_dropped();
    // Ends every session (their records queue up) and writes the usage (accounting flush).
    let stats = handle.shutdown(Duration::from_secs(1));
    // Sessions ended by the shutdown still get their records: CSV and syslog at once, stdout
    // if its reader takes them within a moment (it never holds the exit longer).
    events_done.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Ok(sinks) = events.join() {
        sinks.stdout.finish(Duration::from_millis(300));
    }
    if dropped > 0 {
        log::warn!("{dropped} session record(s) were dropped: the output did not keep up");
    }
    log::info!("stopped: {} session(s) served", stats.sessions_started);
    Ok(())
}
