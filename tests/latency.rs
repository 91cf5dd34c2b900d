//! Issue 11.1: the latency side probe through the built binary: our server's UDP echo, ICMP
//! (raw socket as root; a ping socket inside a namespace that allows it), the idle and loaded
//! figures in JSON, CSV and text, and a test without a probe.

use std::process::Command;

use crate::util::*;

fn client_json(addr: &str, extra: &[&str]) -> (std::process::Output, Vec<serde_json::Value>) {
    let o = btest_bin()
        .args(["client", addr, "--json", "--duration", "3s"])
        .args(extra)
        .output()
        .unwrap();
    let lines = json_lines(&o.stdout);
    (o, lines)
}

/// RFC 4180 cells of one line (quotes, doubled quotes, commas inside quotes).
fn csv_cells(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut q) = (Vec::new(), String::new(), false);
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        match (c, q) {
            ('"', true) if it.peek() == Some(&'"') => {
                cur.push('"');
                it.next();
            }
            ('"', _) => q = !q,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn of_type<'a>(v: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    v.iter().filter(|r| r["type"] == t).collect()
}

#[test]
fn echo_probe_gives_idle_and_loaded_rtt_per_interval() {
    watchdog(60, || {
        let (mut srv, addr) = spawn_server_bin(&[]);
        let (o, v) = client_json(
            &addr,
            &[
                "--protocol",
                "udp",
                "--direction",
                "both",
                "--local-tx-speed",
                "50M",
                "--remote-tx-speed",
                "50M",
            ],
        );
        assert_exit(&o, 0);
        let iv = of_type(&v, "interval");
        assert!(iv.len() >= 3, "{} intervals", iv.len());
        for r in &iv[..iv.len() - 1] {
            // 10 probes a second: 8..12 in a 1 s interval allows for the phase of the clock.
            let sent = r["rtt_sent"].as_u64().unwrap();
            assert!((8..=12).contains(&sent), "rtt_sent {sent}: {r}");
            let p50 = r["rtt_p50_ms"].as_f64().unwrap();
            let p90 = r["rtt_p90_ms"].as_f64().unwrap();
            assert!(p50 > 0.0 && p50 <= p90 && p90 < 100.0, "{r}");
            assert!(r["rtt_min_ms"].as_f64().unwrap() <= p50);
            assert!(r["rtt_max_ms"].as_f64().unwrap() >= p90);
            assert!(r["rtt_jitter_ms"].as_f64().is_some(), "{r}");
        }
        let s = of_type(&v, "summary")[0];
        eprintln!(
            "echo: idle p50 {} ms, loaded p50 {} p90 {} ms, bufferbloat {} ms, {} of {} lost",
            s["idle_rtt_p50_ms"],
            s["loaded_rtt_p50_ms"],
            s["loaded_rtt_p90_ms"],
            s["bufferbloat_ms"],
            s["rtt_lost"],
            s["rtt_sent"]
        );
        assert_eq!(s["rtt_method"], "echo", "{s}");
        let idle = s["idle_rtt_p50_ms"].as_f64().unwrap();
        let loaded = s["loaded_rtt_p50_ms"].as_f64().unwrap();
        let bloat = s["bufferbloat_ms"].as_f64().unwrap();
        assert!((bloat - (loaded - idle)).abs() < 0.01, "{s}");
        assert!(s["rtt_sent"].as_u64().unwrap() >= 25, "{s}");
        assert!(s["rtt_lost"].as_u64().unwrap() <= 1, "{s}");
        assert_eq!(
            s["tcp_rtt_ms"],
            serde_json::Value::Null,
            "UDP has no TCP_INFO"
        );
        srv.kill().unwrap();
        let _ = srv.wait();
    });
}

#[test]
fn tcp_tests_show_the_kernels_rtt_too_and_text_csv_carry_latency() {
    watchdog(60, || {
        let (mut srv, addr) = spawn_server_bin(&[]);
        let dir = std::env::temp_dir().join(format!("btest-lat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("c.csv");
        let o = btest_bin()
            .args(["client", &addr, "--duration", "2s", "--direction", "both"])
            .args(["--csv", csv.to_str().unwrap()])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("rtt-p50"), "{text}");
        assert!(text.contains("latency (echo): idle p50"), "{text}");
        assert!(text.contains("bufferbloat"), "{text}");
        let c = std::fs::read_to_string(&csv).unwrap();
        let mut lines = c.lines();
        let head = csv_cells(lines.next().unwrap());
        let row = csv_cells(lines.next().unwrap());
        assert_eq!(head.len(), row.len(), "{c}");
        let col = |k: &str| row[head.iter().position(|h| h == k).unwrap()].as_str();
        assert_eq!(col("rtt_method"), "echo");
        assert!(col("loaded_rtt_p50_ms").parse::<f64>().is_ok(), "{c}");
        assert!(col("tcp_rtt_ms").parse::<f64>().unwrap() > 0.0, "{c}");
        let (o, v) = client_json(&addr, &["--duration", "2s"]);
        assert_exit(&o, 0);
        let iv = of_type(&v, "interval");
        assert!(
            iv.iter().all(|r| r["tcp_rtt_ms"].as_f64().is_some()),
            "{iv:?}"
        );
        srv.kill().unwrap();
        let _ = srv.wait();
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn icmp_probe_and_the_fallback_when_the_server_has_no_echo() {
    watchdog(60, || {
        let (mut srv, addr) = spawn_server_bin(&["--echo", "no"]);
        let (o, v) = client_json(&addr, &["--duration", "2s"]);
        assert_exit(&o, 0);
        let s = of_type(&v, "summary")[0];
        if is_root() {
            // Ping sockets are off on this host (ping_group_range "1 0"), so root uses raw.
            let m = s["rtt_method"].as_str().unwrap();
            assert!(m == "icmp-raw" || m == "icmp", "{s}");
            assert!(s["loaded_rtt_p50_ms"].as_f64().is_some(), "{s}");
            eprintln!("auto without echo fell back to {m}");
        } else {
            let err = String::from_utf8_lossy(&o.stderr);
            eprintln!("not root: {err}");
        }
        let (o, v) = client_json(&addr, &["--duration", "2s", "--latency", "echo"]);
        assert_exit(&o, 0);
        let s = of_type(&v, "summary")[0];
        assert_eq!(s["rtt_method"], serde_json::Value::Null, "{s}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("latency"), "the reason is logged: {err}");
        srv.kill().unwrap();
        let _ = srv.wait();
    });
}

#[test]
fn latency_off_runs_without_a_probe() {
    watchdog(30, || {
        let (mut srv, addr) = spawn_server_bin(&[]);
        let t0 = std::time::Instant::now();
        let (o, v) = client_json(&addr, &["--duration", "1s", "--latency", "off"]);
        assert_exit(&o, 0);
        assert!(t0.elapsed().as_secs_f64() < 2.5, "no idle second");
        let iv = of_type(&v, "interval");
        assert!(iv.iter().all(|r| r["rtt_sent"].is_null()), "{iv:?}");
        let s = of_type(&v, "summary")[0];
        assert!(
            s["rtt_method"].is_null() && s["bufferbloat_ms"].is_null(),
            "{s}"
        );
        srv.kill().unwrap();
        let _ = srv.wait();
    });
}

/// A ping socket (no raw socket, no privilege) where the namespace's ping_group_range lets
/// our group use one; the whole test runs in that namespace through `btest through`.
#[test]
fn ping_socket_in_a_namespace_that_allows_it() {
    watchdog(60, || {
        let ns = format!("btping{}", std::process::id() % 100_000);
        let ok = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !is_root() || !ok(&["ip", "netns", "add", &ns]) {
            skip("cannot make a network namespace (needs root and iproute2)");
            return;
        }
        let _del = Defer(ns.clone());
        assert!(ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]));
        assert!(ok(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ping_group_range=0 2147483647"
        ]));
        let o = btest_bin()
            .args(["through", "--server-addr", "127.0.0.1", "--port", "0"])
            .args(["--server-netns", &ns, "--client-netns", &ns])
            .args(["--latency", "icmp", "--duration", "2s", "--json"])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let v = json_lines(&o.stdout);
        let s = of_type(&v, "summary")[0];
        assert_eq!(s["rtt_method"], "icmp", "a ping socket, not raw: {s}");
        assert!(s["loaded_rtt_p50_ms"].as_f64().is_some(), "{s}");
    });
}

/// Deletes a namespace on drop.
pub struct Defer(pub String);

impl Drop for Defer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Sends `n` echo v2 datagrams back to back from a fresh socket on 127.0.0.1 and returns the
/// stamped replies that came back (receive, send on the server's clock).
fn v2_burst(to: std::net::SocketAddr, n: u32) -> Vec<(u64, u64)> {
    use btest::wire::echo::{Echo2, EchoDatagram};
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(to).unwrap();
    for seq in 0..n {
        let probe = EchoDatagram {
            seq,
            token: 7,
            sent_ns: 0,
        };
        s.send(&probe.encode_v2()).unwrap();
    }
    s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(len) = s.recv(&mut buf) {
        let r = Echo2::parse(&buf[..len]).expect("a 48-byte v2 reply");
        got.push((r.server_rx_ns, r.server_tx_ns));
    }
    got
}

#[test]
fn echo_v2_stamped_and_a_source_with_a_session_gets_more() {
    // Issue 22 through the binary: our server stamps v2 replies, holds a source without a
    // session to 50/s (burst 20), and lets one holding a session have 1,000/s (burst 100).
    watchdog(60, || {
        let (mut srv, addr) = spawn_server_bin(&[]);
        let to: std::net::SocketAddr = addr.parse().unwrap();
        let before = v2_burst(to, 100);
        assert!(
            (20..=60).contains(&before.len()),
            "no session: {} of 100",
            before.len()
        );
        for &(rx, tx) in &before {
            assert!(0 < rx && rx <= tx, "stamps {rx} {tx}");
        }
        // A TCP test from the same address; its first interval line says the session runs.
        let mut client = Proc::new(
            btest_bin()
                .args([
                    "client",
                    &addr,
                    "--json",
                    "--duration",
                    "6s",
                    "--latency",
                    "off",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let out = client.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
        let running = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("\"type\":\"interval\""));
        assert!(running, "the client's test did not start");
        let during = v2_burst(to, 100);
        assert_eq!(during.len(), 100, "with a session: {} of 100", during.len());
        for _ in lines {}
        let o = client.wait_with_output().unwrap();
        assert_exit(&o, 0);
        srv.kill().ok();
    });
}
