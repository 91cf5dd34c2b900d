//! Issue 22 item 6: `btest speed-test` across a router simulated by three network namespaces,
//! client C (10.81.1.2) - router R (10.81.1.1 | 10.81.2.1, forwarding) - server S (10.81.2.2),
//! with our server running in S and the speed test in C, each as its own process through
//! `ip netns exec`. The router shapes one direction with a token bucket (tbf) and a deep
//! queue; the end namespaces use CUBIC, the congestion control that fills such a queue (BBR,
//! this host's default, keeps it nearly empty: docs/reliability.md, issue 22 item 6).
//!
//! What is asserted, from the issue: an unshaped path grades A+ and Excellent; a deep queue on
//! the download side only grades D or F, the download phase's latency increase matches the
//! queue's delay within 20 %, and one-way delay puts it on the down direction; shaping the
//! upload only moves it to the upload phase and the up direction. A capture in the router
//! shows each probe class's datagrams carrying its DSCP.
//!
//! Needs root, iproute2 and the tbf qdisc (and tcpdump for the capture); skipped without them
//! and failing under CI (issue 20). Each scenario takes the CPU-heavy lock, since an unlimited
//! TCP load through three namespaces occupies both cores of the test machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Command, Output, Stdio};

use crate::util::*;

/// The shaped rate, and how long a full queue holds a packet. The grade is the mean of the
/// download and upload increases, so a queue on one side only must hold more than 400 ms to
/// grade D (200 ms of mean): 600 ms full, filled 80-100 % by CUBIC, gives 240-300 ms, D
/// with room on both sides. Measured figures: docs/reliability.md, issue 22 item 6.
const RATE_BPS: u64 = 20_000_000;
const QUEUE_MS: u64 = 600;

/// The server's address in S.
const SERVER: &str = "10.81.2.2";

/// Which of the router's interfaces gets the tbf.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Shape {
    /// towards the client: what the server sends (download) queues
    Down,
    /// towards the server: what the client sends (upload) queues
    Up,
}

/// The three namespaces and the server in S; everything is removed on drop (the server
/// first, then the namespaces, which takes their veths and qdiscs with them), also when an
/// assertion failed.
struct Lab {
    c: String,
    r: String,
    s: String,
    /// the router's interfaces: towards the client, towards the server
    r0: String,
    r1: String,
    server: Option<Proc>,
}

impl Lab {
    /// Builds the path with `cc` as both ends' congestion control. A namespace other than
    /// the initial one may only take a default from net.ipv4.tcp_allowed_congestion_control
    /// (EPERM otherwise; "reno bbr" on this host, so the sysctl cannot select CUBIC there);
    /// a route's `congctl` has no such limit and covers the connections made and accepted
    /// over it, so the default routes of C and S carry it.
    ///
    /// The same routes start every connection with a window of 200 segments (`initcwnd`,
    /// and `initrwnd` for the receiving end). From the usual 10, CUBIC leaves slow start
    /// early (HyStart sees the delay rise) and then fills this queue by about 47 ms a second
    /// with one connection, 50-60 with four: 75 % full on average over a 12 s download,
    /// still filling at the end (docs/reliability.md, issue 22 item 6). Four connections of
    /// 200 segments put 1.2 MB, 80 % of the queue, on the path in the first round trip, so
    /// within the ramp second the queue is full and CUBIC's steady state (88-91 % of the
    /// queue on average, in 6 runs of 6 s) is what the phase measures.
    fn new(tag: &str, cc: &str) -> Option<Lab> {
        if !is_root() {
            skip("the speed-test lab builds three namespaces: needs root");
            return None;
        }
        let id = std::process::id() % 10_000;
        let mut l = Lab {
            c: format!("stc{tag}{id}"),
            r: format!("str{tag}{id}"),
            s: format!("sts{tag}{id}"),
            r0: format!("r0{tag}{id}"),
            r1: format!("r1{tag}{id}"),
            server: None,
        };
        let (c0, s0) = (format!("c0{tag}{id}"), format!("s0{tag}{id}"));
        let (c, r, s, r0, r1) = (&l.c, &l.r, &l.s, &l.r0, &l.r1);
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", c],
            vec!["ip", "netns", "add", r],
            vec!["ip", "netns", "add", s],
            vec![
                "ip", "link", "add", &c0, "netns", c, "type", "veth", "peer", "name", r0, "netns",
                r,
            ],
            vec![
                "ip", "link", "add", r1, "netns", r, "type", "veth", "peer", "name", &s0, "netns",
                s,
            ],
            vec!["ip", "-n", c, "addr", "add", "10.81.1.2/24", "dev", &c0],
            vec!["ip", "-n", r, "addr", "add", "10.81.1.1/24", "dev", r0],
            vec!["ip", "-n", r, "addr", "add", "10.81.2.1/24", "dev", r1],
            vec!["ip", "-n", s, "addr", "add", "10.81.2.2/24", "dev", &s0],
            vec!["ip", "-n", c, "link", "set", &c0, "up"],
            vec!["ip", "-n", r, "link", "set", r0, "up"],
            vec!["ip", "-n", r, "link", "set", r1, "up"],
            vec!["ip", "-n", s, "link", "set", &s0, "up"],
            vec!["ip", "-n", c, "link", "set", "lo", "up"],
            vec!["ip", "-n", s, "link", "set", "lo", "up"],
            vec![
                "ip",
                "-n",
                c,
                "route",
                "add",
                "default",
                "via",
                "10.81.1.1",
                "congctl",
                cc,
                "initcwnd",
                "200",
                "initrwnd",
                "200",
            ],
            vec![
                "ip",
                "-n",
                s,
                "route",
                "add",
                "default",
                "via",
                "10.81.2.1",
                "congctl",
                cc,
                "initcwnd",
                "200",
                "initrwnd",
                "200",
            ],
            vec![
                "ip",
                "netns",
                "exec",
                r,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
        ];
        for st in steps {
            if !run(&st) {
                skip(&format!(
                    "cannot build the three-namespace router ({}): needs root, iproute2 and \
                     the {cc} congestion control",
                    st.join(" ")
                ));
                return None; // Drop removes what was made
            }
        }
        l.start_server();
        Some(l)
    }

    /// A tbf on the router's interface for `shape`, `RATE_BPS` with a byte limit of
    /// `QUEUE_MS` of it. False (after `skip`) without the tbf qdisc.
    fn shape(&self, shape: Shape) -> bool {
        let dev = match shape {
            Shape::Down => &self.r0,
            Shape::Up => &self.r1,
        };
        let (rate, limit) = tbf_args();
        let tbf = [
            "tc", "-n", &self.r, "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst",
            "32k", "limit", &limit,
        ];
        if !run(&tbf) {
            skip(&format!("cannot add a tbf qdisc ({})", tbf.join(" ")));
            return false;
        }
        true
    }

    fn start_server(&mut self) {
        let bin = env!("CARGO_BIN_EXE_btest");
        let listen = format!("{SERVER}:2000");
        // `ip netns exec` execs the server: the pid is the server's, killed on drop.
        let mut p = Proc::new(
            Command::new("ip")
                .args(["netns", "exec", &self.s, bin, "server", "--listen", &listen])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = std::io::BufReader::new(p.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "the server in {} exited",
                self.s
            );
        }
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
        self.server = Some(p);
    }

    /// `btest speed-test` from C against the server in S, JSON out, TCP, short phases.
    fn speed_test(&self, extra: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.c, env!("CARGO_BIN_EXE_btest")])
            .args(["speed-test", SERVER, "--json", "--protocol", "tcp"])
            .args(["--idle", "2s", "--phase", "6s", "--cooldown", "2s"])
            .args(["--phases", "idle,download,upload"])
            .args(["--probe-dscp", "ef,be,bk"])
            .args(extra)
            .output()
            .unwrap()
    }

    /// Starts tcpdump in R on the interface towards the server (probe requests pass it
    /// outward whichever way the load goes), writing UDP to the server into `file`.
    fn capture(&self, file: &str) -> Option<Proc> {
        if !run(&["tcpdump", "--version"]) {
            skip("the DSCP capture needs tcpdump (.ci/run installs it)");
            return None;
        }
        let filter = format!("udp and dst host {SERVER}");
        let mut p = Proc::new(
            Command::new("ip")
                .args(["netns", "exec", &self.r, "tcpdump", "-i", &self.r1])
                .args(["-n", "-U", "-s", "128", "-w", file, &filter])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = std::io::BufReader::new(p.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump exited");
        }
        std::thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
        Some(p)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.server.take());
        for n in [&self.c, &self.r, &self.s] {
            run(&["ip", "netns", "del", n]);
        }
    }
}

/// tbf's `rate` and `limit` words: the limit is the bytes `RATE_BPS` moves in `QUEUE_MS`, so
/// a packet at the tail of a full queue waits `QUEUE_MS` (tbf counts the same bytes, Ethernet
/// header included, in both).
fn tbf_args() -> (String, String) {
    (
        format!("{RATE_BPS}bit"),
        (RATE_BPS / 8 * QUEUE_MS / 1000).to_string(),
    )
}

/// The records of one speed test: `phase` records by name, and the `speed_test` record.
struct Run {
    phases: BTreeMap<String, serde_json::Value>,
    overall: serde_json::Value,
}

fn parse(o: &Output) -> Run {
    assert_exit(o, 0);
    let v = json_lines(&o.stdout);
    let phases: BTreeMap<String, serde_json::Value> = v
        .iter()
        .filter(|r| r["type"] == "phase")
        .map(|r| (r["phase"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    let overall = v
        .iter()
        .find(|r| r["type"] == "speed_test")
        .unwrap_or_else(|| {
            panic!(
                "no speed_test record: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .clone();
    for p in ["idle", "download", "upload"] {
        assert!(phases.contains_key(p), "no {p} phase record: {v:?}");
    }
    Run { phases, overall }
}

impl Run {
    fn f(&self, phase: &str, path: &[&str]) -> f64 {
        let mut v = &self.phases[phase];
        for k in path {
            v = &v[*k];
        }
        v.as_f64()
            .unwrap_or_else(|| panic!("{phase}.{}: {v} in {}", path.join("."), self.phases[phase]))
    }

    /// One line per phase for the failure messages and the test log.
    fn show(&self) -> String {
        let mut s = String::new();
        for (name, p) in &self.phases {
            s += &format!(
                "{name}: rx {} tx {} bit/s, mean {} ms, increase {} ms, owd {}, tcp rtt {}\n",
                p["rx_bps"],
                p["tx_bps"],
                p["latency"]["mean_ms"],
                p["increase_ms"],
                p["owd"],
                p["tcp_rtt_ms"]
            );
        }
        let o = &self.overall;
        s + &format!(
            "grade {} ({} ms), rpm {} (foreign {}, self {}) {}, confidence {}, congestion {}",
            o["grade"],
            o["grade_increase_ms"],
            o["rpm"],
            o["rpm_foreign"],
            o["rpm_self"],
            o["rating"],
            o["confidence"],
            o["congestion"]
        )
    }
}

/// The full queue's delay in ms, and the 20 % band the issue allows around it.
fn queue_band() -> (f64, std::ops::RangeInclusive<f64>) {
    let q = QUEUE_MS as f64;
    (q, q * 0.8..=q * 1.2)
}

/// One deep queue on `shape`'s side, CUBIC at both ends: the loaded phase on that side
/// carries the queue's delay in its latency and in that one-way direction; the other phase,
/// unshaped, stays low. The grade is D or F either way (the mean of the two increases).
fn deep_queue_on(shape: Shape) {
    let _x = exclusive();
    let Some(lab) = Lab::new(if shape == Shape::Down { "d" } else { "u" }, "cubic") else {
        return;
    };
    if !lab.shape(shape) {
        return;
    }
    let r = parse(&lab.speed_test(&[]));
    let show = r.show();
    eprintln!("deep queue ({QUEUE_MS} ms at {RATE_BPS} bit/s) on {shape:?}:\n{show}");
    let (bloated, clear, bloated_way, clear_way) = match shape {
        Shape::Down => ("download", "upload", "down_increase_ms", "up_increase_ms"),
        _ => ("upload", "download", "up_increase_ms", "down_increase_ms"),
    };
    let (q, band) = queue_band();
    // The shaper holds the shaped phase's rate: near it, far from the Gbit/s of the veths.
    // Loosely: what the client counts as sent runs ahead of the shaper by what its send
    // buffers held at the end (23.4-23.8 Mbit/s counted for 20 in 6 s uploads by `btest
    // client`), and a busy machine may fall short.
    let rate_key = if shape == Shape::Down {
        "rx_bps"
    } else {
        "tx_bps"
    };
    let rate = r.f(bloated, &[rate_key]);
    assert!(
        rate <= RATE_BPS as f64 * 1.5 && rate >= RATE_BPS as f64 * 0.5,
        "{bloated} at {rate} bit/s through a {RATE_BPS} bit/s shaper:\n{show}"
    );
    let inc = r.f(bloated, &["increase_ms"]);
    assert!(
        band.contains(&inc),
        "{bloated} latency increase {inc} ms, the queue holds {q} ms (20 % either way):\n{show}"
    );
    // One-way delay puts it on the shaped direction: most of it there, little the other way.
    let way = r.f(bloated, &["owd", bloated_way]);
    let other = r.f(bloated, &["owd", clear_way]);
    assert!(
        way >= inc * 0.8 && way <= inc * 1.2,
        "{bloated}: one-way {bloated_way} {way} ms of an increase of {inc} ms:\n{show}"
    );
    assert!(
        other.abs() <= q * 0.1,
        "{bloated}: one-way {clear_way} {other} ms, expected near 0 (the queue is the other \
         way; a clock fit over loaded replies takes part of the queue for clock offset and \
         splits it between the ways: fit over the idle/cooldown replies):\n{show}"
    );
    // The unshaped phase: no deep queue on its way (veths queue nothing; the load costs a
    // few ms of CPU on a busy machine at most).
    let inc_clear = r.f(clear, &["increase_ms"]);
    assert!(
        inc_clear <= q * 0.1,
        "{clear} (unshaped) latency increase {inc_clear} ms:\n{show}"
    );
    let grade = r.overall["grade"].as_str().unwrap_or_default();
    assert!(
        grade == "D" || grade == "F",
        "grade {grade} for a {q} ms queue one way:\n{show}"
    );
    // What the load connections used, read back from them: the route's `congctl` applies
    // when a socket connects, so a fresh unconnected socket shows the namespace's default
    // (bbr here) instead (seen in a scratch merge, docs/reliability.md issue 22 item 6).
    let cc = r.overall["congestion"].as_str().unwrap_or_default();
    assert!(
        cc.contains("cubic"),
        "congestion {cc:?}, but the connections ran CUBIC (the routes' congctl): read \
         TCP_CONGESTION from a connected data socket:\n{show}"
    );
}

#[test]
fn unshaped_path_grades_a_plus_and_excellent() {
    watchdog(60, || {
        let _x = exclusive();
        let Some(lab) = Lab::new("n", "cubic") else {
            return;
        };
        let r = parse(&lab.speed_test(&[]));
        let show = r.show();
        eprintln!("unshaped:\n{show}");
        assert_eq!(r.overall["grade"], "A+", "{show}");
        assert_eq!(r.overall["rating"], "Excellent", "{show}");
        // Every class was probed and answered in every phase.
        for p in r.phases.values() {
            let classes = p["classes"].as_array().cloned().unwrap_or_default();
            let dscps: BTreeSet<u64> = classes.iter().filter_map(|c| c["dscp"].as_u64()).collect();
            assert_eq!(dscps, BTreeSet::from([0, 8, 46]), "{p}");
            for c in &classes {
                assert!(c["latency"]["count"].as_u64() > Some(0), "{c}");
            }
        }
    });
}

#[test]
fn deep_queue_on_the_download_side_grades_d_or_f_and_shows_down() {
    watchdog(60, || deep_queue_on(Shape::Down));
}

#[test]
fn deep_queue_on_the_upload_side_moves_the_increase_to_up() {
    watchdog(60, || deep_queue_on(Shape::Up));
}

/// A UDP datagram from a pcap file: source port, DSCP, UDP payload (as much as captured).
struct Datagram {
    sport: u16,
    dscp: u8,
    payload: Vec<u8>,
}

/// The IPv4 UDP datagrams of a classic pcap file (either byte order, micro- or nanosecond
/// stamps) on Ethernet (link type 1) or Linux cooked capture (113).
fn pcap_udp(bytes: &[u8]) -> Vec<Datagram> {
    assert!(bytes.len() >= 24, "pcap file of {} bytes", bytes.len());
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("not a pcap file: magic {m:02x?}"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let link = u32_at(bytes, 20);
    let (l2, proto_at) = match link {
        1 => (14, 12),
        113 => (16, 14),
        l => panic!("pcap link type {l}: expected Ethernet or Linux cooked"),
    };
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= bytes.len() {
        let incl = u32_at(bytes, i + 8) as usize;
        let Some(f) = bytes.get(i + 16..i + 16 + incl) else {
            break; // a record cut short by the end of the capture
        };
        i += 16 + incl;
        if f.len() < l2 + 20 || f[proto_at..proto_at + 2] != [0x08, 0x00] {
            continue;
        }
        let ip = &f[l2..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let udp = &ip[ihl..];
        out.push(Datagram {
            sport: u16::from_be_bytes([udp[0], udp[1]]),
            dscp: ip[1] >> 2,
            payload: udp[8..].to_vec(),
        });
    }
    out
}

/// The probe datagrams of a capture by source port: the DSCP marks seen and how many.
type Marks = BTreeMap<u16, (BTreeSet<u8>, usize)>;

/// The probe datagrams (our echo, `BTPROBE1` or `BTPROBE2`) of a capture, by source port:
/// the DSCP values each port's datagrams carried, and how many there were.
fn probe_marks(file: &str) -> Marks {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut by_port: BTreeMap<u16, (BTreeSet<u8>, usize)> = BTreeMap::new();
    for d in pcap_udp(&bytes)
        .into_iter()
        .filter(|d| d.payload.starts_with(b"BTPROBE"))
    {
        let e = by_port.entry(d.sport).or_default();
        e.0.insert(d.dscp);
        e.1 += 1;
    }
    by_port
}

/// Stops tcpdump with SIGINT (it flushes its file then) and waits for it.
fn stop_capture(p: Proc) {
    signal(p.id(), "-INT");
    let o = p.wait_with_output().unwrap();
    assert!(o.status.success(), "tcpdump: {:?}", o.status);
}

/// Runs btest with `args` in the client namespace of a fresh lab (`tag` names it) while the
/// router captures; its output and the probe datagrams' marks by source port. `None` when
/// the lab or the capture cannot be had (skipped, or failed under CI).
fn captured(tag: &str, args: &[&str]) -> Option<(std::process::Output, Marks)> {
    let lab = Lab::new(tag, "cubic")?;
    let file = format!("/tmp/btest-dscp-{tag}-{}.pcap", std::process::id());
    let cap = lab.capture(&file)?;
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.c, env!("CARGO_BIN_EXE_btest")])
        .args(args)
        .output()
        .unwrap();
    stop_capture(cap);
    let marks = probe_marks(&file);
    let _ = std::fs::remove_file(&file);
    Some((o, marks))
}

/// The capture half of the DSCP check, on what exists before `speed-test`: `btest client
/// --tos 184` marks its latency probe's datagrams EF (184 = 46 << 2), and the router sees
/// that mark on every one of them.
#[test]
fn probe_tos_is_seen_on_the_wire_in_a_capture() {
    watchdog(60, || {
        let Some((o, marks)) = captured(
            "p",
            &[
                "client",
                SERVER,
                "--json",
                "--latency",
                "echo",
                "--tos",
                "184",
                "--duration",
                "2s",
                "--remote-tx-speed",
                "1M",
            ],
        ) else {
            return;
        };
        assert_exit(&o, 0);
        eprintln!("probe datagrams by source port: {marks:?}");
        let total: usize = marks.values().map(|m| m.1).sum();
        // 10 a second for the idle second and the 2 s test: 30, a few late on a busy host
        assert!(total >= 15, "{total} probe datagrams captured: {marks:?}");
        for (port, (dscps, n)) in &marks {
            assert_eq!(
                dscps,
                &BTreeSet::from([46]),
                "port {port}: {n} probes marked {dscps:?}, expected EF (46)"
            );
        }
    });
}

/// `--probe-dscp ef,be,bk`: one probe stream per class, each on its own socket (source
/// port), each carrying its class's DSCP on every datagram: EF 46, BE 0, BK (CS1) 8.
#[test]
fn probe_classes_carry_their_dscp_on_the_wire() {
    watchdog(60, || {
        let Some((o, marks)) = captured(
            "q",
            &[
                "speed-test",
                SERVER,
                "--json",
                "--probe-dscp",
                "ef,be,bk",
                "--idle",
                "2s",
                "--phase",
                "2s",
                "--cooldown",
                "1s",
                "--phases",
                "idle,download,cooldown",
                "--remote-tx-speed",
                "10M",
            ],
        ) else {
            return;
        };
        let r = parse_any(&o);
        eprintln!("probe datagrams by source port: {marks:?}");
        // Each stream keeps one mark, and the three marks are the three classes'. A class's
        // stream is restarted (a new socket, a new port) when the probes speed up for the
        // load after the idle phase's 40/s, so the counts are per mark.
        let mut per_mark: std::collections::BTreeMap<u8, usize> = Default::default();
        for (port, (dscps, n)) in &marks {
            assert_eq!(
                dscps.len(),
                1,
                "port {port}: {n} probes with marks {dscps:?}"
            );
            *per_mark.entry(*dscps.iter().next().unwrap()).or_default() += n;
        }
        assert_eq!(
            per_mark.keys().copied().collect::<BTreeSet<u8>>(),
            BTreeSet::from([0, 8, 46]),
            "{marks:?}"
        );
        // 3 s of load and cooldown at 10 ms, and the idle phase's share of 40/s
        for (mark, n) in &per_mark {
            assert!(*n >= 150, "DSCP {mark}: only {n} probes in 5 s: {marks:?}");
        }
        // And the records report the same classes by number and name.
        let idle = &r["idle"];
        let classes: BTreeSet<(u64, String)> = idle["classes"]
            .as_array()
            .unwrap_or_else(|| panic!("no classes in {idle}"))
            .iter()
            .map(|c| {
                (
                    c["dscp"].as_u64().unwrap(),
                    c["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            classes,
            BTreeSet::from([(0, "be".into()), (8, "bk".into()), (46, "ef".into())]),
            "{idle}"
        );
    });
}

/// The `phase` records of a run by name (any phase set).
fn parse_any(o: &Output) -> BTreeMap<String, serde_json::Value> {
    assert_exit(o, 0);
    json_lines(&o.stdout)
        .into_iter()
        .filter(|r| r["type"] == "phase")
        .map(|r| (r["phase"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn pcap_reader_finds_udp_and_its_dscp() {
    // One Ethernet frame: IPv4 (TOS 0xb8 = EF), UDP 40000 -> 2000, payload "BTPROBE2".
    let mut f = vec![0u8; 12];
    f.extend([0x08, 0x00]);
    let mut ip = vec![0x45, 0xb8, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend([10, 81, 1, 2, 10, 81, 2, 2]);
    f.extend(&ip);
    f.extend([0x9c, 0x40, 0x07, 0xd0, 0, 16, 0, 0]);
    f.extend(b"BTPROBE2");
    let mut pcap = Vec::new();
    pcap.extend(0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend([2, 0, 4, 0]);
    pcap.extend([0u8; 8]);
    pcap.extend(65535u32.to_le_bytes());
    pcap.extend(1u32.to_le_bytes());
    for _ in 0..2 {
        pcap.extend([0u8; 8]);
        pcap.extend((f.len() as u32).to_le_bytes());
        pcap.extend((f.len() as u32).to_le_bytes());
        pcap.extend(&f);
    }
    pcap.extend([0u8; 10]); // a torn last record is ignored
    let d = pcap_udp(&pcap);
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].sport, d[0].dscp), (40000, 46));
    assert!(d[0].payload.starts_with(b"BTPROBE"));
}
