//! Process concerns only: logging, the command line, signals, dispatch, output, exit codes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use btest::cli::{self, Mode};
use btest::config::{ClientConfig, ServerConfig};
use btest::export::csv::{self, CsvLog};
use btest::export::syslog::Syslog;
use btest::report;
use btest::Error;
#[cfg(feature = "client")]
use btest::{client, engine::Stop, export::syslog::Severity, report::ClientReporter};
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
        Mode::Client(c) => run_client(&c),
        Mode::Server(s) => run_server(*s),
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

#[cfg(feature = "client")]
fn run_client(cfg: &ClientConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let syslog = open_syslog(&cfg.syslog)?;
    let csv = cfg
        .csv
        .as_ref()
        .map(|p| CsvLog::new(p, csv::client_header()));
    let server = format!("{}:{}", cfg.host, cfg.port);
    let started = std::time::SystemTime::now();
    let start = report::start_record(&server, cfg.protocol, cfg.direction, cfg.connection_count);
    if let Some(s) = &syslog {
        s.send(
            Severity::Info,
            &format!("test start {}", start.key_values()),
        );
    }
    let stdout = std::io::stdout();
    let mut rep = ClientReporter::new(stdout.lock(), cfg.output);
    quiet_pipe(rep.start(&start))?;
    let stop = Stop::new();
    let (samples, handle) = client::spawn(cfg.clone(), stop.clone())?;
    loop {
        match samples.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => quiet_pipe(rep.sample(&s))?,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // The engine's status thread reacts to signals; before the session starts
                // (connect, handshake) we end the wait ourselves.
                if btest::sys::signalled() {
                    stop.trigger(btest::engine::StopReason::Shutdown);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    let result = handle.join().map_err(|_| Error::Internal {
        thread: "btest-client".into(),
    })?;
    // A test that ran gets its summary everywhere, then its verdict: a test that measured
    // nothing in an asked direction, or ended early, is a failure (exit 1) with its reason.
    let outcome = match result {
        Ok(r) => {
            let summary = report::summary_record(&r, &server, started);
            quiet_pipe(rep.summary(&summary))?;
            append_csv(&csv, summary.csv_cells());
            if let Some(s) = &syslog {
                s.send(Severity::Info, &report::client_summary_syslog(&summary));
            }
            r.outcome()
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &outcome {
        quiet_pipe(rep.error(&report::error_record(e)))?;
        if let Some(s) = &syslog {
            let sev = if matches!(e, Error::Auth { .. }) {
                Severity::Notice
            } else {
                Severity::Err
            };
            s.send(sev, &format!("test failed server={server}: {e}"));
        }
    }
    outcome
}

/// Where server events go: stdout, CSV, syslog.
#[cfg(feature = "server")]
struct ServerSinks {
    output: Output,
    csv: Option<CsvLog>,
    syslog: Option<Syslog>,
}

#[cfg(feature = "server")]
impl ServerSinks {
    fn emit(&self, ev: &ServerEvent) -> Result<(), Error> {
        if let Some(line) = report::server_event_line(ev, self.output) {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            quiet_pipe(writeln!(out, "{line}"))?;
            quiet_pipe(out.flush())?;
        }
        if let Some(row) = report::server_csv_row(ev) {
            append_csv(&self.csv, row);
        }
        if let Some(s) = &self.syslog {
            let (sev, msg) = report::server_event_syslog(ev);
            s.send(sev, &msg);
        }
        Ok(())
    }
}

#[cfg(feature = "server")]
fn run_server(cfg: ServerConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let sinks = ServerSinks {
        output: cfg.output,
        csv: cfg
            .csv
            .as_ref()
            .map(|p| CsvLog::new(p, csv::server_header())),
        syslog: open_syslog(&cfg.syslog)?,
    };
    let metrics_file = cfg.metrics_file.clone();
    let http_addr = cfg.http;
    let srv = server::Server::bind(cfg)?;
    // Bound before anything runs, so a busy port is a usage error at start, not later.
    #[cfg(feature = "http")]
    let http = match http_addr {
        Some(a) => Some(btest::http::HttpServer::bind(a).map_err(|e| {
            Error::Usage(format!(
                "--http {a}: cannot listen ({e}); choose another port or address"
            ))
        })?),
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
    while !btest::sys::signalled() && !handle.stopping() {
        if let Ok(ev) = handle.events().recv_timeout(Duration::from_millis(100)) {
            sinks.emit(&ev)?;
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
    let events = handle.events().clone();
    let handle = std::sync::Arc::try_unwrap(handle).map_err(|_| Error::Internal {
        thread: "btest-metrics".into(),
    })?;
    let stats = handle.shutdown(Duration::from_secs(1));
    // Sessions ended by the shutdown still get their line.
    for ev in events.try_iter() {
        sinks.emit(&ev)?;
    }
    log::info!("stopped: {} session(s) served", stats.sessions_started);
    Ok(())
}
