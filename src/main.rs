//! Process concerns only: logging, the command line, signals, dispatch, output, exit codes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use btest::cli::{self, Mode};
use btest::config::{ClientConfig, ServerConfig};
use btest::engine::Stop;
use btest::report::{self, ClientReporter};
use btest::{client, server, Error};

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
        Mode::Help(h) => {
            println!("{h}");
            Ok(())
        }
        Mode::Version => {
            println!("btest {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
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

fn run_client(cfg: &ClientConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let stdout = std::io::stdout();
    let mut rep = ClientReporter::new(stdout.lock(), cfg.output);
    quiet_pipe(rep.start(
        &format!("{}:{}", cfg.host, cfg.port),
        cfg.protocol,
        cfg.direction,
        cfg.connection_count,
    ))?;
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
    match result {
        Ok(r) => {
            quiet_pipe(rep.summary(&r, cfg.protocol, cfg.direction))?;
            if r.succeeded() {
                Ok(())
            } else {
                Err(Error::Refused(match r.summary.end_reason {
                    btest::engine::StopReason::PeerClosed => {
                        "the server closed the test early (its --max-duration, or it went away)"
                            .into()
                    }
                    btest::engine::StopReason::ControlTimeout => {
                        "the server stopped answering (no data or status for 10 s)".into()
                    }
                    ref other => format!("test ended: {}", other.as_str()),
                }))
            }
        }
        Err(e) => {
            quiet_pipe(rep.error(&e.to_string()))?;
            Err(e)
        }
    }
}

fn run_server(cfg: ServerConfig) -> Result<(), Error> {
    btest::sys::install_signal_handlers();
    let output = cfg.output;
    let srv = server::Server::bind(cfg)?;
    for a in srv.local_addrs() {
        log::warn!("listening on {a}");
    }
    let handle = srv.spawn()?;
    let stdout = std::io::stdout();
    while !btest::sys::signalled() && !handle.stopping() {
        if let Ok(rec) = handle.events().recv_timeout(Duration::from_millis(100)) {
            let mut out = stdout.lock();
            quiet_pipe(writeln!(out, "{}", report::session_line(&rec, output)))?;
            quiet_pipe(out.flush())?;
        }
    }
    let events = handle.events().clone();
    let stats = handle.shutdown(Duration::from_secs(1));
    // Sessions ended by the shutdown still get their line.
    let mut out = stdout.lock();
    for rec in events.try_iter() {
        quiet_pipe(writeln!(out, "{}", report::session_line(&rec, output)))?;
    }
    log::info!("stopped: {} session(s) served", stats.sessions_started);
    Ok(())
}
