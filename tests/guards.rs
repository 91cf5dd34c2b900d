//! Issue 12, items 4 and 5, through the built binary: slow-loris and half-open handshakes are
//! dropped at the handshake deadline and capped per source, so a flood from one address does
//! not starve another; wrong logins and login floods from one address cost bounded server
//! CPU while a user from another address logs in at once; rejections are logged at a bounded
//! rate. Other sources are other loopback addresses (127.0.0.2, .3), which Linux routes to lo.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btest::wire::{Command, Direction, Protocol};

use crate::util::*;

/// A server binary whose stderr lines are kept for the test to count.
struct LoggedServer {
    /// Killed on drop (util's guard).
    child: Proc,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LoggedServer {
    fn start(extra: &[&str]) -> LoggedServer {
        let base = udp_base().to_string();
        let mut child = Proc::new(
            btest_bin()
                .args(["server", "--listen", "0.0.0.0:0", "--udp-port-from", &base])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        assert!(first.contains("listening on"), "{first}");
        let port = first.trim().rsplit(':').next().unwrap().to_string();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        LoggedServer {
            child,
            addr: format!("127.0.0.1:{port}"),
            lines,
        }
    }

    fn sock(&self) -> SocketAddr {
        self.addr.parse().unwrap()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The server's user + system CPU so far, in seconds (all threads, live and ended).
    fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // fields 14 and 15 of stat(5), here 11 and 12 after the command name
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Reads until the server closes; how long that took from `since`.
fn closed_after(s: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "server kept a connection open"
        );
    }
}

fn tcp_command(count: u8) -> [u8; 16] {
    Command {
        protocol: Protocol::Tcp,
        direction: Direction::ServerTx,
        random_data: false,
        connection_count: count,
        tx_size: 32768,
        client_buf_size: 0,
        remote_tx_speed: 1_000_000,
        local_tx_speed: 0,
    }
    .to_bytes()
}

/// A short real test from `bind`; panics unless it succeeds.
fn real_client(addr: &str, bind: &str, extra: &[&str]) -> Duration {
    let t0 = Instant::now();
    let o = btest_bin()
        .args(["client", addr, "--bind", bind, "--duration", "1", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "client from {bind} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t0.elapsed()
}

#[test]
fn a_flood_of_half_open_handshakes_does_not_starve_another_source() {
    watchdog(90, || {
        let _x = exclusive();
        let srv = LoggedServer::start(&["--handshake-timeout", "2s"]);
        let to = srv.sock();
        // main, accept and guard threads: the listening line comes before they are all up
        std::thread::sleep(Duration::from_millis(300));
        let base_threads = srv.threads();
        let t0 = Instant::now();
        // 500 from 127.0.0.1: most silent, every 10th sends one byte, every 25th a
        // connection-count 20 command whose data connections never come.
        let mut flood = Vec::new();
        for i in 0..500 {
            let Some(mut s) = connect_from("127.0.0.1", to).ok() else {
                continue;
            };
            if i % 25 == 0 {
                let _ = s.write_all(&tcp_command(20));
            } else if i % 10 == 0 {
                let _ = s.write_all(&[1]);
            }
            flood.push(s);
        }
        assert!(flood.len() >= 490, "only {} connected", flood.len());
        // Each admitted connection's deadline counts from its accept, which comes after its
        // connect: measured from the end of the flood, not its start (opening 500 connections
        // took long enough under stress -c 2 and builds to push the last past 4.5 s from t0).
        let flooded = Instant::now();
        // A slow-loris from its own address: one byte every 300 ms would restart a per-read
        // timeout forever; the deadline counts from the accept.
        let mut loris = connect_from("127.0.0.3", to).unwrap();
        let loris_t0 = Instant::now();
        let mut hello = [0u8; 4];
        loris.read_exact(&mut hello).unwrap();
        let mut dripper = loris.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut b = tcp_command(1);
            b[0] = 1;
            for byte in b.iter().cycle() {
                if dripper.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        // Its close is watched from now on, on a thread of its own: read after the client
        // below, a close at 2 s would look as late as that client's end.
        let mut watched = loris.try_clone().unwrap();
        let loris_closed = std::thread::spawn(move || closed_after(&mut watched, loris_t0));
        // In the middle of the flood, a normal client from another address is served.
        let took = real_client(&srv.addr, "127.0.0.2", &["--direction", "both"]);
        let served = flooded.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "served only after {took:?} during the flood"
        );
        // Every flood connection is closed: the refused ones at once, the admitted ones
        // (16 per source) at the 2 s deadline; none lives past it by much.
        let mut latest = Duration::ZERO;
        for s in &mut flood {
            latest = latest.max(closed_after(s, flooded));
        }
        // A read finds a long-closed connection closed at once, so `latest` is no earlier than
        // when this loop began (after the client above): the bound is the later of the 2 s
        // deadline and that, plus scheduling slack.
        let bound = served.max(Duration::from_secs(2)) + Duration::from_millis(2000);
        assert!(
            latest < bound,
            "a flood connection lived {latest:?} after the flood was open (deadline 2 s from \
             each accept; flood opened in {:?}, other client done {served:?} after it)",
            flooded - t0
        );
        let l = loris_closed.join().unwrap();
        drop(loris);
        assert!(
            l >= Duration::from_millis(1900) && l < Duration::from_millis(3000),
            "the slow-loris was dropped after {l:?}, not at the 2 s deadline"
        );
        eprintln!(
            "flood of {}: other source served in {:.2} s; last flood connection closed at {:.2} s; slow-loris dropped after {:.2} s",
            flood.len(),
            took.as_secs_f64(),
            latest.as_secs_f64(),
            l.as_secs_f64()
        );
        // Logging stayed bounded: a few lines per reason and window plus their counts.
        assert!(
            wait_until(Duration::from_secs(12), || srv
                .lines()
                .iter()
                .any(|l| l.contains("not logged one by one"))),
            "no summary line: {:?}",
            srv.lines()
        );
        let lines = srv.lines();
        eprintln!("stderr lines: {}", lines.len());
        assert!(
            lines.len() < 40,
            "{} stderr lines for 500 refused connections:\n{}",
            lines.len(),
            lines.join("\n")
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("--max-handshakes-per-source")),
            "the refusal names its setting: {lines:?}"
        );
        // and the server is back to its baseline, still serving
        assert!(
            wait_until(Duration::from_secs(5), || srv.threads() <= base_threads),
            "threads {} vs {base_threads}",
            srv.threads()
        );
        real_client(&srv.addr, "127.0.0.1", &[]);
    });
}

#[test]
fn wrong_logins_and_msg1_floods_cost_bounded_cpu_and_spare_other_users() {
    watchdog(120, || {
        let _x = exclusive();
        // (the metrics file is removed at the end)
        let prom = std::env::temp_dir().join(format!("btest-guards-{}.prom", std::process::id()));
        let prom_s = prom.to_string_lossy().into_owned();
        let srv = LoggedServer::start(&[
            "--user",
            "alice",
            "--password",
            "right",
            "--metrics-file",
            &prom_s,
        ]);
        let cpu0 = srv.cpu_s();
        let t0 = Instant::now();
        // 100 wrong logins from 127.0.0.1, each a real EC-SRP5 client.
        let mut refused_fast = 0;
        for _ in 0..100 {
            let t = Instant::now();
            let o = btest_bin()
                .args([
                    "client",
                    &srv.addr,
                    "--user",
                    "alice",
                    "--password",
                    "wrong",
                ])
                // No idle probe second: 100 logins must fit the 60 s block.
                .args([
                    "--duration",
                    "1",
                    "--connect-timeout",
                    "3s",
                    "--latency",
                    "off",
                ])
                .output()
                .unwrap();
            assert!(!o.status.success());
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked"), "{err}");
            if t.elapsed() < Duration::from_millis(500) {
                refused_fast += 1;
            }
        }
        let cpu_wrong = srv.cpu_s() - cpu0;
        eprintln!(
            "100 wrong logins: server CPU {:.0} ms in all, {:.1} s wall",
            cpu_wrong * 1e3,
            t0.elapsed().as_secs_f64()
        );
        // The work the server did: one EC-SRP5 exchange per failure it counted. Five, then
        // the source is blocked and every further attempt is closed after the accept.
        let metric = |name: &str| -> Option<f64> {
            let text = std::fs::read_to_string(&prom).ok()?;
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        };
        let failures = r#"btest_auth_failures_total{method="ecsrp5"}"#;
        assert!(
            wait_until(Duration::from_secs(3), || metric(failures) == Some(5.0)),
            "{failures} = {:?}, {:?}",
            metric(failures),
            srv.lines()
        );
        assert!(
            wait_until(Duration::from_secs(3), || metric(
                r#"btest_sessions_rejected_total{reason="login_blocked"}"#
            ) >= Some(90.0)),
            "blocked refusals not counted"
        );
        assert!(refused_fast >= 90, "only {refused_fast} refused quickly");
        // The target is <= 100 ms on a quiet machine (docs/reliability.md: 40-50 ms here);
        // process CPU is tick-sampled and inflates on a loaded one, so the test only
        // catches an order of magnitude (100 full exchanges cost ~600 ms).
        // A debug build's bignum code is ~15x slower: the CPU figures mean something only
        // in release (`make soak`, docs/reliability.md); the counts above hold in both.
        let release = !cfg!(debug_assertions);
        assert!(
            !release || cpu_wrong <= 0.400,
            "100 wrong logins cost the server {:.0} ms of CPU (target <= 100 ms)",
            cpu_wrong * 1e3
        );
        // The block is logged once, not per attempt.
        let blocks = srv
            .lines()
            .iter()
            .filter(|l| l.contains("wrong logins within"))
            .count();
        assert_eq!(blocks, 1, "{:?}", srv.lines());

        // A legitimate user from another address logs in at once.
        let took = real_client(
            &srv.addr,
            "127.0.0.2",
            &["--user", "alice", "--password", "right"],
        );
        assert!(took < Duration::from_secs(3), "login took {took:?}");

        // An MSG1 flood from a third address: EC-SRP5 exchanges started and dropped.
        let cpu1 = srv.cpu_s();
        let (_, msg1) = btest::auth::ec_srp5::ClientHandshake::new(b"alice", b"x", [7u8; 32]);
        let msg1 = btest::auth::ec_srp5::frame(&msg1).unwrap();
        let mut answered = 0;
        for _ in 0..200 {
            let Some(mut s) = connect_from("127.0.0.3", srv.sock()).ok() else {
                continue;
            };
            let mut b = [0u8; 4];
            if s.read_exact(&mut b).is_err() {
                continue; // refused before the hello
            }
            if s.write_all(&tcp_command(1)).is_err() || s.read_exact(&mut b).is_err() {
                continue;
            }
            if b[0] == 3 && s.write_all(&msg1).is_ok() {
                let mut m2 = [0u8; 1];
                if s.read_exact(&mut m2).is_ok() {
                    answered += 1; // the server did the work of MSG2
                }
            }
        }
        let cpu_flood = srv.cpu_s() - cpu1;
        eprintln!(
            "200 MSG1 from one address: {answered} answered, server CPU {:.0} ms",
            cpu_flood * 1e3
        );
        assert!(
            answered <= 12,
            "{answered} MSG1 of 200 got the server's work (burst 10)"
        );
        let _ = std::fs::remove_file(&prom);
        assert!(
            !release || cpu_flood <= 0.400,
            "an MSG1 flood cost the server {:.0} ms of CPU",
            cpu_flood * 1e3
        );
    });
}

/// `--deny` and `--allow` hold at the accept: a denied source gets no hello, is counted under
/// `reason="denied"` and is not logged one by one, and everyone else is served as before.
#[test]
fn allow_and_deny_lists_are_checked_before_the_hello() {
    // Not under exclusive(): nothing here measures a rate or loads a core (issue 20: the lock
    // serialises the suite).
    watchdog(60, || {
        let prom = std::env::temp_dir().join(format!("btest-acl-{}.prom", std::process::id()));
        let prom_s = prom.to_string_lossy().into_owned();
        let srv = LoggedServer::start(&["--deny", "127.0.0.2/32", "--metrics-file", &prom_s]);
        let to = srv.sock();
        for _ in 0..50 {
            let mut s = connect_from("127.0.0.2", to).expect("connect");
            let mut b = [0u8; 4];
            // closed at once: no hello
            assert_eq!(s.read(&mut b).unwrap_or(0), 0);
        }
        real_client(&srv.addr, "127.0.0.1", &["--direction", "both"]);
        let denied = r#"btest_sessions_rejected_total{reason="denied"}"#;
        let metric = || -> Option<f64> {
            let text = std::fs::read_to_string(&prom).ok()?;
            text.lines()
                .find(|l| l.starts_with(denied))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        };
        assert!(
            wait_until(Duration::from_secs(3), || metric() == Some(50.0)),
            "{denied} = {:?}",
            metric()
        );
        let per_connection = srv
            .lines()
            .iter()
            .filter(|l| l.contains("127.0.0.2"))
            .count();
        assert_eq!(per_connection, 0, "{:?}", srv.lines());
        let _ = std::fs::remove_file(&prom);

        // An allow list admits only what it holds.
        let srv = LoggedServer::start(&["--allow", "127.0.0.1/32,::1"]);
        let o = btest_bin()
            .args([
                "client",
                &srv.addr,
                "--bind",
                "127.0.0.3",
                "--duration",
                "1",
            ])
            .args(["--connect-timeout", "2s"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        real_client(&srv.addr, "127.0.0.1", &[]);
    });
}

/// On a dual-stack `[::]` listener an IPv4 client arrives as `::ffff:127.0.0.1`: an IPv4
/// deny entry must still hold, and IPv6 clients are unaffected.
#[test]
fn an_ipv4_deny_holds_for_mapped_addresses_on_a_dual_stack_listener() {
    // Not under exclusive(): nothing here measures a rate or loads a core (issue 20: the lock
    // serialises the suite).
    watchdog(60, || {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("skipped: no IPv6 loopback");
            return;
        }
        let base = udp_base().to_string();
        let mut child = Proc::new(
            btest_bin()
                .args(["server", "--listen", "[::]:0", "--udp-port-from", &base])
                .args(["--deny", "127.0.0.0/8"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        let port = first.trim().rsplit(':').next().unwrap().to_string();
        let v4 = btest_bin()
            .args(["client", &format!("127.0.0.1:{port}"), "--duration", "1"])
            .args(["--connect-timeout", "2s"])
            .output()
            .unwrap();
        let v6 = btest_bin()
            .args(["client", &format!("[::1]:{port}"), "--duration", "1"])
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            v4.status.code(),
            Some(1),
            "IPv4 through the mapped address was served"
        );
        assert!(
            v6.status.success(),
            "IPv6 client: {}",
            String::from_utf8_lossy(&v6.stderr)
        );
    });
}
