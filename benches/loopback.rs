//! End-to-end benchmark: our client against our server next to iperf3 against iperf3, in the
//! same run, on loopback and over a veth pair between two network namespaces. Runs alternate
//! between the tools (the order flips every repetition); each figure is the median of
//! `BENCH_REPS` runs (default 3) of `BENCH_SECS` seconds (default 3).
//!
//! Tools: btest; Debian's iperf3 (`iperf3` on PATH, installed with apt-get when absent); and,
//! when the environment variable `IPERF3` names another iperf3 binary (e.g. a hand-built 3.21),
//! that one too. An iperf3 that has `--gsro` (UDP GSO/GRO) gets it in the unlimited UDP figures.
//! The targets compare btest with the `IPERF3` binary, or with Debian's when `IPERF3` is unset.
//!
//! Figures (`docs/bench.md` explains each one):
//! - TCP, 1 and 4 streams, the server sending: throughput at the client;
//! - UDP unlimited, 1500-byte and 92-byte datagrams on the wire (iperf3 `-l 1472` / `-l 64`), the
//!   client sending: datagrams/s received by the server and loss. btest's figure comes from its
//!   server's `session_end` record (`rx_bytes / size / duration_s`, `lost_packets`), iperf3's
//!   from `end.sum_received` (`packets - lost_packets`, over `seconds`);
//! - UDP paced at 10 Mbit/s, 100 Mbit/s and 1 Gbit/s, 1500-byte datagrams, the client sending:
//!   the sender's average rate against its target, each tool in its own accounting (btest counts
//!   IP+UDP headers, `iperf3 -b` payload only); btest also with `--pacing precise` at 1 Gbit/s,
//!   and with both cores taken by two spinning threads (the "loaded" rows);
//! - wire gaps (root and tcpdump only): one more paced run per tool and rate is captured with
//!   tcpdump (nanosecond timestamps) and the gaps between consecutive data datagrams are given
//!   as multiples of the tool's own period, with bursts (runs of datagrams < 10 % of a period
//!   apart). A GSO super-datagram in the capture counts as its datagrams, 0 ns apart;
//! - GSO check (root and tcpdump only): a 1 s unlimited 1500-byte run per GSO-capable tool with a
//!   capture of frames longer than one datagram, i.e. GSO super-datagrams left unsegmented;
//! - veth (root only): the UDP unlimited figures again between two namespaces, with the sending
//!   veth's `gso_max_segs` set to 1 so the kernel segments every GSO super-datagram before it
//!   crosses (after a GSO check with the veth's defaults, which pass them whole).
//!
//! CPU is the whole machine's busy cores during each run, from the kernel's cpuidle residency
//! counters (the method of `shared/tools/busy-cores`), read after waking every CPU (see
//! `wake_cpus`). Process CPU accounting is not used: it is sampled at the scheduler tick and
//! under-reports paced senders several-fold. The settle before each run doubles as a reading of
//! the background (other work on the machine); figures where it exceeded 0.2 cores are listed.
//!
//! Targets are printed PASS/MISS/SKIP; the bench exits 0 whatever they say unless
//! `BENCH_STRICT=1` (then a MISS or a failed run exits 1).
//!
//! What it must not do: send traffic anywhere but 127.0.0.1 and the 10.201.0.0/24 addresses of
//! the two namespaces it creates (and deletes at the end, also on failure); touch anything but
//! its own child processes; sleep to wait for readiness (it reads the servers' "listening"
//! lines and tcpdump's); or be trusted with other load on the machine, since every figure, CPU
//! included, is machine-wide (it prints the background before and after).
//!
//! Knobs: `BENCH_SECS`, `BENCH_REPS`, `BENCH_STRICT=1`, `IPERF3=/path/to/iperf3`, and
//! `BENCH_PORT` (default 27000: our server's TCP port; +1, +2 are the iperf3 servers' ports and
//! +100 starts our server's UDP range).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The two UDP datagram sizes on the wire (IPv4 20 + UDP 8 + payload).
const UDP_SIZES: [u64; 2] = [1500, 92];
/// IPv4 + UDP header bytes.
const UDP_HDR: u64 = 28;
/// Datagram size of the paced figures.
const PACED_WIRE: u64 = 1500;
/// Paced rates, bits per second.
const PACED: [u64; 3] = [10_000_000, 100_000_000, 1_000_000_000];
/// Quiet gap between runs so one run's wind-down does not land in the next run's CPU reading.
const SETTLE: Duration = Duration::from_millis(200);
/// Wait after a captured run before stopping tcpdump. It runs in immediate mode (without it,
/// libpcap's TPACKET_V3 blocks are handed over up to 2 s late and SIGINT loses that tail).
const CAPTURE_FLUSH: Duration = Duration::from_millis(300);
/// Namespace addresses of the veth figures (inside the namespaces only).
const VETH_A: &str = "10.201.0.1";
const VETH_B: &str = "10.201.0.2";

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
    if cpus > 0 {
        return Some((total, cpus));
    }
    proc_stat_idle_us()
}

/// The fallback where the kernel has no cpuidle driver (seen on a Firecracker VM, kernel 6.18:
/// `current_driver` reads `none`): idle + iowait of the `cpu` line of /proc/stat. On a tickless
/// kernel these come from the same per-CPU idle clock, current to the moment of reading (an
/// ongoing idle period is included), in 10 ms units: 0.007 cores of resolution over a 3 s run.
/// Checked here: `sleep 2` read 398 ticks idle of 400, a 2 s spin loop 199 of 200.
fn proc_stat_idle_us() -> Option<(u64, usize)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let mut cpus = 0usize;
    let mut total = None;
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait ...; USER_HZ is 100 on Linux.
                total = Some((v.get(3)? + v.get(4).copied().unwrap_or(0)) * 10_000);
            }
            Some(c) if c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    Some((total?, cpus)).filter(|&(_, n)| n > 0)
}

/// Makes every CPU leave its idle state, so that its cpuidle residency is current: the kernel
/// adds an idle period to `time` only when the CPU wakes from it, so a CPU idle across a
/// reading would count its whole current idle period in the next window instead (measured on
/// an idle machine: 200 ms windows read anything from -0.8 to +1.0 busy cores without this,
/// 0.03 with it). A `taskset -c N true` per CPU does it (a few ms of CPU in all); without
/// taskset, readings keep that error, which shrinks with the window (3 s runs: ~0.05 cores).
fn wake_cpus() {
    static TASKSET: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let Some(taskset) = TASKSET.get_or_init(|| which("taskset")) else {
        return;
    };
    let Ok(dir) = fs::read_dir("/sys/devices/system/cpu") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(n) = name.strip_prefix("cpu") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let _ = Command::new(taskset)
            .args(["-c", n, "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A busy-core reading in progress.
struct BusyMeter {
    start: Option<(u64, usize)>,
    t0: Instant,
}

impl BusyMeter {
    fn start() -> Self {
        wake_cpus();
        BusyMeter {
            start: idle_us(),
            t0: Instant::now(),
        }
    }

    /// Busy cores since `start`: CPUs minus idle seconds per wall second.
    fn stop(self) -> Option<f64> {
        wake_cpus();
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

/// Spinning threads that keep cores busy (the "loaded" figures); they stop when dropped, and
/// by themselves after `max`.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(n: usize, max: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + max;
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A long-running child (a server, tcpdump) whose stdout and stderr lines arrive on a channel;
/// killed when dropped.
struct Proc {
    child: Child,
    what: String,
    lines: Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(what: &str, cmd: &mut Command) -> Result<Proc, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{what}: cannot start: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let out: Option<Box<dyn Read + Send>> = child.stdout.take().map(|r| Box::new(r) as _);
        let err: Option<Box<dyn Read + Send>> = child.stderr.take().map(|r| Box::new(r) as _);
        for r in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Proc {
            child,
            what: what.to_owned(),
            lines: rx,
        })
    }

    /// Reads lines until one contains `needle`, the child exits, or `timeout` passes.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{}: no \"{needle}\" after {timeout:?} (said: {})",
                    self.what,
                    seen.join(" / ")
                ));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(l) if l.contains(needle) => return Ok(l),
                Ok(l) => seen.push(l),
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        return Err(format!(
                            "{}: exited ({st}) (said: {}); is the port in use? Set BENCH_PORT",
                            self.what,
                            seen.join(" / ")
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(format!(
                        "{}: exited (said: {})",
                        self.what,
                        seen.join(" / ")
                    ));
                }
            }
        }
    }

    /// Discards the lines that arrived so far.
    fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
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
            Ok(None) => thread::sleep(Duration::from_millis(10)),
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

/// Runs a short admin command (`ip ...`); `Err` carries its stderr.
fn sh(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            first_line(&String::from_utf8_lossy(&out.stderr))
        ))
    }
}

/// `prog` itself, or `ip netns exec NS prog` inside a namespace.
fn in_ns(ns: Option<&str>, prog: &Path) -> Command {
    match ns {
        None => Command::new(prog),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(prog);
            c
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces for the veth figures.

/// Two namespaces joined by a veth pair; deleted (with the pair) when dropped.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let ns = Netns {
            a: format!("btbench{pid}a"),
            b: format!("btbench{pid}b"),
        };
        sh("ip", &["netns", "add", &ns.a])?;
        // From here on `ns` is dropped on any error, which deletes whatever was made.
        sh("ip", &["netns", "add", &ns.b])?;
        sh(
            "ip",
            &[
                "link", "add", "vbta", "netns", &ns.a, "type", "veth", "peer", "name", "vbtb",
                "netns", &ns.b,
            ],
        )?;
        for (n, dev, addr) in [(&ns.a, "vbta", VETH_A), (&ns.b, "vbtb", VETH_B)] {
            sh(
                "ip",
                &["-n", n, "addr", "add", &format!("{addr}/24"), "dev", dev],
            )?;
            sh("ip", &["-n", n, "link", "set", "lo", "up"])?;
            sh("ip", &["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    /// Sets `gso_max_segs` on both ends: 1 makes the kernel segment GSO super-datagrams in
    /// software before they cross, as for a NIC without UDP segmentation offload.
    fn gso_max_segs(&self, segs: u32) -> Result<(), String> {
        let s = segs.to_string();
        sh(
            "ip",
            &["-n", &self.a, "link", "set", "vbta", "gso_max_segs", &s],
        )?;
        sh(
            "ip",
            &["-n", &self.b, "link", "set", "vbtb", "gso_max_segs", &s],
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            if let Err(e) = sh("ip", &["netns", "del", n]) {
                println!("warning: {e}; delete it by hand with `ip netns del {n}`");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Captures: tcpdump, and a pcap reader.

/// A tcpdump writing `path`.
struct Capture {
    proc: Proc,
    path: PathBuf,
}

impl Capture {
    /// Starts tcpdump and waits until it is listening.
    fn start(
        ns: Option<&str>,
        iface: &str,
        filter: &str,
        count: Option<u32>,
        name: &str,
    ) -> Result<Capture, String> {
        let path =
            std::env::temp_dir().join(format!("btest-bench-{}-{name}.pcap", std::process::id()));
        let _ = fs::remove_file(&path);
        let mut cmd = in_ns(ns, Path::new("tcpdump"));
        cmd.args([
            "-i",
            iface,
            "--immediate-mode",
            "-nn",
            "-s",
            "96",
            "-B",
            "65536",
        ])
        .args(["--time-stamp-precision=nano", "-w"])
        .arg(&path);
        if let Some(c) = count {
            cmd.args(["-c", &c.to_string()]);
        }
        // `inbound` (kernel-side, on the packet type) keeps one copy of each packet: lo shows
        // every packet twice, outgoing and incoming.
        cmd.arg(format!("inbound and ({filter})"));
        let mut proc = Proc::spawn("tcpdump", &mut cmd)?;
        proc.wait_line("listening on", Duration::from_secs(10))?;
        Ok(Capture { proc, path })
    }

    /// Lets tcpdump hand over its last block, stops it with SIGINT and returns the file's bytes
    /// and the kernel drop count tcpdump reported.
    fn stop(mut self) -> Result<(Vec<u8>, Option<u64>), String> {
        thread::sleep(CAPTURE_FLUSH);
        if matches!(self.proc.child.try_wait(), Ok(None)) {
            let _ = sh("kill", &["-INT", &self.proc.child.id().to_string()]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.proc.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let mut dropped = None;
        while let Ok(l) = self.proc.lines.recv_timeout(Duration::from_millis(200)) {
            if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
                dropped = n.trim().parse().ok();
            }
        }
        let bytes = fs::read(&self.path).map_err(|e| format!("capture file: {e}"));
        let _ = fs::remove_file(&self.path);
        Ok((bytes?, dropped))
    }
}

/// One captured IPv4 UDP frame.
struct Pkt {
    ts_ns: u64,
    /// IP datagram length (from the frame's original length, so a GSO super-datagram counts
    /// whole even though the capture kept only its headers).
    ip_len: u64,
    flow: ([u8; 4], u16, [u8; 4], u16),
}

/// Reads a pcap file (microsecond or nanosecond, either byte order) and keeps its IPv4 UDP
/// frames. Link types: Ethernet (lo and veth), Linux cooked v1/v2, raw IP.
fn parse_pcap(b: &[u8]) -> Result<Vec<Pkt>, String> {
    if b.len() < 24 {
        return Err("capture file shorter than a pcap header".into());
    }
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (le, nano) = match magic {
        0xa1b2_3c4d => (true, true),
        0xa1b2_c3d4 => (true, false),
        0x4d3c_b2a1 => (false, true),
        0xd4c3_b2a1 => (false, false),
        m => return Err(format!("not a pcap file (magic {m:#010x})")),
    };
    let u32_at = |o: usize| {
        let w = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let be16 = |d: &[u8], o: usize| u16::from_be_bytes([d[o], d[o + 1]]);
    let link = u32_at(20) & 0x0fff_ffff;
    let mut pkts = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let (sec, frac) = (u64::from(u32_at(off)), u64::from(u32_at(off + 4)));
        let (incl, orig) = (u32_at(off + 8) as usize, u64::from(u32_at(off + 12)));
        let d = &b[off + 16..(off + 16 + incl).min(b.len())];
        off += 16 + incl;
        let (ip_off, ethertype) = match link {
            1 if d.len() >= 14 => (14, be16(d, 12)),
            113 if d.len() >= 16 => (16, be16(d, 14)),
            276 if d.len() >= 20 => (20, be16(d, 0)),
            101 | 12 | 14 if !d.is_empty() => (0, if d[0] >> 4 == 4 { 0x0800 } else { 0 }),
            1 | 113 | 276 | 101 | 12 | 14 => continue,
            l => return Err(format!("unsupported pcap link type {l}")),
        };
        let ip = &d[ip_off..];
        if ethertype != 0x0800 || ip.len() < 20 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip.len() < ihl + 4 {
            continue;
        }
        pkts.push(Pkt {
            ts_ns: sec * 1_000_000_000 + if nano { frac } else { frac * 1000 },
            ip_len: orig.saturating_sub(ip_off as u64),
            flow: (
                [ip[12], ip[13], ip[14], ip[15]],
                be16(ip, ihl),
                [ip[16], ip[17], ip[18], ip[19]],
                be16(ip, ihl + 2),
            ),
        });
    }
    Ok(pkts)
}

/// Send gaps of one captured paced run, as multiples of the period.
#[derive(Clone)]
struct Gaps {
    /// Datagrams (GSO super-datagrams counted as their segments).
    datagrams: usize,
    /// Frames that carried more than one datagram (unsegmented GSO).
    supers: usize,
    /// p10, p50, p90, p99 of the gaps, in periods.
    pct: [f64; 4],
    burst_max: usize,
    burst_mean: f64,
    /// Average rate of the captured datagrams against the target, percent.
    rate_err_pct: f64,
    dropped: Option<u64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let k = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    sorted[k - 1]
}

/// Gaps of the busiest flow's data datagrams (frames of at least `wire` bytes); a frame of `k`
/// datagrams (GSO, `payload` bytes each) counts as `k` datagrams sent at the same instant.
fn gap_stats(pkts: &[Pkt], wire: u64, payload: u64, period_ns: f64) -> Result<Gaps, String> {
    let mut per_flow: HashMap<_, usize> = HashMap::new();
    for p in pkts.iter().filter(|p| p.ip_len >= wire) {
        *per_flow.entry(p.flow).or_default() += 1;
    }
    let flow = per_flow
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(f, _)| f)
        .ok_or("no data datagrams in the capture")?;
    let mut times = Vec::new();
    let mut supers = 0;
    for p in pkts.iter().filter(|p| p.flow == flow && p.ip_len >= wire) {
        let k = (p.ip_len - UDP_HDR).div_ceil(payload).max(1);
        supers += usize::from(k > 1);
        for _ in 0..k {
            times.push(p.ts_ns);
        }
    }
    if times.len() < 3 {
        return Err(format!("only {} data datagrams captured", times.len()));
    }
    let g: Vec<f64> = times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]) as f64 / period_ns)
        .collect();
    let (mut bursts, mut run, mut burst_max) = (0usize, 1usize, 1usize);
    for &x in &g {
        if x < 0.1 {
            run += 1;
        } else {
            bursts += 1;
            burst_max = burst_max.max(run);
            run = 1;
        }
    }
    bursts += 1;
    burst_max = burst_max.max(run);
    let mut sorted = g;
    sorted.sort_by(f64::total_cmp);
    let span_ns = (times[times.len() - 1] - times[0]) as f64;
    let n = times.len();
    Ok(Gaps {
        datagrams: n,
        supers,
        pct: [10.0, 50.0, 90.0, 99.0].map(|p| percentile(&sorted, p)),
        burst_max,
        burst_mean: n as f64 / bursts as f64,
        // n datagrams on time span n-1 periods of the tool's own accounting.
        rate_err_pct: 100.0 * ((n - 1) as f64 * period_ns / span_ns - 1.0),
        dropped: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The tools.

/// An iperf3 binary.
struct Iperf {
    path: PathBuf,
    label: String,
    gsro: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tool {
    Btest,
    /// Index into `Bench::iperfs`.
    Iperf(usize),
}

/// One test shape, run by every tool.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Test {
    /// TCP, this many connections, unlimited; the server sends and the client measures.
    Tcp(u32),
    /// UDP, unlimited, datagrams of this wire size; the client sends, the server counts.
    Udp(u64),
    /// UDP 1500 B paced at this many bit/s in each tool's own accounting; the client sends.
    Paced { bps: u64, precise: bool },
}

/// Where a test runs: the server's address, and the namespaces of client and server.
#[derive(Clone)]
struct Site {
    server_ip: &'static str,
    client_ns: Option<String>,
    server_ns: Option<String>,
}

/// One run's figures: `value` is the headline figure, `extra` a second one (loss %, error %).
#[derive(Clone)]
struct Sample {
    value: f64,
    extra: f64,
    busy: Option<f64>,
    /// btest's own pacing audit: medians over the intervals of gap p50 and p99, microseconds.
    audit: Option<(f64, f64)>,
    /// Machine busy cores in the settle just before the run, nothing of ours running.
    bg: Option<f64>,
}

/// The servers of one site.
struct Servers {
    btest: Proc,
    iperf: Vec<Option<Proc>>,
}

struct Bench {
    btest: PathBuf,
    iperfs: Vec<Iperf>,
    port: u16,
    secs: u64,
    cc: Option<String>,
    iperf_cc_seen: Option<String>,
    /// (iperf index, datagram size) where `--gsro` sent nothing: run without it.
    no_gsro: Vec<(usize, u64)>,
    /// Remarks for the end of the report.
    notes: Vec<String>,
}

fn iperf_port(base: u16, i: usize) -> u16 {
    base + 1 + i as u16
}

impl Bench {
    /// Whether iperf `i` runs unlimited UDP of `wire`-byte datagrams with `--gsro`.
    fn uses_gsro(&self, i: usize, wire: u64) -> bool {
        self.iperfs[i].gsro && !self.no_gsro.contains(&(i, wire))
    }

    fn tool_name(&self, tool: Tool) -> String {
        match tool {
            Tool::Btest => "btest".into(),
            Tool::Iperf(i) => self.iperfs[i].label.clone(),
        }
    }

    fn tools(&self) -> Vec<Tool> {
        std::iter::once(Tool::Btest)
            .chain((0..self.iperfs.len()).map(Tool::Iperf))
            .collect()
    }

    /// Starts our server and every iperf3 server at `site`; an iperf3 server that fails to start
    /// is left out (its figures print as n/a).
    fn servers(&self, site: &Site) -> Result<Servers, String> {
        let ns = site.server_ns.as_deref();
        let mut btest = Proc::spawn(
            "btest server",
            in_ns(ns, &self.btest).args([
                "server",
                "--json",
                "--listen",
                &format!("{}:{}", site.server_ip, self.port),
                "--udp-port-from",
                &(self.port + 100).to_string(),
            ]),
        )?;
        btest.wait_line("listening on", Duration::from_secs(10))?;
        let mut iperf = Vec::new();
        for (i, ip) in self.iperfs.iter().enumerate() {
            let port = iperf_port(self.port, i);
            let started = Proc::spawn(
                &format!("{} server", ip.label),
                in_ns(ns, &ip.path).args(["-s", "-p", &port.to_string(), "--forceflush"]),
            )
            .and_then(|mut p| {
                p.wait_line("listening on", Duration::from_secs(10))?;
                Ok(p)
            });
            match started {
                Ok(p) => iperf.push(Some(p)),
                Err(e) => {
                    println!("{e}; its figures are left out");
                    iperf.push(None);
                }
            }
        }
        Ok(Servers { btest, iperf })
    }

    fn command(&self, site: &Site, tool: Tool, test: Test, secs: u64) -> Command {
        let ns = site.client_ns.as_deref();
        match tool {
            Tool::Btest => {
                let mut c = in_ns(ns, &self.btest);
                c.args([
                    "client",
                    &format!("{}:{}", site.server_ip, self.port),
                    "--json",
                ])
                .args(["--duration", &format!("{secs}s")]);
                match test {
                    Test::Tcp(n) => c
                        .args(["--protocol", "tcp", "--direction", "receive"])
                        .args(["--connection-count", &n.to_string()]),
                    Test::Udp(wire) => c
                        .args(["--protocol", "udp", "--direction", "transmit"])
                        .args(["--local-tx-speed", "0"])
                        .args(["--local-udp-tx-size", &wire.to_string()]),
                    Test::Paced { bps, precise } => {
                        c.args(["--protocol", "udp", "--direction", "transmit"])
                            .args(["--local-tx-speed", &bps.to_string()])
                            .args(["--local-udp-tx-size", &PACED_WIRE.to_string()]);
                        if precise {
                            c.args(["--pacing", "precise"]);
                        }
                        &mut c
                    }
                };
                c
            }
            Tool::Iperf(i) => {
                let ip = &self.iperfs[i];
                let mut c = in_ns(ns, &ip.path);
                c.args([
                    "-c",
                    site.server_ip,
                    "-p",
                    &iperf_port(self.port, i).to_string(),
                ])
                .args(["-t", &secs.to_string(), "-J"]);
                match test {
                    Test::Tcp(n) => {
                        c.args(["-R", "-P", &n.to_string()]);
                        if let Some(cc) = &self.cc {
                            c.args(["-C", cc]);
                        }
                    }
                    Test::Udp(wire) => {
                        c.args(["-u", "-b", "0", "-l", &(wire - UDP_HDR).to_string()]);
                        if self.uses_gsro(i, wire) {
                            c.arg("--gsro");
                        }
                    }
                    Test::Paced { bps, .. } => {
                        c.args(["-u", "-b", &bps.to_string()])
                            .args(["-l", &(PACED_WIRE - UDP_HDR).to_string()]);
                    }
                }
                c
            }
        }
    }

    /// Runs one test once with one tool; retries iperf3 when its server is still busy.
    fn run(
        &mut self,
        srv: &Servers,
        site: &Site,
        tool: Tool,
        test: Test,
        secs: u64,
    ) -> Result<Sample, String> {
        let name = self.tool_name(tool);
        if let Tool::Iperf(i) = tool {
            if srv.iperf[i].is_none() {
                return Err(format!("{name}: no server"));
            }
        }
        srv.btest.drain();
        let timeout = Duration::from_secs(secs + 20);
        let mut attempt = 0;
        let out = loop {
            let out = run_client(&mut self.command(site, tool, test, secs), timeout)?;
            let busy_server = matches!(tool, Tool::Iperf(_))
                && !out.ok
                && (out.stdout.contains("busy") || out.stdout.contains("unable to connect"));
            if busy_server && attempt < 5 {
                attempt += 1;
                thread::sleep(Duration::from_millis(300));
                continue;
            }
            break out;
        };
        let bad = |what: &str| format!("{name}: no {what} in its output");
        let json = |s: &str| serde_json::from_str::<Value>(s).ok();
        if !out.ok {
            let why = match tool {
                Tool::Iperf(_) => json(&out.stdout)
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| first_line(&out.stderr).to_owned()),
                Tool::Btest => first_line(&out.stderr).to_owned(),
            };
            return Err(format!("{name} failed: {why}"));
        }
        let f = |v: &Value, k: &str| v[k].as_f64().ok_or_else(|| bad(k));
        let loss = |lost: f64, got: f64| {
            if got + lost > 0.0 {
                100.0 * lost / (got + lost)
            } else {
                0.0
            }
        };
        let sample = |value, extra| Sample {
            value,
            extra,
            busy: out.busy,
            audit: None,
            bg: None,
        };
        match tool {
            Tool::Btest => {
                let recs: Vec<Value> = out.stdout.lines().filter_map(json).collect();
                let sum = recs
                    .iter()
                    .rev()
                    .find(|r| r["type"] == "summary")
                    .ok_or_else(|| bad("summary record"))?;
                match test {
                    Test::Tcp(_) => Ok(sample(f(sum, "rx_avg_bps")?, 0.0)),
                    Test::Udp(wire) => {
                        // What the server received, from its own session_end record.
                        let end = loop {
                            match srv.btest.lines.recv_timeout(Duration::from_secs(5)) {
                                Ok(l) if l.contains("\"session_end\"") => {
                                    break json(&l).ok_or_else(|| bad("session_end"))?;
                                }
                                Ok(_) => {}
                                Err(_) => return Err(format!("{name}: no server session_end")),
                            }
                        };
                        let got = f(&end, "rx_bytes")? / wire as f64;
                        let lost = f(&end, "lost_packets")?;
                        Ok(sample(got / f(&end, "duration_s")?, loss(lost, got)))
                    }
                    Test::Paced { bps, .. } => {
                        let got = f(sum, "tx_avg_bps")?;
                        let mut s = sample(got, 100.0 * (got - bps as f64) / bps as f64);
                        let audit = |k: &str| {
                            median(
                                recs.iter()
                                    .filter(|r| r["type"] == "interval")
                                    .filter_map(|r| r["senders"][0][k].as_f64())
                                    .collect(),
                            )
                        };
                        s.audit = audit("gap_p50_us").zip(audit("gap_p99_us"));
                        Ok(s)
                    }
                }
            }
            Tool::Iperf(_) => {
                let v = json(&out.stdout).ok_or_else(|| bad("JSON report"))?;
                let end = &v["end"];
                match test {
                    Test::Tcp(_) => {
                        if self.iperf_cc_seen.is_none() {
                            self.iperf_cc_seen =
                                end["sender_tcp_congestion"].as_str().map(str::to_owned);
                        }
                        Ok(sample(f(&end["sum_received"], "bits_per_second")?, 0.0))
                    }
                    Test::Udp(wire) => {
                        let Tool::Iperf(i) = tool else { unreachable!() };
                        if self.uses_gsro(i, wire) && end["sum_sent"]["bytes"].as_f64() == Some(0.0)
                        {
                            // 3.21 fills a 64 KB GSO buffer whatever the datagram size; with
                            // 64-byte datagrams that is more segments than the kernel takes,
                            // every send fails and the run reports nothing sent.
                            self.no_gsro.push((i, wire));
                            let note = format!(
                                "{name} --gsro sent nothing with -l {}; its UDP {wire} B figures \
                                 are without --gsro",
                                wire - UDP_HDR
                            );
                            println!("  note: {note}");
                            self.notes.push(note);
                            return self.run(srv, site, tool, test, secs);
                        }
                        let r = &end["sum_received"];
                        let (pkts, lost) = (f(r, "packets")?, f(r, "lost_packets")?);
                        let got = pkts - lost;
                        Ok(sample(got / f(r, "seconds")?, loss(lost, got)))
                    }
                    Test::Paced { bps, .. } => {
                        let got = f(&end["sum_sent"], "bits_per_second")?;
                        Ok(sample(got, 100.0 * (got - bps as f64) / bps as f64))
                    }
                }
            }
        }
    }

    /// The tool's datagram payload and period at `bps` in its own accounting, nanoseconds.
    fn period_ns(&self, tool: Tool, bps: u64) -> f64 {
        let counted = match tool {
            Tool::Btest => PACED_WIRE,
            Tool::Iperf(_) => PACED_WIRE - UDP_HDR,
        };
        counted as f64 * 8e9 / bps as f64
    }

    /// The capture filter that keeps a tool's client-to-server datagrams.
    fn data_filter(&self, tool: Tool) -> String {
        match tool {
            Tool::Btest => format!(
                "udp and dst portrange {}-{}",
                self.port + 100,
                self.port + 1099
            ),
            Tool::Iperf(i) => format!("udp and dst port {}", iperf_port(self.port, i)),
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

/// Medians of one tool's runs of one figure, plus the least busy run: other work on the machine
/// can only add to a busy-core reading, so the minimum is the best estimate of the tool's own.
#[derive(Default, Clone)]
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

fn ratio_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    ratio_of(a, b).map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}x"))
}

fn rate_label(bps: u64) -> String {
    if bps >= 1_000_000_000 {
        format!("{} Gbit/s", bps / 1_000_000_000)
    } else {
        format!("{} Mbit/s", bps / 1_000_000)
    }
}

/// A table printed with aligned columns, Markdown style: first column left, the rest right.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: Vec<String>) -> Table {
        Table { rows: vec![header] }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn print(&self) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, r) in self.rows.iter().enumerate() {
            let mut line = String::from("|");
            for (c, w) in width.iter().enumerate() {
                let s = r.get(c).map_or("", String::as_str);
                if c == 0 {
                    line.push_str(&format!(" {s:<w$} |"));
                } else {
                    line.push_str(&format!(" {s:>w$} |"));
                }
            }
            println!("{line}");
            if i == 0 {
                let mut sep = String::from("|");
                for (c, w) in width.iter().enumerate() {
                    sep.push_str(&if c == 0 {
                        format!("{:-<1$}|", "", w + 2)
                    } else {
                        format!("{:-<1$}:|", "", w + 1)
                    });
                }
                println!("{sep}");
            }
        }
    }
}

/// One PASS/MISS/SKIP line.
struct Target {
    what: String,
    /// `None`: SKIP (no figure to judge).
    ok: Option<bool>,
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

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `Some((version, has --gsro))` when `path` runs as an iperf3.
fn iperf_probe(path: &Path) -> Option<(String, bool)> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = first_line(&text)
        .strip_prefix("iperf ")?
        .split_whitespace()
        .next()?
        .to_owned();
    let help = Command::new(path).arg("--help").output().ok()?;
    let gsro = String::from_utf8_lossy(&help.stdout).contains("--gsro")
        || String::from_utf8_lossy(&help.stderr).contains("--gsro");
    Some((version, gsro))
}

/// Finds Debian's iperf3, installing it with apt-get when absent. `Err` says why it is not
/// available.
fn ensure_iperf3() -> Result<PathBuf, String> {
    if let Some(p) = which("iperf3") {
        return Ok(p);
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
                if let Some(p) = which("iperf3") {
                    return Ok(p);
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

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Every run's samples of one figure: `samples[0]` is btest's, `samples[1 + i]` iperf `i`'s.
struct Figure {
    test: Test,
    tools: Vec<Tool>,
    samples: Vec<Vec<Sample>>,
}

impl Figure {
    fn summary(&self, idx: usize) -> Summary {
        summarise(&self.samples[idx])
    }
}

fn tool_idx(tool: Tool) -> usize {
    match tool {
        Tool::Btest => 0,
        Tool::Iperf(i) => i + 1,
    }
}

fn describe(test: Test, s: &Sample) -> String {
    match test {
        Test::Tcp(_) => format!("{:.2} Gbit/s", s.value / 1e9),
        Test::Udp(_) => format!(
            "{:.1} kpkt/s received, loss {:.2} %",
            s.value / 1e3,
            s.extra
        ),
        Test::Paced { .. } => {
            let audit = s.audit.map_or_else(String::new, |(p50, p99)| {
                format!(" (own audit: gap p50 {p50:.1} us, p99 {p99:.1} us)")
            });
            format!(
                "{:.3} Mbit/s sent, error {:+.3} %{audit}",
                s.value / 1e6,
                s.extra
            )
        }
    }
}

fn title(test: Test) -> String {
    match test {
        Test::Tcp(1) => "TCP 1 stream".into(),
        Test::Tcp(n) => format!("TCP {n} streams"),
        Test::Udp(w) => format!("UDP {w} B"),
        Test::Paced { bps, precise } => format!(
            "UDP {}{}",
            rate_label(bps),
            if precise { " precise" } else { "" }
        ),
    }
}

/// Runs `tests` with `tools` at `site`, `reps` times each, alternating tools.
#[allow(clippy::too_many_arguments)]
fn run_figures(
    bench: &mut Bench,
    srv: &Servers,
    site: &Site,
    tests: &[(Test, Vec<Tool>)],
    reps: usize,
    loaded: bool,
    heading: &str,
    failures: &mut usize,
) -> Vec<Figure> {
    let mut figs = Vec::new();
    let ntools = 1 + bench.iperfs.len();
    for (test, tools) in tests {
        let mut fig = Figure {
            test: *test,
            tools: tools.clone(),
            samples: vec![Vec::new(); ntools],
        };
        println!("\n{heading}{}:", title(*test));
        for rep in 0..reps {
            let order: Vec<Tool> = if rep % 2 == 0 {
                tools.clone()
            } else {
                tools.iter().rev().copied().collect()
            };
            for tool in order {
                // The settle doubles as a reading of the background: other work on the machine.
                let m = BusyMeter::start();
                thread::sleep(SETTLE);
                let bg = m.stop();
                let load = loaded.then(|| Load::start(2, Duration::from_secs(bench.secs + 30)));
                let r = bench.run(srv, site, tool, *test, bench.secs);
                drop(load);
                let name = bench.tool_name(tool);
                match r {
                    Ok(mut s) => {
                        s.bg = bg;
                        println!(
                            "  run {}/{reps} {name:<12} {}, busy cores {} (background {})",
                            rep + 1,
                            describe(*test, &s),
                            cell(s.busy, 2),
                            cell(s.bg, 2)
                        );
                        fig.samples[tool_idx(tool)].push(s);
                    }
                    Err(e) => {
                        *failures += 1;
                        println!("  run {}/{reps} {name:<12} FAILED: {e}", rep + 1);
                    }
                }
            }
        }
        figs.push(fig);
    }
    figs
}

/// One captured paced run of one tool.
struct CaptureResult {
    bps: u64,
    precise: bool,
    tool: Tool,
    gaps: Result<Gaps, String>,
    /// The captured run's own figures (sender rate, btest's pacing audit).
    sample: Option<Sample>,
}

fn capture_run(
    bench: &mut Bench,
    srv: &Servers,
    site: &Site,
    tool: Tool,
    bps: u64,
    precise: bool,
) -> CaptureResult {
    let test = Test::Paced { bps, precise };
    let mut sample = None;
    let gaps = (|| {
        let name = format!("{}-{bps}", tool_idx(tool));
        let cap = Capture::start(None, "lo", &bench.data_filter(tool), None, &name)?;
        let run = bench.run(srv, site, tool, test, bench.secs);
        let (bytes, dropped) = cap.stop()?;
        sample = Some(run?);
        let pkts = parse_pcap(&bytes)?;
        let payload = PACED_WIRE - UDP_HDR;
        let mut g = gap_stats(&pkts, PACED_WIRE, payload, bench.period_ns(tool, bps))?;
        g.dropped = dropped;
        Ok(g)
    })();
    CaptureResult {
        bps,
        precise,
        tool,
        gaps,
        sample,
    }
}

/// What a GSO check saw: super-datagram frames (up to the count limit) and the largest one.
fn gso_check(
    bench: &mut Bench,
    srv: &Servers,
    site: &Site,
    tool: Tool,
    iface: (Option<&str>, &str),
    tag: &str,
) -> String {
    const LIMIT: u32 = 2000;
    let wire = UDP_SIZES[0];
    // A frame longer than Ethernet + one datagram carries several: an unsegmented GSO one.
    let filter = format!("udp and greater {}", 14 + wire + 1);
    let r = (|| {
        let cap = Capture::start(iface.0, iface.1, &filter, Some(LIMIT), tag)?;
        let run = bench.run(srv, site, tool, Test::Udp(wire), 1);
        let (bytes, _) = cap.stop()?;
        let s = run?;
        let pkts = parse_pcap(&bytes)?;
        let largest = pkts.iter().map(|p| p.ip_len).max().unwrap_or(0);
        Ok::<_, String>((pkts.len(), largest, s.value))
    })();
    match r {
        Ok((0, _, rate)) => format!(
            "no frame longer than one datagram: each crossed as its own packet \
             ({:.1} kpkt/s received)",
            rate / 1e3
        ),
        Ok((n, largest, rate)) => format!(
            "{}{n} GSO super-datagrams, largest {largest} B = {} datagrams ({:.1} kpkt/s received)",
            if n as u32 >= LIMIT { "at least " } else { "" },
            (largest - UDP_HDR).div_ceil(wire - UDP_HDR),
            rate / 1e3
        ),
        Err(e) => format!("n/a ({e})"),
    }
}

/// The rows of the throughput figures (TCP, UDP) of one site.
fn throughput_rows(
    bench: &Bench,
    figs: &[Figure],
    table: &mut Table,
    refi: Option<usize>,
    tag: &str,
) {
    let tools = bench.tools();
    for fig in figs {
        let sums: Vec<Summary> = (0..tools.len()).map(|i| fig.summary(i)).collect();
        // "-": the tool does not run this figure; "n/a": it ran and gave no figure.
        let ran: Vec<bool> = tools.iter().map(|t| fig.tools.contains(t)).collect();
        let or_dash = |i: usize, s: String| if ran[i] { s } else { "-".to_owned() };
        let (unit, scale, prec) = match fig.test {
            Test::Tcp(_) => ("Gbit/s", 1e-9, 2),
            Test::Udp(_) => ("kpkt/s", 1e-3, 1),
            Test::Paced { .. } => ("Mbit/s", 1e-6, 3),
        };
        let what = match fig.test {
            Test::Udp(_) => format!("{tag}{}, received", title(fig.test)),
            Test::Paced { .. } => format!("{tag}{}, sent", title(fig.test)),
            Test::Tcp(_) => format!("{tag}{}", title(fig.test)),
        };
        let v: Vec<Option<f64>> = sums.iter().map(|s| s.value.map(|x| x * scale)).collect();
        let mut row = vec![what, unit.into()];
        row.extend(
            v.iter()
                .enumerate()
                .map(|(i, x)| or_dash(i, cell(*x, prec))),
        );
        row.push(match refi {
            Some(r) if ran[r] => ratio(v[0], v[r]),
            _ => String::new(),
        });
        row.extend(
            sums.iter()
                .enumerate()
                .map(|(i, s)| or_dash(i, busy_cell(s))),
        );
        table.push(row);
        let second = match fig.test {
            Test::Udp(_) => Some((format!("{tag}{}, loss", title(fig.test)), false)),
            Test::Paced { .. } => Some((format!("{tag}{}, rate error", title(fig.test)), true)),
            Test::Tcp(_) => None,
        };
        if let Some((what, sign)) = second {
            let mut row = vec![what, "%".into()];
            row.extend(sums.iter().enumerate().map(|(i, s)| {
                or_dash(
                    i,
                    if sign {
                        signed(s.extra, 3)
                    } else {
                        cell(s.extra, 2)
                    },
                )
            }));
            table.push(row);
        }
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; there is nothing to filter, so arguments are ignored.
    let secs = env_u64("BENCH_SECS", 3).max(1);
    let reps = env_u64("BENCH_REPS", 3).max(1) as usize;
    let strict = std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1");
    let base = env_u64("BENCH_PORT", 27000).clamp(1024, 60000) as u16;
    let t_start = Instant::now();

    let btest = match find_btest() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loopback bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cc = fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .ok()
        .map(|s| s.trim().to_owned());

    println!("loopback bench: {}", machine());
    println!(
        "runs: {reps} x {secs} s per tool and figure, alternating (order flips each repetition), \
         medians reported"
    );
    println!("btest: {}", btest.display());

    // The iperf3 binaries: Debian's, then $IPERF3's.
    let mut iperfs: Vec<Iperf> = Vec::new();
    let mut add_iperf = |path: PathBuf, origin: &str| {
        let canon = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if iperfs
            .iter()
            .any(|i| fs::canonicalize(&i.path).unwrap_or_else(|_| i.path.clone()) == canon)
        {
            println!("{origin}: {} is the iperf3 already listed", path.display());
            return;
        }
        match iperf_probe(&path) {
            Some((version, gsro)) => {
                let mut label = format!("iperf3 {version}");
                if iperfs.iter().any(|i| i.label == label) {
                    label.push_str(" (IPERF3)");
                }
                println!(
                    "{origin}: {label} at {}{}",
                    path.display(),
                    if gsro {
                        " (has --gsro: used in the unlimited UDP figures)"
                    } else {
                        ""
                    }
                );
                iperfs.push(Iperf { path, label, gsro });
            }
            None => println!(
                "{origin}: {} does not run as iperf3; left out",
                path.display()
            ),
        }
    };
    match ensure_iperf3() {
        Ok(p) => add_iperf(p, "iperf3 on PATH"),
        Err(e) => println!("iperf3 on PATH: NOT AVAILABLE ({e})"),
    }
    let iperf3_env = std::env::var("IPERF3")
        .ok()
        .filter(|v| !v.trim().is_empty());
    match &iperf3_env {
        Some(p) => add_iperf(PathBuf::from(p.trim()), "IPERF3"),
        None => println!("IPERF3: not set (set it to another iperf3 binary to add it)"),
    }
    // The reference of the targets: $IPERF3's binary when it was added, else Debian's.
    let refi = if iperf3_env.is_some() && iperfs.len() == 2 {
        2
    } else {
        1
    };
    let has_ref = refi <= iperfs.len();
    if has_ref {
        let r = &iperfs[refi - 1];
        println!(
            "targets compare btest with {}{}",
            r.label,
            if r.gsro {
                " (--gsro in the unlimited UDP figures)"
            } else {
                " (it has no --gsro; the targets name iperf3 3.21 --gsro)"
            }
        );
    } else {
        println!("no iperf3: printing our figures alone; the comparative targets SKIP");
    }
    match &cc {
        Some(cc) => println!(
            "TCP congestion control: {cc} (system default; btest uses it, iperf3 gets -C {cc})"
        ),
        None => println!("TCP congestion control: unknown"),
    }
    let root = is_root();
    let tcpdump = which("tcpdump").is_some();
    let capture_skip = if !root {
        Some("not root")
    } else if !tcpdump {
        Some("tcpdump not found")
    } else {
        None
    };
    match background_busy() {
        None => println!("busy cores: n/a (no cpuidle residency counters on this machine)"),
        Some(b) => println!(
            "background before the runs: {b:.2} busy cores over 1 s, nothing of ours running{}",
            if b > 0.2 {
                "  [machine not idle: figures will be noisy]"
            } else {
                ""
            }
        ),
    }

    let mut bench = Bench {
        btest,
        iperfs,
        port: base,
        secs,
        cc,
        iperf_cc_seen: None,
        no_gsro: Vec::new(),
        notes: Vec::new(),
    };
    let all = bench.tools();
    let lo = Site {
        server_ip: "127.0.0.1",
        client_ns: None,
        server_ns: None,
    };
    let lo_srv = match bench.servers(&lo) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loopback bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = 0usize;

    // Loopback: throughput, then paced.
    let mut tests: Vec<(Test, Vec<Tool>)> = vec![(Test::Tcp(1), all.clone())];
    tests.push((Test::Tcp(4), all.clone()));
    for w in UDP_SIZES {
        tests.push((Test::Udp(w), all.clone()));
    }
    let lo_thru = run_figures(
        &mut bench,
        &lo_srv,
        &lo,
        &tests,
        reps,
        false,
        "",
        &mut failures,
    );
    let mut tests: Vec<(Test, Vec<Tool>)> = PACED
        .iter()
        .map(|&bps| {
            let t = Test::Paced {
                bps,
                precise: false,
            };
            (t, all.clone())
        })
        .collect();
    let precise = Test::Paced {
        bps: 1_000_000_000,
        precise: true,
    };
    tests.push((precise, vec![Tool::Btest]));
    let lo_paced = run_figures(
        &mut bench,
        &lo_srv,
        &lo,
        &tests,
        reps,
        false,
        "",
        &mut failures,
    );
    let tests: Vec<(Test, Vec<Tool>)> = PACED
        .iter()
        .map(|&bps| {
            let t = Test::Paced {
                bps,
                precise: false,
            };
            (t, vec![Tool::Btest])
        })
        .collect();
    let lo_loaded = run_figures(
        &mut bench,
        &lo_srv,
        &lo,
        &tests,
        reps,
        true,
        "both cores loaded (2 spinning threads), ",
        &mut failures,
    );

    // Wire gaps from captures, then the loopback GSO check.
    let mut captures: Vec<CaptureResult> = Vec::new();
    let mut gso_lines: Vec<String> = Vec::new();
    let gso_tools: Vec<Tool> = all
        .iter()
        .copied()
        .filter(|t| match t {
            Tool::Btest => true,
            Tool::Iperf(i) => bench.iperfs[*i].gsro,
        })
        .collect();
    match capture_skip {
        Some(why) => println!("\nwire gaps and GSO checks: SKIPPED ({why})"),
        None => {
            println!("\nwire gaps (one captured paced run per tool and rate, tcpdump on lo):");
            let mut plan: Vec<(Tool, u64, bool)> = Vec::new();
            for bps in PACED {
                for &t in &all {
                    plan.push((t, bps, false));
                }
            }
            plan.push((Tool::Btest, 1_000_000_000, true));
            // No settle between captures: each ends with tcpdump's 1.2 s flush wait.
            for (tool, bps, precise) in plan {
                let c = capture_run(&mut bench, &lo_srv, &lo, tool, bps, precise);
                let what = format!(
                    "  {:<12} {}{}",
                    bench.tool_name(tool),
                    rate_label(bps),
                    if precise { " precise" } else { "" }
                );
                match &c.gaps {
                    Ok(g) => println!(
                        "{what}: {} datagrams ({} in GSO frames), gap p10/p50/p90/p99 \
                         {:.3}/{:.3}/{:.3}/{:.3} periods, bursts max {} mean {:.2}, \
                         captured rate {:+.3} % (sender: {}), tcpdump drops {}",
                        g.datagrams,
                        g.supers,
                        g.pct[0],
                        g.pct[1],
                        g.pct[2],
                        g.pct[3],
                        g.burst_max,
                        g.burst_mean,
                        g.rate_err_pct,
                        c.sample
                            .as_ref()
                            .map_or("n/a".into(), |s| format!("{:+.3} %", s.extra)),
                        g.dropped.map_or("n/a".into(), |d| d.to_string())
                    ),
                    Err(e) => {
                        failures += 1;
                        println!("{what}: FAILED: {e}");
                    }
                }
                captures.push(c);
            }
            println!("\nGSO check on lo (1 s unlimited 1500 B runs, frames > 1 datagram):");
            for &t in &gso_tools {
                let l = gso_check(&mut bench, &lo_srv, &lo, t, (None, "lo"), "gso-lo");
                let l = format!("lo, {}: {l}", bench.tool_name(t));
                println!("  {l}");
                gso_lines.push(l);
            }
        }
    }
    drop(lo_srv);

    // veth between two namespaces.
    let mut veth_figs: Vec<Figure> = Vec::new();
    let mut veth_note = String::new();
    if !root {
        veth_note = "SKIPPED (not root: cannot create network namespaces)".into();
        println!("\nveth: {veth_note}");
    } else {
        let r = (|| {
            let ns = Netns::create()?;
            let site = Site {
                server_ip: VETH_B,
                client_ns: Some(ns.a.clone()),
                server_ns: Some(ns.b.clone()),
            };
            let srv = bench.servers(&site)?;
            if capture_skip.is_none() {
                println!("\nGSO check on veth (capture on the receiving end):");
                for (segs, what) in [(65535, "veth defaults"), (1, "veth gso_max_segs 1")] {
                    ns.gso_max_segs(segs)?;
                    for &t in &gso_tools {
                        let tag = format!("gso-veth{segs}");
                        let iface = (Some(ns.b.as_str()), "vbtb");
                        let l = gso_check(&mut bench, &srv, &site, t, iface, &tag);
                        let l = format!("{what}, {}: {l}", bench.tool_name(t));
                        println!("  {l}");
                        gso_lines.push(l);
                    }
                }
            }
            ns.gso_max_segs(1)?;
            let tests: Vec<(Test, Vec<Tool>)> = UDP_SIZES
                .iter()
                .map(|&w| (Test::Udp(w), all.clone()))
                .collect();
            let heading = "veth (gso_max_segs 1: every datagram crosses alone), ";
            let figs = run_figures(
                &mut bench,
                &srv,
                &site,
                &tests,
                reps,
                false,
                heading,
                &mut failures,
            );
            drop(srv);
            drop(ns);
            Ok::<_, String>(figs)
        })();
        match r {
            Ok(f) => veth_figs = f,
            Err(e) => {
                failures += 1;
                veth_note = format!("FAILED: {e}");
                println!("\nveth: {veth_note}");
            }
        }
    }

    if let Some(b) = background_busy() {
        println!(
            "\nbackground after the runs: {b:.2} busy cores over 1 s, nothing of ours running"
        );
    }

    // Tables.
    let n = 1 + bench.iperfs.len();
    let names: Vec<String> = bench.tools().iter().map(|&t| bench.tool_name(t)).collect();
    let ref_name = if has_ref {
        names[refi].clone()
    } else {
        "iperf3".into()
    };
    let mut header = vec!["figure".to_owned(), "unit".to_owned()];
    header.extend(names.iter().cloned());
    header.push(format!("btest / {ref_name}"));
    header.extend(names.iter().map(|n| format!("busy {n}")));
    let gsro: Vec<String> = bench
        .iperfs
        .iter()
        .filter(|i| i.gsro)
        .map(|i| {
            format!(
                " {} runs unlimited UDP with --gsro (see the notes).",
                i.label
            )
        })
        .collect();
    println!(
        "\nMedians of {reps} runs of {secs} s; busy = whole machine's busy cores (cpuidle), \
         median (least busy run). UDP received = datagrams/s counted by the receiving server.{}",
        gsro.concat()
    );
    let mut table = Table::new(header.clone());
    throughput_rows(&bench, &lo_thru, &mut table, has_ref.then_some(refi), "");
    throughput_rows(&bench, &lo_paced, &mut table, has_ref.then_some(refi), "");
    throughput_rows(
        &bench,
        &lo_loaded,
        &mut table,
        has_ref.then_some(refi),
        "loaded ",
    );
    throughput_rows(
        &bench,
        &veth_figs,
        &mut table,
        has_ref.then_some(refi),
        "veth ",
    );
    table.print();
    // Busy cores in the settle before each run: other work that every reading above includes.
    let mut noisy = Vec::new();
    let mut bg_all = Vec::new();
    for (tag, figs) in [
        ("", &lo_thru),
        ("", &lo_paced),
        ("loaded ", &lo_loaded),
        ("veth ", &veth_figs),
    ] {
        for f in figs.iter() {
            let bgs: Vec<f64> = f.samples.iter().flatten().filter_map(|s| s.bg).collect();
            let worst = bgs.iter().copied().fold(0.0, f64::max);
            if worst > 0.2 {
                noisy.push(format!("{tag}{} ({worst:.2})", title(f.test)));
            }
            bg_all.extend(bgs);
        }
    }
    match median(bg_all) {
        None => println!("background between runs: n/a"),
        Some(m) if noisy.is_empty() => println!(
            "background between runs (busy cores in the {} ms before each): median {m:.2}, \
             never above 0.2",
            SETTLE.as_millis()
        ),
        Some(m) => println!(
            "background between runs (busy cores in the {} ms before each): median {m:.2}; \
             NOISY, above 0.2 before some run of: {}",
            SETTLE.as_millis(),
            noisy.join(", ")
        ),
    }
    if !veth_note.is_empty() {
        println!("veth: {veth_note}");
    }

    // Wire gaps table.
    let find_cap = |tool: Tool, bps: u64, precise: bool| {
        captures
            .iter()
            .find(|c| c.tool == tool && c.bps == bps && c.precise == precise)
    };
    if !captures.is_empty() {
        println!(
            "\nWire gaps from the captures (tcpdump on lo, ns timestamps), 1500 B datagrams, in \
             periods of each tool's own target (btest 1500 B, iperf3 1472 B per datagram): \
             p10/p50/p90/p99; bursts = datagrams < 0.1 period apart, max/mean."
        );
        let mut h = vec!["figure".to_owned()];
        h.extend(names.iter().cloned());
        let mut t = Table::new(h);
        let mut rows: Vec<(String, u64, bool)> =
            PACED.iter().map(|&b| (rate_label(b), b, false)).collect();
        rows.push(("1 Gbit/s precise".into(), 1_000_000_000, true));
        for (label, bps, precise) in rows {
            let tools = bench.tools();
            let mut g = vec![format!("{label}, gaps")];
            let mut b = vec![format!("{label}, bursts")];
            for &tool in &tools {
                match find_cap(tool, bps, precise).map(|c| &c.gaps) {
                    Some(Ok(x)) => {
                        g.push(format!(
                            "{:.2}/{:.2}/{:.2}/{:.2}",
                            x.pct[0], x.pct[1], x.pct[2], x.pct[3]
                        ));
                        b.push(format!("{}/{:.2}", x.burst_max, x.burst_mean));
                    }
                    Some(Err(_)) => {
                        g.push("failed".into());
                        b.push("failed".into());
                    }
                    None => {
                        g.push("-".into());
                        b.push("-".into());
                    }
                }
            }
            t.push(g);
            t.push(b);
        }
        t.print();
        let audits: Vec<String> = captures
            .iter()
            .filter_map(|c| {
                let (p50, p99) = c.sample.as_ref()?.audit?;
                let per = bench.period_ns(c.tool, c.bps) / 1e3;
                Some(format!(
                    "{}{}: p50 {:.2}, p99 {:.2}",
                    rate_label(c.bps),
                    if c.precise { " precise" } else { "" },
                    p50 / per,
                    p99 / per
                ))
            })
            .collect();
        if !audits.is_empty() {
            println!(
                "btest's own pacing audit in the same runs (senders gap_p50/gap_p99, median of \
                 the intervals, in periods): {}",
                audits.join("; ")
            );
        }
    } else if let Some(why) = capture_skip {
        println!("\nWire gaps: SKIPPED ({why})");
    }
    if !gso_lines.is_empty() {
        println!("\nGSO check (frames longer than one 1500 B datagram in a 1 s unlimited run):");
        for l in &gso_lines {
            println!("  {l}");
        }
    }
    println!(
        "\nAccounting: btest UDP rates count IP+UDP headers (1500 B per datagram, as RouterOS); \
         iperf3 -b counts UDP payload (1472 B). Each paced error is the sender's average rate \
         against its own target in its own accounting. Directions: TCP has the server sending \
         (btest --direction receive, iperf3 -R); every UDP figure has the client sending."
    );
    if let Some(seen) = &bench.iperf_cc_seen {
        println!("iperf3 reported sender congestion control: {seen}");
    }
    for n in &bench.notes {
        println!("Note: {n}.");
    }

    // Targets.
    let mut targets: Vec<Target> = Vec::new();
    let fig_of = |figs: &[Figure], test: Test| {
        figs.iter()
            .find(|f| f.test == test)
            .map(|f| (0..n).map(|i| f.summary(i)).collect::<Vec<_>>())
    };
    let refv = |s: &[Summary]| if has_ref { s[refi].value } else { None };
    for w in UDP_SIZES {
        let s = fig_of(&lo_thru, Test::Udp(w)).unwrap_or_else(|| vec![Summary::default(); n]);
        let r = ratio_of(s[0].value, refv(&s));
        let loss = s[0].extra;
        let gsro = match has_ref && bench.iperfs[refi - 1].gsro {
            false => "",
            true if bench.uses_gsro(refi - 1, w) => " --gsro",
            true => " (without --gsro: see the notes)",
        };
        targets.push(Target {
            what: format!(
                "UDP {w} B received pkt/s >= 1.0x {ref_name}{gsro}: {}; loss <= 1 %: {} %",
                r.map_or("n/a".into(), |r| format!("{r:.2}x")),
                cell(loss, 2)
            ),
            ok: r.map(|r| r >= 1.0 && loss.is_some_and(|l| l <= 1.0)),
        });
    }
    for (streams, floor) in [(4, 1.1), (1, 1.2)] {
        let s = fig_of(&lo_thru, Test::Tcp(streams)).unwrap_or_else(|| vec![Summary::default(); n]);
        let r = ratio_of(s[0].value, refv(&s));
        targets.push(Target {
            what: format!(
                "TCP {streams} stream{} >= {floor}x {ref_name}: {}",
                if streams > 1 { "s" } else { "" },
                r.map_or("n/a".into(), |r| format!("{r:.2}x"))
            ),
            ok: r.map(|r| r >= floor),
        });
    }
    let gap = |bps: u64, precise: bool| {
        find_cap(Tool::Btest, bps, precise).and_then(|c| c.gaps.as_ref().ok().cloned())
    };
    let gap_skip = |what: String| Target {
        what: format!(
            "{what}: no capture ({})",
            capture_skip.unwrap_or("capture failed")
        ),
        ok: None,
    };
    for (bps, lo_b, hi_b) in [(100_000_000u64, 0.95, 1.05), (10_000_000, 0.99, 1.01)] {
        let what = format!(
            "{} default pacing, wire gap p10..p90 within {lo_b}..{hi_b} periods",
            rate_label(bps)
        );
        targets.push(match gap(bps, false) {
            Some(g) => Target {
                what: format!("{what}: {:.3}..{:.3}", g.pct[0], g.pct[2]),
                ok: Some(g.pct[0] >= lo_b && g.pct[2] <= hi_b),
            },
            None => gap_skip(what),
        });
    }
    {
        let what = format!("1 Gbit/s default pacing, wire gap p99 <= 5 periods at no more busy cores than {ref_name}");
        let s = fig_of(
            &lo_paced,
            Test::Paced {
                bps: 1_000_000_000,
                precise: false,
            },
        )
        .unwrap_or_else(|| vec![Summary::default(); n]);
        let (bb, br) = (s[0].busy, if has_ref { s[refi].busy } else { None });
        targets.push(match gap(1_000_000_000, false) {
            Some(g) => Target {
                what: format!(
                    "{what}: p99 {:.2}, busy {} vs {}",
                    g.pct[3],
                    cell(bb, 2),
                    cell(br, 2)
                ),
                ok: match (bb, br) {
                    (Some(a), Some(b)) => Some(g.pct[3] <= 5.0 && a <= b),
                    _ => None,
                },
            },
            None => gap_skip(what),
        });
    }
    {
        let what =
            "1 Gbit/s --pacing precise, wire gap p50 within 2 % of the period and p99 <= 1.5"
                .to_owned();
        targets.push(match gap(1_000_000_000, true) {
            Some(g) => Target {
                what: format!("{what}: p50 {:.3}, p99 {:.3}", g.pct[1], g.pct[3]),
                ok: Some((g.pct[1] - 1.0).abs() <= 0.02 && g.pct[3] <= 1.5),
            },
            None => gap_skip(what),
        });
    }
    for (figs, what) in [(&lo_paced, "idle"), (&lo_loaded, "both cores loaded")] {
        for bps in PACED {
            let test = Test::Paced {
                bps,
                precise: false,
            };
            let e = fig_of(figs, test).and_then(|s| s[0].extra);
            targets.push(Target {
                what: format!(
                    "{} average rate error <= 0.05 % ({what}): {} %",
                    rate_label(bps),
                    signed(e, 3)
                ),
                ok: Some(e.is_some_and(|e| e.abs() <= 0.05)),
            });
        }
    }

    println!("\nTargets (btest):");
    let mut missed = failures > 0;
    for t in &targets {
        let verdict = match t.ok {
            Some(true) => "PASS",
            Some(false) => {
                missed = true;
                "MISS"
            }
            None => "SKIP",
        };
        println!("{verdict}: {}", t.what);
    }
    if failures > 0 {
        println!("{failures} run(s) failed; see above");
    }
    println!(
        "bench time: {:.0} s{}",
        t_start.elapsed().as_secs_f64(),
        if strict {
            ""
        } else {
            " (BENCH_STRICT=1 makes a MISS fail the bench)"
        }
    );
    if missed && strict {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
