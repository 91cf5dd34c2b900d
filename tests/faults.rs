//! Faults (issue 12, item 3), with real processes: a client killed or stopped mid-test, a
//! server killed or stopped mid-test. The server must free everything (threads, descriptors,
//! UDP ports, from /proc) within its control timeout and say how the session ended; a client
//! must exit 1 and say what happened, and when, never that the test was "refused".
//!
//! Servers run with `--control-timeout 2s` to keep this short; the default (10 s) was timed by
//! hand for docs/reliability.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::soak::{ServerProc, Usage};
use crate::util::*;

/// The control timeout of these tests' servers.
const CONTROL: Duration = Duration::from_secs(2);
const CONTROL_ARG: [&str; 2] = ["--control-timeout", "2s"];

/// UDP port ranges (see soak.rs): 200 ports each, clear of every other test's.
const UDP_KILLED_CLIENT: u16 = 62000;
const UDP_STOPPED_CLIENT: u16 = 62200;
const UDP_KILLED_SERVER: u16 = 62400;
const UDP_STOPPED_SERVER: u16 = 62900;

/// The control timeout of the client in `server_stopped` (issue 20: its default, 10 s, was
/// waited out twice, 27 s of the suite).
const CLIENT_CONTROL: Duration = Duration::from_secs(3);

/// `btest client ADDR --protocol P --direction D --connection-count N`, 1 Mbit/s each way;
/// killed on drop, so a failed assertion leaves no client running.
fn client(addr: &str, proto: &str, dir: &str, conns: u8, secs: u32) -> Proc {
    client_with(addr, proto, dir, conns, secs, &[])
}

/// [`client`] with more options.
fn client_with(addr: &str, proto: &str, dir: &str, conns: u8, secs: u32, extra: &[&str]) -> Proc {
    Proc::new(
        btest_bin()
            .args(["client", addr, "--protocol", proto, "--direction", dir])
            .args(extra)
            .args(["--connection-count", &conns.to_string()])
            .args(["--duration", &format!("{secs}s")])
            .args(["--local-tx-speed", "1M", "--remote-tx-speed", "1M"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for a child to exit; its exit code, stderr and how long the wait took.
fn exit_of(mut c: Proc, within: Duration) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let done = wait_until(within, || matches!(c.try_wait(), Ok(Some(_))));
    if !done {
        let _ = c.kill();
    }
    let o = c.wait_with_output().unwrap();
    let took = t0.elapsed();
    assert!(done, "the client did not exit within {within:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.code(), err, took)
}

fn started(srv: &ServerProc, n: usize) {
    assert!(
        wait_until(Duration::from_secs(5), || srv.count("session_start") >= n),
        "session {n} did not start; stderr {:?}",
        srv.stderr_lines()
    );
}

/// The client's one-line verdict (`btest: ...`), which must say what happened, not "refused".
fn verdict(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("btest: "))
        .unwrap_or_else(|| panic!("no 'btest:' line: {stderr}"))
        .to_string();
    assert!(!line.contains("refused"), "{line}");
    line
}

#[test]
fn client_killed_mid_test_frees_everything_within_the_control_timeout() {
    watchdog(60, || {
        let srv = ServerProc::start(UDP_KILLED_CLIENT, &CONTROL_ARG);
        let base = srv.baseline();
        let cases = [("tcp", 1), ("udp", 1), ("tcp", 4), ("udp", 4)];
        for (i, (proto, conns)) in cases.into_iter().enumerate() {
            let mut c = client(&srv.addr.to_string(), proto, "both", conns, 30);
            started(&srv, i + 1);
            std::thread::sleep(Duration::from_millis(1000));
            let during = srv.usage();
            assert!(during.threads > base.threads, "{during:?}");
            c.kill().unwrap(); // SIGKILL
            let t0 = Instant::now();
            let _ = c.wait();
            let end = srv.session_end(i, CONTROL + Duration::from_secs(2));
            let freed = srv.settle(&base, CONTROL + Duration::from_secs(1));
            let total = t0.elapsed();
            let reason = end["end_reason"].as_str().unwrap().to_string();
            eprintln!(
                "SIGKILLed client, {proto} both x{conns}: session_end {reason} after {:?}, \
                 everything freed after {total:?} (during: {during:?}, baseline {base:?})",
                total - freed
            );
            assert!(
                ["client_reset", "client_closed", "control_timeout"].contains(&reason.as_str()),
                "{end}"
            );
            assert!(total <= CONTROL + Duration::from_secs(1), "{total:?}");
            assert_eq!(end["connections"], conns as u64, "{end}");
        }
        // Only the latency echo (UDP on the listen port) stays: no data port is left.
        assert_eq!(srv.usage().udp_ports, vec![srv.addr.port()]);
    });
}

#[test]
fn client_stopped_past_the_control_timeout_is_told_what_happened() {
    watchdog(60, || {
        let srv = ServerProc::start(UDP_STOPPED_CLIENT, &CONTROL_ARG);
        let base = srv.baseline();
        // TCP: the client transmits, so the server hears nothing while it is stopped (a
        // stopped client that only receives still has a kernel that takes data for a while,
        // and for TCP that counts as alive).
        let cases = [("udp", "both"), ("tcp", "transmit")];
        for (i, (proto, dir)) in cases.into_iter().enumerate() {
            let c = client(&srv.addr.to_string(), proto, dir, 1, 30);
            started(&srv, i + 1);
            std::thread::sleep(Duration::from_millis(800));
            let pid = c.id();
            signal(pid, "-STOP");
            let t0 = Instant::now();
            let end = srv.session_end(i, CONTROL + Duration::from_secs(2));
            let ended = t0.elapsed();
            srv.settle(&base, Duration::from_secs(2));
            let freed = t0.elapsed();
            assert_eq!(end["end_reason"], "control_timeout", "{end}");
            assert!(ended < CONTROL + Duration::from_secs(1), "{ended:?}");
            // 4 s stopped in all, twice the server's control timeout
            std::thread::sleep(Duration::from_secs(4).saturating_sub(t0.elapsed()));
            signal(pid, "-CONT");
            let (code, err, took) = exit_of(c, Duration::from_secs(5));
            let line = verdict(&err);
            eprintln!(
                "SIGSTOPped client, {proto} {dir}: server session_end control_timeout after \
                 {ended:?}, freed after {freed:?}; resumed after 4 s, client exit {code:?} \
                 {took:?} later:\n{err}"
            );
            assert_eq!(code, Some(1), "{err}");
            assert!(err.contains("this process did not run for"), "{err}");
            ended_by_server(&line, took);
        }
    });
}

/// The client's verdict says what the server did and when, and came promptly.
fn ended_by_server(line: &str, took: Duration) {
    assert!(
        line.contains("test ended early: the server closed the connection")
            || line.contains("test ended early: the server reset the connection"),
        "{line}"
    );
    assert!(line.contains(" s into the test"), "{line}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn server_killed_mid_test_client_exits_1_and_says_so() {
    watchdog(60, || {
        let cases = [("tcp", 1), ("udp", 1), ("tcp", 4)];
        for (i, (proto, conns)) in cases.into_iter().enumerate() {
            let mut srv = ServerProc::start(UDP_KILLED_SERVER + 100 * i as u16, &CONTROL_ARG);
            let c = client(&srv.addr.to_string(), proto, "both", conns, 30);
            started(&srv, 1);
            std::thread::sleep(Duration::from_millis(1500));
            srv.child.kill().unwrap(); // SIGKILL
            let (code, err, took) = exit_of(c, Duration::from_secs(5));
            let line = verdict(&err);
            eprintln!("SIGKILLed server, {proto} both x{conns}: client exit {code:?} after {took:?}: {line}");
            assert_eq!(code, Some(1), "{err}");
            ended_by_server(&line, took);
        }
    });
}

#[test]
fn server_stopped_mid_test_client_says_it_went_silent() {
    // TCP send: our sends keep succeeding into the stopped server's socket buffers, so only the
    // missing statuses can tell (it took 45 s at 1 Mbit/s, until our send buffer filled, while
    // a successful send still counted as a sign of life).
    for (proto, dir) in [("udp", "both"), ("tcp", "send")] {
        watchdog(60, || server_stopped(proto, dir));
    }
}

fn server_stopped(proto: &str, dir: &str) {
    let srv = ServerProc::start(UDP_STOPPED_SERVER, &CONTROL_ARG);
    let base: Usage = srv.baseline();
    let c = client_with(
        &srv.addr.to_string(),
        proto,
        dir,
        1,
        60,
        &["--control-timeout", "3s"],
    );
    started(&srv, 1);
    // past the server's first status (about 1 s into the data phase)
    std::thread::sleep(Duration::from_millis(2000));
    signal(srv.pid(), "-STOP");
    // the client's own control timeout (slack for a loaded machine: 2.x s late was seen with
    // two builds running alongside, when it was 10 s)
    let (code, err, took) = exit_of(c, CLIENT_CONTROL + Duration::from_secs(6));
    signal(srv.pid(), "-CONT");
    let line = verdict(&err);
    assert_eq!(code, Some(1), "{proto} {dir}: {err}");
    assert!(
        line.contains("the server went silent") && line.contains("for 3 s (the control timeout)"),
        "{proto} {dir}: {line}"
    );
    // Silence counts from the last status heard, which may have come up to one status
    // interval (1 s) before the stop: 9.11 s was seen in CI for TCP send with 10 s.
    assert!(
        took >= CLIENT_CONTROL - Duration::from_millis(1100)
            && took < CLIENT_CONTROL + Duration::from_secs(5),
        "{proto} {dir}: {took:?}"
    );
    // Resumed, the server must not blame the client for the time it did not run itself:
    // it finds the client gone, says so, and frees the session.
    let t0 = Instant::now();
    let end = srv.session_end(0, Duration::from_secs(3));
    let freed = srv.settle(&base, Duration::from_secs(3));
    eprintln!(
        "SIGSTOPped server, {proto} {dir}: client exit {code:?} after {took:?}: {line}; server \
         resumed: session_end {} after {:?}, freed after {:?}; server log: {:?}",
        end["end_reason"],
        t0.elapsed() - freed,
        t0.elapsed(),
        srv.stderr_lines()
    );
    assert!(
        ["client_closed", "client_reset"].contains(&end["end_reason"].as_str().unwrap()),
        "{proto} {dir}: {end}"
    );
    assert!(srv
        .stderr_lines()
        .iter()
        .any(|l| l.contains("this process did not run for")));
}
