//! Issue 11.3: `btest fleet FILE` through the built binary: three targets (open server, one
//! with a login from a credentials file, a dead address), parallel, retries, the matrix as
//! NDJSON on stdout and in files, CSV, progress on stderr, the HTML report; file errors.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("btest-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_fleet_of_three_gives_one_matrix_with_a_clear_failure() {
    watchdog(120, || {
        let (mut open, a1) = spawn_server_bin(&[]);
        let (mut locked, a2) = spawn_server_bin(&["--user", "ops", "--password", "pa ss"]);
        let dir = tmp("three");
        let cred = dir.join("tower2.cred");
        std::fs::write(&cred, "ops:pa ss\n").unwrap();
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = dir.join("fleet.txt");
        std::fs::write(
            &file,
            format!(
                "# three towers\n\
                 defaults --duration 2s --direction both\n\
                 tower-1 {a1}\n\
                 tower-2 {a2} --credentials tower2.cred --protocol udp --local-tx-speed 20M --remote-tx-speed 20M\n\
                 dead 127.0.0.1:1 --connect-timeout 1s   # nothing listens there\n"
            ),
        )
        .unwrap();
        let (csv, nd, html) = (dir.join("m.csv"), dir.join("m.ndjson"), dir.join("r.html"));
        let o = btest_bin()
            .args([
                "fleet",
                file.to_str().unwrap(),
                "--parallel",
                "2",
                "--retry-delay",
                "200ms",
                "--json",
            ])
            .args([
                "--csv",
                csv.to_str().unwrap(),
                "--ndjson",
                nd.to_str().unwrap(),
            ])
            .args(["--report", html.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!("{err}");
        assert_exit(&o, 1);
        let v = json_lines(&o.stdout);
        assert_eq!(v.len(), 3, "{v:?}");
        let by = |n: &str| v.iter().find(|r| r["name"] == n).unwrap().clone();
        let (t1, t2, dead) = (by("tower-1"), by("tower-2"), by("dead"));
        assert_eq!(
            (t1["ok"].clone(), t1["attempts"].clone()),
            (true.into(), 1.into()),
            "{t1}"
        );
        assert!(
            t1["up_bps"].as_f64().unwrap() > 1e6 && t1["down_bps"].as_f64().unwrap() > 1e6,
            "{t1}"
        );
        assert!(
            t1["tcp_rtt_ms"].as_f64().is_some() && t1["loaded_rtt_ms"].as_f64().is_some(),
            "{t1}"
        );
        assert!(t1["local_cpu_avg"].as_f64().is_some(), "{t1}");
        assert_eq!(t2["ok"], true, "{t2}");
        let up = t2["up_bps"].as_f64().unwrap();
        // At most the asked 20 Mbit/s (+15 %); at least a quarter of it, a bound a busy machine
        // holds (rates belong to `make bench`; issue 20).
        assert!((5e6..=23e6).contains(&up), "{t2}");
        assert!(t2["down_loss_pct"].as_f64().unwrap() < 5.0, "{t2}");
        assert!(t2["up_loss_pct"].as_f64().is_some(), "{t2}");
        assert_eq!(dead["ok"], false, "{dead}");
        assert_eq!(dead["attempts"], 2, "one retry by default: {dead}");
        assert_eq!(dead["phase"], "connect", "{dead}");
        assert!(
            dead["error"].as_str().unwrap().contains("127.0.0.1:1"),
            "{dead}"
        );
        assert!(
            err.contains("dead attempt 1 failed") && err.contains("retrying"),
            "{err}"
        );
        assert!(err.contains("[3/3]") && err.contains("FAILED"), "{err}");
        let c = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(c.lines().count(), 4, "{c}");
        assert!(c.starts_with("timestamp,name,server,ok,attempts"), "{c}");
        assert_eq!(std::fs::read_to_string(&nd).unwrap().lines().count(), 3);
        let h = std::fs::read_to_string(&html).unwrap();
        btest::export::html::check_well_formed(&h).unwrap();
        for n in ["tower-1", "tower-2", "dead", "data-chart=\"fleet-rates\""] {
            assert!(h.contains(n), "{n} not in the report");
        }
        for s in [&mut open, &mut locked] {
            s.kill().unwrap();
            let _ = s.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn wrong_credentials_are_not_retried_and_text_shows_the_matrix() {
    watchdog(60, || {
        let (mut srv, a) = spawn_server_bin(&["--user", "ops", "--password", "right"]);
        let dir = tmp("auth");
        let file = dir.join("f");
        std::fs::write(&file, format!("ok {a} --user ops --password right --duration 1s\nbad {a} --user ops --password wrong --retries 3\n")).unwrap();
        let o = btest_bin()
            .args(["fleet", file.to_str().unwrap(), "--retry-delay", "100ms"])
            .output()
            .unwrap();
        assert_exit(&o, 1);
        let t = String::from_utf8_lossy(&o.stdout);
        eprintln!("{t}");
        let bad = t.lines().find(|l| l.starts_with("bad ")).unwrap();
        assert!(
            bad.contains("FAILED") && bad.contains("authentication"),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("ok ") && l.contains(" ok ")),
            "{t}"
        );
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("bad attempt 1 failed"),
            "not retried"
        );
        srv.kill().unwrap();
        let _ = srv.wait();
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_bad_fleet_file_names_its_line() {
    let dir = tmp("bad");
    let file = dir.join("f");
    std::fs::write(&file, "a 127.0.0.1\nb 127.0.0.1 --direction sideways\n").unwrap();
    let o = btest_bin()
        .args(["fleet", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("line 2: target 'b': --direction: invalid value 'sideways'"),
        "{e}"
    );
    let o = btest_bin()
        .args(["fleet", "/nonexistent/fleet"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read /nonexistent/fleet"));
    let o = btest_bin()
        .args(["fleet", file.to_str().unwrap(), "--parallel", "0"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// RouterOS servers all hand out UDP port 2001, and the protocol puts our port at theirs +
/// 256, so two UDP tests at once to two routers need the same local port. Two servers here
/// (127.0.0.1 and 127.0.0.3) give the same port; both tests must pass, each with its own
/// datagrams (no loss, the asked rate each way). Before SO_REUSEPORT on the client's data
/// sockets the second failed: "cannot bind our UDP port ...: Address already in use".
#[test]
fn parallel_udp_targets_share_the_protocols_client_port() {
    watchdog(60, || {
        let base = udp_base();
        let (mut a, aa) = spawn_server_bin_on("127.0.0.1:0", base, &[]);
        let (mut b, ba) = spawn_server_bin_on("127.0.0.3:0", base, &[]);
        let dir = tmp("shared");
        let file = dir.join("f");
        let opts = "--protocol udp --direction both --local-tx-speed 10M --remote-tx-speed 10M --duration 3s";
        std::fs::write(&file, format!("a {aa} {opts}\nb {ba} {opts}\n")).unwrap();
        let o = btest_bin()
            .args([
                "fleet",
                file.to_str().unwrap(),
                "--parallel",
                "2",
                "--retries",
                "0",
                "--json",
            ])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        for r in json_lines(&o.stdout) {
            eprintln!(
                "{}: up {} down {} bit/s, loss up {} down {} %",
                r["name"], r["up_bps"], r["down_bps"], r["up_loss_pct"], r["down_loss_pct"]
            );
            assert_eq!(r["ok"], true, "{r}");
            for k in ["up_bps", "down_bps"] {
                let v = r[k].as_f64().unwrap();
                // The asked 10 Mbit/s is an upper bound (+10 %); a quarter of it holds on a busy
                // machine (issue 20).
                assert!((2.5e6..=11e6).contains(&v), "{k}: {r}");
            }
            assert!(r["down_loss_pct"].as_f64().unwrap() < 0.5, "{r}");
        }
        for s in [&mut a, &mut b] {
            s.kill().unwrap();
            let _ = s.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Issue 20, bug B1 in `fleet --parallel`: two targets at once in one process (with both
/// servers in this process too), their threads named alike. Thread CPU used to be read back by
/// name, so the transmit-only target could report the other target's (or a server's) busy
/// `btest-rx-0` as its own. Each target now samples only the threads its session started: the
/// transmit-only one's RX figure is its control reader's (one 12-byte status a second, near
/// 0 %), and the receiving one sees its own reader. No rate is asserted.
#[test]
fn parallel_targets_report_only_their_own_threads() {
    watchdog(90, || {
        use btest::config::{FleetConfig, Output};
        let a = start_server(server_cfg());
        let b = start_server(server_cfg());
        let dir = tmp("own-threads");
        let text = format!(
            "up {} --protocol udp --direction transmit --local-tx-speed 1G --duration 3s\n\
             down {} --protocol udp --direction receive --remote-tx-speed 1G --duration 3s\n",
            a.addr, b.addr
        );
        let targets = btest::fleet::parse(&text, &dir).unwrap();
        let fleet = FleetConfig {
            file: dir.join("f"),
            parallel: 2,
            retries: 0,
            retry_delay: std::time::Duration::from_secs(1),
            output: Output::Json,
            csv: None,
            ndjson: None,
            report: None,
            speed_test: false,
        };
        let done = btest::fleet::run_all(&fleet, &targets, |_| {}).unwrap();
        assert_eq!(done.len(), 2);
        let cpu = |i: usize, role: &str| {
            let s = done[i].run.summary.as_ref().expect("a summary");
            let c = s.get(&btest::record::field::THREAD_CPU_MAX);
            eprintln!("{}: thread_cpu_max {c:?}", targets[i].name);
            c.field(role).as_f64().unwrap()
        };
        assert!(cpu(0, "tx") > 0.0, "the sender was not sampled");
        assert!(cpu(0, "rx") <= 5.0, "another session's RX thread counted");
        assert!(cpu(1, "rx") > 0.0, "the receiver was not sampled");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
