//! Loopback end-to-end benchmark: our client against our server next to iperf3 against iperf3,
//! in the same run, alternating runs (the order flips every repetition), medians of
//! `BENCH_REPS` runs (default 5) of `BENCH_SECS` seconds each (default 3).
//!
//! Figures, each printed for both tools with the ratio ours / iperf3:
//! - TCP, 1 stream: throughput at the receiving client (server sends, as `iperf3 -R`), with the
//!   same congestion control for both (the system default, passed to iperf3 with `-C`);
//! - UDP, 1472-byte payload, unlimited: received packets/s and loss at the receiving client;
//! - UDP paced at 10 Mbit/s, 100 Mbit/s and 1 Gbit/s, client sending: the sender's achieved
//!   average rate and its error against the target. Each tool is measured against its own
//!   target in its own accounting: btest counts IP+UDP headers as RouterOS does (1500 bytes per
//!   1472-byte payload), `iperf3 -b` counts UDP payload only.
//!
//! CPU is the whole machine's busy cores during each run, from the kernel's cpuidle residency
//! counters (method of `shared/tools/busy-cores`). Process CPU accounting is not used: it is
//! sampled at the scheduler tick and under-reports paced senders several-fold.
//!
//! Floors (reported as PASS/FAIL): TCP >= 0.9x iperf3's throughput; paced UDP average rate error
//! <= 1 % at each rate. The bench exits 0 even when a floor fails unless `BENCH_STRICT=1`.
//!
//! What it must not do: touch anything but its own child processes (the one exception is
//! installing iperf3 with apt-get when it is absent, as the issue asks); pick UDP ports with
//! port 0 (our server hands out a fixed range from `--udp-port-from`); sleep to wait for
//! readiness (it polls the servers' TCP ports); or be trusted with other load on the machine,
//! since every figure, CPU included, is machine-wide (it prints the background before and after).
//!
//! Knobs: `BENCH_SECS`, `BENCH_REPS`, `BENCH_STRICT=1`, and `BENCH_PORT` (default 27000: our
//! server's TCP port; +100 starts its UDP range, +500 is iperf3's port).

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// UDP datagram size on the wire as btest counts it (IP 20 + UDP 8 + payload).
const UDP_WIRE: u64 = 1500;
/// UDP payload carried by each datagram, as iperf3's `-l` counts it.
const UDP_PAYLOAD: u64 = UDP_WIRE - 28;
/// Paced rates, bits per second.
const PACED: [u64; 3] = [10_000_000, 100_000_000, 1_000_000_000];
/// TCP floor: ours / iperf3 throughput.
const TCP_FLOOR: f64 = 0.9;
/// Paced floor: absolute average rate error, percent.
const PACED_FLOOR_PCT: f64 = 1.0;
/// Quiet gap between runs so one run's wind-down does not land in the next run's CPU reading.
const SETTLE: Duration = Duration::from_millis(300);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Machine busy cores from cpuidle residency.

/// Sum of every idle state's residency over all CPUs, microseconds, and the number of CPUs that
/// have cpuidle counters. `None` when the kernel exposes no cpuidle counters.
fn idle_us() -> Option<(u64, usize)> {
    let mut total = 0u64;
    let mut cpus = 0usize;
    for entry in fs::read_dir("/sys/devices/system/cpu").ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(n) = name.strip_prefix("cpu") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(states) = fs::read_dir(entry.path().join("cpuidle")) else {
            continue;
        };
        let mut any = false;
        for st in states.flatten() {
            if !st.file_name().to_string_lossy().starts_with("state") {
                continue;
            }
            if let Some(t) = fs::read_to_string(st.path().join("time"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                total += t;
                any = true;
            }
        }
        cpus += usize::from(any);
    }
    (cpus > 0).then_some((total, cpus))
}

/// A busy-core reading in progress.
struct BusyMeter {
    start: Option<(u64, usize)>,
    t0: Instant,
}

impl BusyMeter {
    fn start() -> Self {
        BusyMeter {
            start: idle_us(),
            t0: Instant::now(),
        }
    }

    /// Busy cores since `start`: CPUs minus idle seconds per wall second.
    fn stop(self) -> Option<f64> {
        let elapsed = self.t0.elapsed().as_secs_f64();
        let (a, n) = self.start?;
        let (b, _) = idle_us()?;
        let idle_s = b.saturating_sub(a) as f64 / 1e6;
        Some((n as f64 - idle_s / elapsed).clamp(0.0, n as f64))
    }
}

/// Machine busy cores over one quiet second: other work on the machine, which every figure
/// below includes.
fn background_busy() -> Option<f64> {
    let m = BusyMeter::start();
    thread::sleep(Duration::from_secs(1));
    m.stop()
}

// ---------------------------------------------------------------------------------------------
// Tiny JSON extraction: enough for our NDJSON summary and iperf3's `-J` report.

/// The text after the first `"key"` whose value starts with `{` (skips same-named scalars).
fn after_obj<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\"");
    let mut from = 0;
    while let Some(i) = s[from..].find(&pat) {
        let rest = s[from + i + pat.len()..].trim_start();
        if let Some(v) = rest.strip_prefix(':') {
            let v = v.trim_start();
            if v.starts_with('{') {
                return Some(v);
            }
        }
        from += i + pat.len();
    }
    None
}

/// The first value of `"key"` in `s` as the raw text of a scalar.
fn raw_value<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\"");
    let i = s.find(&pat)?;
    let v = s[i + pat.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    if let Some(q) = v.strip_prefix('"') {
        return q.find('"').map(|e| &q[..e]);
    }
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .unwrap_or(v.len());
    Some(&v[..end])
}

fn num(s: &str, key: &str) -> Option<f64> {
    raw_value(s, key)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A server child that is killed when dropped.
struct Server {
    child: Child,
    what: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(what: &'static str, cmd: &mut Command, port: u16) -> Result<Server, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("{what}: cannot start: {e}"))?;
        let mut s = Server { child, what };
        s.wait_listening(port)?;
        Ok(s)
    }

    /// Polls the TCP port until it accepts, or the child exits, or 10 s pass.
    fn wait_listening(&mut self, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "{}: exited ({st}) before listening on {addr}; is the port in use? \
                     Set BENCH_PORT to another base port",
                    self.what
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{}: not listening on {addr} after 10 s", self.what));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What one client run left behind.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
    busy: Option<f64>,
}

/// Runs a client to completion (killed after `timeout`), measuring machine busy cores meanwhile.
fn run_client(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let meter = BusyMeter::start();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let busy = meter.stop();
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    Ok(Output {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
        busy,
    })
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

// ---------------------------------------------------------------------------------------------
// The two tools.

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Ours,
    Iperf,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ours => "btest",
            Tool::Iperf => "iperf3",
        }
    }
}

/// One test shape, run by both tools.
#[derive(Clone, Copy)]
enum Test {
    /// TCP, 1 connection, unlimited; the server sends and the client measures.
    Tcp,
    /// UDP, unlimited; the server sends and the client measures.
    UdpUnlimited,
    /// UDP paced at this many bit/s in each tool's own accounting; the client sends.
    UdpPaced(u64),
}

/// One run's figures: `value` is the headline figure, `extra` a second one (loss %, error %).
struct Sample {
    value: f64,
    extra: f64,
    busy: Option<f64>,
}

struct Bench {
    btest: PathBuf,
    port: u16,
    iperf_port: u16,
    secs: u64,
    cc: Option<String>,
    iperf_cc_seen: Option<String>,
}

impl Bench {
    fn command(&self, tool: Tool, test: Test) -> Command {
        let secs = self.secs.to_string();
        match tool {
            Tool::Ours => {
                let mut c = Command::new(&self.btest);
                c.args(["client", &format!("127.0.0.1:{}", self.port), "--json"])
                    .args(["--duration", &format!("{secs}s")]);
                match test {
                    Test::Tcp => c.args(["--protocol", "tcp", "--direction", "receive"]),
                    Test::UdpUnlimited => c.args([
                        "--protocol",
                        "udp",
                        "--direction",
                        "receive",
                        "--remote-tx-speed",
                        "0",
                        "--remote-udp-tx-size",
                        &UDP_WIRE.to_string(),
                    ]),
                    Test::UdpPaced(bps) => c.args([
                        "--protocol",
                        "udp",
                        "--direction",
                        "transmit",
                        "--local-tx-speed",
                        &bps.to_string(),
                        "--local-udp-tx-size",
                        &UDP_WIRE.to_string(),
                    ]),
                };
                c
            }
            Tool::Iperf => {
                let mut c = Command::new("iperf3");
                c.args(["-c", "127.0.0.1", "-p", &self.iperf_port.to_string()])
                    .args(["-t", &secs, "-J"]);
                match test {
                    Test::Tcp => {
                        c.arg("-R");
                        if let Some(cc) = &self.cc {
                            c.args(["-C", cc]);
                        }
                    }
                    Test::UdpUnlimited => {
                        c.args(["-R", "-u", "-b", "0", "-l", &UDP_PAYLOAD.to_string()]);
                    }
                    Test::UdpPaced(bps) => {
                        c.args(["-u", "-b", &bps.to_string(), "-l", &UDP_PAYLOAD.to_string()]);
                    }
                }
                c
            }
        }
    }

    /// Runs one test once with one tool; retries iperf3 when its server is still busy.
    fn run(&mut self, tool: Tool, test: Test) -> Result<Sample, String> {
        let timeout = Duration::from_secs(self.secs + 20);
        let mut attempt = 0;
        let out = loop {
            let out = run_client(&mut self.command(tool, test), timeout)?;
            let busy_server = tool == Tool::Iperf
                && !out.ok
                && (out.stdout.contains("busy") || out.stdout.contains("unable to connect"));
            if busy_server && attempt < 5 {
                attempt += 1;
                thread::sleep(Duration::from_millis(300));
                continue;
            }
            break out;
        };
        if !out.ok {
            let why = match tool {
                Tool::Iperf => raw_value(&out.stdout, "error").unwrap_or(first_line(&out.stderr)),
                Tool::Ours => first_line(&out.stderr),
            };
            return Err(format!("{} failed: {why}", tool.name()));
        }
        let bad = |what: &str| format!("{}: no {what} in its output", tool.name());
        match tool {
            Tool::Ours => {
                let sum = out
                    .stdout
                    .lines()
                    .rev()
                    .find(|l| l.contains("\"type\":\"summary\""))
                    .ok_or_else(|| bad("summary line"))?;
                let get = |k: &str| num(sum, k).ok_or_else(|| bad(k));
                match test {
                    Test::Tcp => Ok(Sample {
                        value: get("rx_avg_bps")?,
                        extra: 0.0,
                        busy: out.busy,
                    }),
                    Test::UdpUnlimited => {
                        let rx_pkts = get("rx_bytes")? / UDP_WIRE as f64;
                        let lost = get("lost_packets")?;
                        let total = rx_pkts + lost;
                        Ok(Sample {
                            value: rx_pkts / get("duration_s")?,
                            extra: if total > 0.0 {
                                100.0 * lost / total
                            } else {
                                0.0
                            },
                            busy: out.busy,
                        })
                    }
                    Test::UdpPaced(bps) => {
                        let got = get("tx_avg_bps")?;
                        Ok(Sample {
                            value: got,
                            extra: 100.0 * (got - bps as f64) / bps as f64,
                            busy: out.busy,
                        })
                    }
                }
            }
            Tool::Iperf => {
                let end = after_obj(&out.stdout, "end").ok_or_else(|| bad("end section"))?;
                match test {
                    Test::Tcp => {
                        if self.iperf_cc_seen.is_none() {
                            self.iperf_cc_seen =
                                raw_value(end, "sender_tcp_congestion").map(str::to_owned);
                        }
                        let r =
                            after_obj(end, "sum_received").ok_or_else(|| bad("sum_received"))?;
                        Ok(Sample {
                            value: num(r, "bits_per_second")
                                .ok_or_else(|| bad("bits_per_second"))?,
                            extra: 0.0,
                            busy: out.busy,
                        })
                    }
                    Test::UdpUnlimited => {
                        let r =
                            after_obj(end, "sum_received").ok_or_else(|| bad("sum_received"))?;
                        let get = |k: &str| num(r, k).ok_or_else(|| bad(k));
                        let (pkts, lost) = (get("packets")?, get("lost_packets")?);
                        Ok(Sample {
                            value: (pkts - lost) / get("seconds")?,
                            extra: if pkts > 0.0 { 100.0 * lost / pkts } else { 0.0 },
                            busy: out.busy,
                        })
                    }
                    Test::UdpPaced(bps) => {
                        let s = after_obj(end, "sum_sent").ok_or_else(|| bad("sum_sent"))?;
                        let got =
                            num(s, "bits_per_second").ok_or_else(|| bad("bits_per_second"))?;
                        Ok(Sample {
                            value: got,
                            extra: 100.0 * (got - bps as f64) / bps as f64,
                            busy: out.busy,
                        })
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and printing.

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one tool's runs of one test, plus the least busy run: other work on the machine
/// can only add to a busy-core reading, so the minimum is the best estimate of the tool's own.
#[derive(Default)]
struct Summary {
    value: Option<f64>,
    extra: Option<f64>,
    busy: Option<f64>,
    busy_min: Option<f64>,
}

fn summarise(samples: &[Sample]) -> Summary {
    Summary {
        value: median(samples.iter().map(|s| s.value).collect()),
        extra: median(samples.iter().map(|s| s.extra).collect()),
        busy: median(samples.iter().filter_map(|s| s.busy).collect()),
        busy_min: samples.iter().filter_map(|s| s.busy).reduce(f64::min),
    }
}

/// Busy cores as "median (min)".
fn busy_cell(s: &Summary) -> String {
    match (s.busy, s.busy_min) {
        (Some(m), Some(lo)) => format!("{m:.2} ({lo:.2})"),
        _ => "n/a".to_owned(),
    }
}

fn cell(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"))
}

fn signed(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.prec$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}

/// One table row: figure, unit, ours, iperf3, ratio, busy cores ours, busy cores iperf3.
fn row(cols: [&str; 7]) {
    println!(
        "| {:<30} | {:<7} | {:>9} | {:>9} | {:>6} | {:>17} | {:>18} |",
        cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
    );
}

fn rate_label(bps: u64) -> String {
    if bps >= 1_000_000_000 {
        format!("{} Gbit/s", bps / 1_000_000_000)
    } else {
        format!("{} Mbit/s", bps / 1_000_000)
    }
}

// ---------------------------------------------------------------------------------------------
// Setup.

fn find_btest() -> Result<PathBuf, String> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_btest") {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("target/release/btest");
    if !p.exists() {
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "btest"])
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cargo build --release: {e}"))?;
        if !st.success() {
            return Err(format!("cargo build --release failed ({st})"));
        }
    }
    Ok(p)
}

fn iperf3_version() -> Option<String> {
    let out = Command::new("iperf3").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| first_line(&String::from_utf8_lossy(&out.stdout)).to_owned())
}

/// Finds iperf3, installing it with apt-get when absent. `Err` says why it is not available.
fn ensure_iperf3() -> Result<String, String> {
    if let Some(v) = iperf3_version() {
        return Ok(v);
    }
    println!("iperf3 not found; trying apt-get install -y iperf3");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
    };
    let mut why = String::new();
    for args in [
        &["install", "-y", "-q", "iperf3"][..],
        &["update", "-q"][..],
        &["install", "-y", "-q", "iperf3"][..],
    ] {
        match apt(args) {
            Ok(o) if o.status.success() => {
                if let Some(v) = iperf3_version() {
                    return Ok(v);
                }
            }
            Ok(o) => why = first_line(&String::from_utf8_lossy(&o.stderr)).to_owned(),
            Err(e) => return Err(format!("apt-get: {e}")),
        }
    }
    Err(format!("apt-get install iperf3 failed: {why}"))
}

fn machine() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".into());
    let n = thread::available_parallelism().map_or(0, |n| n.get());
    format!("{n} CPUs, {model}, Linux {kernel}")
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; there is nothing to filter, so arguments are ignored.
    let secs = env_u64("BENCH_SECS", 3).max(1);
    let reps = env_u64("BENCH_REPS", 5).max(1) as usize;
    let strict = std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1");
    // Our server's TCP port; +100 starts its UDP range, +500 is iperf3's port.
    let base = env_u64("BENCH_PORT", 27000).clamp(1024, 65000) as u16;

    let btest = match find_btest() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loopback bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let iperf = ensure_iperf3();
    let cc = fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .ok()
        .map(|s| s.trim().to_owned());

    println!("loopback bench: {}", machine());
    println!(
        "runs: {reps} x {secs} s per tool and figure, alternating (order flips each repetition), \
         medians reported{}",
        if reps < 5 {
            "  [fewer than 5 runs]"
        } else {
            ""
        }
    );
    println!("btest: {}", btest.display());
    match &iperf {
        Ok(v) => println!("iperf3: {v}"),
        Err(e) => println!("iperf3: NOT AVAILABLE ({e}); printing our figures alone"),
    }
    match &cc {
        Some(cc) => println!(
            "TCP congestion control: {cc} (system default; btest uses it, iperf3 gets -C {cc})"
        ),
        None => println!(
            "TCP congestion control: unknown (no /proc/sys/net/ipv4/tcp_congestion_control)"
        ),
    }
    match background_busy() {
        None => println!("busy cores: n/a (no cpuidle residency counters on this machine)"),
        Some(b) => {
            let warn = if b > 0.2 {
                "  [machine not idle: figures will be noisy]"
            } else {
                ""
            };
            println!(
                "background before the runs: {b:.2} busy cores over 1 s, \
                 nothing of ours running{warn}"
            );
        }
    }

    let mut bench = Bench {
        btest,
        port: base,
        iperf_port: base + 500,
        secs,
        cc,
        iperf_cc_seen: None,
    };

    let ours_server = Server::spawn(
        "btest server",
        Command::new(&bench.btest).args([
            "server",
            "-q",
            "--listen",
            &format!("127.0.0.1:{}", bench.port),
            "--udp-port-from",
            &(base + 100).to_string(),
        ]),
        bench.port,
    );
    let ours_server = match ours_server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loopback bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let iperf_server = match &iperf {
        Ok(_) => match Server::spawn(
            "iperf3 server",
            Command::new("iperf3")
                .args(["-s", "-p", &bench.iperf_port.to_string()])
                .stderr(Stdio::null()),
            bench.iperf_port,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("iperf3: {e}; printing our figures alone");
                None
            }
        },
        Err(_) => None,
    };
    let tools: &[Tool] = if iperf_server.is_some() {
        &[Tool::Ours, Tool::Iperf]
    } else {
        &[Tool::Ours]
    };

    let mut tests = vec![
        ("TCP 1 stream", Test::Tcp),
        ("UDP unlimited", Test::UdpUnlimited),
    ];
    for bps in PACED {
        tests.push(("UDP paced", Test::UdpPaced(bps)));
    }

    // results[test][tool]
    let mut results: Vec<[Summary; 2]> = Vec::new();
    let mut failures = 0usize;
    for (label, test) in &tests {
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        let title = match test {
            Test::UdpPaced(bps) => format!("{label} {}", rate_label(*bps)),
            _ => (*label).to_owned(),
        };
        println!("\n{title}:");
        for rep in 0..reps {
            let order: Vec<Tool> = if rep % 2 == 0 {
                tools.to_vec()
            } else {
                tools.iter().rev().copied().collect()
            };
            for tool in order {
                thread::sleep(SETTLE);
                let idx = usize::from(tool == Tool::Iperf);
                match bench.run(tool, *test) {
                    Ok(s) => {
                        let fig = match test {
                            Test::Tcp => format!("{:.2} Gbit/s", s.value / 1e9),
                            Test::UdpUnlimited => {
                                format!(
                                    "{:.1} kpkt/s received, loss {:.2} %",
                                    s.value / 1e3,
                                    s.extra
                                )
                            }
                            Test::UdpPaced(_) => {
                                format!("{:.3} Mbit/s sent, error {:+.3} %", s.value / 1e6, s.extra)
                            }
                        };
                        println!(
                            "  run {}/{reps} {:<6} {fig}, busy cores {}",
                            rep + 1,
                            tool.name(),
                            cell(s.busy, 2)
                        );
                        samples[idx].push(s);
                    }
                    Err(e) => {
                        failures += 1;
                        println!("  run {}/{reps} {:<6} FAILED: {e}", rep + 1, tool.name());
                    }
                }
            }
        }
        results.push([summarise(&samples[0]), summarise(&samples[1])]);
    }
    drop(iperf_server);
    drop(ours_server);
    if let Some(b) = background_busy() {
        println!(
            "\nbackground after the runs: {b:.2} busy cores over 1 s, nothing of ours running"
        );
    }

    println!(
        "\nMedians of {reps} runs of {secs} s; ratio = btest / iperf3; busy cores = whole machine \
         (cpuidle), median of the runs with the least busy run in brackets."
    );
    row([
        "figure",
        "unit",
        "btest",
        "iperf3",
        "ratio",
        "busy btest (min)",
        "busy iperf3 (min)",
    ]);
    println!(
        "|{:-<32}|{:-<9}|{:->11}|{:->11}|{:->8}|{:->19}|{:->20}|",
        "", "", "", "", "", "", ""
    );
    let mut floors: Vec<(String, Option<bool>)> = Vec::new();
    for ((label, test), [o, i]) in tests.iter().zip(&results) {
        let (bo, bi) = (busy_cell(o), busy_cell(i));
        match test {
            Test::Tcp => {
                let (ov, iv) = (o.value.map(|v| v / 1e9), i.value.map(|v| v / 1e9));
                row([
                    label,
                    "Gbit/s",
                    &cell(ov, 2),
                    &cell(iv, 2),
                    &ratio(ov, iv),
                    &bo,
                    &bi,
                ]);
                // No iperf3 figure: nothing to compare with (SKIP); no figure of ours: FAIL.
                let verdict = match (ov, iv) {
                    (_, None) => None, // printed as SKIP
                    (None, Some(_)) => Some(false),
                    (Some(a), Some(b)) => Some(a / b >= TCP_FLOOR),
                };
                floors.push((
                    format!(
                        "TCP throughput >= {TCP_FLOOR}x iperf3's: ratio {}",
                        if iv.is_none() {
                            "n/a (no iperf3 figure)".to_owned()
                        } else {
                            ratio(ov, iv)
                        }
                    ),
                    verdict,
                ));
            }
            Test::UdpUnlimited => {
                let (ov, iv) = (o.value.map(|v| v / 1e3), i.value.map(|v| v / 1e3));
                row([
                    "UDP unlimited, received",
                    "kpkt/s",
                    &cell(ov, 1),
                    &cell(iv, 1),
                    &ratio(ov, iv),
                    &bo,
                    &bi,
                ]);
                row([
                    "UDP unlimited, loss",
                    "%",
                    &cell(o.extra, 2),
                    &cell(i.extra, 2),
                    &ratio(o.extra, i.extra),
                    "",
                    "",
                ]);
            }
            Test::UdpPaced(bps) => {
                let name = format!("UDP {}, sent", rate_label(*bps));
                let (ov, iv) = (o.value.map(|v| v / 1e6), i.value.map(|v| v / 1e6));
                row([
                    &name,
                    "Mbit/s",
                    &cell(ov, 3),
                    &cell(iv, 3),
                    &ratio(ov, iv),
                    &bo,
                    &bi,
                ]);
                let name = format!("UDP {}, rate error", rate_label(*bps));
                row([
                    &name,
                    "%",
                    &signed(o.extra, 3),
                    &signed(i.extra, 3),
                    "",
                    "",
                    "",
                ]);
                floors.push((
                    format!(
                        "btest paced UDP {} average rate error {} % within +/-{PACED_FLOOR_PCT} %",
                        rate_label(*bps),
                        signed(o.extra, 3)
                    ),
                    Some(o.extra.is_some_and(|e| e.abs() <= PACED_FLOOR_PCT)),
                ));
            }
        }
    }
    println!(
        "\nAccounting: btest UDP rates count IP+UDP headers ({UDP_WIRE} B per datagram, as \
         RouterOS); iperf3 -b counts UDP payload ({UDP_PAYLOAD} B per datagram). Each paced error \
         is the sender's achieved average rate against its own target in its own accounting."
    );
    println!(
        "Directions: TCP and UDP unlimited have the server sending and the client counting \
         (btest --direction receive, iperf3 -R); paced UDP has the client sending \
         (btest --direction transmit --local-tx-speed, iperf3 -u -b)."
    );
    if let Some(seen) = &bench.iperf_cc_seen {
        println!("iperf3 reported sender congestion control: {seen}");
    }

    println!();
    let mut failed = failures > 0;
    for (what, ok) in &floors {
        let verdict = match ok {
            Some(true) => "PASS",
            Some(false) => {
                failed = true;
                "FAIL"
            }
            None => "SKIP",
        };
        println!("{verdict}: {what}");
    }
    if failures > 0 {
        println!("{failures} run(s) failed; see above");
    }
    if failed && strict {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
