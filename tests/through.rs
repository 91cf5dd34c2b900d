//! Issue 11.2: `btest through` across a router simulated by three network namespaces:
//! client side C (10.78.1.2) - router R (10.78.1.1 | 10.78.2.1, forwarding) - server side S
//! (10.78.2.2). R counts what it forwards (nftables), so the test proves the traffic went
//! through the "device" and not a shortcut; a drop rule in R shows loss through it. Needs root,
//! iproute2 and nft; skipped without them (failing under CI, issue 20).

use std::process::Command;

use crate::util::*;

struct Lab {
    c: String,
    r: String,
    s: String,
}

impl Lab {
    fn new(tag: &str) -> Option<Lab> {
        if !is_root() {
            skip("the router lab builds three namespaces: needs root");
            return None;
        }
        let id = std::process::id() % 10_000;
        let l = Lab {
            c: format!("btc{tag}{id}"),
            r: format!("btr{tag}{id}"),
            s: format!("bts{tag}{id}"),
        };
        let (c, r, s) = (l.c.as_str(), l.r.as_str(), l.s.as_str());
        let (c0, r0, r1, s0) = (
            format!("c0{tag}{id}"),
            format!("r0{tag}{id}"),
            format!("r1{tag}{id}"),
            format!("s0{tag}{id}"),
        );
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", c],
            vec!["ip", "netns", "add", r],
            vec!["ip", "netns", "add", s],
            vec![
                "ip", "link", "add", &c0, "netns", c, "type", "veth", "peer", "name", &r0, "netns",
                r,
            ],
            vec![
                "ip", "link", "add", &r1, "netns", r, "type", "veth", "peer", "name", &s0, "netns",
                s,
            ],
            vec!["ip", "-n", c, "addr", "add", "10.78.1.2/24", "dev", &c0],
            vec!["ip", "-n", r, "addr", "add", "10.78.1.1/24", "dev", &r0],
            vec!["ip", "-n", r, "addr", "add", "10.78.2.1/24", "dev", &r1],
            vec!["ip", "-n", s, "addr", "add", "10.78.2.2/24", "dev", &s0],
            vec!["ip", "-n", c, "link", "set", &c0, "up"],
            vec!["ip", "-n", r, "link", "set", &r0, "up"],
            vec!["ip", "-n", r, "link", "set", &r1, "up"],
            vec!["ip", "-n", s, "link", "set", &s0, "up"],
            vec!["ip", "-n", c, "link", "set", "lo", "up"],
            vec!["ip", "-n", s, "link", "set", "lo", "up"],
            vec!["ip", "-n", c, "route", "add", "default", "via", "10.78.1.1"],
            vec!["ip", "-n", s, "route", "add", "default", "via", "10.78.2.1"],
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
            vec![
                "ip", "netns", "exec", r, "nft", "add", "table", "inet", "bt",
            ],
            vec![
                "ip",
                "netns",
                "exec",
                r,
                "nft",
                "add",
                "chain",
                "inet",
                "bt",
                "forw",
                "{ type filter hook forward priority 0 ; }",
            ],
        ];
        for st in steps {
            if !run(&st) {
                skip(&format!(
                    "cannot build the three-namespace router ({}): needs root, iproute2, nft",
                    st.join(" ")
                ));
                return None;
            }
        }
        Some(l)
    }

    fn nft(&self, rule: &str) {
        assert!(
            run(&[
                "ip", "netns", "exec", &self.r, "nft", "add", "rule", "inet", "bt", "forw", rule
            ]),
            "{rule}"
        );
    }

    /// Bytes the router's counter rule forwarded.
    fn forwarded_bytes(&self) -> u64 {
        let o = Command::new("ip")
            .args([
                "netns", "exec", &self.r, "nft", "list", "chain", "inet", "bt", "forw",
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        t.split_whitespace()
            .skip_while(|w| *w != "bytes")
            .nth(1)
            .and_then(|b| b.parse().ok())
            .unwrap_or(0)
    }

    fn through(&self, extra: &[&str]) -> std::process::Output {
        btest_bin()
            .args(["through", "--server-addr", "10.78.2.2"])
            .args(["--server-netns", &self.s, "--client-netns", &self.c])
            .args(["--json", "--duration", "3s"])
            .args(extra)
            .output()
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in [&self.c, &self.r, &self.s] {
            run(&["ip", "netns", "del", n]);
        }
    }
}

fn summary(o: &std::process::Output) -> serde_json::Value {
    json_lines(&o.stdout)
        .into_iter()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn udp_both_ways_through_a_router_of_three_namespaces() {
    watchdog(90, || {
        let Some(lab) = Lab::new("u") else { return };
        lab.nft("counter");
        let o = lab.through(&[
            "--protocol",
            "udp",
            "--direction",
            "both",
            "--local-tx-speed",
            "20M",
            "--remote-tx-speed",
            "20M",
        ]);
        assert_exit(&o, 0);
        let s = summary(&o);
        let (tx, rx) = (
            s["tx_avg_bps"].as_f64().unwrap(),
            s["rx_avg_bps"].as_f64().unwrap(),
        );
        eprintln!(
            "through udp both: tx {tx} rx {rx} bit/s, lost {}, rtt {} ms, router forwarded {} B",
            s["lost_packets"],
            s["loaded_rtt_p50_ms"],
            lab.forwarded_bytes()
        );
        assert!(
            // at most the asked 20 Mbit/s (+15 %), at least a quarter of it (busy machine)
            (5e6..=23e6).contains(&tx) && (5e6..=23e6).contains(&rx),
            "{s}"
        );
        let data = s["tx_bytes"].as_u64().unwrap() + s["rx_bytes"].as_u64().unwrap();
        let fwd = lab.forwarded_bytes();
        assert!(
            fwd as f64 >= data as f64 * 0.9,
            "the router forwarded {fwd} B of {data} B: not through it"
        );
        assert_eq!(s["rtt_method"], "echo", "{s}");
    });
}

#[test]
fn tcp_three_connections_bound_to_each_sides_interface() {
    watchdog(90, || {
        let Some(lab) = Lab::new("t") else { return };
        lab.nft("counter");
        let id = std::process::id() % 10_000;
        let (cdev, sdev) = (format!("c0t{id}"), format!("s0t{id}"));
        let o = lab.through(&[
            "--direction",
            "both",
            "--connection-count",
            "3",
            "--client-dev",
            &cdev,
            "--server-dev",
            &sdev,
        ]);
        assert_exit(&o, 0);
        let s = summary(&o);
        eprintln!(
            "through tcp both x3 (bound to {cdev}/{sdev}): tx {} rx {} bit/s, connections {}",
            s["tx_avg_bps"], s["rx_avg_bps"], s["connections"]
        );
        assert_eq!(s["connections"], 3, "{s}");
        assert!(
            s["tx_avg_bps"].as_f64().unwrap() > 1e6 && s["rx_avg_bps"].as_f64().unwrap() > 1e6,
            "{s}"
        );
        let data = s["tx_bytes"].as_u64().unwrap() + s["rx_bytes"].as_u64().unwrap();
        assert!(lab.forwarded_bytes() as f64 >= data as f64 * 0.9);
        // A wrong interface name is a usage error naming it.
        let o = lab.through(&["--client-dev", "nosuchif0"]);
        assert_exit(&o, 2);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("--device nosuchif0") && e.contains("no such interface"),
            "{e}"
        );
    });
}

#[test]
fn loss_in_the_router_is_seen_as_loss() {
    watchdog(90, || {
        let Some(lab) = Lab::new("l") else { return };
        // The router drops 10 % of the UDP it forwards towards the client side.
        lab.nft("ip daddr 10.78.1.2 meta l4proto udp numgen random mod 100 < 10 drop");
        let o = lab.through(&[
            "--protocol",
            "udp",
            "--direction",
            "receive",
            "--remote-tx-speed",
            "20M",
            "--latency",
            "off",
        ]);
        assert_exit(&o, 0);
        let s = summary(&o);
        let lost = s["lost_packets"].as_f64().unwrap();
        let got = s["rx_bytes"].as_f64().unwrap() / 1500.0;
        let pct = lost / (lost + got) * 100.0;
        eprintln!("through a router dropping 10 %: {lost} lost, {pct:.1} %");
        assert!((6.0..=14.0).contains(&pct), "{s}");
    });
}

#[test]
fn a_missing_namespace_or_address_is_a_clear_error() {
    watchdog(30, || {
        let o = btest_bin()
            .args([
                "through",
                "--server-addr",
                "127.0.0.1",
                "--server-netns",
                "btest-no-such-ns",
            ])
            .output()
            .unwrap();
        assert_exit(&o, 2);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("--server-netns /run/netns/btest-no-such-ns: cannot enter"),
            "{e}"
        );
        let o = btest_bin()
            .args(["through", "--server-addr", "192.0.2.77", "--duration", "1s"])
            .output()
            .unwrap();
        assert_exit(&o, 2);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("cannot listen on 192.0.2.77"), "{e}");
        let o = btest_bin()
            .args(["through", "--duration", "1s"])
            .output()
            .unwrap();
        assert_exit(&o, 2);
        assert!(String::from_utf8_lossy(&o.stderr).contains("missing --server-addr"));
    });
}

/// Without namespaces: both sides on loopback, every mode works as in a normal test.
#[test]
fn through_on_loopback_runs_like_a_client_test() {
    watchdog(60, || {
        let base = udp_base().to_string();
        for (proto, dir) in [("tcp", "transmit"), ("udp", "both")] {
            let o = btest_bin()
                .args([
                    "through",
                    "--server-addr",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--udp-port-from",
                    &base,
                ])
                .args([
                    "--protocol",
                    proto,
                    "--direction",
                    dir,
                    "--duration",
                    "2s",
                    "--json",
                ])
                .args(["--local-tx-speed", "30M", "--remote-tx-speed", "30M"])
                .output()
                .unwrap();
            assert_exit(&o, 0);
            let s = summary(&o);
            // The speed limit is an upper bound; below it a busy machine may fall short (12.4
            // Mbit/s of the 30 asked was seen under stress -c 2 plus builds), so the lower
            // bound is a quarter of it. Rates belong to `make bench`.
            let tx = s["tx_avg_bps"].as_f64().unwrap();
            assert!((7.5e6..=35e6).contains(&tx), "{proto} {dir}: {s}");
            assert_eq!(s["auth"], "md5", "the one-time account: {s}");
        }
    });
}

/// Issue 20, bug B1: both sides of `through` run in one process, and their threads have the
/// same names. Thread CPU was read back by name, so a UDP transmit-only test reported the
/// server side's busy `btest-rx-0` as the client's RX figure (`rx 19.7` in the review, 52.9
/// measured here with the binary before the fix, debug build). The client's only RX-side
/// thread here is the control reader, which reads one 12-byte status a second: near 0 % on any
/// host, however loaded. Its TX thread sends as fast as it can, so it shows CPU (sampling
/// works). No rate is asserted.
#[test]
fn through_reports_only_the_client_sides_threads() {
    watchdog(60, || {
        let base = udp_base().to_string();
        let o = btest_bin()
            .args(["through", "--server-addr", "127.0.0.1", "--port", "0"])
            .args(["--udp-port-from", &base, "--protocol", "udp"])
            .args(["--direction", "transmit", "--duration", "3s", "--json"])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let s = summary(&o);
        let cpu = &s["thread_cpu_max"];
        let (tx, rx) = (cpu["tx"].as_f64().unwrap(), cpu["rx"].as_f64().unwrap());
        eprintln!("client thread_cpu_max: {cpu}");
        assert!(tx > 0.0, "the sending thread was not sampled: {cpu}");
        assert!(
            rx <= 5.0,
            "the server side's RX thread counted as ours: {cpu}"
        );
        // The verdict, when there is one, names one of ours: this side only sends.
        if let Some(v) = s["verdict"].as_str() {
            assert!(!v.starts_with("rx "), "{v}");
        }
    });
}

/// The bufferbloat figure on a real queue: the router shapes the way to the client with a
/// token bucket (20 Mbit/s, up to 300 ms of buffer). A UDP download asked at 30 Mbit/s keeps
/// that buffer full, so the probe's replies, queued behind the data, come back late. Needs
/// the tbf qdisc.
#[test]
fn bufferbloat_through_a_shaped_router_is_measured() {
    watchdog(90, || {
        let Some(lab) = Lab::new("b") else { return };
        let id = std::process::id() % 10_000;
        let r0 = format!("r0b{id}");
        let tbf = [
            "tc", "-n", &lab.r, "qdisc", "add", "dev", &r0, "root", "tbf", "rate", "20mbit",
            "burst", "32k", "latency", "300ms",
        ];
        if !run(&tbf) {
            eprintln!("skipped: no tbf qdisc in this kernel");
            return;
        }
        let o = lab.through(&[
            "--protocol",
            "udp",
            "--direction",
            "receive",
            "--remote-tx-speed",
            "30M",
            "--duration",
            "4s",
        ]);
        assert_exit(&o, 0);
        let s = summary(&o);
        let rx = s["rx_avg_bps"].as_f64().unwrap();
        let idle = s["idle_rtt_p50_ms"].as_f64().unwrap();
        let loaded = s["loaded_rtt_p50_ms"].as_f64().unwrap();
        let bloat = s["bufferbloat_ms"].as_f64().unwrap();
        eprintln!(
            "shaped 20 Mbit/s, 300 ms buffer: received {rx:.0} bit/s; rtt idle p50 {idle} ms, \
             loaded p50 {loaded} p90 {} ms; bufferbloat {bloat} ms; tcp rtt {} ms",
            s["loaded_rtt_p90_ms"], s["tcp_rtt_ms"]
        );
        assert!(rx < 21e6 && rx > 10e6, "the shaper holds the rate: {s}");
        assert!(idle < 5.0, "an idle path of veths: {s}");
        assert!(bloat > 100.0, "a full 300 ms buffer must show: {s}");
    });
}
