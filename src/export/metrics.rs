//! Server metrics as a Prometheus text-format file for node_exporter's textfile collector.
//!
//! Owns: the counters (atomics the server bumps from any thread), their rendering in the
//! Prometheus text exposition format (version 0.0.4: `# HELP`, `# TYPE`, then samples; names
//! prefixed `btest_`, counters suffixed `_total`), the atomic file replacement, and the
//! `btest-metrics` writer thread.
//! Must not: serve HTTP, fail or slow a session (events are one relaxed atomic add; write
//! errors are logged, never returned to the server), or own the gauges: sessions running and
//! UDP ports held belong to the server, and the writer asks for them each time it writes.
//!
//! Invariants: a reader of the target file sees either the previous complete text or the
//! new complete text, never a mix (write to a temporary file in the same directory, then
//! rename over the target). The collector ignores the temporary file: it only reads `*.prom`.

use crate::atomic::AtomicU64;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::server::RejectReason;

/// Shortest period [`spawn_writer`] accepts; a zero `every` would spin.
pub const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Auth methods that can fail, as they appear in the `method` label; the same words as
/// `AuthMethod::as_str`.
const AUTH_METHODS: [&str; 2] = ["md5", "ecsrp5"];

/// The server's counters. Shared as `Arc<Metrics>`; every method takes `&self`.
///
/// All counters use `Relaxed` ordering: each is an independent monotonic statistic, nothing
/// else is published through them, and a render that is a few events behind is fine.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_started: AtomicU64,
    /// Indexed by `RejectReason as usize`.
    rejected: [AtomicU64; RejectReason::ALL.len()],
    /// Indexed like [`AUTH_METHODS`].
    auth_failures: [AtomicU64; AUTH_METHODS.len()],
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    handshakes: AtomicU64,
    blocked_sources: AtomicU64,
}

impl Metrics {
    /// Counts one connection refused for `reason`.
    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Relaxed);
    }

    /// Counts one failed authentication; `method` is `md5` or `ecsrp5` (any case, as from
    /// `AuthMethod::as_str`). Other words are not counted (logged at debug level).
    pub fn auth_failure(&self, method: &str) {
        match AUTH_METHODS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(method))
        {
            Some(i) => {
                self.auth_failures[i].fetch_add(1, Relaxed);
            }
            None => log::debug!("metrics: auth failure for unknown method {method:?} not counted"),
        }
    }

    /// The guard's gauges: handshakes in progress and sources refused after wrong logins.
    pub fn set_guard_gauges(&self, handshakes: usize, blocked_sources: usize) {
        self.handshakes.store(handshakes as u64, Relaxed);
        self.blocked_sources.store(blocked_sources as u64, Relaxed);
    }

    /// Counts one session that started.
    pub fn session_started(&self) {
        self.sessions_started.fetch_add(1, Relaxed);
    }

    /// Adds test payload bytes sent and received (call per session end or per interval;
    /// the totals are what matters).
    pub fn add_bytes(&self, sent: u64, received: u64) {
        self.bytes_sent.fetch_add(sent, Relaxed);
        self.bytes_received.fetch_add(received, Relaxed);
    }

    /// The whole file in Prometheus text format, with the two gauges the caller reads from
    /// the server: sessions running now and UDP ports held. Ends with a newline.
    pub fn render(&self, active: u64, udp_ports: u64) -> String {
        let mut out = String::with_capacity(2048);
        let rejected: Vec<(&str, u64)> = RejectReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.rejected[r.index()].load(Relaxed)))
            .collect();
        let auth: Vec<(&str, u64)> = AUTH_METHODS
            .iter()
            .zip(&self.auth_failures)
            .map(|(m, n)| (*m, n.load(Relaxed)))
            .collect();

        family(
            &mut out,
            "btest_sessions_started_total",
            "Test sessions started.",
            Kind::Counter,
        );
        sample(
            &mut out,
            "btest_sessions_started_total",
            None,
            self.sessions_started.load(Relaxed),
        );
        family(
            &mut out,
            "btest_sessions_active",
            "Test sessions running now.",
            Kind::Gauge,
        );
        sample(&mut out, "btest_sessions_active", None, active);
        family(
            &mut out,
            "btest_sessions_rejected_total",
            "Connections refused before a session started, by reason.",
            Kind::Counter,
        );
        for (reason, n) in rejected {
            sample(
                &mut out,
                "btest_sessions_rejected_total",
                Some(("reason", reason)),
                n,
            );
        }
        family(
            &mut out,
            "btest_auth_failures_total",
            "Failed authentications, by method.",
            Kind::Counter,
        );
        for (method, n) in auth {
            sample(
                &mut out,
                "btest_auth_failures_total",
                Some(("method", method)),
                n,
            );
        }
        family(
            &mut out,
            "btest_bytes_sent_total",
            "Test payload bytes sent by the server.",
            Kind::Counter,
        );
        sample(
            &mut out,
            "btest_bytes_sent_total",
            None,
            self.bytes_sent.load(Relaxed),
        );
        family(
            &mut out,
            "btest_bytes_received_total",
            "Test payload bytes received by the server.",
            Kind::Counter,
        );
        sample(
            &mut out,
            "btest_bytes_received_total",
            None,
            self.bytes_received.load(Relaxed),
        );
        family(
            &mut out,
            "btest_udp_ports_in_use",
            "UDP ports held by sessions.",
            Kind::Gauge,
        );
        sample(&mut out, "btest_udp_ports_in_use", None, udp_ports);
        family(
            &mut out,
            "btest_handshakes_in_progress",
            "Connections accepted whose handshake has not finished.",
            Kind::Gauge,
        );
        sample(
            &mut out,
            "btest_handshakes_in_progress",
            None,
            self.handshakes.load(Relaxed),
        );
        family(
            &mut out,
            "btest_sources_blocked",
            "Sources (IPv4 addresses, IPv6 /64s) refused now after too many wrong logins.",
            Kind::Gauge,
        );
        sample(
            &mut out,
            "btest_sources_blocked",
            None,
            self.blocked_sources.load(Relaxed),
        );
        out
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// The `# HELP` and `# TYPE` lines of one metric family.
fn family(out: &mut String, name: &str, help: &str, kind: Kind) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// One sample line. Label values here are fixed identifiers, so they need no escaping.
fn sample(out: &mut String, name: &str, label: Option<(&str, &str)>, value: u64) {
    // Writing to a String cannot fail.
    let _ = match label {
        Some((k, v)) => writeln!(out, "{name}{{{k}=\"{v}\"}} {value}"),
        None => writeln!(out, "{name} {value}"),
    };
}

/// Replaces `path` with `text` atomically: writes `.<name>.tmp.<pid>` in the same directory
/// (same file system, so the rename is atomic), then renames it over `path`. Readers see the
/// old or the new file, never a partial one. No fsync: after a crash the file may be old or
/// missing, which the next write fixes. One writer per path per process (the temporary name
/// is per process).
///
/// Errors name the file; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);

    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })
}

/// Starts the `btest-metrics` thread: it writes `path` immediately, then every `every`
/// (at least [`MIN_PERIOD`]), and a last time when `stop` receives a message or is
/// disconnected (drop the sender), then ends. `gauges` returns `(sessions active, UDP ports
/// in use)` and is called for every write.
///
/// Write errors never end the thread: each is logged with `log::warn` when it differs from
/// the previous error (so a full disk is reported once, not every second), and recovery is
/// logged at info level. Only a failure to start the thread is returned.
pub fn spawn_writer(
    metrics: Arc<Metrics>,
    path: PathBuf,
    every: Duration,
    stop: Receiver<()>,
    gauges: impl Fn() -> (u64, u64) + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let every = every.max(MIN_PERIOD);
    crate::thread::spawn_named("btest-metrics", None, move || {
        let mut last_err: Option<String> = None;
        let mut write = || {
            let (active, ports) = gauges();
            match write_atomic(&path, &metrics.render(active, ports)) {
                Ok(()) => {
                    if last_err.take().is_some() {
                        log::info!("metrics: writing {} again", path.display());
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if last_err.as_deref() != Some(msg.as_str()) {
                        log::warn!("metrics: cannot write: {msg}");
                    }
                    last_err = Some(msg);
                }
            }
        };
        write();
        // Absolute deadlines so the period does not drift by the time a write takes;
        // after a stall (suspend, slow disk) resynchronize instead of catching up.
        let mut next = Instant::now().checked_add(every);
        loop {
            let woke = match next {
                Some(deadline) => stop.recv_deadline(deadline),
                None => stop.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match woke {
                Err(RecvTimeoutError::Timeout) => {
                    write();
                    let now = Instant::now();
                    next = next
                        .and_then(|n| n.checked_add(every))
                        .filter(|n| *n > now)
                        .or_else(|| now.checked_add(every));
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        write();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A fresh, empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "btest-metrics-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn valid_label_name(s: &str) -> bool {
        valid_name(s) && !s.contains(':')
    }

    /// Parses `k="v",k2="v2"` (with `\\`, `\"`, `\n` escapes) into pairs.
    fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let (k, after) = rest
                .split_once("=\"")
                .ok_or(format!("label without =\": {s}"))?;
            if !valid_label_name(k) {
                return Err(format!("bad label name {k:?}"));
            }
            let mut v = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("unterminated label value: {s}")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => v.push('\\'),
                        Some((_, '"')) => v.push('"'),
                        Some((_, 'n')) => v.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, c)) => v.push(c),
                }
            };
            out.push((k.to_string(), v));
            rest = &after[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.is_empty() {
                return Err(format!("junk after label value: {rest:?}"));
            }
        }
        Ok(out)
    }

    /// A validator for the Prometheus text format subset we emit; returns the samples as
    /// `name{labels}` → value.
    fn validate(text: &str) -> Result<HashMap<String, f64>, String> {
        if !text.ends_with('\n') {
            return Err("text must end with a newline".into());
        }
        let mut help = HashSet::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut sampled = HashSet::new();
        let mut last_family = String::new();
        let mut samples = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if line.is_empty() {
                return Err(at("empty line".into()));
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("HELP without text".into()))?;
                if !valid_name(name) || doc.is_empty() {
                    return Err(at("bad HELP".into()));
                }
                if sampled.contains(name) || !help.insert(name.to_string()) {
                    return Err(at("HELP repeated or after samples".into()));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("TYPE without type".into()))?;
                if !valid_name(name)
                    || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                {
                    return Err(at("bad TYPE".into()));
                }
                if sampled.contains(name)
                    || types.insert(name.to_string(), kind.to_string()).is_some()
                {
                    return Err(at("TYPE repeated or after samples".into()));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..name_end];
            if !valid_name(name) {
                return Err(at("bad metric name".into()));
            }
            let (labels, value) = if line[name_end..].starts_with('{') {
                let close = line
                    .rfind('}')
                    .ok_or_else(|| at("unclosed labels".into()))?;
                let labels = parse_labels(&line[name_end + 1..close]).map_err(at)?;
                let value = line[close + 1..]
                    .strip_prefix(' ')
                    .ok_or_else(|| at("no space before value".into()))?;
                (labels, value)
            } else {
                (Vec::new(), &line[name_end + 1..])
            };
            let v: f64 = value
                .parse()
                .map_err(|_| at("value is not a number".into()))?;
            if !v.is_finite() {
                return Err(at("value is not finite".into()));
            }
            if !help.contains(name) || !types.contains_key(name) {
                return Err(at("sample before its HELP and TYPE".into()));
            }
            if types[name] == "counter" && (!name.ends_with("_total") || v < 0.0) {
                return Err(at("counter must end in _total and be >= 0".into()));
            }
            if !name.starts_with("btest_") {
                return Err(at("missing btest_ prefix".into()));
            }
            if last_family != name && sampled.contains(name) {
                return Err(at("samples of one family are not together".into()));
            }
            sampled.insert(name.to_string());
            last_family = name.to_string();
            let key = format!(
                "{name}{{{}}}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if samples.insert(key, v).is_some() {
                return Err(at("duplicate sample".into()));
            }
        }
        for name in help.iter().chain(types.keys()) {
            if !sampled.contains(name) {
                return Err(format!("family {name} has no samples"));
            }
        }
        Ok(samples)
    }

    #[test]
    fn validator_catches_mistakes() {
        let ok =
            "# HELP btest_x_total X.\n# TYPE btest_x_total counter\nbtest_x_total{a=\"b\"} 1\n";
        assert!(validate(ok).is_ok());
        for bad in [
            "btest_x_total 1\n",
            "# HELP btest_x_total X.\n# TYPE btest_x_total counter\nbtest_x_total 1",
            "# HELP btest_x_total X.\n# TYPE btest_x_total counter\nbtest_x_total NaN\n",
            "# HELP btest_x_total X.\n# TYPE btest_x_total counter\nbtest_x_total{a=\"b} 1\n",
            "# HELP btest_x X.\n# TYPE btest_x counter\nbtest_x 1\n",
            "# HELP 1x X.\n# TYPE 1x gauge\n1x 1\n",
            "# HELP btest_x X.\n# TYPE btest_x gauge\nbtest_x\n",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn render_is_valid_prometheus_text() {
        let m = Metrics::default();
        let samples = validate(&m.render(0, 0)).unwrap();
        // 1 started + 1 active + 12 reasons + 2 methods + 2 bytes + 1 ports + 2 guard gauges.
        assert_eq!(samples.len(), 21, "{samples:?}");
        assert!(samples.values().all(|v| *v == 0.0));

        m.reject(RejectReason::UnknownToken);
        m.auth_failure("ECSRP5");
        m.add_bytes(u64::MAX / 2, 1);
        let text = m.render(3, 2);
        let samples = validate(&text).unwrap();
        assert_eq!(samples["btest_sessions_active{}"], 3.0);
        assert_eq!(samples["btest_udp_ports_in_use{}"], 2.0);
        assert_eq!(
            samples["btest_sessions_rejected_total{reason=unknown_token}"],
            1.0
        );
        assert_eq!(samples["btest_auth_failures_total{method=ecsrp5}"], 1.0);
        assert!(
            text.contains("btest_bytes_sent_total 9223372036854775807\n"),
            "{text}"
        );
        assert!(text.contains("btest_sessions_rejected_total{reason=\"bad_command\"} 0\n"));
    }

    #[test]
    fn counters_only_grow() {
        let m = Metrics::default();
        let before = validate(&m.render(5, 5)).unwrap();
        m.session_started();
        m.session_started();
        for r in RejectReason::ALL {
            m.reject(r);
        }
        m.auth_failure("md5");
        m.auth_failure("ecsrp5");
        m.auth_failure("none");
        m.add_bytes(1000, 2000);
        let after = validate(&m.render(0, 0)).unwrap();
        assert_eq!(
            before.keys().collect::<HashSet<_>>(),
            after.keys().collect::<HashSet<_>>()
        );
        for (k, v) in &after {
            if k.contains("_total") {
                assert!(*v > before[k], "{k}: {} -> {v}", before[k]);
            }
        }
        assert_eq!(after["btest_sessions_started_total{}"], 2.0);
        assert_eq!(after["btest_bytes_sent_total{}"], 1000.0);
        assert_eq!(after["btest_bytes_received_total{}"], 2000.0);
        let again = validate(&m.render(0, 0)).unwrap();
        assert_eq!(after, again, "rendering does not change counters");
    }

    #[test]
    fn write_atomic_replaces_and_cleans_up() {
        let dir = scratch("replace");
        let path = dir.join("btest.prom");
        write_atomic(&path, "one\n").unwrap();
        write_atomic(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["btest.prom"], "no temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_atomic_errors_name_the_file() {
        let e = write_atomic(Path::new("/nonexistent-btest-dir/btest.prom"), "x").unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-btest-dir/btest.prom"),
            "{e}"
        );
        assert_eq!(
            write_atomic(Path::new("/"), "x").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn write_atomic_never_exposes_a_partial_file() {
        let dir = scratch("torn");
        let path = dir.join("btest.prom");
        let mut large = String::new();
        while large.len() < 512 * 1024 {
            large.push_str("btest_padding_line_with_some_length 1234567890\n");
        }
        large.push_str("# END large\n");
        let small = "btest_small 1\n# END small\n".to_string();
        write_atomic(&path, &small).unwrap();

        let done = AtomicBool::new(false);
        let reads = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) {
                    let got = std::fs::read_to_string(&path).unwrap();
                    assert!(
                        got == large || got == small,
                        "partial file of {} bytes",
                        got.len()
                    );
                    reads += 1;
                }
                reads
            });
            for i in 0..500 {
                write_atomic(&path, if i % 2 == 0 { &large } else { &small }).unwrap();
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap()
        });
        assert!(reads > 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writer_stops_promptly_when_sender_dropped() {
        let dir = scratch("stop");
        let path = dir.join("btest.prom");
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let h = spawn_writer(
            Arc::new(Metrics::default()),
            path.clone(),
            Duration::from_secs(60),
            rx,
            move || (c.fetch_add(1, Ordering::Relaxed) as u64, 0),
        )
        .unwrap();
        assert_eq!(h.thread().name(), Some("btest-metrics"));
        let t0 = Instant::now();
        drop(tx);
        h.join().unwrap();
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(500), "stop took {took:?}");
        // Once at start, once at the end.
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let samples = validate(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            samples["btest_sessions_active{}"], 1.0,
            "the last write is the final one"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writer_stops_on_message_and_writes_periodically() {
        let dir = scratch("tick");
        let path = dir.join("btest.prom");
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let m = Arc::new(Metrics::default());
        let h = spawn_writer(
            m.clone(),
            path.clone(),
            Duration::from_millis(20),
            rx,
            move || (c.fetch_add(1, Ordering::Relaxed) as u64, 7),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::Relaxed) < 4 {
            assert!(Instant::now() < deadline, "writer did not tick");
            std::thread::sleep(Duration::from_millis(5));
        }
        m.session_started();
        let t0 = Instant::now();
        tx.send(()).unwrap();
        h.join().unwrap();
        assert!(t0.elapsed() < Duration::from_millis(500));
        let n = calls.load(Ordering::Relaxed);
        let samples = validate(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(samples["btest_sessions_active{}"], (n - 1) as f64);
        assert_eq!(samples["btest_udp_ports_in_use{}"], 7.0);
        assert_eq!(samples["btest_sessions_started_total{}"], 1.0);
        drop(tx);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writer_survives_write_errors() {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let h = spawn_writer(
            Arc::new(Metrics::default()),
            PathBuf::from("/nonexistent-btest-dir/btest.prom"),
            Duration::ZERO,
            rx,
            || (0, 0),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        drop(tx);
        h.join().unwrap();
        assert!(t0.elapsed() < Duration::from_millis(500));
    }
}
