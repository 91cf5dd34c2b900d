//! `btest fleet FILE` (issue 11): reads the targets file, runs each target's test through
//! run.rs one after another or a bounded few at a time (threads `btest-fleet-K`), retries what
//! a retry can fix, and turns every target's last attempt into one `target` record: the
//! results matrix the caller prints; [`Outputs`] appends the records to the `--ndjson` and
//! `--csv` files.
//!
//! The file parser ([`parse`]) is pure and table-tested. Must not: print (progress goes to the
//! caller's callback), or retry what cannot pass on a retry (wrong credentials, a peer that
//! is not btest, usage errors).

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::cli::{self, Mode};
use crate::config::{ClientConfig, FleetConfig, Live, Output};
use crate::engine::{Stop, StopReason};
use crate::error::Error;
use crate::record::{field as F, Kind, Record, Value};
use crate::report::ClientReporter;
use crate::run::{self, TestRun};
use crate::wire::Protocol;
use crate::wire::Side;

/// Reads and parses `fc`'s targets file (relative paths in it are from its directory).
pub fn load(fc: &FleetConfig) -> Result<Vec<Target>, Error> {
    let text = std::fs::read_to_string(&fc.file)
        .map_err(|e| Error::Usage(format!("fleet: cannot read {}: {e}", fc.file.display())))?;
    let dir = fc
        .file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse_with(&text, dir, fc.speed_test)
        .map_err(|e| Error::Usage(format!("fleet: {}: {e}", fc.file.display())))
}

/// The fleet's output files (`--ndjson`, `--csv`): one line or row per `target` record.
pub struct Outputs {
    ndjson: Option<std::fs::File>,
    csv: Option<crate::export::csv::CsvLog>,
}

impl Outputs {
    /// Opens them before the first test, so a typo costs no test. Both are appended to, as
    /// the client's --csv is: a nightly fleet run adds to one history.
    pub fn open(fc: &FleetConfig) -> Result<Outputs, Error> {
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
        let ndjson = fc.ndjson.as_ref().map(|p| open(p, "ndjson")).transpose()?;
        let csv = match &fc.csv {
            Some(p) => {
                open(p, "csv")?;
                let header = Record::csv_header(Kind::Target);
                Some(crate::export::csv::CsvLog::new(p, header))
            }
            None => None,
        };
        Ok(Outputs { ndjson, csv })
    }

    /// A finished target's record.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        if let Some(f) = &mut self.ndjson {
            use std::io::Write;
            writeln!(f, "{}", r.to_json())?;
        }
        if let Some(l) = &self.csv {
            l.append(&r.csv_cells())?;
        }
        Ok(())
    }
}

/// One line of the targets file.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Its name, unique in the file.
    pub name: String,
    /// Line number, for messages.
    pub line: usize,
    /// The test, as `btest client` would run it.
    pub cfg: ClientConfig,
    /// Its own `--retries`, instead of the fleet's.
    pub retries: Option<u32>,
    /// `mode=speed-test` (or `btest fleet --speed-test`): run `btest speed-test` instead;
    /// `cfg` is then its client part.
    #[cfg(feature = "speedtest")]
    pub speed_test: Option<Box<crate::speedtest::SpeedTestConfig>>,
}

/// Splits a line into words: blanks separate, `'...'` and `"..."` quote, `\` escapes the next
/// character outside single quotes, `#` at the start of a word comments out the rest.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unclosed ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("unclosed \" quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unclosed \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("a line may not end in \\".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Client options a target line may not carry: they are the fleet's.
const FLEET_ONLY: [(&str, &str); 4] = [
    ("--report", "btest fleet FILE --report FILE"),
    ("--csv", "btest fleet FILE --csv FILE"),
    ("--json", "btest fleet FILE --json"),
    ("--live", "nothing: a fleet shows progress on stderr"),
];

/// `USER:PASSWORD` on the first line of a file only its owner can read.
pub fn read_credentials(path: &Path) -> Result<(String, String), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("--credentials {}: cannot read it: {e}", path.display()))?;
    // Unix mode bits only (issue 21): Windows ACLs are not checked, and we say so.
    let mode = crate::sys::file_mode(&meta).unwrap_or_else(|| {
        log::warn!(
            "--credentials {}: file permissions are not checked on this system",
            path.display()
        );
        0
    });
    if mode & 0o077 != 0 {
        return Err(format!(
            "--credentials {}: other users can read it; run chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--credentials {}: cannot read it: {e}", path.display()))?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    match first.trim_end_matches('\r').split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(format!(
            "--credentials {}: expected USER:PASSWORD on its first line",
            path.display()
        )),
    }
}

/// Parses the targets file. `dir` is the file's directory: relative `--credentials` paths are
/// taken from there, as a reader of the file would expect. Errors name the line.
pub fn parse(text: &str, dir: &Path) -> Result<Vec<Target>, String> {
    parse_with(text, dir, false)
}

/// [`parse`], with every target a speed test when `speed_test` (`btest fleet --speed-test`).
/// A line's `mode=speed-test` (or `--mode speed-test`) makes that target one; `mode=test` a
/// plain test.
pub fn parse_with(text: &str, dir: &Path, speed_test: bool) -> Result<Vec<Target>, String> {
    let mut defaults: Vec<String> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |e: String| format!("line {line}: {e}");
        let w = words(raw).map_err(at)?;
        let Some(first) = w.first() else { continue };
        if first == "defaults" {
            if !targets.is_empty() {
                return Err(at("'defaults' must come before the first target".into()));
            }
            defaults.extend(w[1..].iter().cloned());
            continue;
        }
        let name = first.clone();
        if name.starts_with('-') {
            return Err(at(format!(
                "expected NAME HOST[:PORT] [OPTIONS], got the option '{name}' first"
            )));
        }
        let host = w
            .get(1)
            .filter(|h| !h.starts_with('-'))
            .ok_or_else(|| at(format!("target '{name}' has no HOST[:PORT] after its name")))?;
        if targets.iter().any(|t| t.name == name) {
            return Err(at(format!("the name '{name}' is used twice")));
        }
        let mut args = vec!["client".to_string(), host.clone()];
        let mut speed = speed_test;
        let mut retries = None;
        let mut creds = None;
        let mut opts = defaults.iter().chain(&w[2..]);
        while let Some(o) = opts.next() {
            // Asked of the flag table, so `--csv=x`, `csv=x` and an alias are `--csv` too
            // (they used to pass and be ignored, review B3).
            let name = cli::flag_name(o);
            if let Some((flag, instead)) =
                FLEET_ONLY.iter().find(|(f, _)| name.as_deref() == Some(*f))
            {
                return Err(at(format!("{flag} is a fleet option here; use {instead}")));
            }
            // The target's own options, as `--x V`, `--x=V` or `x=V`.
            let (own, inline) = match o.split_once('=') {
                Some((n, v)) => (n.trim_start_matches("--"), Some(v.to_string())),
                None => (o.strip_prefix("--").unwrap_or(""), None),
            };
            match own {
                "credentials" => {
                    let p = inline
                        .or_else(|| opts.next().cloned())
                        .ok_or_else(|| at("--credentials: missing FILE".into()))?;
                    creds = Some(dir.join(p));
                }
                "mode" => {
                    let v = inline
                        .or_else(|| opts.next().cloned())
                        .ok_or_else(|| at("--mode: missing test|speed-test".into()))?;
                    speed = match v.as_str() {
                        "speed-test" => true,
                        "test" => false,
                        _ => {
                            return Err(at(format!(
                                "mode: '{v}' is not a mode: expected test or speed-test"
                            )))
                        }
                    };
                }
                "retries" => {
                    let v = inline
                        .or_else(|| opts.next().cloned())
                        .ok_or_else(|| at("--retries: missing N".into()))?;
                    retries = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|n| *n <= 10)
                            .ok_or_else(|| at(format!("--retries: '{v}' is not 0..10")))?,
                    );
                }
                _ => args.push(o.clone()),
            }
        }
        if let Some(p) = &creds {
            let (u, pw) = read_credentials(p).map_err(at)?;
            args.extend(["--user".into(), u, "--password".into(), pw]);
        }
        if speed {
            if !cfg!(feature = "speedtest") {
                return Err(at(format!(
                    "target '{name}': mode=speed-test: this btest was built without it (cargo \
                     feature 'speedtest')"
                )));
            }
            args[0] = "speed-test".into();
        }
        let inv = cli::parse_from(args, None).map_err(|e| at(format!("target '{name}': {e}")))?;
        #[cfg(feature = "speedtest")]
        let mut speed_test = None;
        let mut cfg = match inv.mode {
            Mode::Client(c) => c,
            #[cfg(feature = "speedtest")]
            Mode::SpeedTest(st) => {
                let c = Box::new(st.client.clone());
                speed_test = Some(st);
                c
            }
            _ => return Err(at(format!("target '{name}': not a client test"))),
        };
        cfg.live = Live::No;
        cfg.output = Output::Json;
        targets.push(Target {
            name,
            line,
            cfg: *cfg,
            retries,
            #[cfg(feature = "speedtest")]
            speed_test,
        });
    }
    if targets.is_empty() {
        return Err("no targets: expected lines of NAME HOST[:PORT] [OPTIONS]".into());
    }
    Ok(targets)
}

/// Whether another attempt may pass: a wrong password, a peer that is not a btest server, or
/// a usage error fail the same way every time.
pub fn retryable(e: &Error) -> bool {
    !matches!(
        e,
        Error::Usage(_) | Error::Auth { .. } | Error::Protocol { .. } | Error::Internal { .. }
    )
}

/// What one target came to.
#[derive(Debug)]
pub struct Done {
    /// Position in the file.
    pub index: usize,
    /// Its `target` record.
    pub record: Record,
    /// Its last attempt.
    pub run: TestRun,
}

/// What the fleet tells its caller as it goes.
pub enum Progress<'a> {
    /// An attempt failed and another follows after the delay.
    Retry {
        /// The target.
        target: &'a Target,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Why, as the error prints.
        error: &'a str,
    },
    /// A target is finished.
    Done(&'a Done, &'a Target),
}

/// The `target` record of a target's last attempt.
pub fn target_record(t: &Target, attempts: u32, run: &TestRun) -> Record {
    target_record_with(t, attempts, run, None)
}

/// [`target_record`] of a speed test: `st` is its `speed_test` record (grade, RPM, rating,
/// confidence, the download and upload rates).
pub fn target_record_with(t: &Target, attempts: u32, run: &TestRun, st: Option<&Record>) -> Record {
    let s = run.summary.as_ref();
    let get = |k: &crate::record::Field| s.map_or(Value::Null, |s| s.get(k).clone());
    let dir = t.cfg.direction;
    let udp = t.cfg.protocol == Protocol::Udp;
    // The summary's figures (issue 19: one definition of loss for text, JSON, CSV and fleet).
    let up_loss = get(&F::TX_LOSS_PCT);
    let down_loss = get(&F::RX_LOSS_PCT);
    let err = run.error_record();
    Record::build(Kind::Target, |b| {
        b.str(&F::TIMESTAMP, &crate::export::csv::rfc3339_utc(run.started))
            .str(&F::NAME, &t.name)
            .str(&F::SERVER, &run.server)
            .push(&F::OK, Value::Bool(run.outcome.is_ok()))
            .int(&F::ATTEMPTS, u64::from(attempts))
            .push(&F::PROTOCOL, get(&F::PROTOCOL))
            .push(&F::DIRECTION, get(&F::DIRECTION))
            .push(&F::DURATION_S, get(&F::DURATION_S))
            .push(
                &F::UP_BPS,
                match st {
                    Some(r) => r.get(&F::UPLOAD_BPS).clone(),
                    None if dir.we_transmit(Side::Client) => get(&F::TX_AVG_BPS),
                    None => Value::Null,
                },
            )
            .push(
                &F::DOWN_BPS,
                match st {
                    Some(r) => r.get(&F::DOWNLOAD_BPS).clone(),
                    None if dir.we_receive(Side::Client) => get(&F::RX_AVG_BPS),
                    None => Value::Null,
                },
            )
            .push(&F::UP_LOSS_PCT, up_loss)
            .push(&F::DOWN_LOSS_PCT, down_loss)
            .push(
                &F::LOST_PACKETS,
                if udp {
                    get(&F::LOST_PACKETS)
                } else {
                    Value::Null
                },
            )
            .push(&F::IDLE_RTT_MS, get(&F::IDLE_RTT_P50_MS))
            .push(&F::LOADED_RTT_MS, get(&F::LOADED_RTT_P50_MS))
            .push(&F::BUFFERBLOAT_MS, get(&F::BUFFERBLOAT_MS))
            .push(&F::TCP_RTT_MS, get(&F::TCP_RTT_MS))
            .push(&F::LOCAL_CPU_AVG, get(&F::LOCAL_CPU_AVG))
            .push(&F::REMOTE_CPU_AVG, get(&F::REMOTE_CPU_AVG))
            .push(&F::END_REASON, get(&F::END_REASON))
            .push(
                &F::ERROR,
                err.as_ref()
                    .map_or(Value::Null, |e| e.get(&F::MESSAGE).clone()),
            )
            .push(
                &F::PHASE,
                err.as_ref()
                    .map_or(Value::Null, |e| e.get(&F::PHASE).clone()),
            );
        #[cfg(feature = "speedtest")]
        {
            let sv = |f: &crate::record::Field| st.map_or(Value::Null, |r| r.get(f).clone());
            b.push(&F::GRADE, sv(&F::GRADE))
                .push(&F::RPM, sv(&F::RPM))
                .push(&F::RATING, sv(&F::RATING))
                .push(&F::CONFIDENCE, sv(&F::CONFIDENCE));
        }
    })
}

/// One speed test of a fleet target, as a [`TestRun`] (its outcome; no intervals or summary)
/// and its `speed_test` record.
#[cfg(feature = "speedtest")]
fn speed_test_run(
    st: &crate::speedtest::SpeedTestConfig,
    cfg: &ClientConfig,
    stop: &Stop,
) -> (TestRun, Option<Record>) {
    let mut run = TestRun::new(cfg);
    let res = crate::speedtest::run(st, stop, &mut |_| Ok(()));
    match res {
        Ok(res) => {
            let o = crate::speedtest::Overall::of(&res.phases);
            let rec = (!res.phases.is_empty())
                .then(|| crate::report::speedtest::speed_test_record(&res, &o));
            run.started = res.started;
            run.outcome = res.outcome;
            (run, rec)
        }
        Err(e) => {
            run.outcome = Err(Error::Usage(e.to_string()));
            (run, None)
        }
    }
}

/// One plain test of a target.
fn plain_run(t: &Target, stop: &Stop) -> TestRun {
    let mut sink = ClientReporter::new(run::Out::sink(), Output::Json);
    // The sink never fails to write; should it, the test is what failed.
    run::run(&t.cfg, stop, &mut sink).unwrap_or_else(|e| TestRun {
        outcome: Err(Error::Usage(e.to_string())),
        ..TestRun::new(&t.cfg)
    })
}

/// One target, with its retries.
fn test_target(
    t: &Target,
    index: usize,
    fleet: &FleetConfig,
    stop: &Stop,
    on_retry: &dyn Fn(&Target, u32, &Error),
) -> Done {
    let retries = t.retries.unwrap_or(fleet.retries);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let test_stop = Stop::new();
        if stop.is_triggered() {
            test_stop.trigger(StopReason::Shutdown);
        }
        #[cfg(feature = "speedtest")]
        let (run, st) = match &t.speed_test {
            Some(st) => speed_test_run(st, &t.cfg, &test_stop),
            None => (plain_run(t, &test_stop), None),
        };
        #[cfg(not(feature = "speedtest"))]
        let (run, st) = (plain_run(t, &test_stop), None::<Record>);
        let again = match &run.outcome {
            Err(e) if attempt <= retries && retryable(e) && !stop.is_triggered() => {
                on_retry(t, attempt, e);
                true
            }
            _ => false,
        };
        if !again {
            return Done {
                index,
                record: target_record_with(t, attempt, &run, st.as_ref()),
                run,
            };
        }
        run::wait(fleet.retry_delay, stop);
        if stop.is_triggered() || crate::sys::signalled() {
            return Done {
                index,
                record: target_record_with(t, attempt, &run, st.as_ref()),
                run,
            };
        }
    }
}

/// Runs every target, at most `fleet.parallel` at once, in file order as workers free up.
/// `progress` is called on the caller's thread as results come. Returns the finished targets
/// in file order (targets a Ctrl-C kept from starting are left out).
pub fn run_all(
    fleet: &FleetConfig,
    targets: &[Target],
    mut progress: impl FnMut(Progress<'_>),
) -> io::Result<Vec<Done>> {
    let stop = Stop::new();
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<usize>(targets.len());
    for i in 0..targets.len() {
        let _ = jobs_tx.send(i);
    }
    drop(jobs_tx);
    enum Msg {
        Retry(usize, u32, String),
        Done(Box<Done>),
    }
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<Msg>();
    let mut done: Vec<Done> = Vec::new();
    std::thread::scope(|scope| -> io::Result<()> {
        for k in 0..fleet.parallel.min(targets.len()) {
            let jobs = jobs_rx.clone();
            let res = res_tx.clone();
            let stop = stop.clone();
            crate::thread::spawn_scoped_named(
                scope,
                &format!("btest-fleet-{k}"),
                None,
                move || {
                    while let Ok(i) = jobs.recv() {
                        if stop.is_triggered() {
                            break;
                        }
                        let retry = |_: &Target, n: u32, e: &Error| {
                            let _ = res.send(Msg::Retry(i, n, e.to_string()));
                        };
                        let d = test_target(&targets[i], i, fleet, &stop, &retry);
                        let _ = res.send(Msg::Done(Box::new(d)));
                    }
                },
            )?;
        }
        drop(res_tx);
        loop {
            match res_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Retry(i, n, e)) => progress(Progress::Retry {
                    target: &targets[i],
                    attempt: n,
                    error: &e,
                }),
                Ok(Msg::Done(d)) => {
                    progress(Progress::Done(&d, &targets[d.index]));
                    done.push(*d);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if crate::sys::signalled() {
                        stop.trigger(StopReason::Shutdown);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    })?;
    done.sort_by_key(|d| d.index);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_quote_and_comment() {
        let ok: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("  # all comment", &[]),
            ("a # rest", &["a"]),
            ("a#b c", &["a#b", "c"]),
            ("'x y' \"p \\\"q\\\"\" z", &["x y", "p \"q\"", "z"]),
            ("a\\ b", &["a b"]),
            ("''", &[""]),
            ("", &[]),
        ];
        for (line, want) in ok {
            assert_eq!(words(line).unwrap(), *want, "{line}");
        }
        for bad in ["'open", "\"open", "end\\"] {
            assert!(words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_take_defaults_and_their_own_options() {
        let text = "# towers\n\
                    defaults --duration 3s --direction both\n\
                    t1 10.0.0.1\n\
                    t2 10.0.0.2:2001 --protocol udp --remote-tx-speed 50M --retries 3 --duration 5s\n";
        let t = parse(text, Path::new("/")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].name.as_str(), t[0].line), ("t1", 3));
        assert_eq!(t[0].cfg.duration, Some(Duration::from_secs(3)));
        assert_eq!(t[0].cfg.direction, crate::wire::Direction::Both);
        assert_eq!((t[1].cfg.host.as_str(), t[1].cfg.port), ("10.0.0.2", 2001));
        assert_eq!(t[1].cfg.protocol, Protocol::Udp);
        assert_eq!(t[1].cfg.remote_tx_speed, 50_000_000);
        assert_eq!(
            t[1].cfg.duration,
            Some(Duration::from_secs(5)),
            "the target's own wins"
        );
        assert_eq!((t[0].retries, t[1].retries), (None, Some(3)));
        assert_eq!(t[1].cfg.live, Live::No);
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases = [
            ("t1\n", "line 1: target 't1' has no HOST"),
            ("t1 h\nt1 h2\n", "line 2: the name 't1' is used twice"),
            (
                "t1 h --protocol sctp\n",
                "line 1: target 't1': --protocol: invalid value 'sctp'",
            ),
            (
                "t1 h --report x.html\n",
                "line 1: --report is a fleet option",
            ),
            (
                "t1 h\ndefaults --duration 1s\n",
                "line 2: 'defaults' must come before",
            ),
            ("--duration 1s\n", "line 1: expected NAME HOST"),
            (
                "t1 h --retries 99\n",
                "line 1: --retries: '99' is not 0..10",
            ),
            ("t1 'h\n", "line 1: unclosed ' quote"),
            ("# nothing\n\n", "no targets"),
            (
                "t1 h --credentials /nonexistent/c\n",
                "line 1: --credentials /nonexistent/c: cannot read it",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text, Path::new("/")).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn credentials_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("btest-fleet-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c");
        std::fs::write(&f, "admin:s3cr:et\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_credentials(&f).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_credentials(&f).unwrap(),
            ("admin".to_string(), "s3cr:et".to_string())
        );
        let t = parse("t1 h --credentials c\n", &dir).unwrap();
        assert_eq!(t[0].cfg.user.as_deref(), Some("admin"));
        assert_eq!(t[0].cfg.password.as_deref(), Some("s3cr:et"));
        std::fs::write(&f, "nocolon\n").unwrap();
        assert!(read_credentials(&f).unwrap_err().contains("USER:PASSWORD"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_is_retried() {
        assert!(retryable(&Error::Refused("busy".into())));
        assert!(retryable(&Error::EndedEarly("x".into())));
        assert!(!retryable(&Error::Auth {
            method: "md5",
            detail: "wrong".into()
        }));
        assert!(!retryable(&Error::Usage("x".into())));
        // A login the server's handshake deadline cut (issue 18) is worth another try.
        assert!(retryable(&Error::Timeout {
            phase: crate::error::Phase::Auth,
            addr: None,
            secs: 5.0
        }));
    }

    #[cfg(feature = "speedtest")]
    #[test]
    fn speed_test_mode_per_line_or_for_all() {
        let dir = Path::new(".");
        let text = "a 10.0.0.1 mode=speed-test --phase 5s\nb 10.0.0.2 --duration 3s\n";
        let t = parse(text, dir).unwrap();
        let st = t[0].speed_test.as_ref().expect("a speed test");
        assert_eq!(st.phase, Duration::from_secs(5));
        assert_eq!(t[0].cfg.connection_count, 4);
        assert!(t[1].speed_test.is_none());
        // --speed-test: every target, unless its line says mode=test.
        let t = parse_with("a h1 --idle 1s\nb h2 --mode test\n", dir, true).unwrap();
        assert_eq!(
            t[0].speed_test.as_ref().unwrap().idle,
            Duration::from_secs(1)
        );
        assert!(t[1].speed_test.is_none());
        let e = parse("a h mode=fast\n", dir).unwrap_err();
        assert!(e.contains("line 1") && e.contains("'fast'"), "{e}");
        // A speed test takes no --direction: the line says so.
        let e = parse("a h mode=speed-test --direction both\n", dir).unwrap_err();
        assert!(e.contains("not a speed-test option"), "{e}");
    }
}
