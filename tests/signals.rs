//! Issue 18 item 3: signals and output never lose a session. SIGHUP reloads the users file
//! (checked first; the old accounts stay on an error) instead of killing the server; SIGTERM
//! ends it within 1 s even when nobody reads its stdout, with every session record in the CSV
//! and the byte usage written; a closed stdout is logged once and the server goes on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use btest::wire::{Command, Direction, Protocol};

use crate::util::*;

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("btest-signals-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn users_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("users");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Starts the binary; returns it, its address and its stderr lines.
fn server(args: &[&str]) -> (Proc, SocketAddr, crossbeam_channel::Receiver<String>) {
    let (child, addr, log) = spawn_server_bin_logged("127.0.0.1:0", udp_base(), args);
    (child, addr.parse().unwrap(), log)
}

fn login(addr: SocketAddr, user: &str, pw: &str) -> bool {
    let mut c = client_cfg(addr, Protocol::Tcp, Direction::Both, 0.5);
    c.user = Some(user.into());
    c.password = Some(pw.into());
    c.latency = btest::config::Latency::Off;
    run_client(&c).0.is_ok()
}

fn wait_line(rx: &crossbeam_channel::Receiver<String>, what: &str) -> String {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if l.contains(what) {
                return l;
            }
        }
    }
    panic!("no log line with {what:?}");
}

#[test]
fn sighup_reloads_the_users_file_and_keeps_the_old_one_on_an_error() {
    watchdog(60, || {
        let dir = scratch("hup");
        let users = users_file(&dir, "alice:pw\n");
        let path = users.to_str().unwrap();
        let (mut child, addr, log) = server(&["--auth", "md5", "--users", path, "-v"]);
        assert!(login(addr, "alice", "pw"));
        assert!(!login(addr, "bob", "pw2"), "bob has no account yet");
        // A session running across the reload is not disturbed.
        let mut c = client_cfg(addr, Protocol::Tcp, Direction::Both, 2.0);
        c.user = Some("alice".into());
        c.password = Some("pw".into());
        c.latency = btest::config::Latency::Off;
        let running = std::thread::spawn(move || run_client(&c).0);
        std::thread::sleep(Duration::from_millis(500));
        users_file(
            &dir,
            "alice:pw\nbob:pw2\nlimit bob sessions=1 # ticket: 42\n",
        );
        signal(child.id(), "-HUP");
        let l = wait_line(&log, "SIGHUP");
        eprintln!("{l}");
        assert!(
            l.contains("user 'bob' added") && l.contains("limit for 'bob' added"),
            "{l}"
        );
        let r = running.join().unwrap().expect("the running session");
        assert!(r.outcome().is_ok(), "{:?}", r.outcome());
        assert!(login(addr, "bob", "pw2"), "bob after the reload");
        // A broken file: nothing changes.
        users_file(&dir, "alice:pw\nlimit carol sessions=1\n");
        signal(child.id(), "-HUP");
        let l = wait_line(&log, "SIGHUP");
        eprintln!("{l}");
        assert!(l.contains("not reloaded") && l.contains("carol"), "{l}");
        assert!(login(addr, "bob", "pw2"), "the old accounts stay");
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP did not kill the server"
        );
        signal(child.id(), "-TERM");
        assert!(child.wait().unwrap().success());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// 1000 wrong logins produce 1000 JSON records, far more than a pipe nobody reads holds.
fn wrong_logins(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 20];
        s.read_exact(&mut b[..4]).unwrap();
        let cmd = Command {
            protocol: Protocol::Tcp,
            direction: Direction::Both,
            random_data: false,
            connection_count: 1,
            tx_size: 32768,
            client_buf_size: 0,
            remote_tx_speed: 0,
            local_tx_speed: 0,
        };
        s.write_all(&cmd.to_bytes()).unwrap();
        s.read_exact(&mut b).unwrap(); // 02 00 00 00 + challenge
        s.write_all(&[0u8; 48]).unwrap();
        let _ = s.read(&mut b);
    }
}

#[test]
fn sigterm_ends_within_a_second_with_stdout_unread_and_keeps_every_record() {
    watchdog(90, || {
        let dir = scratch("term");
        let users = users_file(&dir, "alice:pw\n");
        let csv = dir.join("sessions.csv");
        let state = dir.join("state");
        let (mut child, addr, _log) = server(&[
            "--json",
            "--auth",
            "md5",
            "--users",
            users.to_str().unwrap(),
            "--max-login-failures",
            "0",
            "--logins-per-minute",
            "0",
            "--csv",
            csv.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--source-limit",
            "addr day=100G",
        ]);
        // stdout is a pipe that is never read from here on.
        let _unread = child.stdout.take().unwrap();
        // About 200 kB of JSON: the pipe (64 KiB) is full, the writer thread blocked in a
        // write, the rest queued.
        wrong_logins(addr, 1000);
        // A session that a shutdown ends.
        let mut c = client_cfg(addr, Protocol::Udp, Direction::Both, 20.0);
        c.user = Some("alice".into());
        c.password = Some("pw".into());
        c.local_tx_speed = 10_000_000;
        c.remote_tx_speed = 10_000_000;
        c.latency = btest::config::Latency::Off;
        let (_rx, h) = btest::client::spawn(c, btest::engine::Stop::new()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let t0 = Instant::now();
        signal(child.id(), "-TERM");
        let st = child.wait().unwrap();
        let took = t0.elapsed();
        eprintln!("SIGTERM with stdout full: exited {st} after {took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert!(st.success());
        let _ = h.join();
        // Every record in the CSV: 1000 failed logins and the interrupted session.
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows = text.lines().count() - 1;
        assert_eq!(rows, 1001, "CSV rows");
        assert!(
            text.lines().last().unwrap().contains("interrupted"),
            "{text}"
        );
        // And its bytes in the usage store.
        let (store, _) = btest::server::usage::Store::open(&state).unwrap();
        let used = store
            .entries()
            .into_iter()
            .map(|(_, _, b)| b.up + b.down)
            .sum::<u64>();
        eprintln!("usage written at exit: {used} B");
        assert!(used > 1_000_000, "{used}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_closed_stdout_is_logged_once_and_the_server_goes_on() {
    watchdog(60, || {
        let (mut child, addr, log) = server(&["--json"]);
        drop(child.stdout.take());
        for _ in 0..3 {
            let mut c = client_cfg(addr, Protocol::Tcp, Direction::Both, 0.5);
            c.latency = btest::config::Latency::Off;
            let r = run_client(&c).0.expect("served");
            assert!(r.outcome().is_ok());
        }
        let l = wait_line(&log, "standard output failed");
        eprintln!("{l}");
        assert!(child.try_wait().unwrap().is_none(), "still serving");
        let t0 = Instant::now();
        signal(child.id(), "-TERM");
        assert!(child.wait().unwrap().success());
        assert!(t0.elapsed() < Duration::from_secs(1));
        let again: Vec<String> = log
            .try_iter()
            .filter(|l| l.contains("standard output failed"))
            .collect();
        assert!(again.is_empty(), "logged once: {again:?}");
    });
}
