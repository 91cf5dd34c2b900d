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
#[cfg(feature = "client")]
use btest::{config::Live, engine::Stop, export::syslog::Severity, report::ClientReporter};
#[cfg(feature = "server")]
use btest::{config::Output, export::metrics, server, server::ServerEvent};

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

/// The reporter of a single test: text or JSON on stdout, the live view on a terminal.
#[cfg(feature = "client")]
fn reporter(cfg: &ClientConfig) -> ClientReporter<btest::run::Out> {
    let rep = ClientReporter::new(btest::run::Out::stdout(), cfg.output)
        .with_latency(cfg.latency != btest::config::Latency::Off)
        .with_columns(text_columns())
        // The pacing audit is for developers (issue 19): -v turns on info logging.
        .with_pacing(log::log_enabled!(log::Level::Info));
    #[cfg(feature = "tty")]
    let rep = {
        use std::io::IsTerminal;
        let live = match cfg.live {
            Live::No => false,
            Live::Yes => true,
            Live::Auto => std::io::stdout().is_terminal(),
        } && cfg.output == btest::config::Output::Text;
        rep.with_live(live.then(|| {
            btest::termview::LiveView::new(
                btest::sys::terminal_columns().unwrap_or(80),
                cfg.direction.we_transmit(btest::wire::Side::Client),
                cfg.direction.we_receive(btest::wire::Side::Client),
            )
        }))
    };
    #[cfg(not(feature = "tty"))]
    if cfg.live == Live::Yes {
        log::warn!("--live: this btest was built without the live view (cargo feature 'tty')");
    }
    rep
}

/// Columns the text lines may use: `COLUMNS` when set (as ls(1): an explicit ask, e.g.
/// `COLUMNS=160` for the wide interval lines in a pipe), else the terminal's, else 80.
#[cfg(feature = "client")]
fn text_columns() -> u16 {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .or_else(btest::sys::terminal_columns)
        .unwrap_or(80)
}

/// The parameters a report shows, in the order a reader looks for them.
#[cfg(feature = "report")]
fn test_params(cfg: &ClientConfig) -> Vec<(String, String)> {
    use btest::units::format_rate;
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
    if cfg.protocol == btest::wire::Protocol::Udp {
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

#[cfg(feature = "report")]
fn html_test<'a>(
    cfg: &ClientConfig,
    run: &'a btest::run::TestRun,
    error: Option<&'a btest::record::Record>,
) -> btest::export::html::TestReport<'a> {
    btest::export::html::TestReport {
        title: format!(
            "btest {} {} to {}",
            cfg.protocol.as_str(),
            cfg.direction.client_word(),
            run.server
        ),
        generated: btest::export::csv::rfc3339_utc(std::time::SystemTime::now()),
        params: test_params(cfg),
        intervals: &run.intervals,
        summary: run.summary.as_ref(),
        error,
    }
}

/// Opens `--syslog` (before the test, so a typo costs no test) and says the test starts.
#[cfg(feature = "client")]
fn start_syslog(cfg: &ClientConfig) -> Result<Option<Syslog>, Error> {
    let syslog = open_syslog(&cfg.syslog)?;
    if let Some(s) = &syslog {
        let start = btest::run::TestRun::new(cfg).start;
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
        let err = run.error_record();
        let mut t = html_test(cfg, &run, err.as_ref());
        if let Some(p) = params {
            t.params = p;
        }
        write_report(path, &btest::export::html::render_test(&t))?;
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
    let mut rep = reporter(cfg);
    let run = output(btest::run::run(cfg, &Stop::new(), &mut rep))?;
    finish_test(cfg, run, syslog, None)
}

#[cfg(feature = "through")]
fn run_through(cfg: &btest::config::ThroughConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let syslog = start_syslog(&cfg.client)?;
    let run = btest::through::run(cfg, &Stop::new(), reporter(&cfg.client))?;
    #[cfg(feature = "report")]
    let params = Some(through_params(cfg));
    #[cfg(not(feature = "report"))]
    let params = None;
    finish_test(&cfg.client, run, syslog, params)
}

/// The report's parameters of a through test: the client's, and where each side ran.
#[cfg(all(feature = "report", feature = "through"))]
fn through_params(cfg: &btest::config::ThroughConfig) -> Vec<(String, String)> {
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

#[cfg(not(feature = "through"))]
fn run_through(_: &btest::config::ThroughConfig) -> Result<(), Error> {
    Err(Error::Usage(
        "this btest was built without btest through (cargo feature 'through')".into(),
    ))
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
    use btest::record::{Kind, Record};
    btest::sys::install_signal_handlers();
    let text = std::fs::read_to_string(&fc.file)
        .map_err(|e| Error::Usage(format!("fleet: cannot read {}: {e}", fc.file.display())))?;
    let dir = fc
        .file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let targets = fleet::parse(&text, dir)
        .map_err(|e| Error::Usage(format!("fleet: {}: {e}", fc.file.display())))?;
    // Output files are opened before the first test, so a typo costs no test. Both are
    // appended to, as the client's --csv is: a nightly fleet run adds to one history.
    let open = |p: &std::path::PathBuf, what: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .map_err(|e| {
                Error::Usage(format!(
                    "fleet: --{what} {}: cannot open it: {e}",
                    p.display()
                ))
            })
    };
    let mut ndjson = fc.ndjson.as_ref().map(|p| open(p, "ndjson")).transpose()?;
    let csvlog = match &fc.csv {
        Some(p) => {
            open(p, "csv")?;
            Some(CsvLog::new(p, Record::csv_header(Kind::Target)))
        }
        None => None,
    };
    let n = targets.len();
    eprintln!(
        "btest fleet: {n} target(s) from {}, {} at a time, {} retr{} each",
        fc.file.display(),
        fc.parallel.min(n),
        fc.retries,
        if fc.retries == 1 { "y" } else { "ies" }
    );
    let mut finished = 0;
    let mut io_err = None;
    let done = output(fleet::run_all(fc, &targets, |p| match p {
        Progress::Retry {
            target,
            attempt,
            error,
        } => eprintln!(
            "btest fleet: {} attempt {attempt} failed: {error}; retrying in {:?}",
            target.name, fc.retry_delay
        ),
        Progress::Done(d, t) => {
            finished += 1;
            let r = &d.record;
            let rate = |k: &str| {
                r.get(k)
                    .as_f64()
                    .map_or("-".to_string(), btest::units::format_rate)
            };
            let ms = |k: &str| r.get(k).as_f64().map_or("-".into(), |v| format!("{v:.1}"));
            if d.run.outcome.is_ok() {
                eprintln!(
                    "btest fleet: [{finished}/{n}] {} ok: up {} down {} rtt idle {} loaded {} ms",
                    t.name,
                    rate("up_bps"),
                    rate("down_bps"),
                    ms("idle_rtt_ms"),
                    ms("loaded_rtt_ms")
                );
            } else {
                eprintln!(
                    "btest fleet: [{finished}/{n}] {} FAILED after {} attempt(s): {}",
                    t.name,
                    r.text("attempts"),
                    r.text("error")
                );
            }
            let mut w = || -> std::io::Result<()> {
                if fc.output == btest::config::Output::Json {
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "{}", r.to_json())?;
                    o.flush()?;
                }
                if let Some(f) = &mut ndjson {
                    writeln!(f, "{}", r.to_json())?;
                }
                if let Some(l) = &csvlog {
                    l.append(&r.csv_cells())?;
                }
                Ok(())
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
        output(btest::report::fleet_matrix(
            &mut std::io::stdout().lock(),
            &rows,
        ))?;
    }
    #[cfg(not(feature = "report"))]
    if fc.report.is_some() {
        return Err(Error::Usage(
            "--report: this btest was built without HTML reports (cargo feature 'report')".into(),
        ));
    }
    #[cfg(feature = "report")]
    if let Some(path) = &fc.report {
        let errors: Vec<Option<Record>> = done.iter().map(|d| d.run.error_record()).collect();
        let entries: Vec<btest::export::html::FleetEntry> = done
            .iter()
            .zip(&errors)
            .map(|(d, e)| btest::export::html::FleetEntry {
                target: &d.record,
                test: html_test(&targets[d.index].cfg, &d.run, e.as_ref()),
            })
            .collect();
        let params = vec![
            ("targets file".to_string(), fc.file.display().to_string()),
            ("targets".to_string(), n.to_string()),
            ("parallel".to_string(), fc.parallel.to_string()),
            ("retries".to_string(), fc.retries.to_string()),
            ("retry delay".to_string(), format!("{:?}", fc.retry_delay)),
        ];
        let html = btest::export::html::render_fleet(
            &format!("btest fleet: {}", fc.file.display()),
            &btest::export::csv::rfc3339_utc(std::time::SystemTime::now()),
            &params,
            &entries,
        );
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
