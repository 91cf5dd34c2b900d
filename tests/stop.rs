//! Stop promptness: a client told to stop, and a server shut down under load, are fully
//! joined within about a second.

use std::time::{Duration, Instant};

use btest::engine::{Stop, StopReason};
use btest::wire::{Direction, Protocol};

use crate::util::*;

#[test]
fn client_stop_is_prompt() {
    watchdog(30, || {
        let srv = start_server(server_cfg());
        for proto in [Protocol::Tcp, Protocol::Udp] {
            let mut c = client_cfg(srv.addr, proto, Direction::Both, 1.0);
            c.duration = None; // until stopped
            c.local_tx_speed = 1_000_000; // slow pacing: the TX thread sleeps a lot
            c.remote_tx_speed = 1_000_000;
            let stop = Stop::new();
            let (_rx, h) = btest::client::spawn(c, stop.clone()).unwrap();
            std::thread::sleep(Duration::from_millis(1200));
            let t0 = Instant::now();
            stop.trigger(StopReason::Shutdown);
            let r = h.join().unwrap().unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "{proto:?}: {:?}",
                t0.elapsed()
            );
            assert_eq!(r.summary.end_reason, StopReason::Shutdown);
            let _ = srv.next_session(Duration::from_secs(3));
        }
        srv.assert_idle();
    });
}

#[test]
fn server_shutdown_under_load_is_prompt() {
    watchdog(30, || {
        let mut srv = start_server(server_cfg());
        let addr = srv.addr;
        let mut c = client_cfg(addr, Protocol::Tcp, Direction::Both, 10.0);
        c.connection_count = 3;
        c.local_tx_speed = 100_000_000;
        c.remote_tx_speed = 100_000_000;
        let (_rx, h) = btest::client::spawn(c.clone(), Stop::new()).unwrap();
        let mut u = client_cfg(addr, Protocol::Udp, Direction::Both, 10.0);
        u.local_tx_speed = 10_000_000;
        u.remote_tx_speed = 10_000_000;
        let (_urx, uh) = btest::client::spawn(u, Stop::new()).unwrap();
        assert!(wait_until(Duration::from_secs(3), || srv
            .stats()
            .active_sessions
            == 2));
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        let st = srv.handle.take().unwrap().shutdown(Duration::from_secs(3));
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(
            (st.live_threads, st.udp_ports_in_use, st.active_sessions),
            (0, 0, 0),
            "{st:?}"
        );
        // the clients notice the server going away promptly and report it
        let t1 = Instant::now();
        let r = h.join().unwrap().unwrap();
        // Closed or reset: a server closing a socket with our data still unread in its
        // receive buffer sends a RST, not a FIN (RFC 2525 2.17), and which of the two our
        // threads see first depends on timing (1 run in 8 with two CPU hogs read PeerReset).
        assert!(
            matches!(
                r.summary.end_reason,
                StopReason::PeerClosed | StopReason::PeerReset
            ),
            "{:?}",
            r.summary.end_reason
        );
        let _ = uh.join().unwrap();
        assert!(t1.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn max_duration_caps_sessions() {
    watchdog(30, || {
        let mut cfg = server_cfg();
        cfg.max_duration = Some(Duration::from_secs(1));
        let srv = start_server(cfg);
        let mut c = client_cfg(srv.addr, Protocol::Udp, Direction::ServerTx, 5.0);
        c.remote_tx_speed = 10_000_000;
        let t0 = Instant::now();
        let (r, _) = run_client(&c);
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(r.unwrap().summary.end_reason, StopReason::PeerClosed);
        let rec = srv.next_session(Duration::from_secs(3));
        assert_eq!(rec.result.unwrap().end_reason, StopReason::MaxDuration);
        srv.assert_idle();
    });
}

#[test]
fn sigint_ends_a_client_test_with_its_summary() {
    use std::io::BufRead;
    watchdog(40, || {
        let srv = start_server(server_cfg());
        for proto in ["tcp", "udp"] {
            // killed on drop: with --duration 0 it would run for ever if the test failed
            let mut child = Proc::new(
                btest_bin()
                    .args([
                        "client",
                        &srv.addr.to_string(),
                        "--protocol",
                        proto,
                        "--direction",
                        "both",
                    ])
                    .args([
                        "--duration",
                        "0",
                        "--local-tx-speed",
                        "5M",
                        "--remote-tx-speed",
                        "5M",
                        "--json",
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let pid = child.id();
            let (lines_tx, lines) = crossbeam_channel::unbounded();
            let out = std::io::BufReader::new(child.stdout.take().unwrap());
            std::thread::spawn(move || {
                for l in out.lines().map_while(Result::ok) {
                    let _ = lines_tx.send(l);
                }
            });
            let mut err = child.stderr.take().unwrap();
            let err = std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut s);
                s
            });
            // Signalled once the data phase shows (its first interval), not after a fixed
            // sleep: a signal that lands before the handlers are installed is lost when the
            // test runs with SIGINT ignored (a background job of a script inherits that), and
            // then the client runs for ever.
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(15);
            while !seen
                .iter()
                .any(|l: &String| l.contains(r#""type":"interval""#))
            {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(l) => seen.push(l),
                    Err(_) => panic!("{proto}: no interval within 15 s: {seen:?}"),
                }
            }
            let t0 = Instant::now();
            signal(pid, "-INT");
            let mut code = None;
            while t0.elapsed() < Duration::from_secs(5) {
                if let Some(st) = child.try_wait().unwrap() {
                    code = Some(st);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let took = t0.elapsed();
            let Some(code) = code else {
                panic!(
                    "{proto}: still running 5 s after SIGINT:\n{}",
                    proc_state(pid)
                );
            };
            let stderr = err.join().unwrap();
            assert!(took < Duration::from_secs(1), "{proto}: {took:?}");
            assert_eq!(code.code(), Some(0), "{proto}: {stderr}");
            seen.extend(lines.iter());
            let last: serde_json::Value = serde_json::from_str(seen.last().unwrap()).unwrap();
            assert_eq!(last["type"], "summary", "{seen:?}");
            assert_eq!(last["end_reason"], "interrupted");
            let _ = srv.next_session(Duration::from_secs(3));
        }
        srv.assert_idle();
    });
}

#[test]
fn sigterm_stops_a_busy_server_and_frees_its_ports() {
    watchdog(30, || {
        let (child, addr) = spawn_server_bin(&[]);
        let mut c = client_cfg(addr.parse().unwrap(), Protocol::Udp, Direction::Both, 20.0);
        c.local_tx_speed = 10_000_000;
        c.remote_tx_speed = 10_000_000;
        let (_rx, h) = btest::client::spawn(c, Stop::new()).unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        let t0 = Instant::now();
        signal(child.id(), "-TERM");
        let o = child.wait_with_output().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert!(o.status.success());
        // the session ended by the shutdown still got its line
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(out.contains("udp") && out.contains("interrupted"), "{out}");
        let r = h.join().unwrap().unwrap();
        assert_eq!(r.summary.end_reason, StopReason::PeerClosed);
        // its UDP port is free again: we can bind it
        let port = r.udp_port.unwrap();
        std::net::UdpSocket::bind(("127.0.0.1", port)).expect("server UDP port still held");
    });
}
