//! Loss accounting across a real (emulated) link: two network namespaces joined by a veth
//! pair that loses 5 % of UDP datagrams. The loss comes from `tc netem loss 5%` on the
//! server's side where the kernel has netem; kernels without it (this project's CI VM has
//! CONFIG_NET_SCH_NETEM unset) get the same random 5 % drop from an nftables rule on the
//! client's input (`numgen random mod 100 < 5`), which the receiver sees exactly as wire loss.
//! Needs root, iproute2 and netem or nft; without them the test says so and is skipped (without
//! root or iproute2 it fails under CI, issue 20).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Two namespaces `A` (server, 10.231.7.1) and `B` (client, 10.231.7.2), removed on drop.
struct Link {
    a: String,
    b: String,
}

impl Link {
    fn new(loss_pct: u32) -> Option<Link> {
        if !is_root() {
            skip("the loss test builds a veth pair in two namespaces: needs root");
            return None;
        }
        let id = std::process::id() % 100_000;
        let l = Link {
            a: format!("bta{id}"),
            b: format!("btb{id}"),
        };
        let (a, b) = (l.a.as_str(), l.b.as_str());
        let va = format!("va{id}");
        let vb = format!("vb{id}");
        let loss = format!("{loss_pct}%");
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", a],
            vec!["ip", "netns", "add", b],
            vec![
                "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
            ],
            vec!["ip", "link", "set", &va, "netns", a],
            vec!["ip", "link", "set", &vb, "netns", b],
            vec!["ip", "-n", a, "addr", "add", "10.231.7.1/24", "dev", &va],
            vec!["ip", "-n", b, "addr", "add", "10.231.7.2/24", "dev", &vb],
            vec!["ip", "-n", a, "link", "set", &va, "up"],
            vec!["ip", "-n", b, "link", "set", &vb, "up"],
            vec!["ip", "-n", a, "link", "set", "lo", "up"],
            vec!["ip", "-n", b, "link", "set", "lo", "up"],
        ];
        for s in steps {
            if !run(&s) {
                skip(&format!(
                    "cannot build the test link ({}): needs root and iproute2",
                    s.join(" ")
                ));
                return None; // Drop removes what was made
            }
        }
        let netem = [
            "tc", "-n", a, "qdisc", "add", "dev", &va, "root", "netem", "loss", &loss,
        ];
        if run(&netem) {
            eprintln!("loss from tc netem");
            return Some(l);
        }
        let rule = format!("meta l4proto udp numgen random mod 100 < {loss_pct} drop");
        let chain = "{ type filter hook input priority 0 ; }";
        let nft: Vec<Vec<&str>> = vec![
            vec![
                "ip", "netns", "exec", b, "nft", "add", "table", "inet", "btloss",
            ],
            vec![
                "ip", "netns", "exec", b, "nft", "add", "chain", "inet", "btloss", "in", chain,
            ],
            vec![
                "ip", "netns", "exec", b, "nft", "add", "rule", "inet", "btloss", "in", &rule,
            ],
        ];
        for s in nft {
            if !run(&s) {
                eprintln!(
                    "skipped: neither tc netem nor nft can drop packets here ({})",
                    s.join(" ")
                );
                return None;
            }
        }
        eprintln!("loss from nftables (no netem in this kernel)");
        Some(l)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        run(&["ip", "netns", "del", &self.a]);
        run(&["ip", "netns", "del", &self.b]);
    }
}

#[test]
fn netem_loss_5_percent_is_reported_as_wire_loss() {
    watchdog(60, || {
        let Some(link) = Link::new(5) else { return };
        let bin = env!("CARGO_BIN_EXE_btest");
        // `ip netns exec` execs the server: the pid is the server's, killed on drop.
        let mut server = Proc::new(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &link.a,
                    bin,
                    "server",
                    "--listen",
                    "10.231.7.1:2000",
                    // One datagram per packet: the drop rule is random per packet, and a GSO
                    // super-datagram is one packet of many datagrams, so with GSO the loss
                    // comes in bursts and 4 s of it strays far beyond +-1.5 % (3.38 % was seen
                    // under stress -c 2, when the sender batches more). Per datagram it is a
                    // binomial sample of ~6,500 (sigma about 0.27 %).
                    "--udp-io",
                    "mmsg",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = std::io::BufReader::new(server.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(line.contains("listening on"), "{line}");
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &link.b,
                bin,
                "client",
                "10.231.7.1",
                "--protocol",
                "udp",
            ])
            .args([
                "--direction",
                "receive",
                "--remote-tx-speed",
                "20M",
                "--duration",
                "4s",
                "--json",
            ])
            .output()
            .unwrap();
        let _ = server.kill();
        let _ = server.wait();
        assert_exit(&o, 0);
        let out = String::from_utf8(o.stdout).unwrap();
        let s: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        let rx = s["rx_bytes"].as_u64().unwrap() / 1500;
        let wire = s["lost_wire"].as_u64().unwrap();
        let pct = 100.0 * wire as f64 / (rx + wire) as f64;
        eprintln!(
            "received {rx} datagrams, lost on the wire {wire} ({pct:.2} %), host {}",
            s["lost_host"]
        );
        assert!(
            (3.5..=6.5).contains(&pct),
            "wire loss {pct:.2} % (expected 5 % +- 1.5)"
        );
        assert_eq!(
            s["lost_host"].as_u64(),
            Some(0),
            "no host drops at 20 Mbit/s"
        );
        let _ = Duration::ZERO;
    });
}
